"""`maker.tasks.keys` and `maker.tasks.fields`: strict normalisers and last-field extraction, table-tested."""

from __future__ import annotations

import doctest

import pytest
from maker.tasks import fields, keys
from maker.tasks.fields import last_field
from maker.tasks.keys import choice, decimal, integer, json_value, line_set, literal, normaliser, text


@pytest.mark.parametrize("module", [keys, fields])
def test_examples_run(module) -> None:
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("fn", "raw", "key"),
    [
        (integer, "42", "42"),
        (integer, " **-042** ", "-42"),
        (integer, "+7", "7"),
        (integer, "٤٢", None),  # Arabic-Indic digits
        (integer, "４２", None),  # full-width digits
        (integer, "4 2", None),
        (integer, "42.0", None),
        (integer, " 42.", "42"),  # a sentence's full stop
        (integer, "42..", None),
        (integer, "", None),
        (decimal, "3.50", "3.5"),
        (decimal, "-0.0", "0"),
        (decimal, "1e3", "1000"),
        (decimal, "1,000", None),
        (decimal, "$5", None),
        (decimal, "٣.٥", None),
        (text, "  Hello   World ", "hello world"),
        (text, "   ", None),
        (text, "Unknown.", None),  # a non-answer is never a vote
        (text, "**N/A**", None),
        (json_value, '{"b": 1.0, "a": [1, 2]}', '{"a":[1,2],"b":1}'),
        (json_value, "NaN", None),
        (json_value, "{'a': 1}", None),
        (json_value, "null", None),  # a non-answer as a whole is never a vote
        (json_value, '"Unknown"', None),
        (json_value, '{"a": null}', '{"a":null}'),  # null inside an answer is part of it
        (json_value, '"blue"', '"blue"'),
        (literal, "[1, 2, (3, 4)]", "[1, 2, (3, 4)]"),
        (literal, "{3, 1, 2}", "[1, 2, 3]"),
        (literal, "__import__('os')", None),
        (literal, "[٤]", None),
        (literal, "None", None),  # a non-answer as a whole is never a vote
        (literal, "'n/a'", None),
        (literal, "(None, 1)", "(None, 1)"),
        (line_set, "b\na\n\nb", "a\nb"),
        (line_set, "\n \n", None),
        (line_set, "unknown\nN/A", None),  # a non-answer on every line is not a vote
        (line_set, "unknown\nblue", "blue\nunknown"),
    ],
)
def test_normalisers(fn, raw, key) -> None:
    assert fn(raw) == key


def test_choice_and_lookup() -> None:
    yes_no = choice("Yes", "No")
    assert yes_no("**YES**") == "yes"
    assert yes_no("maybe") is None
    assert choice("yes", "no", "unknown")("Unknown") == "unknown"  # a task may make it an answer
    assert normaliser("choice:red,green")("Green") == "green"
    assert normaliser("integer") is integer
    with pytest.raises(ValueError, match="unknown key normaliser 'roman'"):
        normaliser("roman")
    with pytest.raises(ValueError):
        choice("a", "A")


@pytest.mark.parametrize(
    ("reply", "value"),
    [
        ("move = [1, 1, 2]\nBut disk 1 just moved, so:\n**move = [2, 0, 2]**", "[2, 0, 2]"),
        ("`move = [2, 0, 2]` (final)", "[2, 0, 2]"),
        ("move = [2, 0, 2] (final)", "[2, 0, 2]"),
        ("- **move**: [1,2,3]", "[1,2,3]"),
        ("remove = 5\nmove=1", "1"),
        ("move = [2, 0, 2]\nmove = oops", "oops"),  # the last candidate, even when it is bad
        ("nothing", None),
        ("move = f(x)", "f(x)"),  # a note is set off by a space
        ("move = #E2", "#E2"),
        ("move = C# # the language", "C#"),
        ("move = [2, 0, 2] (the only legal move)", "[2, 0, 2]"),  # named again on its own line: still its value
        ("move = [1, 1, 2]\nprevious_move = [1, 0, 1]\nmy_move: 3", "[1, 1, 2]"),  # other fields' names
        ("move = [1, 1, 2]\nthat move is wrong", None),  # named again later without a value: no last value
        ("move = [1, 1, 2]\n*move*: [2, 0, 2]", "[2, 0, 2]"),
    ],
)
def test_last_field(reply, value) -> None:
    assert last_field(reply, "move") == value
