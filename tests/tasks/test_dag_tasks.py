"""Plans, atomic operations and the built-in decomposers, without Ray.

Ground truth is checked against Python's own arithmetic and `sorted`, never against the
plan's own evaluation alone.  No fakes here.
"""

from __future__ import annotations

import itertools
import random

import pytest
from maker.tasks import get_task
from maker.tasks.base import Oracle, StepInput
from maker.tasks.builtin.decomposers import add_plan, batcher_pairs, multiply_plan, sort_plan
from maker.tasks.plans.ops import COLUMN, COMPARE, MUL, OPS, OpOracle, step_from_prompt
from maker.tasks.plans.plan import PlanError, field_value, parse_plan
from maker.tasks.plans.plan_task import OraclePlanTask, PlanTask, plan_file
from maker.tasks.plans.solve import SOLVE, normalize_answer, parse_proposal, proposal_steps

GOOD = """# multiply 12 by 34
#E1 = mul(2, 4)
#E2 = mul(1, 4)
#E3 = mul(2, 3)
#E4 = mul(1, 3)
#E5 = column(0, #E1)
#E6 = column(#E5.carry, #E2, #E3)
#E7 = column(#E6.carry, #E4)
answer = #E7.carry#E7.digit#E6.digit#E5.digit
"""


# -- the plan format -------------------------------------------------------------------
def test_plan_text_round_trips_and_orders_by_dependency() -> None:
    plan = parse_plan(GOOD)
    assert [s.id for s in plan.steps] == [f"E{i}" for i in range(1, 8)]
    assert parse_plan(plan.text()) == plan
    assert plan.levels() == [0, 0, 0, 0, 1, 2, 3]
    assert plan.widths() == [4, 1, 1, 1]
    # written out of order, it is put in dependency order
    shuffled = "\n".join([GOOD.splitlines()[6], *GOOD.splitlines()[1:6], *GOOD.splitlines()[7:]])
    again = parse_plan(shuffled)
    assert again.steps[-1].id == "E7" and {s.id for s in again.steps} == {s.id for s in plan.steps}
    assert all(d < i for i in range(len(again)) for d in again.deps(i))


def test_quoted_arguments_hold_placeholders() -> None:
    plan = parse_plan('#E1 = solve("What is 2 + 3?")\n#E2 = solve("Double #E1, then add 1")\nanswer = #E2')
    assert plan.steps[1].args == ("Double #E1, then add 1",)
    assert plan.deps(1) == [0]
    assert parse_plan(plan.text()) == plan


BAD_PLANS = [
    ("#E1 = mul(2, 3)\n#E2 = column(#E3.carry, #E1)\n#E3 = column(#E2.carry, 1)\nanswer = #E3.digit", "step #E2: cycle #E2 -> #E3 -> #E2"),
    ("#E1 = column(#E1.carry, 1)\nanswer = #E1", "step #E1: cycle #E1 -> #E1"),
    ("#E1 = mul(2, 3)\n#E2 = column(0, #E9)\nanswer = #E2", "step #E2: input #E9 is not defined by any step"),
    ("#E1 = mul(2, 3)\n#E2 = column(#E1.carry, 4)\nanswer = #E2", "step #E2: input #E1.carry never resolves"),
    ("#E1 = mul(2, 3)\n#E2 = mul(4, 5)\nanswer = #E2", "step #E1: its result is never used"),
    ("#E1 = mul(2, 3)\n#E1 = mul(4, 5)\nanswer = #E1", "step #E1: defined twice"),
    ("#E1 = pow(2, 3)\nanswer = #E1", "step #E1: unknown operation 'pow'"),
    ("#E1 = mul(2, 3, 4)\nanswer = #E1", "step #E1: mul takes 2 inputs, got 3"),
    ("#E1 = mul(2, 3)", "the plan has no 'answer = ...' line"),
    ("#E1 = mul(2, 3)\nanswer = #E4", "answer: input #E4 is not defined by any step"),
    ("#E1 = mul(2, 3)\nE2 = mul(1, 1)\nanswer = #E1", "line 2: not a step"),
    ("#E1 = mul(2 3)\nanswer = #E1", "step #E1: expected ','"),
    # a reference resolves exactly (fields are case-sensitive) or the plan is refused
    ("#E1 = mul(3, 4)\n#E2 = column(0, #E1)\nanswer = #E2.Carry#E2.digit",
     "answer: input #E2.Carry never resolves: column answers only digit, carry (fields are lower case: #E2.carry)"),
    ("#E1 = mul(3, 4)\n#E2 = column(#E1.Product, 1)\nanswer = #E2", "step #E2: input #E1.Product never resolves"),
    # placeholders in other notations are named as such, not as an unused step
    ("#E1 = mul(3, 4)\n#E2 = column(0, ${1})\nanswer = #E2", "step #E2: '${1}' is not the placeholder form: write #E1"),
    ("#E1 = mul(3, 4)\n#E2 = column(0, $1)\nanswer = #E2", "step #E2: '$1' is not the placeholder form: write #E1"),
    ("#E1 = mul(3, 4)\n#E2 = column(0, {E1})\nanswer = #E2", "step #E2: '{E1}' is not the placeholder form: write #E1"),
    ("#E1 = mul(3, 4)\nanswer = ${1}", "answer: '${1}' is not the placeholder form: write #E1"),
    ('#E1 = solve("What is 2 + 3?")\n#E2 = solve("Double $1")\nanswer = #E2', "step #E2: '$1' is not the placeholder form"),
    ('#E1 = solve("What is 2 + 3?")\n#E2 = solve("Add {{E1}} and 4")\nanswer = #E2', "step #E2: '{{E1}}' is not"),
]


