"""The Hanoi notation and rules: pegs and moves, the two answer lines and their strict
reader, a move applied under the rules, and the premise a step prompt states.

A module of its own so that the task (`tasks.builtin.hanoi`) and its prompt variants
(`tasks.builtin.hanoi_variants`) both read and write replies the same way without importing each other.

    >>> apply_move(((3, 2, 1), (), ()), (1, 0, 2))
    ((3, 2), (), (1,))
"""

from __future__ import annotations

import re

from ..fields import last_field

MAX_DISKS = 40
#: Replies longer than this are not even scanned: nothing legitimate is that long.
MAX_REPLY_CHARS = 20_000

Pegs = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]
Move = tuple[int, int, int]

#: Each answer line must end right after its list: nothing may be appended to a literal.
#: Digits are ASCII only everywhere (``\\d`` and ``int()`` also accept other scripts' digits).
_EOL = r"[ \t\r]*(?=\n|$)"
_D = r"[0-9]{1,3}"
MOVE_LIST = r"\[\s*(" + _D + r")\s*,\s*(" + _D + r")\s*,\s*(" + _D + r")\s*\]"
_PEG = r"\[\s*((?:" + _D + r"\s*(?:,\s*" + _D + r"\s*)*)?)\]"
STATE_LIST = r"\[\s*" + _PEG + r"\s*,\s*" + _PEG + r"\s*,\s*" + _PEG + r"\s*\]"
#: Whole answer lines (canonical keys, rendering); replies are read with `read_reply`.
MOVE_LINE = re.compile(r"move\s*=\s*" + MOVE_LIST + _EOL, re.ASCII)
STATE_LINE = re.compile(r"next_state\s*=\s*" + STATE_LIST + _EOL, re.ASCII)
#: A field's value alone, matched in full against what `last_field` returns.
STATE_VALUE = re.compile(STATE_LIST, re.ASCII)
MOVE_VALUE = re.compile(MOVE_LIST, re.ASCII)
INTS = re.compile(r"[0-9]+")
_PREV = re.compile(r"Previous move:\s*(?:none|" + MOVE_LIST + ")", re.ASCII)
_CURRENT = re.compile(r"Current state:\s*" + STATE_LIST, re.ASCII)


def read_reply(reply: str, move_value: re.Pattern[str] = MOVE_VALUE) -> tuple[tuple[str, ...], list[tuple[int, ...]]] | str:
    """The reply's last `move` (the groups of `move_value`) and last `next_state` (three
    pegs as listed), or a string saying why the reply is malformed.

    Only the *last* candidate of each field is read (`tasks.fields.last_field`: any
    markup, a trailing note such as ``(final)`` dropped); when it does not parse
    strictly the reply is malformed -- an earlier candidate is never used, since the
    model may have rejected it.

        >>> read_reply("move = [1, 1, 2]\\nBut:\\n**move = [2, 0, 2]**\\n**next_state = [[4, 3], [1], [2]]**")
        (('2', '0', '2'), [(4, 3), (1,), (2,)])
        >>> read_reply("move = [1, 0, 2]\\nmove = [١, 0, 2]\\nnext_state = [[], [], [1]]")
        "the last move '[١, 0, 2]' is not [disk, from, to] in ASCII digits"
    """
    if len(reply) > MAX_REPLY_CHARS:
        return "reply too long to parse"
    move_text = last_field(reply, "move")
    if move_text is None:
        return "no 'move = [disk, from, to]' line (or move is named again after it)"
    move = move_value.fullmatch(move_text)
    if move is None:
        return f"the last move {move_text[:40]!r} is not [disk, from, to] in ASCII digits"
    state_text = last_field(reply, "next_state")
    if state_text is None:
        return "no 'next_state = [[...], [...], [...]]' line (or next_state is named again after it)"
    state = STATE_VALUE.fullmatch(state_text)
    if state is None:
        return f"the last next_state {state_text[:60]!r} is not three lists of ASCII integers"
    return move.groups(), [tuple(int(x) for x in INTS.findall(p)) for p in state.groups()]


def format_pegs(pegs: Pegs) -> str:
    return "[" + ", ".join("[" + ", ".join(map(str, peg)) + "]" for peg in pegs) + "]"


def format_key(move: Move, pegs: Pegs) -> str:
    """The canonical answer: the same text for every reply that means the same thing."""
    return f"move = [{move[0]}, {move[1]}, {move[2]}]\nnext_state = {format_pegs(pegs)}"


def premise_from_prompt(text: str) -> tuple[Pegs, Move | None] | None:
    """The premise (pegs, previous move) that a step prompt states, or None if it states none.

    Why: an OpenAI-compatible simulator (`maker sim-server`) sees only the prompt text, so
    it recovers the step from the "Previous move:" and "Current state:" lines (the last of
    each wins); every disk 1..n must appear exactly once.

        >>> from maker.tasks.builtin.hanoi import Hanoi
        >>> t = Hanoi(disks=3)
        >>> premise_from_prompt(t.prompt(t.first_step())[1]["content"]) == t.first_step().premise
        True
    """
    if len(text) > MAX_REPLY_CHARS * 4:
        return None
    prevs = _PREV.findall(text)
    states = _CURRENT.findall(text)
    if not prevs or not states:
        return None
    pegs = tuple(tuple(int(x) for x in INTS.findall(p)) for p in states[-1])
    seen = sorted(x for p in pegs for x in p)
    if not seen or seen != list(range(1, len(seen) + 1)):
        return None
    last = prevs[-1]
    prev = (int(last[0]), int(last[1]), int(last[2])) if last[0] else None
    return (pegs[0], pegs[1], pegs[2]), prev


def apply_move(pegs: Pegs, move: Move) -> Pegs | None:
    """The pegs after a legal move, or None when the move breaks a rule."""
    disk, src, dst = move
    if src == dst or src > 2 or dst > 2:
        return None
    if not pegs[src] or pegs[src][-1] != disk:
        return None
    if pegs[dst] and pegs[dst][-1] < disk:
        return None
    out = list(pegs)
    out[src] = pegs[src][:-1]
    out[dst] = pegs[dst] + (disk,)
    return (out[0], out[1], out[2])
