"""--max-cost: a run never spends past its cap (in flight included), stops cleanly with one line,
resumes counting what its log spent; a cap with an unknown price is refused.

The far side is `BillingProvider` (tests/providers/billing.py), a fake hosted endpoint that
bills like OpenAI and keeps its own invoice: the cap is checked against what the provider
would charge, not against maker's own figures.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from maker.cluster import ModelSpec, SampleRequest
from maker.cluster.pricing import Price, price_of
from maker.cluster.protocol import Sample

from maker.budget.spend import Budget, budget_line, check_cap, refuse_unpriced, usd
from maker.errors import BudgetReached, UsageError


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"tests_providers_{name}", Path(__file__).with_name(f"{name}.py"))
    module = sys.modules.get(spec.name)
    if module is None:
        module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


BillingProvider = _load("billing").BillingProvider
MODEL = "openai/gpt-4.1-mini"
PRICE = Price(0.4, 1.6, "test", cached_input_per_m=0.1)


def small_cap(disks: int = 5, per_round: int = 2) -> float:
    """A cap for a k = 2 Hanoi run on gpt-4.1-mini that its first round fits and that stops it
    after a few steps: a round's worst case (`per_round` requests: a k = 2 round goes out as one
    batch of 2, in order and in the speculative window alike) plus $0.002."""
    from maker.tasks import get_task

    task = get_task("hanoi", disks=disks)
    worst = Budget(None, {MODEL: price_of(MODEL)}).worst_case(MODEL, SampleRequest(task.prompt(task.first_step()), 0.1, 751, 1))
    return round(per_round * worst + 0.002, 4)


# -- the Budget object ----------------------------------------------------------------------
def test_a_round_is_refused_when_its_worst_case_would_cross_the_cap() -> None:
    budget = Budget(0.05, {"m": PRICE})
    request = SampleRequest("x" * 4000, 0.0, 751, 1)
    worst = budget.worst_case("m", request)
    assert worst > 0
    held = budget.reserve([("m", request)] * 3)
    assert held == pytest.approx(3 * worst) and budget.reserved_usd == pytest.approx(held)
    assert budget.reserve([("m", request)] * 3) is None and budget.reached  # in flight counts
    budget.settle(held, [Sample("a", "m", cost_usd=0.001, abandoned_usd=0.0005)] * 3)
    assert budget.reserved_usd == 0 and budget.spent_usd == pytest.approx(0.0045)
    assert budget.reserve([("m", request)] * 3) is not None  # the worst case was released


def test_without_a_cap_nothing_is_refused_and_free_models_cost_nothing() -> None:
    request = SampleRequest("x" * 4000, 0.0, 751, 1)
    assert Budget(None, {"m": PRICE}).reserve([("m", request)] * 1000) is not None
    assert Budget(0.000001, {"sim:0.9": price_of("sim:0.9")}).reserve([("sim:0.9", request)] * 1000) == 0.0


@pytest.mark.parametrize("cap", [0, -1, float("nan"), float("inf"), "5", True])
def test_a_cap_must_be_a_positive_amount(cap) -> None:
    with pytest.raises(UsageError, match="--max-cost"):
        check_cap(cap)


def test_a_cap_on_a_model_without_a_known_price_is_refused() -> None:
    with pytest.raises(UsageError, match="no known price for openai/gpt-9-mini"):
        refuse_unpriced(1.0, {MODEL: price_of(MODEL), "openai/gpt-9-mini": price_of("openai/gpt-9-mini")})
    refuse_unpriced(None, {"openai/gpt-9-mini": price_of("openai/gpt-9-mini")})  # no cap: nothing to enforce


def test_the_stop_line() -> None:
    assert budget_line(49.87, 50, 61204, 1048575) == (
        "budget reached: $49.87 of $50.00 spent; 61,204 of 1,048,575 steps decided; the log is intact "
        "(resume with --resume and a new --max-cost)")


# -- runs against the billing provider ------------------------------------------------------
@pytest.mark.ray
@pytest.mark.parametrize("speculate", [0, 8])
def test_a_run_stops_at_its_cap_and_resumes_counting_what_the_log_spent(ray_address, tmp_path, speculate) -> None:
    from maker.tasks import get_task

    import maker

    task = get_task("hanoi", disks=5)
    log = tmp_path / "log"
    cluster = maker.ClusterConfig(address=ray_address, speculate=speculate)
    with BillingProvider(p=1.0, cached_fraction=0.5) as provider:
        spec = ModelSpec(MODEL, api_base=provider.url)
        cap = small_cap(per_round=2)
        first = maker.run(task, [spec], maker.VotingConfig(k=2), log=log, cluster=cluster, max_cost_usd=cap)
        billed = provider.invoice()
        assert first.status == "budget_reached" and not first.solved and 0 < first.steps < task.total_steps
        assert billed <= cap  # the provider's own bill: the cap held, in flight included
        assert first.budget["spent_usd"] == pytest.approx(billed, abs=2e-6) and first.budget["reached"]
        assert first.budget["line"].startswith("budget reached: $0.0") and "steps decided" in first.budget["line"]
        second = maker.run(task, [spec], maker.VotingConfig(k=2), log=log, resume=True, cluster=cluster,
                           max_cost_usd=0.2)
        assert second.solved and second.status == "ok" and second.resumed_from_step == first.steps
        assert second.budget["spent_usd"] == pytest.approx(provider.invoice(), abs=2e-6)  # the log's spend counted
    assert maker.verify_log(log).valid


@pytest.mark.ray
def test_the_cli_prints_the_expectation_the_stop_line_and_exits_1(ray_address, tmp_path, maker_cli) -> None:
    with BillingProvider(p=1.0) as provider:
        args = ["run", "hanoi", "--disks", "5", "--model", MODEL, "--api-base", provider.url, "--k", "2", "--quiet",
                "--address", ray_address, "--log", str(tmp_path / "log")]
        cap = small_cap(per_round=2)  # the CLI speculates by default: a k = 2 round is one batch of 2
        out = maker_cli(*args, "--max-cost", str(cap))
        assert out.returncode == 1, out.stdout + out.stderr
        assert f"maker: --max-cost {usd(cap)}; expected cost $" in out.stderr and "the run may stop" in out.stderr
        assert "budget reached: $0.0" in out.stdout and "(resume with --resume and a new --max-cost)" in out.stdout
        assert "cost by model: openai/gpt-4.1-mini $" in out.stdout and "price openai/gpt-4.1-mini: $0.4 in" in out.stdout
        again = maker_cli(*args, "--max-cost", "0.5", "--resume", "--json")
    assert again.returncode == 0 and "already spent, from the log" in again.stderr
    result = json.loads(again.stdout)
    assert result["budget"]["spent_usd"] == pytest.approx(provider.invoice(), abs=2e-6)
    assert result["prices"][MODEL]["source"] == "litellm price table (offline)"


@pytest.mark.parametrize("command", ["run", "solve"])
def test_a_cap_with_an_unknown_price_is_refused_unless_prices_are_given(maker_cli, tmp_path, command) -> None:
    target = ["run", "hanoi", "--disks", "3"] if command == "run" else ["solve", "what is 2 + 3?"]
    args = [*target, "--model", "openai/gpt-9-mini", "--api-base", "http://127.0.0.1:9/v1", "--max-cost", "5",
            "--log", str(tmp_path / "log")]
    out = maker_cli(*args)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "maker: error: --max-cost $5.00 cannot be enforced: no known price for openai/gpt-9-mini "
        "(pass --price-in/--price-out, USD per million tokens)"]
    assert not (tmp_path / "log").exists()
    half = maker_cli(*args, "--price-in", "openai/gpt-9-mini=0.4")
    assert half.returncode == 2 and "give --price-out too" in half.stderr


@pytest.mark.parametrize("path", ["compat", "litellm"])
def test_a_voted_call_never_spends_past_its_cap_on_either_client_path(path) -> None:
    """A hard call (p = 0.5, k = 3) on a dear model: rounds go out while their worst case
    fits; the provider's own bill stays within the cap, and maker's figure equals it."""
    from maker.cluster.http.litellm_client import LiteLLMClient
    from maker.cluster.http.openai_compatible import OpenAICompatibleClient
    from maker.cluster.http.transport import EndpointConfig
    from maker.tasks import get_task

    import maker

    task = get_task("hanoi", disks=4)
    prompt = task.prompt(task.first_step())
    dear = Price(400.0, 1600.0, "test: 1000x gpt-4.1-mini", cached_input_per_m=100.0)
    voting = maker.VotingConfig(k=3, max_output_tokens=50)
    worst = Budget(None, {MODEL: dear}).worst_case(MODEL, SampleRequest(prompt, 0.1, 51, 1))
    cap = 3 * worst + 0.5  # the first round fits; a round of three once anything is spent does not
    client_class = {"compat": OpenAICompatibleClient, "litellm": LiteLLMClient}[path]
    with BillingProvider(p=0.5, seed=3, rates=(400.0, 100.0, 1600.0)) as provider:
        client = client_class(EndpointConfig(MODEL, api_base=provider.url, max_retries=0, price=dear))
        try:
            result = maker.vote(prompt, [client], voting=voting, max_cost_usd=cap, seed=1)
            spent = result.cost_usd
        except BudgetReached as exc:
            assert str(exc).startswith("budget reached: $") and "the call was not decided" in str(exc)
            spent = exc.spent_usd
    assert 0 < provider.invoice() <= cap
    assert spent == pytest.approx(provider.invoice(), abs=2e-6)


def test_a_voted_call_refuses_a_cap_on_a_client_with_no_price() -> None:
    import maker

    fn = maker.FunctionClient(lambda prompt, temperature, seed: "42")
    with pytest.raises(UsageError, match="cannot be enforced"):
        maker.vote("6*7?", [fn], k=1, key="integer", max_cost_usd=1.0)


# -- a price is never invented ----------------------------------------------------------------
@pytest.mark.ray
def test_estimate_never_ranks_an_unpriced_model_by_cost_against_a_priced_one(ray_address, maker_cli) -> None:
    """The issue's run: gpt-9-mini (unknown to litellm) served by the same endpoint was priced
    $0 from 'litellm price table (offline)' and recommended as cheapest."""
    with BillingProvider(p=1.0, cached_fraction=0.5) as provider:
        out = maker_cli("estimate", "hanoi", "--disks", "10", "--model", MODEL, "--model", "openai/gpt-9-mini",
                        "--api-base", provider.url, "--samples", "10", "--address", ray_address, "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    by_model = {m["model"]: m for m in report["models"]}
    unpriced = by_model["openai/gpt-9-mini"]
    assert not unpriced["price_known"] and unpriced["expected_cost"] is None
    assert unpriced["price_source"].startswith("unknown: not in litellm's price table (pass --price-in/--price-out)")
    priced = by_model[MODEL]
    assert priced["price_known"] and priced["expected_cost"] > 0 and priced["cache_hit_rate"] == pytest.approx(0.5, abs=0.01)
    assert report["recommended"] == MODEL
    assert "cheapest priced model" in report["summary"]
    assert "openai/gpt-9-mini also meets the target at an unknown price (pass --price-in/--price-out to compare)" in report["summary"]


@pytest.mark.ray
def test_abandoned_calls_are_counted_at_their_prompt_cost_in_the_run_and_json(ray_address, tmp_path, maker_cli) -> None:
    """The issue's run: a provider that never cancels (0.2 s plus up to 1 s) behind --timeout 0.8.
    What maker counts plus its estimate for abandoned calls comes near the provider's bill
    (the abandoned replies' own output tokens are never seen, so it stays below it)."""
    with BillingProvider(p=1.0, latency=0.2, jitter=1.0, seed=5) as provider:
        out = maker_cli("run", "hanoi", "--disks", "3", "--model", MODEL, "--api-base", provider.url, "--k", "2",
                        "--timeout", "0.8", "--json", "--quiet", "--address", ray_address, "--log", str(tmp_path / "log"))
    result = json.loads(out.stdout)
    assert result["faults_by_kind"].get("timeout", 0) > 0 and provider.ledger.abandoned > 0
    assert result["abandoned_usd"] > 0 and result["extra"]["cost_breakdown"]["by_kind"]["abandoned"] == result["abandoned_usd"]
    billed = result["cost_usd"] + result["abandoned_usd"]
    assert result["cost_usd"] < 0.9 * provider.invoice()  # counted alone misses the abandoned calls
    assert 0.6 * provider.invoice() <= billed <= provider.invoice() * 1.01


def test_the_mcp_run_tool_refuses_a_cap_on_an_unpriced_model(tmp_path) -> None:
    from maker.agents.runs import Runs

    runs = Runs(tmp_path)
    with pytest.raises(UsageError, match="no known price for openai/gpt-9-mini"):
        runs.start("hanoi", {"disks": 3}, ["openai/gpt-9-mini"], max_cost_usd=1.0)
    with pytest.raises(UsageError, match="--max-cost must be a positive amount"):
        runs.start("hanoi", {"disks": 3}, ["sim:0.9"], max_cost_usd=-1)
    assert not (tmp_path / "maker-runs").exists() or not any((tmp_path / "maker-runs").iterdir())


@pytest.mark.ray
def test_a_plan_run_stops_at_its_cap_with_its_log_resumable(ray_address, tmp_path) -> None:
    """Plan steps voted together in one batch: only the rounds whose worst case fits are sent."""
    import re

    import maker

    def answer(prompt, temperature, seed):
        age = re.search(r"age: (\d+)", prompt if isinstance(prompt, str) else prompt[-1]["content"]).group(1)
        return Sample(age, "fn", tokens_in=50, tokens_out=1, cost_usd=0.01)

    dear = Price(1000.0, 1000.0, "test")
    age = maker.operation("age", prompt=lambda args: f"Record: {args[0]}\nage:", key="integer", parse=lambda r: r.strip())
    lines = "".join(f'#E{i + 1} = age("name: P{i}; age: {30 + i}")\n' for i in range(10))
    lines += "#E11 = total(" + ", ".join(f"#E{i + 1}" for i in range(10)) + ")\n"
    plan = maker.plan_task(lines + "answer = #E11", ops=[age, maker.tool("total", lambda *xs: sum(map(int, xs)))])
    model = ModelSpec(maker.FunctionClient(answer, name="fn"), price=dear)
    worst = Budget(None, {"fn": dear}).worst_case("fn", SampleRequest("Record: name: P0; age: 30\nage:", 0.0, 751, 1))
    cap = 2 * 2 * worst + 0.05  # the first rounds (k = 2) of two steps fit, a third does not
    log = tmp_path / "log"
    result = maker.run(plan, [model], maker.VotingConfig(k=2, prompt_style="completion"), log=log,
                       cluster=maker.ClusterConfig(address=ray_address), max_cost_usd=cap)
    assert result.status == "budget_reached" and result.steps == 2 and result.cost_usd == pytest.approx(0.04)
    assert result.budget["spent_usd"] == pytest.approx(0.04) and "2 of 11 steps decided" in result.budget["line"]
    again = maker.run(plan, [model], maker.VotingConfig(k=2, prompt_style="completion"), log=log, resume=True,
                      cluster=maker.ClusterConfig(address=ray_address), max_cost_usd=100.0)
    assert again.solved and again.steps == 11 and again.budget["spent_usd"] == pytest.approx(0.20)
    assert again.extra["answer"] == str(sum(range(30, 40)))


# -- maker map under a cap (#24 §1: --max-cost works on a map job like on any run) ---------------
def _copy_the_number(call):  # a priced provider that copies the row's number: right every time
    import re

    from fake_provider import completion

    number = re.findall(r"\d+", call.prompt.rsplit("Item", 1)[-1])[-1]  # "Item thing 10: 70" -> 70
    usage = {"prompt_tokens": 40, "completion_tokens": 2 * call.n, "total_tokens": 40 + 2 * call.n}
    return completion(call, [number] * call.n if call.n == 1 else [number] + [f" {number}"] * (call.n - 1), usage=usage)


@pytest.mark.ray
def test_a_map_job_stops_at_its_cap_writes_no_table_and_resumes(ray_address, tmp_path, maker_cli) -> None:
    import pyarrow.parquet as pq
    from fake_provider import FakeProvider

    data = tmp_path / "items.csv"
    data.write_text("id,label,n\n" + "".join(f"r{i},thing {i},{i * 7}\n" for i in range(30)))
    out, log = tmp_path / "answers.parquet", tmp_path / "log"
    prompt = "Copy the number.\\nItem {label}: {n}\\nnumber:"
    worst = Budget(None, {MODEL: price_of(MODEL)}).worst_case(MODEL, SampleRequest("Copy the number.\nItem thing 10: 70\nnumber:", 0.1, 21, 1))
    cap = round(2 * worst + 0.0004, 5)  # a row's first round fits; a few rows' bills later the next does not
    with FakeProvider(_copy_the_number) as provider:
        args = ["map", str(data), "--prompt", prompt, "--key", "integer", "--truth", "n", "--id", "id",
                "--model", MODEL, "--api-base", provider.url, "--k", "2", "--max-output-tokens", "20",
                "--batch-rows", "1", "--out", str(out), "--log", str(log), "--address", ray_address, "--quiet"]
        first = maker_cli(*args, "--max-cost", str(cap))
        assert first.returncode == 1, first.stdout + first.stderr
        assert "budget reached: $" in first.stdout and "rows decided" in first.stdout, first.stdout
        assert not out.exists()  # a table with rows never voted is not written
        line = next(x for x in first.stdout.splitlines() if "budget reached" in x)
        decided = int(line.split("; ")[1].split(" of ")[0].replace(",", ""))
        assert 0 < decided < 30 and f"{decided:,} rows decided, 0 undecided" in first.stdout
        unpriced = maker_cli(*args[:10], "--model", "openai/gpt-9-mini", *args[12:], "--max-cost", "1")
        assert unpriced.returncode == 2 and "cannot be enforced" in unpriced.stderr
        again = maker_cli(*args, "--max-cost", "1", "--resume", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout)
    assert result["status"] == "ok" and result["extra"]["rows_from_log"] == decided
    assert result["budget"]["cap_usd"] == 1.0 and result["budget"]["spent_usd"] > 0
    table = pq.read_table(out)
    assert table.num_rows == 30 and table["answer"].to_pylist() == [str(i * 7) for i in range(30)]
