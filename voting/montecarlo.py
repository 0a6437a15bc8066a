"""Monte Carlo simulation of first-to-ahead-by-k voting.

Why: the closed forms in ``voting.scaling`` assume the binary worst case (one
fixed wrong answer). This simulator also handles errors spread over several
wrong answers, so tests can check the closed forms against an independent
computation and confirm that spreading errors only helps. It is vectorised over
trials: each round draws one vote for every still-undecided trial.

>>> rate, votes = simulate_votes(1.0, 3, trials=100, rng=np.random.default_rng(0))
>>> rate, votes
(1.0, 3.0)
"""

from __future__ import annotations

import numbers

import numpy as np

from ._checks import check_int

__all__ = ["simulate_votes"]


def simulate_votes(
    p: float,
    k: int,
    wrong_answers: int = 1,
    trials: int = 10_000,
    rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """Simulate ``trials`` independent steps; return ``(success_rate, mean_votes)``.

    Why: to measure what ``p_step`` and ``expected_votes`` predict, under the
    same rule the ``Ballot`` applies. Each valid vote is the correct answer with
    probability ``p`` and otherwise one of ``wrong_answers`` wrong answers chosen
    uniformly; a step stops when some answer leads every other by ``k``.
    ``success_rate`` is the fraction of steps won by the correct answer and
    ``mean_votes`` the mean number of votes a step took. ``p`` may be any value
    in ``[0, 1]`` here. Pass a seeded ``rng`` for reproducible results.

    >>> rate, votes = simulate_votes(0.8, 2, trials=20_000, rng=np.random.default_rng(1))
    >>> abs(rate - 0.941) < 0.01, abs(votes - 2.941) < 0.05
    (True, True)
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    p = float(p)
    k = check_int("k", k, 1)
    wrong_answers = check_int("wrong_answers", wrong_answers, 1)
    trials = check_int("trials", trials, 1)
    if rng is None:
        rng = np.random.default_rng()

    answers = wrong_answers + 1  # column 0 is the correct answer
    counts = np.zeros((trials, answers), dtype=np.int64)
    active = np.arange(trials)
    correct_wins = 0
    total_votes = 0
    round_number = 0
    while active.size:
        round_number += 1
        size = active.size
        correct = rng.random(size) < p
        if wrong_answers == 1:
            vote = np.where(correct, 0, 1)
        else:
            vote = np.where(correct, 0, rng.integers(1, answers, size=size))
        counts[active, vote] += 1
        rows = counts[active]
        if answers == 2:
            lead = np.abs(rows[:, 0] - rows[:, 1])
        else:
            top_two = np.partition(rows, answers - 2, axis=1)[:, answers - 2 :]
            lead = top_two[:, 1] - top_two[:, 0]
        done = lead >= k
        if done.any():
            finished = rows[done]
            # The decided answer is the unique maximum of its row.
            correct_wins += int(np.count_nonzero(finished.argmax(axis=1) == 0))
            total_votes += round_number * int(np.count_nonzero(done))
            active = active[~done]
    return correct_wins / trials, total_votes / trials
