"""Speculative steps decide exactly what an in-order run decides.

The model is the simulator (the only fake, at the model boundary); low accuracy and k >= 2
make step leaders flip often, so speculative slots are built on losing premises and
must be thrown away.  Latency jitter (seeded per draw) shuffles arrival order.  One test
wraps the simulator to count requests in flight: that wrapper is also at the model
boundary, and it only measures.
"""

from __future__ import annotations

import asyncio
import types

import pytest
from maker.cluster import SimulatedModel, parse_sim_model
from maker.tasks import get_task

from maker import ClusterConfig, UsageError, VotingConfig, run, verify_log
from maker.cli.main import main
from maker.engine.red_flags import RedFlagPolicy
from maker.log.steplog import count_faults, decisions, open_log, read_table
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.runtime.chain.speculation import CANCELLED, DEFAULT_DEPTH, speculation_depth


def worker_for(task, *models: str, wrap=None) -> types.SimpleNamespace:
    clients = {m: SimulatedModel(task, parse_sim_model(m), name=m) for m in models}
    if wrap is not None:
        clients = {m: wrap(c) for m, c in clients.items()}
    return types.SimpleNamespace(task=task, clients=clients)


def segment(task, models, k, depth, *, steps=None, start=None, max_seconds=1e9, in_flight=(), seed=11, cap=100, wrap=None,
            draft=False):
    worker = worker_for(task, *models, wrap=wrap)
    start = start or task.first_step()
    last = task.total_steps - 1 if steps is None else start.index + steps - 1
    job = SegmentJob(
        start, 10**9, max_seconds, VotingConfig(k=k, max_samples_per_step=cap), RedFlagPolicy(), tuple(models), seed,
        last, speculate=depth, in_flight=in_flight, draft=draft,
    )
    return asyncio.run(run_segment(worker, job))


def kept(result: SegmentResult, wasted: bool = False) -> list[tuple]:
    """The sample rows (step, sample, answer, red flag, counted) that are (not) wasted."""
    s = result.samples
    rows = zip(s["step"], s["sample"], s["answer"], s["red_flag"], s["counted"], s["wasted"])
    return sorted((r[:5] for r in rows if r[5] is wasted), key=repr)


CASES = [
    (("sim:0.7,latency=0.0005,jitter=0.002",), 7, 2),  # leaders flip often
    (("sim:0.6,redflag=0.2,latency=0.0005,jitter=0.002",), 6, 3),  # and red flags
    (("sim:0.75,latency=0.0005,jitter=0.002", "sim:0.65,seed=3,latency=0.001,jitter=0.001"), 6, 2),  # mixed models
]


@pytest.mark.parametrize("models,disks,k", CASES)
def test_decisions_and_kept_samples_equal_the_in_order_run(models, disks, k) -> None:
    task = get_task("hanoi", disks=disks)
    plain = segment(task, models, k, 0)
    assert plain.decisions["step"] == list(range(task.total_steps))
    assert not any(plain.samples["wasted"])
    for depth, draft in ((1, False), (4, False), (8, False), (4, True), (8, True)):
        spec = segment(task, models, k, depth, draft=draft)
        assert spec.decisions == plain.decisions
        assert spec.end == plain.end and spec.failed_step is None
        assert kept(spec) == kept(plain)  # the same draws, counted the same way
        wasted = kept(spec, wasted=True)
        assert wasted, "low accuracy must make some speculative premise lose"
        assert not any(row[4] for row in wasted)  # a wasted sample never counts


def test_losing_premises_are_cancelled_in_flight() -> None:
    task = get_task("hanoi", disks=7)
    result = segment(task, ("sim:0.6,latency=0.002,jitter=0.01",), 3, 8)
    errors = [e for e, w in zip(result.samples["error"], result.samples["wasted"]) if w]
    assert CANCELLED in errors  # requests in flight on a losing premise were cancelled
    assert any(e is None for e in errors)  # replies that had arrived are logged with their text
    assert all(e != CANCELLED for e, w in zip(result.samples["error"], result.samples["wasted"]) if not w)


def test_every_wasted_row_was_drawn_on_a_premise_its_step_did_not_have() -> None:
    """A wasted row's reply must have been judged against a losing premise: for a
    correct-only simulator (p = 1) nothing is ever wasted."""
    task = get_task("hanoi", disks=7)
    result = segment(task, ("sim:1.0,latency=0.0005,jitter=0.002",), 2, 8)
    assert not any(result.samples["wasted"])
    assert all(result.decisions["correct"])


