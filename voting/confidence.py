"""Estimating the per-sample success rate ``p`` from graded samples, and checking independence.

Why: ``k_min`` is very sensitive to ``p`` near 1/2 and to the error rate near 0,
and ``p`` is only ever measured on a finite sample of graded steps. Planning on
the point estimate under-provisions the margin about half the time, so the
design plans ``k`` on the pessimistic end of an exact (Clopper-Pearson)
confidence interval.

The scaling laws also assume that votes are independent. Correlated errors --
the same wrong answer coming back again and again -- defeat voting, and the
cheapest symptom to measure is the collision rate: how often a step's first
two votes are both wrong, compared with the ``(1 - p) ** 2`` independence
predicts.

>>> clopper_pearson(0, 10).high  # doctest: +ELLIPSIS
0.3084...
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._checks import check_count, check_int, check_p, check_unit_open
from .scaling import k_min

__all__ = [
    "CollisionStats",
    "Interval",
    "clopper_pearson",
    "collision_stats",
    "k_min_pessimistic",
]


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval ``[low, high]`` for a proportion.

    ``point`` is the maximum-likelihood estimate ``successes / trials`` and
    ``level`` the nominal coverage (e.g. 0.95).
    """

    low: float
    high: float
    point: float
    level: float


@dataclass(frozen=True)
class CollisionStats:
    """How often a step's first two votes were both wrong, against independence.

    ``observed`` is ``first_two_wrong / steps_with_two`` (NaN with no steps),
    ``expected`` is ``(1 - p) ** 2``, ``ratio`` is ``observed / expected`` (``inf``
    when errors collide although ``p == 1`` predicts none, NaN when it is 0/0 or
    there are no steps), and ``p_value`` is the one-sided exact binomial p-value
    for "collisions are more frequent than independence predicts" (1.0 with no
    steps). A small ``p_value`` with ``ratio`` well above 1 means errors are
    correlated and the scaling laws are optimistic.
    """

    first_two_wrong: int
    steps_with_two: int
    p: float
    observed: float
    expected: float
    ratio: float
    p_value: float


def clopper_pearson(successes: int, trials: int, level: float = 0.95) -> Interval:
    """Exact (Clopper-Pearson) two-sided confidence interval for a binomial proportion.

    Why: it never under-covers, even at 0 or ``trials`` successes, where the
    normal approximation collapses to a zero-width interval -- and a perfect
    score on a few hundred graded steps is exactly the case MAKER meets.
    Computed from beta quantiles: ``low = Beta(alpha/2; x, n-x+1)``,
    ``high = Beta(1-alpha/2; x+1, n-x)``, with ``alpha = 1 - level``.

    >>> round(clopper_pearson(10, 10).low, 4)
    0.6915
    """
    trials = check_int("trials", trials, 1)
    successes = check_count("successes", successes, trials, "trials")
    level = check_unit_open("level", level)
    alpha = 1.0 - level
    if successes == 0:
        low = 0.0
    else:
        low = float(_stats().beta.ppf(alpha / 2.0, successes, trials - successes + 1))
    if successes == trials:
        high = 1.0
    else:
        high = float(_stats().beta.ppf(1.0 - alpha / 2.0, successes + 1, trials - successes))
    return Interval(low=low, high=high, point=successes / trials, level=level)


def _stats():  # noqa: ANN202  (scipy.stats, imported on first use)
    """scipy.stats, imported when first needed: its import takes ~1 s of CPU, and every CLI
    start and Ray worker imports this module (most never compute an interval)."""
    from scipy import stats

    return stats


def collision_stats(first_two_wrong: int, steps_with_two: int, p: float) -> CollisionStats:
    """Compare the rate of steps whose first two votes were both wrong with ``(1 - p) ** 2``.

    Why: under independence two wrong first votes happen with probability
    ``(1 - p) ** 2``; a clearly higher rate means errors are correlated, so the
    real per-step success is below ``p_step`` and ``k`` should be raised (or the
    red flags tightened). Count only steps that drew at least two valid votes;
    with ``k >= 2`` that is every step, so the count is not biased by the
    stopping rule.

    >>> s = collision_stats(30, 1000, 0.9)
    >>> round(s.ratio, 2), s.p_value < 1e-3
    (3.0, True)
    """
    steps_with_two = check_int("steps_with_two", steps_with_two, 0)
    first_two_wrong = check_count("first_two_wrong", first_two_wrong, steps_with_two, "steps_with_two")
    p = check_p(p)
    expected = (1.0 - p) ** 2
    if steps_with_two == 0:
        return CollisionStats(first_two_wrong, steps_with_two, p, math.nan, expected, math.nan, 1.0)
    observed = first_two_wrong / steps_with_two
    if expected > 0.0:
        ratio = observed / expected
    else:
        ratio = math.inf if observed > 0.0 else math.nan
    p_value = float(_stats().binomtest(first_two_wrong, steps_with_two, expected, alternative="greater").pvalue)
    return CollisionStats(first_two_wrong, steps_with_two, p, observed, expected, ratio, p_value)


def k_min_pessimistic(successes: int, trials: int, steps: int, target: float, level: float = 0.95) -> int | None:
    """``k_min`` planned on the low end of the Clopper-Pearson interval for ``p``.

    Why: the margin must still be enough if the model is as bad as the data
    plausibly allow. With ``level = 0.95`` the low end is a one-sided 97.5%
    lower bound on ``p``. Returns None when that bound is ``<= 1/2``: the data
    cannot rule out that voting does not help at all.

    >>> k_min(0.998, 2**20 - 1, 0.95), k_min_pessimistic(998, 1000, 2**20 - 1, 0.95)
    (3, 4)
    >>> k_min_pessimistic(6, 10, 100, 0.95) is None
    True
    """
    low = clopper_pearson(successes, trials, level).low
    steps = check_int("steps", steps, 1)
    target = check_unit_open("target", target)
    if low <= 0.5:
        return None
    return k_min(low, steps, target)
