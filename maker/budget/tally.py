"""From graded samples to a verdict: p with its interval, collisions, k, cost.

Why one module for both `maker estimate` (samples drawn on purpose, graded against
ground truth) and `maker tune` (a finished run's log, graded against its decisions):
the arithmetic is the same, and a user comparing the two must see the same fields.

`Tally` is the mergeable count (Ray batches each return one); `assess` turns it into a
`ModelEstimate` at a run size and target.  The margin is planned on the pessimistic
(low) end of the Clopper-Pearson interval for p, as the design notes ask, and so are
the expected samples and cost.  A model is not recommended when:

* every call failed (`failed`), or no reply was valid (`no_valid`);
* the interval for p reaches 1/2 (`p_low`): voting may never converge;
* its errors concentrate (`correlated`): either the first two votes of a step are both
  wrong more often than `q/2` allows (`q` the error rate) -- which is impossible unless
  some steps are answered wrongly more often than rightly, and on those steps voting
  converges to the wrong answer -- or collisions run far above the `q**2` independence
  predicts, so the i.i.d. plan cannot be trusted.

    >>> t = Tally(steps=100, samples=200, answered=200, valid=200, correct=199)
    >>> e = assess("m", t, steps=1000, target=0.9, price=Price(0, 0, "free"))
    >>> e.verdict, e.k
    ('ok', 3)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import maker.voting as voting
from maker.budget.rounds import expected_requests
from maker.cluster.pricing import Price
from maker.config import VotingConfig

__all__ = ["COLLISION_P_VALUE", "COLLISION_RATIO_LIMIT", "ModelEstimate", "Tally", "assess"]

#: Collisions at least this many times what independence predicts, at one-sided
#: significance `COLLISION_P_VALUE`, make a model unfit for planning.
COLLISION_RATIO_LIMIT = 10.0
COLLISION_P_VALUE = 1e-3
#: Milder excess that only earns a warning.
WARN_RATIO = 2.0
WARN_P_VALUE = 0.01


@dataclass
class Tally:
    """Counts over graded samples.  `answered` excludes transport errors; `valid` are votes."""

    steps: int = 0
    samples: int = 0
    answered: int = 0
    valid: int = 0
    correct: int = 0
    red_flags: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    requests: int = 0  # answered samples that carried prompt tokens: requests the prompt was billed for
    cached_tokens: int = 0  # of tokens_in, read from the provider's prompt cache
    cost_usd: float = 0.0
    steps_with_two: int = 0
    first_two_wrong: int = 0
    short_steps: int = 0
    first_error: str | None = None

    def flag(self, reason: str) -> None:
        self.red_flags[reason] = self.red_flags.get(reason, 0) + 1

    def merge(self, other: Tally) -> Tally:
        """Add `other` into this tally (Ray batches come back one tally each)."""
        for name in (
            "steps",
            "samples",
            "answered",
            "valid",
            "correct",
            "tokens_in",
            "tokens_out",
            "requests",
            "cached_tokens",
            "steps_with_two",
            "first_two_wrong",
            "short_steps",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.cost_usd += other.cost_usd
        for reason, n in other.red_flags.items():
            self.red_flags[reason] = self.red_flags.get(reason, 0) + n
        if self.first_error is None:
            self.first_error = other.first_error
        return self


@dataclass(frozen=True)
class ModelEstimate:
    """One model's measured accuracy and what it means for a run of `steps` steps."""

    model: str
    simulated: bool
    verdict: str  # ok | failed | no_valid | p_low | correlated
    reason: str | None
    meets_target: bool
    measured_steps: int
    samples: int
    valid: int
    correct: int
    p: float | None
    p_low: float | None
    p_high: float | None
    level: float
    valid_rate: float | None
    red_flags: dict[str, int]
    tokens_in_mean: float | None
    tokens_out_mean: float | None
    cost_per_sample: float
    price_source: str
    first_two_wrong: int
    steps_with_two: int
    collision_rate: float | None
    collision_expected: float | None
    collision_ratio: float | None
    collision_p_value: float | None
    steps: int
    target: float
    k: int | None
    p_step: float | None
    run_success: float | None
    expected_samples_per_step: float | None
    expected_cost: float | None
    warnings: tuple[str, ...] = ()
    shares_prompt: bool = False  # expected_cost bills the prompt once per request (`maker.budget.rounds`)
    #: False: maker does not know this model's price -- `cost_per_sample` and `expected_cost`
    #: are unknown (shown so; never ranked by cost against priced models)
    price_known: bool = True
    #: share of prompt tokens the provider read from its cache, as measured (None: none reported);
    #: the costs above bill them at the cache-read rate
    cache_hit_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinity become null."""
        out = asdict(self)
        out["warnings"] = list(self.warnings)
        for key, value in out.items():
            if isinstance(value, float) and not math.isfinite(value):
                out[key] = None
        return out


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def assess(
    model: str,
    tally: Tally,
    *,
    steps: int,
    target: float,
    price: Price,
    level: float = 0.95,
    simulated: bool | None = None,
    shares_prompt: bool = False,
) -> ModelEstimate:
    """Judge one model's tally for a run of `steps` steps at success `target`.

    Why: turns counts into the decision a user needs -- can this model do the run, with
    which k, at what cost -- and says plainly why not when it cannot.

    The expected cost bills the prompt as the run will: once per request when
    `shares_prompt` (a round's samples drawn with `n`), else once per sample, at the
    measured prompt tokens per billed request (`tally.requests`; without it, at the
    measured tokens per drawn sample).
    """
    if simulated is None:
        from maker.cluster import ModelSpec

        simulated = ModelSpec(model).is_simulated  # sim:P or script:NAME ("simple/..." is not one)
    sim = simulated
    answered = tally.answered
    tokens_in = tally.tokens_in / answered if answered else None
    tokens_out = tally.tokens_out / answered if answered else None
    # Cost per *drawn* sample: red-flagged ones are paid for too, failed calls are not.
    cost = price.per_sample(tally.tokens_in, tally.tokens_out, tally.cached_tokens) / tally.samples if tally.samples else 0.0
    source = price.source
    known = price.known
    if cost == 0.0 and tally.cost_usd > 0.0 and price.input_per_m == price.output_per_m == 0.0:
        cost, source, known = tally.cost_usd / tally.samples, "measured: the clients' reported cost per call", True
    base: dict[str, Any] = dict(
        model=model,
        simulated=sim,
        measured_steps=tally.steps,
        samples=tally.samples,
        valid=tally.valid,
        correct=tally.correct,
        level=level,
        red_flags=dict(sorted(tally.red_flags.items())),
        tokens_in_mean=tokens_in,
        tokens_out_mean=tokens_out,
        cost_per_sample=cost,
        price_source=source,
        price_known=known,
        cache_hit_rate=round(tally.cached_tokens / tally.tokens_in, 4) if tally.tokens_in else None,
        first_two_wrong=tally.first_two_wrong,
        steps_with_two=tally.steps_with_two,
        steps=steps,
        target=target,
        valid_rate=tally.valid / tally.samples if tally.samples else None,
    )
    empty = dict(
        p=None,
        p_low=None,
        p_high=None,
        collision_rate=None,
        collision_expected=None,
        collision_ratio=None,
        collision_p_value=None,
        k=None,
        p_step=None,
        run_success=None,
        expected_samples_per_step=None,
        expected_cost=None,
    )
    if tally.samples == 0 or answered == 0:
        why = tally.first_error or "no sample was drawn"
        return ModelEstimate(
            **base,
            **empty,
            verdict="failed",
            meets_target=False,
            reason=f"every call failed ({tally.samples} tried): {why}",
        )
    if tally.valid == 0:
        flags = ", ".join(f"{r} {n}" for r, n in sorted(tally.red_flags.items()))
        return ModelEstimate(
            **base,
            **empty,
            verdict="no_valid",
            meets_target=False,
            reason=f"no valid vote in {tally.samples} samples: every reply was red-flagged ({flags})",
        )
    interval = voting.clopper_pearson(tally.correct, tally.valid, level)
    stats: dict[str, Any] = dict(p=interval.point, p_low=interval.low, p_high=interval.high)
    warnings: list[str] = []
    collisions = None
    if interval.point > 0.0 and tally.steps_with_two:
        collisions = voting.collision_stats(tally.first_two_wrong, tally.steps_with_two, interval.point)
        stats.update(
            collision_rate=collisions.observed,
            collision_expected=collisions.expected,
            collision_ratio=_finite(collisions.ratio),
            collision_p_value=collisions.p_value,
        )
    else:
        stats.update(collision_rate=None, collision_expected=None, collision_ratio=None, collision_p_value=None)
    if tally.short_steps:
        warnings.append(f"{tally.short_steps} steps got fewer than two valid votes within the sample cap")
    k = voting.k_min_pessimistic(tally.correct, tally.valid, steps, target, level)
    if k is None:
        if interval.point <= 0.5:
            why = (
                f"p = {interval.point:.4f} <= 1/2: a wrong answer wins a vote at least as often as the right one, "
                "so voting cannot converge"
            )
        else:
            why = (
                f"the {level:.0%} interval for p reaches down to {interval.low:.4f} <= 1/2 on {tally.valid} votes: "
                "voting may not converge (measure more steps with --samples, or use a better model)"
            )
        return ModelEstimate(
            **base,
            **stats,
            k=None,
            p_step=None,
            run_success=None,
            expected_samples_per_step=None,
            expected_cost=None,
            verdict="p_low",
            meets_target=False,
            reason=why,
            warnings=tuple(warnings),
        )
    p_assumed = interval.low
    valid_rate = tally.valid / tally.samples
    per_step = voting.expected_samples(p_assumed, k, valid_rate)
    step_cost = per_step * cost
    if tally.requests and source == price.source:  # per-token prices: bill the prompt per request, as the run will
        prompt = price.per_sample(tally.tokens_in / tally.requests, 0.0, tally.cached_tokens / tally.requests)
        reply = price.per_sample(0.0, tally.tokens_out) / tally.samples
        step_cost = expected_requests(p_assumed, k, valid_rate, grouped=shares_prompt) * prompt + per_step * reply
    plan = dict(
        k=k,
        p_step=voting.p_step(p_assumed, k),
        run_success=voting.run_success(p_assumed, k, steps),
        expected_samples_per_step=per_step,
        expected_cost=steps * step_cost if known else None,
        shares_prompt=shares_prompt,
    )
    cap = VotingConfig().max_samples_per_step
    if per_step > cap / 4:
        warnings.append(
            f"k = {k} needs about {per_step:,.0f} samples per step on average: slow steps will hit the run's cap "
            f"(--max-samples-per-step, default {cap}); raise it, or use a better model"
        )
    verdict, reason = "ok", None
    if collisions is not None:
        verdict, reason = _collision_verdict(tally, collisions, level, warnings)
    return ModelEstimate(
        **base, **stats, **plan, verdict=verdict, meets_target=verdict == "ok", reason=reason, warnings=tuple(warnings)
    )


def _collision_verdict(
    tally: Tally, c: voting.CollisionStats, level: float, warnings: list[str]
) -> tuple[str, str | None]:
    """Whether wrong answers concentrate on some steps (see the module docstring)."""
    # If every step had error rate q_i <= 1/2, then E[q_i^2] <= E[q_i] / 2.  Check that
    # bound with the collision rate's low end against the error rate's high end.
    coll_low = voting.clopper_pearson(tally.first_two_wrong, tally.steps_with_two, level).low
    err_high = 1.0 - voting.clopper_pearson(tally.correct, tally.valid, level).low
    rate = f"{c.observed:.2%} of steps had both first votes wrong"
    if coll_low > err_high / 2.0:
        return "correlated", (
            f"{rate}, more than half the error rate ({1 - c.p:.2%}) allows: on some steps the wrong answer "
            "is likelier than the right one, so voting converges to it there"
        )
    ratio = c.ratio
    if c.p_value < COLLISION_P_VALUE and ratio > COLLISION_RATIO_LIMIT:
        return "correlated", (
            f"{rate}, {ratio:.0f}x the {c.expected:.2g} independence predicts: wrong answers concentrate on "
            "some steps, so the i.i.d. plan (and k) cannot be trusted"
        )
    if c.p_value < WARN_P_VALUE and ratio > WARN_RATIO:
        warnings.append(f"collisions {ratio:.1f}x independence (p-value {c.p_value:.2g}): k may be optimistic")
    return "ok", None
