"""Task plugins: state, step prompt, strict parser, rules and ground truth.

What a task is written with lives here (`base`: the Task protocol; `keys`: key normalisers;
`fields`; `chain_task`; `plans`: plans, `maker.operation` and `maker.tool`); maker's own
tasks live in `builtin` and are listed in `registry.TASKS`.  A user's task is named by
``pkg.module:attr``, ``path/to/file.py:attr`` or an installed plugin's short name
(`maker.tasks.registry`, loaded by `maker.tasks.plugins`).  The CLI and resumed or audited
runs build tasks only through `build_task`, so a spec read back from a log rebuilds the
same task.
"""

from __future__ import annotations

from .base import Oracle, Prompt, PromptStyle, StepInput, Task, TaskOption, TaskSpec, Verdict
from .builtin.chase import Chase
from .builtin.hanoi import Hanoi
from .chain_task import ChainTask
from .plans.plan_task import PlanTask
from .registry import TASKS, build_task, get_task

__all__ = [
    "TASKS",
    "ChainTask",
    "Chase",
    "Hanoi",
    "Oracle",
    "PlanTask",
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
