"""End-to-end runs through the session's real Ray instance, with the simulator as the
model (the only fake, at the model boundary)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task

from maker import ClusterConfig, VoteCapError, VotingConfig, run, verify_log
from maker.log.steplog import decisions, open_log, read_table

pytestmark = pytest.mark.ray


def test_ten_disks_zero_errors_and_verified(ray_address, tmp_path) -> None:
    log = tmp_path / "h10.parquet"
    result = run(get_task("hanoi", disks=10), ["sim:0.998"], VotingConfig(k=3), log=log,
                 cluster=ClusterConfig(segment_steps=300))
    assert result.solved and result.errors == 0
    assert result.steps == result.total_steps == 1023
    assert result.simulated
    assert 3.0 <= result.samples_per_step < 3.2
    report = verify_log(log)
    assert report.valid and report.solved and report.steps == 1023
    assert [s for s, _ in decisions(log)] == list(range(1023))
    task = get_task("hanoi", disks=10)
    assert all(answer == task.truth(s) for s, answer in decisions(log))


def test_red_flagged_samples_never_vote_and_models_mix(ray_address, tmp_path) -> None:
    log = tmp_path / "mix.parquet"
    result = run(get_task("hanoi", disks=7), ["sim:0.95,redflag=0.1", "sim:0.9,seed=3"], VotingConfig(k=3), log=log)
    assert result.solved and result.errors == 0
    assert result.red_flags > 0 and set(result.red_flags_by_reason) <= {"malformed", "rule_breaking", "overlong"}
    samples = read_table(open_log(log), kind="sample")
    flagged = samples.filter(pc.is_valid(samples["red_flag"]))
    assert flagged.num_rows == result.red_flags
    assert not any(flagged["counted"].to_pylist())
    assert set(samples["model"].to_pylist()) == {"sim:0.95,redflag=0.1", "sim:0.9,seed=3"}
    first = samples.filter(pc.equal(samples["sample"], 0))
    assert set(first["temperature"].to_pylist()) == {0.0}
    later = samples.filter(pc.greater(samples["sample"], 0))
    assert {round(t, 3) for t in later["temperature"].to_pylist()} == {0.1}


def test_vote_cap_fails_loudly_and_keeps_the_log(ray_address, tmp_path) -> None:
    log = tmp_path / "cap.parquet"
    with pytest.raises(VoteCapError, match="step 0"):
        run(get_task("hanoi", disks=3), ["sim:0.9,redflag=1.0"], VotingConfig(k=2, max_samples_per_step=7), log=log)
    samples = read_table(open_log(log), kind="sample")
    assert samples.num_rows == 7
    assert not any(samples["counted"].to_pylist())


def test_seeded_runs_repeat_and_segments_do_not_matter(ray_address, tmp_path) -> None:
    task = get_task("hanoi", disks=8)
    a = run(task, ["sim:0.8,seed=5"], VotingConfig(k=2), log=tmp_path / "a", cluster=ClusterConfig(segment_steps=7))
    b = run(task, ["sim:0.8,seed=5"], VotingConfig(k=2), log=tmp_path / "b", cluster=ClusterConfig(segment_steps=500))
    assert a.samples == b.samples
    assert decisions(tmp_path / "a") == decisions(tmp_path / "b")


def tamper(log: Path, step: int, answer: str) -> None:
    for part in sorted(log.glob("part-*.parquet")):
        table = pq.read_table(part)
        mask = pc.and_(pc.equal(table["kind"], "decision"), pc.equal(table["step"], step))
        if pc.any(mask).as_py():
            column = table.schema.get_field_index("answer")
            answers = pc.if_else(mask, answer, table["answer"])
            pq.write_table(table.set_column(column, "answer", answers), part)
            return
    raise AssertionError("step not found")


def test_replay_catches_a_flipped_decision(ray_address, tmp_path) -> None:
    log = tmp_path / "t.parquet"
    task = get_task("hanoi", disks=6)
    run(task, ["sim:0.99"], VotingConfig(k=2), log=log)
    step = task.first_step()
    for i in range(40):
        step = task.advance(step, task.truth(i))
    wrong = task.wrong_replies(step)[0]
    tamper(log, 40, wrong)
    report = verify_log(log)
    assert not report.valid and report.first_bad_step == 40


def maker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "maker.cli.main", *args]


@pytest.mark.subprocess
def test_resume_after_kill_gives_the_same_trajectory(ray_address, tmp_path, maker_cli) -> None:
    """kill -9 of a `maker run` process once 4 parts are on disk; `--resume` (the CLI, in this
    process: the killed one is what must be a process) ends with the uninterrupted run's log."""
    common = ["run", "hanoi", "--disks", "11", "--model", "sim:0.99,seed=2", "--k", "3", "--quiet",
              "--address", ray_address, "--segment-steps", "150"]
    reference = tmp_path / "ref.parquet"
    assert maker_cli(*common, "--log", str(reference)).returncode == 0
    log = tmp_path / "killed.parquet"
    proc = subprocess.Popen(maker_cmd(*common, "--log", str(log)))
    deadline = time.time() + 120
    while time.time() < deadline and len(list(log.glob("part-*.parquet"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    parts_before = len(list(log.glob("part-*.parquet")))
    assert parts_before >= 4
    assert len(decisions(log)) < len(decisions(reference))  # the resume below has work left
    done = maker_cli(*common, "--log", str(log), "--resume", "--json")
    assert done.returncode == 0, done.stderr
    got, want = decisions(log), decisions(reference)
    assert got == want  # no step missing, none duplicated, same decisions
    assert verify_log(log).solved
