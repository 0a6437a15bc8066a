"""Task plugins: state, step prompt, strict parser, rules and ground truth.

maker's own tasks register a factory here; a user's task is named by ``pkg.module:attr``,
``path/to/file.py:attr`` or an installed plugin's short name (`maker.tasks.registry`).
The CLI and resumed or audited runs build tasks only through `build_task`, so a spec
read back from a log rebuilds the same task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import Oracle, Prompt, PromptStyle, StepInput, Task, TaskOption, TaskSpec, Verdict
from .chase import Chase
from .decomposers import Add, Multiply, Sort
from .hanoi import Hanoi
from .one_prompt import one_prompt
from .plan_task import plan_file, solve_task
from .records.map_task import map_job

#: name -> task class; each class has `summary`, `options` (TaskOption) and takes the
#: options as keyword arguments.
TASKS: dict[str, Callable[..., Task]] = {"hanoi": Hanoi, "chase": Chase}
#: One prompt voted as a single step (`maker.vote`; see tasks/one_prompt.py).
TASKS["vote"] = one_prompt
#: Plan tasks (a DAG of atomic steps, run by maker.runtime.dag; see tasks/plan.py).
TASKS.update({"add": Add, "multiply": Multiply, "sort": Sort, "plan": plan_file, "solve": solve_task})
#: A table of records, one voted step per row (`maker map`; see tasks/records/map_task.py).
TASKS["map"] = map_job


def build_task(spec: TaskSpec) -> Task:
    """Rebuild a task from its spec; ValueError with a one-line reason when it cannot.

    `spec.name` is a built-in name, an installed plugin's short name, ``pkg.module:attr``
    or ``path/to/file.py:attr`` (see `maker.tasks.registry`)."""
    from .registry import build

    return build(spec)


def get_task(name: str, **options: Any) -> Task:
    """`get_task("hanoi", disks=10)`: the Python way to name a task."""
    return build_task(TaskSpec(name, options))


__all__ = [
    "TASKS",
    "Chase",
    "Hanoi",
    "Oracle",
    "Prompt",
    "PromptStyle",
    "StepInput",
    "Task",
    "TaskOption",
    "TaskSpec",
    "Verdict",
    "build_task",
    "get_task",
]
