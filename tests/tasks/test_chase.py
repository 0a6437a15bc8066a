"""The chase task: its list, strict parser, rule, ground truth and prompt variants."""

from __future__ import annotations

import pytest
from maker.tasks import TASKS, get_task
from maker.tasks.base import Oracle, StepInput, Task, task_judge, task_prompt
from maker.tasks.builtin.chase import FORMS, Chase


@pytest.fixture(scope="module")
def chase() -> Chase:
    return Chase(hops=500, digits=2, list_seed=3)


def test_registered_and_protocols(chase: Chase) -> None:
    assert TASKS["chase"] is Chase
    assert isinstance(chase, Task) and isinstance(chase, Oracle)
    assert get_task("chase", hops=7).total_steps == 7
    assert Chase.prompt_style == "completion" and Chase.stop == ("\n",)


@pytest.mark.parametrize("digits,nodes", [(2, 90), (3, 900)])
def test_the_list_is_one_cycle_through_every_node(digits: int, nodes: int) -> None:
    t = Chase(hops=10, digits=digits)
    seen, node = set(), t.first_step().premise
    for _ in range(nodes):
        assert node not in seen
        seen.add(node)
        node = t.next[node]
    assert node == t.first_step().premise and len(seen) == nodes
    assert seen == set(range(10 ** (digits - 1), 10**digits))
    assert all(t.value[a] not in (a, t.next[a]) for a in seen)


def test_lists_differ_by_seed_and_repeat_by_seed() -> None:
    assert Chase(list_seed=1).order == Chase(list_seed=1).order
    assert Chase(list_seed=1).order != Chase(list_seed=2).order


def test_truth_follows_the_chain_and_ends_solved(chase: Chase) -> None:
    step = chase.first_step()
    for i in range(chase.total_steps):
        assert chase.judge(step, chase.reference_reply(step)).key == chase.truth(i)
        assert not chase.is_solved(step)
        step = chase.advance(step, chase.truth(i))
    assert step.index == chase.total_steps and chase.is_solved(step)


def test_a_wrong_hop_is_not_solved_at_the_end() -> None:
    t = Chase(hops=3)
    step = t.first_step()
    step = t.advance(step, t.wrong_replies(step)[0])
    for _ in range(2):
        step = t.advance(step, t.reference_reply(step))
    assert step.index == 3 and not t.is_solved(step)


@pytest.mark.parametrize(
    "reply,key,flag",
    [
        ("42", "42", None),
        (" 42", "42", None),
        (" 42.\n", "42", None),
        ("42 ", "42", None),
        ("", None, "malformed"),
        ("next: 42", None, "malformed"),
        ("42, 43", None, "malformed"),
        ("4", None, "malformed"),
        ("420", None, "malformed"),
        ("042", None, "malformed"),
        ("07", None, "malformed"),
        ("forty-two", None, "malformed"),
        ("42\n\nnode 42: value 1, next 2", None, "malformed"),
        ("4" * 10_000, None, "malformed"),
    ],
)
def test_strict_parser(reply: str, key: str | None, flag: str | None) -> None:
    t = Chase(hops=3)
    step = StepInput(0, 17)
    verdict = t.judge(step, reply)
    assert (verdict.key, verdict.red_flag) == (key, flag)


def test_a_node_cannot_point_to_itself() -> None:
    t = Chase(hops=3)
    verdict = t.judge(StepInput(0, 17), "17")
    assert verdict.key is None and verdict.red_flag == "rule_breaking"


def test_wrong_and_broken_replies(chase: Chase) -> None:
    for node in chase.order[:40]:
        step = StepInput(5, node)
        right = chase.reference_reply(step)
        wrong = chase.wrong_replies(step)
        assert wrong and right not in wrong and len(set(wrong)) == len(wrong)
        assert str(chase.value[node]) in wrong  # the distractor is the classic error
        assert all(chase.judge(step, w).key == w for w in wrong)
        assert chase.judge(step, chase.broken_reply(step, "malformed")).red_flag == "malformed"
        assert chase.judge(step, chase.broken_reply(step, "rule_breaking")).red_flag == "rule_breaking"


def test_step_after_rebuilds_from_the_key(chase: Chase) -> None:
    assert chase.step_after(4, "55") == StepInput(5, 55)
    with pytest.raises(ValueError):
        chase.step_after(4, "5")
    with pytest.raises(ValueError):
        chase.advance(StepInput(0, 55), "55")


def test_every_variant_shows_the_record_and_reads_the_same_key(chase: Chase) -> None:
    step = StepInput(3, chase.order[3])
    node, value, nxt = step.premise, chase.value[step.premise], chase.next[step.premise]
    assert chase.variants == len(FORMS) >= 4
    texts = set()
    for v in range(chase.variants):
        prompt = task_prompt(chase, step, "completion", v)
        assert isinstance(prompt, str)
        last = prompt.rsplit("\n\n", 1)[1]
        assert str(node) in last and str(value) in last and str(nxt) in last
        assert prompt.endswith(FORMS[v].question)
        assert task_judge(chase, step, f" {nxt}", v).key == str(nxt)
        texts.add(prompt)
    assert len(texts) == chase.variants
    chat = chase.prompt(step, "chat")
    assert isinstance(chat, list) and str(nxt) in chat[-1]["content"]
    with pytest.raises(ValueError):
        chase.prompt(step, "completion", variant=len(FORMS))


def test_few_shot_examples_answer_correctly_and_never_name_the_walked_list(chase: Chase) -> None:
    """Each example's answer is its own record's next pointer (a model copying the pattern
    is right), and examples are fixed per variant whatever list is walked."""
    for v, shots in enumerate(chase._shots):
        assert shots == Chase(list_seed=99)._shots[v]
        for a, val, n in shots:
            assert len({a, val, n}) == 3


@pytest.mark.parametrize(
    "options,needle",
    [
        ({"hops": 0}, "--hops"),
        ({"hops": -1}, "--hops"),
        ({"hops": "5"}, "--hops"),
        ({"digits": 4}, "--digits"),
        ({"digits": True}, "--digits"),
        ({"list_seed": 1.5}, "--list-seed"),
    ],
)
def test_bad_options(options: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        Chase(**options)
