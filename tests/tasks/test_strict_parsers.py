"""Every task parser reads only the last candidate of each field, strictly, in ASCII digits.

One table per parser; the same kinds of reply in each: the answer after a rejected
candidate (plain, bold, with a trailing note), a last candidate that does not parse
(never fall back to the earlier one), other scripts' digits, and non-answers.  The last
test runs a whole Hanoi chain against a model that answers every step right in the
"reject a candidate, then answer" style (the fake sits at the model boundary).
"""

from __future__ import annotations

import asyncio
import types

import pytest
from maker.cluster.simulated.scripted import ScriptedModel
from maker.tasks import get_task
from maker.tasks.builtin.hanoi import Hanoi
from maker.tasks.builtin.hanoi_rules import premise_from_prompt
from maker.tasks.builtin.hanoi_variants import render
from maker.tasks.keys import json_value, literal
from maker.tasks.plans.ops import COLUMN, COMPARE, MUL
from maker.tasks.plans.solve import SOLVE, parse_proposal

from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.runtime.chain.loop import run_segment
from maker.runtime.chain.segment import SegmentJob

# Hanoi, 4 disks, state [[4,3,2],[1],[]] after move [1,0,1]: the right answer is [2, 0, 2].
RIGHT = "move = [2, 0, 2]\nnext_state = [[4, 3], [1], [2]]"
REJECTED = "If disk 1 moved again: move = [1, 1, 2]\nnext_state = [[4, 3, 2], [], [1]]\nBut disk 1 just moved, so:\n"

HANOI = [
    (REJECTED + "**move = [2, 0, 2]**\n**next_state = [[4, 3], [1], [2]]**", RIGHT),
    (REJECTED + "move = [2, 0, 2] (final)\nnext_state = [[4, 3], [1], [2]] (final)", RIGHT),
    (REJECTED + "`move = [2, 0, 2]`\n`next_state = [[4, 3], [1], [2]]`", RIGHT),
    (REJECTED + "- **move**: [2, 0, 2]\n- **next_state**: [[4, 3], [1], [2]]", RIGHT),
    (REJECTED + "move = [2, 0, 2]\nnext_state = [[4, 3], [1], [2]] <- answer", RIGHT),
    # the last candidate does not parse: a red flag, never the earlier candidate
    (REJECTED + "move = [2, 0, two]\nnext_state = [[4, 3], [1], [2]]", "malformed"),
    (RIGHT + "\nmove = ?", "malformed"),
    (RIGHT + "\nnext_state = [[4, 3], [1], [2]] and more", "malformed"),
    ("move = [٢, ٠, ٢]\nnext_state = [[4, 3], [1], [2]]", "malformed"),  # Arabic-Indic digits
    ("move = [2, 0, 2]\nnext_state = [[４, 3], [1], [2]]", "malformed"),  # a full-width digit
    (RIGHT + "\nmove = [٢, 0, 2]", "malformed"),
    ("move = [2, 0, 2]", "malformed"),
    # the last candidate in other markup: read as the field, never the rejected one before it
    (REJECTED + "*move*: [2, 0, 2]\n*next_state*: [[4, 3], [1], [2]]", RIGHT),
    (REJECTED + "_move_ = [2, 0, 2]\n_next_state_ = [[4, 3], [1], [2]]", RIGHT),
    (REJECTED + "__move__: [2, 0, 2]\n__next_state__: [[4, 3], [1], [2]]", RIGHT),
    (REJECTED + "**move:** [2, 0, 2]\n**next_state:** [[4, 3], [1], [2]]", RIGHT),
    (REJECTED + "*move = [2, 0, 2]*\n*next_state = [[4, 3], [1], [2]]*", RIGHT),
    (REJECTED + "| move | [2, 0, 2] |\n| next_state | [[4, 3], [1], [2]] |", RIGHT),
    (REJECTED + "move\uff1a [2, 0, 2]\nnext_state \uff1d [[4, 3], [1], [2]]", RIGHT),  # full-width : and =
    # ... or named again in a form that gives no value: a red flag, never the rejected candidate
    (REJECTED + "move -> [2, 0, 2]\nnext_state -> [[4, 3], [1], [2]]", "malformed"),
    (REJECTED + "the move is [2, 0, 2]\nnext_state is [[4, 3], [1], [2]]", "malformed"),
    (REJECTED + '"move": [2, 0, 2],\n"next_state": [[4, 3], [1], [2]]', "malformed"),
    (REJECTED + "<move>[2, 0, 2]</move>\n<next_state>[[4, 3], [1], [2]]</next_state>", "malformed"),
]


