"""`maker replay --verify`: re-check a whole trajectory from the step log alone.

Nothing from the run is trusted: the task is rebuilt from the log's metadata, each
decision is re-parsed and re-checked against the task's rules on the premise the
previous decision implies, each step is re-decided from its logged votes, and where the
task has ground truth each decision is compared with it.  The first step that fails any
check is reported.  One audit path for both task shapes: a plan run (`maker.runtime.dag`)
differs only in where a step's premise comes from -- the steps it names, not the step
before it -- and in what "solved" means (the answer template filled in and, where the
task knows it independently, equal to the expected answer).

Rules and votes are checked first: a decision that breaks them (a damaged or altered log)
stops the audit there.  Ground truth is compared on every step, and the walk goes on past a
wrong decision, so the report names every wrong step (`wrong_steps`, in step order), not only
the first.  A step that is right on its premise but whose premise holds a wrong value -- a
tool step fed a wrong input, a chained step after a wrong one -- is *consequential*
(`consequential_steps`), not another error.

A tool step is a side effect and is never run again here unless the user asks
(`rerun_tools`) or the tool is declared pure (`maker.tool(..., pure=True)`): its logged row
names the inputs it ran on, which must be the logged decisions its plan step names.
"""

from __future__ import annotations

import json
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
    #: every decision that differs from the ground truth on its own premise, in step order
    #: (None: no ground truth); `wrong_decisions` is its length
    wrong_steps: list[int] | None = None
    #: steps right on their premise whose premise holds a wrong value (not errors of their own):
    #: how many, and the first `LISTED` of them in step order
    consequential: int | None = None
    consequential_steps: list[int] | None = None
    tools_rerun: int = 0  # tool steps run again (pure, or --rerun-tools)
    #: tool steps whose inputs the log does not record (an older log), left unchecked
    tools_unchecked: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


WRONG = "decision differs from the ground truth"
#: consequential steps listed by id (a chain that went wrong early has one per later step)
LISTED = 1000


