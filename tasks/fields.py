"""Find a named field's last value in a reply, whatever markup surrounds it.

Why the *last*: models think aloud.  A reply may name a candidate, reject it, and give
the answer after it; the answer is what it says last (MAKER, arXiv 2511.09030: "the
last occurrence of each").  Why never an earlier one: when the last candidate does not
parse strictly, falling back to an earlier one would vote for an answer the model
rejected.  Callers therefore parse only what `last_field` returns and red-flag the reply
(``malformed``) when that fails.

    >>> reply = '''If disk 1 moved again: move = [1, 1, 2]
    ... But disk 1 just moved, so:
    ... **move = [2, 0, 2]** (final)'''
    >>> last_field(reply, "move")
    '[2, 0, 2]'
    >>> last_field("answer: `42`", "answer")
    '42'
    >>> last_field("no field here", "answer") is None
    True
"""

from __future__ import annotations

import re
from functools import lru_cache

from .keys import strip_markup

#: A trailing note after the value: " (final)", " (checked)", "<- answer", " # checked".  A note
#: is set off by a space, so that "f(x)", "C#" and "#E2" stay values.
_NOTE = re.compile(r"(?:\s+\((?=[^()]*[A-Za-z])[^()]*\)|\s*<-+.*|\s+#(?:\s.*)?)\s*\Z")
#: Markup that may close around the value on its line: bold, italics, code.
_CLOSERS = ("**", "__", "`")


@lru_cache(maxsize=256)
def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w.]){re.escape(name)}\s*(?:\*\*|__|`)?\s*[:=]", re.I)


def last_field(reply: str, name: str) -> str | None:
    """The text after the last ``name =`` or ``name:`` in `reply`, to the end of its line,
    without surrounding markup or a trailing note; None when the field is absent.

    The value is not parsed here: a strict parser decides whether it is an answer."""
    last = None
    for last in _pattern(name).finditer(reply):  # noqa: B007 (keeps the last match)
        pass
    if last is None:
        return None
    end = reply.find("\n", last.end())
    value = (reply[last.end() :] if end < 0 else reply[last.end() : end]).strip()
    if "**" in value or "__" in value or "`" in value:  # the value ends where markup opened before the name closes
        prefix = reply[reply.rfind("\n", 0, last.start()) + 1 : last.start()]
        for closer in _CLOSERS:
            if closer in prefix and closer in value:
                value = value[: value.rindex(closer)].strip() if value.count(closer) % 2 else value
    if "(" in value or "<" in value or "#" in value:  # only then can a note trail it
        value = _NOTE.sub("", value)
    return strip_markup(value)


__all__ = ["last_field"]
