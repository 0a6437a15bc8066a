"""Monte Carlo checks of the closed forms (voting.montecarlo against voting.scaling).

With one wrong answer the simulator must agree with ``p_step`` and
``expected_votes``. With several wrong answers the closed forms are the binary
worst case: whenever the binary walk (correct minus all wrong votes) reaches +k,
the correct answer already leads every single wrong answer by k, and no wrong
answer can lead by k before the binary walk reaches -k, so the success rate can
only be higher.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from maker.voting import Ballot, expected_votes, p_step, simulate_votes
from scipy import stats

TRIALS = 20_000
# Two-sided tail below which a deviation counts as real: about 4.9 standard errors.
ALPHA = 1e-6
Z = stats.norm.isf(ALPHA / 2)


def votes_variance(p: float, k: int) -> float:
    """Exact variance of one step's vote count, from the walk's fundamental matrix."""
    n = 2 * k - 1
    q = np.zeros((n, n))
    for i in range(n):
        if i + 1 < n:
            q[i, i + 1] = p
        if i - 1 >= 0:
            q[i, i - 1] = 1 - p
    fundamental = np.linalg.inv(np.eye(n) - q)
    first = fundamental.sum(axis=1)
    second = fundamental @ (1 + 2 * q @ first)
    start = k - 1
    return float(second[start] - first[start] ** 2)


def seed(p: float, k: int, wrong: int) -> np.random.Generator:
    return np.random.default_rng([int(p * 1000), k, wrong, 2511_09030])


@pytest.mark.parametrize("p", [0.6, 0.8, 0.99])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
def test_binary_case_matches_closed_forms(p: float, k: int) -> None:
    rate, mean_votes = simulate_votes(p, k, 1, TRIALS, seed(p, k, 1))
    predicted = p_step(p, k)
    wins = round(rate * TRIALS)
    assert stats.binomtest(wins, TRIALS, predicted).pvalue > ALPHA, (rate, predicted)
    se_votes = math.sqrt(votes_variance(p, k) / TRIALS)
    assert abs(mean_votes - expected_votes(p, k)) <= Z * se_votes + 1e-9, (
        mean_votes,
        expected_votes(p, k),
        se_votes,
    )


@pytest.mark.parametrize("p", [0.6, 0.8, 0.99])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 6])
@pytest.mark.parametrize("wrong", [2, 5])
def test_spreading_errors_only_helps(
    p: float, k: int, wrong: int, record_property: Callable[[str, object], None]
) -> None:
    rate, mean_votes = simulate_votes(p, k, wrong, TRIALS, seed(p, k, wrong))
    predicted = p_step(p, k)
    se = math.sqrt(predicted * (1 - predicted) / TRIALS)
    assert rate >= predicted - Z * se - 1e-12, (rate, predicted, se)
    record_property("success_rate", rate)
    record_property("mean_votes", mean_votes)
    record_property("binary_expected_votes", expected_votes(p, k))
    assert k <= mean_votes < math.inf


def test_spreading_errors_helps_visibly() -> None:
    """At p=0.6, k=3 two wrong answers win clearly more often than the binary bound."""
    rate, _ = simulate_votes(0.6, 3, 2, TRIALS, seed(0.6, 3, 2))
    predicted = p_step(0.6, 3)
    assert rate > predicted + 5 * math.sqrt(predicted * (1 - predicted) / TRIALS)


def test_agreement_test_has_power() -> None:
    """The tolerance used above is tight enough to tell k from k+1 apart."""
    rate, mean_votes = simulate_votes(0.8, 3, 1, TRIALS, seed(0.8, 3, 1))
    wins = round(rate * TRIALS)
    assert stats.binomtest(wins, TRIALS, p_step(0.8, 4)).pvalue < ALPHA
    se_votes = math.sqrt(votes_variance(0.8, 3) / TRIALS)
    assert abs(mean_votes - expected_votes(0.8, 4)) > Z * se_votes


def test_simulator_uses_the_ballot_rule() -> None:
    """Replay the same draws through Ballot: same winners, same vote counts."""
    rng = np.random.default_rng(7)
    p, k, wrong, trials = 0.55, 3, 3, 400
    wins = votes = 0
    for _ in range(trials):
        ballot = Ballot(k)
        winner = None
        while winner is None:
            key = 0 if rng.random() < p else int(rng.integers(1, wrong + 1))
            winner = ballot.add(key)
        wins += winner == 0
        votes += ballot.total
    rate, mean_votes = simulate_votes(p, k, wrong, 20_000, np.random.default_rng(8))
    assert abs(wins / trials - rate) < 5 * math.sqrt(rate * (1 - rate) / trials)
    assert abs(votes / trials - mean_votes) < 0.15 * mean_votes


def test_degenerate_probabilities() -> None:
    rng = np.random.default_rng(0)
    assert simulate_votes(1.0, 4, 3, 100, rng) == (1.0, 4.0)
    assert simulate_votes(0.0, 4, 1, 100, rng) == (0.0, 4.0)
    rate, mean_votes = simulate_votes(0.0, 2, 5, 2000, rng)
    assert rate == 0.0 and mean_votes > 2.0


def test_seeded_runs_repeat() -> None:
    a = simulate_votes(0.7, 3, 2, 1000, np.random.default_rng(3))
    b = simulate_votes(0.7, 3, 2, 1000, np.random.default_rng(3))
    assert a == b


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"p": 1.1, "k": 1}, "p"),
        ({"p": -0.1, "k": 1}, "p"),
        ({"p": 0.9, "k": 0}, "k"),
        ({"p": 0.9, "k": 1, "wrong_answers": 0}, "wrong_answers"),
        ({"p": 0.9, "k": 1, "trials": 0}, "trials"),
    ],
)
def test_validation(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        simulate_votes(**kwargs)  # type: ignore[arg-type]
