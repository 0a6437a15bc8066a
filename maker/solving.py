"""Solve a free-form problem: a model plans it (voted decomposition), then the plan runs.

Why a library function: `maker solve` is one call of it (parse, `solve`, print), and a
Python caller gets the same two phases with the same spend cap -- planning's samples count
against `max_cost_usd` before the run starts, as `spent_before_usd` of the run.

    >>> result = maker.solve("Compute (12 + 7) * (3 + 4) - 5", ["script:arith"], maker.VotingConfig(k=2))  # doctest: +SKIP
    >>> result.extra["answer"]                                                                            # doctest: +SKIP
    '128'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from maker.cluster import ModelSpec
from maker.config import ClusterConfig, DagConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.runtime.decompose import DecomposeConfig, Decomposition, plan_problem
from maker.runtime.driver import RunResult, run

__all__ = ["planning_budget", "solve", "solve_plan"]


def planning_budget(cap: float | None, specs: Sequence[ModelSpec], voting: VotingConfig,
                    prices: Mapping[str, Any] | None = None) -> Any:
    """The spend cap's `maker.budget.spend.Budget` for the planning requests (None without
    a cap); UsageError when a model (or escalation tier) has no known price."""
    from maker.budget.spend import Budget, check_cap, refuse_unpriced, resolve_prices

    cap = check_cap(cap)
    if cap is None:
        return None
    tiers = [ModelSpec(m) for m in voting.escalation_models if m not in {s.model for s in specs}]
    rates = resolve_prices([*specs, *tiers], dict(prices or {}))
    refuse_unpriced(cap, rates)
    return Budget(cap, rates)


def solve_plan(
    problem: str,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    config: DecomposeConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    max_cost_usd: float | None = None,
    prices: Mapping[str, Any] | None = None,
) -> Decomposition:
    """Phase one alone (`maker solve --dry-run`): the voted plan of `problem`, nothing run.
    Raises as `maker.runtime.decompose.plan_problem`, and UsageError for an unpriced capped model."""
    voting = voting or VotingConfig()
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    budget = planning_budget(max_cost_usd, specs, voting, prices)
    return plan_problem(problem, specs, voting, config=config, policy=policy or RedFlagPolicy(), seed=seed,
                        budget=budget)


def solve(
    problem: str,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    config: DecomposeConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    log: str | Path | None = None,
    cluster: ClusterConfig | None = None,
    progress: Any = None,
    max_cost_usd: float | None = None,
    prices: Mapping[str, Any] | None = None,
    on_plan: Callable[[Any, Decomposition], Any] | None = None,
) -> RunResult:
    """Plan `problem` (`solve_plan`), then run the plan as a DAG task on the Ray workers.

    `log`: the step log (default ``runs/solve-TIMESTAMP.parquet``); `on_plan(task, plan)`
    is told the planned task before any step runs (the CLI prints the plan and the spend
    cap's expectation there); a `maker.runtime.progress.Progress` it returns replaces
    `progress` (the step count is known only once planned).  The result's ``extra`` holds ``plan`` (its text),
    ``plan_samples`` and ``plan_votes``; what planning spent counts against `max_cost_usd`.
    A free-form problem has no ground truth: errors are unknown (None)."""
    from maker.tasks.plans.plan_task import solve_task

    voting = voting or VotingConfig()
    policy = policy or RedFlagPolicy()
    decomposition = solve_plan(problem, models, voting, config=config, policy=policy, seed=seed,
                               max_cost_usd=max_cost_usd, prices=prices)
    task = solve_task(problem, decomposition.plan.text())
    if on_plan is not None:
        progress = on_plan(task, decomposition) or progress
    result = run(
        task,
        models,
        voting,
        log=Path(log or f"runs/solve-{time.strftime('%Y%m%d-%H%M%S')}.parquet"),
        seed=seed,
        cluster=cluster or ClusterConfig(),
        dag=DagConfig(),
        policy=policy,
        progress=progress,
        extra_meta={"plan_votes": decomposition.summary()},
        max_cost_usd=max_cost_usd,
        spent_before_usd=decomposition.cost_usd,
        prices=prices,
    )
    result.extra["plan"] = decomposition.plan.text()
    result.extra["plan_samples"] = decomposition.samples
    result.extra["plan_votes"] = decomposition.summary()
    return result
