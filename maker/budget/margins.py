"""Choose a run's margin before paying for it: k, its success odds, votes and dollars.

Why: cost grows linearly in k and k only as ln(steps), so the right k is cheap to get
and expensive to get wrong.  `margin` turns a per-sample accuracy p (measured by
`maker estimate` or taken from a paper) into the smallest margin that reaches the
target, what that margin buys and what it costs; `margins` does it for several p side by
side with a cascade's price (`maker margin`); `choose_k` is a run's whole choice (a given
k, the default, or ``"auto"``: from an assumed p or an estimate); `cost_by_k` and
`cost_by_steps` give the curves `maker margin --plot` draws.  Everything but the
estimate is closed-form (`voting`) and validates its input with one-line `UsageError`s
that name the command-line flag.  ("Plan" in maker is a DAG of steps, `maker.plan_task`.)

    >>> margin(1 - 0.0022, 2**20 - 1, 0.95).k        # the paper's gpt-4.1-mini run
    3
    >>> margin(1 - 0.3571, 2**20 - 1, 0.95).k        # gpt-4.1-nano
    29
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import maker.voting as voting
from maker.budget.rounds import expected_requests
from maker.errors import UsageError

__all__ = [
    "Margin",
    "MarginTable",
    "RunPlan",
    "SampleCost",
    "check_p",
    "check_steps",
    "check_target",
    "cascade_cost",
    "check_valid_rate",
    "cost_by_k",
    "cost_by_steps",
    "margin",
    "margins",
    "plan",
]


@dataclass(frozen=True)
class SampleCost:
    """What one sample costs: tokens and prices per million tokens, or a flat figure.

    `per_sample` wins when given (e.g. a mean measured by `maker estimate`); otherwise
    the cost is `tokens_in * price_in / 1e6 + tokens_out * price_out / 1e6`.
    """

    tokens_in: float = 0.0
    tokens_out: float = 0.0
    price_in: float = 0.0
    price_out: float = 0.0
    per_sample: float | None = None

    def __post_init__(self) -> None:
        for name in ("tokens_in", "tokens_out", "price_in", "price_out"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value!r}")
        if self.per_sample is not None and not (math.isfinite(self.per_sample) and self.per_sample >= 0):
            raise UsageError(f"cost per sample must be a finite number >= 0, got {self.per_sample!r}")

    @property
    def usd(self) -> float:
        if self.per_sample is not None:
            return float(self.per_sample)
        return self.tokens_in * self.price_in / 1e6 + self.tokens_out * self.price_out / 1e6

    def step_usd(self, samples: float, requests: float) -> float:
        """USD for `samples` samples drawn in `requests` requests: the prompt is billed once
        per request, the reply per sample (`per_sample`, a flat figure, cannot be split:
        it is charged per sample)."""
        if self.per_sample is not None:
            return samples * float(self.per_sample)
        return requests * self.tokens_in * self.price_in / 1e6 + samples * self.tokens_out * self.price_out / 1e6


@dataclass(frozen=True)
class Margin:
    """The margin for one accuracy: `k` is None when no margin reaches the target (p <= 1/2).

    `shares_prompt`: whether the estimate assumed a round's samples share one request (`n`), so
    the prompt is billed once per request (`maker.budget.rounds`); `requests_per_step` is the
    expected requests per step and `prompt_tokens` the expected prompt tokens billed over
    the whole run (None without a k).  `cost_per_sample` is one sample billed on its own.
    """

    p: float
    steps: int
    target: float
    valid_rate: float
    k: int | None
    p_step: float | None
    run_success: float | None
    expected_votes: float | None
    expected_samples: float | None
    cost_per_sample: float
    expected_cost: float | None
    reason: str | None = None
    shares_prompt: bool = False
    requests_per_step: float | None = None
    prompt_tokens: float | None = None

    @property
    def error(self) -> float:
        return 1.0 - self.p

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["error"] = self.error
        return out


def check_p(p: float, flag: str = "--p") -> float:
    """A per-sample accuracy strictly inside (0, 1); p = 1 would need no voting at all."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p < 1.0:
        raise UsageError(f"{flag} must be in (0, 1), got {p!r}")
    return float(p)


def check_target(target: float) -> float:
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0.0 < target < 1.0:
        raise UsageError(f"--target must be in (0, 1), got {target!r}")
    return float(target)


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise UsageError(f"--steps must be an integer >= 1, got {steps!r}")
    return steps


def check_valid_rate(valid_rate: float) -> float:
    if isinstance(valid_rate, bool) or not isinstance(valid_rate, (int, float)) or not 0.0 < valid_rate <= 1.0:
        raise UsageError(f"--valid-rate must be in (0, 1], got {valid_rate!r}")
    return float(valid_rate)


