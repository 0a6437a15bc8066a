"""When a step will not decide (`VotingConfig.on_undecided`): escalate to a stronger tier,
take the plurality leader, or fail -- end to end through `maker.run`, the step log and
`maker replay --verify`.

The cheap simulated model is right only half the time on its hard steps, and its sample
cap equals k, so a hard step decides only on k identical samples in a row: it mostly gives
up (and then escalates), and with this fixed seed it never decides a hard step wrongly
(the simulator is deterministic: same seed, same draws).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from maker.cluster import SimulatedModel, parse_sim_model
from maker.tasks import get_task

from maker.audit.verify import verify_log
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.engine.step import recount, vote_step
from maker.errors import UsageError
from maker.log.steplog import open_log
from maker.report.stats import collect
from maker.report.summary import render_markdown
from maker.runtime.driver import ClusterConfig, run
from maker.runtime.guard import log_events

CHEAP = "sim:0.99,hard=0.15,hard_p=0.5"
STRONG = "sim:0.999"
CASCADE = VotingConfig(k=4, max_samples_per_step=4, on_undecided="escalate", escalate_to=((STRONG,),))


def _events(log, kind):
    return [(s, d) for s, d in log_events(open_log(log)) if d.get("event") == kind]


@pytest.mark.ray
@pytest.mark.parametrize("speculate", [0, 2])
def test_cascade_run_escalates_hard_steps_and_verifies(tmp_path, speculate):
    log = tmp_path / "cascade.parquet"
    result = run(get_task("hanoi", disks=5), [CHEAP], CASCADE, log=log, seed=0,
                 cluster=ClusterConfig(speculate=speculate))
    assert result.solved and result.errors == 0 and result.simulated
    escalations = _events(log, "escalation")
    assert result.extra["escalations"] == len(escalations) >= 2
    assert result.extra["plurality_decisions"] == 0
    table = pq.read_table(log)
    samples = table.filter(pc.equal(table["kind"], "sample")).to_pylist()
    for step, detail in escalations:
        assert detail["models"] == [STRONG] and detail["from_sample"] == 4
        drawn = [r for r in samples if r["step"] == step and not r["wasted"]]
        # fresh ballot on the stronger tier; indices continue, so no draw seed repeats
        assert [r["sample"] for r in drawn] == list(range(len(drawn)))
        assert {r["model"] for r in drawn if r["sample"] >= 4} == {STRONG}
        assert {r["model"] for r in drawn if r["sample"] < 4} == {CHEAP}
    report = verify_log(log)
    assert report.valid and report.solved and report.steps == 31
    shown = render_markdown(collect(open_log(log)), set())  # `maker report`
    assert f"**Escalations**: {len(escalations)} step re-vote(s)" in shown and f"to tier 1 ({STRONG})" in shown


@pytest.mark.ray
def test_verify_fails_when_an_escalated_decision_is_tampered(tmp_path):
    log = tmp_path / "cascade.parquet"
    run(get_task("hanoi", disks=5), [CHEAP], CASCADE, log=log, seed=0)
    step, detail = _events(log, "escalation")[0]
    cheap_leader = detail["leader"]  # a legal move the cheap tier led with, never decided
    for part in sorted(log.glob("part-*.parquet")):
        table = pq.read_table(part)
        rows = table.to_pylist()
        hit = [r for r in rows if r["kind"] == "decision" and r["step"] == step]
        if not hit:
            continue
        truth = hit[0]["answer"]
        assert cheap_leader != truth
        hit[0]["answer"] = cheap_leader
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)
    report = verify_log(log)
    assert not report.valid and report.first_bad_step == step
    assert "votes do not decide" in report.reason


def test_escalation_tier_draws_from_the_stronger_client_in_process():
    task = get_task("hanoi", disks=5)
    clients = {m: SimulatedModel(task, parse_sim_model(m), name=m) for m in (CHEAP, STRONG)}
    step, escalated = task.first_step(), 0
    for _ in range(task.total_steps):
        vote = asyncio.run(vote_step(task, clients, step, CASCADE, RedFlagPolicy(), (CHEAP,), 0))
        assert vote.winner is not None
        escalated += bool(vote.events)
        assert vote.decision_row()[5] is True
        cols = {c: [] for c in ("step", "sample", "answer", "counted", "wasted")}
        for i, _, _, _, verdict, counted in vote.rows:
            for c, v in zip(cols, (step.index, i, verdict.key, counted, False)):
                cols[c].append(v)
        decisions = {"step": [step.index], "answer": [vote.winner]}
        assert recount(cols, decisions, CASCADE.k, vote.event_columns()) is None
        if vote.events:  # without the tier boundary the step's votes do not decide the winner
            assert recount(cols, decisions, CASCADE.k) is not None
        step = task.step_after(step.index, vote.winner)
    assert escalated >= 2 and task.is_solved(step)


def test_last_tier_giving_up_fails_the_step():
    task = get_task("hanoi", disks=5)
    clients = {CHEAP: SimulatedModel(task, parse_sim_model(CHEAP), name=CHEAP)}
    voting = VotingConfig(k=4, max_samples_per_step=4, on_undecided="escalate", escalate_to=((CHEAP,),))
    step, failed = task.first_step(), []
    for _ in range(task.total_steps):
        vote = asyncio.run(vote_step(task, clients, step, voting, RedFlagPolicy(), (CHEAP,), 0))
        if vote.gave_up:
            failed.append(vote)
        step = task.step_after(step.index, task.reference_reply(step) and vote.judge.text(task.reference_reply(step)).key)
    assert failed
    for vote in failed:  # one escalation, then the last tier's cap: undecided, 2 x 4 samples
        assert vote.winner is None and vote.drawn == 8 and [e["event"] for e in vote.events] == ["escalation"]


@pytest.mark.ray
def test_plurality_decides_with_a_warning_event(tmp_path):
    log = tmp_path / "plurality.parquet"
    voting = VotingConfig(k=4, max_samples_per_step=5, on_undecided="plurality")
    result = run(get_task("hanoi", disks=5), ["sim:0.99,hard=0.15,hard_p=0.75"], voting, log=log, seed=4)
    events = _events(log, "plurality")
    assert result.extra["plurality_decisions"] == len(events) >= 1
    assert result.solved and result.errors == 0
    for _, detail in events:
        assert detail["lead"] < voting.k and "plurality" in detail["message"]
    assert verify_log(log).valid  # accepted as the logged leader, not as a margin decision


def test_voting_config_refuses_inconsistent_policies():
    with pytest.raises(UsageError, match="--escalate-to needs --on-undecided escalate"):
        VotingConfig(escalate_to=((STRONG,),))
    with pytest.raises(UsageError, match="needs --escalate-to"):
        VotingConfig(on_undecided="escalate")
    with pytest.raises(UsageError, match="--on-undecided"):
        VotingConfig(on_undecided="guess")
    assert VotingConfig(on_undecided="escalate", escalate_to=[["a", "b"], ["c"]]).escalate_to == (("a", "b"), ("c",))


@pytest.mark.subprocess
def test_cli_refuses_escalate_to_without_escalate(tmp_path):
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("maker")), "run", "hanoi", "--disks", "3", "--model", "sim:1.0",
         "--escalate-to", STRONG, "--log", str(tmp_path / "x.parquet")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "--on-undecided escalate" in proc.stderr
    assert not (tmp_path / "x.parquet").exists()


def test_cascade_cost_adds_the_escalated_steps_at_the_stronger_price():
    from maker import voting
    from maker.budget.margins import SampleCost, cascade_cost, plan

    base = plan(0.99, 10_000, 0.95, cost=SampleCost(per_sample=0.001))
    strong = SampleCost(tokens_in=1000, price_in=2.0)  # $0.002 a sample
    extra = 0.05 * 10_000 * voting.expected_samples(0.999, base.k, 1.0) * 0.002
    assert cascade_cost(base, 0.05, strong, 0.999) == pytest.approx(base.expected_cost + extra)
    assert cascade_cost(base, 0.0, strong) == pytest.approx(base.expected_cost)
    assert cascade_cost(plan(0.4, 100, 0.95), 0.1, strong) is None  # no k for p <= 1/2
    with pytest.raises(UsageError, match="--escalate-fraction"):
        cascade_cost(base, 1.5, strong)


@pytest.mark.ray
def test_a_plan_run_escalates_on_the_dag_runner_and_verifies(tmp_path):
    log = tmp_path / "plan.parquet"
    voting = VotingConfig(k=3, max_samples_per_step=3, on_undecided="escalate", escalate_to=((STRONG,),))
    task = get_task("multiply", digits=3)
    result = run(task, ["sim:0.99,hard=0.3,hard_p=0.5"], voting, log=log, seed=1)
    assert result.solved and result.errors == 0
    assert result.extra["escalations"] == len(_events(log, "escalation")) >= 1
    assert result.extra["answer_correct"] is True
    assert verify_log(log).valid


def test_a_voted_call_escalates_too(tmp_path):
    import maker

    result = maker.vote("What is 6 * 7?", ["sim:0.5"], key="integer", expected="42", seed=0, voting=CASCADE,
                        log=tmp_path / "vote.parquet")
    assert result.key == "42" and result.correct and result.samples == 8  # 4 cheap samples, then 4 strong in a row
    assert (result.escalations, result.plurality) == (1, False)  # the result says so, as --json's extra does
    assert result.votes == {"42": 4} and result.models == ["sim:0.5"]  # the deciding tier's ballot
    assert result.decided_by == [STRONG]
    assert [d["models"] for _, d in _events(tmp_path / "vote.parquet", "escalation")] == [[STRONG]]
    assert verify_log(tmp_path / "vote.parquet").valid


class _Recording:
    """The simulator behind a recorder of the temperature each request was sent at (the model boundary)."""

    def __init__(self, inner):
        self.inner, self.name, self.sent = inner, inner.name, []

    async def complete(self, requests):
        self.sent += [(r.seed, r.temperature) for r in requests]
        return await self.inner.complete(requests)


def test_an_escalated_tier_draws_its_first_sample_at_the_first_temperature():
    """A tier is a fresh ballot on a new model: like a fresh step, its first vote is that
    model's best guess (design notes: the paper's first vote at temperature 0)."""
    task = get_task("hanoi", disks=5)
    voting = VotingConfig(k=4, max_samples_per_step=4, on_undecided="escalate", escalate_to=((STRONG,),),
                          first_temperature=0.0, temperature=0.7)
    clients = {m: _Recording(SimulatedModel(task, parse_sim_model(m), name=m)) for m in (CHEAP, STRONG)}
    step, escalated = task.first_step(), 0
    for _ in range(task.total_steps):
        before = {m: len(c.sent) for m, c in clients.items()}
        vote = asyncio.run(vote_step(task, clients, step, voting, RedFlagPolicy(), (CHEAP,), 0))
        logged = {i: t for i, _, t, _, _, _ in vote.rows}
        assert logged[0] == 0.0 and all(t == 0.7 for i, t in logged.items() if 0 < i < 4)
        if vote.events:
            escalated += 1
            start = vote.events[0]["from_sample"]
            assert logged[start] == 0.0 and all(t == 0.7 for i, t in logged.items() if i > start)
            sent = clients[STRONG].sent[before[STRONG]:]
            assert sorted(t for _, t in sent) == [0.0] + [0.7] * (len(sent) - 1)  # what the model was asked
        else:
            assert len(clients[STRONG].sent) == before[STRONG]
        step = task.step_after(step.index, vote.winner)
    assert escalated >= 2 and task.is_solved(step)


def _solve(capsys, *extra):
    from maker.cli.main import main

    code = main(["solve", "Compute (12 + 7) * (3 + 4) - 5", "--model", "script:arith,p=0.6", "--k", "3",
                 "--max-samples-per-step", "6", "--dry-run", "--json", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_solve_escalates_a_plan_request_that_will_not_decide(capsys):
    """`maker solve` takes `--on-undecided`/`--escalate-to` as `maker run` does: the noisy
    planner cannot decide the first decomposition within 6 samples; the tier can."""
    code, _, err = _solve(capsys)
    assert code != 0 and "no answer led by k=3 after 6 samples" in err and "nothing was run" in err
    code, out, err = _solve(capsys, "--on-undecided", "escalate", "--escalate-to", "script:arith")
    assert code == 0, err
    first = json.loads(out)["plan_votes"][0]
    assert first["samples"] > 6  # the cheap tier's cap, then the tier's own fresh ballot


def test_solve_refuses_escalate_to_without_escalate(capsys):
    code, _, err = _solve(capsys, "--escalate-to", "script:arith")
    assert code == 2 and err.strip().count("\n") == 0 and "--on-undecided escalate" in err


PLAN = ["margin", "--p", "0.99", "--steps", "1000", "--tokens-in", "1000", "--tokens-out", "100", "--price-in", "0.1",
        "--price-out", "0.4", "--escalate-fraction", "0.1"]


def test_maker_plan_prices_a_cascade(maker_cli):
    from maker.budget.margins import SampleCost, cascade_cost, plan

    done = maker_cli(*PLAN, "--escalate-price-in", "2", "--escalate-price-out", "8", "--escalate-p", "0.999")
    assert done.returncode == 0, done.stderr
    base = plan(0.99, 1000, 0.95, cost=SampleCost(1000, 100, 0.1, 0.4))
    want = cascade_cost(base, 0.1, SampleCost(1000, 100, 2.0, 8.0), 0.999)
    assert want > base.expected_cost + 0.1 * 1000 * 3 * 0.0028  # at least k samples per escalated step
    assert f"cascade, p 0.99: 10.00% of steps escalated -> expected cost ${want:,.2f}" in done.stdout
    assert "$1.27" in done.stdout  # the README's figure


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "give the stronger model's price"),  # it would be priced at $0 and the cascade look free
        (["--escalate-price-in", "2", "--escalate-p", "0.4"], "--escalate-p must be above 1/2"),
        (["--escalate-price-in", "2", "--escalate-fraction", "1.5"], "--escalate-fraction must be in"),
    ],
)
def test_maker_plan_refuses_a_cascade_it_cannot_price(maker_cli, extra, message):
    done = maker_cli(*PLAN, *extra)
    assert done.returncode == 2 and message in done.stderr and done.stderr.count("\n") == 1, done.stderr


def _cheap_samples(voting: VotingConfig) -> tuple[int, int, list[dict], int]:
    """Vote every step of hanoi 5 in process, each on its true premise: (samples on the cheap
    tier, on the strong one, escalation events, wrong decisions)."""
    task = get_task("hanoi", disks=5)
    clients = {m: SimulatedModel(task, parse_sim_model(m), name=m) for m in (CHEAP, STRONG)}
    step, cheap, strong, events, wrong = task.first_step(), 0, 0, [], 0
    for _ in range(task.total_steps):
        vote = asyncio.run(vote_step(task, clients, step, voting, RedFlagPolicy(), (CHEAP,), 0))
        assert vote.winner is not None
        wrong += vote.winner != task.truth(step.index)
        bound = min((e["from_sample"] for e in vote.events), default=vote.drawn)
        cheap, strong, events = cheap + bound, strong + vote.drawn - bound, events + vote.events
        cols = {c: [] for c in ("step", "sample", "answer", "counted", "wasted")}
        for i, _, _, _, verdict, counted in vote.rows:
            for c, v in zip(cols, (step.index, i, verdict.key, counted, False)):
                cols[c].append(v)
        tier0 = [verdict.key for i, _, _, _, verdict, counted in vote.rows if counted and i < bound]
        if vote.events and vote.events[0]["reason"] == "split":  # the first k votes were not unanimous
            assert bound == voting.k and len(set(tier0)) >= 2, (tier0, vote.events)
        assert recount(cols, {"step": [step.index], "answer": [vote.winner]}, voting.k, vote.event_columns()) is None
        step = task.step_after(step.index, task.truth(step.index))
    return cheap, strong, events, wrong


def test_a_step_whose_first_votes_split_escalates_at_once():
    # The cheap model is a coin flip on its hard steps: without the rule such a step walks on until one
    # side leads by k -- the wrong side about half the time -- or gives up at the sample cap; with it,
    # the step goes to the stronger tier as soon as its first k votes disagree.
    patient = VotingConfig(k=4, max_samples_per_step=40, on_undecided="escalate", escalate_to=((STRONG,),))
    eager = replace(patient, escalate_on_split=True)
    cheap_p, strong_p, events_p, wrong_p = _cheap_samples(patient)
    cheap_e, strong_e, events_e, wrong_e = _cheap_samples(eager)
    assert wrong_e == 0 < wrong_p  # this seed: a coin flip decided wrongly without the rule
    assert {e["reason"] for e in events_e} == {"split"} and len(events_e) >= 2 and strong_e > 0
    assert all(e["reason"] == "undecided" for e in events_p)
    assert cheap_e < cheap_p  # the hard steps no longer spend cheap samples on a coin flip
    with pytest.raises(UsageError, match="--escalate-on-split needs --on-undecided escalate"):
        VotingConfig(escalate_on_split=True)


def test_a_voted_call_escalates_on_split_and_the_log_says_why(tmp_path):
    import maker

    voting = VotingConfig(k=3, on_undecided="escalate", escalate_to=(("sim:1.0",),), escalate_on_split=True)
    r = maker.vote("6*7?", ["sim:0.5"], key="integer", expected="42", voting=voting, seed=5, log=tmp_path / "v")
    assert r.key == "42" and r.samples == 6  # 3 cheap votes that split, then 3 unanimous strong ones
    (step, detail), = _events(tmp_path / "v", "escalation")
    assert (detail["reason"], detail["from_sample"], detail["votes"]) == ("split", 3, 3) and detail["lead"] < 3
    assert verify_log(tmp_path / "v").valid and r.escalations == 1 and r.decided_by == ["sim:1.0"]
    plain = maker.vote("6*7?", ["sim:0.5"], key="integer", expected="42", k=3, seed=5)
    assert (plain.escalations, plain.plurality, plain.decided_by) == (0, False, ["sim:0.5"])
    shown = render_markdown(collect(open_log(tmp_path / "v")), set())
    assert "(1 at once because the tier's first k votes split)" in shown


def test_a_voted_call_taken_by_plurality_says_so():
    import maker

    voting = VotingConfig(k=4, max_samples_per_step=5, on_undecided="plurality")
    r = maker.vote("6*7?", ["sim:0.6"], key="integer", expected="42", voting=voting, seed=5)
    assert r.plurality and r.samples == 5 and r.escalations == 0
    assert r.votes == {"42": 2, "43": 3} and r.key == "43" and r.correct is False  # no margin: here, wrong
