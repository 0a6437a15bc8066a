"""The public surface of ``voting``: what it exports, what it imports, and its examples."""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
import sys
from pathlib import Path

import maker.voting as voting
import pytest

PUBLIC = [
    "Ballot",
    "CollisionStats",
    "Interval",
    "clopper_pearson",
    "collision_stats",
    "decide",
    "expected_cost",
    "expected_samples",
    "expected_votes",
    "first_to_k",
    "k_min",
    "k_min_pessimistic",
    "p_step",
    "run_success",
    "simulate_votes",
]
MODULES = ["maker.voting", "maker.voting.ballot", "maker.voting.scaling", "maker.voting.confidence", "maker.voting.montecarlo"]
PACKAGE_DIR = Path(voting.__file__).parent


def test_public_api_is_pinned() -> None:
    assert sorted(voting.__all__) == PUBLIC
    for name in PUBLIC:
        assert getattr(voting, name).__module__.startswith("maker.voting.")


@pytest.mark.parametrize("name", PUBLIC)
def test_public_names_are_documented_and_typed(name: str) -> None:
    obj = getattr(voting, name)
    assert inspect.getdoc(obj)
    if inspect.isfunction(obj):
        hints = obj.__annotations__
        assert "return" in hints
        assert set(inspect.signature(obj).parameters) <= set(hints)


@pytest.mark.parametrize("module_name", MODULES)
def test_examples_run(module_name: str) -> None:
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize("path", sorted(PACKAGE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_imports_only_stdlib_numpy_scipy(path: Path) -> None:
    # voting installs as maker.voting; it reaches its own modules relatively and nothing else of ours
    allowed = set(sys.stdlib_module_names) | {"numpy", "scipy"}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                assert node.level == 1, f"{path.name}: reaches outside voting/"
                continue
            roots = [(node.module or "").split(".")[0]]
        else:
            continue
        for root in roots:
            assert root in allowed, f"{path.name} imports {root}"
