"""Find a task by the name a user gives it.

Four kinds of name, tried in this order:

* a built-in task: ``hanoi``, ``chase``, ... (`maker.tasks.TASKS`);
* an installed plugin: a distribution that declares an entry point in the group
  ``maker.tasks`` (``[project.entry-points."maker.tasks"] ledger = "mypkg.ledger:task"``)
  runs by that short name;
* ``pkg.module:attr``: imported from the Python path (the current folder included);
* ``path/to/file.py:attr``: the file is loaded as a module of its own (it never shadows,
  and is never shadowed by, a package of the same name).

``attr`` is a task class (options become keyword arguments), a factory function (the
same), or a ready task object (which takes no options).  The options a class or factory
takes are those its `options` attribute declares (`TaskOption`s), else the int, float
and str parameters of its signature; they become flags of `maker run` (``--n 200``).  The name is what a run's log
records (`TaskSpec.name`), so `replay --verify`, `--resume`, `tune` and `report` rebuild
the task the same way; a file path is recorded absolute.

Every failure is a `TaskNameError` (a ValueError) with one line saying what to fix or
install.

    >>> resolve("hanoi").origin
    'built-in'
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .base import Task, TaskOption, TaskSpec
from .builtin.chase import Chase
from .builtin.decomposers import Add, Multiply, Sort
from .builtin.hanoi import Hanoi
from .builtin.one_prompt import one_prompt
from .plans.plan_task import plan_file, solve_task
from .plugins import PluginError, Registry
from .records.map_task import map_job

#: The entry-point group installed plugins declare their tasks in.
ENTRY_POINT_GROUP = "maker.tasks"

#: maker's own tasks: name -> task class or factory; each has `summary`, `options`
#: (TaskOption) and takes the options as keyword arguments.  A task of your own needs no
#: entry here: name it (`pkg.module:attr`, `file.py:attr`) or declare an entry point.
TASKS: dict[str, Callable[..., Task]] = {
    "hanoi": Hanoi,
    "chase": Chase,
    #: One prompt voted as a single step (`maker.vote`; see tasks/builtin/one_prompt.py).
    "vote": one_prompt,
    #: Plan tasks (a DAG of atomic steps, run by maker.runtime.dag; see tasks/plans/plan.py).
    "add": Add,
    "multiply": Multiply,
    "sort": Sort,
    "plan": plan_file,
    "solve": solve_task,
    #: A table of records, one voted step per row (`maker map`; see tasks/records/map_task.py).
    "map": map_job,
}


class TaskNameError(PluginError):
    """A task name that cannot be turned into a task (one line: what to fix or install)."""


#: Tasks by name: the built-ins, installed plugins, ``module:attr`` and ``file.py:attr``.
TASK_NAMES = Registry("task", ENTRY_POINT_GROUP, TASKS)


@dataclass(frozen=True)
class TaskSource:
    """A task found under `name`: how to build it and where it came from.

    `origin` is 'built-in', 'plugin DIST VERSION (ENTRY = module:attr)', 'module M' or
    'file PATH'; `target` the object the name points at (class, factory or task)."""

    name: str
    target: Any
    origin: str

    @property
    def options(self) -> tuple:
        """The task's `TaskOption`s: those its factory or class declares in an `options`
        attribute, else those its signature declares (`signature_options`); empty for a
        ready task object."""
        if not _is_factory(self.target):
            return ()
        if hasattr(self.target, "options"):
            return tuple(self.target.options or ())
        return signature_options(self.target)

    @property
    def summary(self) -> str:
        text = getattr(self.target, "summary", None) or (inspect.getdoc(self.target) or "").split("\n")[0]
        return str(text)

    def build(self, options: dict[str, Any]) -> Any:
        """The task, built with `options`; TaskNameError when the options do not fit or the
        factory raises (the factory's own error is named in the line)."""
        target = self.target
        if not _is_factory(target):
            if options:
                raise TaskNameError(f"{self.name} is a ready task object: it takes no options (got {sorted(options)})")
            task = target
        else:
            declared = {o.name for o in self.options}
            unknown = sorted(set(options) - declared) if declared or options else []
            if unknown and not _accepts(target, unknown):
                takes = ", ".join(sorted(declared) or _parameters(target)) or "none"
                raise TaskNameError(f"{self.name} does not take option(s) {', '.join(unknown)} (it takes: {takes})")
            try:
                task = target(**options)
            except TaskNameError:
                raise
            except Exception as exc:  # the user's factory: its error, named, in one line
                if self.origin == "built-in":  # maker's own tasks say what is wrong themselves
                    raise
                what = "class" if inspect.isclass(target) else "factory"
                raise TaskNameError(f"task {self.name}: the {what} raised {type(exc).__name__}: {exc}") from None
        if not _looks_like_task(task):
            raise TaskNameError(f"{self.name} is not a task: {type(task).__name__} has no first_step/prompt/judge")
        try:  # where it came from, for the log: a rebuild that fails can say what to install
            task.maker_origin = self.origin
        except (AttributeError, TypeError):
            pass
        spec = getattr(task, "spec", None)
        recorded = getattr(spec, "options", None) if getattr(spec, "name", None) == self.name else None
        if not isinstance(recorded, dict) or any(k not in recorded for k in options):
            try:  # the log records the name the task was found under and every option, so it can be rebuilt
                task.spec = TaskSpec(self.name, {**(recorded or {}), **options})
            except (AttributeError, TypeError):
                pass
        return task


def _is_factory(obj: Any) -> bool:
    return inspect.isclass(obj) or (callable(obj) and not _looks_like_task(obj))


def _looks_like_task(obj: Any) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("first_step", "prompt", "judge")) and not inspect.isclass(obj)


