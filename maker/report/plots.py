"""The PNG plots of `maker report`, drawn from a `RunStats` with matplotlib's Agg canvas.

Why a module of its own: plotting is the only part of the report that needs matplotlib,
and it is imported only here, lazily.  Figures are built with `matplotlib.figure.Figure`
directly (no pyplot), so nothing touches the global backend or needs a display.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from maker.report.stats import RunStats


def draw_all(s: RunStats, out: Path) -> list[Path]:
    """Draw every plot the log has data for into `out`; return the files written."""
    written = [
        _save(_undecided(s), out / "undecided_by_round.png"),
        _save(_votes(s), out / "votes_per_step.png"),
        _save(_red_flags(s), out / "red_flags.png"),
        _save(_errors(s), out / "error_vs_length.png"),
        _save(_cost(s), out / "cost.png"),
    ]
    if s.wasted:
        written.append(_save(_wasted(s), out / "wasted.png"))
    if s.bill.total_usd:
        written.append(_save(_bill(s), out / "cost_by_kind.png"))
    return written


def _bill(s: RunStats) -> Any:
    """Where the money went: billed USD by kind of sample (left) and by model (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 4.2), dpi=110, layout="constrained")
    left, right = fig.subplots(1, 2)
    fig.suptitle(f"Where the money went: {s.task}{' (simulated)' if s.simulated else ''}", fontsize=11)
    kinds = [(k.replace("_", " "), v) for k, v in s.bill.by_kind.items() if v]
    left.barh([k for k, _ in kinds], [v for _, v in kinds], color="C2")
    left.set_xlabel("billed (USD)")
    left.set_title("by kind (abandoned: estimated)", fontsize=9)
    models = sorted(s.bill.by_model.items(), key=lambda kv: kv[1])
    right.barh([m for m, _ in models], [v for _, v in models], color="C0")
    right.set_xlabel("billed (USD)")
    right.set_title("by model", fontsize=9)
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.3)
    return fig


def _figure(title: str, s: RunStats, rows: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6 * rows if rows > 1 else 4.2), dpi=110, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True) if rows > 1 else fig.subplots()
    label = " (simulated)" if s.simulated else ""
    fig.suptitle(f"{title}: {s.task}{label}", fontsize=11)
    return fig, axes


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png")
    return path


def _note(ax: Any, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=11, color="0.35")


