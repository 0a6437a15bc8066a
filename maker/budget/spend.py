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
  are billed as output), times `ATTEMPTS`: a call that times out is retried, and the
  provider may serve (and bill) every attempt.
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
    >>> round(b.worst_case("m", r), 6)            # 5 attempts x (1,016 prompt tokens at $0.40/M + 751 at $1.60/M)
    0.00804
    >>> held = b.reserve([("m", r)] * 2)          # 2 x $0.00804 > $0.01: refused
    >>> held is None, b.reached
    (True, True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from maker.cluster.http.transport import EndpointConfig
from maker.cluster.pricing import Price
from maker.cluster.protocol import Sample, SampleRequest
from maker.errors import BudgetReached, UsageError

__all__ = ["Budget", "BudgetReached", "Expectation", "billed_columns", "billed_usd", "budget_line", "check_cap", "expected_spend",
           "refuse_unpriced", "resolve_prices", "usd"]

#: Tokens a chat template may add per message (role markers, separators), and once per prompt.
TEMPLATE_TOKENS = 16
#: Attempts an HTTP client makes of one request at most (`EndpointConfig.max_retries` + 1).
ATTEMPTS = 1 + EndpointConfig.max_retries


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
        raise UsageError(f"--max-cost {usd(cap)} cannot be enforced: no known price for {names} "
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
        return ATTEMPTS * price.per_sample(tokens_in, request.max_tokens)

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


def usd(amount: float) -> str:
    """Dollars as a person reads them: cents from $1 up, three significant digits below.

        >>> usd(49.871), usd(0.0025702), usd(0.0), usd(1234.5)
        ('$49.87', '$0.00257', '$0.00', '$1,234.50')
    """
    if amount >= 1 or amount <= 0:
        return f"${amount:,.2f}"
    decimals = max(2, 2 - math.floor(math.log10(amount)))
    return f"${amount:.{decimals}f}"


def budget_line(spent_usd: float, cap_usd: float, decided: int, total: int, *, resume: str = "--resume") -> str:
    """The one line a run that stopped at its cap ends with.

        >>> budget_line(49.87, 50, 61204, 1048575)
        'budget reached: $49.87 of $50.00 spent; 61,204 of 1,048,575 steps decided; the log is intact (resume with --resume and a new --max-cost)'
    """
    return (f"budget reached: {usd(spent_usd)} of {usd(cap_usd)} spent; {decided:,} of {total:,} steps decided; "
            f"the log is intact (resume with {resume} and a new --max-cost)")


@dataclass(frozen=True)
class Expectation:
    """What a run is expected to cost before it starts (`maker margin`'s model: samples per
    step times steps times the cost of a sample), as a range when replies are not measured
    yet; `basis` says what the figures assume, in words."""

    low_usd: float
    high_usd: float
    basis: str

    def text(self) -> str:
        figure = (usd(self.low_usd) if math.isclose(self.low_usd, self.high_usd, rel_tol=1e-9)
                  else f"{usd(self.low_usd)}-{usd(self.high_usd)}")
        return f"expected cost {figure} ({self.basis})"

    def against(self, cap: float, spent: float = 0.0) -> str | None:
        """What a cap below the expectation (plus `spent`, already spent) means, or None when it covers it."""
        cap, shown = cap - spent, cap
        if cap < self.low_usd:
            return f"the cap {usd(shown)} is below the expected cost: the run will stop before the end (it may still run)"
        if cap < self.high_usd:
            return f"the cap {usd(shown)} is within the expected range: the run may stop before the end"
        return None


def expected_spend(
    prices: Sequence[Price], *, steps: int, k: int, prompt_tokens: float, max_output_tokens: int,
    p: float | None = None, tokens_out: float | None = None, valid_rate: float = 1.0,
) -> Expectation:
    """The expected bill of `steps` steps voted at margin `k` over models with `prices`
    (samples spread evenly over them): samples per step from `p` (`maker.voting.
    expected_samples`; without p, k -- the least a step can take), each sample billed
    `prompt_tokens` (uncached: the cache hit rate is not known before the run) and
    `tokens_out` reply tokens (without them: from none to `max_output_tokens`)."""
    from maker import voting

    n = len(prices) or 1
    rate_in = sum(pr.input_per_m for pr in prices) / n
    rate_out = sum(pr.output_per_m for pr in prices) / n
    per_step = voting.expected_samples(p, k, valid_rate) if p is not None else float(k)
    low_out, high_out = (tokens_out, tokens_out) if tokens_out is not None else (0.0, float(max_output_tokens))
    low = steps * per_step * (prompt_tokens * rate_in + low_out * rate_out) / 1e6
    high = steps * per_step * (prompt_tokens * rate_in + high_out * rate_out) / 1e6
    samples = f"{per_step:.2f} samples/step at p = {p:.4g}" if p is not None else f"at least {k} samples/step (no p given)"
    replies = (f"{tokens_out:,.0f} reply tokens" if tokens_out is not None
               else f"replies of 0-{max_output_tokens:,} tokens, none measured yet")
    sources = "; ".join(sorted({pr.source for pr in prices}))
    return Expectation(low, high, f"{steps:,} steps x {samples}, ~{prompt_tokens:,.0f} prompt tokens uncached, "
                                  f"{replies}; prices: {sources}")


def resolve_prices(specs: Sequence[Any], given: Mapping[str, Price] | None = None) -> dict[str, Price]:
    """{model: Price} for `specs` (`maker.cluster.ModelSpec`s): `given` first (the user's
    --price-in/--price-out), then each spec's own (`ModelSpec.unit_price`: its `price`,
    free for fakes, litellm's table, else unknown)."""
    given = dict(given or {})
    return {s.model: given.get(s.model) or s.unit_price() for s in specs}
