"""Statistics of first-to-ahead-by-k voting (MAKER, arXiv 2511.09030), with no I/O.

Why a separate package: the voting rule, the scaling laws and the estimators
are pure functions of numbers and keys. Keeping them apart from the runner,
the model clients and the tasks lets them be table-tested exhaustively and
reused (e.g. to plan a run in a notebook) without importing anything heavier
than numpy and scipy. Nothing here imports from the rest of the project.

Modules, one idea each:

- ``voting.ballot``: the voting rule itself (``Ballot``, ``decide``) and the simpler
  first-to-k rule it improves on (``first_to_k``), for replays.
- ``voting.scaling``: closed forms in the binary worst case -- per-step and
  whole-run success, the smallest margin ``k_min``, expected votes and cost.
- ``voting.confidence``: planning on measured data -- Clopper-Pearson intervals,
  ``k_min`` on the pessimistic end, and the collision check for correlated errors.
- ``voting.montecarlo``: an independent simulator used to check the closed forms.

>>> from maker.voting import decide, k_min
>>> k_min(1 - 0.0022, 2**20 - 1, 0.95)
3
>>> decide(["a", "b", "a", "a"], 2)
('a', 4)
"""

from .ballot import Ballot, decide, first_to_k
from .confidence import (
    CollisionStats,
    Interval,
    clopper_pearson,
    collision_stats,
    k_min_pessimistic,
)
from .montecarlo import simulate_votes
from .scaling import (
    expected_cost,
    expected_samples,
    expected_votes,
    k_min,
    p_step,
    run_success,
)

__all__ = [
    "Ballot",
    "CollisionStats",
    "Interval",
    "clopper_pearson",
    "collision_stats",
    "decide",
    "first_to_k",
    "expected_cost",
    "expected_samples",
    "expected_votes",
    "k_min",
    "k_min_pessimistic",
    "p_step",
    "run_success",
    "simulate_votes",
]
