"""The voting engine (`maker.engine.step`): one step voted the same way by every scheduler.

Fakes only at the model boundary: the simulator `sim:P` and `ScriptedModel(handler)`.
"""

from __future__ import annotations

import asyncio
import itertools
from types import SimpleNamespace

import pytest
from maker.cluster import ModelSpec, make_client
from maker.cluster.simulated.scripted import ScriptedModel
from maker.tasks import get_task

from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.engine.rows import DECISION_COLUMNS, SAMPLE_COLUMNS
from maker.engine.step import Measure, StepVote, request_cap, vote_step
from maker.errors import UsageError
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob
from maker.runtime.dag import NodeJob, vote_nodes
from maker.runtime.guard import GuardConfig
from maker.runtime.preflight import check_run


def _clients(task, *models):
    return {m: make_client(ModelSpec(m), task) for m in models}


def test_vote_step_decides_a_step_and_returns_its_rows() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    vote = asyncio.run(
        vote_step(task, _clients(task, "sim:1.0"), step, VotingConfig(k=3), RedFlagPolicy(), ("sim:1.0",), 0)
    )
    winner, counts, rows, decision = vote.winner, vote.ballot.counts, vote.sample_rows(), vote.decision_row()
    assert winner == task.truth(0) and counts == {winner: 3}
    assert len(rows) == 3 and all(len(r) == len(SAMPLE_COLUMNS) for r in rows)
    assert [r[3] for r in rows] == [0.0, 0.1, 0.1]  # temperature column: first sample at 0
    assert len(decision) == len(DECISION_COLUMNS) and decision[:5] == (0, winner, 3, 3, 1) and decision[5] is True


def test_vote_step_gives_up_at_the_cap_with_no_decision() -> None:
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    replies = itertools.cycle([task.reference_reply(step), task.wrong_replies(step)[0]])  # a tie forever
    clients = {"m": ScriptedModel(lambda text, request: next(replies), "m")}
    voting = VotingConfig(k=2, max_samples_per_step=6)
    vote = asyncio.run(vote_step(task, clients, step, voting, RedFlagPolicy(), ("m",), 0))
    assert vote.gave_up and vote.winner is None and len(vote.sample_rows()) == 6
    assert sorted(vote.ballot.counts.values()) == [3, 3]


def test_the_measuring_rule_draws_votes_without_deciding() -> None:
    """`Measure` (the estimator's stopping rule): each step draws until `votes` valid votes,
    red-flagged samples redrawn, k never deciding -- through the same `vote_step`."""
    task = get_task("hanoi", disks=5)
    step = task.first_step()
    replies = itertools.cycle([task.reference_reply(step), "no move here"])  # every other reply malformed
    clients = {"m": ScriptedModel(lambda text, request: next(replies), "m")}
    voting = VotingConfig(k=1)
    vote = asyncio.run(vote_step(task, clients, step, voting, RedFlagPolicy(), ("m",), 0, rule=Measure(3, voting)))
    assert vote.winner is None and not vote.gave_up and vote.ballot.total == 3
    assert [r[6] for r in vote.sample_rows()] == [None, "malformed", None, "malformed", None]  # red_flag column
    assert [r[3] for r in vote.sample_rows()] == [0.0, 0.1, 0.1, 0.1, 0.1]  # drawn as a run draws


def test_sample_i_is_model_i_mod_m_variant_temperature_seed_and_cap() -> None:
    task = get_task("hanoi", disks=4)
    voting = VotingConfig(k=3, prompt_variants=2, max_output_tokens=300)
    vote = StepVote(task, task.first_step(), voting, RedFlagPolicy(), ("a", "b", "c"), 5)
    assert list(vote.next_round()) == [0, 1, 2] and vote.rounds == 1
    requests = [vote.request(i) for i in range(6)]
    assert [vote.model_of(i) for i in range(6)] == ["a", "b", "c", "a", "b", "c"]
    assert [r.variant for r in requests] == [0, 1, 0, 1, 0, 1]
    assert [r.temperature for r in requests] == [0.0] + [0.1] * 5
    assert {r.max_tokens for r in requests} == {request_cap(voting)} == {301}
    assert len({r.seed for r in requests}) == 6
    assert StepVote(task, task.first_step(), voting, RedFlagPolicy(), ("a",), 5).request(3).seed == requests[3].seed


def test_the_cap_has_one_owner_and_a_policy_that_disagrees_is_refused() -> None:
    task = get_task("hanoi", disks=4)
    with pytest.raises(UsageError, match="set the cap once"):
        check_run(task, RedFlagPolicy(max_output_tokens=1000), VotingConfig(max_output_tokens=750), ["m"], GuardConfig())
    # the judge takes the run's cap: a 400-token reply is overlong at 300, not at the policy's default
    long_reply = ScriptedModel(lambda text, request: task.reference_reply(task.first_step()))
    voting = VotingConfig(k=1, max_output_tokens=300)
    vote = StepVote(task, task.first_step(), voting, RedFlagPolicy(), ("m",), 0)
    (sample,) = asyncio.run(long_reply.complete([vote.request(0)]))
    sample.tokens_out = 400
    assert vote.count(0, sample).red_flag == "overlong"


def _always_right(task):
    def handler(text, request):
        return task.reference_reply(request.step)

    return ScriptedModel(handler, "m")


def test_dag_runs_judge_with_temperature() -> None:
    """A second temperature-0 vote of one model on one prompt is not independent: the DAG
    worker must see each sample's temperature to discard it, as the chain worker does."""
    task = get_task("multiply", digits=2)
    steps = tuple(task.step_input(i, {}) for i in range(4))
    worker = SimpleNamespace(task=task, clients={"m": _always_right(task)})
    voting = VotingConfig(k=2, first_temperature=0.0, temperature=0.0)
    result = asyncio.run(vote_nodes(worker, NodeJob(steps, voting, RedFlagPolicy(), ("m",), 0)))
    flags = [f for f, i in zip(result.samples["red_flag"], result.samples["sample"]) if i == 1]
    assert flags and set(flags) == {"non_independent"}


def test_chain_and_dag_workers_log_the_same_rows_for_the_same_step() -> None:
    task = get_task("add", digits=6)  # a path: runs on both schedulers
    voting = VotingConfig(k=3, prompt_variants=2)
    clients = _clients(task, "sim:0.7", "sim:0.8")
    worker = SimpleNamespace(task=task, clients=clients)
    models = ("sim:0.7", "sim:0.8")
    chain = asyncio.run(run_segment(worker, SegmentJob(task.first_step(), 1, 60.0, voting, RedFlagPolicy(), models, 3, 5)))
    dag = asyncio.run(vote_nodes(worker, NodeJob((task.first_step(),), voting, RedFlagPolicy(), models, 3)))
    assert chain.samples == dag.samples
    assert [chain.decisions[c] for c in DECISION_COLUMNS] == [dag.decisions[c] for c in DECISION_COLUMNS]
