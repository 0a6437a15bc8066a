"""Key normalisers: turn an answer's text into its canonical vote key, or None when malformed.

Why: votes are counted on keys, never on raw text, so that "42", " 42 " and "**42**" are one
answer, not three that split the vote (MAKER, arXiv 2511.09030, sec. 4: a run was split
across answers that differed only in formatting).  Each normaliser is a pure function
``str -> str | None``; ``None`` means the text is not an answer of that kind, which the
caller turns into a ``malformed`` red flag.  They are strict: digits are ASCII only
(Python's ``int()`` and ``\\d`` also accept Arabic-Indic and other scripts' digits), nothing
is evaluated (``ast.literal_eval``, never ``eval``), and a value that is not exactly one
answer is refused rather than guessed.

Compose them: ``choice("yes", "no")`` returns a normaliser; ``NORMALISERS`` names the
ready ones for the command line and `maker.vote(key="integer")`.

    >>> integer(" **-042** ")
    '-42'
    >>> integer("٤٢") is None        # Arabic-Indic digits are not ASCII digits
    True
    >>> decimal("3.50")
    '3.5'
    >>> text("  Hello   World ")
    'hello world'
    >>> choice("Yes", "No")("`yes`")
    'yes'
    >>> json_value('{"b": 1.0, "a": [1, 2]}')
    '{"a":[1,2],"b":1}'
    >>> literal("[1, 2, (3, 4)]")
    '[1, 2, (3, 4)]'
    >>> line_set("b\\na\\n\\nb")
    'a\\nb'
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

#: A key normaliser: answer text -> canonical key, or None when the text is malformed.
Normaliser = Callable[[str], "str | None"]

_INT = re.compile(r"[+-]?[0-9]+\Z")
_DEC = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*\n(.*?)\n?```\Z", re.S)
#: The characters markup (or a pair of quotes) can start or end with.
_MARKS = frozenset("*_`\"'")


def strip_markup(text: str, quotes: bool = True) -> str:
    """The answer without the markup models wrap around it: surrounding whitespace, bold or
    italic stars, underscores, backticks, a code fence, and (unless `quotes` is False:
    in JSON and Python literals quotes are part of the value) one pair of quotes.

    >>> strip_markup(' **`42`** ')
    '42'
    """
    out = text.strip()
    if not out or out[0] not in _MARKS or out[-1] not in _MARKS:
        return out  # nothing wraps it (the common case: a bare value)
    fence = _FENCE.match(out)
    if fence:
        out = fence.group(1).strip()
    while True:
        before = out
        for mark in ("**", "__", "*", "_", "`"):
            if len(out) > 2 * len(mark) and out.startswith(mark) and out.endswith(mark):
                out = out[len(mark) : -len(mark)].strip()
        if quotes and len(out) >= 2 and out[0] == out[-1] and out[0] in "\"'":
            out = out[1:-1].strip()
        if out == before:
            return out


def integer(text: str) -> str | None:
    """An integer in ASCII digits, with an optional sign and one closing full stop:
    '-042' -> '-42', '+7' -> '7', ' 42.' -> '42'."""
    s = strip_markup(text)
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    if not _INT.match(s):
        return None
    return str(int(s))


def decimal(text: str) -> str | None:
    """A decimal number in ASCII digits: '3.50' -> '3.5', '1e3' -> '1000', '-0' -> '0'.
    Thousands separators, currency signs and words are refused (None)."""
    s = strip_markup(text)
    if not _DEC.match(s):
        return None
    try:
        value = Decimal(s)
    except InvalidOperation:
        return None
    if value == 0:
        return "0"
    out = format(value.normalize(), "f")
    return out


#: Replies that say there is no answer.  They are never votes: a non-answer that won a
#: vote would be passed on as a value, and a run would look solved without one.  (A task
#: where "unknown" is a real answer says so with `choice(..., "unknown")`.)
NON_ANSWERS = frozenset(
    {"unknown", "n/a", "na", "none", "null", "nil", "nan", "?", "-", "idk", "i don't know", "i do not know",
     "not known", "unknowable", "undefined", "cannot be determined", "can't be determined", "not enough information",
     "insufficient information", "error", "no answer", "not sure", "unsure"}
)


def is_non_answer(value: str) -> bool:
    """Whether `value` (an answer's text) says there is no answer: 'unknown', 'N/A', '?'...

        >>> is_non_answer("Unknown."), is_non_answer("**n/a**"), is_non_answer("none of them")
        (True, True, False)
    """
    return strip_markup(value).strip().rstrip(".!").strip().replace("\u2019", "'").casefold() in NON_ANSWERS


def text(text: str) -> str | None:
    """Free text, case- and whitespace-folded: '  Hello   World ' -> 'hello world'; None when
    empty or a non-answer ('unknown', 'N/A': see `NON_ANSWERS`)."""
    s = " ".join(strip_markup(text).split()).casefold()
    return s if s and not is_non_answer(s) else None


def choice(*options: str) -> Normaliser:
    """A normaliser that accepts exactly one of `options` (compared case- and
    whitespace-folded) and returns that option folded.

    Raises ValueError when no option is given or two fold to the same key."""
    if not options:
        raise ValueError("choice() needs at least one option")
    folded = {" ".join(o.split()).casefold(): o for o in options}
    if len(folded) != len(options):
        raise ValueError(f"choice options fold to the same key: {options!r}")

    def pick(answer: str) -> str | None:
        key = " ".join(strip_markup(answer).split()).casefold()  # an option may be "unknown": no non-answer check
        return key if key in folded else None

    pick.__name__ = f"choice({', '.join(options)})"
    pick.options = tuple(folded)  # type: ignore[attr-defined]  # the folded keys, for wrong answers
    return pick


def _canonical_numbers(value: object) -> object:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, list):
        return [_canonical_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical_numbers(v) for k, v in value.items()}
    return value


def json_value(text: str) -> str | None:
    """Canonical JSON: keys sorted, no spaces, 1.0 written as 1; None when it does not parse,
    holds a number in other digits than ASCII, or is a non-answer as a whole (`null`, or a
    string such as "unknown": see `NON_ANSWERS`)."""
    s = strip_markup(text, quotes=False)
    try:
        value = json.loads(s, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
        value = _canonical_numbers(value)
    except (ValueError, RecursionError):
        return None
    if value is None or (isinstance(value, str) and is_non_answer(value)):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def literal(text: str) -> str | None:
    """A Python literal (numbers, strings, tuples, lists, dicts, sets, booleans, None) read by
    `ast.literal_eval` -- never `eval` -- and written back by `repr`; None when it is not one,
    or is a non-answer as a whole (`None`, or a string such as 'unknown': see `NON_ANSWERS`)."""
    s = strip_markup(text, quotes=False)
    if not s.isascii():
        return None  # other scripts' digits are not our digits; identifiers are not literals
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if value is None or (isinstance(value, str) and is_non_answer(value)):
        return None
    if isinstance(value, (set, frozenset)):
        return repr(sorted(value, key=repr))
    if isinstance(value, dict):
        return repr(dict(sorted(value.items(), key=lambda kv: repr(kv[0]))))
    return repr(value)


def line_set(text: str) -> str | None:
    """An unordered set of lines: blank lines dropped, each line stripped, duplicates merged,
    sorted; None when no line is left, or when every line is a non-answer ('unknown',
    'N/A': see `NON_ANSWERS`)."""
    lines = sorted({line.strip() for line in text.strip().splitlines() if line.strip()})
    if all(is_non_answer(line) for line in lines):
        return None
    return "\n".join(lines)


#: The ready normalisers by name (for `--key NAME` and `maker.vote(key="NAME")`).
NORMALISERS: dict[str, Normaliser] = {
    "integer": integer,
    "decimal": decimal,
    "text": text,
    "json": json_value,
    "literal": literal,
    "lines": line_set,
}


def normaliser(spec: str | Normaliser) -> Normaliser:
    """A normaliser from a callable or a name in `NORMALISERS`, or ``choice:a,b,c``.

    Raises ValueError (one line, naming the known ones) for an unknown name."""
    if callable(spec):
        return spec
    if isinstance(spec, str) and spec.startswith("choice:"):
        return choice(*[o for o in spec[len("choice:") :].split(",") if o.strip()])
    found = NORMALISERS.get(spec) if isinstance(spec, str) else None
    if found is None:
        known = ", ".join([*NORMALISERS, "choice:a,b,..."])
        raise ValueError(f"unknown key normaliser {spec!r} (known: {known}, or a function)")
    return found


__all__ = [
    "NON_ANSWERS",
    "NORMALISERS",
    "Normaliser",
    "choice",
    "decimal",
    "integer",
    "is_non_answer",
    "json_value",
    "line_set",
    "literal",
    "normaliser",
    "strip_markup",
    "text",
]
