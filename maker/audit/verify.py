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

from maker.errors import StepLogError
from maker.log.by_step import iter_chunks, parts_read
from maker.log.steplog import LogInfo, open_log
from maker.runtime.guard import k_schedule
from maker.tasks.base import Oracle
from maker.tasks.registry import rebuild
from maker.voting import decide


@dataclass
class VerifyReport:
    log: str
    task: str
    steps: int
    total_steps: int
    valid: bool
    #: None: every step checks out and the run finished, but there is no ground truth to
    #: say whether its answer is right (a plan with `solve` steps)
    solved: bool | None
    first_bad_step: int | None
    reason: str | None
    #: decisions that differ from the ground truth; None when the task has none (unknown)
    wrong_decisions: int | None
    simulated: bool
    parts: int = 0  # complete parts read
    damaged_parts: int = 0  # parts skipped by --salvage (the first damaged one and all after it)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_log(path: str | Path, *, salvage: bool = False) -> VerifyReport:
    """Audit the log at `path`; the report names the first step that fails a check.

    Streams the log part by part (see `maker.log.by_step`), so memory stays flat however
    long the run.  Checks per decided step, in order: the decision obeys the task's rules
    on the premise the previous decision implies, the logged votes decide it, and it
    equals the ground truth where the task has one.  On a task with ground truth, a
    decision equal to the truth on the true premise obeys the rules by construction, so
    only decisions that differ from the truth are re-judged -- that halves the cost per
    step without trusting anything the log says.
    """
    info = open_log(path, salvage=salvage)
    run = info.run
    try:
        task = rebuild(run)  # by the name the run recorded; says where it came from when it cannot
        k = int(run["voting"]["k"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StepLogError(f"{path}: cannot rebuild the task from the log ({exc})", path=str(path)) from None
    from maker.tasks.plan_task import PlanTask

    if isinstance(task, PlanTask):  # a DAG run: premises come from the steps each node names
        from maker.audit.dag_verify import verify_plan_log

        return verify_plan_log(info, task, k)
    oracle = task if isinstance(task, Oracle) else None
    audit = _Audit(task, oracle, k)
    audit.schedule = k_schedule(info)  # the k each step was decided with (--adaptive-k may raise it)
    pending: dict[int, tuple[str, list[str | None]]] = {}
    decided = 0
    for chunk in iter_chunks(info):
        for index, answer, keys in chunk.steps():
            if answer is None:
                continue  # drawn but never decided: the vote cap, or a run still drawing
            decided += 1
            if audit.bad is not None:
                continue  # keep counting decided steps after the first bad one
            if index != audit.next:
                if index < audit.next or index in pending:
                    audit.fail(index, "step decided twice")
                else:
                    pending[index] = (answer, keys)  # a part written out of order: hold it
                continue
            audit.check(index, answer, keys)
            while audit.bad is None and audit.next in pending:
                audit.check(audit.next, *pending.pop(audit.next))
    if audit.bad is None and pending:
        audit.fail(audit.next, "no decision logged for this step")
    return _report(info, task, decided, audit)


class _Audit:
    """The chain walk of `verify_log`: one decided step at a time, in order."""

    def __init__(self, task: Any, oracle: Oracle | None, k: int) -> None:
        self.task = task
        self.oracle = oracle
        self.k = k
        self.schedule: Any = None
        self.next = 0
        self.step = task.first_step()  # premise of step `next`; rebuilt lazily on the oracle path
        self.stale = False
        self.last: str | None = None
        self.bad: int | None = None
        self.reason: str | None = None
        self.wrong = 0

    def fail(self, index: int, reason: str) -> None:
        self.bad, self.reason = index, reason

    def premise(self, index: int) -> Any:
        if self.stale:
            self.step = self.task.step_after(index - 1, self.last)
            self.stale = False
        return self.step

    def check(self, index: int, answer: str, keys: list[str | None]) -> None:
        task = self.task
        on_truth = self.oracle is not None and answer == self.oracle.truth(index)
        if not on_truth:
            verdict = task.judge(self.premise(index), answer)
            if verdict.key != answer:
                return self.fail(index, f"decision breaks the task's rules on its premise ({verdict.detail})")
        if decide(keys, self.schedule.at(index) if self.schedule else self.k)[0] != answer:
            return self.fail(index, "the logged votes do not decide this answer")
        if self.oracle is not None and not on_truth:
            self.wrong += 1
            return self.fail(index, "decision differs from the ground truth")
        self.last = answer
        self.next = index + 1
        if self.oracle is not None:
            self.stale = True
        else:
            self.step = task.step_after(index, answer)

    def end(self) -> Any:
        return self.premise(self.next) if self.last is not None else self.step


def _report(info: LogInfo, task: Any, steps: int, audit: _Audit) -> VerifyReport:
    valid = audit.bad is None
    solved = bool(valid and steps == task.total_steps and task.is_solved(audit.end()))
    return VerifyReport(
        log=str(info.path),
        task=task.spec.describe(),
        steps=steps,
        total_steps=task.total_steps,
        valid=valid,
        solved=solved,
        first_bad_step=audit.bad,
        reason=audit.reason,
        wrong_decisions=audit.wrong if audit.oracle is not None else None,
        simulated=bool(info.run.get("simulated")),
        parts=parts_read(info)[0],
        damaged_parts=parts_read(info)[1],
    )
