"""Red-flag detectors by name (`maker.engine.detectors`): ``module:function``, ``file.py:function``
or an installed plugin's short name (entry-point group ``maker.red_flags``), the same open
registry as tasks and key normalisers (`maker.tasks.plugins.Registry`)."""

from __future__ import annotations

import os
import pickle
import textwrap
import types

import pytest

from maker.engine.detectors import ImportedDetector, detector_spec, load_detector
from maker.errors import UsageError

CHECKS = textwrap.dedent('''
    def too_long(sample, ctx):
        return "over 10 characters" if len(sample.text) > 10 else None
''')


def _sample(text: str) -> types.SimpleNamespace:
    return types.SimpleNamespace(text=text)


def test_a_detector_as_an_entry_point(tmp_path, monkeypatch) -> None:
    (tmp_path / "maker_checks_plugin.py").write_text(CHECKS)
    dist = tmp_path / "maker_checks_plugin-0.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: maker-checks-plugin\nVersion: 0.2\n")
    (dist / "entry_points.txt").write_text("[maker.red_flags]\nchatty = maker_checks_plugin:too_long\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    name, fn = load_detector("chatty")
    assert name == "chatty" and fn(_sample("a" * 11), None) == "over 10 characters"
    # it travels to workers and into the log as the module:function the entry point names
    assert detector_spec(fn) == "maker_checks_plugin:too_long"
    again = pickle.loads(pickle.dumps(fn))
    assert isinstance(again, ImportedDetector) and again(_sample("short"), None) is None


def test_a_detector_from_a_file_is_recorded_absolute_and_found_from_another_folder(tmp_path, monkeypatch) -> None:
    (tmp_path / "checks.py").write_text(CHECKS)
    monkeypatch.chdir(tmp_path)
    name, fn = load_detector("checks.py:too_long")
    assert name == "too_long" and detector_spec(fn) == f"{tmp_path.resolve()}/checks.py:too_long"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # as a worker that does not share the driver's folder
    worker_copy = ImportedDetector(fn.spec, fn.path)
    assert worker_copy(_sample("x" * 20), None) == "over 10 characters"


def test_a_detector_module_in_the_current_folder(tmp_path, monkeypatch) -> None:
    (tmp_path / "mychecks_in_cwd.py").write_text(CHECKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", os.getcwd())])
    name, fn = load_detector("mychecks_in_cwd:too_long")
    assert name == "too_long" and fn(_sample("y" * 11), None) == "over 10 characters"


def test_the_users_own_function_is_taken_as_is() -> None:
    def mine(sample, ctx):
        return None

    assert load_detector(mine) == ("mine", mine)


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("no_such_module_xyz:check", "cannot import 'no_such_module_xyz'"),
        ("maker.engine.red_flags:no_such_function", "has no attribute 'no_such_function'"),
        ("no_such_plugin_xyz", "unknown red-flag detector 'no_such_plugin_xyz'"),
        ("", "--red-flag wants module:function or a plugin's name"),
    ],
)
def test_bad_detector_names_are_one_usage_error_line(spec: str, needle: str) -> None:
    with pytest.raises(UsageError) as info:
        load_detector(spec)
    assert needle in str(info.value) and "\n" not in str(info.value)
