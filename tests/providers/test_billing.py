"""Cost is what the provider bills, on both client paths (litellm and the OpenAI-compatible client).

The far side is `BillingProvider` (tests/providers/billing.py): a fake hosted endpoint that
reports usage as OpenAI does (cached prompt tokens, reasoning tokens) and keeps its own
invoice, so maker's figures are checked against what the provider would bill.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import pytest
from maker.cluster import SampleRequest
from maker.cluster.http.litellm_client import LiteLLMClient
from maker.cluster.http.openai_compatible import OpenAICompatibleClient
from maker.cluster.http.transport import EndpointConfig
from maker.cluster.pricing import Price, price_of
from maker.tasks import get_task


def _load(name: str):
    """A helper module of this folder (the suite imports in importlib mode: no sys.path entry)."""
    spec = importlib.util.spec_from_file_location(f"tests_providers_{name}", Path(__file__).with_name(f"{name}.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BillingProvider = _load("billing").BillingProvider
CLIENTS = {"compat": OpenAICompatibleClient, "litellm": LiteLLMClient}
MODEL = "openai/gpt-4.1-mini"


def _draw(kind: str, url: str, n: int = 1, **options) -> list:
    task = get_task("hanoi", disks=4)
    step = task.first_step()
    prompt = task.prompt(step)
    requests = [SampleRequest(prompt, 0.1, 751, 10 + i, step) for i in range(n)]
    client = CLIENTS[kind](EndpointConfig(MODEL, api_base=url, max_retries=0, **options))
    return asyncio.run(client.complete(requests))


def test_the_issues_cached_reply_is_priced_at_the_cache_read_rate() -> None:
    """usage {prompt 2000, completion 5, cached 1920} on gpt-4.1-mini: $0.000232, not $0.000808."""
    price = price_of(MODEL)
    assert price.cached_input_per_m == pytest.approx(0.1) and price.source == "litellm price table (offline)"
    assert price.cost(2000, 5, cached=1920) == pytest.approx(0.000232)
    assert price.cost(2000, 5) == pytest.approx(0.000808)


@pytest.mark.parametrize("kind", list(CLIENTS))
@pytest.mark.parametrize("n", [1, 3])
def test_cached_prompt_tokens_are_billed_at_the_cached_rate_and_logged(kind, n) -> None:
    with BillingProvider(cached_fraction=0.96) as provider:
        samples = _draw(kind, provider.url, n)
    assert provider.ledger.cached_tokens > 0
    assert sum(s.cached_tokens for s in samples) == provider.ledger.cached_tokens
    assert sum(s.cost_usd for s in samples) == pytest.approx(provider.invoice(), rel=1e-9)
    uncached = Price(0.4, 1.6, "no cache rate").cost(provider.ledger.prompt_tokens, provider.ledger.completion_tokens)
    saved = provider.ledger.cached_tokens * (0.4 - 0.1) / 1e6  # the old figure charged cached tokens in full
    assert uncached - sum(s.cost_usd for s in samples) == pytest.approx(saved)


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_reasoning_tokens_are_billed_as_output(kind) -> None:
    with BillingProvider(reasoning_tokens=400) as provider:
        (sample,) = _draw(kind, provider.url)
    assert provider.ledger.reasoning_tokens == 400
    assert sample.tokens_out == provider.ledger.completion_tokens and sample.tokens_out > 400
    assert sample.cost_usd == pytest.approx(provider.invoice(), rel=1e-9)


@pytest.mark.parametrize("kind", list(CLIENTS))
def test_a_timed_out_call_is_counted_as_billed_at_its_prompt_cost(kind) -> None:
    """The provider serves (and bills) a call maker abandoned: the sample says so, estimated."""
    with BillingProvider(latency=1.5) as provider:
        (sample,) = _draw(kind, provider.url, timeout_s=0.5)
    assert sample.error and sample.faults == ("timeout",)
    assert provider.ledger.requests == 1 and provider.invoice() > 0
    prompt_cost = price_of(MODEL).cost(provider.ledger.prompt_tokens, 0)
    assert sample.cost_usd == 0.0 and sample.abandoned_usd == pytest.approx(prompt_cost, rel=0.5)


@pytest.mark.parametrize("kind", list(CLIENTS))
@pytest.mark.parametrize(("name", "tokens", "usd"), [
    ("cached_prefix", (2000, 5, 1920, 0), 0.000232),                   # issue 23: was costed $0.000808
    ("reasoning", (12, 32, 0, 30), (12 * 0.4 + 32 * 1.6) / 1e6),        # reasoning tokens billed as output
])
def test_the_fake_providers_usage_personalities_are_priced_as_billed(kind, name, tokens, usd) -> None:
    """The suite's fake provider (tests/providers/fake_provider.py) with OpenAI-style usage."""
    from fake_provider import FakeProvider
    from personalities import PERSONALITIES

    with FakeProvider(PERSONALITIES[name]) as server:
        client = CLIENTS[kind](EndpointConfig(MODEL, api_base=server.url, max_retries=0))
        (sample,) = asyncio.run(client.complete([SampleRequest([{"role": "user", "content": "What is 6*7?"}], 0.0, 751, 1)]))
    assert (sample.tokens_in, sample.tokens_out, sample.cached_tokens, sample.reasoning_tokens) == tokens
    assert sample.cost_usd == pytest.approx(usd)
