"""Table and property tests for first-to-ahead-by-k voting (voting.ballot)."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from maker.voting import Ballot, decide


def feed(k: int, keys: list[Hashable]) -> tuple[Ballot, list[Hashable | None]]:
    ballot = Ballot(k)
    return ballot, [ballot.add(key) for key in keys]


# (k, keys, per-add results, leader, lead, needed, decided)
TABLE = [
    pytest.param(1, ["a"], ["a"], "a", 1, 0, True, id="k1-first-vote-decides"),
    pytest.param(1, [("move", 1)], [("move", 1)], ("move", 1), 1, 0, True, id="k1-tuple-key"),
    pytest.param(2, ["a"], [None], "a", 1, 1, False, id="single-key-lead-is-count"),
    pytest.param(2, ["a", "a"], [None, "a"], "a", 2, 0, True, id="single-key-decides-at-k"),
    pytest.param(2, ["a", "b"], [None, None], "a", 0, 2, False, id="tie-first-reacher-leads"),
    pytest.param(2, ["a", "b"] * 5, [None] * 10, "a", 0, 2, False, id="alternating-tie-never-decides"),
    pytest.param(3, ["a", "b", "c"] * 4, [None] * 12, "a", 0, 3, False, id="three-way-tie-never-decides"),
    pytest.param(2, ["a", "b", "b"], [None, None, None], "b", 1, 1, False, id="leader-change"),
    pytest.param(2, ["a", "b", "b", "b"], [None, None, None, "b"], "b", 2, 0, True, id="overtaker-wins"),
    pytest.param(
        3,
        ["a", "a", "b", "c", "c", "c"],
        [None, None, None, None, None, None],
        "c",
        1,
        2,
        False,
        id="third-key-overtakes-runner-up-is-old-leader",
    ),
    pytest.param(
        3,
        ["x", "y", "z", "w", "x", "x"],
        [None] * 6,
        "x",
        2,
        1,
        False,
        id="lead-is-over-the-best-other-key",
    ),
    pytest.param(2, ["b", "a", "a", "b", "b"], [None] * 5, "b", 1, 1, False, id="retake-lead-after-loss"),
]


@pytest.mark.parametrize(("k", "keys", "results", "leader", "lead", "needed", "decided"), TABLE)
def test_ballot_table(
    k: int,
    keys: list[Hashable],
    results: list[Hashable | None],
    leader: Hashable,
    lead: int,
    needed: int,
    decided: bool,
) -> None:
    ballot, got = feed(k, keys)
    assert got == results
    assert ballot.leader == leader
    assert ballot.lead == lead
    assert ballot.needed == needed
    assert ballot.decided is decided
    assert ballot.winner == (leader if decided else None)
    assert ballot.total == len(keys)
    expected_counts: dict[Hashable, int] = {}
    for key in keys:
        expected_counts[key] = expected_counts.get(key, 0) + 1
    assert ballot.counts == expected_counts
    assert list(ballot.counts) == list(expected_counts)  # first-seen order


def test_no_votes_is_undecided() -> None:
    """Every sample discarded: nothing is added and the step stays open."""
    ballot = Ballot(3)
    assert not ballot.decided
    assert ballot.winner is None
    assert ballot.leader is None
    assert ballot.lead == 0
    assert ballot.needed == 3
    assert ballot.total == 0
    assert ballot.counts == {}
    assert decide([], 3) == (None, 0)
    assert decide([None, None, None], 1) == (None, 3)


def test_many_distinct_answers() -> None:
    ballot = Ballot(2)
    for i in range(1000):
        assert ballot.add(f"answer-{i}") is None
    assert ballot.leader == "answer-0"
    assert ballot.lead == 0
    assert ballot.needed == 2
    assert len(ballot.counts) == 1000
    assert ballot.add("answer-500") is None
    assert (ballot.leader, ballot.lead) == ("answer-500", 1)
    assert ballot.add("answer-500") == "answer-500"
    assert ballot.total == 1002


def test_add_after_decision_raises() -> None:
    ballot = Ballot(1)
    assert ballot.add("a") == "a"
    with pytest.raises(RuntimeError, match="decided"):
        ballot.add("a")
    with pytest.raises(RuntimeError, match="decided"):
        ballot.add("b")
    assert ballot.counts == {"a": 1}
    assert ballot.total == 1


def test_none_key_is_rejected() -> None:
    ballot = Ballot(2)
    with pytest.raises(ValueError, match="key"):
        ballot.add(None)
    assert ballot.total == 0


def test_counts_is_a_copy() -> None:
    ballot, _ = feed(3, ["a", "b"])
    counts = ballot.counts
    counts["a"] = 100
    assert ballot.counts == {"a": 1, "b": 1}
    assert ballot.lead == 0


def test_equal_keys_count_together() -> None:
    """Keys are compared like dict keys: equal tuples built separately are one answer."""
    ballot = Ballot(2)
    assert ballot.add((1, (0, 2))) is None
    assert ballot.add(tuple([1, (0, 2)])) == (1, (0, 2))


@pytest.mark.parametrize("bad", [0, -1, 1.5, 2.0, True, "2", None])
def test_bad_k(bad: object) -> None:
    with pytest.raises(ValueError, match=r"^k must be"):
        Ballot(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^k must be"):
        decide(["a"], bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("keys", "k", "expected"),
    [
        (["a", "b", "a", "a"], 2, ("a", 4)),
        (["a", None, "b", "a", "a", "b"], 2, ("a", 5)),
        (["a", "b", "a", "b"], 2, (None, 4)),
        (["a"], 1, ("a", 1)),
        ([None, "z"], 1, ("z", 2)),
        (["a", "b", "b", "b", "a"], 2, ("b", 4)),
    ],
)
def test_decide_table(keys: list[Hashable], k: int, expected: tuple[Hashable | None, int]) -> None:
    assert decide(keys, k) == expected


def test_decide_stops_consuming_at_the_decision() -> None:
    keys = iter(["a", "a", "surplus-1", "surplus-2"])
    assert decide(keys, 2) == ("a", 2)
    assert next(keys) == "surplus-1"


class Reference:
    """Naive ahead-by-k: recompute everything from the full history after every vote."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.history: list[Hashable] = []

    def state(self) -> tuple[Hashable | None, int, dict[Hashable, int]]:
        counts: dict[Hashable, int] = {}
        reached: dict[tuple[Hashable, int], int] = {}
        for t, key in enumerate(self.history):
            counts[key] = counts.get(key, 0) + 1
            reached[(key, counts[key])] = t
        if not counts:
            return None, 0, counts
        top = max(counts.values())
        leader = min((key for key in counts if counts[key] == top), key=lambda c: reached[(c, top)])
        others = [n for key, n in counts.items() if key != leader]
        return leader, top - max(others, default=0), counts


@settings(max_examples=200, deadline=None)
@given(
    k=st.integers(min_value=1, max_value=5),
    keys=st.lists(st.sampled_from(["a", "b", "c", "d", 0, (1, 2)]), max_size=40),
)
def test_ballot_matches_naive_reference(k: int, keys: list[Hashable]) -> None:
    ballot = Ballot(k)
    reference = Reference(k)
    for key in keys:
        reference.history.append(key)
        leader, lead, counts = reference.state()
        result = ballot.add(key)
        assert ballot.leader == leader
        assert ballot.lead == lead
        assert ballot.needed == k - lead
        assert ballot.counts == counts
        assert ballot.total == len(reference.history)
        if lead >= k:
            assert result == leader and ballot.decided and ballot.winner == leader
            assert decide(reference.history, k) == (leader, len(reference.history))
            break
        assert result is None and not ballot.decided
    else:
        assert decide(keys, k) == (None, len(keys))
