"""The step loop that runs inside a Ray worker: vote a run of consecutive steps.

Why in the worker: a chained task cannot batch across steps on the driver (step t+1's
prompt needs step t's decision), and a Ray round trip costs milliseconds.  So the
driver hands a worker a *segment*: a starting premise and a step budget.  The worker
votes each step exactly as the design says (round one draws k samples together, first
at temperature 0; later rounds draw only what the leader still needs; red-flagged
samples never vote), advances on each decision, and returns every sample and decision
in columns.  The driver re-checks every decision from the returned votes before it
accepts and logs them, so a segment is never trusted blindly.
"""

from __future__ import annotations

import time
from typing import Any

from maker.engine.rows import DECISION_COLUMNS, SAMPLE_COLUMNS, append_row, append_rows, new_columns
from maker.engine.step import vote_step
from maker.errors import MakerError, one_line
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.runtime.chain.speculation import run_window


async def run_segment(worker: Any, job: SegmentJob) -> SegmentResult:
    """Vote up to `job.max_steps` steps starting at `job.start` (runs in a worker).

    With `job.speculate > 0` the steps are voted through a speculative window (see
    `maker.runtime.chain.speculation`); the decisions are the same, only the schedule differs.
    """
    if job.speculate > 0:
        return await run_window(worker, job)
    return await _run_in_order(worker, job)


async def _run_in_order(worker: Any, job: SegmentJob) -> SegmentResult:
    """One step after another: each step's samples are drawn only once its premise is decided."""
    task, clients = worker.task, worker.clients
    samples = new_columns(SAMPLE_COLUMNS)
    decisions = new_columns(DECISION_COLUMNS)
    sample_cols = [samples[c] for c in SAMPLE_COLUMNS]
    started = time.perf_counter()
    step = job.start
    failed: int | None = None
    events: dict[str, list[Any]] = {"step": [], "detail": []}
    error: str | None = None
    budget_stop = False
    for _ in range(job.max_steps):
        if step.index > job.last_step:
            break
        try:
            vote = await vote_step(task, clients, step, job.voting, job.policy, job.models, job.run_seed, job.budget)
        except MakerError:
            raise
        except Exception as exc:  # the task's own prompt raised: keep what is decided, say why
            error = one_line(exc, None, typed=True)
            break
        append_rows(sample_cols, step.index, vote.rows)
        vote.event_columns(events)
        if vote.budget_stop:  # the step's next round would cross the cap: stop here, undecided
            budget_stop = True
            break
        if vote.winner is None:
            failed = step.index
            break
        append_row(decisions, DECISION_COLUMNS, vote.decision_row())
        try:
            step = task.step_after(step.index, vote.winner)  # winner was judged on this premise
        except Exception as exc:  # the task's own next-state code
            error = one_line(exc, None, typed=True)
            break
        if time.perf_counter() - started > job.max_seconds:
            break
    return SegmentResult(samples, decisions, step, failed, time.perf_counter() - started, events, error, budget_stop=budget_stop)
