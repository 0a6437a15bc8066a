"""A draft (`--draft MODEL`) changes when steps are voted, never what is decided.

The voters and the drafts are the simulator, a plain function or a `FunctionClient`
(fakes at the model boundary only).  Low voter accuracy with k = 2 flips leaders, and a
poor draft is wrong often, so slots built on losing premises must be thrown away; the
decisions and the kept samples must still equal the in-order run's.
"""

from __future__ import annotations

import asyncio
import types

import pytest
from maker.cluster import FunctionClient, ModelSpec, SimulatedModel, parse_sim_model
from maker.cluster.protocol import Sample
from maker.tasks import get_task

from maker import ClusterConfig, UsageError, VotingConfig, run, verify_log
from maker.engine.red_flags import RedFlagPolicy
from maker.log.steplog import decisions, open_log, read_table
from maker.runtime.chain.draft import DepthControl, DraftTally, in_order_seconds, parse_draft
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.runtime.chain.speculation import CANCELLED, DRAFT_LATE


def segment(task, voters, k, draft, *, depth=64, seed=11) -> SegmentResult:
    names = [*voters, *([draft] if isinstance(draft, str) and draft.startswith("sim:") else [])]
    clients = {m: SimulatedModel(task, parse_sim_model(m), name=m) for m in names}
    worker = types.SimpleNamespace(task=task, clients=clients)
    job = SegmentJob(task.first_step(), 10**9, 1e9, VotingConfig(k=k), RedFlagPolicy(), tuple(voters), seed,
                     task.total_steps - 1, speculate=0 if draft is None else depth, draft=parse_draft(draft, None))
    return asyncio.run(run_segment(worker, job))


def kept(result: SegmentResult) -> list[tuple]:
    s = result.samples
    rows = zip(s["step"], s["sample"], s["answer"], s["red_flag"], s["counted"], s["wasted"])
    return sorted((r[:5] for r in rows if not r[5]), key=repr)


def off_by_one_move(task, step):
    """A heuristic draft that is right on even steps only: the reference, or a wrong reply."""
    wrong = task.wrong_replies(step)
    return task.reference_reply(step) if step.index % 2 == 0 or not wrong else wrong[0]


VOTERS = [
    ("sim:0.75,latency=0.001,jitter=0.003",),  # leaders flip often
    ("sim:0.998,latency=0.002,jitter=0.002",),
]
DRAFTS = ["sim:0.95,latency=0.0002", "sim:0.6,latency=0.0002,redflag=0.1", "reference", off_by_one_move]


@pytest.mark.parametrize("voters", VOTERS)
@pytest.mark.parametrize("draft", DRAFTS, ids=["sim0.95", "sim0.6", "reference", "function"])
def test_a_draft_decides_exactly_what_the_in_order_run_decides(voters, draft) -> None:
    task = get_task("hanoi", disks=6)
    k = 2 if "0.75" in voters[0] else 3
    plain = segment(task, voters, k, None)
    drafted = segment(task, voters, k, draft)
    assert drafted.decisions == plain.decisions and drafted.end == plain.end
    assert kept(drafted) == kept(plain)  # the same draws, counted the same way
    assert plain.drafts is None
    rows = drafted.drafts
    assert rows is not None and rows["step"], "the draft proposed nothing"
    assert not any(rows["counted"]) and set(rows["sample"]) == {-1}  # a proposal is never a vote
    tally = DraftTally()
    tally.add_rows(rows, dict(zip(drafted.decisions["step"], drafted.decisions["answer"])))
    assert tally.proposed > 0
    if draft == "reference":  # the ground truth: wrong only where the votes decided wrong
        wrong = plain.decisions["correct"].count(False)
        assert tally.proposed - wrong <= tally.accepted <= tally.proposed
    elif draft is off_by_one_move:
        assert 0 < tally.accepted < tally.proposed