def test_a_dollar_amount_in_a_question_is_not_a_placeholder() -> None:
    plan = parse_plan('#E1 = solve("A pen costs $3; how much do 4 cost?")\n#E2 = solve("Halve #E1")\nanswer = #E2')
    assert plan.steps[0].args == ("A pen costs $3; how much do 4 cost?",)


@pytest.mark.parametrize("text, message", BAD_PLANS)
def test_bad_plans_are_refused_in_one_line_naming_the_step(text: str, message: str) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_a_literal_input_the_operation_cannot_take_is_refused_before_running() -> None:
    with pytest.raises(PlanError, match=r"step #E1: mul input 'seven' is not a whole number"):
        plan_file(text="#E1 = mul(seven, 3)\nanswer = #E1")
    with pytest.raises(PlanError, match=r"step #E1: mul input '٣' is not a whole number"):  # ASCII digits only
        plan_file(text="#E1 = mul(٣, 4)\nanswer = #E1")


def test_field_values() -> None:
    assert field_value("digit = 3\ncarry = 12", "carry") == "12"
    assert field_value("digit = 3\ncarry = 12", None) == "3"
    with pytest.raises(KeyError):
        field_value("product = 4", "carry")


# -- decomposers: shapes and ground truth ------------------------------------------------
def test_multiply_is_one_wide_level_then_a_chain_of_columns() -> None:
    task = get_task("multiply", digits=10)
    assert task.total_steps == 100 + 19
    assert task.plan.widths() == [100] + [1] * 19
    assert sum(1 for s in task.plan.steps if s.op == "mul") == 100
    assert not task.plan.is_path()


def test_add_is_a_path_and_sort_has_wide_levels() -> None:
    add = get_task("add", digits=30)
    assert add.plan.is_path() and add.plan.widths() == [1] * 30
    sort = get_task("sort", n=500)
    widths = sort.plan.widths()
    assert max(widths) == 250 and len(widths) == 45 and sum(widths) == sort.total_steps


@pytest.mark.parametrize("digits", [1, 2, 3, 7, 12])
def test_multiply_and_add_plans_compute_the_right_answer(digits: int) -> None:
    rng = random.Random(digits)
    for _ in range(5):
        a, b = rng.randrange(10 ** (digits - 1), 10**digits), rng.randrange(10 ** (digits - 1), 10**digits)
        for plan, expected in ((multiply_plan(a, b), a * b), (add_plan(a, b), a + b)):
            task = OraclePlanTask(plan, get_task("add", digits=1).spec)
            answer = task.final_answer(dict(enumerate(task.truth_values())))
            assert int(answer) == expected


def test_tasks_know_their_answer_independently_of_the_plan() -> None:
    m = get_task("multiply", digits=8, instance_seed=3)
    assert m.expected_answer() == str(m.a * m.b)
    assert m.final_answer(dict(enumerate(m.truth_values()))) == m.expected_answer()
    s = get_task("sort", n=37, instance_seed=2)
    assert s.expected_answer() == str(sorted(s.values))
    assert s.final_answer(dict(enumerate(s.truth_values()))) == s.expected_answer()
    assert get_task("multiply", digits=8, instance_seed=4).a != m.a


