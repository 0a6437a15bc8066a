"""The live progress line: what a user watching a long run wants at a glance."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TextIO


@dataclass
class Totals:
    """Running sums the progress line and the final result share."""

    steps: int = 0
    samples: int = 0
    red_flags: int = 0
    cost_usd: float = 0.0
    errors: int = 0
    guard: str = ""  # the live guard's figures (maker.runtime.guard.Guard.summary)


class Progress:
    """Rewrites one line on a terminal (every 0.25 s); prints a line every 10 s otherwise."""

    def __init__(
        self,
        total_steps: int,
        stream: TextIO | None = None,
        enabled: bool = True,
        label: str = "",
        *,
        max_steps: int | None = None,
        ground_truth: bool = True,
    ) -> None:
        """`max_steps`: the run stops that many steps after where it starts (the ETA is to
        there, not to the task's end); `ground_truth` False: errors are shown as unknown."""
        self.total = total_steps
        self.max_steps = max_steps
        self.ground_truth = ground_truth
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.label = label
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self.start_steps = 0
        self._last = 0.0
        self._every = 0.25 if self.tty else 10.0
        self._shown: tuple[int, int] | None = None  # (steps, samples) of the last line written

    def start_at(self, steps: int) -> None:
        self.start_steps = steps

    def update(self, totals: Totals, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < self._every:
            return
        self._last = now
        self._shown = (totals.steps, totals.samples)
        line = self.format(totals, now)
        if self.tty:
            self.stream.write("\r\x1b[2K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def format(self, totals: Totals, now: float | None = None) -> str:
        elapsed = max(1e-9, (now or time.monotonic()) - self.started)
        done_here = totals.steps - self.start_steps
        rate = done_here / elapsed
        stop = self.total if self.max_steps is None else min(self.total, self.start_steps + self.max_steps)
        left = max(0, stop - totals.steps)
        eta = _duration(left / rate) if rate > 0 else "?"
        if stop < self.total:
            eta += f" (to step {stop:,}, --max-steps)"
        per_step = totals.samples / totals.steps if totals.steps else 0.0
        flagged = 100.0 * totals.red_flags / totals.samples if totals.samples else 0.0
        pct = 100.0 * totals.steps / self.total if self.total else 100.0
        errors = f"errors {totals.errors}" if self.ground_truth else "errors unknown (no ground truth)"
        cost = cost_text(totals.cost_usd, simulated=bool(self.label), steps=totals.steps)
        return (
            f"{self.label}{totals.steps:,}/{self.total:,} steps ({pct:.1f}%)  {rate_text(rate)} steps/s  "
            f"{per_step:.2f} samples/step  red flags {flagged:.2f}%  {errors}  "
            f"{cost}  ETA {eta}{totals.guard}"
        )

    def finish(self, totals: Totals) -> None:
        if not self.enabled:
            return
        if self._shown != (totals.steps, totals.samples):  # the last line already says it: never twice
            self.update(totals, force=True)
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def cost_text(cost_usd: float, *, simulated: bool, steps: int = 1, unknown: bool = False) -> str:
    """A run's cost as a label that never shows a default as measured: a real model's samples
    cost exactly 0 only when no price is known for it (or it is free), so that is said;
    `unknown`: some model's price is unknown, so the figure leaves its samples out.

        >>> cost_text(0.01234, simulated=False), cost_text(0.0, simulated=True), cost_text(0.0, simulated=False)
        ('$0.0123', '$0.0000', '$0 (free, or no price known)')
        >>> cost_text(0.5, simulated=False, unknown=True)
        '$0.5000 + unknown (a model has no known price)'
    """
    if unknown:
        return (f"${cost_usd:,.4f} + " if cost_usd else "") + "unknown (a model has no known price)"
    if cost_usd or simulated or not steps:
        return f"${cost_usd:,.4f}"
    return "$0 (free, or no price known)"


def rate_text(rate: float) -> str:
    """A rate with two significant figures below 10 (0.97, 1.2), whole numbers above (1,234).

        >>> rate_text(0.974), rate_text(1.24), rate_text(12.6), rate_text(0.0)
        ('0.97', '1.2', '13', '0')
    """
    if rate >= 10 or rate == 0:
        return f"{rate:,.0f}"
    return f"{rate:.2g}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
