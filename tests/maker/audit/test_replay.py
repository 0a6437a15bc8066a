"""`maker replay`: audit and re-decide real simulated runs from their step logs.

The simulator is the model (the only fake, at the model boundary); every expectation is
recomputed here from the log's own rows with pandas, not taken from the code under test.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task
from maker.voting import first_to_k

from maker import ClusterConfig, VotingConfig, run, verify_log
from maker.audit.redecide import redecide_log
from maker.cli.main import main
from maker.log.steplog import SCHEMA

K = 2
STEPS = 127


@pytest.fixture(scope="module")
def sim_log(ray_address, tmp_path_factory) -> Path:
    """A 7-disk run at p = 0.95 with red flags, k = 2, in 8 parts: real disagreements to re-decide.

    Seeded: this seed happens to make no wrong decision, so every step can be audited.
    """
    log = tmp_path_factory.mktemp("replay") / "h7.parquet"
    result = run(get_task("hanoi", disks=7), ["sim:0.95,redflag=0.1,seed=1"], VotingConfig(k=K), log=log,
                 cluster=ClusterConfig(segment_steps=16))
    assert result.steps == STEPS and result.red_flags > 0 and result.errors == 0
    return log


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def frames(log: Path):
    import pandas as pd

    df = pd.read_parquet(log)
    samples = df[df.kind == "sample"].sort_values(["step", "sample"])
    decisions = df[df.kind == "decision"].set_index("step")
    return samples, decisions


def valid_votes(samples) -> dict[int, list[str]]:
    ok = samples[samples.red_flag.isna() & samples.answer.notna()]
    return {int(step): list(group.answer) for step, group in ok.groupby("step")}


# -- the rules, as pure functions -------------------------------------------------------------


@pytest.mark.parametrize(
    "keys,k,expected",
    [
        (["a", "b", "b"], 2, ("b", 3)),
        (["a", None, "a"], 2, ("a", 3)),
        (["a", "b", "a", "b"], 3, (None, 4)),
        ([None, None], 1, (None, 2)),
        (["x"], 1, ("x", 1)),
        ([], 1, (None, 0)),
    ],
)
def test_first_to_k_table(keys, k, expected) -> None:
    assert first_to_k(keys, k) == expected


# -- re-deciding a real run -------------------------------------------------------------------


@pytest.mark.ray
def test_same_k_reproduces_every_decision(sim_log) -> None:
    report = redecide_log(sim_log)
    assert report.k == report.logged_k == K and report.simulated
    assert report.steps == report.same == STEPS
    assert report.changed == report.undecidable == 0 and report.details == []
    samples, _ = frames(sim_log)
    assert report.samples == len(samples)
    assert report.samples_needed + report.samples_saved == report.samples


@pytest.mark.ray
def test_larger_k_reports_undecidable_steps(sim_log, capsys) -> None:
    samples, decisions = frames(sim_log)
    votes = valid_votes(samples)
    expected = sorted(s for s in decisions.index if _undecidable(votes.get(s, []), K + 1))
    # A step whose valid votes all agree and number exactly K cannot reach a margin of K + 1.
    stuck = {s for s, v in votes.items() if len(v) == K and len(set(v)) == 1}
    assert stuck and stuck <= set(expected)
    code, out, _ = cli(capsys, "replay", str(sim_log), "--k", str(K + 1), "--json", "--max-details", "5")
    assert code == 0
    report = json.loads(out)
    assert report["undecidable"] == len(expected) and report["first_undecidable_step"] == expected[0]
    assert report["same"] + report["changed"] + report["undecidable"] == STEPS
    listed = report["details"]
    assert len(listed) == 5 and report["details_left_out"] == report["undecidable"] + report["changed"] - 5
    assert [d["step"] for d in listed if d["outcome"] == "undecidable"] == expected[: len(listed)] or report["changed"]
    assert all(d["new"] is None and d["decision_point"] is None for d in listed if d["outcome"] == "undecidable")


def _undecidable(keys: list[str], k: int) -> bool:
    """First-to-ahead-by-k written out again, independently of voting.Ballot."""
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
        top = sorted(counts.values(), reverse=True) + [0]
        if top[0] - top[1] >= k:
            return False
    return True


@pytest.mark.ray
def test_k1_changes_steps_where_the_first_vote_was_wrong(sim_log, capsys) -> None:
    samples, decisions = frames(sim_log)
    votes = valid_votes(samples)
    expected = sorted(s for s, v in votes.items() if v[0] != decisions.loc[s, "answer"])
    assert expected  # p = 0.9 over 127 steps
    report = redecide_log(sim_log, k=1)
    assert report.changed == len(expected) and report.undecidable == 0
    assert [d.step for d in report.details] == expected
    assert report.first_changed_step == expected[0]
    assert report.changed_from_correct == sum(bool(decisions.loc[s, "correct"]) for s in expected)
    assert report.samples_saved > 0 and report.samples_needed + report.samples_saved == report.samples
    code, out, _ = cli(capsys, "replay", str(sim_log), "--k", "1")
    assert code == 0 and f"different {len(expected)}" in out and "simulated" in out
    assert f"samples counted on decided steps {report.samples:,}: " in out  # not "logged": the log may hold more


@pytest.mark.ray
def test_first_to_k_rule_through_the_cli(sim_log, capsys) -> None:
    samples, decisions = frames(sim_log)
    changed, needed = 0, 0
    for step, group in samples.groupby("step"):
        keys = [a if isinstance(a, str) and not isinstance(f, str) else None for a, f in zip(group.answer, group.red_flag)]
        counts: dict[str, int] = {}
        for position, key in enumerate(keys, 1):  # the first key to reach K votes wins
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
                if counts[key] == K:
                    needed += position
                    changed += key != decisions.loc[step, "answer"]
                    break
    code, out, _ = cli(capsys, "replay", str(sim_log), "--rule", "first-to-k", "--json")
    report = json.loads(out)
    assert code == 0 and report["rule"] == "first-to-k" and report["k"] == K
    assert report["changed"] == changed and report["samples_needed"] == needed
    assert needed < redecide_log(sim_log).samples_needed  # first-to-k stops earlier on split steps


# -- auditing ---------------------------------------------------------------------------------


def rewrite_part(log: Path, step: int, kind: str, change) -> None:
    """Rewrite the part holding `step`'s rows of `kind`, keeping the part's metadata."""
    for part in sorted(log.glob("part-*.parquet")):
        table = pq.read_table(part)
        mask = pc.and_(pc.equal(table["kind"], kind), pc.equal(table["step"], step))
        if pc.any(mask).as_py():
            pq.write_table(change(table, mask), part)
            return
    raise AssertionError(f"step {step} not in the log")


def set_answer(value: str):
    def change(table: pa.Table, mask: pa.ChunkedArray) -> pa.Table:
        column = table.schema.get_field_index("answer")
        return table.set_column(column, "answer", pc.if_else(mask, value, table["answer"]))

    return change


@pytest.mark.ray
@pytest.mark.parametrize("target", [0, 50, STEPS - 1])
def test_tampered_decision_is_caught_at_its_step(sim_log, tmp_path, capsys, target) -> None:
    _, decisions = frames(sim_log)
    log = tmp_path / "flipped.parquet"
    shutil.copytree(sim_log, log)
    other = decisions.loc[(target + 1) % STEPS, "answer"]  # a real decision, from another step
    rewrite_part(log, target, "decision", set_answer(other))
    report = verify_log(log)
    assert not report.valid and report.first_bad_step == target and report.steps == STEPS
    code, out, _ = cli(capsys, "replay", str(log), "--verify", "--json")
    assert code == 1 and json.loads(out)["first_bad_step"] == target


@pytest.mark.ray
def test_legal_but_wrong_decision_is_caught(sim_log, tmp_path) -> None:
    """A flipped decision that obeys the rules: the votes (and the ground truth) give it away."""
    task = get_task("hanoi", disks=7)
    _, decisions = frames(sim_log)
    target = 40
    premise = task.step_after(target - 1, decisions.loc[target - 1, "answer"])
    log = tmp_path / "legal.parquet"
    shutil.copytree(sim_log, log)
    rewrite_part(log, target, "decision", set_answer(task.wrong_replies(premise)[0]))
    report = verify_log(log)
    assert report.first_bad_step == target and report.reason == "the logged votes do not decide this answer"


@pytest.mark.ray
def test_tampered_vote_is_caught(sim_log, tmp_path) -> None:
    samples, decisions = frames(sim_log)
    votes = valid_votes(samples)
    target = next(s for s, v in votes.items() if len(v) == K and decisions.loc[s, "correct"])
    log = tmp_path / "vote.parquet"
    shutil.copytree(sim_log, log)
    wrong = decisions.loc[target + 1, "answer"]

    def change(table: pa.Table, mask: pa.ChunkedArray) -> pa.Table:
        last = int(samples[samples.step == target]["sample"].iloc[-1])
        first = pc.and_(mask, pc.equal(table["sample"], last)).fill_null(False)
        column = table.schema.get_field_index("answer")
        return table.set_column(column, "answer", pc.if_else(first, wrong, table["answer"]))

    rewrite_part(log, target, "sample", change)
    report = verify_log(log)
    assert report.first_bad_step == target and "votes" in report.reason


@pytest.mark.ray
def test_verify_of_the_real_run(sim_log) -> None:
    report = verify_log(sim_log)
    assert report.valid and report.solved and report.steps == STEPS and report.parts == 8 and report.simulated


# -- other readers ----------------------------------------------------------------------------


@pytest.mark.ray
def test_polars_reads_a_real_log(sim_log) -> None:
    pl = pytest.importorskip("polars")
    import pandas as pd

    df = pl.read_parquet(str(sim_log / "*.parquet"))
    samples, decisions = frames(sim_log)
    assert df.height == len(pd.read_parquet(sim_log)) and df.width == len(SCHEMA)
    assert df.filter(pl.col("kind") == "sample").height == len(samples)
    assert df.filter(pl.col("kind") == "decision").height == STEPS
    assert df.filter(pl.col("kind") == "sample")["tokens_out"].sum() == samples.tokens_out.sum()


# -- a log that is still being written --------------------------------------------------------


def test_replay_reads_only_complete_parts_while_parts_arrive(tmp_path, capsys) -> None:
    """Parts copied in one by one, with a half-written temporary part beside them, as a live run leaves it."""
    log = _small_log(tmp_path / "src")
    live = tmp_path / "live.parquet"
    live.mkdir()
    parts = sorted(log.glob("part-*.parquet"))
    seen = []
    for i, part in enumerate(parts):
        (live / f".part-{i:06d}.tmp").write_bytes(part.read_bytes()[: part.stat().st_size // 2])
        shutil.copy(part, live / part.name)
        code, out, err = cli(capsys, "replay", str(live), "--verify", "--json")
        assert code == 0, err
        seen.append(json.loads(out)["steps"])
        code, out, _ = cli(capsys, "replay", str(live), "--k", "1", "--json")
        assert code == 0 and json.loads(out)["steps"] == seen[-1]
    assert seen == [5, 10, 15]


def _small_log(path: Path) -> Path:
    """A 4-disk log in 3 parts written by the real writer, from the task's ground truth."""
    from maker.log.steplog import StepLogWriter

    task = get_task("hanoi", disks=4)
    writer = StepLogWriter(path, {"task": "hanoi", "task_options": {"disks": 4}, "voting": {"k": 1},
                                  "total_steps": 15, "simulated": True})
    for steps in (range(0, 5), range(5, 10), range(10, 15)):
        answers = [task.truth(s) for s in steps]
        writer.append({"step": list(steps), "sample": [0] * len(steps), "answer": answers, "counted": [True] * len(steps)},
                      {"step": list(steps), "answer": answers, "votes": [1] * len(steps), "rounds": [1] * len(steps)})
    return path


