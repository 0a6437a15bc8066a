"""Plan runs get what chain runs have: one driver (`maker.run`) for both task shapes.

Runs go through the session's real Ray instance; the only fake is the simulator `sim:P`
at the model boundary.  Expectations are read back from the step log's own rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from maker.tasks import get_task

from maker import ClusterConfig, VotingConfig, run, verify_log
from maker.budget.estimate import estimate
from maker.log.steplog import decisions, open_log, read_table

pytestmark = pytest.mark.ray


def _samples(log: Path) -> dict[str, list]:
    table = read_table(open_log(log), ["step", "sample", "answer", "red_flag", "counted"], kind="sample")
    return {c: table[c].to_pylist() for c in table.column_names}


def test_maker_run_runs_a_plan_from_python_like_the_cli(ray_address, tmp_path, maker_cli) -> None:
    task = get_task("multiply", digits=3)
    result = run(task, ["sim:0.99"], VotingConfig(k=2), log=tmp_path / "py.parquet", seed=4,
                 cluster=ClusterConfig(address=ray_address))
    assert result.solved and result.simulated and result.steps == task.total_steps
    assert result.extra["answer"] == task.expected_answer() and result.extra["answer_correct"] is True
    done = maker_cli("run", "multiply", "--digits", "3", "--model", "sim:0.99", "--k", "2", "--seed", "4",
                     "--address", ray_address, "--log", str(tmp_path / "cli.parquet"), "--json", "--quiet")
    assert done.returncode == 0, done.stderr
    cli = json.loads(done.stdout)
    assert sorted(cli) == sorted(result.to_dict()) and sorted(cli["extra"]) == sorted(result.extra)
    for key in ("solved", "simulated", "steps", "samples", "red_flags", "k", "models"):
        assert cli[key] == result.to_dict()[key]
    assert cli["extra"]["answer"] == result.extra["answer"]
    assert decisions(tmp_path / "py.parquet") == decisions(tmp_path / "cli.parquet")


def test_a_plan_run_draws_on_both_prompt_variants(ray_address, tmp_path, maker_cli) -> None:
    # Every step is hard: prompt variant 0 is right half the time, variant 1 always
    # (variant_bias=1).  Sample i goes to variant i % 2 with one model.
    log = tmp_path / "v.parquet"
    done = maker_cli("run", "multiply", "--digits", "4", "--model", "sim:1.0,hard=1,hard_p=0.5,variant_bias=1,seed=3",
                     "--k", "2", "--prompt-variants", "2", "--address", ray_address, "--log", str(log), "--json",
                     "--quiet")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["solved"]
    task = get_task("multiply", digits=4)
    rows = _samples(log)
    votes = [(i, a == task.truth(s)) for s, i, a, c in zip(rows["step"], rows["sample"], rows["answer"], rows["counted"]) if c]
    on_variant = {v: [ok for i, ok in votes if i % 2 == v] for v in (0, 1)}
    assert on_variant[0] and on_variant[1]
    assert all(on_variant[1]) and not all(on_variant[0])  # the variant reached the model


def test_a_plan_run_applies_a_custom_red_flag_detector(ray_address, tmp_path, maker_cli) -> None:
    checks = tmp_path / "planchecks.py"
    checks.write_text(
        "def not_reference(sample, ctx):\n"
        "    right = ctx.task.reference_reply(ctx.step)\n"
        "    return None if sample.text.strip() == right else 'not the reference answer'\n"
    )
    log = tmp_path / "rf.parquet"
    done = maker_cli("run", "multiply", "--digits", "4", "--model", "sim:0.7,seed=1", "--k", "2",
                     "--red-flag", f"{checks}:not_reference", "--address", ray_address, "--log", str(log), "--json",
                     "--quiet")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    rows = _samples(log)
    discarded = [c for f, c in zip(rows["red_flag"], rows["counted"]) if f == "not_reference"]
    assert discarded and not any(discarded)
    assert out["red_flags_by_reason"]["not_reference"] == len(discarded) and out["errors"] == 0


def test_a_flag_a_plan_cannot_serve_is_refused_in_one_line(maker_cli) -> None:
    for flag in (("--speculate", "4"), ("--max-steps", "3"), ("--draft", "reference"), ("--segment-steps", "64")):
        refused = maker_cli("run", "sort", "--n", "8", "--model", "sim:0.9", *flag)
        assert refused.returncode == 2 and refused.stdout == ""
        assert refused.stderr.count("\n") == 1 and f"{flag[0]} applies to chained tasks" in refused.stderr


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "maker.cli.main", *args]


@pytest.mark.subprocess
def test_a_plan_run_killed_and_resumed_equals_an_uninterrupted_run(ray_address, tmp_path, maker_cli) -> None:
    """kill -9 of a `maker run` process of a plan; `--resume` (the CLI, in this process: the
    killed one is what must be a process) ends with the uninterrupted run's decisions."""
    common = ["run", "sort", "--n", "200", "--model", "sim:0.995,latency=0.003,seed=2", "--k", "3", "--quiet",
              "--address", ray_address]
    reference = tmp_path / "ref.parquet"
    assert maker_cli(*common, "--log", str(reference)).returncode == 0
    log = tmp_path / "killed.parquet"
    proc = subprocess.Popen(_cmd(*common, "--log", str(log)))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(log.glob("part-*.parquet"))) < 1 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = decisions(log)
    assert 0 < len(partial) < len(decisions(reference))
    done = maker_cli(*common, "--log", str(log), "--resume", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["resumed_from_step"] == len(partial) and out["solved"]
    assert decisions(log) == decisions(reference)  # no node missing, none duplicated, same decisions
    assert verify_log(log).solved


def test_k_auto_estimates_with_the_runs_prompt_variants(ray_address, tmp_path, maker_cli) -> None:
    # Hard steps mislead prompt variant 0 only: spread over 2 variants, p is measurably higher.
    model = "sim:0.999,hard=0.3,hard_p=0.6,variant_bias=1,seed=5"
    task = get_task("hanoi", disks=8)
    cluster = ClusterConfig(address=ray_address)
    p = {n: estimate(task, [model], samples=150, voting=VotingConfig(k=1, prompt_variants=n), cluster=cluster,
                     mix=True).models[0].p for n in (1, 2)}
    assert p[2] > p[1] + 0.03
    picked = {}
    for n in (1, 2):
        done = maker_cli("run", "hanoi", "--disks", "8", "--model", model, "--k", "auto", "--estimate-samples", "150",
                         "--prompt-variants", str(n), "--address", ray_address, "--log", str(tmp_path / f"a{n}.parquet"),
                         "--json")
        out = json.loads(done.stdout)
        assert "maker: estimate 1/" in done.stderr  # the progress line
        picked[n] = out["extra"]["estimate"]["models"][0]["p"]
    assert picked == pytest.approx(p)


def test_a_plan_run_has_the_live_guard_and_k_auto(ray_address, tmp_path, maker_cli) -> None:
    # A fifth of the steps are hard (accuracy 0.8): the guard sees p fall below the plan and raises k.
    log = tmp_path / "g.parquet"
    done = maker_cli("run", "sort", "--n", "64", "--model", "sim:0.999,hard=0.2,hard_p=0.8,seed=2", "--k", "2",
                     "--p", "0.99", "--adaptive-k", "--k-max", "5", "--address", ray_address, "--log", str(log),
                     "--json", "--quiet")
    guard = json.loads(done.stdout)["extra"]["guard"]
    assert guard["k"] > 2 and any(e["event"] == "k_change" for e in guard["events"])
    events = read_table(open_log(log), ["detail"], kind="event")["detail"].to_pylist()
    assert any('"k_change"' in e for e in events)
    # each node is audited under a k the run used: the votes decide every decision (a hard
    # step may still be decided wrong, which the audit reports as such)
    assert verify_log(log).reason in (None, "decision differs from the ground truth")
    # --k auto on a plan estimates p on true node premises first
    done = maker_cli("run", "multiply", "--digits", "3", "--model", "sim:0.95", "--k", "auto", "--estimate-samples", "60",
                     "--address", ray_address, "--log", str(tmp_path / "auto.parquet"), "--json")
    assert done.returncode in (0, 1), done.stderr
    out = json.loads(done.stdout)
    assert out["extra"]["estimate"]["models"][0]["p"] > 0.85 and out["k"] >= 2
