"""Where a drafted segment ends when its time is up (`maker.runtime.chain.speculation`).

A segment out of time with a draft goes on until a guess is rejected and ends there (the
slots after a rejected guess are discarded anyway), rather than draining a window full of
accepted slots; a draft that is never rejected goes on one window depth more, then drains.
The voters and drafts are the simulator or a plain function (fakes at the model boundary).
"""

from __future__ import annotations

import asyncio
import types

from maker.cluster import SimulatedModel, parse_sim_model
from maker.tasks import get_task

from maker import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.runtime.chain.draft import parse_draft
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob, SegmentResult

VOTER = "sim:0.998,latency=0.002,jitter=0.002"


#: the one step `wrong_once` guesses wrong: beyond the window's starting depth, so a segment
#: that drained at once when out of time would end before it
WRONG_AT = 12


def wrong_once(task, step):
    """A heuristic draft: the reference, but a wrong (well-formed, legal) reply at step WRONG_AT."""
    return task.wrong_replies(step)[0] if step.index == WRONG_AT else task.reference_reply(step)


def segment(task, start, draft, max_seconds, *, speculate=64, seed=5) -> SegmentResult:
    names = [VOTER, *([draft] if isinstance(draft, str) and draft.startswith("sim:") else [])]
    worker = types.SimpleNamespace(task=task, clients={m: SimulatedModel(task, parse_sim_model(m), name=m) for m in names})
    job = SegmentJob(start, 10**9, max_seconds, VotingConfig(k=3), RedFlagPolicy(), (VOTER,), seed, task.total_steps - 1,
                     speculate=speculate, draft=parse_draft(draft, None))
    return asyncio.run(run_segment(worker, job))


def draft_answers(result: SegmentResult) -> dict[int, object]:
    d = result.drafts
    return {s: a for s, a, w in zip(d["step"], d["answer"], d["wasted"]) if not w}


def test_out_of_time_a_drafted_segment_ends_at_the_first_rejected_guess() -> None:
    task = get_task("hanoi", disks=8)
    result = segment(task, task.first_step(), wrong_once, 0.0)
    steps = result.decisions["step"]
    assert steps == list(range(WRONG_AT + 1))  # out of time at once, yet on to the rejected guess, and no further
    assert result.end == task.step_after(WRONG_AT, task.truth(WRONG_AT))
    winner = dict(zip(result.decisions["step"], result.decisions["answer"]))[WRONG_AT]
    assert draft_answers(result)[WRONG_AT] != winner
    assert not any(result.samples["wasted"][i] for i, s in enumerate(result.samples["step"]) if s <= WRONG_AT)


def test_a_draft_that_is_never_rejected_goes_on_one_window_depth_then_drains() -> None:
    task = get_task("hanoi", disks=8)
    result = segment(task, task.first_step(), "reference", 0.0, speculate=20)
    assert result.decisions["step"] == list(range(21))  # step 0, then at most 20 more
    assert result.end.index == 21


def test_drafted_segments_cut_short_decide_what_one_long_segment_decides() -> None:
    """Many tiny segments, each ending at a rejected guess (sim:0.8 draft), chained from each
    one's end as the driver does: the same decisions as one segment that never runs out of time."""
    task = get_task("hanoi", disks=6)
    whole = segment(task, task.first_step(), "sim:0.8,latency=0.0005", 1e9)
    decided, start, segments = [], task.first_step(), 0
    while start.index < task.total_steps:
        part = segment(task, start, "sim:0.8,latency=0.0005", 0.0)
        assert part.failed_step is None and part.decisions["step"] and part.decisions["step"][0] == start.index
        decided += list(zip(part.decisions["step"], part.decisions["answer"]))
        start, segments = part.end, segments + 1
    assert decided == list(zip(whole.decisions["step"], whole.decisions["answer"]))
    assert len(decided) == task.total_steps and 4 < segments < task.total_steps
