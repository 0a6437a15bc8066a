"""Closed-form scaling laws of first-to-ahead-by-k voting.

Why: MAKER plans a run before spending money on it. Given a per-sample success
probability ``p`` and a task of ``steps`` steps, these formulas say how large the
voting margin ``k`` must be for the whole run to succeed with probability
``target``, and how many samples (and dollars) that costs. They describe the
binary worst case: a valid sample is correct with probability ``p`` and otherwise
names one fixed wrong answer. Spreading errors over several wrong answers can
only raise the success probability (see ``voting.montecarlo``), so the margins
computed here are safe.

One step is a gambler's-ruin walk: the correct answer's lead moves +1 with
probability ``p`` and -1 otherwise, absorbed at +k (correct) or -k (wrong).

Numerics: at a million steps, ``target ** (1 / steps)`` is within 1e-7 of 1, so
the naive formulas lose most of their digits. Everything here goes through
``log1p``/``expm1`` and log-odds instead.

>>> k_min(1 - 0.0022, 2**20 - 1, 0.95)  # the paper's gpt-4.1-mini run
3
>>> round(expected_votes(0.998, 3), 3)
3.012
"""

from __future__ import annotations

import math

from ._checks import check_int, check_nonnegative, check_p, check_rate, check_unit_open

__all__ = [
    "expected_cost",
    "expected_samples",
    "expected_votes",
    "k_min",
    "p_step",
    "run_success",
]


def _log_r(p: float) -> float:
    """``log((1 - p) / p)`` for ``p`` in ``(0, 1)``, accurate near ``p = 1/2`` too."""
    if p >= 0.25:
        # 2p - 1 is exact here (Sterbenz), and log(p / (1 - p)) = 2 atanh(2p - 1).
        return -2.0 * math.atanh(2.0 * p - 1.0)
    return math.log1p(-p) - math.log(p)


def _softplus(x: float) -> float:
    """``log(1 + exp(x))`` without overflow."""
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


def p_step(p: float, k: int) -> float:
    """Probability that one step's first-to-ahead-by-k vote picks the correct answer.

    Why: this is the per-step reliability that voting buys; it rises
    exponentially in ``k`` as long as ``p > 1/2``.
    ``p_step(p, k) = 1 / (1 + ((1 - p) / p) ** k)``.

    >>> p_step(0.8, 2)
    0.9411764705882353
    """
    p = check_p(p)
    k = check_int("k", k, 1)
    if p == 1.0:
        return 1.0
    x = k * _log_r(p)
    if x >= 0.0:
        e = math.exp(-x)
        return e / (1.0 + e)
    return 1.0 / (1.0 + math.exp(x))


def _log_p_step(p: float, k: int) -> float:
    """``log(p_step(p, k))`` for validated arguments, accurate when ``p_step`` is near 1."""
    if p == 1.0:
        return 0.0
    return -_softplus(k * _log_r(p))


def run_success(p: float, k: int, steps: int) -> float:
    """Probability that every one of ``steps`` independent steps is voted correctly.

    Why: a long task fails if any step fails, so the run succeeds with
    ``p_step(p, k) ** steps``. Computed as ``exp(-steps * log1p(r ** k))`` so a
    per-step error of 1e-9 over a million steps is not rounded away.

    >>> round(run_success(1 - 0.0022, 3, 2**20 - 1), 4)
    0.9888
    """
    p = check_p(p)
    k = check_int("k", k, 1)
    steps = check_int("steps", steps, 1)
    return math.exp(steps * _log_p_step(p, k))


