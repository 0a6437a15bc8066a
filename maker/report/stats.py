"""What a run's log adds up to (`RunStats`), counted in one streaming pass (`collect`).

Why a module of its own: `maker report` renders these figures as Markdown
(`maker.report.summary`) and as PNG plots (`maker.report.plots`); both read them, neither
imports the other.

"Error" here means a valid sample (no red flag, an answer) that disagrees with its
step's decision, counted or not -- the decision is the reference, as it is in the run.

Example:
    >>> stats = collect(open_log("runs/h10.parquet"))                 # doctest: +SKIP
    >>> stats.samples                                                # doctest: +SKIP
    123456
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from maker.budget.breakdown import BREAKDOWN_COLUMNS, CostBreakdown
from maker.log.by_step import describe_run, iter_chunks, parts_read
from maker.log.steplog import LogInfo, count_faults, iter_tables
from maker.runtime.chain.draft import DraftTally, draft_tally
from maker.runtime.guard import k_schedule, log_events

#: Steps per point of the cost-over-the-run curve is total_steps / COST_POINTS.
COST_POINTS = 2000


@dataclass
class RunStats:
    """Everything the report shows, gathered in one pass over the log."""

    log: str
    task: str
    run: dict[str, Any]
    parts: int
    damaged_parts: int
    total_steps: int
    steps: int = 0
    samples: int = 0
    wasted: int = 0
    valid: int = 0  # valid samples of decided steps, not wasted
    errors_vs_decision: int = 0
    wrong_decisions: int = 0
    graded_decisions: int = 0
    logged_undecided: int = 0
    red_flags: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)  # failed model-call attempts by kind (retried ones too)
    rounds: Counter = field(default_factory=Counter)
    votes: Counter = field(default_factory=Counter)
    samples_per_step: Counter = field(default_factory=Counter)
    slowest: tuple[int, int] | None = None  # (votes, step)
    first_two_steps: int = 0  # steps with two valid votes
    first_two_wrong: int = 0  # ... both disagreeing with the decision
    cost_usd: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    reasoning_tokens: int = 0  # hidden reasoning tokens among tokens_out (null in logs before schema 4)
    latency_s: float = 0.0
    bin_width: int = 1
    bin_cost: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bin_samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    bin_wasted: np.ndarray = field(default_factory=lambda: np.zeros(0))
    length_valid: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # by tokens_out
    length_errors: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    k_changes: tuple[tuple[int, int], ...] = ()  # (from step, k): raised mid-run by the live guard
    escalations: list[tuple[int, int]] = field(default_factory=list)  # (step, to tier): `VotingConfig.on_undecided`
    plurality: list[int] = field(default_factory=list)  # steps taken by their ballot's leader (no margin)
    bill: CostBreakdown = field(default_factory=CostBreakdown)  # the bill by model and by kind
    budget_stops: list[str] = field(default_factory=list)  # the stop line of each leg that reached its --max-cost
    split_escalations: int = 0  # escalations because the tier's first k votes split (`escalate_on_split`)
    draft: DraftTally | None = None  # the draft's proposals (`kind = 'draft'` rows), when the run had one

    @property
    def simulated(self) -> bool:
        return bool(self.run.get("simulated"))

    @property
    def k(self) -> int | None:
        return (self.run.get("voting") or {}).get("k")

    def undecided_after(self) -> list[tuple[int, int]]:
        """(round r, decided steps still undecided after round r), r = 0..max rounds."""
        last = max(self.rounds, default=0)
        out = []
        left = self.steps
        for r in range(last + 1):
            left -= self.rounds.get(r, 0)
            out.append((r, left))
        return out


def collect(info: LogInfo) -> RunStats:
    """One streaming pass over the log: counts, histograms and per-step-bin sums."""
    run = info.run
    total = int(run.get("total_steps") or 0)
    width = max(1, math.ceil(total / COST_POINTS)) if total else 1024
    s = RunStats(str(info.path), describe_run(run), run, len(info.parts), len(info.damaged), total, bin_width=width)
    bins = _Bins(width)
    scols = ("tokens_in", "tokens_out", "latency_s", "faults", "reasoning_tokens", "model", "counted", "abandoned_usd", "cached_tokens")
    tiers = (run.get("voting") or {}).get("escalate_to") or ()
    s.bill = CostBreakdown(frozenset(m for tier in tiers for m in tier))
    dcols = ("votes", "samples", "rounds", "correct")
    for chunk in iter_chunks(info, scols, dcols):
        d = chunk.decisions
        smp = chunk.samples
        s.steps += d.num_rows
        for name, counter in (("rounds", s.rounds), ("votes", s.votes), ("samples", s.samples_per_step)):
            values, counts = np.unique(_ints(d[name]), return_counts=True)
            counter.update(dict(zip(values.tolist(), counts.tolist())))
        correct = d["correct"]
        s.graded_decisions += d.num_rows - correct.null_count
        s.wrong_decisions += int(pc.sum(pc.invert(correct.fill_null(True))).as_py() or 0)
        if d.num_rows:
            votes = _ints(d["votes"])
            i = int(np.argmax(votes))
            if s.slowest is None or votes[i] > s.slowest[0]:
                s.slowest = (int(votes[i]), int(d["step"][i].as_py()))
        # Every logged sample was paid for: wasted and redrawn ones included.
        s.samples += smp.num_rows
        wasted = _bools(smp["wasted"])
        s.wasted += int(wasted.sum())
        for item in pc.value_counts(smp["red_flag"].drop_null()).to_pylist():
            s.red_flags[item["values"]] += item["counts"]
        count_faults(smp["faults"].drop_null().to_pylist(), s.faults)
        cost = smp["cost_usd"].fill_null(0.0).to_numpy(zero_copy_only=False)
        s.cost_usd += float(cost.sum())
        s.tokens_in += int(_ints(smp["tokens_in"]).sum())
        s.tokens_out += int(_ints(smp["tokens_out"]).sum())
        s.reasoning_tokens += int(_ints(smp["reasoning_tokens"]).sum())
        s.latency_s += float(smp["latency_s"].fill_null(0.0).to_numpy(zero_copy_only=False).sum())
        bins.add(_ints(smp["step"]), cost, wasted)
        s.bill.add(smp.select([c for c in BREAKDOWN_COLUMNS if c in smp.column_names]).to_pydict())
        _errors_by_length(s, chunk, d, wasted)
        for _, decision, keys in chunk.steps():
            if decision is None:
                s.logged_undecided += 1
                continue
            first = _first_two(keys)
            if first is not None:
                s.first_two_steps += 1
                s.first_two_wrong += first[0] != decision and first[1] != decision
    s.bin_cost, s.bin_samples, s.bin_wasted = bins.cost, bins.samples, bins.wasted
    s.parts, s.damaged_parts = parts_read(info)
    events = log_events(info)
    s.k_changes = k_schedule(info, events).changes
    for step, detail in events:
        if detail.get("event") == "escalation":
            s.escalations.append((step, int(detail.get("to_tier", 0))))
            s.split_escalations += detail.get("reason") == "split"
        elif detail.get("event") == "plurality":
            s.plurality.append(step)
        elif detail.get("event") == "budget_reached":
            s.budget_stops.append(str(detail.get("line", "")))
    s.draft = draft_tally(info, events)
    if s.draft is not None:
        s.cost_usd += s.draft.cost_usd
        for table in iter_tables(info, list(BREAKDOWN_COLUMNS), kind="draft"):  # the bill: the draft's spend apart
            s.bill.add(table.select(list(BREAKDOWN_COLUMNS)).to_pydict(), kind="draft")
    return s


def _errors_by_length(s: RunStats, chunk: Any, d: pa.Table, wasted: np.ndarray) -> None:
    smp = chunk.samples
    if not smp.num_rows or not d.num_rows:
        return
    live = chunk.live()
    valid = live & ~wasted & _isnull(smp["red_flag"]) & ~_isnull(smp["answer"])
    steps = _ints(smp["step"])
    dsteps = _ints(d["step"])
    at = np.clip(np.searchsorted(dsteps, steps), 0, len(dsteps) - 1)
    valid &= dsteps[at] == steps
    if not valid.any():
        return
    rows = np.flatnonzero(valid)
    answers = smp["answer"].take(pa.array(rows))
    decided = d["answer"].take(pa.array(at[rows]))
    wrong = pc.not_equal(answers, decided).to_numpy(zero_copy_only=False).astype(bool)
    tokens = np.maximum(_ints(smp["tokens_out"])[rows], 0)
    size = int(tokens.max()) + 1
    s.length_valid = _grow(s.length_valid, size)
    s.length_errors = _grow(s.length_errors, size)
    s.length_valid += np.bincount(tokens, minlength=len(s.length_valid))
    s.length_errors += np.bincount(tokens[wrong], minlength=len(s.length_errors))
    s.valid += len(rows)
    s.errors_vs_decision += int(wrong.sum())


class _Bins:
    """Per-step-bin sums that grow as steps arrive (a log may run past its planned length)."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.cost = np.zeros(0)
        self.samples = np.zeros(0)
        self.wasted = np.zeros(0)

    def add(self, steps: np.ndarray, cost: np.ndarray, wasted: np.ndarray) -> None:
        if not steps.size:
            return
        at = np.maximum(steps, 0) // self.width
        size = int(at.max()) + 1
        self.cost = _grow(self.cost, size) + np.bincount(at, weights=cost, minlength=max(size, len(self.cost)))
        self.samples = _grow(self.samples, size) + np.bincount(at, minlength=max(size, len(self.samples)))
        self.wasted = _grow(self.wasted, size) + np.bincount(at, weights=wasted, minlength=max(size, len(self.wasted)))


def _first_two(keys: list[str | None]) -> tuple[str, str] | None:
    first = None
    for key in keys:
        if key is None:
            continue
        if first is None:
            first = key
        else:
            return first, key
    return None


def _grow(a: np.ndarray, size: int) -> np.ndarray:
    return a if len(a) >= size else np.concatenate([a, np.zeros(size - len(a), dtype=a.dtype)])


def _ints(column: pa.ChunkedArray) -> np.ndarray:
    return column.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _bools(column: pa.ChunkedArray) -> np.ndarray:
    return column.fill_null(False).to_numpy(zero_copy_only=False).astype(bool, copy=False)


def _isnull(column: pa.ChunkedArray) -> np.ndarray:
    return pc.is_null(column).to_numpy(zero_copy_only=False).astype(bool, copy=False)
