"""A run's margin k, chosen: given, the default, or ``auto`` (from an assumed p or an estimate).

Why one function: `maker run --k`, `maker map --k`, `maker solve --k` and Python callers
take the same values with the same checks and the same choice (`choose_k`); the CLI only
prints how k was chosen.  The closed-form margin is `maker.budget.margins.margin`; the
estimate is `maker.budget.estimate.estimate_for_run`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maker.budget.estimate import estimate_for_run
from maker.config import VotingConfig
from maker.errors import UsageError

__all__ = ["KChoice", "choose_k"]


@dataclass(frozen=True)
class KChoice:
    """How a run's k was chosen (`choose_k`): `source` is ``"given"``, ``"default"`` (the
    `VotingConfig` default), ``"assumed p"`` (``auto`` with p given, not measured) or
    ``"estimated"`` (``auto``: p measured by `estimate`, whose report is `estimate`);
    `note` is one line saying so for an assumed p (empty otherwise)."""

    k: int
    source: str
    estimate: Any = None
    note: str = ""


def choose_k(
    k: int | str | None,
    steps: int,
    *,
    target: float = 0.95,
    p: float | None = None,
    task: Any = None,
    models: Any = (),
    voting: Any = None,
    policy: Any = None,
    samples: int = 200,
    seed: int = 0,
    cluster: Any = None,
    progress: Any = None,
) -> KChoice:
    """A run's margin k -- all of ``maker run --k``: None takes `VotingConfig`'s default;
    an integer (or its text) is checked (>= 1); ``"auto"`` chooses the smallest k that makes
    `steps` steps right with probability `target`, from `p` when given (assumed, not
    measured), else from `estimate_for_run` of `models` on `samples` of `task`'s steps,
    drawn as the run draws (`voting`, `policy`; `seed`, `cluster`, `progress` as for
    `maker.estimate`; what it spends is the report's).  Raises UsageError for a bad k, an
    ``auto`` with neither p nor task, or models that cannot reach the target; ModelConfigError
    when every estimate call failed.

        >>> choose_k("auto", 1_048_575, p=0.9978).k
        3
    """
    if k is None:
        return KChoice(VotingConfig().k, "default")
    if k != "auto":
        text = k.strip() if isinstance(k, str) else None
        value = int(text) if text is not None and text.lstrip("-").isdigit() else k
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"--k must be an integer >= 1 or 'auto', got {k!r}")
        if value < 1:
            raise UsageError(f"--k must be an integer >= 1, got {value}")
        return KChoice(value, "given")
    if p is None:
        if task is None:
            raise UsageError("--k auto needs --p (the per-step accuracy to plan with)")
        value, report = estimate_for_run(task, list(models), target, samples=samples, voting=voting or VotingConfig(k=1),
                                         policy=policy, seed=seed, cluster=cluster, progress=progress)
        return KChoice(value, "estimated", estimate=report)
    from maker.voting import k_min, run_success  # (the module; `voting` here is the config)

    try:
        value = k_min(p, steps, target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    success = run_success(p, value, steps)
    note = (f"k = {value} (smallest margin for the assumed p={p}, not measured; {steps:,} steps, target {target}: "
            f"whole-run success {success:.4f})")
    return KChoice(value, "assumed p", note=note)
