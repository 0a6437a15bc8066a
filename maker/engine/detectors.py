"""User red-flag detectors named on the command line: ``module:function`` or ``file.py:function``.

Why a module of its own: a detector must reach Ray workers that may not share the
driver's working directory, so it travels by name (`ImportedDetector`) and each process
imports it on first use -- by module name, or from the file the driver found it in.

Example:
    >>> name, fn = load_detector("maker.engine.red_flags:empty")
    >>> name, fn.spec
    ('empty', 'maker.engine.red_flags:empty')
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maker.errors import UsageError, one_line

Detector = Callable[..., "str | None"]

_LOADED: dict[tuple[str, str | None], Detector] = {}


@dataclass(frozen=True)
class ImportedDetector:
    """A detector named as ``module:function`` (or ``path/to/file.py:function``).

    Picklable by name: a Ray worker imports the function itself on first use, by module
    name or, failing that, from the file the driver found it in.
    """

    spec: str
    path: str | None = None
    _cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __call__(self, sample: Any, ctx: Any) -> str | None:
        fn = self._cache.get("fn")
        if fn is None:
            fn = self._cache["fn"] = _import(self.spec, self.path)
        return fn(sample, ctx)

    def __reduce__(self) -> tuple[Any, ...]:
        return (ImportedDetector, (self.spec, self.path))


def load_detector(spec: str) -> tuple[str, Detector]:
    """``module:function`` or ``file.py:function`` -> (name, detector); UsageError if it cannot be found.

    The name (the red-flag reason the log shows) is the function's name.  The current
    directory is searched too, so ``--red-flag mychecks:too_long`` finds ./mychecks.py.
    """
    if not isinstance(spec, str) or spec.count(":") < 1:
        raise UsageError(f"--red-flag wants module:function, got {spec!r}")
    where, _, name = spec.rpartition(":")
    if not where or not name.isidentifier():
        raise UsageError(f"--red-flag wants module:function, got {spec!r}")
    fn = _import(spec, None)
    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    return name, ImportedDetector(spec, os.path.abspath(path) if path else None)


def detector_spec(fn: Any) -> str:
    """How the log names a detector so that replay can import it again."""
    if isinstance(fn, ImportedDetector):
        return fn.spec
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _import(spec: str, path: str | None) -> Detector:
    key = (spec, path)
    fn = _LOADED.get(key)
    if fn is not None:
        return fn
    where, _, name = spec.rpartition(":")
    module = None
    if where.endswith(".py") or path is not None and not _importable(where):
        file = path or os.path.abspath(where)
        if not Path(file).is_file():
            raise UsageError(f"red-flag detector {spec!r}: no file {file}")
        mod_name = "maker_user_detectors_" + re.sub(r"\W", "_", Path(file).stem)
        loader = importlib.util.spec_from_file_location(mod_name, file)
        if loader is None or loader.loader is None:
            raise UsageError(f"red-flag detector {spec!r}: cannot load {file}")
        module = importlib.util.module_from_spec(loader)
        sys.modules[mod_name] = module
        try:
            loader.loader.exec_module(module)
        except Exception as exc:
            raise UsageError(f"red-flag detector {spec!r}: importing {file} failed: {one_line(exc)}") from None
    else:
        try:
            module = _import_module(where)
        except ImportError as exc:
            raise UsageError(f"red-flag detector {spec!r}: cannot import {where!r} ({one_line(exc)})") from None
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part, None)
    if target is None or not callable(target):
        raise UsageError(f"red-flag detector {spec!r}: {where!r} has no function {name!r}")
    _LOADED[key] = target
    return target


def _import_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        cwd = os.getcwd()
        if cwd in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
