"""`maker replay --verify`: re-check a whole trajectory from the step log alone.

Nothing from the run is trusted: the task is rebuilt from the log's metadata, each
decision is re-parsed and re-checked against the task's rules on the premise the
previous decision implies, each step is re-decided from its logged votes, and where the
task has ground truth each decision is compared with it.  The first step that fails any
check is reported.  One audit path for both task shapes: a plan run (`maker.runtime.dag`)
differs only in where a step's premise comes from -- the steps it names, not the step
before it -- and in what "solved" means (the answer template filled in and, where the
task knows it independently, equal to the expected answer).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from maker.engine.tiers import Tiers
from maker.errors import StepLogError
from maker.log.by_step import iter_chunks, parts_read
from maker.log.steplog import open_log
from maker.runtime.guard import KSchedule, k_schedule, log_events
from maker.tasks.base import Oracle
from maker.tasks.registry import rebuild


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
    #: how the task's code differs from the run's (`maker.log.identity.code_change`), and
    #: from which step a resume went on with changed code; None when it does not
    code_note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def verify_log(path: str | Path, *, salvage: bool = False) -> VerifyReport:
    """Audit the log at `path` (a chain run or a plan run); the report names the first
    step that fails a check.

    Streams the log part by part (see `maker.log.by_step`), so memory stays flat however
    long a chain.  Checks per decided step: the decision obeys the task's rules on its
    premise (a chain: the one the previous decision implies; a plan: its inputs filled in
    from the logged decisions it names), the logged votes decide it with the k it was
    decided under, and it equals the ground truth where the task has one.  On a chain with
    ground truth, a decision equal to the truth on the true premise obeys the rules by
    construction, so only decisions that differ from the truth are re-judged.
    """
    from maker.tasks.plan_task import PlanTask

    info = open_log(path, salvage=salvage)
    run = info.run
    try:
        task = rebuild(run)  # by the name the run recorded; says where it came from when it cannot
        events = log_events(info)
        schedule = k_schedule(info, events)  # the k each step was decided with (--adaptive-k may raise it)
    except (KeyError, TypeError, ValueError) as exc:
        raise StepLogError(f"{path}: cannot rebuild the task from the log ({exc})", path=str(path)) from None
    logged_steps = run.get("total_steps")
    if logged_steps is not None and logged_steps != task.total_steps:
        raise StepLogError(
            f"{path}: the task rebuilt from the log has {task.total_steps:,} steps, the run had {logged_steps:,}: "
            "the log does not record the options the task was built with (build it with "
            "maker.tasks.get_task(REF, **options) so that they are recorded)", path=str(path))
    audit: _Audit = _PlanAudit(task, schedule) if isinstance(task, PlanTask) else _Audit(task, schedule)
    audit.tiers = Tiers.from_events(events)  # escalation tiers and plurality: the one re-decision
    decided = 0
    for chunk in iter_chunks(info):
        for index, answer, keys in chunk.steps():
            if answer is None:
                continue  # drawn but never decided: the vote cap, or a run still drawing
            decided += 1
            if audit.bad is None:  # keep counting decided steps after the first bad one
                audit.take(index, answer, keys)
    solved = audit.finish(decided)
    if solved and audit.oracle is None:
        solved = None  # finished and valid; right or wrong is unknown without ground truth
    parts, damaged = parts_read(info)
    return VerifyReport(
        log=str(info.path), task=task.describe() if isinstance(task, PlanTask) else task.spec.describe(),
        steps=decided, total_steps=task.total_steps, valid=audit.bad is None, solved=solved,
        first_bad_step=audit.bad, reason=audit.reason,
        wrong_decisions=audit.wrong if audit.oracle is not None else None,  # unknown without ground truth
        simulated=bool(run.get("simulated")), parts=parts, damaged_parts=damaged,
        code_note=_code_note(run, task, events),
    )


def _code_note(run: dict[str, Any], task: Any, events: list[tuple[int, dict[str, Any]]]) -> str | None:
    """The task's code now against the log's fingerprint, and any resume on changed code."""
    from maker.log.identity import code_change, code_fingerprint

    notes = [f"resumed at step {d.get('from_step')} on changed code (--resume-changed-code): {d.get('message')}"
             for _, d in events if d.get("event") == "code_change"]
    now = code_change(run, {"task_code": code_fingerprint(task)})
    if now:
        notes.append(f"{now}: this audit rebuilt the task from today's code")
    return "; ".join(notes) or None


class _Audit:
    """The chain walk: one decided step at a time, in order (a part written out of order is held)."""

    def __init__(self, task: Any, schedule: KSchedule) -> None:
        self.task = task
        self.oracle = task if isinstance(task, Oracle) else None
        self.schedule = schedule
        self.next = 0
        self.pending: dict[int, tuple[str, list[str | None]]] = {}
        self.step = task.first_step()  # premise of step `next`; rebuilt lazily on the oracle path
        self.stale = False
        self.last: str | None = None
        self.bad: int | None = None
        self.reason: str | None = None
        self.wrong = 0
        self.tiers = Tiers()

    def fail(self, index: int, reason: str) -> None:
        self.bad, self.reason = index, reason

    def take(self, index: int, answer: str, keys: list[str | None]) -> None:
        if index != self.next:
            if index < self.next or index in self.pending:
                self.fail(index, "step decided twice")
            else:
                self.pending[index] = (answer, keys)
            return
        self.check(index, answer, keys)
        while self.bad is None and self.next in self.pending:
            self.check(self.next, *self.pending.pop(self.next))

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
        if not self.tiers.decides(index, answer, keys, self.schedule.at(index)):
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

    def finish(self, steps: int) -> bool:
        """Close the walk; whether the log holds a whole, valid, solved run."""
        if self.bad is None and self.pending:
            self.fail(self.next, "no decision logged for this step")
        if self.bad is not None or steps != self.task.total_steps:
            return False
        end = self.premise(self.next) if self.last is not None else self.step
        return bool(self.task.is_solved(end))


class _PlanAudit(_Audit):
    """The plan walk: a node's premise is its inputs, filled in from the logged decisions it
    names.  The log holds every input's decision before the nodes that use it (a node is
    dispatched only once its inputs are decided, and parts hold decisions in step order)."""

    def __init__(self, task: Any, schedule: KSchedule) -> None:
        super().__init__(task, schedule)
        # a node's batch may have been voted under any k the run used (batches overlap a k change)
        self.ks = sorted({schedule.k0, *(k for _, k in schedule.changes)})
        self.values: dict[int, str] = {}

    def take(self, index: int, answer: str, keys: list[str | None]) -> None:
        task = self.task
        if index in self.values or not 0 <= index < task.total_steps:
            return self.fail(index, "step decided twice" if index in self.values else "not a step of this plan")
        try:
            step = task.step_input(index, self.values)
        except KeyError:
            return self.fail(index, "decided although an input was never decided")
        verdict = task.judge(step, answer)
        if verdict.key != answer:
            return self.fail(index, f"decision breaks the rules on its inputs ({verdict.detail})")
        if not task.is_tool(index) and not any(self.tiers.decides(index, answer, keys, k) for k in self.ks):  # a tool step is re-run, not voted
            return self.fail(index, "the logged votes do not decide this answer")
        if self.oracle is not None and task.reference_reply(step) != answer:
            self.wrong += 1
            return self.fail(index, "decision differs from the ground truth")
        self.values[index] = answer

    def finish(self, steps: int) -> bool | None:
        """Whether the plan is solved; None when it finished but, without ground truth, right
        or wrong is unknown."""
        task = self.task
        if self.bad is not None or len(self.values) != task.total_steps:
            return False
        answer = task.final_answer(self.values)
        if self.oracle is None:
            return None
        if answer != task.expected_answer():
            self.fail(task.total_steps - 1, f"the plan's answer {answer[:60]} is not the expected one")
            return False
        return True
