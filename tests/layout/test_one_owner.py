"""One owner per setting and one copy of each behaviour, checked on the source (#27 §2, §3).

Static, like `test_layout`: a second copy of a default or of a helper is found by reading the
files, before it can drift from the first."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Library code only, by import name (the scripts in bench/ and the tests may name figures).
LIBRARY = {
    ".".join([package, *path.relative_to(ROOT / folder).with_suffix("").parts]): path
    for package, folder in (("maker", "maker"), ("maker.tasks", "tasks"), ("maker.cluster", "cluster"),
                            ("maker.voting", "voting"))
    for path in sorted((ROOT / folder).rglob("*.py"))
}
#: modules still allowed to spell the cap (none: the CLI's flags are "not given" since #27's cli part)
PENDING: tuple[str, ...] = ()


def test_the_output_token_cap_is_spelled_once() -> None:
    """The cap's default (750) lives in `VotingConfig.max_output_tokens` only; every other
    place derives it from there."""
    found = []
    for name, path in LIBRARY.items():
        if name.startswith(PENDING):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"(?<![\d.,])750(?![\d,])", line):
                found.append(f"{path.relative_to(ROOT)}:{number}")
    assert len(found) == 1 and found[0].startswith("maker/config.py:"), found


def test_an_exception_as_one_line_has_one_definition() -> None:
    """`one_line` (an exception as one line, keys redacted) is defined once, at the bottom
    layer (`maker.errors`), and every other module imports it."""
    defined = []
    for name, path in LIBRARY.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.lstrip("_") == "one_line":
                defined.append(name)
    assert defined == ["maker.errors"]


def test_the_runtime_reads_optional_task_members_through_the_protocol() -> None:
    """#27 §4: the runtime read task members nobody declared through ``getattr(task, name,
    default)`` with defaults of its own; they are declared on `Task`/`Oracle` with their
    defaults, and read through `maker.tasks.base.optional`."""
    import sys

    sys.path.insert(0, str(ROOT))
    from maker.tasks.base import OPTIONAL

    names = "|".join(OPTIONAL)
    pattern = re.compile(rf"(?:getattr|hasattr)\(\s*[\w.]*(?:task|oracle)\w*,\s*[\"']({names})[\"']")
    found = [f"{path.relative_to(ROOT)}:{n}" for name, path in LIBRARY.items()
             for n, line in enumerate(path.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == [], found