def _undecided(s: RunStats) -> Any:
    fig, ax = _figure("Undecided steps after each round", s)
    points = [(r, n) for r, n in s.undecided_after() if n > 0]
    if points:
        r, n = zip(*points)
        ax.plot(r, n, "o-", color="C0")
        for x, y in points:
            ax.annotate(f"{y:,}", (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_yscale("log")
        ax.set_xticks(range(0, max(r) + 2))
        ax.set_xlim(-0.3, max(r) + 1.3)
    else:
        _note(ax, "no decided steps")
    done = max((r for r, n in s.undecided_after() if n == 0), default=None)
    if done is not None:
        ax.axvline(done, color="0.6", ls=":", lw=1)
        ax.text(done, ax.get_ylim()[1] if points else 1, f"all decided by round {done} ", fontsize=8,
                va="top", ha="right", color="0.35")
    ax.set_xlabel("sampling round r (round 0 = before any sample)")
    ax.set_ylabel("steps still undecided (log scale)")
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _votes(s: RunStats) -> Any:
    fig, ax = _figure("Valid votes per step", s)
    if s.votes:
        x = sorted(s.votes)
        y = [s.votes[v] for v in x]
        ax.bar(x, y, color="C0", width=0.8)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.5, top=max(y) * 2)  # a one-step bar stays visible
        ax.set_xticks(x if len(x) <= 25 else np.linspace(min(x), max(x), 12, dtype=int))
        for xi, yi in zip(x, y):
            if len(x) <= 25:
                ax.annotate(f"{yi:,}", (xi, yi), textcoords="offset points", xytext=(0, 2), ha="center", fontsize=7)
        if s.k:
            ax.axvline(s.k - 0.5, color="0.5", ls=":", lw=1)
            ax.text(s.k - 0.45, max(y) * 1.8, f"k = {s.k}", fontsize=8, va="top", ha="left", color="0.35")
    else:
        _note(ax, "no decided steps")
    ax.set_xlabel("valid votes counted before the decision")
    ax.set_ylabel("steps (log scale)")
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def _red_flags(s: RunStats) -> Any:
    fig, ax = _figure("Red-flag rate by reason", s)
    if s.red_flags and s.samples:
        reasons = [r for r, _ in s.red_flags.most_common()]
        rates = [100 * s.red_flags[r] / s.samples for r in reasons]
        bars = ax.bar(reasons, rates, color="C3")
        for bar, reason in zip(bars, reasons):
            ax.annotate(f"{s.red_flags[reason]:,}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        textcoords="offset points", xytext=(0, 2), ha="center", fontsize=8)
        ax.set_ylabel(f"% of all {s.samples:,} samples")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
        _note(ax, f"no red-flagged samples among {s.samples:,}")
    ax.set_xlabel("red-flag reason")
    return fig


def _errors(s: RunStats) -> Any:
    from maker.voting import clopper_pearson

    fig, ax = _figure("Error rate against output length", s)
    buckets = length_buckets(s)
    if not buckets:
        _note(ax, "no valid samples")
        return fig
    x = np.arange(len(buckets))
    rates, low, high = [], [], []
    for _, _, n, e in buckets:
        ci = clopper_pearson(e, n)
        rates.append(100 * ci.point)
        low.append(100 * (ci.point - ci.low))
        high.append(100 * (ci.high - ci.point))
    twin = ax.twinx()
    twin.bar(x, [n for _, _, n, _ in buckets], width=0.8, color="0.88", label="valid samples")
    twin.set_ylabel("valid samples in bucket", color="0.45")
    ax.errorbar(x, rates, yerr=[low, high], fmt="o", color="C3", capsize=3, label="error rate (95% CI)")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.set_xticks(x, [str(a) if a == b else f"{a}-{b}" for a, b, _, _ in buckets],
                  rotation=30 if len(buckets) > 6 else 0, fontsize=8)
    ax.set_xlabel("output tokens per sample (buckets of similar sample counts)")
    ax.set_ylabel("% of valid samples disagreeing\nwith the step's decision")
    ax.set_ylim(bottom=0, top=max(r + h for r, h in zip(rates, high)) * 1.15 or 1)
    ax.legend(loc="upper left", fontsize=8)
    total = 100 * s.errors_vs_decision / s.valid if s.valid else 0.0
    ax.set_title(f"{s.errors_vs_decision:,} errors in {s.valid:,} valid samples ({total:.3g}%)", fontsize=9)
    return fig


def _cost(s: RunStats) -> Any:
    fig, (top, bottom) = _figure("Cost over the run", s, rows=2)
    x = (np.arange(len(s.bin_cost)) + 1) * s.bin_width
    if len(x):
        top.plot(x, np.cumsum(s.bin_cost), color="C2")
        bottom.plot(x, np.cumsum(s.bin_samples), color="C0", label="samples drawn")
        if s.steps:
            k = s.k or 0
            bottom.plot(x, x * k, color="0.5", ls="--", lw=1, label=f"k x steps (k = {k})")
        bottom.legend(fontsize=8, loc="upper left")
    if not s.cost_usd:
        top.text(0.5, 0.75, "cost_usd is 0 for every sample (simulated or free model)", transform=top.transAxes,
                 ha="center", fontsize=10, color="0.35")
    top.set_ylabel("cumulative cost (USD)")
    bottom.set_ylabel("cumulative samples")
    bottom.set_xlabel("step" if s.bin_width == 1 else f"step (bins of {s.bin_width:,} steps)")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return fig


def _wasted(s: RunStats) -> Any:
    fig, ax = _figure("Wasted speculative samples", s)
    group = max(1, -(-len(s.bin_wasted) // 60))  # at most 60 bars
    size = -(-len(s.bin_wasted) // group) * group
    wasted = np.pad(s.bin_wasted, (0, size - len(s.bin_wasted))).reshape(-1, group).sum(axis=1)
    drawn = np.pad(s.bin_samples, (0, size - len(s.bin_samples))).reshape(-1, group).sum(axis=1)
    share = np.divide(100 * wasted, drawn, out=np.zeros_like(wasted, dtype=float), where=drawn > 0)
    width = s.bin_width * group
    ax.bar(np.arange(len(share)) * width, share, width=width * 0.9, align="edge", color="C1")
    ax.set_xlabel("step" if width == 1 else f"step (bars of {width:,} steps)")
    ax.set_ylabel("% of samples drawn that were wasted")
    ax.set_title(f"{s.wasted:,} of {s.samples:,} samples wasted ({100 * s.wasted / max(s.samples, 1):.3g}%)",
                 fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


def length_buckets(s: RunStats, buckets: int = 12) -> list[tuple[int, int, int, int]]:
    """(first token count, last token count, valid samples, errors) per output-length bucket.

    Buckets hold roughly equal numbers of samples, so each rate rests on similar evidence.
    """
    counts = s.length_valid
    total = int(counts.sum())
    if not total:
        return []
    target = total / buckets
    out: list[tuple[int, int, int, int]] = []
    start, n, e = None, 0, 0
    for tokens in np.flatnonzero(counts).tolist():
        if start is None:
            start = tokens
        n += int(counts[tokens])
        e += int(s.length_errors[tokens])
        if n >= target:
            out.append((start, tokens, n, e))
            start, n, e = None, 0, 0
    if start is not None:
        last = int(np.flatnonzero(counts)[-1])
        out.append((start, last, n, e))
    return out
