"""Wrong answers for the simulator: valid keys that differ from the right one, under any key.

Why: `sim:P` must be wrong with probability 1 - P.  A wrong answer that the task's key
normaliser (or parser, or rule) refuses is a red flag, not a wrong vote -- and one the
simulator drops silently leaves it right every time: `sim:0.8` then measures p = 1 and
plans too small a k.  So a wrong answer is built to survive the key: another option of a
`choice`, a near integer or decimal, a changed JSON or Python value, a changed set of
lines, other text; a user's own key function gets the same candidates and keeps those it
accepts.

`near_values(right)` proposes candidate *values* near the right one (the caller renders
each as a reply and keeps the ones its judge reads as a valid, different key);
`NoWrongAnswer` is raised, in one line, when no candidate survives a key that may well
accept other answers (a user's own key function): the simulator then refuses to simulate
rather than be right every time.  A key that admits no other answer at all (a `choice`
with one option) is not an error: that step has no wrong answer.

    >>> near_values(42)[:4]
    [43, 41, 52, 32]
    >>> near_values("kitchen", options=("kitchen", "garden"))
    ['garden']
    >>> near_values({"a": 1})[:2]
    [{'a': 2}, {'a': 0}]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

__all__ = ["NoWrongAnswer", "near_values", "only_answer", "wrong_texts"]


class NoWrongAnswer(ValueError):
    """No candidate wrong answer passes the task's key (one line: what to give instead)."""


#: Texts tried on a key nothing else is known about (a user's key function).
_GENERIC = ("0", "1", "2", "-1", "yes", "no", "true", "false", "none of these", "a", "b", "x", "[]", "{}",
            "other", "wrong answer")


def near_values(right: Any, options: Sequence[str] | None = None) -> list[Any]:
    """Candidate wrong values near `right` (numbers off by one or ten, a changed element
    of a list, tuple, set or dict, a changed string, the other options of a choice), most
    plausible first; the caller filters them through the task's judge."""
    if options:
        folded = " ".join(str(right).split()).casefold()
        return [o for o in options if o != folded]
    out: list[Any] = []
    if isinstance(right, bool):
        out.append(not right)
    elif isinstance(right, int):
        out += [right + 1, right - 1, right + 10, right - 10]
    elif isinstance(right, (float, Decimal)):
        out += [right + 1, right - 1, right * 2 if right else right + 2]
    elif isinstance(right, str):
        out += _near_text(right)
    elif isinstance(right, dict):
        for key, value in right.items():
            out += [{**right, key: v} for v in near_values(value)[:2]]
            break
        out.append({**right, "_": 0} if "_" not in right else {k: v for k, v in right.items() if k != "_"})
    elif isinstance(right, (list, tuple)):
        kind = type(right)
        if right:
            out += [kind([*right[:-1], v]) for v in near_values(right[-1])[:2]]
            out.append(kind(right[:-1]))
        out.append(kind([*right, right[-1] if right else 0]) if kind is list else kind([*right, 0]))
    elif isinstance(right, (set, frozenset)):
        items = sorted(right, key=repr)
        if items:
            out.append(type(right)(items[:-1]))
        out.append(type(right)([*items, len(items) + 1000]))
    return out


def _near_text(right: str) -> list[Any]:
    """A changed string: a number in it moved by one, a line dropped or added, a word added."""
    out: list[Any] = []
    stripped = right.strip()
    for cast in (int, Decimal):
        try:
            number = cast(stripped)
        except (ValueError, ArithmeticError):
            continue
        out += [str(v) for v in near_values(number)]
        break
    out += [f"{right} (not)", f"{right}{right}"]
    lines = [line for line in right.splitlines() if line.strip()]
    if len(lines) > 1:
        out += ["\n".join(lines[:-1]), "\n".join([*lines[:-1], lines[-1] + " (not)"])]
    out += [f"not {right}", f"{right}\nnot {right}"]
    return out


def wrong_texts(
    candidates: Sequence[Any], render: Callable[[Any], str], key_of: Callable[[str], str | None], right_key: str,
) -> list[str]:
    """The rendered `candidates` whose key (`key_of(text)`: None when refused) is valid and
    differs from `right_key`, without repeats, in order."""
    out: list[str] = []
    seen = {right_key}
    for value in candidates:
        try:
            text = render(value)
            key = key_of(text)
        except Exception:  # noqa: BLE001 -- a user's render, parser or rule refuses this candidate
            continue
        if key is not None and key not in seen:
            seen.add(key)
            out.append(text)
    return out


def generic_candidates(right: Any, right_key: str) -> list[Any]:
    """Everything worth trying on a key nothing is known about: values near the right value,
    near its key read as JSON or a Python literal, and a few common short answers."""
    import ast
    import json

    out = list(near_values(right))
    for read in (json.loads, ast.literal_eval):
        try:
            value = read(right_key)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        out += near_values(value)
        out += [json.dumps(v) for v in near_values(value) if not isinstance(v, (set, frozenset))]
    if not isinstance(right, str):
        out += near_values(str(right))
    return [*out, *_GENERIC]


def only_answer(name: str, where: str, right_key: str) -> NoWrongAnswer:
    """The refusal for a key that accepts none of the candidates (see the module docstring)."""
    return NoWrongAnswer(
        f"{name}: the simulator found no wrong answer that the key accepts at {where} (right answer "
        f"{right_key[:60]!r}), so sim:P would be right every time; give wrong=... (answers the key accepts)"
    )
