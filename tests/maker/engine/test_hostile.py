"""Hostile and broken replies are red-flagged and never advance the state."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
from maker.cluster import Sample
from maker.tasks import get_task

from maker.engine.red_flags import RedFlagPolicy, judge_sample

CORPUS = runpy.run_path(str(Path(__file__).parents[2] / "data" / "hostile_replies.py"))
GOOD, HOSTILE = CORPUS["GOOD"], CORPUS["HOSTILE"]
TASK = get_task("hanoi", disks=4)
STEP = TASK.first_step()


def test_the_good_reply_passes() -> None:
    assert judge_sample(TASK, STEP, Sample(GOOD, "m"), RedFlagPolicy()).key


@pytest.mark.parametrize("reply", HOSTILE, ids=range(len(HOSTILE)))
def test_every_hostile_reply_is_red_flagged(reply: str) -> None:
    tokens = len(reply) // 4 + 1
    verdict = judge_sample(TASK, STEP, Sample(reply, "m", tokens_out=tokens), RedFlagPolicy())
    assert verdict.key is None
    assert verdict.red_flag is not None
