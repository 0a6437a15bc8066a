"""Decorrelation: spread a step's votes over prompt variants and models.

Why: votes drawn on the same words from the same model share that model's
misreadings of those words, so their errors are not independent and voting cannot
outvote them.  A task that offers prompt variants (see `tasks.base`) says each step in
several surface forms that mean the same thing; the runner spreads a step's samples
over variants and models, and the task maps every variant's answer back to the one
canonical vote key.

Sample i of a step goes to model ``i % M`` (as without variants) and to variant
`variant_of(i, M, N)`: ``i % N``, shifted by one after every ``lcm(M, N)`` samples, so
that each (model, variant) pair is used before any repeats even when M and N share a
factor.  Sample 0 (the temperature-0 draw) is always model 0 on the canonical variant.

Example:
    >>> [variant_of(i, 1, 3) for i in range(6)]
    [0, 1, 2, 0, 1, 2]
    >>> [(i % 2, variant_of(i, 2, 2)) for i in range(4)]
    [(0, 0), (1, 1), (0, 1), (1, 0)]
"""

from __future__ import annotations

import math
from typing import Any

from maker.errors import UsageError
from maker.tasks.base import Prompt, StepInput, task_prompt, variants_of


def variant_of(index: int, models: int, variants: int) -> int:
    """The prompt variant of sample `index` of a step, with `models` models and `variants` variants."""
    if variants <= 1:
        return 0
    if models <= 1 or math.gcd(models, variants) == 1:
        return index % variants
    return (index + index // math.lcm(models, variants)) % variants


def step_prompts(task: Any, step: StepInput, style: Any, variants: int) -> tuple[Prompt, ...]:
    """The step's prompt in each of the first `variants` variants (index = variant)."""
    if variants <= 1:
        return (task_prompt(task, step, style),)
    return tuple(task_prompt(task, step, style, v) for v in range(variants))


def check_variants(task: Any, variants: int) -> int:
    """`variants` if the task offers that many; UsageError (exit 2) otherwise."""
    if isinstance(variants, bool) or not isinstance(variants, int) or variants < 1:
        raise UsageError(f"--prompt-variants must be an integer >= 1, got {variants!r}")
    offered = variants_of(task)
    if variants > offered:
        name = getattr(getattr(task, "spec", None), "name", "this task")
        raise UsageError(f"--prompt-variants {variants}: {name} offers {offered} prompt variant(s)")
    return variants