def test_a_wrong_draft_wastes_the_slots_built_on_it_and_the_depth_shrinks() -> None:
    task = get_task("hanoi", disks=6)
    voters = ("sim:0.998,latency=0.002",)
    good = segment(task, voters, 3, "sim:1.0,latency=0.0002")
    bad = segment(task, voters, 3, "sim:0.5,latency=0.0002")
    assert not any(good.samples["wasted"]) and not any(good.drafts["wasted"])
    assert good.draft_depth == 64  # every guess held: the window grew to its limit
    assert any(bad.samples["wasted"]) and any(bad.drafts["wasted"])
    assert bad.draft_depth < 16
    assert not any(c for c, w in zip(bad.samples["counted"], bad.samples["wasted"]) if w)


def test_a_draft_model_request_in_flight_is_cancelled_and_logged_when_its_premise_loses() -> None:
    """A draft model slower than the voters: its request for the tail is in flight when an
    earlier leader flips (cancelled, wasted) or when its own step is decided (cancelled, kept)."""
    async def slow(prompt, temperature, seed):
        await asyncio.sleep(30)
        return "never read"

    task = get_task("hanoi", disks=6)
    voters = ("sim:0.6,latency=0.001,jitter=0.004",)
    clients = {voters[0]: SimulatedModel(task, parse_sim_model(voters[0]), name=voters[0]),
               "slow": FunctionClient(slow, name="slow")}
    worker = types.SimpleNamespace(task=task, clients=clients)
    job = SegmentJob(task.first_step(), 10**9, 1e9, VotingConfig(k=2), RedFlagPolicy(), voters, 11,
                     task.total_steps - 1, speculate=8, draft=parse_draft(ModelSpec(clients["slow"]), None))
    result = asyncio.run(asyncio.wait_for(run_segment(worker, job), 20))
    assert result.decisions == segment(task, voters, 2, None).decisions
    rows = list(zip(result.drafts["error"], result.drafts["wasted"]))
    assert CANCELLED in {e for e, w in rows if w}  # in flight on a premise that lost
    assert {e for e, w in rows if not w} == {DRAFT_LATE}  # in flight when its step was decided


def test_depth_control_grows_on_accepted_and_halves_on_rejected_guesses() -> None:
    control = DepthControl(10)
    assert control.depth == 4
    for _ in range(20):
        control.accepted()
    assert control.depth == 10
    control.rejected()
    assert control.depth == 5
    for _ in range(5):
        control.rejected()
    assert control.depth == 1
    assert DepthControl(2).depth == 2


def test_in_order_seconds_is_the_slowest_of_round_one_plus_later_rounds() -> None:
    samples = {"step": [0, 0, 0, 0, 1, 1, 1, 1], "sample": [0, 1, 2, 3, 0, 1, 2, 0],
               "latency_s": [0.5, 0.7, 0.6, 0.4, 0.2, 0.3, 0.1, 9.0], "wasted": [False] * 7 + [True]}
    decisions_ = {"step": [0, 1], "rounds": [2, 1]}
    assert in_order_seconds(samples, decisions_, k=3) == pytest.approx(0.7 + 0.4 + 0.3)


def test_parse_draft_values() -> None:
    assert parse_draft(None, None) is None and parse_draft("none", None) is None and parse_draft(False, None) is None
    assert parse_draft(True, None).kind == "reference"
    assert parse_draft("sim:0.9", None).kind == "model"
    assert parse_draft(off_by_one_move, None).kind == "function"
    spec = ModelSpec("openai/x", api_base="http://127.0.0.1:9/v1")
    assert parse_draft(spec, None).spec is spec
    assert parse_draft("py:tests.maker.runtime.test_draft:off_by_one_move", None).kind == "function"
    with pytest.raises(UsageError, match="takes \\(task, step\\)"):
        parse_draft(lambda task: None, None)
    for bad in ("", " sim:0.9", 3):
        with pytest.raises(UsageError, match="--draft takes"):
            parse_draft(bad, None)


# -- through maker.run (Ray) -------------------------------------------------------------------


def priced_draft(prompt, temperature, seed):
    """A draft model that always names the first move (a rule-breaking reply on every later
    step: no guess there), at a price per call."""
    return Sample("move = [1, 0, 2]\nnext_state = [[5, 4, 3, 2], [], [1]]", "priced", 10, 5, cost_usd=0.001)


