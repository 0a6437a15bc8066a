"""`maker report LOG --out DIR`: where a run's samples, errors and money went.

Why: a step log is too long to read, and the questions users ask of it are always the
same -- how fast did undecided steps fall round by round, how many votes did steps
need, which red flags fired, are long replies worse, where did the cost go, how much
speculation was thrown away.  `collect` answers them in one streaming pass over the
log (part by part, constant memory in the run's length); `write_report` turns the
answers into `report.md` and a few PNG plots (see `maker.report.plots`).

"Error" here means a valid sample (no red flag, an answer) that disagrees with its
step's decision, counted or not -- the decision is the reference, as it is in the run.

Example:
    >>> stats = collect(open_log("runs/h10.parquet"))                 # doctest: +SKIP
    >>> write_report(stats, "runs/h10-report")                       # doctest: +SKIP
    ['runs/h10-report/report.md', 'runs/h10-report/undecided_by_round.png', ...]
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from maker.budget.breakdown import BREAKDOWN_COLUMNS, CostBreakdown
from maker.errors import UsageError
from maker.log.by_step import describe_run, iter_chunks, parts_read
from maker.log.steplog import LogInfo, count_faults
from maker.report.money import money_lines
from maker.runtime.draft import DraftTally, draft_tally
from maker.runtime.guard import k_schedule, log_events
from maker.runtime.progress import cost_text

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


def write_report(stats: RunStats, out: str | Path) -> list[Path]:
    """Write report.md and the PNG plots into `out` (created if needed); return the paths."""
    from maker.report import plots

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = plots.draw_all(stats, out)
    md = out / "report.md"
    md.write_text(render_markdown(stats, {p.name for p in written}))
    return [md, *written]


def render_markdown(s: RunStats, images: set[str]) -> str:
    from maker.budget.advice import next_k
    from maker.voting import clopper_pearson, k_min_pessimistic

    sim = " (simulated model)" if s.simulated else ""
    models = ", ".join(s.run.get("models") or []) or "?"
    lines = [f"# maker run report: {s.task}{sim}", ""]
    lines += [
        f"Log `{s.log}`: {s.parts} part(s), written by maker {s.run.get('maker_version', '?')} "
        f"on {s.run.get('started_at', '?')}; models {models}; first-to-ahead-by-k with k = {s.k}.",
    ]
    if s.k_changes:
        raised = ", ".join(f"to {k} from step {step:,}" for step, k in s.k_changes)
        lines += ["", f"The live guard raised k {raised}."]
    if s.escalations:
        tiers = (s.run.get("voting") or {}).get("escalate_to") or []
        by_tier = Counter(t for _, t in s.escalations)
        said = "; ".join(f"{n:,} to tier {t} ({', '.join(tiers[t - 1]) if t <= len(tiers) else '?'})"
                         for t, n in sorted(by_tier.items()))
        first = ", ".join(f"{step:,}" for step, _ in s.escalations[:10])
        lines += ["", f"**Escalations**: {len(s.escalations):,} step re-vote(s) on a stronger tier with a fresh "
                  f"ballot: {said}; steps {first}{' ...' if len(s.escalations) > 10 else ''}"
                  + (f" ({s.split_escalations:,} at once because the tier's first k votes split)." if s.split_escalations
                     else ".")]
    if s.plurality:
        first = ", ".join(f"{step:,}" for step in s.plurality[:10])
        lines += ["", f"**Plurality decisions** (warning: no margin guarantee): {len(s.plurality):,} step(s) "
                  f"taken by their ballot's leader: {first}{' ...' if len(s.plurality) > 10 else ''}."]
    if s.simulated:
        lines += ["", "**Simulated run**: every reply came from a simulated model (`sim:`, `script:` or "
                  "`maker sim-server`), not from an LLM."]
    if s.damaged_parts:
        lines += ["", f"**Salvaged**: {s.damaged_parts} damaged part(s) at the end were skipped."]
    lines += ["", "| | |", "|---|---|"]
    total = f" of {s.total_steps:,}" if s.total_steps else ""
    lines.append(f"| decided steps | {s.steps:,}{total} |")
    if s.logged_undecided:
        lines.append(f"| steps drawn but not decided | {s.logged_undecided:,} |")
    counted = s.samples - s.wasted
    per = f" ({counted / s.steps:.3f} per step)" if s.steps else ""
    lines.append(f"| samples counted (votes and red flags; what `maker run` reports) | {counted:,}{per} |")
    per = f" ({s.samples / s.steps:.3f} per step)" if s.steps else ""
    lines.append(f"| samples drawn (counted + {s.wasted:,} wasted speculative; all paid for) | {s.samples:,}{per} |")
    flagged = sum(s.red_flags.values())
    lines.append(f"| red-flagged samples | {flagged:,} ({_pct(flagged, s.samples)}) |")
    if s.graded_decisions:
        lines.append(f"| wrong decisions (against ground truth) | {s.wrong_decisions:,} of {s.graded_decisions:,} |")
    else:
        lines.append("| wrong decisions | unknown (no ground truth) |")
    if s.valid:
        ci = clopper_pearson(s.valid - s.errors_vs_decision, s.valid)
        lines.append(
            f"| valid samples agreeing with their step's decision | {ci.point:.5f} "
            f"(95% CI {ci.low:.5f}-{ci.high:.5f}; {s.valid:,} samples) |"
        )
        if s.graded_decisions and not s.wrong_decisions:
            lines.append("| which p that is | graded: every decision equals the ground truth, so agreeing is being right |")
        elif s.graded_decisions:
            lines.append(f"| which p that is | agreement, not accuracy: {s.wrong_decisions:,} decisions differ from the "
                         "ground truth, and votes that agree with a wrong decision count as right here "
                         "(`maker tune` grades them) |")
        else:
            lines.append("| which p that is | agreement (no ground truth): errors that agree and win look right |")
        if s.steps:
            kp = k_min_pessimistic(s.valid - s.errors_vs_decision, s.valid, max(s.total_steps, s.steps), 0.95)
            reached = max([s.k, *(k for _, k in s.k_changes)])
            advised, why = next_k(kp, k_used=reached, wrong_decisions=s.wrong_decisions if s.graded_decisions else None)
            shown = f"{advised} ({why}; that p alone asks for {kp})" if why else (kp if kp else "none")
            lines.append(f"| smallest k for 95% run success, on that interval's low end | {shown} |")
    if s.first_two_steps and s.valid:
        p = 1 - s.errors_vs_decision / s.valid
        lines.append(
            f"| steps whose first two votes both disagree with the decision | {s.first_two_wrong:,} of "
            f"{s.first_two_steps:,} (independent errors would give {(1 - p) ** 2 * s.first_two_steps:.2f}) |"
        )
    if s.slowest:
        lines.append(f"| slowest step | step {s.slowest[1]:,}: {s.slowest[0]} votes |")
    lines.append(f"| cost | {cost_text(s.cost_usd, simulated=s.simulated, steps=s.steps)} |")
    if s.bill.abandoned_usd:
        lines.append(f"| billed (estimated) for abandoned calls | ${s.bill.abandoned_usd:,.6f} (timeouts and cancelled "
                     "requests, at their prompt cost: the provider may still have served them) |")
    hidden = f" (of which {s.reasoning_tokens:,} hidden reasoning)" if s.reasoning_tokens else ""
    lines.append(f"| tokens in / out | {s.tokens_in:,} / {s.tokens_out:,}{hidden} |")
    lines.append(f"| model time (sum of latencies) | {s.latency_s:,.1f} s |")
    lines.append(f"| wasted speculative samples | {s.wasted:,} |")
    if s.draft is not None:
        d = s.draft
        acceptance = "unknown" if d.acceptance is None else f"{d.acceptance:.1%}"
        speedup = "unknown" if d.speedup is None else f"~{d.speedup:.1f}x"
        lines.append(f"| draft ({d.model}): guesses accepted by the votes | {acceptance} ({d.accepted:,} of {d.proposed:,}) |")
        lines.append(f"| draft: speed-up over in-order (estimated from the voters' latencies) | {speedup} |")
        lines.append(f"| draft: proposals (on lost premises; without a valid guess) | {d.samples:,} ({d.wasted:,}; "
                     f"{d.no_guess:,}) |")
        lines.append(f"| draft: cost (included in the cost above) | {cost_text(d.cost_usd, simulated=s.simulated, steps=s.steps)} |")

    lines += ["", "## Undecided steps after each sampling round", ""]
    lines += [
        "Round 1 draws k samples per step; later rounds draw what the leader still needs. "
        "Steps the log holds drawn but undecided are not in this count.",
        "",
        _img("undecided_by_round.png", images),
        "",
        "| round | undecided after it |",
        "|---|---|",
    ]
    lines += [f"| {r} | {n:,} |" for r, n in s.undecided_after()]
    lines += ["", "## Votes per step", "", _img("votes_per_step.png", images)]
    lines += ["", "## Red flags by reason", ""]
    if s.red_flags:
        lines += [f"- {reason}: {n:,} ({_pct(n, s.samples)} of samples)" for reason, n in s.red_flags.most_common()]
    else:
        lines.append("No sample was red-flagged.")
    lines += ["", _img("red_flags.png", images)]
    lines += ["", "## Model-call faults", ""]
    if s.faults:
        lines.append(f"Failed attempts behind the logged samples, retried ones included ({sum(s.faults.values()):,} in all):")
        lines.append("")
        lines += [f"- {kind}: {n:,}" for kind, n in s.faults.most_common()]
    else:
        lines.append("No model call failed.")
    lines += ["", "## Error rate against output length", ""]
    lines += [
        "An error is a valid sample that disagrees with its step's decision; buckets of output tokens "
        "hold similar numbers of samples; bars are 95% Clopper-Pearson intervals.",
        "",
        _img("error_vs_length.png", images),
    ]
    lines += money_lines(s, images)
    lines += ["", "## Cost over the run", "", _img("cost.png", images)]
    if not s.cost_usd:
        lines += ["", "Every sample's cost_usd is 0 in this log (a simulated or free model, or one with no known price): "
                  "the plot shows samples."]
    lines += ["", "## Wasted speculative samples", ""]
    if s.wasted:
        lines += [f"{s.wasted:,} samples ({_pct(s.wasted, s.samples)}) were drawn on a premise that lost its vote.", ""]
        lines.append(_img("wasted.png", images))
    else:
        lines.append("None in this log (no speculation, or none wasted): plot skipped.")
    return "\n".join(lines) + "\n"


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


def _pct(n: int, of: int) -> str:
    return f"{100 * n / of:.3g}%" if of else "0%"


def _img(name: str, images: set[str]) -> str:
    return f"![{name}]({name})" if name in images else f"({name} not drawn)"

