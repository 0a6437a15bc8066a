"""chain_task: a chained task from plain functions, judged strictly, with ground truth."""

from __future__ import annotations

import pytest
from maker.tasks.base import Oracle, StepInput, Task
from maker.tasks.chain_task import chain_task
from maker.tasks.fields import last_field

AMOUNTS = [5, -3, 10, -7]


def ledger(**extra):
    kwargs = dict(
        name="ledger", start=100, steps=len(AMOUNTS), key="integer",
        prompt=lambda balance, i: f"balance = {balance}\ntransaction = {AMOUNTS[i]:+d}\nnew balance =",
        parse=lambda reply: last_field("balance = " + reply, "balance"),
        truth=lambda balance, i: balance + AMOUNTS[i],
    )
    kwargs.update(extra)
    return chain_task(**kwargs)


def test_it_is_a_task_and_an_oracle_and_walks_the_truth() -> None:
    task = ledger()
    assert isinstance(task, Task) and isinstance(task, Oracle)
    step = task.first_step()
    keys = []
    for i in range(task.total_steps):
        keys.append(task.truth(i))
        assert task.judge(step, task.reference_reply(step)).key == keys[-1]
        step = task.step_after(i, keys[-1])
    assert keys == ["105", "102", "112", "105"]
    assert task.is_solved(step) and step.index == 4
    assert not task.is_solved(task.step_after(3, "106"))  # the end, but on a wrong balance


@pytest.mark.parametrize(
    "reply,key,flag",
    [
        ("105", "105", None),
        (" **105** ", "105", None),
        ("+105", "105", None),
        ("I think 100 then balance = 105", "105", None),  # the last field wins
        ("about a hundred", None, "malformed"),
        ("١٠٥", None, "malformed"),  # Arabic-Indic digits are not an integer here
        ("", None, "malformed"),
    ],
)
def test_replies_become_keys_or_red_flags(reply, key, flag) -> None:
    verdict = ledger().judge(StepInput(0, 100), reply)
    assert (verdict.key, verdict.red_flag) == (key, flag)


def test_a_parser_that_raises_is_a_malformed_red_flag_not_a_crash() -> None:
    def parse(reply: str) -> str:
        raise RuntimeError("cannot read this")

    verdict = ledger(parse=parse).judge(StepInput(0, 100), "105")
    assert verdict.red_flag == "malformed" and "RuntimeError: cannot read this" in verdict.detail


def test_a_rule_check_makes_rule_breaking() -> None:
    task = ledger(valid=lambda balance, answer: answer >= 0)
    assert task.judge(StepInput(0, 100), "-5").red_flag == "rule_breaking"
    assert task.judge(StepInput(0, 100), "5").key == "5"


def test_next_state_travels_in_the_key_and_is_rebuilt_from_it() -> None:
    words = ["alpha", "beta", "gamma"]
    task = chain_task(
        name="collect", start=(), steps=3, key="text",
        prompt=lambda seen, i: f"Copy the word: {words[i]}",
        next_state=lambda seen, answer: (*seen, answer),
        truth=lambda seen, i: words[i],
    )
    step = task.first_step()
    for i in range(3):
        key = task.judge(step, task.reference_reply(step).upper()).key
        assert key == task.truth(i)
        step = task.step_after(i, key)
    assert step.premise == ("alpha", "beta", "gamma")


def test_wrong_replies_are_well_formed_and_wrong() -> None:
    task = ledger()
    step = task.first_step()
    wrong = task.wrong_replies(step)
    assert wrong and all(task.judge(step, w).key not in (None, "105") for w in wrong)
    assert task.judge(step, task.broken_reply(step, "malformed")).red_flag == "malformed"


def test_prompt_variants_and_styles() -> None:
    task = ledger(prompt=[lambda b, i: f"A {b}", lambda b, i: f"B {b}"])
    assert task.variants == 2
    assert task.prompt(task.first_step(), "completion", variant=1) == "B 100"
    assert task.prompt(task.first_step(), "chat") == [{"role": "user", "content": "A 100"}]


@pytest.mark.parametrize(
    "extra,needle",
    [
        ({"steps": 0}, "steps"),
        ({"start": [1, 2]}, "hashable"),
        ({"key": "roman"}, "unknown key normaliser"),
        ({"prompt": "not a function"}, "prompt"),
    ],
)
def test_bad_definitions_fail_at_once(extra, needle) -> None:
    with pytest.raises(ValueError, match=needle):
        ledger(**extra)


def test_a_task_without_truth_is_not_an_oracle() -> None:
    task = ledger(truth=None)
    assert isinstance(task, Task) and not isinstance(task, Oracle)
    assert task.judge(task.first_step(), "105").key == "105"