@pytest.mark.ray
def test_run_with_drafts_decides_what_the_in_order_run_decides(ray_address, tmp_path) -> None:
    task = get_task("hanoi", disks=5)
    voters = ["sim:0.9,latency=0.002,jitter=0.002"]
    voting = VotingConfig(k=2)
    plain = run(task, voters, voting, log=tmp_path / "plain", seed=3, cluster=ClusterConfig(speculate=0))
    expected = decisions(tmp_path / "plain")
    for name, draft, workers in (("sim", "sim:0.9,latency=0.0005", 1), ("fn", off_by_one_move, 2),
                                 ("priced", ModelSpec(FunctionClient(priced_draft, name="priced")), 1)):
        result = run(task, voters, voting, log=tmp_path / name, seed=3, draft=draft,
                     cluster=ClusterConfig(workers=workers, segment_steps=8))
        assert decisions(tmp_path / name) == expected, name
        assert (result.samples, result.errors, result.solved) == (plain.samples, plain.errors, plain.solved)
        stats = result.extra["draft_stats"]
        rows = read_table(open_log(tmp_path / name), ["step", "counted", "cost_usd", "wasted"], kind="draft")
        assert rows.num_rows == stats["samples"] > 0
        assert not any(rows["counted"].to_pylist())
        assert result.extra["speculate"] == 64
        assert stats["proposed"] + stats["no_guess"] + stats["wasted"] == stats["samples"]
        if name == "priced":  # the draft's cost is the run's cost too (what a budget charges)
            assert stats["cost_usd"] == pytest.approx(0.001 * rows.num_rows)
            assert result.cost_usd == pytest.approx(stats["cost_usd"])
            assert stats["no_guess"] > 0 and stats["accepted"] <= 1
        else:
            assert stats["acceptance"] is not None and stats["accepted"] > 0
        assert verify_log(tmp_path / name).solved


@pytest.mark.ray
def test_a_resumed_drafted_run_ends_as_the_uninterrupted_one(ray_address, tmp_path) -> None:
    task = get_task("hanoi", disks=5)
    voters, voting = ["sim:0.9,latency=0.001"], VotingConfig(k=2)
    whole = run(task, voters, voting, log=tmp_path / "whole", seed=4, draft="sim:0.8")
    run(task, voters, voting, log=tmp_path / "part", seed=4, draft="sim:0.8", max_steps=12)
    resumed = run(task, voters, voting, log=tmp_path / "part", seed=4, draft="sim:0.8", resume=True)
    assert decisions(tmp_path / "part") == decisions(tmp_path / "whole")
    assert resumed.solved and resumed.samples == whole.samples
    assert resumed.extra["draft_stats"]["proposed"] >= 12  # the first leg's proposals are counted too


@pytest.mark.ray
def test_draft_with_escalation_and_the_guard(ray_address, tmp_path) -> None:
    """Escalated steps and a guard that raises k: the same decisions with and without a draft."""
    from maker.runtime.guard import GuardConfig

    task = get_task("hanoi", disks=5)
    voting = VotingConfig(k=2, max_samples_per_step=4, on_undecided="escalate", escalate_to=(("sim:0.99",),))
    voters = ["sim:0.6,latency=0.001"]
    guard = GuardConfig(target=0.999999, min_votes=20)
    a = run(task, voters, voting, log=tmp_path / "a", seed=2, cluster=ClusterConfig(speculate=0, segment_steps=4),
            guard=guard)
    b = run(task, voters, voting, log=tmp_path / "b", seed=2, cluster=ClusterConfig(segment_steps=4), guard=guard,
            draft="sim:0.9,latency=0.0002")
    assert a.extra["escalations"] > 0
    assert decisions(tmp_path / "a") == decisions(tmp_path / "b")
    assert (a.extra["escalations"], a.extra["guard"]["k"]) == (b.extra["escalations"], b.extra["guard"]["k"])


