"""maker: run very long LLM tasks with (near) zero errors.

Each step of a task is sampled several times from small models, red-flagged samples
are thrown away, and first-to-ahead-by-k voting decides it before the state advances.

    >>> import maker
    >>> from maker.tasks import get_task
    >>> result = maker.run(get_task("hanoi", disks=6), ["sim:0.99"], maker.VotingConfig(k=3))  # doctest: +SKIP

The names below are imported on first use (PEP 562): `import maker` stays cheap for a
CLI start, a Ray worker or an MCP job that needs only part of the library.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what a type checker and an IDE see; at run time `__getattr__` imports each on first use
    from maker.audit.verify import VerifyReport, verify_log  # noqa: F401
    from maker.audit.whatif import WhatIfReport, whatif_log  # noqa: F401
    from maker.budget.choosing import KChoice, choose_k  # noqa: F401
    from maker.budget.estimate import EstimateReport, estimate  # noqa: F401
    from maker.budget.margins import Margin, MarginTable, RunPlan, SampleCost, margin, margins, plan  # noqa: F401 (RunPlan, plan: the old names)
    from maker.budget.spend import Budget  # noqa: F401
    from maker.budget.tally import ModelEstimate  # noqa: F401
    from maker.budget.tuning import TuneReport, tune_log  # noqa: F401
    from maker.cluster.function_client import FunctionClient  # noqa: F401
    from maker.config import ClusterConfig, GuardConfig, VotingConfig  # noqa: F401
    from maker.engine.red_flags import RedFlagPolicy  # noqa: F401
    from maker.errors import BudgetReached, MakerError, ModelConfigError, StepLogError, UsageError, VoteCapError  # noqa: F401
    from maker.mapping.api import map  # noqa: F401,A004 (maker.map: one voted answer per record)
    from maker.runtime.driver import RunResult, run  # noqa: F401
    from maker.solving import solve  # noqa: F401
    from maker.tasks.chain_task import chain_task  # noqa: F401
    from maker.tasks.plans.plan_task import plan_task  # noqa: F401
    from maker.tasks.plans.user_ops import operation, tool  # noqa: F401
    from maker.version import __version__  # noqa: F401
    from maker.voted_call import VoteResult, avote, vote, voted  # noqa: F401

#: each public name and the module that defines it
_HOME: dict[str, str] = {
    "VerifyReport": "maker.audit.verify",
    "verify_log": "maker.audit.verify",
    "WhatIfReport": "maker.audit.whatif",
    "whatif_log": "maker.audit.whatif",
    "KChoice": "maker.budget.choosing",
    "choose_k": "maker.budget.choosing",
    "EstimateReport": "maker.budget.estimate",
    "estimate": "maker.budget.estimate",
    "Margin": "maker.budget.margins",
    "MarginTable": "maker.budget.margins",
    "RunPlan": "maker.budget.margins",
    "SampleCost": "maker.budget.margins",
    "margin": "maker.budget.margins",
    "margins": "maker.budget.margins",
    "plan": "maker.budget.margins",
    "Budget": "maker.budget.spend",
    "ModelEstimate": "maker.budget.tally",
    "TuneReport": "maker.budget.tuning",
    "tune_log": "maker.budget.tuning",
    "FunctionClient": "maker.cluster.function_client",
    "ClusterConfig": "maker.config",
    "GuardConfig": "maker.config",
    "VotingConfig": "maker.config",
    "RedFlagPolicy": "maker.engine.red_flags",
    "BudgetReached": "maker.errors",
    "MakerError": "maker.errors",
    "ModelConfigError": "maker.errors",
    "StepLogError": "maker.errors",
    "UsageError": "maker.errors",
    "VoteCapError": "maker.errors",
    "map": "maker.mapping.api",
    "RunResult": "maker.runtime.driver",
    "run": "maker.runtime.driver",
    "solve": "maker.solving",
    "chain_task": "maker.tasks.chain_task",
    "plan_task": "maker.tasks.plans.plan_task",
    "operation": "maker.tasks.plans.user_ops",
    "tool": "maker.tasks.plans.user_ops",
    "__version__": "maker.version",
    "VoteResult": "maker.voted_call",
    "avote": "maker.voted_call",
    "vote": "maker.voted_call",
    "voted": "maker.voted_call",
}

__all__ = [
    "Budget",
    "BudgetReached",
    "ClusterConfig",
    "EstimateReport",
    "FunctionClient",
    "GuardConfig",
    "KChoice",
    "MakerError",
    "ModelConfigError",
    "Margin",
    "MarginTable",
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


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'maker' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
