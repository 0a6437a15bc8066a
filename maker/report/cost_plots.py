"""Plots of expected cost: against the margin k, and against the run's length.

Why: the two pictures that make a run's budget legible.  Left, one run length: cost
rises only linearly in k while the success odds climb exponentially, so the marker
where a curve turns solid (k >= k_min) is the point to stop.  Right, the margin re-chosen
for each length: cost grows as Θ(s ln s), with a small kink at every unit jump of k_min.
When some series has no price (the simulator, an unpriced local model) the plot shows
expected samples instead.  matplotlib is imported lazily and drawn on a bare `Figure`
(the Agg canvas): no display and no global backend change.

(`maker.report.plots` holds the run-report plots; these are the planning plots of
`maker margin --plot` and `maker estimate --plot`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import maker.voting as voting
from maker.budget.margins import SampleCost, cost_by_k, cost_by_steps
from maker.errors import UsageError

__all__ = ["CostSeries", "plot_costs", "plot_estimate", "plot_plans"]


@dataclass(frozen=True)
class CostSeries:
    """One curve: a label, an accuracy to plan with, its valid rate and sample cost."""

    label: str
    p: float
    valid_rate: float = 1.0
    cost_per_sample: float = 0.0
    dashed: bool = False  # drawn dashed: a model not fit for the run (e.g. correlated errors)
    cost: SampleCost | None = None  # tokens and prices: used instead of `cost_per_sample` when given
    shares_prompt: bool = False  # bill the prompt once per request (`maker.budget.rounds`)


def plot_costs(series: list[CostSeries], steps: int, target: float, path: str | Path) -> Path:
    """Write the two-panel PNG for every series with 1/2 < p < 1; returns the path."""
    path = Path(path)
    usable = [s for s in series if 0.5 < s.p < 1.0]
    if not usable:
        raise UsageError("nothing to plot: no model has p > 1/2 (voting cannot converge)")
    from matplotlib.figure import Figure

    priced = all(s.cost_per_sample > 0 for s in usable)
    unit = "expected cost (USD)" if priced else "expected samples (no prices given)"
    fig = Figure(figsize=(12, 4.8), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    top = max(steps, 2**20)
    # Eight lengths per octave, so the unit jumps of k_min show as small kinks.
    lengths = sorted({round(2 ** (e / 8)) for e in range(8, 8 * (int(math.log2(top)) + 2))} | {steps})
    widest = 0
    for i, s in enumerate(usable):
        color = f"C{i % 10}"
        style = "--" if s.dashed else "-"
        cost = s.cost or SampleCost(per_sample=s.cost_per_sample)
        k_best = voting.k_min(s.p, steps, target)
        ks = list(range(1, max(2 * k_best, k_best + 4) + 1))
        widest = max(widest, ks[-1])
        rows = cost_by_k(s.p, steps, ks, valid_rate=s.valid_rate, cost=cost, shares_prompt=s.shares_prompt)
        y = [r[3] if priced else r[2] for r in rows]
        left.plot(ks, y, style, color=color, label=f"{s.label} (p={s.p:.4g}, k_min={k_best})")
        ok = [(k, v) for (k, succ, _, _), v in zip(rows, y) if succ >= target]
        short = [(k, v) for (k, succ, _, _), v in zip(rows, y) if succ < target]
        if short:
            left.plot(*zip(*short), "o", mfc="white", color=color)
        if ok:
            left.plot(*zip(*ok), "o", color=color)
        curve = cost_by_steps(s.p, target, lengths, valid_rate=s.valid_rate, cost=cost, shares_prompt=s.shares_prompt)
        right.plot([r[0] for r in curve], [r[3] if priced else r[2] for r in curve], style, color=color, label=s.label)
        here = [r for r in curve if r[0] == steps]
        if here:
            right.plot([steps], [here[0][3] if priced else here[0][2]], "o", color=color)
    if widest > 64:  # one model near p = 1/2 needs hundreds: keep the others legible
        left.set_xscale("log", base=2)
    left.set_xlabel("vote margin k")
    left.set_ylabel(unit)
    left.set_yscale("log")
    left.set_title(f"{steps:,} steps: hollow = misses target {target}, solid = meets it", fontsize=10)
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("steps in the run (k = k_min for each length)")
    right.set_ylabel(unit)
    right.axvline(steps, color="grey", ls=":", lw=1)
    right.set_title(f"against run length at target {target}: Θ(s ln s)", fontsize=10)
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    try:
        fig.savefig(path)
    except OSError as exc:
        raise UsageError(f"cannot write the plot {path}: {exc.strerror or exc}") from None
    return path


def plot_plans(plans: list[Any], path: str | Path, cost: SampleCost | None = None) -> Path:
    """The plot for `maker margin`: one series per accuracy (`maker.budget.margins.Margin`),
    priced with `cost` (tokens and prices) as the plans were, prompt sharing included."""
    series = [CostSeries(f"error {p.error:.4g}", p.p, p.valid_rate, p.cost_per_sample, cost=cost,
                         shares_prompt=p.shares_prompt) for p in plans]
    return plot_costs(series, plans[0].steps, plans[0].target, path)


def plot_estimate(report: Any, path: str | Path) -> Path:
    """The plot for `maker estimate`: one series per usable model, at its pessimistic p."""
    series = [
        CostSeries(
            m.model if m.verdict == "ok" else f"{m.model} [{m.verdict}]",
            m.p_low,
            m.valid_rate,
            m.cost_per_sample,
            dashed=m.verdict != "ok",
        )
        for m in report.models
        if m.p_low is not None and m.p_low > 0.5 and m.valid_rate
    ]
    return plot_costs(series, report.steps, report.target, path)
