"""Labels never overclaim: no "0 errors" without ground truth, a non-answer is never a vote,
and the two sample counts have two names (counted vs drawn) everywhere.

The models are the project's fakes at the model boundary (`script:arith`, `sim:P`).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from maker.cli.main import main
from maker.runtime import progress as progress_module
from maker.runtime.progress import Progress, Totals, rate_text


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def _plan(tmp_path: Path, text: str) -> str:
    path = tmp_path / "f.plan"
    path.write_text(text)
    return str(path)


SOLVE_PLAN = '#E1 = solve("Compute 2 + 3")\n#E2 = solve("Compute #E1 * 4")\nanswer = #E2\n'
#: The arith script answers `unknown` to a question it cannot evaluate.
UNANSWERABLE = '#E1 = solve("Compute 2 + 3")\n#E2 = solve("Compute the weather after #E1 days")\nanswer = #E2\n'


@pytest.mark.ray
def test_a_run_without_ground_truth_says_its_errors_are_unknown(ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "s.parquet"
    common = ["--model", "script:arith", "--k", "2", "--quiet", "--address", ray_address]
    code, out, err = _cli(capsys, "run", "plan", "--file", _plan(tmp_path, SOLVE_PLAN), *common, "--log", str(log))
    assert code == 0, err
    assert "errors: unknown (no ground truth)" in out and "0 errors" not in out and "solved" not in out
    assert "answer: 20 (no ground truth to check it)" in out
    code, out, _ = _cli(capsys, "run", "plan", "--file", _plan(tmp_path, SOLVE_PLAN), *common, "--json",
                        "--log", str(tmp_path / "j.parquet"))
    assert json.loads(out)["errors"] is None
    code, out, _ = _cli(capsys, "replay", str(log), "--verify")
    assert code == 0 and "errors: unknown (no ground truth)" in out and "solved=" not in out
    code, _, _ = _cli(capsys, "report", str(log), "--out", str(tmp_path / "rep"))
    assert code == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| wrong decisions | unknown (no ground truth) |" in md and "**Simulated run**" in md


@pytest.mark.ray
def test_unknown_is_never_accepted_as_an_answer(ray_address, tmp_path, capsys) -> None:
    code, out, err = _cli(capsys, "run", "plan", "--file", _plan(tmp_path, UNANSWERABLE), "--model", "script:arith",
                          "--k", "2", "--quiet", "--address", ray_address, "--max-discards-in-a-row", "6",
                          "--log", str(tmp_path / "u.parquet"))
    assert code == 1
    assert "solved" not in out and "0 errors" not in out
    assert "malformed" in err
    code, out, _ = _cli(capsys, "replay", str(tmp_path / "u.parquet"), "--verify")  # a partial log, no ground truth
    assert code == 0 and "1 of 2 steps verified (rules and votes), not finished; errors: unknown (no ground truth)" in out
    assert "solved=" not in out


@pytest.mark.ray
def test_run_and_report_name_counted_and_drawn_samples_alike(ray_address, tmp_path, capsys) -> None:
    log = tmp_path / "h.parquet"
    code, out, err = _cli(capsys, "run", "hanoi", "--disks", "5", "--model", "sim:0.9", "--k", "2", "--speculate", "4",
                          "--quiet", "--address", ray_address, "--log", str(log), "--json")
    result = json.loads(out)
    counted, wasted = result["samples"], result["extra"]["wasted_samples"]
    _cli(capsys, "report", str(log), "--out", str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "report.md").read_text()
    assert f"| samples counted (votes and red flags; what `maker run` reports) | {counted:,} (" in md
    assert f"| samples drawn (counted + {wasted:,} wasted speculative; all paid for) | {counted + wasted:,} (" in md


def test_progress_line_rates_eta_and_unknowns() -> None:
    assert [rate_text(r) for r in (0.0, 0.4, 0.97, 1.0, 1.24, 9.96, 12.4, 1234.0)] == [
        "0", "0.4", "0.97", "1", "1.2", "10", "12", "1,234"]
    p = Progress(1000, stream=io.StringIO(), max_steps=100, ground_truth=False)
    p.started -= 10.0  # ten seconds in, 10 steps done: 1 step/s
    line = p.format(Totals(steps=10, samples=30), now=p.started + 10.0)
    assert " 1 steps/s" in line and "ETA 1m30s (to step 100, --max-steps)" in line
    assert "errors unknown (no ground truth)" in line
    p = Progress(1000, stream=io.StringIO())
    line = p.format(Totals(steps=10, samples=30, errors=0), now=p.started + 10.0)
    assert "ETA 16m30s" in line and "errors 0" in line


def test_p_rest_right_is_unknown_until_enough_votes() -> None:
    from maker.cli.safeguards import guard_line
    from maker.runtime.guard import Guard, GuardConfig

    guard = Guard(GuardConfig(min_votes=100), k=2, first_step=0, last_step=999, stream=None)
    steps = list(range(5))
    samples = {"step": [s for s in steps for _ in range(2)], "answer": ["a"] * 10, "counted": [True] * 10,
               "wasted": [False] * 10}
    guard.observe(samples, {"step": steps, "answer": ["a"] * 5})
    assert "P(rest right) ? (10 votes)" in guard.summary()
    assert "P(rest right) ? (10 votes)" in guard_line(guard.to_dict())
    steps = list(range(5, 100))
    many = {"step": [s for s in steps for _ in range(2)], "answer": ["a"] * 190, "counted": [True] * 190,
            "wasted": [False] * 190}
    guard.observe(many, {"step": steps, "answer": ["a"] * 95})
    assert "P(rest right) 0." in guard.summary() or "P(rest right) 1." in guard.summary()
    assert "?" not in guard_line(guard.to_dict())


def test_a_real_models_zero_cost_is_not_shown_as_measured() -> None:
    """A real model whose samples cost 0 has no known price (or is free): the progress line
    says so; a simulated run's $0 is what it cost."""
    real = Progress(100, stream=io.StringIO())
    assert "$0 (free, or no price known)" in real.format(Totals(steps=3, samples=9), now=real.started + 1.0)
    assert "$0.0120" in real.format(Totals(steps=3, samples=9, cost_usd=0.012), now=real.started + 1.0)
    sim = Progress(100, stream=io.StringIO(), label="[simulated] ")
    assert "$0.0000" in sim.format(Totals(steps=3, samples=9), now=sim.started + 1.0)
    result = __import__("doctest").testmod(progress_module)
    assert result.attempted > 0 and result.failed == 0


