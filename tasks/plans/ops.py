"""Atomic operations: what one step of a plan can be asked to do.

Why a registry of small operations: a plan (`tasks.plans.plan`) names each step's operation
and inputs; the operation supplies everything the runner and the simulator need for
that step -- the prompt (chat and completion), a strict parser with a rule check, and
ground truth -- exactly as a chained task does for its one kind of step.  Three
built-in operations cover the arithmetic and sorting decomposers:

* `mul(a, b)`         -> `product = a*b`
* `column(c, t1, ...)` -> `digit = d` / `carry = c'` with 10*c' + d = c + t1 + ...
  (one column of a long sum: the carry-in first, then the column's numbers)
* `cmp(x, y)`         -> `low = min` / `high = max` (a compare-exchange)

and `solve("question")` (`tasks.plans.solve`) is a free-form step answered by a model, with no
ground truth.  A reply is parsed strictly (the last `field = value` line of each field,
nothing after the value on its line); the canonical answer, one `field = value` line
per field, is the vote key and also a valid reply.  The rule check is a plausibility
check that does not compute the answer (a product has at most as many digits as its
factors together; a column total lies between its largest number and what its numbers
could at most add up to; a compare-exchange returns the two given numbers): a reply
that fails it is red-flagged, a plausible wrong one is outvoted.

Example:
    >>> MUL.judge(("7", "8"), "product = 56").key
    'product = 56'
    >>> COLUMN.reference(("1", "42", "35"))
    'digit = 8\\ncarry = 7'
"""

from __future__ import annotations

import re
from typing import Protocol

from ..base import Prompt, PromptStyle, StepInput, TaskSpec, Verdict
from ..fields import last_field
from .solve import SOLVE

#: Replies longer than this are not even scanned.
MAX_REPLY_CHARS = 20_000
#: Numbers are ASCII digits only (``\\d`` and ``int()`` also accept other scripts' digits).
_INT = re.compile(r"-?[0-9]{1,15}", re.ASCII)


#: What a plan needs to know about an operation to check it (`tasks.plans.plan`): its answer
#: fields and how many arguments it takes (min, max or None).  `shapes()` gives them for `OPS`.
OpShape = tuple[tuple[str, ...], tuple[int, int | None]]


class Op(Protocol):
    """One kind of atomic step.  `args` are the step's inputs with placeholders filled in."""

    name: str
    summary: str
    fields: tuple[str, ...]
    arity: tuple[int, int | None]
    has_truth: bool

    def check_arg(self, position: int, value: str) -> str | None:
        """Why `value` cannot be input `position` (None: it can); checked before anything runs."""
        ...

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt: ...

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict: ...

    def reference(self, args: tuple[str, ...]) -> str:
        """The canonical right answer (only when `has_truth`)."""
        ...

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        """Plausible wrong answers that pass the parser and the rule check."""
        ...

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        """A reply a red flag must catch: kind 'malformed' or 'rule_breaking'."""
        ...


def read_fields(reply: str, patterns: dict[str, str]) -> dict[str, str] | str:
    """Each field's last value in `reply`, or why the reply is malformed.

    `patterns` maps field name -> regular expression the value must match in full (ASCII
    only: ``[0-9]``, never ``\\d``).  Only the last candidate of a field is read
    (`tasks.fields.last_field`: markup and a trailing note dropped); when it does not
    match, the reply is malformed -- an earlier candidate, which the model may have
    rejected, is never used.

        >>> read_fields("product = 54\\nno wait:\\n**product = 56**", {"product": "[0-9]+"})
        {'product': '56'}
        >>> read_fields("product = 56\\nproduct = ٥٦", {"product": "[0-9]+"})
        "the last 'product' value '٥٦' is not a number in ASCII digits"
    """
    if len(reply) > MAX_REPLY_CHARS:
        return "reply too long to parse"
    out = {}
    for name, pattern in patterns.items():
        raw = last_field(reply, name)
        if raw is None:
            return f"no '{name} = <number>' line (or {name} is named again after it)"
        if re.fullmatch(pattern, raw, re.ASCII) is None:
            return f"the last {name!r} value {raw[:40]!r} is not a number in ASCII digits"
        out[name] = raw
    return out


def _prompt(system: str, user: str, example: tuple[str, str], style: PromptStyle) -> Prompt:
    """Chat: system + user.  Completion: the instructions, one worked example, then the question."""
    if style == "completion":
        return f"{system}\n\n{example[0]}\n{example[1]}\n\n{user}\n"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def _nonneg_int(position: int, value: str) -> str | None:
    return None if re.fullmatch(r"[0-9]{1,12}", value, re.ASCII) else f"input {value!r} is not a whole number (up to 12 digits)"


