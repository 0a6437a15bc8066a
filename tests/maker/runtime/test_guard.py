"""The live guard on synthetic vote streams (pure: no model, no Ray) and its log events."""

from __future__ import annotations

import json
import random

import maker.voting as voting
import pytest

from maker.config import VotingConfig
from maker.errors import UsageError
from maker.log.by_step import iter_chunks
from maker.log.steplog import StepLogWriter, open_log
from maker.runtime.guard import Guard, GuardConfig, KSchedule, implied_p, k_schedule, log_events


def segment(first: int, steps: list[list[bool]]) -> tuple[dict, dict]:
    """Segment columns for steps whose counted votes are right (True) or wrong (False),
    in sample order; the decision is 'R' (the first answer to lead)."""
    samples: dict[str, list] = {c: [] for c in ("step", "answer", "counted", "wasted")}
    decisions: dict[str, list] = {"step": [], "answer": []}
    for offset, votes in enumerate(steps):
        index = first + offset
        for ok in votes:
            samples["step"].append(index)
            samples["answer"].append("R" if ok else "W")
            samples["counted"].append(True)
            samples["wasted"].append(False)
        samples["step"].append(index)  # a red-flagged sample: never a vote
        samples["answer"].append(None)
        samples["counted"].append(False)
        samples["wasted"].append(False)
        decisions["step"].append(index)
        decisions["answer"].append("R")
    return samples, decisions


def votes_for(rng: random.Random, q: float, k: int) -> list[bool]:
    """Votes until one side leads by k, each right with probability q (binary, 'R' wins)."""
    out, lead = [], 0
    while abs(lead) < k:
        ok = rng.random() < q
        out.append(ok)
        lead += 1 if ok else -1
    return out if lead > 0 else [not v for v in out]  # keep 'R' the decision


def feed(guard: Guard, steps: list[list[bool]], start: int = 0, size: int = 100) -> None:
    for at in range(0, len(steps), size):
        guard.observe(*segment(start + at, steps[at : at + size]))


def test_implied_p_is_where_run_success_meets_the_target() -> None:
    for k, steps, target in [(3, 2**20 - 1, 0.95), (5, 1000, 0.99), (1, 10, 0.5)]:
        p = implied_p(k, steps, target)
        assert voting.run_success(p, k, steps) == pytest.approx(target, rel=1e-9)
        assert voting.k_min(p + 1e-9, steps, target) <= k


def test_independent_errors_at_the_planned_p_raise_nothing() -> None:
    rng = random.Random(1)
    guard = Guard(GuardConfig(adaptive=True, p_assumed=0.9), k=5, first_step=0, last_step=9999, stream=None)
    feed(guard, [votes_for(rng, 0.95, 5) for _ in range(3000)])
    assert guard.k == 5 and not guard.events
    s = guard.to_dict()
    assert s["p_low"] < 0.95 < s["p_high"] and 0.2 < s["collision_ratio"] < 2.0
    assert 0.99 < s["success"] <= 1.0 and s["remaining_steps"] == 10000 - 3000


def test_a_pessimistic_p_below_the_plan_warns_and_raises_k(capsys) -> None:
    import sys

    rng = random.Random(2)
    guard = Guard(GuardConfig(adaptive=True, p_assumed=0.99, k_max=20), k=3, first_step=0, last_step=99_999, stream=sys.stderr)
    feed(guard, [votes_for(rng, 1.0, 3) for _ in range(10)])  # 30 perfect votes: too little to judge
    assert not guard.events
    feed(guard, [votes_for(rng, 0.9, 3) for _ in range(400)], start=10)
    kinds = [e["event"] for e in guard.events]
    assert kinds[:2] == ["alarm", "k_raise"] and guard.events[0]["alarm"] == "p_low"
    low, at = guard.events[0]["p_low"], guard.events[0]["step"]
    assert guard.events[1]["to"] == voting.k_min(low, 99_999 - at, 0.95) > 3
    assert "guard:" in capsys.readouterr().err
    before = guard.k
    assert guard.voting_for(VotingConfig(k=3), 500).k == before
    assert guard.events[-1] == {"event": "k_change", "from_step": 500, "k": before, "previous_k": 3}
    n = len(guard.events)
    assert guard.voting_for(VotingConfig(k=3), 600).k == before and len(guard.events) == n  # no change, no event