@pytest.mark.parametrize("n", range(2, 13))
def test_the_sorting_network_sorts_every_zero_one_input(n: int) -> None:
    """The 0-1 principle: a comparator network that sorts every 0/1 input sorts everything."""
    pairs = batcher_pairs(n)
    for bits in itertools.product((0, 1), repeat=n):
        v = list(bits)
        for i, j in pairs:
            if v[i] > v[j]:
                v[i], v[j] = v[j], v[i]
        assert v == sorted(v)


def test_sort_plan_of_odd_sizes_and_duplicates() -> None:
    rng = random.Random(5)
    for n in (2, 3, 33, 100, 129):
        values = [rng.randrange(20) for _ in range(n)]
        task = OraclePlanTask(sort_plan(values), get_task("sort", n=2).spec)
        assert task.final_answer(dict(enumerate(task.truth_values()))) == str(sorted(values))


@pytest.mark.parametrize("options, message", [
    ({"digits": 0}, "--digits must be between 1"), ({"digits": "5"}, "--digits must be an integer"),
])
def test_bad_task_options(options, message) -> None:
    with pytest.raises(ValueError, match=message):
        get_task("multiply", **options)
    with pytest.raises(ValueError, match="--n must be between 2"):
        get_task("sort", n=1)


# -- atomic operations: strict parsers, rule checks, simulator material -------------------
@pytest.mark.parametrize("op, args, reply, key, flag", [
    (MUL, ("7", "8"), "product = 56", "product = 56", None),
    (MUL, ("7", "8"), "Let me think.\nproduct = 54\nproduct = 56", "product = 56", None),
    (MUL, ("7", "8"), "  product=056 ", "product = 56", None),
    (MUL, ("7", "8"), "product = 56 apples", None, "malformed"),
    (MUL, ("7", "8"), "product: 56", "product = 56", None),  # tasks.fields.last_field reads `name:` too
    (MUL, ("7", "8"), "product = 560", None, "rule_breaking"),
    (COLUMN, ("1", "42", "35"), "digit = 8\ncarry = 7", "digit = 8\ncarry = 7", None),
    (COLUMN, ("1", "42", "35"), "carry = 7\ndigit = 8", "digit = 8\ncarry = 7", None),
    (COLUMN, ("1", "42", "35"), "digit = 18\ncarry = 6", None, "malformed"),
    (COLUMN, ("1", "42", "35"), "digit = 8", None, "malformed"),
    (COLUMN, ("1", "42", "35"), "digit = 0\ncarry = 30", None, "rule_breaking"),
    (COMPARE, ("9", "4"), "low = 4\nhigh = 9", "low = 4\nhigh = 9", None),
    (COMPARE, ("9", "4"), "low = 9\nhigh = 4", "low = 9\nhigh = 4", None),
    (COMPARE, ("9", "4"), "low = 4\nhigh = 8", None, "rule_breaking"),
    (COMPARE, ("9", "4"), "low = 4, high = 9", None, "malformed"),
    (SOLVE, ("q",), "answer = 1,024.0.", "answer = 1024", None),
    (SOLVE, ("q",), "The answer is 4", None, "malformed"),
    (SOLVE, ("q",), "answer = #E2", None, "rule_breaking"),
])
def test_operation_parsers(op, args, reply, key, flag) -> None:
    verdict = op.judge(args, reply)
    assert (verdict.key, verdict.red_flag) == (key, flag)


@pytest.mark.parametrize("op, args", [
    (MUL, ("7", "8")), (MUL, ("0", "9")), (MUL, ("1", "1")), (COLUMN, ("0", "5")), (COLUMN, ("9", "81", "72", "63")),
    (COMPARE, ("3", "3")), (COMPARE, ("-5", "12")),
])
def test_reference_wrong_and_broken_replies_are_what_they_claim(op, args) -> None:
    right = op.reference(args)
    assert op.judge(args, right).key == right
    for wrong in op.wrong(args):
        assert op.judge(args, wrong).key not in (None, right)
    for kind in ("malformed", "rule_breaking"):
        assert op.judge(args, op.broken(args, kind)).red_flag == kind


