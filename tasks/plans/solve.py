"""Free-form problems: the `solve` step and the decomposition request a model answers.

Why: the built-in decomposers (`tasks.builtin.decomposers`) know how to cut their problems; for
any other problem a model proposes the cut.  Two kinds of model call come from here:

* A *decomposition request* shows one problem and asks for either the single word
  `atomic` (one short step answers it) or a plan of sub-problems, one line each:

      #E3 = What is 12 * 34?
      #E4 = What is #E3 + #E1?

  A problem that uses results of other steps shows them as its inputs `#E1..#Em`, and
  the model numbers its own steps from `#E(m+1)`; the last step's result is the
  problem's answer.  `parse_proposal` reads a reply strictly and turns it into a
  canonical key (steps renumbered in order, whitespace collapsed), so proposals that
  differ only in numbering or spacing vote together; a proposal that uses a step before
  it exists, leaves a step unused, or has too many steps is red-flagged as rule-breaking.
  `maker.runtime.decompose` votes on these keys and recurses until every step is atomic.
* A *solve step* (`solve("question")` in a plan) asks one atomic question and takes one
  line, `answer = ...`, back.  It has no ground truth, so the simulator cannot answer it.

Example:
    >>> parse_proposal("#E7 = What is 2 + 3?\\n#E9 = What is #E7 * 4?", 0, 8).key
    '#E1 = What is 2 + 3?\\n#E2 = What is #E1 * 4?'
"""

from __future__ import annotations

import re

from ..base import Prompt, PromptStyle, Verdict
from ..fields import foreign_placeholder, last_field
from ..keys import decimal, is_non_answer

#: Every solve-step prompt holds this; every decomposition prompt holds `DECOMPOSE_MARK`
#: (a scripted model tells them apart by these).
SOLVE_MARK = "Question:"
DECOMPOSE_MARK = "Problem to split:"
MAX_QUESTION_CHARS = 2_000
MAX_ANSWER_CHARS = 200
MAX_REPLY_CHARS = 20_000
_PLACEHOLDER = re.compile(r"#E([0-9]+)(?:\.answer\b)?")
#: `#E2.result`: a field a solve step does not have (its one result is `#E2`, or `#E2.answer`)
_FIELD = re.compile(r"#E[0-9]+\.(?!answer\b)[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?[0-9][0-9,]*(?:\.[0-9]+)?")
_PLAN_LINE = re.compile(r"^#E([0-9]{1,9})[ \t]*[=:][ \t]*(\S.*?)[ \t\r]*$")
def _other_digits(text: str) -> bool:
    """Digits of another script (Arabic-Indic, full-width...): not an answer we can read."""
    return any(ch.isdigit() and not ch.isascii() for ch in text)


def normalize_answer(value: str) -> str:
    """One spelling per answer: whitespace collapsed, a trailing period dropped, numbers plain
    (`1,024.0` -> `1024`, exactly, however many digits: `maker.tasks.keys.decimal`)."""
    text = " ".join(value.split()).rstrip(".").strip()
    if _NUMBER.fullmatch(text):
        return decimal(text.replace(",", "")) or text
    return text


class SolveOp:
    """`solve("question")`: one atomic question, answered as `answer = ...`."""

    name = "solve"
    summary = "answer one atomic question (free text; no ground truth)"
    fields = ("answer",)
    arity = (1, 1)
    has_truth = False
    _SYSTEM = "Answer the question in one step.\nReply with exactly one line and nothing else:\nanswer = <the answer>"

    def check_arg(self, position: int, value: str) -> str | None:
        if len(value) > MAX_QUESTION_CHARS:
            return f"question longer than {MAX_QUESTION_CHARS} characters"
        return None

    def prompt(self, args: tuple[str, ...], style: PromptStyle = "chat") -> Prompt:
        user = f"{SOLVE_MARK} {args[0]}"
        if style == "completion":
            return f"{self._SYSTEM}\n\n{SOLVE_MARK} What is 2 + 2?\nanswer = 4\n\n{user}\n"
        return [{"role": "system", "content": self._SYSTEM}, {"role": "user", "content": user}]

    def judge(self, args: tuple[str, ...], reply: str) -> Verdict:
        if len(reply) > MAX_REPLY_CHARS:
            return Verdict(None, "malformed", "reply too long to parse")
        found = last_field(reply, "answer")
        if found is None:
            return Verdict(None, "malformed", "no 'answer = ...' line (or answer is named again after it)")
        if _other_digits(found):
            return Verdict(None, "malformed", f"answer {found[:40]!r} has digits that are not ASCII")
        if is_non_answer(found):
            return Verdict(None, "malformed", f"{found[:40]!r} is not an answer")
        value = normalize_answer(found)
        if not value or len(value) > MAX_ANSWER_CHARS:
            return Verdict(None, "malformed", f"answer empty or longer than {MAX_ANSWER_CHARS} characters")
        if "#E" in value:
            return Verdict(None, "rule_breaking", "the answer names a step instead of a value")
        return Verdict(f"answer = {value}")

    def reference(self, args: tuple[str, ...]) -> str:
        raise ValueError("a solve step has no ground truth")

    def wrong(self, args: tuple[str, ...]) -> list[str]:
        return []

    def broken(self, args: tuple[str, ...], kind: str) -> str:
        return "answer = #E1" if kind == "rule_breaking" else "answer:"


