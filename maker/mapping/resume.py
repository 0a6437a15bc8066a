"""What a resumed map job takes from its step log: the rows already decided, never voted again.

Why its own module: the plan runner resumes from a dict of every decided value; a map
job of a million rows keeps the log's decision rows as Arrow arrays, sorted by row, and
hands each input chunk the logged rows that fall in it (`LoggedRows.fill`).  A row the log
drew but never decided (the sample cap) is voted again; its seeded draws repeat.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from maker.log.steplog import LogInfo, iter_tables
from maker.tasks.base import StepInput


class LoggedRows:
    """The decided rows of a log: row index, answer value, votes, samples, correct, red flags."""

    def __init__(self, steps: np.ndarray, table: pa.Table | None, flags: dict[int, int], value: Any = None) -> None:
        self.steps = steps
        self.table = table
        self.flags = flags
        self.value = value
        self.count = int(len(steps))

    @classmethod
    def empty(cls) -> LoggedRows:
        return cls(np.zeros(0, dtype=np.int64), None, {})

    @classmethod
    def read(cls, info: LogInfo, task: Any) -> LoggedRows:
        """The decided rows of the log `info` (read part by part; kept as Arrow columns)."""
        decided = [t.select(["step", "answer", "votes", "samples", "correct"])
                   for t in iter_tables(info, ["step", "answer", "votes", "samples", "correct"], kind="decision")]
        flags: dict[int, int] = {}
        for t in iter_tables(info, ["step", "red_flag"], kind="sample"):
            flagged = t.filter(pc.is_valid(t["red_flag"]))["step"]
            for step, n in zip(*np.unique(flagged.to_numpy(), return_counts=True)) if len(flagged) else ():
                flags[int(step)] = flags.get(int(step), 0) + int(n)
        if not decided:
            return cls.empty()
        table = pa.concat_tables(decided)
        table = table.take(pc.sort_indices(table["step"]))
        steps = table["step"].to_numpy()
        return cls(steps, table, flags, task.value)

    def fill(self, chunk: Any, steps: list[StepInput]) -> list[StepInput]:
        """Put the logged rows of `chunk` (rows chunk.first.. ) into it; the steps left to vote."""
        if not self.count or not steps:
            return steps
        first, last = steps[0].index, steps[-1].index
        lo, hi = np.searchsorted(self.steps, [first, last + 1])
        if lo == hi:
            return steps
        part = self.table.slice(lo, hi - lo)
        done = set()
        for index, answer, votes, samples, correct in zip(part["step"].to_pylist(), part["answer"].to_pylist(),
                                                          part["votes"].to_pylist(), part["samples"].to_pylist(),
                                                          part["correct"].to_pylist()):
            at = index - chunk.first
            chunk.answers[at] = self.value(answer)
            chunk.votes[at], chunk.samples[at], chunk.decided[at], chunk.correct[at] = votes or 0, samples or 0, True, correct
            chunk.red_flags[at] = self.flags.get(index, 0)
            done.add(index)
        chunk.left -= len(done)
        return [s for s in steps if s.index not in done]


__all__ = ["LoggedRows"]