def test_column_reference_is_the_column_sum() -> None:
    rng = random.Random(1)
    for _ in range(200):
        args = tuple(str(rng.randrange(90)) for _ in range(rng.randrange(1, 8)))
        total = sum(map(int, args))
        assert COLUMN.reference(args) == f"digit = {total % 10}\ncarry = {total // 10}"


def test_a_step_can_be_read_back_from_its_prompt() -> None:
    for op, args in ((MUL, ("7", "8")), (COLUMN, ("3", "42", "8")), (COLUMN, ("5",)), (COMPARE, ("9", "-4"))):
        for style in ("chat", "completion"):
            prompt = op.prompt(args, style)
            text = prompt if isinstance(prompt, str) else "\n".join(m["content"] for m in prompt)
            assert step_from_prompt(text).premise == (op.name, args)
    assert step_from_prompt("What is the capital of France?") is None
    assert isinstance(OpOracle(), Oracle)


# -- plan tasks as tasks ------------------------------------------------------------------
def test_plan_steps_see_their_inputs_filled_in() -> None:
    task = plan_file(text=GOOD)
    values = {0: "product = 8", 4: "digit = 8\ncarry = 0"}
    step = task.step_input(4, values)
    assert step == StepInput(4, ("column", ("0", "8")))
    assert task.step_input(5, {**values, 1: "product = 4", 2: "product = 6"}).premise == ("column", ("0", "4", "6"))
    with pytest.raises(KeyError):
        task.step_input(5, values)
    assert task.label(6) == "#E7 column"


def test_a_path_also_runs_as_a_chain_and_a_dag_does_not() -> None:
    add = get_task("add", digits=6)
    truth = add.truth_values()
    step = add.first_step()
    for i in range(add.total_steps):
        assert step == add.step_input(i, dict(enumerate(truth)))
        step = add.advance(step, truth[i])
    assert add.is_solved(step)
    multiply = get_task("multiply", digits=2)
    with pytest.raises(ValueError, match="not a chain"):
        multiply.step_after(3, multiply.truth(3))


def test_only_plans_of_operations_with_ground_truth_are_oracles() -> None:
    assert isinstance(get_task("sort", n=4), Oracle)
    solve = get_task("solve", problem="p", plan='#E1 = solve("p")\nanswer = #E1')
    assert isinstance(solve, PlanTask) and not isinstance(solve, Oracle)
    assert set(OPS) == {"mul", "column", "cmp", "solve"}


# -- proposals of the LLM decomposer ---------------------------------------------------------
@pytest.mark.parametrize("reply, inputs, key, flag", [
    ("atomic", 0, "atomic", None),
    (" Atomic.\n", 2, "atomic", None),
    ("#E7 = What is 2 + 3?\n#E9 = What is #E7 * 4?", 0, "#E1 = What is 2 + 3?\n#E2 = What is #E1 * 4?", None),
    ("Plan:\n#E3: add   #E1 and 5\n#E4 = double #E3.answer", 2, "#E3 = add #E1 and 5\n#E4 = double #E3", None),
    ("#E1 = a\n#E2 = b using #E5", 0, None, "rule_breaking"),
    ("#E1 = a\n#E2 = b", 0, None, "rule_breaking"),
    ("#E1 = a using #E2\n#E2 = b", 0, None, "rule_breaking"),
    ("#E1 = just the problem again", 0, None, "rule_breaking"),
    ("#E2 = a\n#E3 = b from #E2", 2, None, "rule_breaking"),
    ("\n".join(f"#E{i} = s{i} #E{i - 1}" for i in range(1, 11)), 0, None, "rule_breaking"),
    ("I would first add the numbers.", 0, None, "malformed"),
    ("#E1 =", 0, None, "malformed"),
])
def test_proposal_parser(reply, inputs, key, flag) -> None:
    verdict = parse_proposal(reply, inputs, 8)
    assert (verdict.key, verdict.red_flag) == (key, flag)


def test_proposal_keys_are_valid_replies_and_list_their_steps() -> None:
    key = parse_proposal("#E3 = x #E1\n#E4 = y #E3", 2, 8).key
    assert parse_proposal(key, 2, 8).key == key
    assert proposal_steps(key) == ["x #E1", "y #E3"]
    assert normalize_answer(" 12.50 ") == "12.5" and normalize_answer("Paris.") == "Paris"
