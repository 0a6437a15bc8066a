"""A run is the same run, and its summary never contradicts itself (issue #25 §4).

A grid walk whose move list is seeded in its own file: editing the file between a run and
its `--resume` must be refused (one line, exit 2), go on only when asked (and then be
recorded), and be named by `replay --verify`.  A task named by absolute path records its
options; a resumed guard restores its vote counts; `maker estimate` says what it graded."""

from __future__ import annotations

import json
import sys
import textwrap

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task

import maker
from maker.budget.estimate import estimate
from maker.log.steplog import open_log
from maker.runtime.guard import log_events

GRID = '''
import random

import maker

SEED = {seed}


def grid(n: int = 40):
    moves = [random.Random(SEED * 1000 + i).choice([-1, 1, 2]) for i in range(n)]
    return maker.chain_task(name=__file__ + ":grid", start=0, steps=n, key="integer",
                            prompt=lambda pos, i: f"position {{pos}}, move {{moves[i]:+d}}, new position",
                            truth=lambda pos, i: pos + moves[i])
'''


def _write(path, seed: int) -> None:
    path.write_text(textwrap.dedent(GRID.format(seed=seed)))
    for name in [m for m in sys.modules if m.startswith("_maker_user_grid_")]:
        del sys.modules[name]  # as a new process would: load the file as it is now


def test_a_task_named_by_absolute_path_records_its_options(tmp_path) -> None:
    path = tmp_path / "grid.py"
    _write(path, 1)
    task = get_task(f"{path}:grid", n=12)
    assert task.spec.name == f"{path}:grid" and task.spec.options == {"n": 12}
    from maker.cluster import ModelSpec

    from maker.runtime.driver import run_metadata

    meta = run_metadata(task, [ModelSpec("sim:0.9")], maker.VotingConfig(), 0)
    assert meta["task_options"] == {"n": 12} and meta["task_code"]["file"] == str(path.resolve())


@pytest.mark.ray
def test_resume_on_changed_code_is_refused_then_recorded_and_named_by_verify(maker_cli, tmp_path) -> None:
    path, log = tmp_path / "grid.py", tmp_path / "grid.parquet"
    _write(path, 1)
    common = ["run", "--task", f"{path}:grid", "--n", "40", "--model", "sim:0.99", "--k", "2", "--log", str(log), "--quiet"]
    first = maker_cli(*common, "--max-steps", "15")
    assert first.returncode == 0 and "so far: stopped after 15 of 40 steps" in first.stdout
    assert open_log(log).run["task_options"] == {"n": 40}

    _write(path, 2)  # the move list re-seeded
    refused = maker_cli(*common, "--resume")
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0
    assert "the task's code changed" in refused.stderr and "--resume-changed-code" in refused.stderr
    assert len(list(log.glob("part-*.parquet"))) == 1  # nothing written

    forced = maker_cli(*common, "--resume", "--resume-changed-code")
    assert forced.returncode == 1
    assert "NOT solved in 40 steps, 0 errors: no decision differs from the ground truth on its own premise" in forced.stdout
    changes = [d for _, d in log_events(open_log(log)) if d.get("event") == "code_change"]
    assert len(changes) == 1 and changes[0]["from_step"] == 15

    verified = maker_cli("replay", str(log), "--verify")
    assert verified.returncode == 1 and "wrong steps of 40 decided" in verified.stdout  # every wrong step named (#24 §5)
    assert "resumed at step 15 on changed code" in verified.stdout and "the task's code changed" in verified.stdout


@pytest.mark.ray
def test_a_resumed_guard_restores_its_vote_counts_from_the_log(tmp_path) -> None:
    log = tmp_path / "h.parquet"
    task = get_task("hanoi", disks=6)
    maker.run(task, ["sim:0.95"], maker.VotingConfig(k=3), log=log, max_steps=30)
    result = maker.run(task, ["sim:0.95"], maker.VotingConfig(k=3), log=log, resume=True)
    assert result.errors == 0  # (a vote for another answer than a wrong decision is not graded)
    table = pq.read_table(log)
    samples = table.filter(pc.equal(table["kind"], "sample"))
    counted = samples.filter(pc.and_(samples["counted"], pc.invert(samples["wasted"])))
    guard = result.extra["guard"]
    assert result.resumed_from_step == 30 and guard["votes"] == counted.num_rows  # the whole run, not the last leg
    assert sum(1 for _, d in log_events(open_log(log)) if d.get("event") == "alarm") == len(
        {d.get("alarm") for _, d in log_events(open_log(log)) if d.get("event") == "alarm"})  # none raised twice


@pytest.mark.ray
def test_estimate_grades_only_voted_steps_and_says_how_many(tmp_path) -> None:
    sys.path.insert(0, "examples")
    try:
        task = get_task("examples/records.py:records", n=10)  # 10 voted steps and one tool step
    finally:
        sys.path.remove("examples")
    report = estimate(task, ["sim:0.9"], samples=20)
    (m,) = report.models
    assert m.verdict == "ok" and report.measured_steps == 10 and m.measured_steps == 10
    assert report.graded_text == "10 steps graded (the task has 10 voted steps: --samples 20 measures each once)"
    assert json.loads(json.dumps(report.to_dict()))["asked_steps"] == 20