#: Parameter types that become command-line flags (`--n 200`); any other parameter is
#: still given as ``--opt NAME=VALUE`` (read as a Python literal).
_FLAG_TYPES = {"int": int, "float": float, "str": str}


def signature_options(target: Callable[..., Any]) -> tuple[TaskOption, ...]:
    """The options a factory or class without an `options` attribute declares by its
    signature: each keyword parameter whose default (or, without a default, whose
    annotation) is an int, float or str; a parameter without a default is required.

        >>> def ledger(n: int = 200, start: int = 100, moves: list | None = None): ...
        >>> [(o.name, o.type.__name__, o.default) for o in signature_options(ledger)]
        [('n', 'int', 200), ('start', 'int', 100)]
    """
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return ()
    out = []
    for p in params:
        if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            continue
        annotation = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        if p.default is not p.empty:
            kind = type(p.default) if type(p.default) in _FLAG_TYPES.values() else None
        else:
            kind = _FLAG_TYPES.get(annotation)
        if kind is None:
            continue
        required = p.default is p.empty
        said = "required" if required else f"default {p.default!r}"
        out.append(TaskOption(p.name, kind, f"{kind.__name__}, {said} (from the signature)",
                              default=None if required else p.default, required=required))
    return tuple(out)


def _parameters(fn: Callable[..., Any]) -> list[str]:
    try:
        return [p.name for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    except (TypeError, ValueError):
        return []


def _accepts(fn: Callable[..., Any], names: list[str]) -> bool:
    """Whether `fn` takes these keyword arguments (a factory that declares no options)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return True
    return all(n in params for n in names)


def resolve(name: str) -> TaskSource:
    """The task source `name` points at (see the module docstring); TaskNameError if none."""
    if not isinstance(name, str):
        raise TaskNameError(f"task name {name!r} is not a string")
    try:
        found = TASK_NAMES.find(name)
    except PluginError as exc:
        raise TaskNameError(str(exc)) from None
    target = found.target
    if not (_looks_like_task(target) or inspect.isclass(target) or callable(target)):
        raise TaskNameError(f"task {name!r}: {name.rpartition(':')[2]} is a {type(target).__name__}, not a task, task class or factory")
    return TaskSource(found.name, target, found.origin)


#: How an option's type is named in an error line.
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def task_from_options(name: str, options: dict[str, Any] | None = None) -> Any:
    """The task `name` names (see the module docstring), built with `options` -- the one
    check every caller shares (`maker run`, the MCP `run` tool, Python).

    Each declared option (`TaskOption`) must hold a value of its type (an int for an int
    option, never a bool or the text "4"; an int is taken for a float); a required one must
    be given; a built-in task's unset options take their declared defaults (another
    task's factory keeps its own), and a built-in refuses an option it does not declare
    (another task's factory decides whether it takes one). Raises TaskNameError (one line)
    for each of these, for a name that does not resolve and for a factory that fails, and
    the built-in task's own ValueError for an out-of-range value.

        >>> task_from_options("hanoi", {"disks": 3}).total_steps
        7
    """
    source = resolve(name)
    declared = {opt.name: opt for opt in source.options}
    given = dict(options or {})
    builtin = source.origin == "built-in"
    unknown = sorted(n for n in given if n not in declared)
    if unknown and builtin:
        takes = ", ".join(declared) or "none"
        raise TaskNameError(f"{source.name} does not take option(s) {', '.join(unknown)} (it takes: {takes})")
    values: dict[str, Any] = {}
    missing = []
    for opt in declared.values():
        value = given.pop(opt.name, None)
        if value is None:
            if opt.required:
                missing.append(opt.name)
            elif builtin:
                values[opt.name] = opt.default
            continue
        if opt.type is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if isinstance(value, bool) and opt.type is not bool or not isinstance(value, opt.type):
            kind = _TYPE_NAMES.get(opt.type, opt.type.__name__)
            raise TaskNameError(f"{source.name} option {opt.name!r} must be {kind}, got {value!r}")
        values[opt.name] = value
    if missing:
        raise TaskNameError(f"{source.name} needs the option(s) {', '.join(missing)}")
    values.update(given)  # undeclared options of a user's factory: it says whether it takes them
    return source.build(values)


def build(spec: TaskSpec) -> Any:
    """The task `spec` names, built with its options (TaskNameError with one line if not)."""
    return resolve(spec.name).build(dict(spec.options))


def build_task(spec: TaskSpec) -> Task:
    """Rebuild a task from its spec; TaskNameError (a ValueError) with a one-line reason when
    it cannot.  `spec.name` is a built-in name, an installed plugin's short name,
    ``pkg.module:attr`` or ``path/to/file.py:attr``."""
    return build(spec)


def get_task(name: str, **options: Any) -> Task:
    """`get_task("hanoi", disks=10)`: the Python way to name a task."""
    return build(TaskSpec(name, options))


def rebuild(run: dict[str, Any]) -> Any:
    """The task a log's run metadata names (`task`, `task_options`), for replay, resume and
    audits; TaskNameError says, when it cannot, where the task came from (`task_origin`)."""
    try:
        return build(TaskSpec(run["task"], dict(run.get("task_options") or {})))
    except TaskNameError as exc:
        origin = run.get("task_origin")
        raise TaskNameError(f"{exc}; the run's task came from {origin}" if origin else str(exc)) from None


def available() -> list[TaskSource]:
    """Every task found by short name: built-ins, then installed plugins (a plugin that does
    not load is listed with its error as the origin, not dropped)."""
    out = [TaskSource(n, TASKS[n], "built-in") for n in sorted(TASKS)]
    return out + [TaskSource(f.name, f.target, f.origin) for f in TASK_NAMES.plugins()]


__all__ = [
    "ENTRY_POINT_GROUP", "TASKS", "TASK_NAMES", "TaskNameError", "TaskSource", "available", "build", "rebuild",
    "resolve", "signature_options", "build_task", "get_task",
]
