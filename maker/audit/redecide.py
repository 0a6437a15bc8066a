"""`maker replay LOG --k K`: re-decide a finished run under another margin or rule.

Why: a run's log holds every sample each step drew, in the order drawn, so "would
k = 2 have been enough?" can be answered for free.  Each step's logged vote keys are fed
again, in sample order, to the new rule; the step then decides the same, decides
differently, or cannot be decided with the samples the log holds (a larger k needs
samples the run never drew).  Samples after the new rule's decision point are the ones
it would have saved.

A step that escalated to a stronger tier is re-decided tier by tier (each tier's fresh
ballot on its own samples; `maker.engine.tiers`), never over every tier's votes pooled.

Read the answer per step, not as a new trajectory: every sample was drawn on the
premise the *logged* decisions implied, so after the first changed step the later
steps are what the new rule would have said on the old premises.

Example:
    >>> report = redecide_log("runs/h10.parquet", k=2)          # doctest: +SKIP
    >>> report.changed, report.undecidable, report.samples_saved  # doctest: +SKIP
    (0, 0, 1034)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from maker.engine.tiers import RULES, Rule, Tiers
from maker.errors import StepLogError, UsageError
from maker.log.by_step import describe_run, iter_chunks, parts_read
from maker.log.steplog import LogInfo, open_log
from maker.runtime.guard import k_schedule, log_events

__all__ = ["RULES", "RedecideReport", "Rule", "StepChange", "redecide_log"]


@dataclass(frozen=True)
class StepChange:
    """One step whose outcome differs under the new rule (only these are listed)."""

    step: int
    outcome: str  # 'different' | 'undecidable' | 'newly_decided'
    logged: str | None
    new: str | None
    samples: int  # live samples the log holds for the step
    votes: int  # of which valid votes
    decision_point: int | None  # 1-based sample at which the new rule decides


@dataclass
class RedecideReport:
    log: str
    task: str
    rule: str
    k: int
    logged_rule: str
    logged_k: int
    steps: int  # decided steps in the log
    same: int
    changed: int
    undecidable: int
    logged_undecided: int  # steps with samples but no logged decision
    newly_decided: int  # of those, decided by the new rule
    first_changed_step: int | None
    first_undecidable_step: int | None
    changed_from_correct: int  # changed steps whose logged decision was right (the new one is wrong)
    samples: int  # live samples of decided steps
    samples_needed: int  # samples up to the new decision point, decided steps only
    samples_saved: int  # samples after the new decision point
    cost_usd: float
    cost_saved_usd: float
    simulated: bool
    parts: int = 0  # complete parts read
    damaged_parts: int = 0  # parts skipped by --salvage
    details: list[StepChange] = field(default_factory=list)
    details_left_out: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def redecide_log(
    path: str | Path,
    *,
    k: int | None = None,
    rule: str = "ahead-by-k",
    salvage: bool = False,
    max_details: int = 1000,
) -> RedecideReport:
    """Re-decide every step of the log at `path` under `rule` with margin `k` (default: the run's k)."""
    info = open_log(path, salvage=salvage)
    logged_k = _run_k(info)
    events = log_events(info)
    tiers = Tiers.from_events(events)  # an escalated step is re-decided tier by tier, as the run voted it
    schedule = k_schedule(info, events) if k is None else None  # the run's own k per step (--adaptive-k may raise it)
    k = logged_k if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"--k must be an integer >= 1, got {k!r}")
    if rule not in RULES:
        raise UsageError(f"--rule must be one of {', '.join(RULES)}, got {rule!r}")
    if max_details < 0:
        raise UsageError("--max-details must be >= 0")
    decider = RULES[rule]
    r = RedecideReport(
        log=str(info.path),
        task=describe_run(info.run),
        rule=rule,
        k=k,
        logged_rule="ahead-by-k",
        logged_k=logged_k,
        steps=0,
        same=0,
        changed=0,
        undecidable=0,
        logged_undecided=0,
        newly_decided=0,
        first_changed_step=None,
        first_undecidable_step=None,
        changed_from_correct=0,
        samples=0,
        samples_needed=0,
        samples_saved=0,
        cost_usd=0.0,
        cost_saved_usd=0.0,
        simulated=bool(info.run.get("simulated")),
    )
    details: list[StepChange] = []
    for chunk in iter_chunks(info, decision_columns=("correct",)):
        correct = dict(zip(chunk.decisions["step"].to_pylist(), chunk.decisions["correct"].to_pylist()))
        steps, answers, lo, hi, keys, cum = chunk.spans()
        for step, logged, a, b in zip(steps, answers, lo, hi):
            step_keys = keys[a:b]
            winner, consumed, _, _ = tiers.redecide(step, step_keys, k if schedule is None else schedule.at(step), decider)
            if logged is None:
                r.logged_undecided += 1
                if winner is not None:
                    r.newly_decided += 1
                    details.append(_change(step, "newly_decided", logged, winner, step_keys, consumed))
                continue
            r.steps += 1
            r.samples += b - a
            r.cost_usd += cum[b] - cum[a]
            if winner is None:
                r.undecidable += 1
                if r.first_undecidable_step is None or step < r.first_undecidable_step:
                    r.first_undecidable_step = step
                details.append(_change(step, "undecidable", logged, None, step_keys, None))
                continue
            r.samples_needed += consumed
            r.samples_saved += b - a - consumed
            r.cost_saved_usd += cum[b] - cum[a + consumed]
            if winner == logged:
                r.same += 1
                continue
            r.changed += 1
            r.changed_from_correct += correct.get(step) is True
            if r.first_changed_step is None or step < r.first_changed_step:
                r.first_changed_step = step
            details.append(_change(step, "different", logged, winner, step_keys, consumed))
        if len(details) > max_details:
            details.sort(key=lambda c: c.step)
            r.details_left_out += len(details) - max_details
            del details[max_details:]
    details.sort(key=lambda c: c.step)
    r.details = details
    r.parts, r.damaged_parts = parts_read(info)
    r.cost_usd = round(r.cost_usd, 6)
    r.cost_saved_usd = round(r.cost_saved_usd, 6)
    return r


def _change(step: int, outcome: str, logged: str | None, new: Any, keys: list[str | None], point: int | None) -> StepChange:
    votes = sum(key is not None for key in keys)
    return StepChange(step, outcome, logged, new, len(keys), votes, point)


def _run_k(info: LogInfo) -> int:
    try:
        return int(info.run["voting"]["k"])
    except (KeyError, TypeError, ValueError):
        raise StepLogError(f"{info.path}: the log's run metadata has no voting.k", path=str(info.path)) from None

