"""User red-flag detectors, by name: ``module:function``, ``file.py:function``, or the short
name of an installed plugin (an entry point in the group ``maker.red_flags``).

One open registry (`maker.tasks.plugins.Registry`), the same shape as tasks and key
normalisers: ``--red-flag mychecks:too_long``, ``--red-flag ./checks.py:too_long``, or, with
``[project.entry-points."maker.red_flags"] too_long = "mypkg.checks:too_long"`` installed,
``--red-flag too_long``.  A user's own function goes in `RedFlagPolicy(extra=...)` as is.

Why a module of its own: a detector must reach Ray workers that may not share the
driver's working directory, so it travels by name (`ImportedDetector`) and each process
imports it on first use -- by module name, or from the file the driver found it in.

Example:
    >>> name, fn = load_detector("maker.engine.red_flags:empty")
    >>> name, fn.spec
    ('empty', 'maker.engine.red_flags:empty')
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maker.errors import UsageError
from maker.tasks.plugins import PluginError, Registry, is_file_ref, is_reference, load_ref, split_ref

#: The entry-point group installed plugins declare red-flag detectors in.
ENTRY_POINT_GROUP = "maker.red_flags"

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


#: User detectors by name: installed plugins, ``module:function`` and ``file.py:function``
#: (the built-in detectors are the policy's own: `maker.engine.red_flags.BUILTIN`).
DETECTOR_NAMES = Registry("red-flag detector", ENTRY_POINT_GROUP, {})


def load_detector(spec: str | Detector) -> tuple[str, Detector]:
    """A detector named by `spec` -> (name, detector); UsageError (one line) if it cannot be found.

    `spec` is ``module:function``, ``file.py:function``, an installed plugin's short name,
    or the function itself.  The name (the red-flag reason the log shows) is the function's
    name, or the plugin's.  The current directory is searched too, so ``--red-flag
    mychecks:too_long`` finds ./mychecks.py.
    """
    if callable(spec):
        return getattr(spec, "__name__", type(spec).__name__), spec
    if not isinstance(spec, str) or not spec.strip():
        raise UsageError(f"--red-flag wants module:function or a plugin's name, got {spec!r}")
    try:
        found = DETECTOR_NAMES.find(spec)
    except PluginError as exc:
        raise UsageError(str(exc)) from None
    if not callable(found.target):
        raise UsageError(f"red-flag detector {spec!r}: {found.name} is a {type(found.target).__name__}, not a function")
    # a plugin is reported under its short name; a reference under its function's name
    name = spec if not is_reference(spec) else split_ref(spec)[1].rpartition(".")[2]
    ref = found.ref or spec  # travels (to workers, into the log) as module:attr or /abs/file.py:attr
    module = sys.modules.get(getattr(found.target, "__module__", "") or "")
    path = getattr(module, "__file__", None)
    _LOADED[(ref, None)] = found.target
    return name, ImportedDetector(ref, os.path.abspath(path) if path else None)


def detector_spec(fn: Any) -> str:
    """How the log names a detector so that replay can import it again."""
    if isinstance(fn, ImportedDetector):
        return fn.spec
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', repr(fn))}"


def _import(spec: str, path: str | None) -> Detector:
    """The function `spec` names, in this process: by module name, else from `path` (the file
    the driver found it in, for a worker that does not share the driver's folder)."""
    key = (spec, path)
    fn = _LOADED.get(key)
    if fn is not None:
        return fn
    where, _, attr = spec.rpartition(":")
    try:
        if path is not None and Path(path).is_file() and (is_file_ref(where) or not _importable(where)):
            target = load_ref(f"{path}:{attr}")  # the file the driver found it in
        else:
            target = load_ref(spec)
    except PluginError as exc:
        raise UsageError(f"red-flag detector {spec!r}: {exc}") from None
    if not callable(target):
        raise UsageError(f"red-flag detector {spec!r}: {where!r} has no function {attr!r}")
    _LOADED[key] = target
    return target


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False
