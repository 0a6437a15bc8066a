"""`sim:P` is wrong with probability 1 - P under every key: its wrong answers survive the key.

Issue #25 §1: a `choice` operation without `wrong=` measured p = 1 on `sim:0.8` (the
simulator's default wrong answers did not pass the key, and it silently answered right).
Each built-in key gets a task whose steps the simulator answers; p measured from the
simulator's valid replies must lie within P's interval.  A user's own key that accepts no
wrong answer is refused in one line before anything runs."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from maker.cluster import ModelConfigError, SampleRequest, SimulatedModel, mix64, parse_sim_model
from maker.tasks.builtin.one_prompt import one_prompt
from maker.tasks.chain_task import chain_task
from maker.tasks.plans.plan_task import plan_task
from maker.tasks.plans.user_ops import operation
from maker.tasks.wrong import NoWrongAnswer
from maker.voting import clopper_pearson

import maker
from maker.errors import UsageError

P = 0.8
STEPS = 60
DRAWS = 10  # per step: 600 draws, the 95% interval is about +-0.03 wide at 0.8

ROOMS = ["kitchen", "garden", "office", "toys"]


def _measured(task, model: str = f"sim:{P}") -> tuple[int, int, int]:
    """(right, valid, drawn) over DRAWS draws on each of the task's first STEPS true premises."""
    sim = SimulatedModel(task, parse_sim_model(model))
    right = valid = drawn = 0
    for i in range(min(STEPS, task.total_steps)):
        step = task.first_step() if i == 0 else task.step_after(i - 1, task.truth(i - 1))
        if hasattr(task, "truth_values"):
            step = task.step_input(i, dict(enumerate(task.truth_values())))
        requests = [SampleRequest("p", 0.1, 100, mix64(3, i, j), step) for j in range(DRAWS)]
        for sample in asyncio.run(sim.complete(requests)):
            key = task.judge(step, sample.text).key
            drawn += 1
            valid += key is not None
            right += key == task.truth(i)
    return right, valid, drawn


def _assert_calibrated(task) -> None:
    right, valid, drawn = _measured(task)
    assert valid == drawn, "every wrong answer must be a valid vote, not a red flag"
    ci = clopper_pearson(right, valid, 0.99)
    assert ci.low <= P <= ci.high, f"measured p {right / valid:.3f} on {valid} votes, interval {ci.low:.3f}-{ci.high:.3f}"


def _chain(key, truth, render=str, start=0, **kw):
    return chain_task(name="t", start=start, steps=STEPS, prompt=lambda s, i: f"step {i}", key=key,
                      truth=truth, render=render, **kw)


CHAINS = {
    "integer": lambda: _chain("integer", lambda s, i: s + 3),
    "decimal": lambda: _chain("decimal", lambda s, i: Decimal(s) + Decimal("0.5"), start=Decimal("1.5")),
    "text": lambda: _chain("text", lambda s, i: f"word{i}", start=""),
    "choice": lambda: _chain("choice:" + ",".join(ROOMS), lambda s, i: ROOMS[i % 4], start=""),
    "json": lambda: _chain("json", lambda s, i: {"n": i, "tags": ["a", "b"]}, json.dumps, start=""),
    "literal": lambda: _chain("literal", lambda s, i: (i, "x", [1, 2]), repr, start=""),
    "lines": lambda: _chain("lines", lambda s, i: f"line {i}\nline {i + 1}", start=""),
    "own key function": lambda: _chain(lambda t: t.strip().casefold() or None, lambda s, i: ROOMS[i % 4], start=""),
}


@pytest.mark.parametrize("key", list(CHAINS))
def test_a_chain_task_is_wrong_as_often_as_sim_p_says_under_every_key(key: str) -> None:
    _assert_calibrated(CHAINS[key]())


_ANSWER = "\nanswer = " + " ".join(f"#E{i + 1}" for i in range(STEPS))


def _rooms_plan(key: str, **kw):
    items = [f"item {i}" for i in range(STEPS)]
    category = operation("category", prompt=lambda args: f"Which room? {args[0]}", key=key,
                         truth=lambda args: ROOMS[int(args[0].split()[1]) % 4],
                         render=lambda answer: f"Category: {answer}",
                         parse=lambda reply: reply.split(":", 1)[1].strip() if ":" in reply else None, **kw)
    text = "\n".join(f'#E{i + 1} = category("{item}")' for i, item in enumerate(items)) + _ANSWER
    return plan_task(text, ops=[category])


@pytest.mark.parametrize("key", ["choice:kitchen,garden,office,toys", "text", "integer"])
def test_a_plan_operation_without_wrong_is_wrong_as_often_as_sim_p_says(key: str) -> None:
    if key == "integer":
        op = operation("num", prompt=lambda args: f"{args[0]} + 1 =", key="integer",
                       truth=lambda args: int(args[0]) + 1)
        text = "\n".join(f"#E{i + 1} = num({i})" for i in range(STEPS)) + _ANSWER
        _assert_calibrated(plan_task(text, ops=[op]))
    else:
        _assert_calibrated(_rooms_plan(key))  # the case: choice, render=, no wrong=


def test_wrong_answers_that_the_key_refuses_fall_back_to_ones_it_accepts() -> None:
    # the user's wrong= gives only 'kitchen': on a kitchen step no wrong answer of theirs passes
    _assert_calibrated(_rooms_plan("choice:kitchen,garden,office,toys", wrong=lambda args, right: ["kitchen"]))


def test_a_voted_call_with_a_key_function_is_wrong_too() -> None:
    task = one_prompt("Which room?", key=lambda t: t.strip().casefold() or None, expected="kitchen")
    sim = SimulatedModel(task, parse_sim_model("sim:0.5"))
    replies = asyncio.run(sim.complete([SampleRequest("p", 0.1, 100, mix64(9, i), task.first_step()) for i in range(200)]))
    keys = [task.judge(task.first_step(), s.text).key for s in replies]
    assert None not in keys and 60 < keys.count("kitchen") < 140


def _only_kitchen(text: str) -> str | None:
    return "kitchen" if text.strip() == "kitchen" else None


def test_a_key_that_accepts_no_wrong_answer_is_refused_in_one_line_before_anything_runs() -> None:
    task = chain_task(name="t", start="", steps=5, prompt=lambda s, i: "room?", key=_only_kitchen,
                      truth=lambda s, i: "kitchen")
    with pytest.raises(NoWrongAnswer, match="no wrong answer that the key accepts at step 0.*wrong="):
        task.wrong_replies(task.first_step())
    sim = SimulatedModel(task, parse_sim_model("sim:0.8"))
    with pytest.raises(ModelConfigError, match="no wrong answer"):  # never silently right
        asyncio.run(sim.complete([SampleRequest("p", 0.1, 100, mix64(0, i), task.first_step()) for i in range(20)]))
    with pytest.raises(UsageError) as caught:  # before Ray starts or anything is drawn
        maker.run(task, ["sim:0.8"], maker.VotingConfig(k=2))
    assert "\n" not in str(caught.value) and "wrong=" in str(caught.value)
    maker.cluster.simulated.simulator.check_can_be_wrong(task, "sim:1.0")  # a perfect simulator needs no wrong answer


def test_a_one_option_choice_has_no_wrong_answer_and_that_is_not_an_error() -> None:
    task = chain_task(name="t", start="", steps=3, prompt=lambda s, i: "?", key="choice:yes",
                      truth=lambda s, i: "yes")
    assert task.wrong_replies(task.first_step()) == []
