"""The public surface of `maker`: what `import maker` offers is pinned, documented and importable.

A name added to or dropped from `maker.__all__` must be added or dropped here too, on purpose."""

from __future__ import annotations

import inspect

import pytest

import maker

PUBLIC = [
    "Budget",
    "BudgetReached",
    "ClusterConfig",
    "EstimateReport",
    "FunctionClient",
    "GuardConfig",
    "KChoice",
    "MakerError",
    "Margin",
    "MarginTable",
    "ModelConfigError",
    "ModelEstimate",
    "RedFlagPolicy",
    "RunResult",
    "SampleCost",
    "StepLogError",
    "TuneReport",
    "UsageError",
    "VerifyReport",
    "VoteCapError",
    "VoteResult",
    "VotingConfig",
    "WhatIfReport",
    "__version__",
    "avote",
    "chain_task",
    "choose_k",
    "estimate",
    "map",
    "margin",
    "margins",
    "operation",
    "plan_task",
    "run",
    "solve",
    "tool",
    "tune_log",
    "verify_log",
    "vote",
    "voted",
    "whatif_log",
]


def test_public_api_is_pinned() -> None:
    assert sorted(maker.__all__) == PUBLIC


@pytest.mark.parametrize("name", [n for n in PUBLIC if n != "__version__"])
def test_public_names_are_documented(name: str) -> None:
    obj = getattr(maker, name)
    assert inspect.getdoc(obj), f"maker.{name} has no docstring"
    assert obj.__module__.startswith("maker."), obj.__module__


def test_the_lazy_names_and_the_type_checkers_imports_agree() -> None:
    """`maker/__init__.py` names each public object twice: in its TYPE_CHECKING imports (what a
    type checker sees) and in `_HOME` (what `__getattr__` imports on first use).  The two must agree."""
    import ast
    from pathlib import Path

    import maker

    tree = ast.parse(Path(maker.__file__).read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    imported = {a.name: node.module for node in block.body if isinstance(node, ast.ImportFrom) for a in node.names}
    assert imported == maker._HOME
    assert set(maker.__all__) <= set(maker._HOME)
