"""A spend cap: what a run may still spend and what it has spent, in US dollars.

Why one object: every sampler -- the in-order step loop, the speculative window, the plan
(DAG) runner, a voted call, the estimator, a draft model -- asks the same `Budget` before
it sends a round and tells it what the round was billed, so no path can spend past the cap
and every path counts alike.  The rules:

* A round is sent only if what is spent, plus the worst case of every round still in
  flight, plus this round's worst case, stays within the cap (`reserve`).  A request's
  worst case (`worst_case`) is its prompt at one token per UTF-8 byte (a token is at least
  one byte) plus `TEMPLATE_TOKENS` per chat message, at the uncached input rate, plus its
  whole `max_tokens` at the output rate (reasoning tokens count against `max_tokens` and
  are billed as output).
* What a round was billed (`settle`): each sample's `cost_usd` (cached prompt tokens at the
  cache-read rate) plus its `abandoned_usd` (calls maker gave up on that the provider may
  still have served, at their prompt cost).
* A Ray worker gets a share (`share`): a budget capped at what is left here; what its
  samples were billed is charged here (`charge`) before the next share is handed out.

A cap needs a known price for every model it may draw from: `refuse_unpriced` says which
are missing, so a cap that cannot be enforced never looks enforced.

    >>> from maker.cluster.pricing import Price
    >>> from maker.cluster.protocol import SampleRequest
    >>> b = Budget(0.01, {"m": Price(0.4, 1.6, "table")})
    >>> r = SampleRequest("x" * 1000, 0.0, 751, seed=1)
    >>> round(b.worst_case("m", r), 6)            # 1,016 prompt tokens at $0.40/M + 751 at $1.60/M
    0.001608
    >>> held = b.reserve([("m", r)] * 7)          # 7 x $0.001608 > $0.01: refused
    >>> held is None, b.reached
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from maker.cluster.pricing import Price
from maker.cluster.protocol import Sample, SampleRequest
from maker.errors import BudgetReached, UsageError

__all__ = ["Budget", "BudgetReached", "billed_columns", "billed_usd", "budget_line", "check_cap", "refuse_unpriced"]

#: Tokens a chat template may add per message (role markers, separators), and once per prompt.
TEMPLATE_TOKENS = 16


def check_cap(cap: Any) -> float | None:
    """`cap` as a float (USD), or None for no cap; UsageError for anything not > 0."""
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not math.isfinite(cap) or cap <= 0:
        raise UsageError(f"--max-cost must be a positive amount of US dollars, got {cap!r}")
    return float(cap)


def refuse_unpriced(cap: float | None, prices: Mapping[str, Price]) -> None:
    """UsageError (one line) when a cap is set and some model's price is unknown: maker could
    not count what it spends, so the cap would only look enforced."""
    if cap is None:
        return
    unknown = [m for m, p in prices.items() if not p.known]
    if unknown:
        names = ", ".join(unknown)
        raise UsageError(f"--max-cost ${cap:,.2f} cannot be enforced: no known price for {names} "
                         "(pass --price-in/--price-out, USD per million tokens)")


class Budget:
    """A cap in USD (None: no cap, nothing is ever refused), what has been spent against it
    (`spent_usd`), and the worst case of the rounds in flight (`reserved_usd`).  `prices`
    maps each model name to its `Price`; a model missing from it costs nothing in the worst
    case (only possible without a cap: `refuse_unpriced`).  Plain data: it pickles to a
    Ray worker.  Not thread-safe: one event loop charges one budget."""

    def __init__(self, cap_usd: float | None, prices: Mapping[str, Price], spent_usd: float = 0.0) -> None:
        self.cap_usd = cap_usd
        self.prices = dict(prices)
        self.spent_usd = float(spent_usd)
        self.reserved_usd = 0.0
        self.reached = False  # a round was refused

    @property
    def left_usd(self) -> float:
        """What may still be reserved (infinite without a cap)."""
        if self.cap_usd is None:
            return math.inf
        return max(0.0, self.cap_usd - self.spent_usd - self.reserved_usd)

    def worst_case(self, model: str, request: SampleRequest) -> float:
        """The most one request can be billed (see the module docstring), in USD."""
        price = self.prices.get(model)
        if price is None or price.free:
            return 0.0
        prompt = request.prompt
        if isinstance(prompt, str):
            tokens_in = len(prompt.encode()) + TEMPLATE_TOKENS
        else:
            tokens_in = sum(len(str(m.get("content") or "").encode()) + TEMPLATE_TOKENS for m in prompt) + TEMPLATE_TOKENS
        return price.per_sample(tokens_in, request.max_tokens)

    def reserve(self, requests: Iterable[tuple[str, SampleRequest]]) -> float | None:
        """Hold the worst case of a round of (model, request) pairs; the amount held, or None
        (and `reached` set) when it does not fit within the cap.  Pass the amount to `settle`."""
        worst = sum(self.worst_case(model, request) for model, request in requests)
        if self.cap_usd is not None and self.spent_usd + self.reserved_usd + worst > self.cap_usd + 1e-12:
            self.reached = True
            return None
        self.reserved_usd += worst
        return worst

    def settle(self, held: float, samples: Sequence[Sample] = ()) -> float:
        """Release `held` and charge what `samples` were billed; the amount charged."""
        self.reserved_usd = max(0.0, self.reserved_usd - held)
        billed = sum(billed_usd(s) for s in samples)
        self.spent_usd += billed
        return billed

    def charge(self, usd: float) -> None:
        """Add a cost that was never reserved (an estimate of calls given up on)."""
        self.spent_usd += usd

    def share(self) -> Budget:
        """A worker's share: a budget capped at what is left here now.  The caller charges
        what the worker's samples were billed (`charge`, `billed_usd`) before it hands out
        the next share, so shares handed out one after another never add up past the cap."""
        return Budget(None if self.cap_usd is None else self.left_usd, self.prices)

    def to_dict(self) -> dict[str, Any]:
        return {"cap_usd": self.cap_usd, "spent_usd": round(self.spent_usd, 6), "reached": self.reached}


def billed_columns(samples: Mapping[str, Sequence[Any]]) -> float:
    """What a batch of step-log sample columns was billed: `cost_usd` plus `abandoned_usd`."""
    return sum(c or 0.0 for c in samples.get("cost_usd", ())) + sum(a or 0.0 for a in samples.get("abandoned_usd", ()))


def billed_usd(sample: Sample) -> float:
    """What a sample was billed, as far as maker can tell: its reply's cost plus its
    estimated abandoned calls."""
    return (sample.cost_usd or 0.0) + (sample.abandoned_usd or 0.0)


def budget_line(spent_usd: float, cap_usd: float, decided: int, total: int, *, resume: str = "--resume") -> str:
    """The one line a run that stopped at its cap ends with.

        >>> budget_line(49.87, 50, 61204, 1048575)
        'budget reached: $49.87 of $50.00 spent; 61,204 of 1,048,575 steps decided; the log is intact (resume with --resume and a new --max-cost)'
    """
    return (f"budget reached: ${spent_usd:,.2f} of ${cap_usd:,.2f} spent; {decided:,} of {total:,} steps decided; "
            f"the log is intact (resume with {resume} and a new --max-cost)")