def _read_ints(reply: str, patterns: dict[str, str]) -> tuple[list[int] | None, str | None]:
    read = read_fields(reply, patterns)
    if isinstance(read, str):
        return None, read
    return [int(read[name]) for name in patterns], None


class Mul:
    name = "mul"
    summary = "multiply two whole numbers (single digits in the built-in plans)"
    fields = ("product",)
    arity = (2, 2)
    has_truth = True
    _SYSTEM = "You multiply two whole numbers exactly.\nAnswer with exactly one line and nothing else:\nproduct = <the product>"

    def check_arg(self, position: int, value: str) -> str | None:
        return _nonneg_int(position, value)

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        return _prompt(self._SYSTEM, f"What is {args[0]} * {args[1]}?", ("What is 3 * 4?", "product = 12"), style)

    def _max_digits(self, args: tuple[str, ...]) -> int:
        return len(str(int(args[0]))) + len(str(int(args[1])))

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        values, why = _read_ints(reply, {"product": "[0-9]{1,25}"})
        if values is None:
            return Verdict(None, "malformed", why)
        product = values[0]
        if len(str(product)) > self._max_digits(args):
            return Verdict(None, "rule_breaking", f"product {product} has more digits than {args[0]} and {args[1]} together")
        return Verdict(f"product = {product}")

    def reference(self, args: tuple[str, ...]) -> str:
        return f"product = {int(args[0]) * int(args[1])}"

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        a, b = int(args[0]), int(args[1])
        right = a * b
        out: list[str] = []
        for v in (right + 1, right - 1, a * (b + 1), (a + 1) * b, right + 10, right - 10):
            if v >= 0 and v != right and len(str(v)) <= self._max_digits(args) and f"product = {v}" not in out:
                out.append(f"product = {v}")
        return out

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        if kind == "rule_breaking":
            return "product = " + "9" * (self._max_digits(args) + 1)
        return "product ="


class Column:
    name = "column"
    summary = "one column of a long sum: carry-in plus the column's numbers -> digit and carry"
    fields = ("digit", "carry")
    arity = (1, None)
    has_truth = True
    _SYSTEM = (
        "You add one column of a long sum. Add the carry and the numbers, then write the total's last "
        "digit and the rest of the total as the new carry (total = 10 * carry + digit).\n"
        "Answer with exactly two lines and nothing else:\ndigit = <0 to 9>\ncarry = <whole number>"
    )

    def check_arg(self, position: int, value: str) -> str | None:
        return _nonneg_int(position, value)

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        numbers = ", ".join(args[1:]) or "none"
        return _prompt(
            self._SYSTEM,
            f"Carry: {args[0]}\nNumbers: {numbers}",
            ("Carry: 3\nNumbers: 8, 45", "digit = 6\ncarry = 5"),
            style,
        )

    @staticmethod
    def _bounds(args: tuple[str, ...]) -> tuple[int, int]:
        """The total lies between the largest number and what numbers of these lengths can reach."""
        values = [int(a) for a in args]
        return max(values), sum(10 ** len(str(v)) - 1 for v in values)

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        values, why = _read_ints(reply, {"digit": "[0-9]", "carry": "[0-9]{1,15}"})
        if values is None:
            return Verdict(None, "malformed", why)
        digit, carry = values
        total = 10 * int(carry) + int(digit)
        low, high = self._bounds(args)
        if not low <= total <= high:
            return Verdict(None, "rule_breaking", f"total {total} is outside [{low}, {high}] for these numbers")
        return Verdict(self._key(total))

    @staticmethod
    def _key(total: int) -> str:
        return f"digit = {total % 10}\ncarry = {total // 10}"

    def reference(self, args: tuple[str, ...]) -> str:
        return self._key(sum(int(a) for a in args))

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        right = sum(int(a) for a in args)
        low, high = self._bounds(args)
        out: list[str] = []
        for v in (right + 1, right - 1, right + 10, right - 10, right - int(args[0])):
            if v != right and low <= v <= high and self._key(v) not in out:
                out.append(self._key(v))
        return out

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        if kind == "rule_breaking":
            return self._key(self._bounds(args)[1] + 10)
        return "digit = 12\ncarry = 0"


