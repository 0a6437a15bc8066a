"""A user's own plan steps: voted operations and tool steps (no Ray here)."""

from __future__ import annotations

import pytest
from maker.tasks.plans.plan import PlanError
from maker.tasks.plans.plan_task import plan_file, plan_task
from maker.tasks.plans.user_ops import ToolError, operation, tool

DOUBLE = operation("double", prompt=lambda args: f"2 * {args[0]} =", key="integer",
                   parse=lambda reply: reply.split("=")[-1], truth=lambda args: 2 * int(args[0]),
                   valid=lambda args, key: int(key) % 2 == 0)


@pytest.mark.parametrize(
    "reply,key,flag",
    [
        ("42", "value = 42", None),
        ("2 * 21 = **42**", "value = 42", None),
        ("value = 42", "value = 42", None),  # the vote key reads back as itself
        ("43", None, "rule_breaking"),
        ("forty-two", None, "malformed"),
    ],
)
def test_a_user_operation_judges_strictly(reply, key, flag) -> None:
    verdict = DOUBLE.judge(("21",), reply)
    assert (verdict.key, verdict.red_flag) == (key, flag)


def test_a_parser_that_raises_is_malformed() -> None:
    op = operation("boom", prompt=lambda a: "?", parse=lambda r: 1 / 0)
    verdict = op.judge((), "anything")
    assert verdict.red_flag == "malformed" and "ZeroDivisionError" in verdict.detail


def test_plan_with_a_user_op_and_a_pure_tool_has_ground_truth() -> None:
    total = tool("total", lambda *xs: sum(int(x) for x in xs), pure=True)
    task = plan_task("#E1 = double(4)\n#E2 = mul(3, 5)\n#E3 = total(#E1, #E2.product, 1)\nanswer = #E3",
                     ops=[DOUBLE, total])
    assert [task.is_tool(i) for i in range(3)] == [False, False, True] and task.is_pure_tool(2)
    assert task.truth_values() == ["value = 8", "product = 15", "value = 24"]
    assert task.expected_answer() == "24"
    tool_step = task.step_input(2, {0: "value = 8", 1: "product = 15"})
    assert task.run_tool(tool_step) == "value = 24"
    assert task.judge(tool_step, "value = 24").key == "value = 24"  # replay --verify re-runs a pure tool
    assert task.judge(tool_step, "value = 25").red_flag == "rule_breaking"


def test_a_tool_with_side_effects_is_never_run_for_ground_truth() -> None:
    calls = []
    total = tool("total", lambda *xs: calls.append(xs) or sum(int(x) for x in xs))
    task = plan_task("#E1 = double(4)\n#E2 = total(#E1, 1)\n#E3 = double(#E2)\nanswer = #E3", ops=[DOUBLE, total])
    assert task.truth_values() == ["value = 8", None, None]  # unknown: finding out would be a side effect
    assert task.expected_answer() is None and task.gradable_steps() == [0]
    with pytest.raises(ValueError, match="not pure"):
        total.reference(("8", "1"))
    # a run's own call on right inputs gives the true output, and so the rest of the truth
    assert task.truth_values({1: "value = 9"}) == ["value = 8", "value = 9", "value = 18"]
    assert task.expected_answer({1: "value = 9"}) == "18" and task.truth(1) is None
    assert calls == []


def test_a_tool_that_raises_names_itself() -> None:
    bad = tool("parse_all", lambda x: int(x))
    with pytest.raises(ToolError, match="tool parse_all raised ValueError: invalid literal"):
        bad.run(("x",))


def test_inline_tool_in_a_plan_file(tmp_path) -> None:
    (tmp_path / "my_tools_q15.py").write_text("def add(*xs):\n    return sum(int(x) for x in xs)\n")
    text = f"#E1 = mul(2, 3)\n#E2 = tool:{tmp_path}/my_tools_q15.py:add(#E1, 4)\nanswer = #E2"
    task = plan_file(text=text)
    assert task.is_tool(1) and task.expected_answer() is None  # not declared pure: never run for ground truth
    assert task.expected_answer({1: task.run_tool(task.step_input(1, {0: "product = 6"}))}) == "10"


@pytest.mark.parametrize(
    "make,needle",
    [
        (lambda: tool("mul", lambda a, b: 0), "clashes with the built-in operation mul"),
        (lambda: operation("column", prompt=lambda a: ""), "clashes with the built-in operation column"),
        (lambda: plan_task("#E1 = mul(2, 3)\nanswer = #E1", ops={"cmp": lambda a: a}), "clashes with the built-in"),
        (lambda: plan_file(text="#E1 = tool:no_such_mod_q15:f(1)\nanswer = #E1"), "no module named 'no_such_mod_q15'"),
        (lambda: plan_task("#E1 = nope(1)\nanswer = #E1"), "unknown operation 'nope'"),
    ],
)
def test_bad_operations_are_one_line(make, needle) -> None:
    with pytest.raises(PlanError) as info:
        make()
    assert needle in str(info.value) and "\n" not in str(info.value)
