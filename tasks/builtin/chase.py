"""Pointer chasing: follow a linked list for many hops, one hop per step.

Why this task: it is the longest chain a 135M-parameter model can walk.  Each step
shows one record of a random linked list -- the current node, a distractor value and
the pointer to the next node -- and the answer is the next node.  The next step shows
the record of whatever node was decided, so the state carries forward and one wrong
hop sends every later step down the wrong path.  Ground truth is a table lookup.

The list is one random cycle through every ``digits``-digit number (``10..99`` for 2
digits, 90 nodes), fixed by ``list_seed``; ``value`` is another random node.  Because
every well-formed number is a node, a wrong hop is always a plausible, rule-abiding
answer; the only rule a reply can break is pointing a node at itself (the list has no
self-loops), which catches a model that copies the node's own number.

Measured on SmolLM2-135M-Instruct (the embedded ``--model local``, every one of the 90
nodes, ``bench/local_accuracy.py``): with the 4 prompt variants at temperature 0.5 a
sample is right with p = 0.976 (95% CI 0.962-0.986), errors spread over 12 different
wrong answers, no node below 0.6; greedy on the canonical prompt is wrong on one node
(83: it copies the distractor value), so a single-sample run fails when it gets there.

Prompt variants (``--prompt-variants``): the record in other surface forms (field
order, wording, few-shot examples), so that a form that misleads the model on one
record costs only the votes drawn on it.

Example:
    >>> t = Chase(hops=5)
    >>> s = t.first_step()
    >>> t.judge(s, t.reference_reply(s)).key == t.truth(0)
    True
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from ..base import Prompt, PromptStyle, StepInput, TaskOption, TaskSpec, Verdict, checked_advance

MAX_HOPS = 10_000_000
SHOTS = 5
#: A reply is one number, optionally followed by a full stop; nothing else.
_REPLY = re.compile(r"\s*([0-9]+)\.?\s*", re.ASCII)  # ASCII digits only


@dataclass(frozen=True)
class Form:
    """One surface form of a record, its question and its few-shot examples."""

    record: str  # format string with {node}, {value}, {next}
    question: str  # the line that asks, ending where the answer starts
    header: str
    shots: int  # seed of the form's fixed few-shot examples (they matter: chosen by measurement)


#: Variant v uses FORMS[v]; variant 0 is the canonical form.  The sentence forms restate,
#: right before the answer, the words that precede the pointer in the record, which
#: this model copies far more reliably (bench/local_accuracy.py; on the records whose
#: pointer repeats a digit -- 11, 55, 66 -- the canonical form is often wrong).
FORMS = (
    Form("node {node}: value {value}, next {next}", "next:", "Follow the linked list: read the next pointer.", 0),
    Form("Node {node} holds {value} and points to node {next}.", "It points to node", "Read where each node points.", 0),
    Form("Page {node} shows {value} and says: turn to page {next}.", "Turn to page", "Read which page to turn to.", 4),
    Form(
        "Station {node} sells item {value}; the train goes on to station {next}.",
        "The train goes on to station",
        "Read where the train goes next.",
        3,
    ),
)

_CHAT_SYSTEM = (
    "You follow a linked list. Each record shows a node, a value and the node it points to. "
    "Answer with the number of the node it points to, and nothing else."
)


class Chase:
    """Walk `hops` hops along a random linked list of all `digits`-digit numbers."""

    name = "chase"
    summary = "pointer chasing: follow a random linked list, one hop per step (--hops steps)"
    options = (
        TaskOption("hops", int, "steps: hops to follow (default 1000)", default=1000),
        TaskOption("digits", int, "node numbers have this many digits: 2 (90 nodes) or 3 (900) (default 2)", default=2),
        TaskOption("list_seed", int, "which random list to walk (default 0)", default=0),
    )
    #: Few-shot completion prompts suit a tiny model far better than chat.
    prompt_style: PromptStyle = "completion"
    #: A reply is one line: the server stops at the first newline.
    stop = ("\n",)
    variants = len(FORMS)

    def __init__(self, hops: int = 1000, digits: int = 2, list_seed: int = 0) -> None:
        for name, value in (("hops", hops), ("digits", digits), ("list-seed", list_seed)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"--{name} must be an integer, got {value!r}")
        if not 1 <= hops <= MAX_HOPS:
            raise ValueError(f"--hops must be between 1 and {MAX_HOPS:,}, got {hops}")
        if digits not in (2, 3):
            raise ValueError(f"--digits must be 2 or 3, got {digits}")
        self.hops = hops
        self.digits = digits
        self.list_seed = list_seed
        self.spec = TaskSpec("chase", {"hops": hops, "digits": digits, "list_seed": list_seed})
        lo, hi = 10 ** (digits - 1), 10**digits - 1
        self.lo, self.hi = lo, hi
        rnd = random.Random(f"chase:{digits}:{list_seed}")
        order = list(range(lo, hi + 1))
        rnd.shuffle(order)
        self.order = order
        self.next = {a: order[(i + 1) % len(order)] for i, a in enumerate(order)}
        self.value = {}
        for a in order:
            v = rnd.randint(lo, hi)
            while v in (a, self.next[a]):
                v = rnd.randint(lo, hi)
            self.value[a] = v
        self._position = {a: i for i, a in enumerate(order)}
        self._shots = tuple(_shots(digits, form.shots) for form in FORMS)

    # -- Task ---------------------------------------------------------------------------
    @property
    def total_steps(self) -> int:
        return self.hops

    def first_step(self) -> StepInput:
        return StepInput(0, self.order[0])

    def record(self, node: int, variant: int = 0) -> str:
        return FORMS[variant].record.format(node=node, value=self.value[node], next=self.next[node])

    def prompt(self, step: StepInput, style: PromptStyle = "chat", variant: int = 0) -> Prompt:
        form = _form(variant)
        node = step.premise
        if style == "completion":
            shots = "".join(
                f"{form.record.format(node=a, value=v, next=n)}\n{form.question} {n}\n\n" for a, v, n in self._shots[variant]
            )
            return f"{form.header}\n\n{shots}{self.record(node, variant)}\n{form.question}"
        return [
            {"role": "system", "content": _CHAT_SYSTEM},
            {"role": "user", "content": f"{self.record(node, variant)}\nWhich node does it point to?"},
        ]

    def judge(self, step: StepInput, reply: str, variant: int = 0) -> Verdict:
        match = _REPLY.fullmatch(reply[:64]) if len(reply) <= 64 else None
        if match is None:
            return Verdict(None, "malformed", "reply is not one number")
        text = match.group(1)
        if len(text) != self.digits or text[0] == "0":
            return Verdict(None, "malformed", f"{text!r} is not a {self.digits}-digit node number")
        if int(text) == step.premise:
            return Verdict(None, "rule_breaking", f"node {text} cannot point to itself")
        return Verdict(text)

    def advance(self, step: StepInput, key: str) -> StepInput:
        return checked_advance(self, step, key)

    def step_after(self, index: int, key: str) -> StepInput:
        if not (key.isascii() and key.isdigit()) or len(key) != self.digits:
            raise ValueError(f"step {index}: {key!r} is not a canonical chase answer")
        return StepInput(index + 1, int(key))

    def is_solved(self, step: StepInput) -> bool:
        return step.index == self.hops and step.premise == self.node_after(self.hops)

    def describe_premise(self, step: StepInput) -> str:
        return f"at node {step.premise} (hop {step.index})"

    # -- Oracle -----------------------------------------------------------------------
    def node_after(self, hops: int) -> int:
        """The node reached after `hops` correct hops from the start."""
        return self.order[hops % len(self.order)]

    def truth(self, index: int) -> str:
        return str(self.node_after(index + 1))

    def reference_reply(self, step: StepInput) -> str:
        return str(self.next[step.premise])

    def variant_reply(self, step: StepInput, reply: str, variant: int) -> str:
        return reply  # every form answers with the bare number

    def wrong_replies(self, step: StepInput) -> list[str]:
        node = step.premise
        right = self.next[node]
        candidates = [self.value[node], right + 1, right - 1, int(str(right)[::-1]), right + 10, right - 10]
        out: list[str] = []
        for c in candidates:
            if self.lo <= c <= self.hi and c not in (right, node) and str(c) not in out:
                out.append(str(c))
        return out

    def broken_reply(self, step: StepInput, kind: str) -> str:
        if kind == "rule_breaking":
            return str(step.premise)
        return f"the next node is {self.next[step.premise]}"


def _form(variant: int) -> Form:
    if isinstance(variant, bool) or not isinstance(variant, int) or not 0 <= variant < len(FORMS):
        raise ValueError(f"chase has {len(FORMS)} prompt variants (0..{len(FORMS) - 1}), got {variant!r}")
    return FORMS[variant]


def _shots(digits: int, seed: int) -> tuple[tuple[int, int, int], ...]:
    """Five fixed example records (node, value, next), independent of the list walked."""
    rnd = random.Random(f"chase-shots:{digits}:{seed}")
    lo, hi = 10 ** (digits - 1), 10**digits - 1
    return tuple(tuple(rnd.sample(range(lo, hi + 1), 3)) for _ in range(SHOTS))  # type: ignore[misc]


#: Each form's record as a pattern (node, value, next), for `premise_from_prompt`.
_RECORDS = tuple(
    re.compile(re.escape(f.record).replace(r"\{node\}", "([0-9]+)").replace(r"\{value\}", "([0-9]+)").replace(r"\{next\}", "([0-9]+)"))
    for f in FORMS
)


def premise_from_prompt(text: str, list_seed: int = 0) -> tuple[Chase, StepInput] | None:
    """The chase step a prompt asks about (any form, chat or completion), or None.

    Why: an OpenAI-compatible simulator (`maker sim-server --task chase`) sees only the
    prompt text.  The last record in the text is the one asked about (the few-shot
    examples come first); the list is list `list_seed` with as many digits as the node.
    None when no record is found or the record is not one of that list's.

        >>> t = Chase(hops=3)
        >>> task, step = premise_from_prompt(t.prompt(t.first_step(), "completion", 2))
        >>> step.premise == t.first_step().premise
        True
    """
    if len(text) > 20_000:
        return None
    last = None
    for pattern in _RECORDS:
        for match in pattern.finditer(text):
            if last is None or match.end() > last.end():
                last = match
    if last is None:
        return None
    node, value, after = (int(g) for g in last.groups())
    digits = len(last.group(1))
    if digits not in (2, 3):
        return None
    task = _list(digits, list_seed)
    if task.next.get(node) != after or task.value.get(node) != value:
        return None
    return task, StepInput(0, node)


@functools.cache
def _list(digits: int, list_seed: int) -> Chase:
    """List `list_seed` of `digits`-digit nodes (built once: the shuffle is the cost)."""
    return Chase(hops=1, digits=digits, list_seed=list_seed)
