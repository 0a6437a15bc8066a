"""`maker replay --verify` for plan logs: re-check a DAG run from its step log alone.

Why not the chain audit: a chain's premise for step t is implied by step t-1's decision,
so the audit walks the log in order.  A plan step's premise is its inputs, which come
from whichever steps it names, decided in any order.  So this audit reads every decision
first (a plan log holds one decision per node), then walks the plan in dependency order:
each step's inputs are filled in from the *logged* decisions of the steps it names,
the decision must obey the operation's rules on those inputs, the logged votes must
decide it, and where the task has ground truth it must be the operation's right answer
on those inputs.  Finally the answer template is filled in from the logged decisions and,
where the task knows the answer independently (a*b, sorted(values)), compared with it.
The first step (in plan order) that fails any check is reported.

Memory: one decision and its vote keys per node; fine for plans of up to millions of
small steps.
"""

from __future__ import annotations

from typing import Any

from maker.log.by_step import iter_chunks, parts_read
from maker.log.steplog import LogInfo
from maker.tasks.base import Oracle
from maker.tasks.plan_task import PlanTask
from maker.voting import decide


def verify_plan_log(info: LogInfo, task: PlanTask, k: int) -> Any:
    """Audit a plan run's log (see the module docstring); returns a `maker.audit.verify.VerifyReport`."""
    from maker.audit.verify import VerifyReport

    decided: dict[int, tuple[str, list[str | None]]] = {}
    bad: tuple[int, str] | None = None
    for chunk in iter_chunks(info):
        for index, answer, keys, *_ in chunk.steps():
            if answer is None:
                continue  # drawn but never decided: the vote cap, or a run still drawing
            if index in decided or not 0 <= index < task.total_steps:
                bad = bad or (index, "step decided twice" if index in decided else "not a step of this plan")
                continue
            decided[index] = (answer, keys)
    values: dict[int, str] = {}
    wrong = 0
    oracle = isinstance(task, Oracle)
    for index in range(task.total_steps):
        if bad is not None:
            break
        entry = decided.get(index)
        if entry is None:
            continue  # never decided (a partial run, or the vote cap): its dependents must not be either
        answer, keys = entry
        try:
            step = task.step_input(index, values)
        except KeyError:
            bad = (index, "decided although an input was never decided")
            break
        verdict = task.judge(step, answer)
        if verdict.key != answer:
            bad = (index, f"decision breaks the rules on its inputs ({verdict.detail})")
            break
        if not task.is_tool(index) and decide(keys, k)[0] != answer:  # a tool step is re-run, not voted
            bad = (index, "the logged votes do not decide this answer")
            break
        if oracle and task.reference_reply(step) != answer:  # type: ignore[attr-defined]
            wrong += 1
            bad = (index, "decision differs from the ground truth")
            break
        values[index] = answer
    complete = bad is None and len(values) == task.total_steps
    reason = bad[1] if bad else None
    solved = False
    if complete:
        answer = task.final_answer(values)
        solved = True if oracle else None  # finished; right or not is unknown without ground truth
        if oracle and answer != task.expected_answer():  # type: ignore[attr-defined]
            solved = False
            bad, reason = (task.total_steps - 1, f"the plan's answer {answer[:60]} is not the expected one")
    parts, damaged = parts_read(info)
    return VerifyReport(
        log=str(info.path),
        task=task.describe(),
        steps=len(decided),
        total_steps=task.total_steps,
        valid=bad is None,
        solved=solved,
        first_bad_step=bad[0] if bad else None,
        reason=reason,
        wrong_decisions=wrong if oracle else None,
        simulated=bool(info.run.get("simulated")),
        parts=parts,
        damaged_parts=damaged,
    )
