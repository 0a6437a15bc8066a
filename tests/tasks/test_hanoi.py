"""Hanoi: ground truth, strict parser, rule check, canonical keys."""

from __future__ import annotations

import pytest
from maker.tasks import get_task
from maker.tasks.builtin.hanoi import Hanoi
from maker.tasks.builtin.hanoi_rules import apply_move, format_key


def walk(task: Hanoi):
    step = task.first_step()
    for i in range(task.total_steps):
        yield i, step
        step = task.advance(step, task.truth(i))
    yield task.total_steps, step


@pytest.mark.parametrize("disks", [1, 2, 3, 4, 5, 7, 8])
def test_ground_truth_solves_and_matches_the_strategy(disks: int) -> None:
    task = Hanoi(disks)
    last = None
    for i, step in walk(task):
        if i < task.total_steps:
            assert task.reference_reply(step) == task.truth(i)
        last = step
    assert task.is_solved(last)
    assert last.premise[0] == ((), (), tuple(range(disks, 0, -1)))


def test_truth_is_constant_time_at_25_disks() -> None:
    task = Hanoi(25)
    i = task.total_steps - 1
    assert task.truth(i).startswith("move = [1,")
    pegs = task.truth_pegs(i)
    assert pegs == ((), (), tuple(range(25, 0, -1)))
    # the middle move is the biggest disk going 0 -> 2
    assert task.truth_move(2**24 - 1) == (25, 0, 2)


@pytest.mark.parametrize("bad", [0, -1, 41, 1.5, "3", True])
def test_disks_out_of_range(bad) -> None:
    with pytest.raises(ValueError, match="disks"):
        get_task("hanoi", disks=bad)


def test_prompt_holds_only_step_local_context() -> None:
    task = Hanoi(4)
    step = task.advance(task.first_step(), task.truth(0))
    system, user = (m["content"] for m in task.prompt(step))
    assert "Previous move: [1, 0, 1]" in user
    assert "Current state: [[4, 3, 2], [1], []]" in user
    assert "0 -> 1 -> 2 -> 0" in system
    odd = Hanoi(3).prompt(Hanoi(3).first_step())[0]["content"]
    assert "0 -> 2 -> 1 -> 0" in odd
    assert task.prompt(step, "completion").endswith("move = [")


CASES = [
    ("move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]", "ok"),
    ("Sure!\nmove=[1,0,1]\nnext_state=[[4,3,2],[1],[]]\n", "ok"),
    ("move = [2, 0, 1]\nmove = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]", "ok"),  # last occurrence wins
    ("move = [1, 0, 1]", "malformed"),
    ("next_state = [[4, 3, 2], [1], []]", "malformed"),
    ("move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1]]", "malformed"),
    ("move = [1, 0, 1]\nnext_state = [[4, 3, 2, 2], [1], []]", "malformed"),
    ("move = [1, 0, 1]\nnext_state = [[4, 3], [1], []]", "malformed"),
    ("move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], [5]]", "malformed"),
    ("move = ['1', 0, 1]\nnext_state = [[4, 3, 2], [1], []]", "malformed"),
    ("move = [1.0, 0, 1]\nnext_state = [[4, 3, 2], [1], []]", "malformed"),
    ("move = [-1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]", "malformed"),
    ("move = [2, 0, 1]\nnext_state = [[4, 3, 1], [2], []]", "rule_breaking"),  # not the top disk
    ("move = [1, 0, 0]\nnext_state = [[4, 3, 2, 1], [], []]", "rule_breaking"),
    ("move = [1, 0, 3]\nnext_state = [[4, 3, 2], [], [1]]", "rule_breaking"),
    ("move = [1, 0, 1]\nnext_state = [[4, 3, 2], [], [1]]", "rule_breaking"),  # state not the move applied
    ("move = [1, 0, 1]\nnext_state = __import__('os').system('rm -rf /')", "malformed"),
    ("", "malformed"),
    ("move = [1, 0, 1]\n" + "x" * 30000 + "\nnext_state = [[4, 3, 2], [1], []]", "malformed"),
]


@pytest.mark.parametrize("reply,expected", CASES)
def test_strict_parser(reply: str, expected: str) -> None:
    task = Hanoi(4)
    verdict = task.judge(task.first_step(), reply)
    if expected == "ok":
        assert verdict.key == "move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]"
        assert verdict.red_flag is None
    else:
        assert verdict.key is None
        assert verdict.red_flag == expected
        assert verdict.detail


def test_canonical_key_ignores_formatting() -> None:
    task = Hanoi(4)
    step = task.first_step()
    a = task.judge(step, "move = [1, 0, 1]\nnext_state = [[4, 3, 2], [1], []]").key
    b = task.judge(step, "I think:\n  move=[ 1,0 ,1 ]\n\n next_state = [ [4,3,2] , [1] ,[ ] ]  ").key
    assert a == b


def test_wrong_replies_are_legal_but_not_the_strategy() -> None:
    task = Hanoi(5)
    for i, step in walk(task):
        if i == task.total_steps:
            break
        wrong = task.wrong_replies(step)
        assert wrong and task.truth(i) not in wrong
        for reply in wrong:
            assert task.judge(step, reply).key == reply
        assert task.judge(step, task.broken_reply(step, "malformed")).red_flag == "malformed"
        assert task.judge(step, task.broken_reply(step, "rule_breaking")).red_flag == "rule_breaking"


def test_apply_move_rules() -> None:
    pegs = ((3, 2), (1,), ())
    assert apply_move(pegs, (1, 1, 2)) == ((3, 2), (), (1,))
    assert apply_move(pegs, (2, 0, 1)) is None  # onto a smaller disk
    assert apply_move(pegs, (3, 0, 2)) is None  # not on top
    assert format_key((1, 1, 2), ((3, 2), (), (1,))) == "move = [1, 1, 2]\nnext_state = [[3, 2], [], [1]]"


def test_step_after_rebuilds_from_the_key_alone() -> None:
    task = Hanoi(6)
    step = task.advance(task.first_step(), task.truth(0))
    fresh = Hanoi(6)  # no cache of parsed keys
    assert fresh.step_after(0, task.truth(0)) == step
    with pytest.raises(ValueError):
        fresh.step_after(0, "garbage")
