"""Time limits hold on every client path, and abandoned calls stop costing the server
(issue 22, section 5), against the fake provider on 127.0.0.1.

* `trickle`: headers at once, then one byte every half second.  A client library's own
  timeout is per read, so before, the litellm path waited for ever; now every call ends
  by its deadline and its connection is closed (the server sees its write fail).
* `one_at_a_time`: llama.cpp's server -- one request at a time, no cancellation.  With
  more calls in flight than it can answer by their deadline, maker used to abandon calls
  the server still served, retry them on top of that backlog, and stop with "is the model
  endpoint up?"; now the in-flight limit adapts (`cluster.http.ratelimit.InFlightLimit`) and the votes decide.

The outer `asyncio.wait_for` / `timeout_s` guards are hang detectors, not speed goals."""

from __future__ import annotations

import asyncio

import pytest
from fake_provider import FakeProvider, wait_until
from maker.cluster import ModelSpec
from maker.cluster.http.litellm_client import LiteLLMClient
from maker.cluster.http.openai_compatible import OpenAICompatibleClient
from maker.cluster.http.ratelimit import InFlightLimit
from maker.cluster.http.transport import EndpointConfig
from maker.cluster.protocol import SampleRequest
from personalities import one_at_a_time, trickle

import maker

HANG = 120.0  # seconds: a call still running after this has no deadline at all


def _request() -> SampleRequest:
    return SampleRequest([{"role": "user", "content": "What is 6*7?"}], 0.0, 16, seed=1)


@pytest.mark.parametrize("client_class", [OpenAICompatibleClient, LiteLLMClient])
def test_a_trickling_server_ends_at_the_deadline_and_the_connection_is_closed(client_class) -> None:
    with FakeProvider(trickle(0.5), lifetime_s=HANG) as server:
        client = client_class(EndpointConfig("openai/fake", api_base=server.url, timeout_s=3.0, max_retries=1,
                                             backoff_s=0.01))
        (sample,) = asyncio.run(asyncio.wait_for(client.complete([_request()]), HANG))
        assert sample.error is not None and sample.error.startswith("Timeout: no complete answer within 3 s")
        assert sample.faults == ("timeout", "timeout")  # retried, once
        # every request that reached the server (litellm's first call may spend its whole deadline
        # setting itself up on a loaded machine) had its connection closed by maker mid-body
        assert 1 <= len(server.calls) <= 2
        assert wait_until(lambda: server.dropped == len(server.calls), 10.0), (server.dropped, len(server.calls))


def test_vote_on_the_litellm_path_ends_by_its_deadline(monkeypatch) -> None:
    # the instance: ModelSpec("openai/gpt-4.1-mini", timeout_s=...) reaches litellm, which waited for ever
    with FakeProvider(trickle(0.5), lifetime_s=HANG) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-for-the-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        spec = ModelSpec("openai/gpt-4.1-mini", timeout_s=1.0)
        voting = maker.VotingConfig(k=1, max_failed_calls=1)

        async def vote() -> None:
            await maker.avote("What is 6*7?", [spec], key="integer", voting=voting)

        with pytest.raises(maker.MakerError, match="Timeout: no complete answer"):
            asyncio.run(asyncio.wait_for(vote(), HANG))
        assert server.calls  # it reached the fake, not a real provider


@pytest.mark.ray
def test_maker_run_with_timeout_ends(ray_address, maker_cli, tmp_path) -> None:
    # `maker run ... --timeout` sat at 0/7 steps until killed; hosted_vllm/ at an api_base is a litellm path
    with FakeProvider(trickle(0.5), lifetime_s=HANG) as server:
        result = maker_cli("run", "vote", "--prompt", "What is 6*7?", "--key", "integer", "--model", "hosted_vllm/fake",
                           "--api-base", server.url, "--timeout", "1", "--k", "1", "--max-failed-calls", "1",
                           "--address", ray_address, "--log", str(tmp_path / "log"), "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Timeout: no complete answer within 1 s" in result.stderr and result.stderr.count("\n") == 1


def test_a_one_at_a_time_server_behind_too_many_calls_in_flight() -> None:
    # 0.8 s per answer and a 2 s deadline: 8 calls in flight leave the last ones waiting 6.4 s
    votes = 3
    with FakeProvider(one_at_a_time(0.8), lifetime_s=300, max_requests=2000) as server:
        spec = ModelSpec("openai/fake", api_base=server.url, timeout_s=2.0, concurrency=8)

        async def run() -> list[str]:
            keys = []
            for i in range(votes):  # one client for the whole run, as a run's worker has
                result = await maker.avote(f"What is 6*7? ({i})", [spec], k=8, key="integer", concurrency=8)
                keys.append(result.key)
            return keys

        keys = asyncio.run(asyncio.wait_for(run(), 280))
        served, to_nobody = server.served, server.served_to_nobody
    assert keys == ["42"] * votes  # before: "8 calls in a row failed ... is the model endpoint up?"
    assert to_nobody < served / 2, (to_nobody, served)  # before: 364 of 374 answers went to nobody (4 votes)


def test_the_in_flight_limit_halves_once_per_round_and_grows_only_on_time() -> None:
    async def scenario() -> list[float]:
        limit = InFlightLimit(8, deadline_s=2.0)
        seen = [limit.limit]
        slots = [await limit.acquire() for _ in range(8)]
        for slot in slots:  # eight calls of one round miss together: one cut, not eight
            await limit.release(slot, None, missed=True)
        seen.append(limit.limit)
        for _ in range(4):  # answers that took over half the deadline: the server is near its limit, hold
            await limit.release(await limit.acquire(), 1.5)
        seen.append(limit.limit)
        for _ in range(4):  # four quick answers at limit 4: one more slot
            await limit.release(await limit.acquire(), 0.1)
        seen.append(round(limit.limit, 2))
        for _ in range(5):  # errors say nothing about load
            await limit.release(await limit.acquire(), None)
        seen.append(round(limit.limit, 2))
        for _ in range(10):  # misses in successive rounds: down to one, never below
            await limit.release(await limit.acquire(), None, missed=True)
        seen.append(limit.limit)
        for _ in range(200):
            await limit.release(await limit.acquire(), 0.1)
        seen.append(limit.limit)
        return seen

    assert asyncio.run(scenario()) == [8.0, 4.0, 4.0, 4.92, 4.92, 1.0, 8.0]


def test_at_most_limit_calls_are_in_flight() -> None:
    async def scenario() -> int:
        limit = InFlightLimit(3, deadline_s=2.0)
        most = 0

        async def call() -> None:
            nonlocal most
            slot = await limit.acquire()
            most = max(most, limit.in_flight)
            await asyncio.sleep(0)
            await limit.release(slot, 0.1)

        await asyncio.gather(*(call() for _ in range(20)))
        return most

    assert asyncio.run(scenario()) == 3


def test_personalities_of_section_5_are_in_the_table() -> None:
    from personalities import PERSONALITIES

    assert {"trickle", "one_at_a_time", "echo_key_401"} <= set(PERSONALITIES)
