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
        ("hanoi", {"disk": 4}, ["sim:0.9"], 3, r"does not take option\(s\) disk"),  # maker run's own check
        ("hanoi", {"disks": "4"}, ["sim:0.9"], 3, "must be an integer"),
        ("hanoi", {}, ["sim:0.9"], 3, "needs the option"),
        ("hanoi", {"disks": 3}, ["--help"], 3, "model strings"),
        ("hanoi", {"disks": 3}, [], 3, "model strings"),
        ("hanoi", {"disks": 3}, ["sim:0.9"], 0, "k must be"),
        ("hanoi", {"disks": 3}, ["sim:0.9"], "3", "k must be"),
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


def test_progress_never_claims_errors_without_ground_truth_and_names_drawn_samples(tmp_path) -> None:
    """No ground truth: errors are None, never 0.  Wasted speculative samples are drawn but
    not counted, so `samples` is the figure `maker run` reports and `samples_drawn` the one
    `maker report` calls drawn."""
    log = tmp_path / "log"
    r = maker.vote("6*7?", ["sim:0.9"], k=2, key="integer", expected="42", seed=1, log=log)
    info = open_log(log)
    samples = read_table(info, list(SAMPLE_COLUMNS), kind="sample").to_pydict()
    samples["wasted"] = [True] * len(samples["wasted"])  # a speculative branch that lost: drawn, paid, not counted
    samples["counted"] = [False] * len(samples["counted"])
    StepLogWriter(log, info.run, resume=True).append({c: samples[c] for c in SAMPLE_COLUMNS}, {})
    st = LogProgress(log).update()
    assert (st["samples"], st["samples_drawn"]) == (r.samples, 2 * r.samples)
    assert st["samples_per_step"] == r.samples and st["errors"] == (0 if r.correct else 1)

    unknown = tmp_path / "unknown"
    maker.vote("Name a colour", ["script:arith"], k=1, key="text", log=unknown)  # no expected: no ground truth
    st = LogProgress(unknown).update()
    assert st["steps"] == 1 and st["errors"] is None


def test_progress_reports_the_abandoned_calls_estimate_apart_as_maker_run_does(tmp_path) -> None:
    """A sample whose log row carries `abandoned_usd` (calls given up on behind it, which the
    provider may still bill): status says it apart from cost_usd, as `maker run` does."""
    log = tmp_path / "log"
    maker.vote("6*7?", ["sim:0.9"], k=2, key="integer", expected="42", seed=1, log=log)
    assert LogProgress(log).update()["abandoned_usd"] == 0
    info = open_log(log)
    samples = read_table(info, list(SAMPLE_COLUMNS), kind="sample").to_pydict()
    samples["abandoned_usd"] = [0.25] + [0.0] * (len(samples["abandoned_usd"]) - 1)
    StepLogWriter(log, info.run, resume=True).append({c: samples[c] for c in SAMPLE_COLUMNS}, {})
    st = LogProgress(log).update()
    assert st["abandoned_usd"] == 0.25 and st["cost_usd"] == 0
