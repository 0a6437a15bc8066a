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
ready ones for the command line and `maker.vote(key="integer")`.  Your own is a function
given as is, or named like a task (`normaliser`, `KEY_NAMES`): ``pkg.module:attr``,
``path/to/file.py:attr``, or an installed plugin's entry point in the group ``maker.keys``.

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

from maker.errors import one_line

from .plugins import PluginError, Registry

#: A key normaliser: answer text -> canonical key, or None when the text is malformed.
Normaliser = Callable[[str], "str | None"]

_INT = re.compile(r"[+-]?[0-9]+\Z")
_DEC = re.compile(r"(?P<sign>[+-]?)(?:(?P<whole>[0-9]+)(?:\.(?P<frac>[0-9]*))?|\.(?P<frac2>[0-9]+))(?:[eE](?P<exp>[+-]?[0-9]+))?\Z")
_FENCE = re.compile(r"\A```[A-Za-z0-9_-]*\n(.*?)\n?```\Z", re.S)
#: The characters markup (or a pair of quotes) can start or end with.
_MARKS = frozenset("*_`\"'")


def strip_markup(text: str, quotes: bool = True) -> str:
    """The answer without the markup models wrap around it: surrounding whitespace, bold or
    italic stars, underscores, backticks, a code fence, and (unless `quotes` is False:
    in JSON and Python literals quotes are part of the value) one pair of quotes.

    Linear in the text's length whatever it holds (``'*' * 10**6`` is one pass, not a
    million copies): the layers are peeled by moving two ends, and the text is cut once.

    >>> strip_markup(' **`42`** ')
    '42'
    """
    out = text.strip()
    if not out or out[0] not in _MARKS or out[-1] not in _MARKS:
        return out  # nothing wraps it (the common case: a bare value)
    fence = _FENCE.match(out)
    if fence:
        out = fence.group(1).strip()
    lo, hi = 0, len(out)  # out[lo:hi] is what is left

    def trim() -> None:
        nonlocal lo, hi
        while lo < hi and out[lo].isspace():
            lo += 1
        while hi > lo and out[hi - 1].isspace():
            hi -= 1

    trim()
    while True:
        before = (lo, hi)
        for mark in ("**", "__", "*", "_", "`"):
            m = len(mark)
            if hi - lo > 2 * m and out.startswith(mark, lo, hi) and out.endswith(mark, lo, hi):
                lo, hi = lo + m, hi - m
                trim()
        if quotes and hi - lo >= 2 and out[lo] == out[hi - 1] and out[lo] in "\"'":
            lo, hi = lo + 1, hi - 1
            trim()
        if (lo, hi) == before:
            return out[lo:hi]


def integer(text: str) -> str | None:
    """An integer in ASCII digits, with an optional sign and one closing full stop:
    '-042' -> '-42', '+7' -> '7', ' 42.' -> '42'.  Any number of digits: the key is made
    from the digits themselves, never through `int()` (which refuses more than 4,300)."""
    s = strip_markup(text)
    if s.endswith(".") and not s.endswith(".."):
        s = s[:-1].rstrip()
    if not _INT.match(s):
        return None
    sign = "-" if s[0] == "-" else ""
    digits = s.lstrip("+-").lstrip("0")
    return sign + digits if digits else "0"


#: The longest run of zeros a decimal key writes out ('1e3' -> '1000'); a number further
#: from 1 is written in scientific form ('1e5000' -> '1e5000'), so a key stays about as
#: long as the reply that gave it.
ZEROS_WRITTEN_OUT = 1000
#: The most digits an exponent may have: '1e1234567890' is not an answer (a red flag).
_EXPONENT_DIGITS = 9


