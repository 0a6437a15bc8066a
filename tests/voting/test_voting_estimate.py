"""Estimating p from graded samples (voting.confidence)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from maker.voting import (
    CollisionStats,
    Interval,
    clopper_pearson,
    collision_stats,
    k_min,
    k_min_pessimistic,
)
from scipy import stats


def test_known_values() -> None:
    none = clopper_pearson(0, 10)
    assert none.low == 0.0
    assert none.high == pytest.approx(0.3085, abs=1e-4)
    assert none.point == 0.0
    every = clopper_pearson(10, 10)
    assert every.low == pytest.approx(0.6915, abs=1e-4)
    assert every.high == 1.0
    assert every.point == 1.0
    assert every.level == 0.95


@pytest.mark.parametrize("n", [1, 5, 30, 1000])
@pytest.mark.parametrize("level", [0.8, 0.95, 0.99])
def test_edges_match_closed_form(n: int, level: float) -> None:
    """At 0 or n successes the exact bound is (alpha/2) ** (1/n) away from the edge."""
    edge = ((1 - level) / 2) ** (1 / n)
    assert clopper_pearson(0, n, level).high == pytest.approx(1 - edge, rel=1e-10)
    assert clopper_pearson(n, n, level).low == pytest.approx(edge, rel=1e-10)


@pytest.mark.parametrize(("x", "n"), [(0, 1), (1, 1), (3, 10), (7, 10), (50, 100), (9978, 10000)])
def test_matches_scipy_exact_interval(x: int, n: int) -> None:
    ours = clopper_pearson(x, n, 0.95)
    theirs = stats.binomtest(x, n).proportion_ci(confidence_level=0.95, method="exact")
    assert ours.low == pytest.approx(theirs.low, abs=1e-12)
    assert ours.high == pytest.approx(theirs.high, abs=1e-12)
    assert ours.low <= ours.point <= ours.high


@pytest.mark.parametrize("n", [10, 37, 200])
@pytest.mark.parametrize("p", [0.02, 0.3, 0.5, 0.9, 0.998])
@pytest.mark.parametrize("level", [0.9, 0.95])
def test_exact_coverage_is_at_least_level(n: int, p: float, level: float) -> None:
    """Coverage summed over every possible outcome, not sampled: it must never fall short."""
    covered = 0.0
    for x in range(n + 1):
        ci = clopper_pearson(x, n, level)
        if ci.low <= p <= ci.high:
            covered += stats.binom.pmf(x, n, p)
    assert covered >= level - 1e-12
    assert covered < 1.0 or p > 0.99  # not trivially the whole line


def test_simulated_coverage() -> None:
    rng = np.random.default_rng(11)
    p, n, draws = 0.85, 60, 400
    intervals = [clopper_pearson(int(x), n) for x in rng.binomial(n, p, size=draws)]
    hits = [ci.low <= p <= ci.high for ci in intervals]
    assert np.mean(hits) >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / draws)


def test_higher_level_is_wider() -> None:
    narrow = clopper_pearson(30, 50, 0.8)
    wide = clopper_pearson(30, 50, 0.99)
    assert wide.low < narrow.low < narrow.high < wide.high


def test_records_are_frozen() -> None:
    ci = clopper_pearson(3, 10)
    assert isinstance(ci, Interval)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ci.low = 0.0  # type: ignore[misc]
    s = collision_stats(1, 10, 0.9)
    assert isinstance(s, CollisionStats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.ratio = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((0, 0), "trials"),
        ((-1, 10), "successes"),
        ((11, 10), "successes"),
        ((1.5, 10), "successes"),
        ((5, 10, 0.0), "level"),
        ((5, 10, 1.0), "level"),
    ],
)
def test_clopper_pearson_validation(args: tuple[object, ...], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        clopper_pearson(*args)  # type: ignore[arg-type]


def test_collision_stats_independent_case() -> None:
    s = collision_stats(10, 1000, 0.9)
    assert s.observed == pytest.approx(0.01)
    assert s.expected == pytest.approx(0.01)
    assert s.ratio == pytest.approx(1.0)
    assert s.p_value > 0.3
    assert s.p_value == pytest.approx(stats.binom.sf(9, 1000, 0.01), rel=1e-9)


def test_collision_stats_correlated_case() -> None:
    s = collision_stats(30, 1000, 0.9)
    assert s.ratio == pytest.approx(3.0)
    assert s.p_value < 1e-6
    assert s.p_value == pytest.approx(stats.binom.sf(29, 1000, (1 - 0.9) ** 2), rel=1e-9)


def test_collision_stats_fewer_than_expected() -> None:
    s = collision_stats(0, 1000, 0.9)
    assert s.ratio == 0.0
    assert s.p_value == 1.0


def test_collision_stats_degenerate() -> None:
    empty = collision_stats(0, 0, 0.9)
    assert math.isnan(empty.observed) and math.isnan(empty.ratio)
    assert empty.p_value == 1.0
    impossible = collision_stats(1, 10, 1.0)
    assert impossible.expected == 0.0
    assert impossible.ratio == math.inf
    assert impossible.p_value == 0.0
    clean = collision_stats(0, 10, 1.0)
    assert math.isnan(clean.ratio)
    assert clean.p_value == 1.0


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ((-1, 10, 0.9), "first_two_wrong"),
        ((11, 10, 0.9), "first_two_wrong"),
        ((1, -10, 0.9), "steps_with_two"),
        ((1, 10, 0.0), "p"),
        ((1, 10, 1.5), "p"),
    ],
)
def test_collision_stats_validation(args: tuple[object, ...], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        collision_stats(*args)  # type: ignore[arg-type]


@pytest.mark.parametrize(("x", "n"), [(998, 1000), (9978, 10000), (99, 100), (943, 1000), (30, 30)])
def test_k_min_pessimistic_uses_low_end(x: int, n: int) -> None:
    steps, target = 2**20 - 1, 0.95
    k = k_min_pessimistic(x, n, steps, target)
    assert k == k_min(clopper_pearson(x, n).low, steps, target)
    assert k is not None and k >= k_min(min(x / n, 1.0), steps, target)


def test_k_min_pessimistic_raises_margin_on_small_samples() -> None:
    steps = 2**20 - 1
    point = k_min(0.998, steps, 0.95)
    ks = [k_min_pessimistic(998, 1000, steps, 0.95, level=lv) for lv in (0.5, 0.95, 0.9999)]
    assert all(k is not None for k in ks)
    assert ks == sorted(ks)  # type: ignore[type-var]
    assert ks[1] > point  # 1,000 graded steps are too few to plan on the point estimate
    assert k_min_pessimistic(99_800, 100_000, steps, 0.95) == point  # 100,000 are enough


def test_k_min_pessimistic_gives_up_when_half_is_plausible() -> None:
    assert k_min_pessimistic(6, 10, 100, 0.95) is None
    assert k_min_pessimistic(5, 10, 100, 0.95) is None
    assert k_min_pessimistic(0, 10, 100, 0.95) is None


def test_k_min_pessimistic_validation() -> None:
    with pytest.raises(ValueError, match=r"^steps must be"):
        k_min_pessimistic(99, 100, 0, 0.95)
    with pytest.raises(ValueError, match=r"^target must be"):
        k_min_pessimistic(99, 100, 10, 1.0)
    with pytest.raises(ValueError, match=r"^trials must be"):
        k_min_pessimistic(0, 0, 10, 0.9)
