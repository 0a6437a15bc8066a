"""Every test that starts a process is marked `subprocess`, every test on the session's Ray
is marked `ray`, so `-m "not ray and not local_model and not slow and not subprocess"` is a
fast loop that starts nothing.

This is the static half (it reads the test files, so a test that is never run is checked
too); tests/conftest.py checks at run time what each test really starts.  A test counts as
starting a process when it, or a module-level helper or fixture it names (transitively),
calls `subprocess.*`, `asyncio.create_subprocess_*` or the MCP SDK's `stdio_client`.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
SPAWNING_CALLS = {"Popen", "run", "check_output", "check_call", "call"}


def _spawns(node: ast.AST) -> bool:
    for n in ast.walk(node):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            if f.value.id == "subprocess" and f.attr in SPAWNING_CALLS:
                return True
            if f.value.id == "asyncio" and f.attr.startswith("create_subprocess"):
                return True
        if isinstance(f, ast.Name) and f.id in ("Popen", "stdio_client"):
            return True
    return False


def _marks(decorators: list[ast.expr]) -> set[str]:
    out = set()
    for d in decorators:
        text = ast.unparse(d)
        if text.startswith("pytest.mark."):
            out.add(text.split(".")[2].split("(")[0])
    return out


def _module_marks(tree: ast.Module) -> set[str]:
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets):
            values = n.value.elts if isinstance(n.value, (ast.List, ast.Tuple)) else [n.value]
            return _marks(values)
    return set()


def unmarked(path: Path) -> list[str]:
    """`path:line name: what is missing` for each test in the file that lacks a marker."""
    tree = ast.parse(path.read_text())
    module = _module_marks(tree)
    funcs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    spawning = {name for name, f in funcs.items() if _spawns(f)}
    grew = True
    while grew:  # helpers and fixtures that call spawning helpers, by name or as a fixture argument
        grew = False
        for name, f in funcs.items():
            used = {n.id for n in ast.walk(f) if isinstance(n, ast.Name)} | {a.arg for a in f.args.args}
            if name not in spawning and used & spawning:
                spawning.add(name)
                grew = True
    out = []
    for name, f in funcs.items():
        if not name.startswith("test_"):
            continue
        marks = _marks(f.decorator_list) | module
        shown = path.relative_to(TESTS.parent) if path.is_relative_to(TESTS.parent) else path.name
        where = f"{shown}:{f.lineno} {name}"
        if name in spawning and not marks & {"subprocess", "local_model"}:
            out.append(f"{where}: starts a process, not marked subprocess")
        if "ray_address" in {a.arg for a in f.args.args} and "ray" not in marks:
            out.append(f"{where}: takes ray_address, not marked ray")
    return out


def test_every_test_that_starts_a_process_or_takes_ray_is_marked() -> None:
    found = [line for path in sorted(TESTS.rglob("test_*.py")) for line in unmarked(path)]
    assert found == []


def test_the_check_sees_a_helper_that_spawns(tmp_path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import subprocess\n\n"
        "def helper():\n    return subprocess.run(['true'])\n\n"
        "def test_indirect(ray_address):\n    helper()\n"
    )
    assert [line.split(": ", 1)[1] for line in unmarked(sample)] == [
        "starts a process, not marked subprocess", "takes ray_address, not marked ray"]
