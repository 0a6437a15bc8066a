"""Which segments of a chain are in flight, and on which premises.

A chained run is cut into segments that workers vote one after another: segment j+1
starts where segment j ended.  Without help that allows one segment at a time (plus
the next one sent while the driver checks the last).  With a *draft* (`--draft
reference`, tasks with ground truth) the schedule starts later segments on the premise
the task's ground truth gives for their first step, on other workers, before the
segment ahead of them is done -- speculative decoding at the scale of segments.

Nothing is trusted for it.  A segment's results are handed to the runner only when the
segment before it ended on exactly its premise, with the k the guard now asks for;
otherwise the segment and every one after it are thrown away and their samples come
back to be logged as wasted.  A segment that stopped early (its time budget ran out)
leaves a gap, which a segment of the missing steps fills before the next one is judged.
Once the run's own decisions leave the ground-truth path, drafting pauses: every draft
would lose.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable
from typing import Any

from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.tasks.base import Oracle, StepInput, Task


class SegmentSchedule:
    """Keeps up to `ahead` segments in flight; `next()` returns them in chain order."""

    def __init__(
        self, pool: Any, task: Task, make_job: Callable[[StepInput], SegmentJob], last_index: int, ahead: int, draft: bool,
        on_result: Callable[[SegmentResult], None] | None = None,
    ) -> None:
        """`on_result` sees every segment's result as soon as it is in, before any later
        segment is started (the spend cap charges what it was billed there)."""
        self.pool = pool
        self.on_result = on_result
        self.task = task
        self.make_job = make_job
        self.last_index = last_index
        self.ahead = max(1, ahead)
        self.draft = draft and isinstance(task, Oracle)
        self.queue: deque[Any] = deque()  # Pending segments, in chain order; the head's premise is verified
        self.frontier = 0  # first step no queued segment covers
        self.on_truth = self.draft
        self.drafted = 0  # segments started on a drafted premise
        self.discarded = 0  # ... whose premise lost

    def start(self, at: StepInput) -> None:
        self.frontier = at.index
        self._fill(at)

    def next(self) -> tuple[SegmentResult, SegmentJob, list[SegmentResult]] | None:
        """The head segment's result and job, and the results of segments thrown away
        behind it (to log as wasted); None when nothing is left to run."""
        if not self.queue:
            return None
        head = self.queue.popleft()
        result = self._get(head)
        end = result.end
        lost: list[SegmentResult] = []
        done = (result.failed_step is not None or result.error is not None or not result.decisions["step"]
                or end.index > self.last_index or result.budget_stop)
        if self.draft:
            self.on_truth = end.index > self.last_index or end == self._drafted_at(end.index)
        if done:
            lost = self._drop()
        elif self.queue:
            following: SegmentJob = self.queue[0].payload
            if end.index < following.start.index:  # stopped early: fill the gap, judge the next one after it
                gap = dataclasses.replace(self.make_job(end), max_steps=following.start.index - end.index)
                self.queue.appendleft(self.pool.submit(run_segment, gap))
            elif end != following.start or self.make_job(end).voting != following.voting:
                lost = self._drop()
        if not done:
            if not self.queue:
                self.frontier = end.index
            self._fill(end)
        return result, head.payload, lost

    def _fill(self, verified_end: StepInput) -> None:
        while len(self.queue) < self.ahead and self.frontier <= self.last_index:
            if not self.queue:
                at = verified_end
            elif self.draft and self.on_truth:
                at = self._drafted_at(self.frontier)
                self.drafted += 1
            else:
                return
            job = self.make_job(at)
            self.queue.append(self.pool.submit(run_segment, job))
            self.frontier = at.index + job.max_steps

    def _get(self, pending: Any) -> SegmentResult:
        result: SegmentResult = self.pool.get(pending)
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _drafted_at(self, index: int) -> StepInput:
        """The premise of step `index` on the ground-truth path."""
        if index == 0:
            return self.task.first_step()
        return self.task.step_after(index - 1, self.task.truth(index - 1))  # type: ignore[attr-defined]

    def _drop(self) -> list[SegmentResult]:
        """Throw every queued segment away; their results (paid for) come back to be logged."""
        lost = []
        while self.queue:
            lost.append(self._get(self.queue.popleft()))
            self.discarded += 1
        return lost


def as_wasted(columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A thrown-away segment's sample (or draft) columns, marked wasted and not counted; its
    decisions are dropped."""
    samples = dict(columns)
    n = len(samples["step"])
    samples["wasted"] = [True] * n
    samples["counted"] = [False] * n
    return samples
