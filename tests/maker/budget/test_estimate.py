"""`maker estimate` and `maker run --k auto` without --p.

The simulator is the only model (the test double at the model boundary); the unit tests
call the worker function directly with a plain object holding the task and a simulator
wrapped to record the requests it gets. The Ray tests go through the session's Ray.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import maker.voting as voting
import pytest
from maker.cluster import SimulatedModel, parse_sim_model
from maker.tasks import get_task

from maker.budget.estimate import EstimateJob, estimate, estimate_batch, pick_steps, true_step
from maker.cli.main import main
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.runtime.driver import ClusterConfig


class Recording:
    """A simulator that remembers each request (step, temperature): the model boundary."""

    def __init__(self, task, model: str) -> None:
        self.inner = SimulatedModel(task, parse_sim_model(model), name=model)
        self.name = model
        self.requests: list[tuple[int, float]] = []
        self.calls = 0
        self.steps_per_call: list[set[int]] = []
        self.seeds: list[tuple[int, int, float]] = []  # (step, seed, temperature) of each request

    async def complete(self, requests):
        self.calls += 1
        self.requests += [(r.step.index, r.temperature) for r in requests]
        self.steps_per_call.append({r.step.index for r in requests})
        self.seeds += [(r.step.index, r.seed, r.temperature) for r in requests]
        return await self.inner.complete(requests)


def batch(task, model: str, steps, votes: int = 2):
    client = Recording(task, model)
    worker = SimpleNamespace(task=task, clients={model: client})
    job = EstimateJob(tuple(steps), (model,), VotingConfig(k=1), RedFlagPolicy(), seed=3, votes_per_step=votes)
    return asyncio.run(estimate_batch(worker, job)), client


def test_true_premises_follow_the_ground_truth() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    for i in range(task.total_steps):
        assert true_step(task, i) == step
        step = task.advance(step, task.truth(i))


def test_steps_are_random_distinct_and_reproducible() -> None:
    a = pick_steps(1023, 200, seed=1)
    assert a == pick_steps(1023, 200, seed=1) != pick_steps(1023, 200, seed=2)
    assert len(set(a)) == 200 and 0 <= min(a) and max(a) < 1023
    # more steps asked than the task has: each once (a repeat would redraw the same seeded samples)
    assert pick_steps(7, 20, seed=0) == list(range(7))
    assert pick_steps(7, 3, seed=0, voted=[1, 4, 6]) == [1, 4, 6] and pick_steps(7, 9, seed=0, voted=[2]) == [2]


def test_a_batch_draws_like_a_run_one_round_per_call() -> None:
    task = get_task("hanoi", disks=8)
    steps = range(0, 255, 5)
    tally, client = batch(task, "sim:0.9,redflag=0.3", steps)
    # Every step has its first sample at temperature 0 and later ones at 0.1.
    by_step: dict[int, list[float]] = {}
    for index, temperature in client.requests:
        by_step.setdefault(index, []).append(temperature)
    assert sorted(by_step) == list(steps)
    assert all(t[0] == 0.0 and set(t[1:]) <= {0.1} and len(t) >= 2 for t in by_step.values())
    assert tally.samples == len(client.requests) and tally.steps == len(steps)
    assert all(len(s) == 1 for s in client.steps_per_call)  # the engine's rounds: one step's round per call
    # Red-flagged samples are redrawn until each step has two valid votes.
    assert sum(tally.red_flags.values()) > 0 and tally.valid == tally.samples - sum(tally.red_flags.values())
    assert tally.steps_with_two + tally.short_steps >= len(steps) and tally.valid >= 2 * tally.steps_with_two


def test_grading_counts_right_votes_and_collisions() -> None:
    task = get_task("hanoi", disks=8)
    tally, _ = batch(task, "sim:1.0", range(255))
    assert tally.correct == tally.valid == tally.samples == 510 and tally.first_two_wrong == 0
    tally, _ = batch(task, "sim:0.0", range(255))
    assert tally.correct == 0 and tally.first_two_wrong == tally.steps_with_two == 255


def test_a_model_that_always_fails_is_asked_until_its_batch_stalls() -> None:
    """Not once per step: the batch's steps stop together once their failed calls reach
    `max_failed_calls` with no answer (`VotingConfig.stalled`, the count a run's step uses)."""
    task = get_task("hanoi", disks=6)
    tally, client = batch(task, "sim:0.9,fail=1", range(63))
    failed = VotingConfig().max_failed_calls
    assert tally.answered == 0 and tally.red_flags == {"transport": failed} and client.calls == failed // 2
    assert tally.first_error == "simulated call failure" and tally.steps == 63


def test_a_model_that_red_flags_everything_stops_where_a_run_would() -> None:
    """#27 §3: the estimate ran its own rounds with its own stops (here every step's first
    round, 126 samples, before its own cut-off check); through the engine it stops as a
    run's give-up counts say (`max_discards_in_a_row`), for the whole batch."""
    task = get_task("hanoi", disks=6)
    client = Recording(task, "sim:0.9,redflag=1")
    worker = SimpleNamespace(task=task, clients={client.name: client})
    voting = VotingConfig(k=1, max_discards_in_a_row=8)
    tally = asyncio.run(estimate_batch(worker, EstimateJob(tuple(range(63)), (client.name,), voting, RedFlagPolicy(), 3)))
    assert tally.valid == 0 and voting.max_discards_in_a_row <= tally.samples < voting.max_discards_in_a_row + 2


def test_an_estimate_draws_and_judges_what_the_engine_draws_for_the_same_seed() -> None:
    """The estimate's samples are the engine's: the same requests (step, seed, temperature)
    and the same verdicts as `vote_step` under the measuring rule and the salted seed."""
    from maker.budget.estimate import _ESTIMATE_SALT, measuring
    from maker.engine.step import Measure, vote_step

    task = get_task("hanoi", disks=7)
    steps = (3, 40, 99)
    tally, client = batch(task, "sim:0.8,redflag=0.2", steps, votes=3)
    engine = Recording(task, "sim:0.8,redflag=0.2")
    voting = measuring(VotingConfig(k=1), 3)

    async def by_engine():
        rule = Measure(3, voting)
        return [await vote_step(task, {engine.name: engine}, true_step(task, i), voting, RedFlagPolicy(), (engine.name,),
                                (3, _ESTIMATE_SALT), rule=rule) for i in steps]

    votes = asyncio.run(by_engine())
    assert sorted(client.seeds) == sorted(engine.seeds)
    rows = [r for v in votes for r in v.sample_rows()]
    assert tally.samples == len(rows) and tally.valid == sum(r[5] is not None for r in rows)
    assert tally.correct == sum(r[5] == task.truth(r[0]) for r in rows)
    assert sum(tally.red_flags.values()) == sum(r[6] is not None for r in rows)


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--model", "sim:0.9", "--samples", "0"], "--samples"),
        (["--model", "sim:0.9", "--target", "1.5"], "--target"),
        (["--model", "sim:0.9", "--target", "0"], "--target"),
        (["--model", "sim:0.9", "--steps", "0"], "--steps"),
        (["--model", "sim:0.9", "--votes-per-step", "1"], "--votes-per-step"),
        (["--model", "sim:0.9", "--price-in", "-1"], "--price-in"),
        (["--model", "sim:0.9", "--model", "nonsense"], "unknown model"),
        (["--model", "sim:1.7"], "accuracy"),
        (["--model", "sim:0.9", "--plot", "x.jpg"], "PNG"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, tmp_path, monkeypatch, args, needle) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "estimate", "hanoi", "--disks", "6", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("maker: error:") and needle in err
    assert not list(tmp_path.iterdir())


@pytest.mark.ray
def test_estimates_cover_the_true_p_and_pick_the_cheapest(ray_address) -> None:
    task = get_task("hanoi", disks=10)
    report = estimate(
        task,
        ["sim:0.9", "sim:0.99", "sim:0.99,hard=0.05,hard_p=0.1"],
        samples=300,
        target=0.95,
        cluster=ClusterConfig(address=ray_address),
        batch_steps=100,
    )
    plain, good, correlated = report.models
    for e, p in ((plain, 0.9), (good, 0.99)):
        assert e.p_low <= p <= e.p_high
        assert e.valid == 600 and e.verdict == "ok"
        assert e.k == voting.k_min_pessimistic(e.correct, e.valid, 1023, 0.95)
        assert e.cost_per_sample == 0.0 and e.simulated
    assert good.expected_samples_per_step < plain.expected_samples_per_step
    # Hard steps answered wrongly 90% of the time, always the same way: caught by collisions.
    assert correlated.p > plain.p and correlated.verdict == "correlated"
    assert correlated.collision_ratio > 5
    assert report.recommended == "sim:0.99" and report.simulated
    assert report.steps == 1023 and report.measured_steps == 300


@pytest.mark.ray
def test_cli_json_with_prices_red_flags_a_failing_model_and_a_plot(capsys, ray_address, tmp_path) -> None:
    png = tmp_path / "est.png"
    code, out, err = run_cli(
        capsys,
        "estimate",
        "hanoi",
        "--disks",
        "12",
        "--model",
        "sim:0.95,redflag=0.2",
        "--model",
        "sim:0.9,fail=1",
        "--samples",
        "200",
        "--steps",
        "1048575",
        "--target",
        "0.95",
        "--price-in",
        "0.4",
        "--price-out",
        "1.6",
        "--address",
        ray_address,
        "--json",
        "--plot",
        str(png),
    )
    assert code == 0, err
    report = json.loads(out)
    flagged, failed = report["models"]
    assert failed["verdict"] == "failed" and "simulated call failure" in failed["reason"]
    assert report["recommended"] == "sim:0.95,redflag=0.2" and report["steps"] == 1048575
    n, v = flagged["samples"], flagged["valid"]
    assert v >= 400 and set(flagged["red_flags"]) <= {"malformed", "rule_breaking", "overlong"}
    assert sum(flagged["red_flags"].values()) == n - v
    interval = voting.clopper_pearson(v, n, 0.999)
    assert interval.low <= 0.8 <= interval.high  # the simulator flags 20% of replies
    c = flagged["tokens_in_mean"] * 0.4 / 1e6 + flagged["tokens_out_mean"] * 1.6 / 1e6
    assert flagged["cost_per_sample"] == pytest.approx(c)
    assert flagged["expected_cost"] == pytest.approx(1048575 * flagged["expected_samples_per_step"] * c)
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.ray
def test_every_model_failing_is_exit_2(capsys, ray_address) -> None:
    code, out, err = run_cli(
        capsys,
        "estimate",
        "hanoi",
        "--disks",
        "6",
        "--model",
        "sim:0.9,fail=1",
        "--samples",
        "20",
        "--address",
        ray_address,
    )
    assert code == 2 and out == ""
    errors = [line for line in err.splitlines() if not line.startswith("maker: estimate ")]  # progress lines
    assert len(errors) == 1 and "every model failed" in errors[0]


@pytest.mark.ray
def test_no_model_can_reach_the_target_exit_1(capsys, ray_address) -> None:
    code, out, _ = run_cli(
        capsys, "estimate", "hanoi", "--disks", "6", "--model", "sim:0.4", "--samples", "100", "--address", ray_address
    )
    assert code == 1
    assert "no model can reach" in out and "1/2" in out


@pytest.mark.ray
def test_run_k_auto_estimates_p_first(capsys, ray_address, tmp_path) -> None:
    log = tmp_path / "h7.parquet"
    code, out, err = run_cli(
        capsys,
        "run",
        "hanoi",
        "--disks",
        "7",
        "--model",
        "sim:0.95",
        "--k",
        "auto",
        "--target",
        "0.95",
        "--estimate-samples",
        "150",
        "--log",
        str(log),
        "--json",
        "--quiet",
        "--address",
        ray_address,
    )
    assert code == 0, err
    result = json.loads(out)
    (e,) = result["extra"]["estimate"]["models"]
    assert e["model"] == "sim:0.95" and e["p_low"] <= 0.95 <= e["p_high"]
    assert result["k"] == e["k"] == voting.k_min_pessimistic(e["correct"], e["valid"], 127, 0.95)
    assert result["solved"] and result["errors"] == 0
    assert "estimated p" in err and f"k = {e['k']}" in err


@pytest.mark.ray
def test_run_k_auto_refuses_a_model_that_cannot(capsys, ray_address, tmp_path) -> None:
    log = tmp_path / "no.parquet"
    code, out, err = run_cli(
        capsys,
        "run",
        "hanoi",
        "--disks",
        "6",
        "--model",
        "sim:0.45",
        "--k",
        "auto",
        "--estimate-samples",
        "60",
        "--log",
        str(log),
        "--address",
        ray_address,
    )
    assert code == 2 and out == "" and "nothing was run" in err and not log.exists()
