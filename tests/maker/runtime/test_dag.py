"""The DAG runner, its audit, plan-show and the LLM decomposer.

Runs go through the session's real Ray instance.  The only fakes sit at the model
boundary: the simulator `sim:P` (answers plan steps from ground truth) and the scripted
model `script:arith` / `ScriptedModel(handler)` (plays decomposer and solver).
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from maker.cluster import ModelSpec, make_client
from maker.cluster.simulated.scripted import ScriptedModel
from maker.tasks import get_task
from maker.tasks.plans.plan import PlanError
from maker.tasks.plans.solve import DECOMPOSE_MARK

from maker import ClusterConfig, VoteCapError, VotingConfig, run, verify_log
from maker.engine.red_flags import RedFlagPolicy
from maker.log.steplog import open_log, read_table
from maker.runtime.dag import DagConfig, NodeJob, check_batch, vote_nodes
from maker.runtime.decompose import DecomposeConfig, decompose, solve
from maker.runtime.driver import run as run_plan


def decisions(log: Path) -> list[tuple[int, str, str]]:
    table = read_table(open_log(log), ["step", "answer", "detail"], kind="decision")
    return sorted(zip(table["step"].to_pylist(), table["answer"].to_pylist(), table["detail"].to_pylist()))


# -- pure parts: a batch voted in-process, and the driver's check of it ---------------------
def _voted_batch(task, steps, model="sim:0.9"):
    worker = SimpleNamespace(task=task, clients={model: make_client(ModelSpec(model), task)})
    job = NodeJob(tuple(steps), VotingConfig(k=3), RedFlagPolicy(), (model,), 7)
    return asyncio.run(vote_nodes(worker, job))


def test_a_batch_votes_every_step_and_the_driver_rejects_tampering() -> None:
    task = get_task("multiply", digits=5)
    steps = [task.step_input(i, {}) for i in range(25)]
    result = _voted_batch(task, steps)
    sent = {s.index: s for s in steps}
    assert sorted(result.decisions["step"]) == list(range(25))
    assert result.decisions["answer"] == [task.truth(i) for i in range(25)]
    assert check_batch(result, sent, task, 3) is None
    result.decisions["answer"][3] = "product = 1"
    assert "do not decide" in check_batch(result, sent, task, 3)
    assert "not sent" in check_batch(_voted_batch(task, steps), {i: sent[i] for i in range(24)}, task, 3)


def test_seeded_draws_do_not_depend_on_how_steps_are_batched() -> None:
    task = get_task("sort", n=16)
    steps = [task.step_input(i, {}) for i in range(8)]
    together = _voted_batch(task, steps, "sim:0.7")
    alone = [_voted_batch(task, [s], "sim:0.7") for s in steps]
    assert together.samples["reply"] == [r for part in alone for r in part.samples["reply"]]


# -- end to end through Ray ------------------------------------------------------------------

@pytest.mark.ray
@pytest.mark.parametrize("name, options", [("multiply", {"digits": 4}), ("sort", {"n": 24}), ("add", {"digits": 12})])
def test_each_decomposer_runs_end_to_end_with_a_verified_answer(ray_address, tmp_path, name, options) -> None:
    task = get_task(name, **options)
    log = tmp_path / f"{name}.parquet"
    result = run_plan(task, ["sim:0.95,redflag=0.05"], VotingConfig(k=3), log=log,
                      cluster=ClusterConfig(workers=2, address=ray_address))
    assert result.solved and result.errors == 0 and result.simulated
    assert result.extra["answer"] == result.extra["expected_answer"] == task.expected_answer()
    assert result.steps == task.total_steps and result.red_flags > 0
    logged = decisions(log)
    assert [s for s, _, _ in logged] == list(range(task.total_steps))
    assert all(answer == task.truth(s) and detail == task.label(s) for s, answer, detail in logged)
    report = verify_log(log)
    assert report.valid and report.solved and report.steps == task.total_steps
    meta = open_log(log).run
    assert meta["dag"]["widths"] == task.plan.widths() and meta["simulated"]


@pytest.mark.ray
def test_parallel_and_sequential_dispatch_decide_the_same(ray_address, tmp_path) -> None:
    task = get_task("multiply", digits=4)
    runs = {}
    for sequential in (False, True):
        log = tmp_path / f"m-{sequential}.parquet"
        runs[sequential] = run_plan(task, ["sim:0.9"], VotingConfig(k=3), log=log,
                                    cluster=ClusterConfig(workers=2, address=ray_address),
                                    dag=DagConfig(sequential=sequential))
        runs[sequential].extra["decisions"] = decisions(log)
    par, seq = runs[False], runs[True]
    assert par.extra["decisions"] == seq.extra["decisions"]
    assert par.samples == seq.samples and par.solved and seq.solved
    assert seq.extra["ray_calls"] == task.total_steps and seq.extra["most_calls_in_flight"] == 1
    # the 16 digit products go out together: far fewer calls, several at once
    assert par.extra["ray_calls"] <= 4 + 7 and par.extra["most_calls_in_flight"] >= 2


@pytest.mark.ray
def test_a_path_runs_the_same_on_the_chain_runner(ray_address, tmp_path) -> None:
    task = get_task("add", digits=8)
    run(task, ["sim:0.9"], VotingConfig(k=3), log=tmp_path / "chain.parquet", cluster=ClusterConfig(address=ray_address))
    run_plan(task, ["sim:0.9"], VotingConfig(k=3), log=tmp_path / "dag.parquet", cluster=ClusterConfig(address=ray_address))
    chain = [(s, a) for s, a, _ in decisions(tmp_path / "chain.parquet")]
    dag = [(s, a) for s, a, _ in decisions(tmp_path / "dag.parquet")]
    assert chain == dag and len(dag) == 8
    assert verify_log(tmp_path / "chain.parquet").solved


@pytest.mark.ray
def test_the_vote_cap_stops_a_plan_loudly_and_keeps_the_log(ray_address, tmp_path) -> None:
    log = tmp_path / "cap.parquet"
    with pytest.raises(VoteCapError, match=r"step \d+ \(#E\d+ mul\)"):
        run_plan(get_task("multiply", digits=3), ["sim:0.0"], VotingConfig(k=3, max_samples_per_step=6), log=log,
                 cluster=ClusterConfig(address=ray_address))
    samples = read_table(open_log(log), ["step"], kind="sample")
    assert samples.num_rows >= 6


@pytest.mark.ray
def test_cli_runs_a_plan_and_refuses_bad_ones_in_one_line(ray_address, tmp_path, maker_cli) -> None:
    log = tmp_path / "m.parquet"
    done = maker_cli("run", "multiply", "--digits", "3", "--model", "sim:0.99", "--k", "2", "--address", ray_address,
                     "--log", str(log), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["solved"] and out["extra"]["answer_correct"] and out["steps"] == 14
    assert maker_cli("replay", str(log), "--verify").returncode == 0
    bad = tmp_path / "bad.plan"
    bad.write_text("#E1 = mul(2, 3)\n#E2 = column(0, #E1, #E7)\nanswer = #E2\n")
    for args in (("run", "plan", "--file", str(bad), "--model", "sim:0.9", "--log", str(tmp_path / "no.parquet")),
                 ("plan-show", "plan", "--file", str(bad))):
        refused = maker_cli(*args)
        assert refused.returncode == 2
        assert refused.stderr.strip() == "maker: error: step #E2: input #E7 is not defined by any step"
    assert not (tmp_path / "no.parquet").exists()
    refused = maker_cli("run", "sort", "--n", "8", "--model", "sim:0.9", "--resume", "--log", str(tmp_path / "none"))
    assert refused.returncode == 2 and "nothing to resume" in refused.stderr  # plans resume (test_plan_runs.py)
    refused = maker_cli("run", "sort", "--n", "8", "--model", "sim:0.9", "--draft", "reference")
    assert refused.returncode == 2 and "--draft applies to chained tasks" in refused.stderr


def test_plan_show_prints_levels_and_dependencies(maker_cli) -> None:
    shown = maker_cli("plan-show", "multiply", "--digits", "3")
    assert shown.returncode == 0
    assert "14 steps in 6 levels, widest level 9" in shown.stdout
    assert "#E11 = column(#E10.carry, #E2, #E4)" in shown.stdout and "waits for #E10, #E2, #E4" in shown.stdout
    text = maker_cli("plan-show", "sort", "--n", "8", "--text").stdout
    listing = json.loads(maker_cli("plan-show", "sort", "--n", "8", "--json").stdout)
    assert listing["steps"][-1]["id"] == f"E{len(listing['steps'])}" and text.count(" = cmp(") == len(listing["steps"])


# -- the LLM decomposer -----------------------------------------------------------------------
@pytest.mark.ray
def test_solve_plans_with_voted_proposals_then_runs_the_plan(ray_address, tmp_path) -> None:
    """script:arith,p=0.9 proposes a wrong plan (and gives a wrong answer) one time in ten."""
    log = tmp_path / "solve.parquet"
    problem = "Compute (12 + 7) * (3 + 4) - 5 * (2 + 6)"
    plan, result = solve(problem, ["script:arith,p=0.9"], VotingConfig(k=3), log=log,
                         cluster=ClusterConfig(workers=2, address=ray_address))
    assert result.extra["answer"] == str((12 + 7) * (3 + 4) - 5 * (2 + 6))
    assert result.errors is None and result.simulated and result.solved  # no ground truth: errors unknown
    first = sorted(s.args[0] for s, level in zip(plan.plan.steps, plan.plan.levels()) if level == 0)
    assert first == ["Compute 12 + 7", "Compute 2 + 6", "Compute 3 + 4"]  # independent: they run together
    assert all(v.decision == max(v.proposals, key=v.proposals.get) for v in plan.votes)
    report = verify_log(log)
    assert report.valid and report.solved is None and report.steps == len(plan.plan)  # finished, not known right
    assert report.wrong_decisions is None
    assert open_log(log).run["plan_votes"][0]["problem"] == problem


def test_solve_dry_run_prints_the_plan_without_ray(maker_cli) -> None:
    shown = maker_cli("solve", "Compute (1 + 2) * (3 + 4)", "--model", "script:arith", "--k", "2", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    assert '#E3 = solve("Compute #E1 * #E2")' in shown.stdout and "[simulated model]" in shown.stdout
    refused = maker_cli("solve", "Compute 1 + 2", "--model", "sim:0.9", "--dry-run")
    assert refused.returncode == 2 and "a free-form problem has none" in refused.stderr


def test_plan_proposals_are_voted_and_a_wrong_one_loses() -> None:
    """A scripted decomposer whose first (temperature 0) proposal per request is wrong."""
    arith = make_client(ModelSpec("script:arith"), None)

    def first_one_wrong(text: str, request) -> str:
        if DECOMPOSE_MARK in text and request.temperature == 0:
            inputs = int(re.search(r"from #E(\d+)", text).group(1)) - 1
            return f"#E{inputs + 1} = Compute 7 * 7\n#E{inputs + 2} = Compute #E{inputs + 1} - 1"
        return arith.handler(text, request)

    done = asyncio.run(decompose("Compute (1 + 2) * (3 + 4)", {"m": ScriptedModel(first_one_wrong)}, ["m"],
                                 VotingConfig(k=2)))
    assert [s.args[0] for s in done.plan.steps] == ["Compute 1 + 2", "Compute 3 + 4", "Compute #E1 * #E2"]
    root = done.votes[0]
    assert root.proposals == {"#E1 = Compute 7 * 7\n#E2 = Compute #E1 - 1": 1, root.decision: 3}
    assert root.samples == 4 and root.votes == 4


def test_a_decomposition_that_never_reaches_atomic_steps_is_refused() -> None:
    """A scripted decomposer that always splits again: the depth limit names the step."""

    def never_atomic(text: str, request) -> str:
        if DECOMPOSE_MARK not in text:
            return "answer = 1"
        n = int(re.search(r"Number your steps from #E(\d+)", text).group(1))
        return f"#E{n} = the first half of it\n#E{n + 1} = the rest of it after #E{n}"

    clients = {"script:split": ScriptedModel(never_atomic)}
    with pytest.raises(PlanError, match=r"^step #E\d+ \('the first half of it'\): still not atomic at depth 2"):
        asyncio.run(decompose("Do a big thing", clients, ["script:split"], VotingConfig(k=2),
                              config=DecomposeConfig(max_depth=2)))
    with pytest.raises(PlanError, match="grew past 3 atomic steps"):
        asyncio.run(decompose("Compute 1 + 2 + 3 + 4 + 5 + 6", {"m": make_client(ModelSpec("script:arith"), None)},
                              ["m"], VotingConfig(k=1), config=DecomposeConfig(max_steps=3)))


def test_a_decomposition_that_gives_up_raises_the_shared_step_error() -> None:
    """#27 §3: the decomposer raised its own VoteCapError ("no proposal led by k") whatever
    the cause; it now raises what every runner raises for a step that gives up
    (`step_failure`): here every proposal red-flagged, so DiscardStreakError with its counts."""
    from maker.errors import DiscardStreakError

    clients = {"m": ScriptedModel(lambda text, request: "I would rather not plan this.")}
    voting = VotingConfig(k=2, max_discards_in_a_row=4)
    with pytest.raises(DiscardStreakError, match=r"^decomposing 'Do a thing': all 4 samples were red-flagged "
                                                 r"\(malformed 4\).*nothing was run$") as info:
        asyncio.run(decompose("Do a thing", clients, ["m"], voting))
    assert info.value.samples == 4 and info.value.reasons == {"malformed": 4}