def test_steps_split_across_parts_and_redrawn_samples(tmp_path) -> None:
    """A step's samples in two parts (its decision in the later one), and a sample index
    written twice (a step redrawn after a resume): the later write is the vote, both are paid."""
    from maker.log.steplog import StepLogWriter, open_log
    from maker.report.stats import collect

    task = get_task("hanoi", disks=2)
    t0, t1, t2 = (task.truth(i) for i in range(3))
    wrong = task.wrong_replies(task.step_after(0, t0))[0]
    log = tmp_path / "split.parquet"
    w = StepLogWriter(log, {"task": "hanoi", "task_options": {"disks": 2}, "voting": {"k": 2}, "total_steps": 3})
    w.append({"step": [0, 0, 1, 1], "sample": [0, 1, 0, 1], "answer": [t0, t0, t1, wrong]},
             {"step": [0], "answer": [t0], "votes": [2], "rounds": [1]})
    w.append({"step": [1, 1, 2], "sample": [0, 1, 0], "answer": [t1, t1, t2]},
             {"step": [1], "answer": [t1], "votes": [2], "rounds": [1]})
    w.append({"step": [2], "sample": [1], "answer": [t2]}, {"step": [2], "answer": [t2], "votes": [2], "rounds": [2]})
    report = verify_log(log)
    assert report.valid and report.solved and report.steps == 3
    again = redecide_log(log)
    assert again.same == 3 and again.samples == 6 and again.samples_saved == 0
    assert redecide_log(log, k=1).changed == 0  # the superseded wrong vote never counts
    stats = collect(open_log(log))
    assert stats.samples == 8 and stats.valid == 6 and stats.errors_vs_decision == 0


