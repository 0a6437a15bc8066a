"""No reply can crash the judge: every built-in key normaliser and task parser gives a key
or a red flag for any string (issue 22, section 6).

Property tests over what models and servers really send, and what breaks parsers: any
text, numbers too big for ``int()`` or ``Decimal``'s context ('1e1000000', 5,000 nines,
``0xfff...``), deep nesting, NUL and other control characters, other scripts' digits,
lone surrogates (JSON's ``"\\ud800"`` decodes to one), and each task's own right reply
with one of those spliced in.  A key, when there is one, must be text the step log can
store (UTF-8).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from maker.tasks import get_task, keys
from maker.tasks.base import StepInput, task_judge
from maker.tasks.builtin.one_prompt import one_prompt
from maker.tasks.chain_task import chain_task
from maker.tasks.plans.plan_task import plan_task
from maker.tasks.plans.user_ops import operation

from maker.runtime.decompose import _ProposalTask

HUGE = ["9" * 5000, "1e1000000", "-1e-1000000", "1e999999999999", "0x" + "f" * 5000, "1" + "0" * 4400,
        "-" + "9" * 4301 + ".5", "9" * 60000, "1e" + "9" * 5000, "." + "0" * 5000 + "1"]
OTHER_DIGITS = "٤۴४৪๔４𝟒߄၄᠔"  # Arabic-Indic, Persian, Devanagari, Bengali, Thai, full-width, maths, NKo, Myanmar, Mongolian
NASTY = ["\x00", "\ud800", "\udfff", "\u202e", "\ufeff", "\x1b[2K", "\r", "\u2028"]


def nested(depth: int, kind: str) -> str:
    opener, closer = {"[": ("[", "]"), "{": ('{"a":', "}"), "(": ("(", ",)")}[kind]
    return opener * depth + "1" + closer * depth


numbers = st.one_of(st.sampled_from(HUGE), st.integers().map(str), st.floats(allow_nan=True).map(repr),
                    st.from_regex(r"\A[+-]?[0-9]{1,30}(\.[0-9]{0,30})?([eE][+-]?[0-9]{1,12})?\Z"))
deep = st.builds(nested, st.sampled_from([10, 900, 5000, 100_000]), st.sampled_from("[{("))
foreign = st.text(alphabet=OTHER_DIGITS + "0123456789-.e", min_size=1, max_size=20)
arbitrary = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=300)  # surrogates included
replies = st.one_of(arbitrary, numbers, deep, foreign, st.sampled_from(NASTY),
                    st.lists(st.one_of(arbitrary, numbers, st.sampled_from(NASTY)), max_size=4).map("".join))


def spliced(reference: str, draw) -> str:
    """`reference` (a right reply) with one of its numbers, or one position, replaced by trouble."""
    spots = list(re.finditer(r"[0-9]+", reference))
    trouble = draw(st.one_of(numbers, foreign, st.sampled_from(NASTY), deep))
    if spots and draw(st.booleans()):
        m = spots[draw(st.integers(0, len(spots) - 1))]
        return reference[: m.start()] + trouble + reference[m.end():]
    at = draw(st.integers(0, len(reference)))
    return reference[:at] + trouble + reference[at:]


def storable(key: str) -> bool:
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.mark.parametrize(("fn", "text", "key"), [
    (keys.decimal, "1e1000000", "1e1000000"),  # was decimal.Overflow
    (keys.integer, "9" * 5000, "9" * 5000),  # was ValueError (int's 4,300-digit limit)
    (keys.decimal, "9" * 5000, "9" * 5000),  # was rounded to 28 digits: 1e5000
    (keys.decimal, "12345678901234567890123456789.5", "12345678901234567890123456789.5"),
    (keys.decimal, "1e-1000000", "1e-1000000"),  # was a 1,000,002-character key
    (keys.decimal, "1e999999999999", None),
    (keys.literal, "0x" + "f" * 5000, None),  # was ValueError from repr
    (keys.json_value, '"\\ud800"', None),  # a lone surrogate: no log can store it
    (keys.text, "42\ud800", None),
    (keys.integer, "٤٢", None),
])
def test_the_reported_numbers_are_keys_or_red_flags(fn, text, key) -> None:
    assert fn(text) == key


@pytest.mark.parametrize("name", [*keys.NORMALISERS, "choice:yes,no,unknown"])
@FAST
@given(text=replies)
@example(text="1e1000000")
@example(text="9" * 5000)
@example(text="*" * 100_000)
def test_every_normaliser_gives_a_key_or_none(name, text) -> None:
    key = keys.normaliser(name)(text)
    assert key is None or isinstance(key, str) and storable(key)


def _steps() -> list[tuple[str, object, StepInput, int, str]]:
    """(label, task, step, variant, a right reply) for every built-in task and step kind."""
    out: list[tuple[str, object, StepInput, int, str]] = []
    for name, options in (("hanoi", {"disks": 4}), ("chase", {})):
        task = get_task(name, **options)
        step = task.first_step()
        for variant in range(task.variants):
            reply = task.reference_reply(step)
            out.append((f"{name} v{variant}", task, step, variant,
                        task.variant_reply(step, reply, variant) if variant else reply))
    for name, options in (("add", {"digits": 3}), ("multiply", {"digits": 2}), ("sort", {"n": 4})):
        task = get_task(name, **options)
        values: dict[int, str] = {}
        for index in range(task.total_steps):
            step = task.step_input(index, values)
            reply = task.reference_reply(step)
            values[index] = task.judge(step, reply).key
            out.append((f"{name} {step.premise[0]}", task, step, 0, reply))
    for key in [*keys.NORMALISERS, "choice:yes,no"]:
        task = one_prompt("q?", key=key)
        out.append((f"vote {key}", task, task.first_step(), 0, "yes" if key.startswith("choice") else "42"))
    solve = plan_task('#E1 = solve("What is 2 + 2?")\nanswer = #E1')
    out.append(("solve", solve, solve.first_step(), 0, "answer = 4"))
    out.append(("plan proposal", _ProposalTask(8), StepInput(0, ("p", 1)), 0, "#E2 = What is #E1 * 2?\n#E3 = #E2 + 1?"))
    ledger = chain_task(name="ledger", start=100, steps=3, key="decimal", truth=lambda s, i: s + 1,
                        prompt=lambda s, i: f"{s} + 1 =", next_state=lambda s, a: s + 1)
    out.append(("chain decimal", ledger, ledger.first_step(), 0, "101"))
    double = plan_task("#E1 = double(21)\nanswer = #E1", ops=[operation(
        "double", prompt=lambda args: f"Double {args[0]}.", key="integer", truth=lambda args: str(2 * int(args[0])))])
    out.append(("user operation", double, double.first_step(), 0, "value = 42"))
    return out


STEPS = _steps()


@pytest.mark.parametrize(("label", "task", "step", "variant", "reference"), STEPS, ids=[s[0] for s in STEPS])
@FAST
@given(data=st.data())
def test_every_task_judge_gives_a_key_or_a_red_flag(label, task, step, variant, reference, data) -> None:
    reply = spliced(reference, data.draw) if data.draw(st.booleans()) else data.draw(replies)
    direct = task.judge(step, reply) if variant == 0 else task.judge(step, reply, variant=variant)  # no safety net
    assert direct.key is None or isinstance(direct.key, str)
    assert direct.key is not None or direct.red_flag
    verdict = task_judge(task, step, reply, variant)
    assert verdict.key is None or storable(verdict.key)
    assert (verdict.key is None) == bool(verdict.red_flag)


def test_the_right_replies_still_pass() -> None:  # the fuzzing above is not vacuous
    for label, task, step, variant, reference in STEPS:
        assert task_judge(task, step, reference, variant).key is not None, label


def _boom(text: str) -> str:
    raise RuntimeError(f"cannot read {text!r}")


@pytest.mark.parametrize("make", [
    lambda key: one_prompt("q?", key=key),
    lambda key: chain_task(name="c", start=0, steps=1, key=key, prompt=lambda s, i: "q?"),
    lambda key: plan_task("#E1 = op(1)\nanswer = #E1", ops=[operation("op", prompt=lambda a: "q?", key=key)]),
])
@pytest.mark.parametrize(("key", "detail"), [
    (_boom, "the key function raised RuntimeError: cannot read"),
    (lambda text: 42, "the key function returned a int, not a string"),
])
def test_a_users_key_that_raises_is_a_malformed_red_flag(make, key, detail) -> None:
    task = make(key)
    verdict = task_judge(task, task.first_step(), "42")
    assert verdict.red_flag == "malformed" and verdict.detail.startswith(detail), verdict


def test_a_users_judge_that_raises_is_a_malformed_red_flag() -> None:
    class Broken:
        def judge(self, step, reply):
            return int(reply)  # a 5,000-digit reply: ValueError

    verdict = task_judge(Broken(), StepInput(0, None), "9" * 5000)
    assert verdict.red_flag == "malformed" and verdict.detail.startswith("the judge raised ValueError"), verdict


def test_a_huge_number_from_a_users_parser_is_a_red_flag() -> None:
    task = chain_task(name="c", start=0, steps=1, key="integer", prompt=lambda s, i: "q?", parse=lambda r: 10 ** 5000)
    verdict = task_judge(task, task.first_step(), "anything")
    assert verdict.red_flag == "malformed", verdict  # str() of the parsed value raised: never a traceback
