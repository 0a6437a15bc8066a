"""Which p plans k, and a k that just failed is never advised again (issue #25 §2).

tune, report and the live guard say whether their p is graded (against ground truth) or
agreement (against the decisions); with ground truth, tune grades the votes of wrong
decisions against the truth of their premise; a run with known wrong decisions never gets
"keep k" advice (`maker.budget.advice.next_k`), in any of them."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.tasks import get_task

from maker.budget.advice import next_k
from maker.budget.tuning import tally_log, tune_log
from maker.cli.safeguards import guard_line
from maker.log.steplog import StepLogWriter, open_log
from maker.report.stats import collect
from maker.report.summary import render_markdown
from maker.runtime.guard import Guard, GuardConfig

RUN = {"task": "hanoi", "task_options": {"disks": 3}, "total_steps": 7, "models": ["m"], "voting": {"k": 2},
       "seed": 0, "maker_version": "test", "simulated": True}


@pytest.mark.parametrize(("planned", "used", "wrong", "want"), [
    (3, 3, 7, 4), (2, 3, 1, 4), (5, 3, 7, 5), (3, 3, 0, 3), (3, 3, None, 3), (None, 3, 7, None), (2, 3, 0, 2),
])
def test_next_k_never_keeps_a_k_that_made_known_wrong_decisions(planned, used, wrong, want) -> None:
    k, why = next_k(planned, k_used=used, wrong_decisions=wrong)
    assert k == want and (why is not None) == (k != planned)


def _keys(task, step, replies):
    return [task.judge(step, r).key for r in replies]


def _cols(step: int, answers: list[str]) -> dict[str, list]:
    n = len(answers)
    return {"step": [step] * n, "sample": list(range(n)), "model": ["m"] * n, "answer": answers, "red_flag": [None] * n,
            "counted": [True] * n, "tokens_in": [10] * n, "tokens_out": [2] * n, "cost_usd": [0.0] * n,
            "error": [None] * n, "wasted": [False] * n}


@pytest.fixture
def wrong_log(tmp_path):
    """hanoi, 3 disks, k = 2.  Step 0: votes right, wrong, wrong, wrong: decided wrong.
    Step 1 (on the wrong premise): right, right.  Agreement 5 of 6; graded 3 of 6."""
    task = get_task("hanoi", disks=3)
    s0 = task.first_step()
    right0, wrong0 = _keys(task, s0, [task.reference_reply(s0), task.wrong_replies(s0)[0]])
    s1 = task.step_after(0, wrong0)
    right1 = task.judge(s1, task.reference_reply(s1)).key
    log = tmp_path / "wrong.parquet"
    w = StepLogWriter(log, RUN)
    w.append(_cols(0, [right0, wrong0, wrong0, wrong0]), {"step": [0], "answer": [wrong0], "correct": [False]})
    w.append(_cols(1, [right1, right1]), {"step": [1], "answer": [right1], "correct": [True]})
    return log


def test_tune_grades_the_votes_of_a_wrong_decision_against_the_truth(wrong_log) -> None:
    agreement, _, _ = tally_log(wrong_log)
    assert (agreement.correct, agreement.valid) == (5, 6)
    report = tune_log(wrong_log, target=0.5)
    assert report.p_source == "graded" and report.p_note is None and report.graded_decisions == 2
    assert (report.overall.correct, report.overall.valid) == (3, 6)  # the three votes for the wrong decision are errors
    assert report.wrong_decisions == 1 and "same as" not in report.summary


def test_tune_says_agreement_when_the_log_has_no_ground_truth(wrong_log) -> None:
    for part in sorted(wrong_log.glob("part-*.parquet")):  # the same log, as a task without ground truth logs it
        table = pq.read_table(part)
        i = table.schema.get_field_index("correct")
        pq.write_table(table.set_column(i, "correct", pa.nulls(table.num_rows, pa.bool_())), part)
    report = tune_log(wrong_log, target=0.5)
    assert report.p_source == "agreement" and (report.overall.correct, report.overall.valid) == (5, 6)
    assert report.summary.endswith("[p agreement]")


def test_tune_says_agreement_and_why_when_the_task_cannot_be_rebuilt(tmp_path) -> None:
    log = tmp_path / "gone.parquet"
    w = StepLogWriter(log, {**RUN, "task": str(tmp_path / "gone.py") + ":task", "task_options": {}})
    w.append(_cols(0, ["a", "b", "b", "b"]), {"step": [0], "answer": ["b"], "correct": [False]})
    report = tune_log(log, target=0.5)
    assert report.p_source == "agreement" and "could not be rebuilt" in report.p_note
    assert report.k is None or report.k > 2  # still: the k that made a wrong decision is not advised


def test_the_guard_grades_and_says_a_k_that_made_wrong_decisions_did_not_hold() -> None:
    guard = Guard(GuardConfig(min_votes=1), k=2, first_step=0, last_step=9, stream=None)
    guard.observe(_cols(0, ["r", "w", "w", "w"]), {"step": [0], "answer": ["w"], "correct": [False]})
    guard.observe(_cols(1, ["r", "r"]), {"step": [1], "answer": ["r"], "correct": [True]})
    shown = guard.to_dict()
    assert shown["p_source"] == "graded" and shown["wrong_decisions"] == 1
    assert shown["votes"] - shown["errors"] == 2  # the vote for another answer on a wrong step is not graded
    assert any(e.get("alarm") == "wrong_decisions" for e in shown["events"])
    assert any(e.get("note") == "advice" and "k = 3" in e["message"] for e in shown["events"])
    assert "graded;" in guard_line(shown) and "k 2 did not hold, use k >= 3" in guard_line(shown)
    agreeing = Guard(GuardConfig(), k=2, first_step=0, last_step=9, stream=None)
    agreeing.observe(_cols(0, ["r", "r"]), {"step": [0], "answer": ["r"], "correct": [None]})
    assert "agreement;" in guard_line(agreeing.to_dict()) and "did not hold" not in guard_line(agreeing.to_dict())


def test_the_report_names_its_p_and_never_advises_the_k_that_failed(tmp_path) -> None:
    log = tmp_path / "agreeing.parquet"  # every vote agrees with its decision; one decision is wrong
    w = StepLogWriter(log, {**RUN, "total_steps": 200})
    for step in range(200):
        w.append(_cols(step, ["a", "a"]), {"step": [step], "answer": ["a"], "correct": [step != 7]})
    shown = render_markdown(collect(open_log(log)), set())
    assert "agreement, not accuracy: 1 decisions differ" in shown
    row = next(line for line in shown.splitlines() if line.startswith("| smallest k"))
    assert "| 3 (this run's k = 2 made 1 known wrong decision: use more than k = 2; that p alone asks for 2) |" in row


@pytest.mark.ray
def test_a_run_with_wrong_decisions_says_so_in_tune_and_the_guard(maker_cli, tmp_path) -> None:
    log = tmp_path / "records.parquet"
    done = maker_cli("run", "--task", "examples/records.py:records", "--n", "50", "--model", "sim:0.9", "--k", "2",
                     "--log", str(log), "--quiet")
    # two voted steps wrong; the total tool step is wrong only through them: consequential, not an error
    assert done.returncode == 1 and "2 errors" in done.stdout
    assert "(graded;" in done.stdout and "k 2 did not hold, use k >= 3" in done.stdout
    table = pq.read_table(log)
    assert pc.sum(pc.equal(table["correct"], False)).as_py() == 2
    tuned = maker_cli("tune", str(log), "--target", "0.01")
    assert "p used: graded" in tuned.stdout and "use k = 3 (up from this run's k = 2)" in tuned.stdout
    assert "same as" not in tuned.stdout