def test_in_flight_limit_holds_across_the_window() -> None:
    """The wrapper counts concurrent calls to the simulator; it changes no reply."""
    peak = {"now": 0, "max": 0}

    class Counting:
        def __init__(self, inner) -> None:
            self.inner, self.name = inner, inner.name

        async def complete(self, requests):
            peak["now"] += len(requests)
            peak["max"] = max(peak["max"], peak["now"])
            try:
                return await self.inner.complete(requests)
            finally:
                peak["now"] -= len(requests)

    task = get_task("hanoi", disks=7)
    model = "sim:0.8,latency=0.001,jitter=0.003"
    limited = segment(task, (model,), 3, 16, in_flight=((model, 4),), wrap=Counting)
    assert peak["max"] == 4
    assert limited.decisions == segment(task, (model,), 3, 0).decisions
    peak["max"] = 0
    segment(task, (model,), 3, 16, wrap=Counting)
    assert peak["max"] > 4  # without a limit the window does run wider


class PeakInFlight:
    """Wraps a simulator to count its concurrent calls (at the model boundary; it only measures)."""

    peak = 0

    def __init__(self, inner) -> None:
        self.inner, self.name, self.now = inner, inner.name, 0

    async def complete(self, requests):
        self.now += len(requests)
        PeakInFlight.peak = max(PeakInFlight.peak, self.now)
        try:
            return await self.inner.complete(requests)
        finally:
            self.now -= len(requests)


def test_a_draft_fills_the_window_before_any_reply() -> None:
    """Without a draft the window grows one step per first reply; with the reference as
    draft all D+1 steps are asked for at once -- and the decisions do not move."""
    task = get_task("hanoi", disks=7)
    model = ("sim:0.99,latency=0.01",)
    PeakInFlight.peak = 0
    plain = segment(task, model, 3, 8, steps=40, wrap=PeakInFlight)
    undrafted = PeakInFlight.peak
    PeakInFlight.peak = 0
    drafted = segment(task, model, 3, 8, steps=40, wrap=PeakInFlight, draft=True)
    assert PeakInFlight.peak == 9 * 3 > undrafted
    assert drafted.decisions == plain.decisions


def test_out_of_time_segments_stop_cleanly_and_chain_to_the_same_decisions() -> None:
    task = get_task("hanoi", disks=6)
    models = ("sim:0.7,latency=0.001,jitter=0.002",)
    whole = segment(task, models, 2, 8)
    decided: list = []
    start = task.first_step()
    pieces = 0
    while start.index < task.total_steps:
        part = segment(task, models, 2, 8, start=start, max_seconds=0.0)
        assert part.decisions["step"] and part.decisions["step"][0] == start.index
        decided += list(zip(part.decisions["step"], part.decisions["answer"]))
        start = part.end
        pieces += 1
    assert pieces > 1
    assert decided == list(zip(whole.decisions["step"], whole.decisions["answer"]))


def test_vote_cap_fails_at_the_same_step_with_the_same_samples() -> None:
    task = get_task("hanoi", disks=5)
    models = ("sim:0.5,seed=4,latency=0.0005,jitter=0.001",)
    plain = segment(task, models, 4, 0, cap=12)
    spec = segment(task, models, 4, 8, cap=12)
    assert plain.failed_step is not None
    assert spec.failed_step == plain.failed_step and spec.decisions == plain.decisions
    assert kept(spec) == kept(plain)


def test_depth_choice_and_bad_depths() -> None:
    from maker.cluster import ModelSpec

    assert speculation_depth(None, [ModelSpec("sim:0.9")]) == 0  # nothing to hide
    assert speculation_depth(None, [ModelSpec("sim:0.9,latency=0.1")]) == DEFAULT_DEPTH
    assert speculation_depth(None, [ModelSpec("openai/x", api_base="http://127.0.0.1:1/v1")]) == DEFAULT_DEPTH
    assert speculation_depth(3, [ModelSpec("sim:0.9")]) == 3
    for bad in (-1, 1.5, True):
        with pytest.raises(UsageError, match="--speculate"):
            speculation_depth(bad, [ModelSpec("sim:0.9")])


@pytest.mark.parametrize(
    "extra,needle",
    [(["--speculate", "-1"], "--speculate"), (["--concurrency", "0"], "--concurrency"), (["--rpm", "0"], "--rpm"),
     (["--timeout", "-2"], "--timeout")],
)
def test_cli_bad_flow_control_input_is_one_line_exit_2(capsys, tmp_path, extra, needle) -> None:
    log = tmp_path / "never.parquet"
    code = main(["run", "hanoi", "--disks", "4", "--model", "sim:0.9", "--log", str(log), *extra])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and err.count("\n") == 1
    assert not log.exists()


