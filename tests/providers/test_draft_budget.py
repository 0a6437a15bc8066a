"""A draft model's spend is under --max-cost like a vote's: held in flight, charged, and
refused up front when its price is unknown.

The far side is `BillingProvider` (tests/providers/billing.py), a fake hosted endpoint that
bills like OpenAI and keeps its own invoice: the cap is checked against what the provider
would charge for the votes and the draft's guesses together.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from maker.cluster import ModelSpec, SampleRequest
from maker.cluster.pricing import price_of
from maker.tasks import get_task

import maker
from maker.budget.spend import Budget
from maker.errors import UsageError

MODEL = "openai/gpt-4.1-mini"


def _billing():
    spec = importlib.util.spec_from_file_location("tests_providers_billing", Path(__file__).with_name("billing.py"))
    module = sys.modules.get(spec.name)
    if module is None:
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.BillingProvider


@pytest.mark.ray
def test_a_drafted_run_never_spends_past_its_cap_votes_and_guesses_together(ray_address, tmp_path) -> None:
    task = get_task("hanoi", disks=8)
    with _billing()(p=1.0, latency=0.02) as provider:
        voters = ModelSpec(MODEL, api_base=provider.url)
        draft = ModelSpec(MODEL, api_base=provider.url)  # guesses as dear as votes: ~1 in 3 requests is a guess
        worst = Budget(None, {MODEL: price_of(MODEL)}).worst_case(MODEL, SampleRequest(task.prompt(task.first_step()), 0.1, 751, 1))
        cap = round(5 * worst, 4)  # a round and a guess in flight fit; the run stops well before its 255 steps' worst case: the run stops well before its 63 steps
        result = maker.run(task, [voters], maker.VotingConfig(k=2), log=tmp_path / "log", draft=draft,
                           cluster=maker.ClusterConfig(address=ray_address, speculate=16), max_cost_usd=cap)
        billed = provider.invoice()
    assert result.status == "budget_reached" and 0 < result.steps < task.total_steps
    assert result.extra["draft_stats"]["samples"] > 0  # the draft did guess
    assert billed <= cap  # the provider's own bill, guesses included: the cap held, in flight included
    # maker's figure is the provider's, but for guesses cancelled in flight (their step decided
    # first): maker estimates those at their prompt cost, the provider bills their short replies too
    spent = result.budget["spent_usd"]
    assert spent <= billed + 2e-6 and spent == pytest.approx(billed, rel=0.01)
    bill = result.extra["cost_breakdown"]["by_kind"]
    assert bill["draft"] > 0 and sum(bill.values()) == pytest.approx(result.budget["spent_usd"], abs=2e-6)  # the draft's apart


def test_a_cap_on_a_draft_model_with_no_known_price_is_refused_before_anything_runs(tmp_path) -> None:
    task = get_task("hanoi", disks=4)
    with pytest.raises(UsageError, match=r"^--max-cost \$1\.00 cannot be enforced: no known price for openai/gpt-9-mini"):
        maker.run(task, ["sim:0.99"], maker.VotingConfig(k=2), log=tmp_path / "log", draft=ModelSpec("openai/gpt-9-mini", api_base="http://127.0.0.1:9/v1"),
                  cluster=maker.ClusterConfig(speculate=4), max_cost_usd=1.0)
    assert not (tmp_path / "log").exists()


def test_the_cli_refuses_an_unpriced_draft_under_a_cap_first_and_takes_its_price_by_name(maker_cli, tmp_path) -> None:
    args = ["run", "hanoi", "--disks", "4", "--model", "sim:0.99", "--draft", "openai/gpt-9-mini",
            "--draft-api-base", "http://127.0.0.1:9/v1", "--max-cost", "1", "--log", str(tmp_path / "log")]
    out = maker_cli(*args)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "maker: error: --max-cost $1.00 cannot be enforced: no known price for openai/gpt-9-mini "
        "(pass --price-in/--price-out, USD per million tokens)"]  # before the expected-cost line, and alone
    priced = maker_cli(*args, "--price-in", "openai/gpt-9-mini=0.1", "--price-out", "openai/gpt-9-mini=0.4", "--workers", "0")
    assert priced.returncode == 2 and "not a model of this command" not in priced.stderr  # the draft is one
    assert "--workers must be >= 1" in priced.stderr
    assert not (tmp_path / "log").exists()