def test_collisions_beyond_independence_raise_k_within_k_max_and_never_lower_it() -> None:
    rng = random.Random(3)
    steps = []
    for i in range(4000):  # 5% hard steps at accuracy 0.75, all errors alike; the rest perfect
        steps.append(votes_for(rng, 0.75 if i % 20 == 0 else 1.0, 3))
    without = Guard(GuardConfig(p_assumed=0.9), k=3, first_step=0, last_step=49_999, stream=None)
    feed(without, steps)
    assert without.k == 3
    alarms = [e for e in without.events if e["event"] == "alarm"]
    assert alarms and alarms[0]["alarm"] == "collisions" and alarms[0]["collision_ratio"] > 3
    assert any(e.get("note") == "advice" for e in without.events)
    guard = Guard(GuardConfig(adaptive=True, p_assumed=0.9, k_max=6), k=3, first_step=0, last_step=49_999, stream=None)
    ks = []
    for at in range(0, len(steps), 100):
        guard.observe(*segment(at, steps[at : at + 100]))
        ks.append(guard.k)
    assert ks == sorted(ks) and ks[-1] == 6  # only up, and capped
    raise_events = [e for e in guard.events if e["event"] == "k_raise"]
    assert raise_events[0]["reason"] == "collisions" and raise_events[-1]["to"] == 6
    assert any(e.get("note") == "k_max" for e in guard.events)


def test_hard_steps_near_a_coin_flip_are_called_out_not_paid_for() -> None:
    """Errors are counted against the decisions, so the guard cannot tell a hard step's
    accuracy 0.4 from 0.6; when colliding errors are as common as wrong first votes it
    says no margin may help, and does not raise k."""
    steps = [[False, False, True, True, True, True, True] if i % 10 == 0 else [True, True, True] for i in range(2000)]
    guard = Guard(GuardConfig(adaptive=True, p_assumed=0.8, k_max=30), k=3, first_step=0, last_step=9_999, stream=None)
    feed(guard, steps)
    assert any(e.get("note") == "coin_flip" for e in guard.events)
    assert any(e.get("alarm") == "collisions" for e in guard.events) and guard.k == 3


@pytest.mark.parametrize(
    "config,k,message",
    [
        (GuardConfig(k_max=2), 3, "--k-max"),
        (GuardConfig(adaptive=True, k_max=True), 1, "--k-max"),
    ],
)
def test_bad_k_max(config: GuardConfig, k: int, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        config.checked_k_max(k)


def test_guard_config_rejects_nonsense() -> None:
    for kwargs in ({"target": 1.0}, {"p_assumed": 0.4}, {"collision_factor": 0.5}, {"min_collisions": 0}):
        with pytest.raises(UsageError):
            GuardConfig(**kwargs)
    assert GuardConfig(adaptive=True).checked_k_max(4) == 12 and GuardConfig().checked_k_max(4) == 4


def test_events_go_to_the_log_and_rebuild_the_k_schedule(tmp_path) -> None:
    guard = Guard(GuardConfig(adaptive=True, k_max=9), k=3, first_step=0, last_step=999, stream=None)
    guard.k = 5  # as if raised
    guard.voting_for(VotingConfig(k=3), 200)
    guard.k = 7
    guard.voting_for(VotingConfig(k=3), 700)
    writer = StepLogWriter(tmp_path / "log", {"task": "hanoi", "voting": {"k": 3}})
    samples, decisions = segment(0, [[True, True, True]])
    writer.append(samples, decisions, guard.drain())
    assert guard.drain() == {"step": [], "detail": []}
    info = open_log(tmp_path / "log")
    events = log_events(info)
    assert [s for s, _ in events] == [200, 700] and json.loads(json.dumps(events[1][1]))["k"] == 7
    schedule = k_schedule(info)
    assert [schedule.at(i) for i in (0, 199, 200, 699, 700, 10**6)] == [3, 3, 5, 5, 7, 7]
    assert [len(c.decisions) for c in iter_chunks(info)] == [1]  # event rows are neither samples nor decisions
    resumed = Guard(GuardConfig(), k=3, first_step=0, last_step=999, stream=None)
    resumed.restore([d for _, d in events])
    assert resumed.k == 7 and resumed.voting_for(VotingConfig(k=3), 800).k == 7 and not resumed.drain()["step"]


def test_k_schedule_without_events_is_the_run_k() -> None:
    assert KSchedule(4).at(0) == KSchedule(4).at(10**9) == 4


def test_a_window_whose_every_first_pair_is_wrong_is_no_crash() -> None:
    # A one-step run (what `maker.vote` is, or `maker run vote`) whose first two votes both lose:
    # the first votes' error rate is 1, so independence predicts (1 - 0)**2 = 1 collision per pair
    # and the one seen is no evidence of correlation.  This used to raise "p must be in (0, 1]".
    guard = Guard(GuardConfig(), k=3, first_step=0, last_step=0, stream=None)
    feed(guard, [[False, False, True, True, True, True, True]])
    s = guard.to_dict()
    assert (s["votes"], s["errors"], s["collisions"], s["steps_with_two"]) == (7, 2, 1, 1)
    assert s["collision_ratio"] == 1.0 and s["collision_ratio_since_k_change"] == 1.0
    assert not guard.events
