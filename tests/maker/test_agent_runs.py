"""Background runs for agents: argument checks (nothing started) and progress read from a growing log."""

from __future__ import annotations

import pytest

import maker
from maker.agents.runs import LogProgress, Runs
from maker.engine.rows import SAMPLE_COLUMNS
from maker.log.steplog import StepLogWriter, open_log, read_table
from maker.runtime.dag import PLAN_DECISION_COLUMNS


@pytest.mark.parametrize(
    ("task", "options", "models", "k", "message"),
    [
        ("vote", {}, ["sim:0.9"], 3, "cannot be run here"),
        ("solve", {}, ["sim:0.9"], 3, "cannot be run here"),
        ("hanoi", {"disk": 4}, ["sim:0.9"], 3, "no option 'disk'"),
        ("hanoi", {"disks": "4"}, ["sim:0.9"], 3, "must be an integer"),
        ("hanoi", {}, ["sim:0.9"], 3, "needs the option"),
        ("hanoi", {"disks": 3}, ["--help"], 3, "model strings"),
        ("hanoi", {"disks": 3}, [], 3, "model strings"),
        ("hanoi", {"disks": 3}, ["sim:0.9"], 0, "k must be"),
    ],
)
def test_bad_run_arguments_start_nothing(tmp_path, task, options, models, k, message) -> None:
    runs = Runs(tmp_path)
    with pytest.raises(maker.UsageError, match=message):
        runs.start(task, options, models, k=k)
    assert not (tmp_path / "maker-runs").exists() and not runs.runs


def test_progress_reads_each_new_part_once(tmp_path) -> None:
    log = tmp_path / "log"
    progress = LogProgress(log)
    assert progress.update()["steps"] == 0  # nothing on disk yet
    r = maker.vote("6*7?", ["sim:0.7,redflag=0.2"], k=3, key="integer", expected="42", seed=4, log=log)
    first = progress.update()
    assert (first["steps"], first["samples"], first["red_flags"]) == (1, r.samples, sum(r.red_flags.values()))
    assert first["errors"] == (0 if r.correct else 1) and first["total_steps"] == 1 and first["simulated"]
    # a second part lands: only it is read (counts double, not triple)
    info = open_log(log)
    samples = read_table(info, list(SAMPLE_COLUMNS), kind="sample").to_pydict()
    decisions = read_table(info, list(PLAN_DECISION_COLUMNS), kind="decision").to_pydict()
    StepLogWriter(log, info.run, resume=True).append({c: samples[c] for c in SAMPLE_COLUMNS},
                                                     {c: decisions[c] for c in PLAN_DECISION_COLUMNS})
    second = progress.update()
    assert (second["steps"], second["samples"]) == (2, 2 * r.samples)
    assert progress.update() == second