def _hanoi_second_step() -> tuple[Hanoi, object]:
    task = Hanoi(4)
    return task, task.advance(task.first_step(), task.truth(0))


@pytest.mark.parametrize(("reply", "expected"), HANOI)
def test_hanoi_reads_the_last_candidate_only(reply: str, expected: str) -> None:
    task, step = _hanoi_second_step()
    verdict = task.judge(step, reply)
    if expected == "malformed":
        assert (verdict.key, verdict.red_flag) == (None, "malformed") and verdict.detail
    else:
        assert verdict == type(verdict)(expected)


@pytest.mark.parametrize("variant", [1, 2, 3])
@pytest.mark.parametrize(
    ("last", "expected"),
    [("**{move}**\n**{state}**", RIGHT), ("{move} (final)\n{state} (final)", RIGHT), ("{move}\nmove = ?", "malformed")],
)
def test_hanoi_variants_read_the_last_candidate_only(variant: int, last: str, expected: str) -> None:
    task, step = _hanoi_second_step()
    move, state = render(RIGHT, variant).split("\n")
    reply = render(REJECTED, variant) + last.format(move=move, state=state)
    verdict = task.judge(step, reply, variant=variant)
    assert verdict.key == (None if expected == "malformed" else expected)
    assert verdict.red_flag == ("malformed" if expected == "malformed" else None)


@pytest.mark.parametrize(
    ("reply", "key"),
    [(" 57.", "57"), ("٥٧", None), ("５７", None), ("57\n", "57"), ("5 7", None), ("", None)],
)
def test_chase_reads_ascii_digits_only(reply: str, key: str | None) -> None:
    task = get_task("chase", hops=5)
    step = task.first_step()
    verdict = task.judge(step, reply.replace("57", task.reference_reply(step)) if key else reply)
    assert verdict.key == (task.reference_reply(step) if key else None)
    if key is None:
        assert verdict.red_flag == "malformed"


OPS = [
    (MUL, ("7", "8"), "product = 54\nNo, 7 * 8 is:\n**product = 56**", "product = 56"),
    (MUL, ("7", "8"), "product = 56 (final)", "product = 56"),
    (MUL, ("7", "8"), "product = 56\nproduct = fifty-six", None),
    (MUL, ("7", "8"), "product = ٥٦", None),
    (MUL, ("7", "8"), "product = unknown", None),
    (MUL, ("7", "8"), "product = 54\nNo:\n*product*: 56", "product = 56"),
    (MUL, ("7", "8"), "product = 54\nNo, the product is 56", None),  # named last without a value: never 54
    (COLUMN, ("1", "42", "35"), "digit = 7\ncarry = 7\nwait, 1+42+35 = 78:\ndigit = 8\ncarry = 7", "digit = 8\ncarry = 7"),
    (COLUMN, ("1", "42", "35"), "digit = 8\ncarry = 7\ndigit = 8.", None),
    (COLUMN, ("1", "42", "35"), "digit = ٨\ncarry = 7", None),
    (COMPARE, ("9", "4"), "low = 9\nhigh = 4\nI swapped them:\nlow = 4\nhigh = 9", "low = 4\nhigh = 9"),
    (COMPARE, ("9", "4"), "low = 4\nhigh = 9\nhigh = ٩", None),
    (SOLVE, ("What is 2 + 2?",), "answer = 5\nNo:\nanswer = **4** (final)", "answer = 4"),
    (SOLVE, ("What is 2 + 2?",), "answer = 4\nanswer = unknown", None),
    (SOLVE, ("What is 2 + 2?",), "answer = unknown", None),
    (SOLVE, ("What is 2 + 2?",), "answer = 5\nNo, the answer is 4.", None),
    (SOLVE, ("What is 2 + 2?",), "answer: N/A", None),
    (SOLVE, ("What is 2 + 2?",), "answer = I don't know.", None),
    (SOLVE, ("What is 2 + 2?",), "answer = ٤", None),
    (SOLVE, ("Name a colour",), "answer = none of them: blue", "answer = none of them: blue"),
]