def margin(
    p: float,
    steps: int,
    target: float,
    *,
    valid_rate: float = 1.0,
    cost: SampleCost | None = None,
    shares_prompt: bool = False,
) -> Margin:
    """The smallest margin k that makes a run of `steps` steps succeed with `target`.

    Why: this is the whole decision a user must make before a run.  With p <= 1/2 the
    plan has `k = None` and says why, instead of raising: a table of several models
    should still show the others.  `shares_prompt` (`maker.budget.rounds.shares_prompt`):
    bill the prompt once per request of a round drawn with `n`, not once per sample.

    >>> round(margin(0.998, 1000, 0.95, cost=SampleCost(per_sample=0.001)).expected_cost, 2)
    2.01
    """
    p = check_p(p)
    steps = check_steps(steps)
    target = check_target(target)
    valid_rate = check_valid_rate(valid_rate)
    cost = cost or SampleCost()
    c = cost.usd
    if p <= 0.5:
        return Margin(
            p,
            steps,
            target,
            valid_rate,
            None,
            None,
            None,
            None,
            None,
            c,
            None,
            reason=f"p = {p:g} <= 1/2: a wrong answer wins a vote at least as often as the right one, "
            "so no margin k can reach the target",
            shares_prompt=shares_prompt,
        )
    k = voting.k_min(p, steps, target)
    return _plan_at(p, k, steps, target, valid_rate, cost, shares_prompt)


def _per_step(p: float, k: int, valid_rate: float, cost: SampleCost, shares_prompt: bool) -> tuple[float, float, float]:
    """(samples, requests, USD) expected for one step at margin k."""
    samples = voting.expected_samples(p, k, valid_rate)
    requests = expected_requests(p, k, valid_rate, grouped=shares_prompt)
    return samples, requests, cost.step_usd(samples, requests)


def _plan_at(
    p: float, k: int, steps: int, target: float, valid_rate: float, cost: SampleCost, shares_prompt: bool
) -> Margin:
    n = voting.expected_votes(p, k)
    _, requests, usd = _per_step(p, k, valid_rate, cost, shares_prompt)
    return Margin(
        p=p,
        steps=steps,
        target=target,
        valid_rate=valid_rate,
        k=k,
        p_step=voting.p_step(p, k),
        run_success=voting.run_success(p, k, steps),
        expected_votes=n,
        expected_samples=n / valid_rate,
        cost_per_sample=cost.usd,
        expected_cost=steps * usd,
        shares_prompt=shares_prompt,
        requests_per_step=requests,
        prompt_tokens=steps * requests * cost.tokens_in,
    )


def cost_by_k(
    p: float,
    steps: int,
    ks: range | list[int],
    *,
    valid_rate: float = 1.0,
    cost: SampleCost | None = None,
    shares_prompt: bool = False,
) -> list[tuple[int, float, float, float]]:
    """(k, run success, expected samples for the run, expected cost) for each k.

    Why: the left panel of the plot; it shows how cheaply one extra unit of margin buys
    orders of magnitude of reliability once p > 1/2.
    """
    p = check_p(p)
    steps = check_steps(steps)
    cost = cost or SampleCost()
    out = []
    for k in ks:
        samples, _, usd = _per_step(p, k, valid_rate, cost, shares_prompt)
        out.append((k, voting.run_success(p, k, steps), steps * samples, steps * usd))
    return out


def cost_by_steps(
    p: float,
    target: float,
    step_counts: list[int],
    *,
    valid_rate: float = 1.0,
    cost: SampleCost | None = None,
    shares_prompt: bool = False,
) -> list[tuple[int, int, float, float]]:
    """(steps, k_min, expected samples for the run, expected cost) for each run length.

    Why: the right panel of the plot, Θ(s ln s): k_min grows like ln s, so the cost per
    step creeps up in unit jumps as runs get longer.
    """
    p = check_p(p)
    target = check_target(target)
    if p <= 0.5:
        return []
    cost = cost or SampleCost()
    out = []
    for s in step_counts:
        k = voting.k_min(p, s, target)
        samples, _, usd = _per_step(p, k, valid_rate, cost, shares_prompt)
        out.append((s, k, s * samples, s * usd))
    return out