def test_run_refuses_a_draft_it_cannot_use(tmp_path) -> None:
    task = get_task("hanoi", disks=3)
    with pytest.raises(UsageError, match="needs --speculate > 0"):
        run(task, ["sim:0.9"], draft="sim:0.9", cluster=ClusterConfig(speculate=0))
    with pytest.raises(UsageError, match="give the draft once"):
        run(task, ["sim:0.9"], draft="sim:0.9", cluster=ClusterConfig(draft="reference"))
    import maker

    counting = maker.chain_task(name="count", start=0, steps=3, prompt=lambda n, i: f"{n} + 1 =",
                                parse=lambda reply: reply.strip(), key="integer")
    with pytest.raises(UsageError, match="needs a task with ground truth"):
        run(counting, [ModelSpec(FunctionClient(lambda p, t, s: "1"))], draft="reference")


def test_cli_refuses_a_draft_on_a_plan_and_bad_draft_values(maker_cli, tmp_path) -> None:
    refused = maker_cli("run", "sort", "--n", "8", "--model", "sim:0.9", "--draft", "sim:0.9", "--log", str(tmp_path / "s"))
    assert refused.returncode == 2 and "--draft applies to chained tasks" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists()
    for value, said in (("sim:abc", "not a number"), ("reference", "--draft-api-base applies")):
        extra = ["--draft-api-base", "http://127.0.0.1:9/v1"] if value == "reference" else []
        bad = maker_cli("run", "hanoi", "--disks", "3", "--model", "sim:0.9", "--draft", value, *extra,
                        "--log", str(tmp_path / "h"))
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr
        assert not (tmp_path / "h").exists()


class Batches:
    """Wraps the simulator to record each call's batch (step, sample seeds); it changes no reply."""

    def __init__(self, inner, seen) -> None:
        self.inner, self.name, self.seen = inner, inner.name, seen

    async def complete(self, requests):
        self.seen.append((requests[0].step.index, requests[0].step.premise, tuple(r.seed for r in requests)))
        return await self.inner.complete(requests)


def test_the_window_sends_each_round_as_the_in_order_loop_does() -> None:
    """One batch per round and model, as in-order: a client that shares one request among a
    batch's same-prompt samples (`n`) then groups -- and a seeded server draws -- alike."""
    task = get_task("hanoi", disks=6)
    model = "sim:0.8,latency=0.001,jitter=0.003"
    runs = {}
    for depth, draft in ((0, None), (8, None), (64, parse_draft("sim:0.9", None))):
        seen: list = []
        clients = {m: Batches(SimulatedModel(task, parse_sim_model(m), name=m), seen) for m in (model, "sim:0.9")}
        worker = types.SimpleNamespace(task=task, clients=clients)
        job = SegmentJob(task.first_step(), 10**9, 1e9, VotingConfig(k=3), RedFlagPolicy(), (model,), 11,
                         task.total_steps - 1, speculate=depth, draft=draft)
        result = asyncio.run(run_segment(worker, job))
        runs[depth] = result.decisions, seen
    decided, in_order = runs[0]
    assert decided["step"] == list(range(task.total_steps))
    assert any(len(b[2]) == 3 for b in in_order)
    for depth in (8, 64):
        assert runs[depth][0] == decided
        assert set(in_order) <= set(runs[depth][1])  # every in-order batch, whole, on its true premise


@pytest.mark.ray
def test_cli_summary_and_report_show_the_draft(ray_address, maker_cli, tmp_path) -> None:
    log = tmp_path / "h"
    done = maker_cli("run", "hanoi", "--disks", "4", "--model", "sim:0.99,latency=0.001", "--draft", "sim:0.9",
                     "--k", "2", "--log", str(log), "--quiet", "--address", ray_address)
    assert done.returncode == 0, done.stderr
    assert "drafted by sim:0.9, adaptive" in done.stdout
    assert "draft sim:0.9: acceptance " in done.stdout and "speed-up ~" in done.stdout
    report = maker_cli("report", str(log), "--out", str(tmp_path / "r"))
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "r" / "report.md").read_text()
    assert "| draft (sim:0.9): guesses accepted by the votes |" in text
    assert "draft: speed-up over in-order (estimated from the voters' latencies) | ~" in text