def test_p_rest_right_after_max_steps_is_not_one() -> None:
    """A run stopped by --max-steps has no step left of its own, but the task has: the
    summary must not say the rest is right with probability 1."""
    from maker.cli.safeguards import guard_line
    from maker.runtime.guard import Guard, GuardConfig

    guard = Guard(GuardConfig(min_votes=2), k=2, first_step=0, last_step=4, stream=None)  # --max-steps 5
    steps = list(range(5))
    guard.observe({"step": [s for s in steps for _ in range(2)], "answer": ["a"] * 10, "counted": [True] * 10,
                   "wasted": [False] * 10}, {"step": steps, "answer": ["a"] * 5})
    assert "P(rest right) ? (26 steps of the task left after --max-steps)" in guard_line(guard.to_dict(), steps_left=26)
    assert "P(rest right) 1 (no step left)" in guard_line(guard.to_dict())  # the task's end: nothing left


def test_run_json_labels_a_real_models_zero_cost() -> None:
    """`maker run --json` (RunResult.to_dict) carries `cost` beside `cost_usd`: a real model's
    0 is 'free, or no price known', never a bare $0 as if priced."""
    from maker.runtime.driver import RunResult

    def result(cost: float, simulated: bool) -> dict:
        return RunResult(task="t", steps=3, total_steps=3, solved=True, errors=0, first_error_step=None,
                         samples=9, red_flags=0, red_flags_by_reason={}, k=3, models=["m"], simulated=simulated,
                         wall_s=1.0, cost_usd=cost, samples_per_step=3.0, log=None).to_dict()

    assert result(0.0, False)["cost"] == "$0 (free, or no price known)"
    assert result(0.0, False)["cost_usd"] == 0.0
    assert result(0.0123, False)["cost"] == "$0.0123"
    assert result(0.0, True)["cost"] == "$0.0000"


@pytest.mark.ray
def test_verify_on_an_unfinished_log_with_ground_truth_says_how_far(ray_address, tmp_path, capsys) -> None:
    """A run stopped by --max-steps: `replay --verify` says "N of M steps", and the wrong
    decisions so far, not a bare solved=False."""
    log = str(tmp_path / "h.parquet")
    code, _, _ = _cli(capsys, "run", "hanoi", "--disks", "4", "--model", "sim:0.99", "--k", "2", "--quiet",
                      "--max-steps", "6", "--address", ray_address, "--log", log)
    assert code == 0
    code, out, _ = _cli(capsys, "replay", log, "--verify")
    assert code == 0 and "6 of 15 steps verified, not finished (solved=False); wrong decisions so far: " in out
