"""Checks a run's red-flag, variant and guard settings before anything is spent.

Why here and not on the first sample: a broken user detector, a variant count the task
does not offer, or a margin ceiling below the margin would otherwise surface after Ray
has started and samples have been paid for -- or, worse, as a run that discards every
sample and keeps drawing.  Every failure is a one-line UsageError (CLI exit 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from maker.cluster.worker import check_shippable
from maker.config import GuardConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy, check_detectors
from maker.engine.variants import check_variants
from maker.errors import UsageError
from maker.tasks.base import Task


def check_run(task: Task, policy: RedFlagPolicy, voting: VotingConfig, models: Sequence[Any], guard: GuardConfig) -> None:
    """Raise UsageError when these settings cannot work together (see the module docstring).

    * the task (and any user model client) must pickle for the Ray workers, and the
      simulator needs a task with ground truth (`maker.cluster.worker.check_shippable`);
    * `guard.k_max` must be >= k and <= `voting.max_samples_per_step`;
    * and everything `check_settings` checks.
    """
    check_shippable(task, models)
    k_max = guard.checked_k_max(voting.k)
    if k_max > voting.max_samples_per_step:
        raise UsageError(f"--k-max ({k_max}) must not exceed --max-samples-per-step ({voting.max_samples_per_step})")
    check_settings(task, policy, voting, len(models))


def check_settings(task: Task, policy: RedFlagPolicy, voting: VotingConfig, n_models: int) -> None:
    """The checks a run and a single voted call (`maker.vote`, a one-step run) share;
    UsageError (one line) when one fails, before anything is drawn.

    * `voting.prompt_variants` must not exceed what the task offers;
    * the output-token cap has one owner, `voting.max_output_tokens`: a policy that names
      another is refused (it would never apply: requests are capped from the voting config);
    * at temperature 0 every later sample of a (model, variant) is a copy of the first,
      which `non_independent` discards: with fewer (model, variant) pairs than k no step
      could ever be decided (`n_models`: how many models share a step's samples);
    * each user detector must accept the task's known-good reply without raising.
    """
    check_variants(task, voting.prompt_variants)
    if policy.max_output_tokens is not None and policy.max_output_tokens != voting.max_output_tokens:
        raise UsageError(
            f"the red-flag policy caps output at {policy.max_output_tokens} tokens, the voting config at "
            f"{voting.max_output_tokens}: set the cap once, in VotingConfig.max_output_tokens (--max-output-tokens)"
        )
    pairs = n_models * voting.prompt_variants
    if "non_independent" in policy.active() and voting.temperature == 0 and pairs < voting.k:
        raise UsageError(
            f"--temperature 0 with {pairs} (model, prompt variant) pair(s) and k={voting.k}: every later sample "
            "would copy the first and be discarded as non_independent; use --temperature > 0, more "
            "--prompt-variants or models, or --skip-red-flag non_independent"
        )
    check_detectors(task, policy, voting.prompt_variants, voting.max_output_tokens)
