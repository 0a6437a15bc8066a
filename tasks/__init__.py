"""Task plugins: state, step prompt, strict parser, rules and ground truth.

maker's own tasks register a factory here; a user's task is named by ``pkg.module:attr``,
``path/to/file.py:attr`` or an installed plugin's short name (`maker.tasks.registry`).
The CLI and resumed or audited runs build tasks only through `build_task`, so a spec
read back from a log rebuilds the same task.
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
