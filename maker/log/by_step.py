"""A step log regrouped by step, streamed part by part.

Why: auditing, re-deciding and plotting a run all ask the same question of the log --
"what did step t draw, and what did it decide?" -- and a million-step log must not sit
in memory to answer it.  `iter_chunks` reads one part at a time and hands back the
steps that part completes: their samples sorted by sample index and their decision
rows.  Samples whose decision is not in the part yet (a decision written in a later
part) are carried forward until it turns up; what is still undecided at the end (a
step that hit the vote cap, or the step a live run is drawing) comes last, with no
decision rows.

Vote keys follow the run's own rule: a sample is a vote when its red flag is null and
its answer is not.  Samples marked `wasted` (drawn on a speculative premise that lost)
never vote.  When a step's sample index appears twice (a step redrawn after a resume),
the later write is the one that votes; both still count as paid for.

Example:
    >>> info = open_log("runs/h10.parquet")                          # doctest: +SKIP
    >>> for chunk in iter_chunks(info):                              # doctest: +SKIP
    ...     for step, decision, keys in chunk.steps(): ...
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from maker.log.steplog import LogInfo, decided_rows, iter_tables

#: Sample columns every chunk carries (more may be asked for).
SAMPLE_BASE = ("step", "sample", "answer", "red_flag", "wasted", "cost_usd")
#: Decision columns every chunk carries.
DECISION_BASE = ("step", "answer")


@dataclass(frozen=True)
class StepChunk:
    """Complete steps from one part: samples sorted by (step, wasted, sample), decisions by step."""

    samples: pa.Table
    decisions: pa.Table

    def live(self) -> np.ndarray:
        """Mask over `samples`: the rows that vote-count (not wasted, not superseded)."""
        n = self.samples.num_rows
        if n == 0:
            return np.zeros(0, dtype=bool)
        steps = _ints(self.samples["step"])
        index = _ints(self.samples["sample"], fill=-1)
        wasted = _bools(self.samples["wasted"])
        # Sorted by (step, wasted, sample, write order): a row is superseded when the next
        # row repeats its (step, sample) -- the later write of the same draw wins.
        same_next = np.zeros(n, dtype=bool)
        same_next[:-1] = (steps[:-1] == steps[1:]) & (index[:-1] == index[1:]) & (index[:-1] >= 0)
        same_next[:-1] &= wasted[:-1] == wasted[1:]
        return ~wasted & ~same_next

    def votes(self) -> tuple[np.ndarray, list[str | None], np.ndarray]:
        """Live samples as (steps, vote keys with None for a discarded sample, costs)."""
        mask = self.live()
        table = self.samples.filter(pa.array(mask)) if not mask.all() else self.samples
        answers = pc.if_else(pc.is_null(table["red_flag"]), table["answer"], pa.scalar(None, pa.string()))
        costs = table["cost_usd"].fill_null(0.0).to_numpy(zero_copy_only=False)
        return _ints(table["step"]), answers.to_pylist(), costs

    def spans(self) -> tuple[list[int], list[str | None], list[int], list[int], list[str | None], list[float]]:
        """Per step: (steps, logged decisions or None, lo, hi) over (vote keys, cumulative costs).

        Step i's vote keys are ``keys[lo[i]:hi[i]]`` in sample order (None for a discarded
        sample) and its samples cost ``cum[hi[i]] - cum[lo[i]]``.  Decided steps come in step
        order, then steps that have samples but no decision.  Plain lists: a per-step loop
        over them costs no NumPy call per step.
        """
        vsteps, keys, costs = self.votes()
        dsteps = _ints(self.decisions["step"])
        answers = self.decisions["answer"].to_pylist()
        if vsteps.size:
            undecided = np.setdiff1d(vsteps, dsteps)
            dsteps = np.concatenate([dsteps, undecided])
            answers += [None] * len(undecided)
        lo = np.searchsorted(vsteps, dsteps, "left").tolist()
        hi = np.searchsorted(vsteps, dsteps, "right").tolist()
        cum = np.concatenate([[0.0], np.cumsum(costs)]).tolist()
        return dsteps.tolist(), answers, lo, hi, keys, cum

    def steps(self) -> Iterator[tuple[int, str | None, list[str | None]]]:
        """(step, logged decision or None, vote keys in sample order) per step, as `spans` orders them."""
        steps, answers, lo, hi, keys, _ = self.spans()
        for step, answer, a, b in zip(steps, answers, lo, hi):
            yield step, answer, keys[a:b]


def iter_chunks(
    info: LogInfo,
    sample_columns: tuple[str, ...] = (),
    decision_columns: tuple[str, ...] = (),
) -> Iterator[StepChunk]:
    """Stream the log as chunks of complete steps (see the module docstring)."""
    scols = list(dict.fromkeys((*SAMPLE_BASE, *sample_columns)))
    dcols = list(dict.fromkeys((*DECISION_BASE, *decision_columns)))
    carry: pa.Table | None = None
    for table in iter_tables(info, sorted({*scols, *dcols})):
        kind = table["kind"]
        decisions = table.filter(decided_rows(kind)).select(dcols)
        samples = table.filter(pc.equal(kind, "sample")).select(scols)
        if carry is not None and carry.num_rows:
            samples = pa.concat_tables([carry, samples])
        if decisions.num_rows:
            done = pc.is_in(samples["step"], value_set=decisions["step"])
            carry = samples.filter(pc.invert(done))
            samples = samples.filter(done)
        else:
            carry, samples = samples, samples.slice(0, 0)
        yield StepChunk(_sorted(samples), decisions.sort_by("step"))
    if carry is not None and carry.num_rows:
        yield StepChunk(_sorted(carry), _empty_like(carry, dcols))


def parts_read(info: LogInfo) -> tuple[int, int]:
    """(parts read, damaged parts skipped) once a pass is over; skipping happens only with --salvage."""
    return len(info.parts) - len(info.unreadable), len(info.damaged) + len(info.unreadable)


def describe_run(run: dict) -> str:
    """`hanoi disks=10`: the task a log's run metadata names, for titles and reports."""
    options = run.get("task_options") or {}
    opts = " ".join(f"{key}={value}" for key, value in sorted(options.items()))
    return f"{run.get('task', '?')} {opts}".strip()


def _sorted(samples: pa.Table) -> pa.Table:
    """Sort by (step, wasted, sample, write order): a step's votes in the order drawn."""
    order = pa.array(np.arange(samples.num_rows, dtype=np.int64))
    ranked = samples.append_column("_row", order).append_column("_wasted", samples["wasted"].fill_null(False))
    keys = [("step", "ascending"), ("_wasted", "ascending"), ("sample", "ascending"), ("_row", "ascending")]
    return ranked.sort_by(keys).drop_columns(["_row", "_wasted"])


def _empty_like(samples: pa.Table, dcols: list[str]) -> pa.Table:
    from maker.log.steplog import SCHEMA

    return pa.schema([SCHEMA.field(c) for c in dcols]).empty_table()


def _ints(column: pa.ChunkedArray, fill: int = 0) -> np.ndarray:
    return column.fill_null(fill).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _bools(column: pa.ChunkedArray) -> np.ndarray:
    return column.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)