def cascade_cost(run_plan: Margin, fraction: float, strong: SampleCost, strong_p: float | None = None) -> float | None:
    """Expected USD of a cascade run (`--on-undecided escalate`): the plan's own expected
    cost plus the escalated steps' re-votes on the stronger model.

    Escalated steps: ``fraction * steps``; each re-votes with a fresh ballot at the same k,
    at ``voting.expected_samples(strong_p, k, valid_rate)`` samples (the plan's own samples
    per step when `strong_p` is None), at ``strong.usd`` dollars each (the prompt once per
    request when the plan `shares_prompt`, as the plan itself counts it).  The cheap tier's
    samples on those steps are counted in the plan's cost already (an approximation: a
    step that gives up may draw up to the sample cap).  None when the plan has no k.
    Raises UsageError for a fraction outside [0, 1] or a bad `strong_p` (<= 1/2 included).

        >>> base = margin(0.99, 1000, 0.95, cost=SampleCost(per_sample=0.001))
        >>> round(cascade_cost(base, 0.1, SampleCost(per_sample=0.01)) - base.expected_cost, 4)  # 100 steps x 3.06 x $0.01
        3.0612
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise UsageError(f"--escalate-fraction must be in [0, 1], got {fraction!r}")
    if run_plan.k is None or run_plan.expected_cost is None or run_plan.expected_samples is None:
        return None
    p = run_plan.p if strong_p is None else check_p(strong_p, "--escalate-p")
    if p <= 0.5:
        raise UsageError(f"--escalate-p must be above 1/2, got {p}: no margin makes the stronger tier decide right")
    _, _, usd = _per_step(p, run_plan.k, run_plan.valid_rate, strong, run_plan.shares_prompt)
    return run_plan.expected_cost + fraction * run_plan.steps * usd


#: The names these had before "plan" came to mean only a DAG of steps (`maker.plan_task`).
RunPlan = Margin
plan = margin


def billed(grouped: bool) -> str:
    """How a margin counts the prompt (one line; `prompt_billed` in `MarginTable.to_dict`)."""
    if grouped:
        return "once per request: a round's samples share one request with n, a step's first sample apart"
    return "once per sample: one request per sample (litellm providers; any speculative run)"


@dataclass(frozen=True)
class MarginTable:
    """`margins`' answer: one `Margin` per accuracy, and each one's cascade cost (None
    without `escalate_fraction`; an entry is None where that margin has no k)."""

    steps: int
    target: float
    shares_prompt: bool
    margins: tuple[Margin, ...]
    cascade: tuple[float | None, ...] | None = None
    escalate_fraction: float | None = None

    @property
    def all_reach(self) -> bool:
        """Whether every accuracy has a margin (`maker margin` exits 1 otherwise)."""
        return all(m.k is not None for m in self.margins)

    def to_dict(self) -> dict[str, Any]:
        """What `maker margin --json` prints."""
        out: dict[str, Any] = {"steps": self.steps, "target": self.target, "prompt_billed": billed(self.shares_prompt),
                               "plans": [m.to_dict() for m in self.margins]}
        if self.cascade is not None:
            for d, c in zip(out["plans"], self.cascade):
                d["cascade_cost"] = c
            out["escalate_fraction"] = self.escalate_fraction
        return out


def margins(
    ps: list[float],
    steps: int,
    target: float = 0.95,
    *,
    valid_rate: float = 1.0,
    cost: SampleCost | None = None,
    shares_prompt: bool = False,
    escalate_fraction: float | None = None,
    escalate_p: float | None = None,
    escalate_cost: SampleCost | None = None,
) -> MarginTable:
    """`margin` for each accuracy in `ps`, side by side; with `escalate_fraction` also each
    one's cascade cost (`cascade_cost`) with the stronger model at `escalate_p` (default:
    as each p) and `escalate_cost` per sample.  Raises UsageError for no accuracy, for an
    `escalate_fraction` without `escalate_cost` (the escalated steps would look free), and
    for `escalate_p` / `escalate_cost` without `escalate_fraction`.

        >>> margins([0.998, 0.99], 1000).to_dict()["plans"][1]["k"]
        3
    """
    if not ps:
        raise UsageError("say which accuracy to choose a margin for: --p P or --error E")
    table = tuple(margin(p, steps, target, valid_rate=valid_rate, cost=cost, shares_prompt=shares_prompt) for p in ps)
    cascade = None
    if escalate_fraction is not None:
        if escalate_cost is None:
            raise UsageError("--escalate-fraction: give the stronger model's price, --escalate-price-in and/or "
                             "--escalate-price-out (USD per million tokens; 0 for a free model)")
        cascade = tuple(cascade_cost(m, escalate_fraction, escalate_cost, escalate_p) for m in table)
    elif escalate_p is not None or escalate_cost is not None:
        raise UsageError("--escalate-p and --escalate-price-* price a cascade: give --escalate-fraction too")
    return MarginTable(table[0].steps, table[0].target, shares_prompt, table, cascade, escalate_fraction)
