"""`maker replay --verify`: re-check a whole trajectory from the step log alone.

Nothing from the run is trusted: the task is rebuilt from the log's metadata, each
decision is re-parsed and re-checked against the task's rules on the premise the
previous decision implies, each step is re-decided from its logged votes, and where the
task has ground truth each decision is compared with it.  The first step that fails any
check is reported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tasks import TaskSpec, build_task
from tasks.base import Oracle
from voting import Ballot

from .errors import StepLogError
from .steplog import iter_tables, open_log


@dataclass
class VerifyReport:
    log: str
    task: str
    steps: int
    total_steps: int
    valid: bool
    solved: bool
    first_bad_step: int | None
    reason: str | None
    wrong_decisions: int
    simulated: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_log(path: str | Path, *, salvage: bool = False) -> VerifyReport:
    info = open_log(path, salvage=salvage)
    run = info.run
    try:
        task = build_task(TaskSpec(run["task"], run.get("task_options", {})))
    except (KeyError, ValueError) as exc:
        raise StepLogError(f"{path}: cannot rebuild the task from the log ({exc})", path=str(path)) from None
    k = int(run["voting"]["k"])
    decisions: dict[int, str] = {}
    votes: dict[int, list[str]] = {}
    for table in iter_tables(info, ["step", "answer", "counted"]):
        kinds = table["kind"].to_pylist()
        steps = table["step"].to_pylist()
        answers = table["answer"].to_pylist()
        counted = table["counted"].to_pylist()
        for kind, step, answer, was_counted in zip(kinds, steps, answers, counted):
            if kind == "decision":
                if step in decisions:
                    return _report(info, task, len(decisions), False, step, "step decided twice", 0)
                decisions[step] = answer
            elif kind == "sample" and was_counted:
                votes.setdefault(step, []).append(answer)
    oracle = task if isinstance(task, Oracle) else None
    step = task.first_step()
    wrong = 0
    first_bad: int | None = None
    reason: str | None = None
    for index in range(len(decisions)):
        answer = decisions.get(index)
        if answer is None:
            first_bad, reason = index, "no decision logged for this step"
            break
        verdict = task.judge(step, answer)
        if verdict.key != answer:
            first_bad, reason = index, f"decision breaks the task's rules on its premise ({verdict.detail})"
            break
        ballot = Ballot(k)
        for vote in votes.get(index, []):
            if ballot.decided:
                break
            ballot.add(vote)
        if ballot.winner != answer:
            first_bad, reason = index, "the logged votes do not decide this answer"
            break
        if oracle is not None:
            reference = task.judge(step, oracle.reference_reply(step)).key
            if reference != answer:
                wrong += 1
                if first_bad is None:
                    first_bad, reason = index, "decision differs from the ground truth"
                    break
        step = task.step_after(index, answer)
    valid = first_bad is None
    return _report(info, task, len(decisions), valid, first_bad, reason, wrong, step)


def _report(info, task, steps, valid, first_bad, reason, wrong, last_step=None) -> VerifyReport:  # type: ignore[no-untyped-def]
    solved = bool(valid and last_step is not None and task.is_solved(last_step) and steps == task.total_steps)
    return VerifyReport(
        log=str(info.path),
        task=task.spec.describe(),
        steps=steps,
        total_steps=task.total_steps,
        valid=valid,
        solved=solved,
        first_bad_step=first_bad,
        reason=reason,
        wrong_decisions=wrong,
        simulated=bool(info.run.get("simulated")),
    )
