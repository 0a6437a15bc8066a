"""Hanoi prompt variants: the same step said in other surface forms.

Why: when every sample of a step reads the same words, a wording that misleads the
model misleads every vote the same way, and voting cannot outvote an error that all
votes share.  A variant keeps the step's meaning and changes its form -- other peg
names, another order of pegs in a state, each peg listed top disk first, the rules
after the strategy -- so a misleading form costs only the votes drawn on it.

Every variant's reply is read in its own form and mapped back to the canonical
answer (`move = [disk, from, to]` / `next_state` with pegs 0, 1, 2, bottom disk first),
so all variants vote on one key.  Variant 0 is the canonical prompt itself
(`Hanoi.prompt`); the others are described by a `Surface`.

Example:
    >>> from maker.tasks.builtin.hanoi import Hanoi
    >>> t = Hanoi(3)
    >>> reply = render(t.reference_reply(t.first_step()), 1)
    >>> reply
    'move = [1, A, C]\\nnext_state = [[3, 2], [], [1]]'
    >>> t.judge(t.first_step(), reply, variant=1).key == t.truth(0)
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..base import Prompt, PromptStyle, StepInput
from .hanoi_rules import INTS, MOVE_LINE, STATE_LINE, Move, Pegs, format_key, read_reply


@dataclass(frozen=True)
class Surface:
    """One surface form of a Hanoi step."""

    names: tuple[str, str, str]  # what physical pegs 0, 1, 2 are called
    order: tuple[int, int, int]  # the physical pegs in the order a state lists them
    top_first: bool  # each peg lists its disks top disk first (canonical: bottom first)
    strategy_first: bool  # the strategy is stated before the rules


#: Variant v uses SURFACES[v]; variant 0 is the canonical form (Hanoi's own prompt).
SURFACES = (
    Surface(("0", "1", "2"), (0, 1, 2), False, False),
    Surface(("A", "B", "C"), (0, 1, 2), False, True),
    Surface(("0", "1", "2"), (2, 1, 0), True, False),
    Surface(("L", "M", "R"), (0, 1, 2), True, True),
)


class _Form:
    """A surface with its regular expressions compiled once."""

    def __init__(self, surface: Surface) -> None:
        self.s = surface
        alt = "|".join(re.escape(n) for n in sorted(surface.names, key=len, reverse=True))
        self.move_value = re.compile(r"\[\s*([0-9]{1,3})\s*,\s*(" + alt + r")\s*,\s*(" + alt + r")\s*\]", re.ASCII)
        self.peg_of = {name: i for i, name in enumerate(surface.names)}

    def pegs_text(self, pegs: Pegs) -> str:
        lists = []
        for physical in self.s.order:
            disks = pegs[physical][::-1] if self.s.top_first else pegs[physical]
            lists.append("[" + ", ".join(map(str, disks)) + "]")
        return "[" + ", ".join(lists) + "]"

    def move_text(self, move: Move) -> str:
        names = self.s.names
        return f"[{move[0]}, {names[move[1]]}, {names[move[2]]}]"


_FORMS = tuple(_Form(s) for s in SURFACES)


def _form(variant: int) -> _Form:
    if isinstance(variant, bool) or not isinstance(variant, int) or not 0 <= variant < len(_FORMS):
        raise ValueError(f"hanoi has prompt variants 0..{len(_FORMS) - 1}, got {variant!r}")
    return _FORMS[variant]


def variant_prompt(task: Any, step: StepInput, style: PromptStyle, variant: int) -> Prompt:
    """The prompt of `step` in surface `variant` (see `SURFACES`)."""
    form = _form(variant)
    s = form.s
    names = s.names
    cycle_pegs = (0, 1, 2, 0) if task._small_dir == 1 else (0, 2, 1, 0)
    cycle = " -> ".join(names[i] for i in cycle_pegs)
    listing = ", ".join(names[i] for i in s.order)
    disks = "top disk first" if s.top_first else "bottom disk first"
    n = task.disks
    rules = (
        f"Rules: there are 3 pegs ({names[0]}, {names[1]}, {names[2]}) and {n} disks numbered 1 (smallest) "
        f"to {n} (largest).\nA state lists the pegs in the order {listing}, each peg's disks {disks}.\n"
        "Only the top disk of a peg may move, and a disk may never be placed on a smaller disk.\n"
        f"All disks start on peg {names[0]}; the goal is to move them all to peg {names[2]}."
    )
    strategy = (
        "Strategy (follow it exactly): if the previous move did not move disk 1, move disk 1 one\n"
        f"peg along the cycle {cycle}. Otherwise, make the only legal move that does not move disk 1."
    )
    body = (strategy, rules) if s.strategy_first else (rules, strategy)
    system = (
        "You are solving Towers of Hanoi one move at a time.\n" + "\n".join(body) + "\n"
        "Answer with exactly two lines and nothing else, naming pegs as above:\n"
        "move = [disk, from_peg, to_peg]\nnext_state = [[...], [...], [...]]"
    )
    pegs, prev = step.premise
    prev_text = "none (this is the first move)" if prev is None else form.move_text(prev)
    user = f"Previous move: {prev_text}\nCurrent state: {form.pegs_text(pegs)}\nWhat is the next move?"
    if style == "completion":
        return f"{system}\n\n{user}\nmove = ["
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def to_canonical(reply: str, variant: int) -> tuple[str | None, str | None]:
    """(the reply's answer in canonical form, None) or (None, why it cannot be read).

    The canonical parser's reading (`tasks.builtin.hanoi.read_reply`) with this variant's peg
    names: the last `move` and `next_state` only, literal lists of ASCII integers.  The
    canonical text is then judged by the task's own rule check.
    """
    form = _form(variant)
    read = read_reply(reply, form.move_value)
    if isinstance(read, str):
        if read.startswith("no 'move") or read.startswith("the last move"):
            read += f" (pegs named {', '.join(form.s.names)})"
        return None, read
    (d, a, b), listed = read
    move = (int(d), form.peg_of[a], form.peg_of[b])
    pegs: list[tuple[int, ...]] = [(), (), ()]
    for position, physical in enumerate(form.s.order):
        pegs[physical] = listed[position][::-1] if form.s.top_first else listed[position]
    return format_key(move, (pegs[0], pegs[1], pegs[2])), None


def render(reply: str, variant: int) -> str:
    """A canonical reply written in surface `variant`: answer lines translated, the rest kept.

    Lines that do not parse (a broken reply) stay as they are, so they stay broken.
    """
    form = _form(variant)
    if variant == 0:
        return reply

    def move(m: re.Match[str]) -> str:
        d, a, b = (int(x) for x in m.groups())
        if a > 2 or b > 2:
            return m.group(0)
        return "move = " + form.move_text((d, a, b))

    def state(m: re.Match[str]) -> str:
        lists = [tuple(int(x) for x in INTS.findall(p)) for p in m.groups()]
        return "next_state = " + form.pegs_text((lists[0], lists[1], lists[2]))

    return STATE_LINE.sub(state, MOVE_LINE.sub(move, reply))
