"""One open registry shape (`maker.tasks.plugins.Registry`) for tasks, red-flag detectors and
key normalisers: each takes the user's object, a ``module:attr`` / ``file.py:attr`` name, or
an installed plugin's short name (an entry point; here a temporary dist-info on sys.path)."""

from __future__ import annotations

import textwrap

import pytest
from maker.tasks import TaskSpec, build_task
from maker.tasks.chain_task import chain_task
from maker.tasks.keys import KEY_NAMES, NORMALISERS, integer, normaliser
from maker.tasks.plugins import PluginError, Registry, load_ref
from maker.tasks.registry import TASK_NAMES

from maker.engine.detectors import DETECTOR_NAMES

KEYS_MODULE = textwrap.dedent('''
    ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5"}

    def roman(text):
        """Roman numerals i..v as their decimal key."""
        return ROMAN.get(text.strip().lower())

    not_a_function = 42
''')


def _install(tmp_path, monkeypatch, group: str, entry: str, module: str = "maker_roman_keys") -> None:
    """A module and a distribution declaring `entry` (name = module:attr) in `group`, on sys.path."""
    (tmp_path / f"{module}.py").write_text(KEYS_MODULE)
    dist = tmp_path / f"{module}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module.replace('_', '-')}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[{group}]\n{entry}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_the_three_registries_have_one_shape() -> None:
    assert all(isinstance(r, Registry) for r in (TASK_NAMES, DETECTOR_NAMES, KEY_NAMES))
    assert [r.group for r in (TASK_NAMES, DETECTOR_NAMES, KEY_NAMES)] == ["maker.tasks", "maker.red_flags", "maker.keys"]


def test_a_key_normaliser_as_module_attr(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_roman_keys.py").write_text(KEYS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    roman = normaliser("my_roman_keys:roman")
    assert roman(" IV ") == "4" and roman("vi") is None
    assert KEY_NAMES.find("my_roman_keys:roman").origin == "module my_roman_keys"


def test_a_key_normaliser_as_a_file_reference(tmp_path) -> None:
    path = tmp_path / "keys_here.py"
    path.write_text(KEYS_MODULE)
    assert normaliser(f"{path}:roman")("ii") == "2"
    found = KEY_NAMES.find(f"{path}:roman")
    assert found.origin == f"file {path.resolve()}" and found.ref == f"{path.resolve()}:roman"


def test_a_key_normaliser_as_an_entry_point(tmp_path, monkeypatch) -> None:
    _install(tmp_path, monkeypatch, "maker.keys", "roman = maker_roman_keys:roman")
    assert normaliser("roman")("iii") == "3"
    found = KEY_NAMES.find("roman")
    assert found.origin == "plugin maker-roman-keys 1.0 (roman = maker_roman_keys:roman)"
    assert found.ref == "maker_roman_keys:roman" and "roman" in KEY_NAMES.names()
    # a task names its key by the plugin's short name, and votes on it
    task = chain_task(name="count", start=0, steps=2, prompt=lambda s, i: "next?", key="roman",
                      truth=lambda s, i: s + 1)
    verdict = task.judge(task.first_step(), " I ")
    assert verdict.key == "1" and verdict.red_flag is None


def test_the_users_own_function_and_the_built_ins_still_work() -> None:
    def mine(text: str) -> str | None:
        return text.strip() or None

    assert normaliser(mine) is mine and KEY_NAMES.find(mine).origin == "object"
    assert normaliser("integer") is integer and set(NORMALISERS) <= set(KEY_NAMES.names())
    assert normaliser("choice:yes,no")(" Yes ") == "yes"


@pytest.mark.parametrize(
    "name,needle",
    [
        ("roman_xyz", "unknown key normaliser 'roman_xyz' (known: decimal, integer, json, lines, literal, text, choice:a,b,...;"),
        ("no_such_module_xyz:roman", "no module named 'no_such_module_xyz'"),
        ("{file}:missing", "has no attribute 'missing'"),
        ("{file}:not_a_function", "is a int, not a function"),
        ("{file}:", "expected pkg.module:attr or path/to/file.py:attr"),
    ],
)
def test_bad_key_names_are_one_line_value_errors(tmp_path, name: str, needle: str) -> None:
    path = tmp_path / "k.py"
    path.write_text(KEYS_MODULE)
    with pytest.raises(ValueError) as info:
        normaliser(name.format(file=path))
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_plugin_that_does_not_load_is_one_line(tmp_path, monkeypatch) -> None:
    _install(tmp_path, monkeypatch, "maker.keys", "broken = maker_roman_keys2:nothing_here", module="maker_roman_keys2")
    with pytest.raises(PluginError, match=r"plugin key normaliser 'broken' \(maker_roman_keys2:nothing_here\) does not load"):
        KEY_NAMES.find("broken")


def test_one_loader_for_every_name(tmp_path) -> None:
    """Tasks, detectors, keys, plan tools, map operations and py: models load through
    `load_ref`: a file is loaded once per process, under a name of its own."""
    path = tmp_path / "tasks.py"  # the name of maker's own package: never shadows it
    path.write_text(KEYS_MODULE)
    first, second = load_ref(f"{path}:roman"), load_ref(f"{path}:roman")
    assert first is second and first.__module__.startswith("_maker_user_tasks_")
    assert build_task(TaskSpec("hanoi", {"disks": 3})).total_steps == 7  # maker.tasks itself untouched