@pytest.mark.ray
def test_replay_while_a_run_writes(ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "growing.parquet"
    task = get_task("hanoi", disks=8)
    done: dict[str, object] = {}

    def writer() -> None:
        done["result"] = run(task, ["sim:0.99,latency=0.003"], VotingConfig(k=2), log=log,
                             cluster=ClusterConfig(segment_steps=8, speculate=0))

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    try:
        while thread.is_alive():
            if list(log.glob("part-*.parquet")):
                code, out, err = cli(capsys, "replay", str(log), "--verify", "--json")
                assert code == 0, err
                report = json.loads(out)
                assert report["valid"] and not report["solved"] or report["steps"] == 255
                seen.append(report["steps"])
            time.sleep(0.02)
    finally:
        thread.join()
    assert done["result"].steps == 255
    assert len(set(seen)) >= 2 and seen == sorted(seen) and 0 < seen[0] < 255
    assert verify_log(log).solved


# -- bad input --------------------------------------------------------------------------------


def _newer(path: Path) -> Path:
    part = next(iter(sorted(_small_log(path.parent / "n-src").glob("part-*.parquet"))))
    table = pq.read_table(part)
    meta = dict(table.schema.metadata)
    meta[b"maker.schema_version"] = b"99"
    pq.write_table(table.replace_schema_metadata(meta), path)
    return path


BAD = {
    "empty file": (lambda p: (p.write_bytes(b""), p)[1], "damaged or not Parquet"),
    "empty folder": (lambda p: (p.mkdir(), p)[1], "empty step log"),
    "not parquet": (lambda p: (p.write_text("step,answer\n0,a\n"), p)[1], "damaged or not Parquet"),
    "foreign parquet": (lambda p: (pq.write_table(pa.table({"x": [1]}), p), p)[1], "not a maker step log"),
    "newer schema": (_newer, "newer than this maker"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", [["replay", "--verify"], ["replay", "--k", "2"], ["report", "--out", "OUT"]])
def test_bad_logs_are_one_line_exit_2(tmp_path, capsys, case, command) -> None:
    make, needle = BAD[case]
    log = make(tmp_path / "log.parquet")
    args = [str(tmp_path / "out") if a == "OUT" else a for a in command]
    code, out, err = cli(capsys, args[0], str(log), *args[1:])
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("maker: error:") and needle in err
    assert not (tmp_path / "out").exists()


@pytest.mark.ray
def test_cut_part_fails_and_salvage_reads_up_to_it(sim_log, tmp_path, capsys) -> None:
    log = tmp_path / "cut.parquet"
    shutil.copytree(sim_log, log)
    parts = sorted(log.glob("part-*.parquet"))
    kept = sum(pq.read_table(p, columns=["kind"])["kind"].to_pylist().count("decision") for p in parts[:3])
    cut = parts[3]
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])  # cut mid-part
    for args in (["replay", str(log), "--verify"], ["replay", str(log), "--k", "1"],
                 ["report", str(log), "--out", str(tmp_path / "r")]):
        code, out, err = cli(capsys, *args)
        assert code == 2 and err.count("\n") == 1 and "--salvage" in err and cut.name in err
    assert not (tmp_path / "r").exists()
    code, out, err = cli(capsys, "replay", str(log), "--verify", "--salvage", "--json")
    report = json.loads(out)
    assert code == 0 and report["steps"] == kept == 48 and report["parts"] == 3 and report["damaged_parts"] == 5
    assert report["valid"] and not report["solved"]
    assert f"salvaged {kept} decided steps from 3 complete part(s)" in err
    code, out, err = cli(capsys, "replay", str(log), "--k", "1", "--salvage", "--json")
    assert code == 0 and json.loads(out)["steps"] == kept and f"salvaged {kept}" in err
    code, _, err = cli(capsys, "report", str(log), "--out", str(tmp_path / "r"), "--salvage")
    assert code == 0 and "Salvaged" in (tmp_path / "r" / "report.md").read_text()


@pytest.mark.ray
def test_part_with_damaged_data_but_a_whole_footer(sim_log, tmp_path, capsys) -> None:
    """The footer reads, a column chunk does not: reading fails on the data, salvage stops there."""
    log = tmp_path / "rot.parquet"
    shutil.copytree(sim_log, log)
    part = sorted(log.glob("part-*.parquet"))[5]
    meta = pq.ParquetFile(part).metadata
    column = meta.schema.to_arrow_schema().get_field_index("answer")
    chunk = meta.row_group(0).column(column)
    data = bytearray(part.read_bytes())
    start = chunk.data_page_offset
    data[start : start + chunk.total_compressed_size] = b"\xff" * chunk.total_compressed_size
    part.write_bytes(bytes(data))
    code, _, err = cli(capsys, "replay", str(log), "--verify")
    assert code == 2 and err.count("\n") == 1 and part.name in err and "damaged" in err
    code, out, err = cli(capsys, "replay", str(log), "--verify", "--salvage", "--json")
    report = json.loads(out)
    assert code == 0 and report["steps"] == 80 and report["parts"] == 5 and report["damaged_parts"] == 3
