"""Built-in decomposers: plain functions that cut a problem into a plan of atomic steps.

Each `*_plan` function is meant to be read and copied: it walks the problem the way a
person would on paper and writes one plan step (`tasks.plans.plan.PlanStep`) per atomic
operation (`tasks.plans.ops`), naming each input either as a literal or as the placeholder of
the step that will produce it.  Nothing runs here; `maker.runtime.dag` runs the plan.

* `multiply_plan(a, b)`: schoolbook multiplication.  Every digit product `mul(a_i, b_j)`
  is independent (one wide level: N*N steps at once for N-digit operands); column j
  then adds the products with i + j = column and the previous column's carry, so the
  2N-1 columns form a chain.
* `add_plan(a, b)`: long addition, one column with carry per step: a pure chain (a path).
* `sort_plan(values)`: Batcher's odd-even merge sort, a sorting network of
  compare-exchange steps `cmp(x, y)`; each level of the network is independent.

The task classes (`Multiply`, `Add`, `Sort`) draw a random instance, build its plan and
know the answer independently of the plan (`a * b`, `sorted(values)`), so a run checks
the decomposition as well as every step.

Example:
    >>> plan = multiply_plan(12, 34)
    >>> len(plan), plan.widths()
    (7, [4, 1, 1, 1])
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ..base import TaskOption, TaskSpec
from ..plans.ops import shapes
from ..plans.plan import Plan, PlanStep, make_plan
from ..plans.plan_task import OraclePlanTask

MAX_MULTIPLY_DIGITS = 300
MAX_ADD_DIGITS = 100_000
MAX_SORT_N = 4096


def multiply_plan(a: int, b: int) -> Plan:
    """a * b as digit products (parallel) and column sums with carries (a chain)."""
    da = [int(c) for c in reversed(str(a))]  # least significant digit first
    db = [int(c) for c in reversed(str(b))]
    steps: list[PlanStep] = []

    def add(op: str, *args: str) -> str:
        steps.append(PlanStep(len(steps) + 1, op, args))
        return f"#E{len(steps)}"

    product = {(i, j): add("mul", str(x), str(y)) for i, x in enumerate(da) for j, y in enumerate(db)}
    carry, digits = "0", []
    for column in range(len(da) + len(db) - 1):
        terms = [product[i, column - i] for i in range(len(da)) if 0 <= column - i < len(db)]
        ref = add("column", carry, *terms)
        carry, digits = f"{ref}.carry", [f"{ref}.digit", *digits]
    return make_plan(steps, carry + "".join(digits), shapes(), f"multiply {a} by {b}")


def add_plan(a: int, b: int) -> Plan:
    """a + b column by column, each column's carry feeding the next: a chain."""
    da = [int(c) for c in reversed(str(a))]
    db = [int(c) for c in reversed(str(b))]
    steps: list[PlanStep] = []
    carry, digits = "0", []
    for column in range(max(len(da), len(db))):
        terms = [str(d[column]) for d in (da, db) if column < len(d)]
        steps.append(PlanStep(column + 1, "column", (carry, *terms)))
        carry, digits = f"#E{column + 1}.carry", [f"#E{column + 1}.digit", *digits]
    return make_plan(steps, carry + "".join(digits), shapes(), f"add {a} and {b}")


def batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Compare-exchange pairs (low position, high position) of Batcher's odd-even merge sort.

    Built for the next power of two; pairs that touch a position >= n are dropped, which is
    the same as padding with +infinity (a padded value never moves).
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p) and i + j + k < n:
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


def sort_plan(values: Sequence[int]) -> Plan:
    """Sort `values` with a sorting network: each compare-exchange is one `cmp` step."""
    position = [str(v) for v in values]  # what sits at each position: a literal or a placeholder
    steps: list[PlanStep] = []
    for low, high in batcher_pairs(len(values)):
        steps.append(PlanStep(len(steps) + 1, "cmp", (position[low], position[high])))
        position[low], position[high] = f"#E{len(steps)}.low", f"#E{len(steps)}.high"
    return make_plan(steps, "[" + ", ".join(position) + "]", shapes(), f"sort {len(values)} numbers")


# -- tasks: a random instance, its plan, and its answer computed without the plan ------
_DIGITS = TaskOption("digits", int, "add/multiply: digits of each operand", required=True)
_INSTANCE = TaskOption("instance_seed", int, "add/multiply/sort: which random instance (default 0)", default=0)


def _check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"--{name.replace('_', '-')} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"--{name.replace('_', '-')} must be between {low} and {high}, got {value}")
    return value


def _operand(rng: random.Random, digits: int) -> int:
    return rng.randrange(10 ** (digits - 1), 10**digits) if digits > 1 else rng.randrange(1, 10)


class _Arithmetic(OraclePlanTask):
    """Shared by Multiply and Add: two random N-digit operands and an integer answer."""

    name = ""
    max_digits = 0

    def __init__(self, digits: int, instance_seed: int = 0) -> None:
        _check_int("digits", digits, 1, self.max_digits)
        _check_int("instance_seed", instance_seed, 0, 2**63)
        rng = random.Random(f"{self.name}:{digits}:{instance_seed}")
        self.a, self.b = _operand(rng, digits), _operand(rng, digits)
        spec = TaskSpec(self.name, {"digits": digits, "instance_seed": instance_seed})
        super().__init__(self.build(self.a, self.b), spec)

    def build(self, a: int, b: int) -> Plan:
        raise NotImplementedError

    def normalize_answer(self, text: str) -> str:
        return str(int(text))


class Multiply(_Arithmetic):
    name = "multiply"
    summary = "N-by-N digit multiplication: N*N digit products in parallel, then a chain of column sums"
    options = (_DIGITS, _INSTANCE)
    max_digits = MAX_MULTIPLY_DIGITS

    def build(self, a: int, b: int) -> Plan:
        return multiply_plan(a, b)

    def expected_answer(self, tool_outputs: Any = None) -> str:
        return str(self.a * self.b)


class Add(_Arithmetic):
    name = "add"
    summary = "N-digit long addition: one column with carry per step (a pure chain)"
    options = (_DIGITS, _INSTANCE)
    max_digits = MAX_ADD_DIGITS

    def build(self, a: int, b: int) -> Plan:
        return add_plan(a, b)

    def expected_answer(self, tool_outputs: Any = None) -> str:
        return str(self.a + self.b)


class Sort(OraclePlanTask):
    name = "sort"
    summary = "sort N numbers with a sorting network of compare-exchange steps (parallel levels)"
    options = (
        TaskOption("n", int, f"sort: how many numbers, 2..{MAX_SORT_N}", required=True),
        _INSTANCE,
    )

    def __init__(self, n: int, instance_seed: int = 0) -> None:
        _check_int("n", n, 2, MAX_SORT_N)
        _check_int("instance_seed", instance_seed, 0, 2**63)
        rng = random.Random(f"sort:{n}:{instance_seed}")
        self.values = [rng.randrange(1000) for _ in range(n)]
        super().__init__(sort_plan(self.values), TaskSpec("sort", {"n": n, "instance_seed": instance_seed}))

    def expected_answer(self, tool_outputs: Any = None) -> str:
        return "[" + ", ".join(map(str, sorted(self.values))) + "]"
