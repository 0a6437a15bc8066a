"""maker: run very long LLM tasks with (near) zero errors.

Each step of a task is sampled several times from small models, red-flagged samples
are thrown away, and first-to-ahead-by-k voting decides it before the state advances.

    >>> import maker
    >>> from maker.tasks import get_task
    >>> result = maker.run(get_task("hanoi", disks=6), ["sim:0.99"], maker.VotingConfig(k=3))  # doctest: +SKIP
"""

from maker.audit.verify import VerifyReport, verify_log  # noqa: E402
from maker.audit.whatif import WhatIfReport, whatif_log  # noqa: E402
from maker.budget.choosing import KChoice, choose_k  # noqa: E402
from maker.budget.estimate import EstimateReport, estimate  # noqa: E402
from maker.budget.margins import Margin, MarginTable, RunPlan, SampleCost, margin, margins, plan  # noqa: E402,F401 (RunPlan, plan: the old names)
from maker.budget.spend import Budget  # noqa: E402
from maker.budget.tally import ModelEstimate  # noqa: E402
from maker.budget.tuning import TuneReport, tune_log  # noqa: E402
from maker.cluster.function_client import FunctionClient  # noqa: E402
from maker.config import ClusterConfig, GuardConfig, VotingConfig  # noqa: E402
from maker.engine.red_flags import RedFlagPolicy  # noqa: E402
from maker.errors import BudgetReached, MakerError, ModelConfigError, StepLogError, UsageError, VoteCapError  # noqa: E402
from maker.mapping.api import map  # noqa: E402,A004 (maker.map: one voted answer per record)
from maker.runtime.driver import RunResult, run  # noqa: E402
from maker.solving import solve  # noqa: E402
from maker.tasks.chain_task import chain_task  # noqa: E402
from maker.tasks.plans.plan_task import plan_task  # noqa: E402
from maker.tasks.plans.user_ops import operation, tool  # noqa: E402
from maker.version import __version__  # noqa: E402
from maker.voted_call import VoteResult, avote, vote, voted  # noqa: E402

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
