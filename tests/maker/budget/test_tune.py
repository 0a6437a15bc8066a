"""`maker tune LOG`: re-estimating p and collisions from a step log.

A hand-built log checks the counting rules exactly; a real simulated run (the simulator
is the only fake, at the model boundary) is checked against an independent SQL count.
"""

from __future__ import annotations

import json

import duckdb
import maker.voting as voting
import pytest
from maker.tasks import get_task

from maker import VotingConfig, run
from maker.budget.tuning import tally_log, tune_log
from maker.cli.main import main
from maker.log.steplog import StepLogWriter
from maker.runtime.driver import ClusterConfig

RUN = {
    "task": "hanoi",
    "task_options": {"disks": 3},
    "total_steps": 7,
    "models": ["m"],
    "voting": {"k": 2},
    "seed": 0,
    "maker_version": "test",
    "simulated": False,
}


def samples(rows: list[tuple]) -> dict[str, list]:
    cols = (
        "step",
        "sample",
        "model",
        "answer",
        "red_flag",
        "counted",
        "tokens_in",
        "tokens_out",
        "cost_usd",
        "error",
        "wasted",
    )
    out: dict[str, list] = {c: [] for c in cols}
    for step, sample, answer, flag, *rest in rows:
        wasted = rest[0] if rest else False
        for c, v in zip(cols, (step, sample, "m", answer, flag, answer is not None, 10, 2, 0.001, None, wasted)):
            out[c].append(v)
    return out


def decisions(rows: list[tuple[int, str]]) -> dict[str, list]:
    return {"step": [s for s, _ in rows], "answer": [a for _, a in rows], "correct": [None] * len(rows)}


@pytest.fixture
def hand_log(tmp_path):
    """Step 0: A A + a malformed sample. Step 1: C D B B B (decided B: a collision), its
    decision in the next part. Step 2: A X A A plus a wasted sample. Step 3: undecided."""
    log = tmp_path / "hand.parquet"
    w = StepLogWriter(log, RUN)
    w.append(
        samples(
            [
                (0, 0, "A", None),
                (0, 1, "A", None),
                (0, 2, None, "malformed"),
                (1, 0, "C", None),
                (1, 1, "D", None),
                (1, 2, "B", None),
            ]
        ),
        decisions([(0, "A")]),
    )
    w.append(
        samples(
            [
                (1, 3, "B", None),
                (1, 4, "B", None),
                (2, 0, "A", None),
                (2, 1, "X", None),
                (2, 2, "A", None),
                (2, 3, "A", None),
                (2, 4, "Z", None, True),
                (3, 0, "A", None),
                (3, 1, "Q", None),
            ]
        ),
        decisions([(1, "B"), (2, "A")]),
    )
    return log


def test_counting_rules_on_a_hand_built_log(hand_log) -> None:
    overall, models, facts = tally_log(hand_log)
    assert overall.steps == 3
    assert overall.samples == 12 and overall.valid == 11 and overall.correct == 8
    assert overall.red_flags == {"malformed": 1}
    assert (overall.steps_with_two, overall.first_two_wrong) == (3, 1)
    assert overall.tokens_in == 120 and overall.cost_usd == pytest.approx(0.012)
    assert facts["undecided_samples"] == 2 and set(models) == {"m"}


def test_tune_plans_from_the_counts(hand_log) -> None:
    report = tune_log(hand_log, target=0.9, steps=5)
    assert report.k_used == 2 and report.total_steps == 7
    assert report.k == voting.k_min_pessimistic(8, 11, 5, 0.9)  # None: 8 of 11 cannot rule out p <= 1/2
    assert report.overall.verdict == "p_low" and "no k" in report.summary


@pytest.mark.ray
def test_tune_a_simulated_run_against_sql(capsys, ray_address, tmp_path) -> None:
    log = tmp_path / "h9.parquet"
    result = run(
        get_task("hanoi", disks=9),
        ["sim:0.9,redflag=0.1"],
        VotingConfig(k=3),
        log=log,
        cluster=ClusterConfig(address=ray_address),
    )
    assert result.solved
    code, out, err = run_cli(capsys, "tune", str(log), "--target", "0.95", "--json")
    assert code == 0, err
    report = json.loads(out)
    est = report["overall"]
    db = duckdb.connect()
    valid, right, n = db.execute(f"""
        WITH d AS (SELECT step, answer FROM '{log}/*.parquet' WHERE kind = 'decision')
        SELECT count(s.answer), count(*) FILTER (WHERE s.answer = d.answer), count(*)
        FROM '{log}/*.parquet' s JOIN d USING (step) WHERE s.kind = 'sample'""").fetchone()
    two, both = db.execute(f"""
        WITH d AS (SELECT step, answer FROM '{log}/*.parquet' WHERE kind = 'decision'),
        v AS (SELECT s.step, s.answer <> d.answer AS wrong,
                     row_number() OVER (PARTITION BY s.step ORDER BY s.sample) AS i
              FROM '{log}/*.parquet' s JOIN d USING (step) WHERE s.kind = 'sample' AND s.answer IS NOT NULL)
        SELECT count(*), count(*) FILTER (WHERE w1 AND w2) FROM (
            SELECT step, bool_or(wrong) FILTER (WHERE i = 1) AS w1, bool_or(wrong) FILTER (WHERE i = 2) AS w2
            FROM v GROUP BY step HAVING count(*) >= 2)""").fetchone()
    assert (est["valid"], est["correct"], est["samples"]) == (valid, right, n)
    assert (est["steps_with_two"], est["first_two_wrong"]) == (two, both)
    assert est["p_low"] <= 0.9 <= est["p_high"]
    assert est["valid_rate"] == pytest.approx(0.9, abs=0.03)
    assert report["k"] == voting.k_min_pessimistic(right, valid, 511, 0.95) and report["k_used"] == 3
    code, out, _ = run_cli(capsys, "tune", str(log), "--target", "0.95", "--steps", "1048575")
    assert (
        code == 0
        and "1,048,575 steps" in out
        and f"use k = {voting.k_min_pessimistic(right, valid, 1048575, 0.95)}" in out
    )


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    "args,needle",
    [
        (["/nonexistent/log.parquet"], "no such step log"),
        (["LOG", "--target", "1"], "--target"),
        (["LOG", "--steps", "0"], "--steps"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, hand_log, args, needle) -> None:
    args = [str(hand_log) if a == "LOG" else a for a in args]
    code, out, err = run_cli(capsys, "tune", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and needle in err
