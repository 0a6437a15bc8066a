"""`maker report`: the summary and plots of a real simulated run's step log.

The simulator is the model (the only fake, at the model boundary).  The simulator's
samples are free, so one test adds prices and speculative (wasted) rows to a copy of a
real log; every figure checked is recomputed here from the log's rows with pandas.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task

from maker import ClusterConfig, VotingConfig, run
from maker.audit.redecide import redecide_log
from maker.audit.verify import verify_log
from maker.cli.main import main
from maker.log.steplog import open_log
from maker.report.stats import collect
from maker.report.summary import render_markdown

PLOTS = {"undecided_by_round.png", "votes_per_step.png", "red_flags.png", "error_vs_length.png", "cost.png"}
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sim_log(ray_address, tmp_path_factory) -> Path:
    log = tmp_path_factory.mktemp("report") / "h6.parquet"
    result = run(get_task("hanoi", disks=6), ["sim:0.85,redflag=0.15,fail=0.05,seed=2"], VotingConfig(k=2), log=log,
                 cluster=ClusterConfig(segment_steps=16))
    assert result.steps == 63 and result.red_flags > 0
    return log


def frames(log: Path):
    import pandas as pd

    df = pd.read_parquet(log)
    return df[df.kind == "sample"], df[df.kind == "decision"]


@pytest.mark.ray
def test_report_writes_every_file(sim_log, tmp_path, capsys) -> None:
    out = tmp_path / "rep"
    assert main(["report", str(sim_log), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert files == PLOTS | {"report.md"}
    for name in PLOTS:
        data = (out / name).read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000  # a drawn figure, not an empty canvas
        assert str(out / name) in printed
    md = (out / "report.md").read_text()
    assert md.startswith("# maker run report: hanoi disks=6 (simulated model)")
    assert set(re.findall(r"\]\((\w+\.png)\)", md)) == PLOTS
    assert "Wasted speculative samples" in md and "plot skipped" in md


@pytest.mark.ray
def test_figures_match_the_log(sim_log) -> None:
    samples, decisions = frames(sim_log)
    s = collect(open_log(sim_log))
    assert s.steps == len(decisions) and s.samples == len(samples)
    rounds = decisions["rounds"].to_numpy()
    assert s.undecided_after() == [(r, int((rounds > r).sum())) for r in range(int(rounds.max()) + 1)]
    assert s.undecided_after()[-1] == (int(rounds.max()), 0)
    assert dict(s.red_flags) == samples.red_flag.value_counts().to_dict()
    assert dict(s.votes) == decisions.votes.value_counts().to_dict()
    valid = samples[samples.red_flag.isna() & samples.answer.notna()]
    decided = valid.merge(decisions[["step", "answer"]], on="step", suffixes=("", "_decided"))
    errors = decided[decided.answer != decided.answer_decided]
    assert s.valid == len(valid) and s.errors_vs_decision == len(errors) > 0
    assert int(s.length_errors.sum()) == len(errors)
    by_tokens = errors.tokens_out.value_counts()
    assert all(s.length_errors[int(t)] == n for t, n in by_tokens.items())
    assert s.wrong_decisions == int((decisions.correct == False).sum())  # noqa: E712
    failed_calls = samples.faults.dropna().str.split(",").explode().value_counts().to_dict()
    assert failed_calls and dict(s.faults) == failed_calls
    md = render_markdown(s, set())
    assert f"- simulated: {failed_calls['simulated']:,}" in md.split("## Model-call faults")[1]


def enrich(src: Path, dst: Path) -> None:
    """Copy a log, pricing each sample by its tokens and re-logging every step 5 sample as wasted."""
    dst.mkdir()
    for part in sorted(src.glob("part-*.parquet")):
        table = pq.read_table(part)
        is_sample = pc.equal(table["kind"], "sample")
        price = pc.add(pc.multiply(pc.cast(table["tokens_in"], pa.float64()), 1e-6),
                       pc.multiply(pc.cast(table["tokens_out"], pa.float64()), 4e-6))
        table = table.set_column(table.schema.get_field_index("cost_usd"), "cost_usd",
                                 pc.if_else(is_sample, price, pa.scalar(None, pa.float64())))
        lost = table.filter(pc.and_(is_sample, pc.equal(table["step"], 5)))
        lost = lost.set_column(lost.schema.get_field_index("wasted"), "wasted", pa.array([True] * lost.num_rows, pa.bool_()))
        lost = lost.set_column(lost.schema.get_field_index("answer"), "answer",
                               pa.array(["speculative premise"] * lost.num_rows, pa.string()))
        pq.write_table(pa.concat_tables([lost, table]).replace_schema_metadata(table.schema.metadata), dst / part.name)


@pytest.mark.ray
def test_cost_and_wasted_samples(sim_log, tmp_path, capsys) -> None:
    log = tmp_path / "priced.parquet"
    enrich(sim_log, log)
    samples, _ = frames(log)
    wasted = samples[samples.wasted == True]  # noqa: E712
    assert len(wasted) > 0
    out = tmp_path / "rep"
    assert main(["report", str(log), "--out", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == PLOTS | {"report.md", "wasted.png", "cost_by_kind.png"}
    md = (out / "report.md").read_text()
    assert f"| cost | ${samples.cost_usd.sum():,.4f} |" in md
    assert "## Where the money went" in md and "| wasted speculative samples |" in md and "cost_by_kind.png" in md
    assert f"| wasted speculative samples | {len(wasted):,} |" in md and "wasted.png" in md
    s = collect(open_log(log))
    assert np.isclose(s.bin_cost.sum(), samples.cost_usd.sum()) and s.bin_wasted.sum() == len(wasted)
    # Wasted samples never vote: the audit and the same-k replay are untouched by them.
    before, after = verify_log(sim_log), verify_log(log)
    assert (after.valid, after.first_bad_step, after.reason) == (before.valid, before.first_bad_step, before.reason)
    for k in (1, 2, 3):
        clean, priced = redecide_log(sim_log, k=k), redecide_log(log, k=k)
        assert (priced.same, priced.changed, priced.undecidable, priced.samples, priced.samples_saved) == (
            clean.same, clean.changed, clean.undecidable, clean.samples, clean.samples_saved)


@pytest.mark.ray
def test_title_labels_only_simulated_runs(sim_log) -> None:
    s = collect(open_log(sim_log))
    assert "(simulated model)" in render_markdown(s, set()).splitlines()[0]
    s.run = {**s.run, "simulated": False}
    assert "simulated" not in render_markdown(s, set()).splitlines()[0]


def test_out_must_be_a_folder(tmp_path, capsys) -> None:
    from maker.log.steplog import StepLogWriter

    log = tmp_path / "tiny.parquet"
    StepLogWriter(log, {"task": "hanoi", "task_options": {"disks": 1}, "voting": {"k": 1}}).append(
        {"step": [0], "sample": [0], "answer": ["x"]}, {"step": [0], "answer": ["x"], "votes": [1], "rounds": [1]})
    taken = tmp_path / "file.txt"
    taken.write_text("keep")
    assert main(["report", str(log), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a folder" in err and taken.read_text() == "keep"
