"""Naming a task: built-in, installed plugin (entry point), pkg.module:attr, file.py:attr."""

from __future__ import annotations

import textwrap

import pytest
from maker.tasks import TaskSpec, build_task
from maker.tasks.registry import TaskNameError, available, resolve

TASK_FILE = '''
from maker.tasks.base import TaskOption
from maker.tasks.chain_task import chain_task


def ledger(n: int = 4, start: int = 100):
    """A running balance."""
    if n > 1000:
        raise ValueError("n is at most 1000")
    return chain_task(name="ledger", start=start, steps=n, key="integer",
                      prompt=lambda b, i: f"{b} + {i} =", truth=lambda b, i: b + i)


ledger.options = (TaskOption("n", int, "transactions", default=4), TaskOption("start", int, "opening balance"))
ready = ledger(3)
not_a_task = 42
'''


@pytest.fixture
def task_file(tmp_path):
    path = tmp_path / "tasks.py"  # a user's own `tasks.py` must not collide with maker.tasks
    path.write_text(TASK_FILE)
    return path


def test_file_reference_builds_the_task_and_records_its_name(task_file) -> None:
    task = build_task(TaskSpec(f"{task_file}:ledger", {"n": 6}))
    assert task.total_steps == 6
    assert task.spec == TaskSpec(f"{task_file.resolve()}:ledger", {"n": 6})  # what the log records
    again = build_task(task.spec)  # as replay --verify and --resume do
    assert again.truth(5) == task.truth(5) == str(100 + sum(range(6)))


def test_a_ready_task_object_and_its_options(task_file) -> None:
    source = resolve(f"{task_file}:ready")
    assert source.build({}).total_steps == 3 and source.options == ()
    with pytest.raises(TaskNameError, match="takes no options"):
        source.build({"n": 2})
    assert [o.name for o in resolve(f"{task_file}:ledger").options] == ["n", "start"]


def test_module_reference_from_sys_path(task_file, monkeypatch) -> None:
    (task_file.parent / "my_ledger_mod.py").write_text(TASK_FILE)
    monkeypatch.syspath_prepend(str(task_file.parent))
    source = resolve("my_ledger_mod:ledger")
    assert source.origin == "module my_ledger_mod" and source.build({"n": 2}).total_steps == 2


@pytest.mark.parametrize(
    "name,options,needle",
    [
        ("no_such_module_xyz:task", {}, "no module named 'no_such_module_xyz'"),
        ("{file}:missing", {}, "has no attribute 'missing'"),
        ("{file}:not_a_task", {}, "not a task"),
        ("{file}:ledger", {"n": 5000}, "the factory raised ValueError: n is at most 1000"),
        ("{file}:ledger", {"colour": "red"}, "does not take option(s) colour"),
        ("/no/such/file.py:task", {}, "no such file"),
        ("sudoku", {}, "unknown task 'sudoku'"),
    ],
)
def test_bad_names_are_one_line(task_file, name, options, needle) -> None:
    with pytest.raises(TaskNameError) as info:
        build_task(TaskSpec(name.format(file=task_file), options))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_file_that_does_not_import_is_one_line(tmp_path) -> None:
    bad = tmp_path / "broken.py"
    bad.write_text("import definitely_not_installed_pkg\n")
    with pytest.raises(TaskNameError, match="cannot load .*ModuleNotFoundError"):
        resolve(f"{bad}:task")


def test_entry_point_plugin_runs_by_short_name(tmp_path, monkeypatch) -> None:
    pkg = tmp_path / "maker_ledger_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(TASK_FILE)
    dist = tmp_path / "maker_ledger_plugin-0.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: maker-ledger-plugin\nVersion: 0.3\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [maker.tasks]
        ledger = maker_ledger_plugin:ledger
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    source = resolve("ledger")
    assert source.origin.startswith("plugin maker-ledger-plugin 0.3")
    assert build_task(TaskSpec("ledger", {"n": 7})).total_steps == 7
    listed = {s.name: s for s in available()}
    assert "ledger" in listed and "hanoi" in listed and listed["hanoi"].origin == "built-in"


def test_a_log_whose_task_is_gone_says_where_it_came_from() -> None:
    from maker.tasks.registry import rebuild

    run = {"task": "ledger_gone_q15", "task_options": {"n": 3}, "task_origin": "plugin maker-ledger 0.3 (ledger = x:y)"}
    with pytest.raises(TaskNameError) as info:
        rebuild(run)
    assert "unknown task 'ledger_gone_q15'" in str(info.value) and "came from plugin maker-ledger 0.3" in str(info.value)


def test_built_tasks_know_their_origin(task_file) -> None:
    assert build_task(TaskSpec("hanoi", {"disks": 3})).maker_origin == "built-in"
    assert build_task(TaskSpec(f"{task_file}:ledger", {})).maker_origin == f"file {task_file.resolve()}"


UNDECLARED = '''
import maker


def ledger(n: int = 200, start: int = 100, rate: float = 0.0, label: str = "cash", strict: bool = False, moves=None):
    return maker.chain_task(name="ledger", start=start, steps=n, key="integer",
                            prompt=lambda b, i: f"{b} + {i} =", truth=lambda b, i: b + i)


class Walk:
    def __init__(self, hops: int, note=None):
        self.task = ledger(hops)
'''


def test_a_factory_without_options_declares_them_by_its_signature(tmp_path) -> None:
    path = tmp_path / "mine.py"
    path.write_text(UNDECLARED)
    found = [(o.name, o.type, o.default, o.required) for o in resolve(f"{path}:ledger").options]
    assert found == [("n", int, 200, False), ("start", int, 100, False), ("rate", float, 0.0, False),
                     ("label", str, "cash", False)]  # a bool or untyped parameter is --opt only
    assert [(o.name, o.required) for o in resolve(f"{path}:Walk").options] == [("hops", True)]
    with pytest.raises(TaskNameError) as info:
        build_task(TaskSpec(f"{path}:ledger", {"n": 3, "disks": 4}))
    assert "does not take option(s) disks (it takes: label, n, rate, start)" in str(info.value)
