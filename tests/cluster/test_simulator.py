"""The simulator: reproducible, calibrated, and able to produce correlated errors."""

from __future__ import annotations

import asyncio

import pytest
from maker.cluster import ModelConfigError, SampleRequest, SimulatedModel, mix64, parse_sim_model
from maker.tasks import get_task


def draw(model: SimulatedModel, step, seeds):
    requests = [SampleRequest("p", 0.1, 100, s, step) for s in seeds]
    return asyncio.run(model.complete(requests))


def test_same_draw_same_reply_in_any_batching() -> None:
    task = get_task("hanoi", disks=6)
    model = SimulatedModel(task, parse_sim_model("sim:0.7,redflag=0.2"))
    step = task.first_step()
    seeds = [mix64(0, 0, i) for i in range(40)]
    whole = [s.text for s in draw(model, step, seeds)]
    pieces = [s.text for i in range(0, 40, 7) for s in draw(model, step, seeds[i : i + 7])]
    assert whole == pieces


def test_accuracy_and_red_flag_rate_are_calibrated() -> None:
    task = get_task("hanoi", disks=8)
    model = SimulatedModel(task, parse_sim_model("sim:0.8,redflag=0.1"))
    step = task.first_step()
    for i in range(2):  # from the third move on, three legal moves exist: two are wrong
        step = task.advance(step, task.truth(i))
    n = 6000
    samples = draw(model, step, [mix64(1, 0, i) for i in range(n)])
    right = task.reference_reply(step)
    verdicts = [task.judge(step, s.text) for s in samples]
    flagged = sum(1 for s, v in zip(samples, verdicts) if v.key is None or s.finish_reason == "length")
    correct = sum(1 for s, v in zip(samples, verdicts) if v.key == right and s.finish_reason != "length")
    assert abs(flagged / n - 0.1) < 0.015
    assert abs(correct / (n - flagged) - 0.8) < 0.025
    wrong = {v.key for s, v in zip(samples, verdicts) if v.key and v.key != right}
    assert len(wrong) >= 2  # errors spread over several wrong answers


def test_hard_steps_concentrate_errors_on_one_answer() -> None:
    task = get_task("hanoi", disks=10)
    model = SimulatedModel(task, parse_sim_model("sim:0.99,hard=1.0,hard_p=0.3"))
    step = task.first_step()
    samples = draw(model, step, [mix64(2, 0, i) for i in range(400)])
    right = task.reference_reply(step)
    wrong = [s.text for s in samples if s.text != right]
    assert 0.6 < len(wrong) / 400 < 0.8
    assert len(set(wrong)) == 1


@pytest.mark.parametrize(
    "model", ["sim:", "sim:abc", "sim:1.5", "sim:0.9,bogus=1", "sim:0.9,redflag=2", "sim:0.9,latency=-1"]
)
def test_bad_model_strings(model: str) -> None:
    with pytest.raises(ModelConfigError):
        parse_sim_model(model)