SOLVE = SolveOp()

_DECOMPOSE_SYSTEM = """You plan how to solve a problem in small steps.
If one short step can answer the problem, reply with the single word:
atomic
Otherwise reply with a plan, one line per step and nothing else:
#E<n> = <sub-problem>
A sub-problem may use the result of an earlier step (or of one of the problem's inputs)
by writing its name, e.g. #E3. The last step's result must be the answer to the whole
problem. Every other step must be used by a later one. Use 2 to {max_steps} steps."""


def decompose_prompt(problem: str, inputs: int, max_steps: int, style: PromptStyle = "chat") -> Prompt:
    """The decomposition request for `problem`, whose inputs are already renamed `#E1..#E{inputs}`."""
    system = _DECOMPOSE_SYSTEM.format(max_steps=max_steps)
    if inputs:
        names = ", ".join(f"#E{i}" for i in range(1, inputs + 1))
        note = f"Its inputs {names} are results known when it runs. Number your steps from #E{inputs + 1}."
    else:
        note = "Number your steps from #E1."
    user = f"{DECOMPOSE_MARK} {problem}\n{note}"
    if style == "completion":
        return f"{system}\n\n{user}\n"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def parse_proposal(reply: str, inputs: int, max_steps: int) -> Verdict:
    """A decomposition reply as a vote key: `atomic`, or the steps renumbered from `#E(inputs+1)`."""
    if len(reply) > MAX_REPLY_CHARS:
        return Verdict(None, "malformed", "reply too long to parse")
    if reply.strip().rstrip(".").lower() == "atomic":
        return Verdict("atomic")
    steps: list[tuple[int, str]] = []
    for line in reply.splitlines():
        line = line.strip()
        if not line.startswith("#E"):
            continue
        m = _PLAN_LINE.match(line)
        if not m:
            return Verdict(None, "malformed", f"cannot read plan line {line[:60]!r}")
        if _other_digits(m.group(2)):
            return Verdict(None, "malformed", f"plan line {line[:60]!r} has digits that are not ASCII")
        steps.append((int(m.group(1)), " ".join(m.group(2).split())))
    if not steps:
        return Verdict(None, "malformed", "neither 'atomic' nor a plan of '#E<n> = ...' lines")
    if len(steps) == 1:
        return Verdict(None, "rule_breaking", "a one-step plan restates the problem: reply 'atomic' instead")
    if len(steps) > max_steps:
        return Verdict(None, "rule_breaking", f"{len(steps)} steps, more than {max_steps}")
    names = {number for number, _ in steps} | set(range(1, inputs + 1))
    for number, text in steps:  # a reference must resolve exactly: never left in the text as if it were not one
        foreign = foreign_placeholder(text, names)
        if foreign is not None:
            return Verdict(None, "rule_breaking", f"step #E{number}: {foreign!r} is not the placeholder form #E<n>")
        field = _FIELD.search(text)
        if field is not None:
            return Verdict(None, "rule_breaking", f"step #E{number}: {field.group()!r} names a field; a step's result is #E<n>")
    new_number: dict[int, int] = {}
    lines: list[str] = []
    used: set[int] = set()
    for position, (number, text) in enumerate(steps):
        if number <= inputs or number in new_number:
            return Verdict(None, "rule_breaking", f"step #E{number} reuses a name already taken")
        here = inputs + position + 1

        def rename(m: re.Match[str]) -> str:
            if len(m.group(1)) > 9:  # no step has such a number (and int() refuses 4,301 digits)
                raise LookupError(m.group(1)[:12] + "...")
            n = int(m.group(1))
            if 1 <= n <= inputs:
                return f"#E{n}"
            if n not in new_number:
                raise LookupError(n)
            used.add(new_number[n])
            return f"#E{new_number[n]}"

        try:
            text = _PLACEHOLDER.sub(rename, text)
        except LookupError as exc:
            return Verdict(None, "rule_breaking", f"step #E{number} uses #E{exc.args[0]} before it is defined")
        new_number[number] = here
        lines.append(f"#E{here} = {text}")
    unused = [n for n in range(inputs + 1, inputs + len(steps)) if n not in used]
    if unused:
        return Verdict(None, "rule_breaking", f"step #E{unused[0]}'s result is never used")
    return Verdict("\n".join(lines))


def proposal_steps(key: str) -> list[str]:
    """The sub-problems of a decided proposal key, in order (empty for `atomic`)."""
    if key == "atomic":
        return []
    return [line.split(" = ", 1)[1] for line in key.split("\n")]
