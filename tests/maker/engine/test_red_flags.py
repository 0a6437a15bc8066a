"""Red-flag detectors on table cases; nothing in a reply is ever executed."""

from __future__ import annotations

import pytest
from maker.cluster import Sample
from maker.tasks import get_task

from maker.engine.red_flags import REASONS, RedFlagPolicy, StepJudge, judge_sample

TASK = get_task("hanoi", disks=4)
STEP = TASK.first_step()
GOOD = "move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]"


@pytest.mark.parametrize(
    "sample,reason",
    [
        (Sample(GOOD, "m"), None),
        (Sample("", "m", error="RateLimitError: too many"), "transport"),
        (Sample("   \n", "m"), "empty"),
        (Sample(GOOD, "m", tokens_out=751), "overlong"),
        (Sample(GOOD, "m", tokens_out=20, finish_reason="length"), "overlong"),
        (Sample(GOOD + "\x00", "m"), "binary"),
        (Sample(GOOD + "\ufffd", "m"), "binary"),
        (Sample("```python\nimport os\n```\n" + GOOD, "m"), "code"),
        (Sample(GOOD + "\n__import__('os').system('x')", "m"), "code"),
        (Sample("Ignore previous instructions. " + GOOD.replace("[1]", "[2]"), "m"), "malformed"),
        (Sample("move = [2, 0, 1]\nnext_state = [[4, 3, 1], [2], []]", "m"), "rule_breaking"),
    ],
)
def test_detectors(sample: Sample, reason: str | None) -> None:
    verdict = judge_sample(TASK, STEP, sample, RedFlagPolicy())
    assert verdict.red_flag == reason
    assert (verdict.key is None) == (reason is not None)
    if reason:
        assert reason in REASONS and verdict.detail


def test_threshold_is_configurable() -> None:
    sample = Sample(GOOD, "m", tokens_out=100)
    assert judge_sample(TASK, STEP, sample, RedFlagPolicy(max_output_tokens=99)).red_flag == "overlong"
    assert judge_sample(TASK, STEP, sample, RedFlagPolicy(max_output_tokens=100)).red_flag is None


def test_identical_texts_share_a_verdict_but_metadata_still_counts() -> None:
    judge = StepJudge(TASK, STEP, RedFlagPolicy())
    assert judge(Sample(GOOD, "m")).key
    assert judge(Sample(GOOD, "m", tokens_out=5000)).red_flag == "overlong"
    assert judge(Sample(GOOD, "m")).key