@pytest.mark.parametrize(("op", "args", "reply", "key"), OPS)
def test_plan_operations_read_the_last_candidate_only(op, args, reply: str, key: str | None) -> None:
    verdict = op.judge(args, reply)
    assert verdict.key == key
    if key is None:
        assert verdict.red_flag == "malformed" and verdict.detail


@pytest.mark.parametrize(
    ("reply", "key"),
    [
        ("#E1 = What is 2 + 3?\n#E2 = What is #E1 * 4?", "#E1 = What is 2 + 3?\n#E2 = What is #E1 * 4?"),
        ("#E١ = What is 2 + 3?\n#E2 = What is #E1 * 4?", None),
        ("#E1 = What is ٢ + 3?\n#E2 = What is #E1 * 4?", None),
    ],
)
def test_proposals_read_ascii_digits_only(reply: str, key: str | None) -> None:
    verdict = parse_proposal(reply, 0, 8)
    assert verdict.key == key
    if key is None:
        assert verdict.red_flag == "malformed"


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        ("#E1 = What is 2 + 3?\n#E2 = What is ${1} * 4?", "'${1}' is not the placeholder form"),
        ("#E1 = What is 2 + 3?\n#E2 = What is {E1} * 4?", "'{E1}' is not the placeholder form"),
        ("#E1 = What is 2 + 3?\n#E2 = What is $1 * 4?", "'$1' is not the placeholder form"),
        ("#E1 = What is 2 + 3?\n#E2 = What is #E1.result * 4?", "'#E1.result' names a field"),
    ],
)
def test_proposal_references_resolve_exactly_or_are_refused(reply: str, detail: str) -> None:
    """A placeholder in another notation is named as such (not 'a result is never used'),
    and a field a solve step does not have is never left in the question's text."""
    verdict = parse_proposal(reply, 0, 8)
    assert verdict.key is None and verdict.red_flag == "rule_breaking" and detail in verdict.detail
    assert parse_proposal("#E1 = Pay $5 for 2 + 3\n#E2 = What is #E1.answer * 4?", 0, 8).key  # a price; #E1.answer is #E1


@pytest.mark.parametrize(
    ("fn", "raw", "key"),
    [
        (json_value, '"abc"', '"abc"'),  # a JSON string keeps its quotes: they are the value's
        (json_value, '`"abc"`', '"abc"'),
        (json_value, "[٤]", None),
        (literal, "'abc'", "'abc'"),
        (literal, "'٤'", None),
    ],
)
def test_normalisers_keep_quotes_that_are_part_of_the_value(fn, raw: str, key: str | None) -> None:
    assert fn(raw) == key


@pytest.mark.parametrize("style", ["**{0}** (final)\n**{1}** (final)", "*{m}*: {mv}\n*{s}*: {sv}"])
def test_a_chain_answered_right_after_a_rejected_candidate_is_decided_right(style: str) -> None:
    """The issue's end-to-end case: every reply names a wrong legal move first, rejects it,
    then gives the right answer in bold with a note.  Every step must be decided right,
    with no red flag."""
    task = Hanoi(3)

    def thinks_aloud(prompt: str, request) -> str:
        pegs, prev = premise_from_prompt(prompt)
        step = type(task.first_step())(0, (pegs, prev))
        wrong = task.wrong_replies(step)[0]
        right = task.reference_reply(step).split("\n")
        (m, mv), (s, sv) = (line.split(" = ") for line in right)
        return f"Maybe:\n{wrong}\nNo, that breaks the strategy, so:\n" + style.format(*right, m=m, mv=mv, s=s, sv=sv)

    model = ScriptedModel(thinks_aloud, name="script:thinks-aloud")
    worker = types.SimpleNamespace(task=task, clients={model.name: model})
    job = SegmentJob(task.first_step(), 100, 60.0, VotingConfig(k=2), RedFlagPolicy(), (model.name,), 7, task.total_steps - 1)
    result = asyncio.run(run_segment(worker, job))
    assert result.failed_step is None
    assert result.decisions["answer"] == [task.truth(i) for i in range(task.total_steps)]
    assert all(result.decisions["correct"])
    assert not any(result.samples["red_flag"])
    assert task.is_solved(result.end)
