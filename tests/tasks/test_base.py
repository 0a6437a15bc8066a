"""The `Task` and `Oracle` protocols (#27 §4): every member the runtime reads is declared,
the optional ones with their defaults, and a task that leaves them out is still a task."""

from __future__ import annotations

import pytest
from maker.tasks import get_task
from maker.tasks.base import OPTIONAL, Oracle, StepInput, Task, TaskSpec, Verdict, optional, variants_of


class Bare:
    """A user's task with the required members only (it subclasses nothing)."""

    spec = TaskSpec("bare", {"n": 1})
    total_steps = 1

    def first_step(self) -> StepInput:
        return StepInput(0, ())

    def prompt(self, step, style="chat"):
        return "say 1"

    def judge(self, step, reply):
        return Verdict(reply.strip() or None)

    def step_after(self, index, key):
        return StepInput(index + 1, (key,))

    def is_solved(self, step):
        return step.index >= 1


def test_a_task_without_optional_members_is_a_task_and_reads_the_declared_defaults() -> None:
    task = Bare()
    assert isinstance(task, Task) and not isinstance(task, Oracle)
    assert optional(task, "stop") == () and optional(task, "red_flags") == () and variants_of(task) == 1
    assert optional(task, "prompt_style") is None and optional(task, "maker_origin") is None
    assert optional(task, "describe")() == "bare n=1" and optional(task, "label")(3) == "#3"
    assert optional(task, "variant_reply") is None and optional(task, "voted_steps") is None
    with pytest.raises(KeyError):
        optional(task, "not_a_member")


def test_a_task_missing_a_required_member_is_not_a_task() -> None:
    class NoJudge(Bare):
        judge = None  # type: ignore[assignment]

    assert not isinstance(NoJudge(), Task) and not isinstance(object(), Oracle)


def test_built_in_tasks_give_their_own_optional_members() -> None:
    hanoi = get_task("hanoi", disks=3)
    assert isinstance(hanoi, Task) and isinstance(hanoi, Oracle)
    assert optional(hanoi, "variants") == hanoi.variants > 1
    assert optional(hanoi, "variant_reply") == hanoi.variant_reply
    assert optional(get_task("chase"), "stop") == ("\n",)


def test_every_optional_member_has_a_declared_default() -> None:
    for name, owner in OPTIONAL.items():
        assert name in owner.__dict__, name