def verify_log(path: str | Path, *, salvage: bool = False, rerun_tools: bool = False) -> VerifyReport:
    """Audit the log at `path` (a chain run or a plan run); the report names the first
    step that fails a check.

    Streams the log part by part (see `maker.log.by_step`), so memory stays flat however
    long a chain.  Checks per decided step: the decision obeys the task's rules on its
    premise (a chain: the one the previous decision implies; a plan: its inputs filled in
    from the logged decisions it names), the logged votes decide it with the k it was
    decided under, and it equals the ground truth where the task has one.  On a chain with
    ground truth, a decision equal to the truth on the true premise obeys the rules by
    construction, so only decisions that differ from the truth are re-judged.  A tool step is
    run again only when `rerun_tools` or the tool is pure (see the module docstring).
    """
    from maker.tasks.plans.plan_task import PlanTask

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
    is_plan = isinstance(task, PlanTask)
    audit: _Audit = _PlanAudit(task, schedule, rerun_tools) if is_plan else _Audit(task, schedule)
    audit.tiers = Tiers.from_events(events)  # escalation tiers and plurality: the one re-decision
    decided = 0
    for chunk in iter_chunks(info, decision_columns=("kind", "reply") if is_plan else ()):
        if is_plan:
            d = chunk.decisions
            audit.tool_inputs.update((step, reply) for step, kind, reply in
                                     zip(d["step"].to_pylist(), d["kind"].to_pylist(), d["reply"].to_pylist()) if kind == "tool")
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
    wrong = sorted(audit.wrong)
    consequential = sorted(audit.consequential)
    first_bad, reason = audit.bad, audit.reason
    if wrong and (first_bad is None or wrong[0] < first_bad):
        stopped = f"; the audit stopped at step {first_bad}: {reason}" if first_bad is not None else ""
        first_bad, reason = wrong[0], WRONG + stopped
    known = audit.oracle is not None  # without ground truth, wrong and consequential are unknown
    return VerifyReport(
        log=str(info.path), task=task.describe() if is_plan else task.spec.describe(),
        steps=decided, total_steps=task.total_steps, valid=audit.bad is None and not wrong, solved=solved,
        first_bad_step=first_bad, reason=reason,
        wrong_decisions=len(wrong) if known else None,
        simulated=bool(run.get("simulated")), parts=parts, damaged_parts=damaged,
        code_note=_code_note(run, task, events),
        wrong_steps=wrong if known else None,
        consequential=len(consequential) + audit.more_consequential if known else None,
        consequential_steps=consequential if known else None,
        tools_rerun=getattr(audit, "tools_rerun", 0), tools_unchecked=getattr(audit, "tools_unchecked", 0),
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
        self.wrong: list[int] = []  # decisions that differ from the ground truth on their premise
        self.consequential: list[int] = []  # right on a premise that holds a wrong value (first LISTED)
        self.more_consequential = 0  # ... and how many more
        self.derailed = False  # a chain: an earlier decision was wrong, so this premise is not the true one
        self.tiers = Tiers()
        self.tool_inputs: dict[int, str | None] = {}

    def off_truth(self, index: int, on_premise: bool) -> None:
        """Note a decision that is not the true one: its own error, or a consequence of one."""
        if not on_premise:
            self.wrong.append(index)
        elif len(self.consequential) < LISTED:
            self.consequential.append(index)
        else:
            self.more_consequential += 1

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
        on_truth = self.oracle is not None and not self.derailed and answer == self.oracle.truth(index)
        if not on_truth:
            verdict = task.judge(self.premise(index), answer)
            if verdict.key != answer:
                return self.fail(index, f"decision breaks the task's rules on its premise ({verdict.detail})")
        if not self.tiers.decides(index, answer, keys, self.schedule.at(index)):
            return self.fail(index, "the logged votes do not decide this answer")
        if self.oracle is not None and not on_truth:
            # on the true premise it is wrong; after a wrong step, wrong only if not right on its own premise
            premise = self.premise(index)
            right = self.derailed and task.judge(premise, self.oracle.reference_reply(premise)).key == answer
            self.off_truth(index, right)
            self.derailed = True
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
        if self.bad is not None or self.wrong or steps != self.task.total_steps:
            return False
        end = self.premise(self.next) if self.last is not None else self.step
        return bool(self.task.is_solved(end))


class _PlanAudit(_Audit):
    """The plan walk: a node's premise is its inputs, filled in from the logged decisions it
    names.  The log holds every input's decision before the nodes that use it (a node is
    dispatched only once its inputs are decided, and parts hold decisions in step order)."""

    def __init__(self, task: Any, schedule: KSchedule, rerun_tools: bool = False) -> None:
        super().__init__(task, schedule)
        # a node's batch may have been voted under any k the run used (batches overlap a k change)
        self.ks = sorted({schedule.k0, *(k for _, k in schedule.changes)})
        self.values: dict[int, str] = {}
        self.right: dict[int, bool] = {}  # node -> its value is the true one (with ground truth)
        self.rerun_tools = rerun_tools
        self.tools_rerun = 0
        self.tools_unchecked = 0

    def take(self, index: int, answer: str, keys: list[str | None]) -> None:
        task = self.task
        if index in self.values or not 0 <= index < task.total_steps:
            return self.fail(index, "step decided twice" if index in self.values else "not a step of this plan")
        try:
            step = task.step_input(index, self.values)
        except KeyError:
            return self.fail(index, "decided although an input was never decided")
        if task.is_tool(index):
            problem = self.check_tool(index, step, answer)
            if problem is not None:
                return self.fail(index, problem)
        else:
            verdict = task.judge(step, answer)
            if verdict.key != answer:
                return self.fail(index, f"decision breaks the rules on its inputs ({verdict.detail})")
            if not any(self.tiers.decides(index, answer, keys, k) for k in self.ks):
                return self.fail(index, "the logged votes do not decide this answer")
        if self.oracle is not None:
            # a tool is right on any premise (it is what ran); a voted step is checked against its operation's truth
            on_premise = task.is_tool(index) or task.reference_reply(step) == answer
            inputs_right = all(self.right[d] for d in task.plan.deps(index))
            self.right[index] = on_premise and inputs_right
            if not self.right[index]:
                self.off_truth(index, on_premise)
        self.values[index] = answer

    def check_tool(self, index: int, step: Any, answer: str) -> str | None:
        """A tool step's row against its inputs, without running it unless allowed; the
        problem in one line, or None."""
        recorded = self.tool_inputs.get(index)
        if recorded is not None and json.loads(recorded) != list(step.premise[1]):
            return "the tool ran on inputs other than the logged decisions its step names"
        if self.rerun_tools or self.task.is_pure_tool(index):
            self.tools_rerun += 1
            verdict = self.task.judge(step, answer)  # runs the tool on the logged inputs
            if verdict.key != answer:
                return f"the tool's logged output is not what it gives on its inputs ({verdict.detail})"
        elif recorded is None:
            self.tools_unchecked += 1  # a log from before tool inputs were logged: --rerun-tools checks it
        return None

    def finish(self, steps: int) -> bool | None:
        """Whether the plan is solved; None when it finished but, without ground truth, right
        or wrong is unknown."""
        task = self.task
        if self.bad is not None or self.wrong or len(self.values) != task.total_steps:
            return False
        answer = task.final_answer(self.values)
        if self.oracle is None:
            return None
        expected = task.expected_answer({i: v for i, v in self.values.items() if task.is_tool(i) and self.right[i]})
        if expected is not None and answer != expected:
            self.fail(task.total_steps - 1, f"the plan's answer {answer[:60]} is not the expected one")
            return False
        return True