class Compare:
    name = "cmp"
    summary = "compare-exchange two numbers -> low and high"
    fields = ("low", "high")
    arity = (2, 2)
    has_truth = True
    _SYSTEM = (
        "You put two numbers in order, the smaller first.\n"
        "Answer with exactly two lines and nothing else:\nlow = <the smaller number>\nhigh = <the larger number>"
    )

    def check_arg(self, position: int, value: str) -> str | None:
        return None if _INT.fullmatch(value) else f"input {value!r} is not an integer"

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        return _prompt(self._SYSTEM, f"Numbers: {args[0]} and {args[1]}", ("Numbers: 9 and 4", "low = 4\nhigh = 9"), style)

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        values, why = _read_ints(reply, {"low": _INT.pattern, "high": _INT.pattern})
        if values is None:
            return Verdict(None, "malformed", why)
        low, high = values
        if sorted((low, high)) != sorted((int(args[0]), int(args[1]))):
            return Verdict(None, "rule_breaking", f"low and high ({low}, {high}) are not the two given numbers")
        return Verdict(f"low = {low}\nhigh = {high}")

    def reference(self, args: tuple[str, ...]) -> str:
        x, y = sorted((int(args[0]), int(args[1])))
        return f"low = {x}\nhigh = {y}"

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        x, y = sorted((int(args[0]), int(args[1])))
        return [f"low = {y}\nhigh = {x}"] if x != y else []

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        x, y = sorted((int(args[0]), int(args[1])))
        if kind == "rule_breaking":
            return f"low = {x}\nhigh = {y + 1}"
        return f"low = {x}"


MUL = Mul()
COLUMN = Column()
COMPARE = Compare()

#: name -> operation.  Add your own operation here to use it in plans.
OPS: dict[str, Op] = {op.name: op for op in (MUL, COLUMN, COMPARE, SOLVE)}


def shapes() -> dict[str, OpShape]:
    """What `tasks.plans.plan` checks a plan against: each operation's fields and arity."""
    return {name: (op.fields, op.arity) for name, op in OPS.items()}


# -- reading a step back from its prompt (for an HTTP simulator that sees only text) -----
_READ_MUL = re.compile(r"What is ([0-9]{1,12}) \* ([0-9]{1,12})\?")
_READ_COLUMN = re.compile(r"Carry: ([0-9]{1,12})\nNumbers: (none|[0-9]{1,12}(?:, [0-9]{1,12})*)")
_READ_CMP = re.compile(r"Numbers: (-?[0-9]{1,15}) and (-?[0-9]{1,15})")


def step_from_prompt(text: str) -> StepInput | None:
    """The (operation, inputs) premise a mul/column/cmp prompt states, or None.

    Why: `maker sim-server` answers from the prompt text alone; with this (and `OpOracle`)
    it can answer plan steps as it answers Hanoi steps.  The operation is told by its
    instructions; the inputs are the last question in the prompt (a completion prompt
    shows a worked example first).

        >>> step_from_prompt(MUL.prompt(("7", "8"), "completion")).premise
        ('mul', ('7', '8'))
    """
    if len(text) > MAX_REPLY_CHARS * 4:
        return None
    for op, pattern in ((MUL, _READ_MUL), (COLUMN, _READ_COLUMN), (COMPARE, _READ_CMP)):
        if op._SYSTEM.split("\n", 1)[0] not in text:
            continue
        found = pattern.findall(text)
        if not found:
            return None
        last = found[-1]
        args = (last[0], *([] if last[1] == "none" else last[1].split(", "))) if op is COLUMN else tuple(last)
        return StepInput(0, (op.name, args))
    return None


class OpOracle:
    """Ground truth for any mul/column/cmp premise, whatever plan it came from (for simulators)."""

    spec = TaskSpec("ops")

    def prompt(self, step: StepInput, style: PromptStyle = "chat") -> Prompt:
        return OPS[step.premise[0]].prompt(step.premise[1], style)

    def judge(self, step: StepInput, reply: str) -> Verdict:
        return OPS[step.premise[0]].judge(step.premise[1], reply)

    def truth(self, index: int) -> str:
        raise ValueError("an op oracle knows premises, not a trajectory")

    def reference_reply(self, step: StepInput) -> str:
        return OPS[step.premise[0]].reference(step.premise[1])

    def wrong_replies(self, step: StepInput) -> list[str]:
        return OPS[step.premise[0]].wrong(step.premise[1])

    def broken_reply(self, step: StepInput, kind: str) -> str:
        return OPS[step.premise[0]].broken(step.premise[1], kind)
