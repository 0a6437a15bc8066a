"""Scaling laws (voting.scaling), re-derived independently rather than trusted.

The exact references solve the gambler's-ruin Markov chain with numpy, and
whole-run success is recomputed in 60-digit decimal arithmetic.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from maker.voting import (
    expected_cost,
    expected_samples,
    expected_votes,
    k_min,
    p_step,
    run_success,
)

PAPER_STEPS = 2**20 - 1


def ruin_chain(p: float, k: int) -> tuple[float, float]:
    """(P(correct wins), E[votes]) by solving the walk on leads -k+1..k-1 directly."""
    n = 2 * k - 1
    q = np.zeros((n, n))
    to_win = np.zeros(n)
    for i in range(n):  # state i is lead i - (k - 1)
        if i + 1 < n:
            q[i, i + 1] = p
        else:
            to_win[i] = p
        if i - 1 >= 0:
            q[i, i - 1] = 1 - p
    fundamental = np.linalg.inv(np.eye(n) - q)
    start = k - 1
    return float((fundamental @ to_win)[start]), float(fundamental.sum(axis=1)[start])


@pytest.mark.parametrize(
    ("error", "k"),
    [(0.0022, 3), (0.3571, 29), (0.1839, 12), (0.2342, 15), (0.0569, 6)],
)
def test_k_min_paper_values(error: float, k: int) -> None:
    p = 1 - error
    assert k_min(p, PAPER_STEPS, 0.95) == k
    assert run_success(p, k, PAPER_STEPS) >= 0.95
    assert run_success(p, k - 1, PAPER_STEPS) < 0.95


def test_expected_votes_paper_value() -> None:
    assert expected_votes(0.998, 3) == pytest.approx(3.012, abs=5e-4)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.55, 0.6, 0.8, 0.99, 0.999])
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_closed_forms_match_markov_chain(p: float, k: int) -> None:
    win, votes = ruin_chain(p, k)
    assert p_step(p, k) == pytest.approx(win, rel=1e-9)
    assert expected_votes(p, k) == pytest.approx(votes, rel=1e-9)


def test_p_step_monotone_in_k() -> None:
    for p in (0.51, 0.6, 0.9, 0.999):
        values = [p_step(p, k) for k in range(1, 12)]
        # Strictly increasing until it rounds to 1.0 in floating point.
        assert all(a < b or a == b == 1.0 for a, b in zip(values, values[1:]))
        assert values[0] < values[4]
    for p in (0.1, 0.49):
        values = [p_step(p, k) for k in range(1, 12)]
        assert all(a > b for a, b in zip(values, values[1:]))
    assert {p_step(0.5, k) for k in range(1, 12)} == {0.5}


def test_p_step_k1_is_p_and_p1_is_certain() -> None:
    for p in (0.01, 0.3, 0.5, 0.77, 0.999):
        assert p_step(p, 1) == pytest.approx(p, rel=1e-12)
    assert p_step(1.0, 7) == 1.0
    assert run_success(1, 1, 10**9) == 1.0
    assert expected_votes(1.0, 4) == 4.0


def test_p_step_extremes_do_not_overflow() -> None:
    assert p_step(1e-300, 1000) == 0.0
    assert p_step(1 - 1e-16, 1000) == 1.0


def test_expected_votes_near_half_is_continuous() -> None:
    for k in (1, 3, 10):
        assert expected_votes(0.5, k) == k * k
        for eps in (1e-12, 1e-9, 1e-6):
            assert expected_votes(0.5 + eps, k) == pytest.approx(k * k, rel=1e-4)
            assert expected_votes(0.5 - eps, k) == pytest.approx(k * k, rel=1e-4)


def test_expected_votes_symmetric() -> None:
    for p in (0.2, 0.4, 0.45):
        for k in (1, 2, 6):
            assert expected_votes(p, k) == pytest.approx(expected_votes(1 - p, k), rel=1e-12)


def exact_run_success(p: float, k: int, steps: int) -> float:
    """p_step ** steps in 60-digit decimals from the exact rational p_step."""
    pf = Fraction(p)
    step = 1 / (1 + ((1 - pf) / pf) ** k)
    with localcontext() as ctx:
        ctx.prec = 60
        value = (Decimal(step.numerator) / Decimal(step.denominator)).ln() * steps
        return float(value.exp())


@pytest.mark.parametrize(
    ("p", "k", "steps"),
    [
        (1 - 0.0022, 3, PAPER_STEPS),
        (1 - 0.0022, 2, PAPER_STEPS),
        (1 - 1e-4, 3, PAPER_STEPS),
        (1 - 1e-6, 2, 10**9),
        (0.9, 10, PAPER_STEPS),
        (0.6, 3, 7),
    ],
)
def test_run_success_accurate_at_a_million_steps(p: float, k: int, steps: int) -> None:
    assert run_success(p, k, steps) == pytest.approx(exact_run_success(p, k, steps), rel=1e-12)


@settings(max_examples=300, deadline=None)
@example(p=0.5 + 2**-53, steps=2**20, target=0.95)
@example(p=0.75, steps=1, target=0.75)
@example(p=1 - 2**-53, steps=2**24, target=1 - 1e-12)
@given(
    p=st.floats(min_value=0.5, max_value=1.0, exclude_min=True),
    steps=st.integers(min_value=1, max_value=2**24),
    target=st.floats(min_value=1e-6, max_value=1 - 1e-12),
)
def test_k_min_is_smallest_meeting_target(p: float, steps: int, target: float) -> None:
    k = k_min(p, steps, target)
    assert k >= 1
    assert run_success(p, k, steps) >= target
    if k > 1:
        assert run_success(p, k - 1, steps) < target


def test_k_min_matches_naive_formula_where_it_is_well_conditioned() -> None:
    for p in (0.6, 0.75, 0.9):
        for steps in (1, 10, 100):
            for target in (0.5, 0.9, 0.99):
                naive = math.log(target ** (-1 / steps) - 1) / math.log((1 - p) / p)
                if abs(naive - round(naive)) > 1e-6:
                    assert k_min(p, steps, target) == max(1, math.ceil(naive))


def test_k_min_monotone() -> None:
    ks = [k_min(0.9, s, 0.95) for s in (1, 10, 10**3, 10**6, 10**9)]
    assert ks == sorted(ks) and ks[0] < ks[-1]
    ks = [k_min(0.9, 1000, t) for t in (0.1, 0.5, 0.9, 0.999, 0.999999)]
    assert ks == sorted(ks) and ks[0] < ks[-1]
    ks = [k_min(p, 1000, 0.95) for p in (0.51, 0.6, 0.9, 0.999)]
    assert ks == sorted(ks, reverse=True) and ks[0] > ks[-1]


def test_k_min_grows_like_log_steps() -> None:
    """Design note: k_min grows as ln(s), so each factor of 10 in steps adds about the same."""
    p = 0.9
    log_r = math.log((1 - p) / p)
    for s in (10**3, 10**6, 10**9):
        assert k_min(p, s, 0.95) == pytest.approx(-math.log(s) / log_r, abs=3)


def test_k_min_edge_cases() -> None:
    assert k_min(1.0, PAPER_STEPS, 0.95) == 1
    assert k_min(0.99, 1, 1e-300) == 1
    assert k_min(0.5 + 1e-9, 10, 0.9) > 1e8


@pytest.mark.parametrize("p", [0.5 + 2**-53, 0.5 + 1e-15, 0.5 + 1e-12])
def test_k_min_just_above_half_is_exact_and_fast(p: float) -> None:
    """Here k_min is ~1e15 and one rounding error in the closed form spans many integers."""
    k = k_min(p, PAPER_STEPS, 0.95)
    assert k > 1e10
    assert run_success(p, k, PAPER_STEPS) >= 0.95 > run_success(p, k - 1, PAPER_STEPS)


def test_expected_samples_and_cost() -> None:
    votes = expected_votes(0.9, 3)
    assert expected_samples(0.9, 3) == votes
    assert expected_samples(0.9, 3, valid_rate=0.8) == pytest.approx(votes / 0.8)
    cost = expected_cost(
        0.9,
        3,
        1000,
        valid_rate=0.8,
        tokens_in=500,
        tokens_out=100,
        price_in_per_m=0.4,
        price_out_per_m=1.6,
    )
    c_sample = 500 * 0.4 / 1e6 + 100 * 1.6 / 1e6
    assert cost == pytest.approx(1000 * votes / 0.8 * c_sample)
    override = expected_cost(0.9, 3, 1000, tokens_in=500, price_in_per_m=0.4, cost_per_sample=0.5)
    assert override == pytest.approx(1000 * votes * 0.5)
    assert expected_cost(0.9, 3, 1000) == 0.0


def test_expected_cost_paper_order_of_magnitude() -> None:
    """gpt-4.1-mini plan in the paper: k=3, about 3 samples a step, a million steps."""
    samples = expected_samples(1 - 0.0022, 3) * PAPER_STEPS
    assert 3.0e6 < samples < 3.3e6


S = PAPER_STEPS
VALIDATION = [
    (p_step, (0.0, 3), "p"),
    (p_step, (1.5, 3), "p"),
    (p_step, (-0.1, 3), "p"),
    (p_step, (math.nan, 3), "p"),
    (p_step, (0.9, 0), "k"),
    (p_step, (0.9, 2.5), "k"),
    (p_step, (0.9, 3.0), "k"),
    (run_success, (0.9, 3, 0), "steps"),
    (run_success, (0.9, 3, 1.5), "steps"),
    (k_min, (0.5, S, 0.95), "p"),
    (k_min, (0.3, S, 0.95), "p"),
    (k_min, (1.2, S, 0.95), "p"),
    (k_min, (0.9, 0, 0.95), "steps"),
    (k_min, (0.9, S, 0.0), "target"),
    (k_min, (0.9, S, 1.0), "target"),
    (k_min, (0.9, S, 1.5), "target"),
    (expected_votes, (0.0, 3), "p"),
    (expected_votes, (0.9, -1), "k"),
    (expected_samples, (0.9, 3, 0.0), "valid_rate"),
    (expected_samples, (0.9, 3, 1.1), "valid_rate"),
    (expected_cost, (0.9, 3, 0), "steps"),
]


@pytest.mark.parametrize(("fn", "args", "name"), VALIDATION)
def test_validation_names_the_argument(fn: object, args: tuple[object, ...], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be") as info:
        fn(*args)  # type: ignore[operator]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["tokens_in", "tokens_out", "price_in_per_m", "price_out_per_m", "cost_per_sample"])
def test_expected_cost_rejects_negative(name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be a finite number >= 0"):
        expected_cost(0.9, 3, 10, **{name: -1.0})  # type: ignore[arg-type]


def test_expected_cost_checks_valid_rate() -> None:
    with pytest.raises(ValueError, match=r"^valid_rate must be in \(0, 1\]"):
        expected_cost(0.9, 3, 10, valid_rate=0.0, cost_per_sample=1.0)


def test_k_min_explains_why_p_must_exceed_half() -> None:
    with pytest.raises(ValueError, match="voting cannot help when p <= 1/2"):
        k_min(0.5, 100, 0.9)
