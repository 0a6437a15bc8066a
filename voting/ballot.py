"""First-to-ahead-by-k voting over canonical answer keys.

Why: MAKER decides each step by drawing valid samples until one answer's count
is at least ``k`` more than every other answer's count. A ``Ballot`` holds one
step's votes and says when that has happened. It votes on *keys* (e.g. the
parsed move plus the canonical next state), never on raw text, so answers that
differ only in formatting do not split the vote.

Discarded (red-flagged) samples are not votes: do not add them. The ballot
rejects ``None`` as a key, because ``None`` is how ``add`` reports "undecided"
and how a normaliser marks a discarded sample; ``decide`` skips ``None`` entries.

``add`` is O(1): the ballot keeps the top two counts incrementally. A key that
overtakes the leader becomes the leader with exactly one vote more than the old
leader, so the old leader's count is the new runner-up and nothing needs to be
recomputed.

>>> ballot = Ballot(2)
>>> [ballot.add(key) for key in ["a", "b", "a", "a"]]
[None, None, None, 'a']
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable

from ._checks import check_int

__all__ = ["Ballot", "decide", "first_to_k"]


class Ballot:
    """Votes of one step under first-to-ahead-by-k.

    Why: the runner asks two questions after each batch of samples: is the step
    decided, and if not, how many more samples should it request (``needed``).

    A decided ballot raises ``RuntimeError`` on ``add``: a vote arriving after
    the decision is a runner bug (it would otherwise be silently dropped).

    >>> ballot = Ballot(3)
    >>> ballot.add("x"), ballot.add("y"), ballot.add("x")
    (None, None, None)
    >>> ballot.leader, ballot.lead, ballot.needed
    ('x', 1, 2)
    """

    __slots__ = ("_counts", "_decided", "_k", "_leader", "_second", "_top", "_total")

    def __init__(self, k: int) -> None:
        self._k: int = check_int("k", k, 1)
        self._counts: dict[Hashable, int] = {}
        self._leader: Hashable | None = None
        self._top: int = 0
        self._second: int = 0
        self._total: int = 0
        self._decided: bool = False

    def add(self, key: Hashable) -> Hashable | None:
        """Count one valid vote for ``key``; return the winning key once decided, else None."""
        if self._decided:
            raise RuntimeError(f"ballot already decided for {self._leader!r}: a decided ballot takes no more votes")
        if key is None:
            raise ValueError("key must not be None: drop discarded samples instead of voting them")
        counts = self._counts
        count = counts.get(key, 0) + 1
        counts[key] = count
        self._total += 1
        top = self._top
        if count > top:
            leader = self._leader
            if not (key is leader or key == leader):
                # key overtook the leader: count == top + 1, old leader is runner-up.
                self._second = top
                self._leader = key
            self._top = top = count
        elif count > self._second:
            self._second = count
        if top - self._second >= self._k:
            self._decided = True
            return self._leader
        return None

    @property
    def k(self) -> int:
        """The margin the leader needs over every other answer."""
        return self._k

    @property
    def counts(self) -> dict[Hashable, int]:
        """Votes per key, in the order keys were first seen (a copy)."""
        return dict(self._counts)

    @property
    def leader(self) -> Hashable | None:
        """Key with the most votes; ties go to the key that reached that count first."""
        return self._leader

    @property
    def lead(self) -> int:
        """Leader's count minus the runner-up's count (0 when empty)."""
        return self._top - self._second

    @property
    def needed(self) -> int:
        """Consecutive votes for the leader that would decide the step (0 once decided)."""
        return self._k - (self._top - self._second)

    @property
    def decided(self) -> bool:
        """Whether some key is ``k`` ahead of every other."""
        return self._decided

    @property
    def winner(self) -> Hashable | None:
        """The winning key once decided, else None."""
        return self._leader if self._decided else None

    @property
    def total(self) -> int:
        """Number of valid votes counted."""
        return self._total

    def __repr__(self) -> str:
        state = f"winner={self._leader!r}" if self._decided else f"leader={self._leader!r}"
        return f"Ballot(k={self._k}, total={self._total}, lead={self.lead}, {state})"


def decide(keys: Iterable[Hashable], k: int) -> tuple[Hashable | None, int]:
    """Feed ``keys`` in order to a fresh ``Ballot(k)``; return ``(winner, consumed)``.

    Why: to re-decide a logged step (after a resume, or to audit a run) from the
    keys of its samples in the order they arrived. ``consumed`` counts the
    entries read, stopping at the deciding one, so votes after it are known to
    be surplus. ``None`` entries stand for discarded samples: they are consumed
    but are not votes. ``winner`` is None if the keys run out first.

    >>> decide(["a", None, "b", "a", "a", "b"], 2)
    ('a', 5)
    """
    ballot = Ballot(k)
    add = ballot.add
    consumed = 0
    for key in keys:
        consumed += 1
        if key is None:
            continue
        winner = add(key)
        if winner is not None:
            return winner, consumed
    return None, consumed


def first_to_k(keys: Iterable[Hashable | None], k: int) -> tuple[Hashable | None, int]:
    """The first key to collect k votes wins; ``(winner, consumed)`` like `decide`.

    Why: the simpler rule that first-to-ahead-by-k improves on; replaying a log under it
    shows what the margin buys.  None entries are discarded samples: consumed, not votes.

    >>> first_to_k(["a", "b", None, "b"], 2)
    ('b', 4)
    """
    counts: dict[Hashable, int] = {}
    consumed = 0
    for key in keys:
        consumed += 1
        if key is None:
            continue
        count = counts.get(key, 0) + 1
        counts[key] = count
        if count >= k:
            return key, consumed
    return None, consumed
