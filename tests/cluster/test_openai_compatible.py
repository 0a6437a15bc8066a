"""The OpenAI-compatible client and the shared transport (`n`, Retry-After) over real HTTP.

The far side is `maker sim-server` (the simulator behind an OpenAI-compatible endpoint, the
project's fake at the model boundary); the clients, retries, `n` grouping and accounting
are the real code.  Both clients run the same checks where they share behaviour.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from maker.cluster import ModelSpec, SampleRequest, make_client
from maker.cluster.http.litellm_client import LiteLLMClient
from maker.cluster.http.openai_compatible import OpenAICompatibleClient
from maker.cluster.http.transport import EndpointConfig, retry_after_s, split_tokens
from maker.cluster.simulated.sim_server import FAULT_KINDS, SimServer, SimServerConfig
from maker.tasks import get_task

CLIENTS = {"compat": OpenAICompatibleClient, "litellm": LiteLLMClient}
LOGGED_AS = {"500": "server_error", "429": "rate_limited", "reset": "connection", "truncated": "bad_json", "hang": "timeout"}


def client(kind: str, server: SimServer, model: str = "openai/sim", **options):
    settings = {"max_retries": 1, "backoff_s": 0.01, "timeout_s": 5.0, **options}
    return CLIENTS[kind](EndpointConfig(model, api_base=server.url, **settings))


def hanoi_step(disks: int = 5):
    task = get_task("hanoi", disks=disks)
    return task, task.first_step()


def test_make_client_sends_openai_compatible_endpoints_to_the_compat_client_only() -> None:
    task, _ = hanoi_step()
    assert isinstance(make_client(ModelSpec("openai/sim", api_base="http://127.0.0.1:9/v1"), task), OpenAICompatibleClient)
    assert isinstance(make_client(ModelSpec("openai/gpt-4.1-mini"), task), LiteLLMClient)  # no api_base: litellm
    assert isinstance(make_client(ModelSpec("hosted_vllm/x", api_base="http://127.0.0.1:9/v1"), task), LiteLLMClient)


@pytest.mark.parametrize("style", ["chat", "completion"])
def test_both_clients_give_the_same_samples(style) -> None:
    task, step = hanoi_step()
    requests = [SampleRequest(task.prompt(step, style), 0.0, 751, 100 + i, step) for i in range(3)]
    with SimServer(SimServerConfig(p=0.7, latency=0.0)) as server:
        got = {kind: asyncio.run(client(kind, server).complete(requests)) for kind in CLIENTS}
    fields = [[(s.text, s.tokens_in, s.tokens_out, s.finish_reason, s.cost_usd, s.error) for s in got[k]] for k in CLIENTS]
    assert fields[0] == fields[1]
    assert all(s.text and s.tokens_in > 100 and s.response_id for s in got["compat"])


def test_a_priced_model_is_costed_as_litellm_costs_it() -> None:
    import litellm

    task, step = hanoi_step()
    with SimServer(SimServerConfig(p=1.0, latency=0.0)) as server:
        (sample,) = asyncio.run(client("compat", server, model="openai/gpt-4.1-mini").complete(
            [SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
    expected = sum(litellm.cost_per_token(model="gpt-4.1-mini", prompt_tokens=sample.tokens_in, completion_tokens=sample.tokens_out))
    assert expected > 0 and sample.cost_usd == pytest.approx(expected)


@pytest.mark.parametrize("kind", [k for k in FAULT_KINDS if k in LOGGED_AS])
def test_each_retried_fault_is_data_and_counted_by_kind(kind) -> None:
    task, step = hanoi_step()
    config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=(kind,), retry_after_s=0.0, hang_s=30.0)
    with SimServer(config) as server:
        (sample,) = asyncio.run(client("compat", server, timeout_s=0.5).complete([SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
        time.sleep(0.1)
        stats = server.stats()
    assert sample.error and sample.text == "" and sample.finish_reason == "error"
    assert stats["requests"] == 2 and sample.faults == (LOGGED_AS[kind],) * 2


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_same_prompt_samples_share_one_request_with_n(kind) -> None:
    """k same-temperature draws of one prompt: one HTTP request, k distinct samples whose
    tokens and cost add up to one prompt read plus the replies."""
    task, step = hanoi_step()
    prompt = task.prompt(step)
    requests = [SampleRequest(prompt, 0.0, 751, 1, step)] + [SampleRequest(prompt, 0.7, 751, 2 + i, step) for i in range(3)]
    with SimServer(SimServerConfig(p=0.5, latency=0.0)) as server:
        samples = asyncio.run(client(kind, server, model="openai/gpt-4.1-mini").complete(requests))
        stats = server.stats()
    assert stats["requests"] == 2  # the temperature-0 draw alone, the three at 0.7 together
    shared = samples[1:]
    assert len({s.response_id for s in shared}) == 3 and all(s.response_id.endswith(f"#{i}") for i, s in enumerate(shared))
    assert len({s.text for s in shared}) > 1 or all(s.text for s in shared)  # three draws, not one copied
    assert shared[0].tokens_in == samples[0].tokens_in and shared[1].tokens_in == shared[2].tokens_in == 0
    assert sum(s.tokens_in for s in samples) == stats["prompt_tokens"]
    assert sum(s.tokens_out for s in samples) == stats["completion_tokens"]
    import litellm

    billed = sum(litellm.cost_per_token(model="gpt-4.1-mini", prompt_tokens=stats["prompt_tokens"],
                                        completion_tokens=stats["completion_tokens"]))
    assert sum(s.cost_usd for s in samples) == pytest.approx(billed)


def test_a_server_that_ignores_n_is_detected_logged_once_and_drawn_one_by_one(caplog) -> None:
    task, step = hanoi_step()
    prompt = task.prompt(step)
    batch = [SampleRequest(prompt, 0.7, 751, 10 + i, step) for i in range(3)]
    with SimServer(SimServerConfig(p=0.5, latency=0.0, ignore_n=True)) as server:
        c = client("compat", server)
        with caplog.at_level(logging.WARNING, logger="maker.cluster"):
            first = asyncio.run(c.complete(batch))
            second = asyncio.run(c.complete(batch))
        stats = server.stats()
    assert all(s.error is None and s.text for s in first + second)
    assert len({s.response_id for s in first}) == 3
    assert stats["requests"] == 3 + 3  # one n=3 request answered once, two more; then one per sample
    assert sum("ignores n" in r.getMessage() for r in caplog.records) == 1


def test_faults_of_a_shared_request_are_counted_once() -> None:
    task, step = hanoi_step()
    prompt = task.prompt(step)
    config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=("500",))
    with SimServer(config) as server:
        samples = asyncio.run(client("compat", server).complete([SampleRequest(prompt, 0.7, 751, i, step) for i in range(3)]))
        stats = server.stats()
    assert all(s.error for s in samples)
    assert sum(len(s.faults) for s in samples) == stats["requests"] == 2


@pytest.mark.parametrize("kind", list(CLIENTS))
@pytest.mark.parametrize("form", ["seconds", "date", "ms"])
def test_429_waits_for_retry_after_in_each_form(kind, form) -> None:
    task, step = hanoi_step()
    config = SimServerConfig(latency=0.0, fault_rate=1.0, faults=("429",), retry_after_s=1.2, retry_after_form=form)
    with SimServer(config) as server:
        started = time.perf_counter()
        (sample,) = asyncio.run(client(kind, server, backoff_s=0.001).complete([SampleRequest(task.prompt(step), 0.0, 751, 1, step)]))
        elapsed = time.perf_counter() - started
        assert server.stats()["requests"] == 2
    assert sample.faults == ("rate_limited", "rate_limited")
    assert elapsed >= 1.0  # waited as the server asked (a date is whole seconds: 1-2.2 s), not the 1 ms back-off


def test_retry_after_forms_and_cap() -> None:
    now = 1445412470.0  # 07:27:50 GMT on 21 Oct 2015
    assert retry_after_s({"Retry-After": "15"}) == 15.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, now=now) == 10.0
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:28:00 -0000"}, now=now) == 10.0
    assert retry_after_s({"Retry-After": "Wed, 21 Oct 2015 07:00:00 GMT"}, now=now) == 0.0  # in the past
    assert retry_after_s({"Retry-After": "Thu, 22 Oct 2015 07:28:00 GMT"}, now=now) == 60.0  # capped like seconds
    assert retry_after_s({"Retry-After": "3600"}) == 60.0
    assert retry_after_s({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert retry_after_s({"Retry-After": "soon"}) is None and retry_after_s({}) is None and retry_after_s(None) is None
    # not a delay: no wait from the server (the client's own back-off applies), never the cap
    for bad in ("nan", "inf", "-5", "1e9", "\u0661\u0665", "1_000"):
        assert retry_after_s({"Retry-After": bad}) is None, bad
        assert retry_after_s({"retry-after-ms": bad}) is None, bad
    assert retry_after_s({"retry-after-ms": "nan", "Retry-After": "2"}) == 2.0


@pytest.mark.parametrize("total,weights,expected", [(10, [1, 1, 2], [2, 2, 6]), (0, [3, 4], [0, 0]), (5, [0, 0], [2, 3]), (7, [5], [7])])
def test_split_tokens_sums_to_the_total(total, weights, expected) -> None:
    assert split_tokens(total, weights) == expected and sum(expected) == total


def test_replicas_get_one_prompt_variant_each() -> None:
    """`api_bases`: variant v goes to server v % replicas (each keeps its variant's prefix cached)."""
    task, step = hanoi_step()
    prompt = task.prompt(step)
    requests = [SampleRequest(prompt, 0.7, 751, 20 + i, step, variant=i % 3) for i in range(6)]
    with SimServer(SimServerConfig(latency=0.0)) as a, SimServer(SimServerConfig(latency=0.0)) as b:
        c = OpenAICompatibleClient(EndpointConfig("openai/sim", api_base=a.url, api_bases=(b.url,), use_n=False))
        samples = asyncio.run(c.complete(requests))
        counts = (a.stats()["requests"], b.stats()["requests"])
    assert all(s.error is None for s in samples)
    assert counts == (4, 2)  # variants 0 and 2 on the first server, variant 1 on the second


FRESH_PROCESS = r"""
import asyncio, json, sys
from maker.cluster import SampleRequest
from maker.cluster.http.openai_compatible import OpenAICompatibleClient
from maker.cluster.http.transport import EndpointConfig
from maker.tasks import get_task

assert "litellm" not in sys.modules  # the price lookup below is the first import of litellm
task = get_task("hanoi", disks=5)
steps = [task.first_step()]
for _ in range(3):
    steps.append(task.step_after(steps[-1].index, task.truth(steps[-1].index)))
client = OpenAICompatibleClient(EndpointConfig("openai/sim", api_base=sys.argv[1], timeout_s=1.0, max_retries=0))
samples = asyncio.run(client.complete([SampleRequest(task.prompt(s), 0.0, 751, 1, s) for s in steps]))
print(json.dumps([[s.error, list(s.faults)] for s in samples]))
"""


@pytest.mark.subprocess
def test_the_first_price_lookup_does_not_time_out_requests_in_flight() -> None:
    """A fresh process (a Ray worker) imports litellm for its first price lookup: seconds
    that block the event loop.  Done while replies were in flight, it timed out every other
    request of the first batch (a 1 s timeout against a server that answers at once)."""
    import json
    import subprocess
    import sys

    with SimServer(SimServerConfig(latency=0.02)) as server:
        done = subprocess.run([sys.executable, "-c", FRESH_PROCESS, server.url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(results) == 4 and all(error is None and faults == [] for error, faults in results), results