def decimal(text: str) -> str | None:
    """A decimal number in ASCII digits: '3.50' -> '3.5', '1e3' -> '1000', '-0' -> '0'.
    Thousands separators, currency signs and words are refused (None).

    The key is exact (every digit kept; no rounding to a precision) and is computed from
    the digits, so '1e1000000' or 5,000 nines is a key or None, never an exception: a value
    more than `ZEROS_WRITTEN_OUT` zeros from 1 is written '<d.ddd>e<exp>', as is an exponent
    of over nine digits refused.

    >>> decimal("1e1000000"), decimal("-0.00012300"), decimal("12345678901234567890123456789.5")
    ('1e1000000', '-0.000123', '12345678901234567890123456789.5')
    """
    s = strip_markup(text)
    m = _DEC.match(s)
    if m is None:
        return None
    sign, whole, frac, exp = m.group("sign"), m.group("whole") or "", m.group("frac") or m.group("frac2") or "", m.group("exp") or "0"
    exp_digits = exp.lstrip("+-").lstrip("0")
    if len(exp_digits) > _EXPONENT_DIGITS:
        return None
    digits = (whole + frac).lstrip("0")
    if not digits:
        return "0"
    stripped = digits.rstrip("0")
    # value = digits * 10**power, with no leading or trailing zeros in digits
    power = int(exp) - len(frac) + (len(digits) - len(stripped))
    digits = stripped
    point = len(digits) + power  # where the decimal point goes, counted from the left of digits
    if power >= 0 and power <= ZEROS_WRITTEN_OUT:
        out = digits + "0" * power
    elif 0 < point < len(digits):
        out = digits[:point] + "." + digits[point:]
    elif point <= 0 and -point <= ZEROS_WRITTEN_OUT:
        out = "0." + "0" * -point + digits
    else:
        out = digits[0] + ("." + digits[1:] if len(digits) > 1 else "") + f"e{point - 1}"
    return ("-" if sign == "-" else "") + out


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
    return _utf8(s) if s and not is_non_answer(s) else None


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
    try:
        return _utf8(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    except (ValueError, RecursionError):
        return None


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
    try:  # repr refuses an int of over 4,300 digits (``0xfff...`` reads as one)
        if isinstance(value, (set, frozenset)):
            return repr(sorted(value, key=repr))
        if isinstance(value, dict):
            return repr(dict(sorted(value.items(), key=lambda kv: repr(kv[0]))))
        return repr(value)
    except (ValueError, RecursionError, MemoryError):
        return None


def _utf8(key: str) -> str | None:
    """`key` if it can be written as UTF-8 (the step log's strings), else None: a lone
    surrogate (JSON's ``"\\ud800"`` decodes to one, and so may a reply) can be stored nowhere."""
    if key.isascii():
        return key
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return key


def line_set(text: str) -> str | None:
    """An unordered set of lines: blank lines dropped, each line stripped, duplicates merged,
    sorted; None when no line is left, or when every line is a non-answer ('unknown',
    'N/A': see `NON_ANSWERS`)."""
    lines = sorted({line.strip() for line in text.strip().splitlines() if line.strip()})
    if all(is_non_answer(line) for line in lines):
        return None
    return _utf8("\n".join(lines))


#: The ready normalisers by name (for `--key NAME` and `maker.vote(key="NAME")`).
NORMALISERS: dict[str, Normaliser] = {
    "integer": integer,
    "decimal": decimal,
    "text": text,
    "json": json_value,
    "literal": literal,
    "lines": line_set,
}


def apply_key(normalise: Normaliser, value: object) -> tuple[str | None, str | None]:
    """(key, None) for a value `normalise` reads, (None, why) when it refuses it, raises (a
    user's key function on a reply it did not expect) or returns something other than a
    string: a reply is data, so none of these may crash the judge.  A value that is not a
    string (what a user's parser returned) is read as its `str`.

        >>> apply_key(integer, " 42 "), apply_key(integer, "forty-two")
        (('42', None), (None, None))
        >>> apply_key(lambda text: 1 / 0, "42")
        (None, 'the key function raised ZeroDivisionError: division by zero')
    """
    try:
        key = normalise(value if isinstance(value, str) else str(value))
    except Exception as exc:
        return None, f"the key function raised {one_line(exc, typed=True)}"[:200]
    if key is None or isinstance(key, str):
        return key, None
    return None, f"the key function returned a {type(key).__name__}, not a string"


def _parametrised(name: str) -> Normaliser | None:
    if name.startswith("choice:"):
        return choice(*[o for o in name[len("choice:") :].split(",") if o.strip()])
    return None


#: The entry-point group installed plugins declare key normalisers in.
ENTRY_POINT_GROUP = "maker.keys"

#: Key normalisers by name: the ready ones (`NORMALISERS`, ``choice:a,b,c``), installed
#: plugins (entry points in ``maker.keys``), ``module:attr`` and ``file.py:attr``.
KEY_NAMES = Registry("key normaliser", ENTRY_POINT_GROUP, NORMALISERS, _parametrised, ("choice:a,b,...",))


def normaliser(spec: str | Normaliser) -> Normaliser:
    """A normaliser from a function `str -> str | None` (used as is), a name in
    `NORMALISERS`, ``choice:a,b,c``, an installed plugin's short name (entry-point group
    ``maker.keys``), ``pkg.module:attr`` or ``path/to/file.py:attr``.

    Raises ValueError (one line, naming the known ones) for a name that names no function.

        >>> normaliser("maker.tasks.keys:integer")(" 042 ")
        '42'
    """
    if callable(spec):
        return spec
    try:
        found = KEY_NAMES.find(spec).target
    except PluginError as exc:
        raise ValueError(f"{exc} (or a function)" if str(exc).startswith("unknown") else str(exc)) from None
    if not callable(found):
        raise ValueError(f"key normaliser {spec!r} is a {type(found).__name__}, not a function str -> str | None")
    return found


__all__ = [
    "NON_ANSWERS",
    "ENTRY_POINT_GROUP",
    "KEY_NAMES",
    "NORMALISERS",
    "Normaliser",
    "apply_key",
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