@pytest.mark.ray
def test_through_ray_the_log_verifies_and_matches_the_in_order_run(ray_address, tmp_path) -> None:
    task = get_task("hanoi", disks=5)
    model = ["sim:0.85,seed=9,latency=0.001,jitter=0.002"]  # 15% of first replies mislead
    plain = run(task, model, VotingConfig(k=4), log=tmp_path / "d0", seed=3, cluster=ClusterConfig(speculate=0, segment_steps=20))
    spec = run(task, model, VotingConfig(k=4), log=tmp_path / "d8", seed=3, cluster=ClusterConfig(speculate=8, segment_steps=20))
    assert plain.extra["speculate"] == 0 and spec.extra["speculate"] == 8
    assert spec.solved and spec.errors == 0
    assert decisions(tmp_path / "d0") == decisions(tmp_path / "d8")
    assert spec.samples == plain.samples  # wasted samples are reported apart
    assert spec.extra["wasted_samples"] > 0 and plain.extra["wasted_samples"] == 0
    report = verify_log(tmp_path / "d8")
    assert report.valid and report.solved
    samples = read_table(open_log(tmp_path / "d8"), ["wasted", "counted"], kind="sample")
    assert sum(samples["wasted"].to_pylist()) == spec.extra["wasted_samples"]


DRAFTED_CASES = [
    ("sim:0.998", 3, 2.0),  # stays on the ground-truth path: every drafted segment is kept
    ("sim:0.7,fail=0.3", 1, 2.0),  # k = 1 decides wrong steps: drafts lose, their samples (and failed calls) are wasted
    ("sim:0.95", 2, 0.0005),  # segments stop after a step or two: gaps are filled before a draft is judged
]


@pytest.mark.ray
@pytest.mark.parametrize("model,k,seconds", DRAFTED_CASES)
def test_drafted_segments_on_two_workers_decide_what_one_worker_does(ray_address, tmp_path, model, k, seconds) -> None:
    task = get_task("hanoi", disks=8)
    one = run(task, [model], VotingConfig(k=k), log=tmp_path / "one", seed=5,
              cluster=ClusterConfig(segment_steps=16, segment_seconds=seconds))
    two = run(task, [model], VotingConfig(k=k), log=tmp_path / "two", seed=5,
              cluster=ClusterConfig(segment_steps=16, segment_seconds=seconds, workers=2, draft=True))
    assert decisions(tmp_path / "one") == decisions(tmp_path / "two")
    assert (two.errors, two.samples, two.steps) == (one.errors, one.samples, one.steps)
    drafted, lost = two.extra["drafted_segments"]
    assert drafted > 0
    samples = read_table(open_log(tmp_path / "two"), ["wasted", "counted", "faults"], kind="sample")
    assert two.faults_by_kind == count_faults(samples["faults"].to_pylist(), {})  # wasted rows' failed calls too
    wasted = samples["wasted"].to_pylist()
    assert sum(wasted) == two.extra["wasted_samples"]
    assert not any(c for c, w in zip(samples["counted"].to_pylist(), wasted) if w)
    if one.errors == 0:
        assert lost == 0 and two.extra["wasted_samples"] == 0
        assert verify_log(tmp_path / "two").solved
    else:
        assert lost > 0 and two.extra["wasted_samples"] > 0
    a, b = verify_log(tmp_path / "one"), verify_log(tmp_path / "two")  # wasted rows change no verdict
    assert (a.valid, a.reason, a.wrong_decisions, a.steps) == (b.valid, b.reason, b.wrong_decisions, b.steps)


def test_a_prompt_that_raises_only_on_a_losing_premise_does_not_stop_the_run() -> None:
    """The task's own prompt raises on any state off the true path (a speculative premise
    that will lose): the window opens nothing past it, the votes decide, the run goes on --
    the same decisions as the in-order run, which never sees such a premise."""
    import maker

    raised = []

    def prompt(state, i):
        if state != i:
            raised.append(i)
            raise ValueError(f"no such balance {state} at step {i}")
        return f"{state} + 1 ="

    task = maker.chain_task(name="strict", start=0, steps=40, prompt=prompt, key="integer", truth=lambda s, i: s + 1)
    models = ("sim:0.7,latency=0.0005,jitter=0.002",)
    plain = segment(task, models, 3, 0)
    assert plain.error is None and plain.decisions["step"] == list(range(40))
    assert not raised
    spec = segment(task, models, 3, 6)
    assert raised, "some speculative premise must have been wrong"
    assert spec.error is None and spec.decisions == plain.decisions and spec.failed_step is None
    assert kept(spec) == kept(plain)
    # on the decided premise it is fatal: the steps before it come back, with the error
    late = maker.chain_task(name="late", start=0, steps=10, prompt=lambda s, i: prompt(s if i != 6 else -1, i),
                            key="integer", truth=lambda s, i: s + 1)
    for depth in (0, 6):
        result = segment(late, ("sim:0.9",), 2, depth)
        assert result.decisions["step"] == [0, 1, 2, 3, 4, 5]
        assert result.error == "ValueError: no such balance -1 at step 6"