def k_min(p: float, steps: int, target: float) -> int:
    """Smallest margin ``k`` with ``run_success(p, k, steps) >= target``.

    Why: cost grows linearly in ``k``, so a run should use the smallest margin
    that meets its success target. Closed form (design notes, section 1):
    ``ceil(ln(target ** (-1 / steps) - 1) / ln((1 - p) / p))``, evaluated with
    ``expm1`` so it stays exact at ``steps = 2**20``, then moved onto the exact
    boundary of ``run_success`` (a bracketing search, usually zero or one probe
    away) so that ``k - 1`` provably misses the target in floating point too.

    Raises ValueError when ``p <= 1/2``: then no margin helps, because the
    wrong answer is at least as likely to win each round.

    >>> k_min(1 - 0.3571, 2**20 - 1, 0.95)  # gpt-4.1-nano
    29
    """
    p = check_p(p)
    steps = check_int("steps", steps, 1)
    target = check_unit_open("target", target)
    if p <= 0.5:
        raise ValueError(f"p must be > 1/2 for k_min: voting cannot help when p <= 1/2, got {p!r}")
    if p == 1.0:
        return 1
    # run_success >= target  <=>  r**k <= target**(-1/steps) - 1 = expm1(z).
    z = -math.log(target) / steps
    log_y = z + math.log1p(-math.exp(-z)) if z > 30.0 else math.log(math.expm1(z))
    k_real = log_y / _log_r(p)
    k = max(1, math.ceil(k_real)) if math.isfinite(k_real) else 1

    def meets(m: int) -> bool:
        # Exactly run_success's arithmetic, so the result agrees with it to the last bit.
        # Every operation is monotone in m, so meets() is monotone too.
        return math.exp(steps * _log_p_step(p, m)) >= target

    # The closed form is within a rounding error of the answer, but near p = 1/2 it is
    # ~1e16 and one rounding error is many integers: bracket with doubling steps, then bisect.
    # Invariant: meets(high) and (low == 0 or not meets(low)).
    stride = 1
    if meets(k):
        high, low = k, k - 1
        while low >= 1 and meets(low):
            high, stride = low, stride * 2
            low = max(high - stride, 0)
    else:
        low, high = k, k + 1
        while not meets(high):
            low, stride = high, stride * 2
            high = low + stride
    while high - low > 1:
        middle = (low + high) // 2
        if meets(middle):
            high = middle
        else:
            low = middle
    return high


def expected_votes(p: float, k: int) -> float:
    """Expected number of valid votes one step needs before some answer leads by ``k``.

    Why: this, not ``k``, is what a step costs. For the binary walk absorbed
    at +-k, with ``r = (1 - p) / p``:
    ``E = k / (2p - 1) * (1 - r**k) / (1 + r**k)``, which tends to ``k**2`` at
    ``p = 1/2`` and equals ``k`` at ``p = 1``. Evaluated as
    ``k * tanh(k * a / 2) / (2p - 1)`` with ``a = log(p / (1 - p))``, which has
    no cancellation near ``p = 1/2``.

    >>> expected_votes(0.5, 3)
    9.0
    """
    p = check_p(p)
    k = check_int("k", k, 1)
    if p == 1.0:
        return float(k)
    u = 2.0 * p - 1.0
    if u == 0.0:
        return float(k * k)
    a = -_log_r(p)
    return k * math.tanh(k * a / 2.0) / u


def expected_samples(p: float, k: int, valid_rate: float = 1.0) -> float:
    """Expected samples drawn per step when only a fraction ``valid_rate`` are votes.

    Why: red-flagged samples (too long, unparseable, breaking a task rule) are
    paid for but thrown away, so each valid vote costs ``1 / valid_rate`` samples.

    >>> expected_samples(1.0, 3, valid_rate=0.5)
    6.0
    """
    valid_rate = check_rate("valid_rate", valid_rate)
    return expected_votes(p, k) / valid_rate


def expected_cost(
    p: float,
    k: int,
    steps: int,
    *,
    valid_rate: float = 1.0,
    tokens_in: float = 0,
    tokens_out: float = 0,
    price_in_per_m: float = 0.0,
    price_out_per_m: float = 0.0,
    cost_per_sample: float | None = None,
) -> float:
    """Expected cost of a whole run: ``steps * expected_samples * c_sample``.

    Why: to compare models before a run, a cheap model with a large ``k`` against
    a dear one with a small ``k``. ``c_sample`` is ``cost_per_sample`` when given,
    otherwise ``tokens_in * price_in_per_m / 1e6 + tokens_out * price_out_per_m / 1e6``
    (prices per million tokens, as providers quote them).

    >>> expected_cost(1.0, 3, 1000, cost_per_sample=0.01)
    30.0
    """
    steps = check_int("steps", steps, 1)
    tokens_in = check_nonnegative("tokens_in", tokens_in)
    tokens_out = check_nonnegative("tokens_out", tokens_out)
    price_in_per_m = check_nonnegative("price_in_per_m", price_in_per_m)
    price_out_per_m = check_nonnegative("price_out_per_m", price_out_per_m)
    if cost_per_sample is None:
        c_sample = tokens_in * price_in_per_m / 1e6 + tokens_out * price_out_per_m / 1e6
    else:
        c_sample = check_nonnegative("cost_per_sample", cost_per_sample)
    return steps * expected_samples(p, k, valid_rate) * c_sample
