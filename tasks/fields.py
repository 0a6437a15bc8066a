"""Find a named field's last value in a reply, whatever markup surrounds it; and spot a
placeholder written in another notation than ``#E<n>`` (`foreign_placeholder`: plan files
and a model's plan proposals refuse it by name).

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

What counts as the field: its name as a word of its own (not ``previous_move`` nor
``moved``), in any markup (``**move**:``, ``*move*:``, ``__move__:``, ``| move |``,
``"move":``), followed by ``=``, ``:`` (full-width too) or a table bar.  The model's last
word on a field is its last *mention*: when the name appears again on a later line in
another form (``*move* -> [2, 0, 2]``, ``the move is [2, 0, 2]``, ``<move>...</move>``),
the reply has no readable last value and `last_field` returns None (a red flag), never the
earlier value:

    >>> last_field("move = [1, 1, 2]\\nso the move is [2, 0, 2]", "move") is None
    True
    >>> last_field("move = [1, 1, 2]\\n*move*: [2, 0, 2]", "move")
    '[2, 0, 2]'
"""

from __future__ import annotations

import re
from functools import lru_cache

from .keys import strip_markup

#: A trailing note after the value: " (final)", " (checked)", "<- answer", " # checked", a
#: table's closing bar.  A note is set off by a space, so that "f(x)", "C#" and "#E2" stay values.
_NOTE = re.compile(r"(?:\s+\((?=[^()]*[A-Za-z])[^()]*\)|\s*<-+.*|\s+#(?:\s.*)?|\s*\|)\s*\Z")
#: Markup that may close around the value on its line: bold, italics, code.
_CLOSERS = ("**", "__", "`", "*", "_")
#: The name as a word of its own: not inside an identifier (``previous_move``, ``moved``),
#: but it may sit in markup (``_move_``, ``**move**``).
_BEFORE = r"(?<![A-Za-z0-9.])(?<![A-Za-z0-9]_)"
_AFTER = r"(?![A-Za-z0-9])(?!_[A-Za-z0-9])"


@lru_cache(maxsize=256)
def _patterns(name: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(a label ``name =``/``name:`` in any markup, any mention of the name)."""
    word = _BEFORE + re.escape(name) + _AFTER
    label = re.compile(word + r"(?:\*\*|__|\*|_|`|\"|')?[ \t]*(?:[:=\uff1a\uff1d]|\|)", re.I)
    return label, re.compile(word, re.I)


def last_field(reply: str, name: str) -> str | None:
    """The text after the last ``name =`` or ``name:`` in `reply`, to the end of its line,
    without surrounding markup or a trailing note; None when the field is absent, or when
    the name is mentioned again on a later line in a form that gives no value.

    The value is not parsed here: a strict parser decides whether it is an answer."""
    label, mention = _patterns(name)
    last = None
    for last in label.finditer(reply):  # noqa: B007 (keeps the last match)
        pass
    if last is None:
        return None
    end = reply.find("\n", last.end())
    if end >= 0 and mention.search(reply, end) is not None:
        return None  # named again after its last value: what the model said last is not a value
    value = (reply[last.end() :] if end < 0 else reply[last.end() : end]).strip()
    if "*" in value or "_" in value or "`" in value:  # markup opened before the name may close around the value
        prefix = reply[reply.rfind("\n", 0, last.start()) + 1 : last.start()]
        for closer in _CLOSERS:
            if closer in prefix and value.startswith(closer) and value.count(closer) % 2:
                value = value[len(closer) :].strip()  # "**move:** 5": the bold closed after the separator
        for closer in _CLOSERS:
            if closer in prefix and closer in value and value.count(closer) % 2:
                value = value[: value.rindex(closer)].strip()
    if "(" in value or "<" in value or "#" in value or "|" in value:  # only then can a note trail it
        value = _NOTE.sub("", value)
    return strip_markup(value)


#: Placeholders written in other notations (`${1}`, `{E1}`, `$E1`, `{{E1}}`): always refused.
_FOREIGN = re.compile(r"\$\{[^{}]{0,20}\}|\{\{?\s*#?[Ee][0-9]+(?:\.\w+)?\s*\}\}?|\$#?[Ee][0-9]+\b")
#: `$1` or `#e1`: refused in a bare input and in the answer; inside a quoted question only
#: when a step with that number exists (elsewhere `$1` may be a price).
_FOREIGN_NUMBER = re.compile(r"(?:\$|#e)([0-9]+)\b")


def foreign_placeholder(template: str, defined: set[int], bare: bool = False) -> str | None:
    """The first placeholder `template` writes in another notation than ``#E<n>`` (``${1}``,
    ``{E1}``, ``$E1``; ``$1`` or ``#e1`` when step 1 is in `defined`, or anywhere when `bare`);
    None when there is none.

        >>> foreign_placeholder("Double ${1}", set()), foreign_placeholder("Pay $1 for #E1", {1})
        ('${1}', '$1')
        >>> foreign_placeholder("Pay $5 for #E1", {1}) is None
        True
    """
    found = _FOREIGN.search(template)
    if found is None:
        for m in _FOREIGN_NUMBER.finditer(template):
            if bare or len(m.group(1)) <= 18 and int(m.group(1)) in defined:  # a longer number names no step
                found = m
                break
    return None if found is None else found.group()


__all__ = ["foreign_placeholder", "last_field"]
