"""Load a user's object by the name they give it: one loader for every open registry.

A name is one of:

* ``pkg.module:attr``: imported from the Python path; the current folder is tried last,
  so ``mychecks:too_long`` finds ./mychecks.py when maker runs as a console script;
* ``path/to/file.py:attr``: the file is loaded as a module of its own, named after its
  path (it never shadows, and is never shadowed by, a package of the same name), once
  per process;
* a short name an installed distribution declares in an entry-point group
  (``[project.entry-points."maker.tasks"] ledger = "mypkg.ledger:task"``).

``attr`` may be dotted (``Class.method``).  Tasks (`tasks.registry`), red-flag detectors
(`maker.engine.detectors`), key normalisers (`tasks.keys`), plan tools (`tasks.plans.user_ops`),
map operations (`tasks.records.map_task`) and ``py:`` models (`cluster.clients`) all load
through `load_ref`; tasks, detectors and key normalisers are each a `Registry`, so each takes
the same three kinds of name (and the user's object itself).

Every failure is a `PluginError` (a ValueError) with one line saying what to fix or install.

    >>> load_ref("maker.tasks.keys:integer")("042")
    '42'
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any


class PluginError(ValueError):
    """A name that cannot be turned into the object it names (one line: what to fix or install)."""


def is_reference(name: str) -> bool:
    """Whether `name` is a ``module:attr`` or ``file.py:attr`` reference (not a short name)."""
    return ":" in name


def is_file_ref(where: str) -> bool:
    """Whether the part before ':' in a `where:attr` reference names a file, not a module."""
    return where.endswith(".py") or "/" in where or "\\" in where


def split_ref(ref: str) -> tuple[str, str]:
    """``where:attr`` -> (where, attr); PluginError when either part is missing."""
    where, _, attr = str(ref).rpartition(":")
    if not where or not attr or not all(p.isidentifier() for p in attr.split(".")):
        raise PluginError("expected pkg.module:attr or path/to/file.py:attr")
    return where, attr


def load_ref(ref: str) -> Any:
    """The object ``pkg.module:attr`` or ``path/to/file.py:attr`` names (PluginError if none)."""
    where, attr = split_ref(ref)
    target: Any = import_where(where)
    for part in attr.split("."):
        if not hasattr(target, part):
            raise PluginError(f"{where} has no attribute {attr!r}")
        target = getattr(target, part)
    return target


def import_where(where: str) -> ModuleType:
    """The module a `where:attr` reference names: a file path (``path/to/file.py``) or a
    module name (``pkg.module``); PluginError (one line) when it cannot be loaded."""
    return load_file(Path(where).expanduser().resolve()) if is_file_ref(where) else import_module(where)


def import_module(name: str) -> ModuleType:
    """`importlib.import_module`, trying the current folder last, with a one-line error
    naming what to install."""
    try:
        return _import_with_cwd(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        raise PluginError(
            f"cannot import {name!r}: no module named {missing!r} (install the package that provides it, "
            f"or name its file: {name.replace('.', '/')}.py:ATTR)"
        ) from None
    except Exception as exc:
        raise PluginError(f"cannot import {name!r}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None


def _import_with_cwd(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = name.partition(".")[0]
        if exc.name != top or cwd in sys.path or "" in sys.path or not _in_folder(cwd, top):
            raise
        sys.path.append(cwd)
        return importlib.import_module(name)


def _in_folder(folder: str, top: str) -> bool:
    return (Path(folder) / f"{top}.py").is_file() or (Path(folder) / top / "__init__.py").is_file()


def load_file(path: Path) -> ModuleType:
    """Load a Python file as a module named after its path (so two files called `tasks.py`
    never collide, and none shadows an installed package); loaded once per process."""
    if not path.is_file():
        raise PluginError(f"no such file: {path}")
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    mod_name = f"_maker_user_{path.stem}_{digest}"
    if mod_name in sys.modules:
        return sys.modules[mod_name]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[mod_name]
        raise PluginError(f"cannot load {path}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None
    return module


def entry_points_in(group: str) -> list[Any]:
    """The entry points installed distributions declare in `group`."""
    return list(entry_points(group=group))


def entry_point_origin(ep: Any) -> str:
    """'plugin DIST VERSION (NAME = module:attr)': where an entry point came from."""
    dist = getattr(ep, "dist", None)
    who = f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"
    return f"plugin {who} ({ep.name} = {ep.value})"


def load_entry_point(ep: Any, what: str = "plugin") -> Any:
    """The object an entry point names; PluginError (one line) when it does not load."""
    try:
        return ep.load()
    except Exception as exc:
        raise PluginError(f"{what} {ep.name!r} ({ep.value}) does not load: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class Found:
    """What a registry found under `name`: the object (`target`), where it came from
    (`origin`: 'built-in', 'plugin DIST VERSION (NAME = module:attr)', 'module M', 'file
    PATH' or 'object') and the reference another process can load it by again (`ref`:
    ``module:attr`` or ``/abs/path.py:attr``; None for a built-in or an object)."""

    name: str
    target: Any
    origin: str
    ref: str | None = None


@dataclass(frozen=True)
class Registry:
    """One open registry: built-ins by short name, installed plugins by short name (an
    entry-point group), and ``module:attr`` / ``file.py:attr`` references.

    `find` takes any of these, or the user's object itself (returned as is).  `what` names
    the kind of object in error lines ('task', 'red-flag detector', 'key normaliser').
    Nothing is registered by editing a dict: a plugin declares an entry point, a user
    names their object.

        >>> r = Registry("greeting", "maker.greetings", {"hi": "hello"})
        >>> r.find("hi").target, r.find(str.upper).origin
        ('hello', 'object')
    """

    what: str
    group: str
    builtins: Mapping[str, Any]
    #: builds a built-in from a name with arguments (``choice:a,b`` -> a normaliser), or
    #: returns None for a name it does not build; None: no built-in takes arguments
    parametrised: Callable[[str], Any] | None = None
    #: how such names are written, for error lines (``("choice:a,b,...",)``)
    forms: tuple[str, ...] = ()

    def find(self, name: Any) -> Found:
        """The object `name` names (see the class docstring); PluginError (one line) if none."""
        if not isinstance(name, str):
            return Found(getattr(name, "__name__", type(name).__name__), name, "object")
        if not name.strip():
            raise PluginError(f"{self.what} name {name!r} is empty")
        if name in self.builtins:
            return Found(name, self.builtins[name], "built-in")
        if self.parametrised is not None:
            built = self.parametrised(name)
            if built is not None:
                return Found(name, built, "built-in")
        if not is_reference(name):
            for ep in entry_points_in(self.group):
                if ep.name == name:
                    target = load_entry_point(ep, f"plugin {self.what}")
                    return Found(name, target, entry_point_origin(ep), ep.value)
            raise PluginError(
                f"unknown {self.what} {name!r} (known: {', '.join([*self.names(), *self.forms]) or 'none'}; "
                f"or name one as pkg.module:attr or path/to/file.py:attr)"
            )
        try:
            where, _ = split_ref(name)
            target = load_ref(name)
        except PluginError as exc:
            raise PluginError(f"{self.what} {name!r}: {exc}") from None
        if is_file_ref(where):
            path = Path(where).expanduser().resolve()
            full = f"{path}:{name.rpartition(':')[2]}"
            return Found(full, target, f"file {path}", full)
        return Found(name, target, f"module {where}", name)

    def names(self) -> list[str]:
        """Every short name: the built-ins and the installed plugins, sorted."""
        return sorted({*self.builtins, *(ep.name for ep in entry_points_in(self.group))})

    def plugins(self) -> list[Found]:
        """Every installed plugin not shadowed by a built-in (one that does not load is
        listed with its error as the origin and None as its target, not dropped)."""
        out = []
        for ep in sorted(entry_points_in(self.group), key=lambda e: e.name):
            if ep.name in self.builtins:
                continue
            try:
                out.append(Found(ep.name, load_entry_point(ep, f"plugin {self.what}"), entry_point_origin(ep), ep.value))
            except PluginError as exc:
                out.append(Found(ep.name, None, f"{entry_point_origin(ep)}: {exc}"))
        return out


__all__ = [
    "Found", "PluginError", "Registry", "entry_point_origin", "entry_points_in", "import_module", "import_where",
    "is_file_ref", "is_reference", "load_entry_point", "load_file", "load_ref", "split_ref",
]
