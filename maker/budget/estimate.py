"""Measure each candidate model's per-step accuracy p before paying for a run.

Why: k, the cost and even whether a run can succeed at all follow from p, and p is
cheap to measure.  `estimate` draws samples on random steps of the task, each on its
*true* premise (from the task's ground truth, so one error does not derail the rest),
grades every valid vote against the truth, and assesses every model (`maker.budget.tally`).

How it runs: the steps are cut into batches and shipped to the Ray workers with
`estimate_batch(worker, job)`, the same pattern as `maker.runtime.chain.loop.run_segment`.  A
worker builds each step's premise itself (only indices travel) and votes all its steps
concurrently with the engine's one step voter (`maker.engine.step.vote_step`), exactly as
a run draws (the first sample of a step at the first temperature, later ones at the
voting temperature; red-flagged samples are not votes and are redrawn), under one
stopping rule instead of the margin (`maker.engine.step.Measure`): `votes_per_step` valid
votes, or the sample cap (`measuring`: at most `SAMPLES_PER_VOTE` samples per vote
wanted, never more than the run's cap).  At least two votes per step are drawn so that
collisions (both first votes wrong) can be counted.  A model whose calls all fail (or
whose replies are all cut or red-flagged) stops being asked once the batch's counts say
so (`VotingConfig.stalled`).

    >>> from maker.tasks import get_task
    >>> report = estimate(get_task("hanoi", disks=10), ["sim:0.99", "sim:0.9"], samples=200)  # doctest: +SKIP
    >>> report.recommended                                                                     # doctest: +SKIP
    'sim:0.99'
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TextIO

import numpy as np

from maker.budget.margins import check_steps, check_target
from maker.budget.rounds import shares_prompt
from maker.budget.tally import ModelEstimate, Tally, assess
from maker.cluster import ModelConfigError, ModelSpec, WorkerPool, check_spec, mix64
from maker.cluster.clients import warn_unsent_settings
from maker.cluster.gather import gather
from maker.cluster.pricing import Price, price_of
from maker.config import ClusterConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.engine.step import Measure, StepVote, vote_step
from maker.errors import MakerError, UsageError, one_line
from maker.tasks.base import Oracle, StepInput, Task, optional

__all__ = [
    "EstimateJob",
    "EstimateReport",
    "estimate",
    "estimate_batch",
    "estimate_for_run",
    "measuring",
    "pick_steps",
    "print_auto_k",
    "true_step",
]

#: Tags the estimate's draws so they never repeat a run's draws of the same seed.
_ESTIMATE_SALT = 0x6573_7469_6D61_7465
#: An estimate's spend bound: at most this many samples per valid vote a step wants.
SAMPLES_PER_VOTE = 5


@dataclass(frozen=True)
class EstimateJob:
    """One batch for one worker: step indices and the models that draw them (in turn,
    sample i from `models[i % len(models)]`, as a run mixes them)."""

    steps: tuple[int, ...]
    models: tuple[str, ...]
    voting: VotingConfig
    policy: RedFlagPolicy
    seed: int
    votes_per_step: int = 2


def measuring(voting: VotingConfig, votes_per_step: int) -> VotingConfig:
    """The run's voting config as an estimate draws with it: its models' temperatures,
    prompts, cap and give-up counts, a sample cap of `SAMPLES_PER_VOTE` per wanted vote
    (never above the run's), and no escalation (an estimate measures the models it names)."""
    cap = min(voting.max_samples_per_step, max(SAMPLES_PER_VOTE * votes_per_step, voting.k))
    return replace(voting, max_samples_per_step=cap, on_undecided="fail", escalate_to=(), escalate_on_split=False)


def true_step(task: Task, index: int) -> StepInput:
    """Step `index` on the correct trajectory: its premise is what a perfect run would give it
    (a plan step: its inputs filled in from the true values of the steps it names)."""
    own = optional(task, "true_step")  # `Oracle`'s optional member
    if own is not None:
        return own(index)
    if index == 0:
        return task.first_step()
    return task.step_after(index - 1, task.truth(index - 1))  # type: ignore[attr-defined]


def gradable_steps(task: Task) -> list[int]:
    """The steps an estimate may draw on: every step of a chain; of a plan, the steps a model
    answers (never a tool step: a tool is run, not prompted) on a known true premise
    (`OraclePlanTask.gradable_steps`)."""
    gradable = optional(task, "gradable_steps")
    return gradable() if gradable is not None else list(range(task.total_steps))


def pick_steps(total_steps: int, n: int, seed: int, voted: Sequence[int] | None = None) -> list[int]:
    """`n` random step indices without repeats (every step when the task has fewer: a step
    drawn twice would repeat the same seeded draws, two copies of one measurement); only
    from `voted` when given."""
    rng = np.random.default_rng(mix64(seed, _ESTIMATE_SALT))
    if voted is None:
        chosen = rng.choice(total_steps, size=n, replace=False) if n <= total_steps else np.arange(total_steps)
    else:
        pool = np.asarray(voted, dtype=np.int64)
        chosen = pool[rng.choice(len(pool), size=n, replace=False)] if n <= len(pool) else pool
    return sorted(int(i) for i in chosen)


async def estimate_batch(worker: Any, job: EstimateJob) -> Tally:
    """Draw and grade samples on `job.steps` (runs inside a Ray worker; any object with
    `.task` and `.clients` will do).

    Each step is voted by the engine (`maker.engine.step.vote_step`): the run's models in
    turn, prompt variants and style, temperatures, token cap and red-flag policy.  Only the
    stopping rule differs (`Measure`: `votes_per_step` valid votes instead of a margin,
    within `measuring`'s cap), and every sample of the step's rows is graded.
    """
    task = worker.task
    voting = measuring(job.voting, job.votes_per_step)
    rule = Measure(job.votes_per_step, voting)  # one per batch: the batch's steps stop together on a dead model
    salt = (job.seed, _ESTIMATE_SALT)  # never the seeds of a run's draws
    premises = [true_step(task, i) for i in job.steps]
    votes = await gather(*(vote_step(task, worker.clients, step, voting, job.policy, job.models, salt, rule=rule)
                                   for step in premises))
    tally = Tally(steps=len(votes))
    for index, vote in zip(job.steps, votes):
        _grade(tally, vote, task.truth(index), job.votes_per_step)
    return tally


def _grade(tally: Tally, vote: StepVote, truth: str, votes_per_step: int) -> None:
    """Count one step's judged samples (its rows, in sample order) into the tally."""
    right: list[bool] = []  # correctness of each valid vote, in order
    for _, _, _, sample, verdict, _ in vote.rows:
        tally.samples += 1
        if sample.error is not None:
            if tally.first_error is None:
                tally.first_error = sample.error
            tally.flag("transport")
            continue
        tally.answered += 1
        tally.tokens_in += sample.tokens_in
        tally.tokens_out += sample.tokens_out
        tally.requests += sample.tokens_in > 0  # a request with n bills its prompt on its first sample only
        tally.cached_tokens += sample.cached_tokens
        tally.cost_usd += sample.cost_usd
        if verdict.key is None:
            tally.flag(verdict.red_flag or "unknown")
            continue
        ok = verdict.key == truth
        tally.valid += 1
        tally.correct += ok
        right.append(ok)
    if len(right) >= 2:
        tally.steps_with_two += 1
        tally.first_two_wrong += not right[0] and not right[1]
    if len(right) < votes_per_step:
        tally.short_steps += 1


@dataclass(frozen=True)
class EstimateReport:
    """What `maker estimate --json` prints: one `ModelEstimate` per model and the pick."""

    task: str
    steps: int
    target: float
    measured_steps: int  # steps actually drawn and graded (per model)
    votes_per_step: int
    simulated: bool
    models: tuple[ModelEstimate, ...]
    recommended: str | None
    summary: str
    wall_s: float
    asked_steps: int = 0  # steps asked for (--samples)
    picked_steps: int = 0  # steps picked: fewer when the task has fewer voted steps (each is measured once)
    lost: str | None = None  # why fewer steps were graded than picked (a batch that failed)

    @property
    def graded_text(self) -> str:
        """What was graded, as the reports say it: never more than the figures show."""
        text = f"{self.measured_steps:,} steps graded"
        if self.picked_steps and self.measured_steps < self.picked_steps:
            text += f" of {self.picked_steps:,} picked" + (f" ({self.lost})" if self.lost else "")
        if self.picked_steps and self.picked_steps < self.asked_steps:
            text += f" (the task has {self.picked_steps:,} voted steps: --samples {self.asked_steps:,} measures each once)"
        return text

    @property
    def all_failed(self) -> bool:
        return all(m.verdict == "failed" for m in self.models)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "steps": self.steps,
            "target": self.target,
            "measured_steps": self.measured_steps,
            "votes_per_step": self.votes_per_step,
            "asked_steps": self.asked_steps,
            "picked_steps": self.picked_steps,
            "lost": self.lost,
            "simulated": self.simulated,
            "models": [m.to_dict() for m in self.models],
            "recommended": self.recommended,
            "summary": self.summary,
            "wall_s": self.wall_s,
        }


def recommend(estimates: Sequence[ModelEstimate]) -> tuple[str | None, str]:
    """The cheapest *priced* model that meets the target (then fewest samples, then highest
    p), and one sentence that says so -- or says plainly why none can.  A model whose price
    is unknown is never ranked by cost against priced ones: it is named apart, with what to
    pass to price it, and recommended (on samples per step) only when no priced model fits."""
    fit = [e for e in estimates if e.meets_target]
    priced = [e for e in fit if e.price_known]
    unpriced = [e for e in fit if not e.price_known]
    apart = ""
    if unpriced:
        names = ", ".join(e.model for e in unpriced)
        apart = (f"; {names} also meet{'s' if len(unpriced) == 1 else ''} the target at an unknown price "
                 "(pass --price-in/--price-out to compare)")
    if priced:
        best = min(priced, key=lambda e: (e.expected_cost or 0.0, e.expected_samples_per_step or 0.0, -(e.p or 0.0)))
        cost = f"${best.expected_cost:,.2f}" if best.expected_cost else f"$0 ({best.price_source})"
        return best.model, (
            f"use {best.model}: cheapest priced model that meets target {best.target} over {best.steps:,} steps, "
            f"k = {best.k}, {best.expected_samples_per_step:.2f} samples/step, expected {cost}{apart}"
        )
    if unpriced:
        best = min(unpriced, key=lambda e: (e.expected_samples_per_step or 0.0, -(e.p or 0.0)))
        return best.model, (
            f"use {best.model}: meets target {best.target} over {best.steps:,} steps, k = {best.k}, "
            f"{best.expected_samples_per_step:.2f} samples/step, expected cost unknown (no known price: pass "
            "--price-in/--price-out); no priced model meets the target"
        )
    reasons = "; ".join(f"{e.model}: {e.reason}" for e in estimates)
    return None, f"no model can reach target {estimates[0].target} over {estimates[0].steps:,} steps -- {reasons}"


def estimate(
    task: Task,
    models: Sequence[ModelSpec | str],
    *,
    samples: int = 200,
    target: float = 0.95,
    steps: int | None = None,
    voting: VotingConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    cluster: ClusterConfig | None = None,
    votes_per_step: int = 2,
    batch_steps: int = 64,
    price_in: float | None = None,
    price_out: float | None = None,
    level: float = 0.95,
    mix: bool = False,
    progress: TextIO | None = None,
) -> EstimateReport:
    """Estimate p for each model on `samples` random steps; plan k for `steps` (default:
    the task's step count) at `target`.  With `mix=True` the models are measured together,
    mixed within each step as a run mixes them (what `maker run --k auto` plans with).
    Samples are drawn as a run with `voting` and `policy` would draw them.  With a
    `progress` stream, one line per finished batch goes there (the CLI: stderr).

    Raises UsageError on bad input and ModelConfigError for an unusable model, before any
    sample is drawn.  A model whose every call fails is reported with verdict `failed`.
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"--samples must be an integer >= 1, got {samples!r}")
    if not isinstance(votes_per_step, int) or votes_per_step < 2:
        raise UsageError(f"--votes-per-step must be >= 2 (collisions need two votes), got {votes_per_step!r}")
    if batch_steps < 1:
        raise UsageError("--batch-steps must be >= 1")
    target = check_target(target)
    if not isinstance(task, Oracle):
        raise UsageError(f"task {task.spec.name!r} has no ground truth: estimate needs it to grade samples")
    gradable = gradable_steps(task)
    if not gradable:
        raise UsageError(f"task {task.spec.name!r} has no step a model answers on a known premise: nothing to grade")
    voted = optional(task, "voted_steps")
    steps = check_steps((len(voted()) if voted else task.total_steps) if steps is None else steps)  # k is planned for the voted steps
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    if not specs:
        raise UsageError("at least one --model is needed")
    for spec in specs:
        check_spec(spec)
    voting = voting or VotingConfig()
    warn_unsent_settings(specs, voting.first_temperature, voting.temperature,
                         tuple(optional(task, "stop") or ()))  # before the first call
    policy = policy or RedFlagPolicy()
    cluster = cluster or ClusterConfig()
    arms = [tuple(s.model for s in specs)] if mix else [(s.model,) for s in specs]
    indices = sorted(gradable[j] for j in pick_steps(len(gradable), samples, seed))
    batches = [tuple(indices[i : i + batch_steps]) for i in range(0, len(indices), batch_steps)]
    started = time.perf_counter()
    tallies = _run_batches(task, specs, arms, batches, voting, policy, seed, votes_per_step, cluster, progress)
    estimates = []
    spec_of = {s.model: s for s in specs}
    for arm, (tally, error) in zip(arms, tallies):
        name = " + ".join(arm)
        if error is not None and tally.first_error is None:
            tally.first_error = error
        price = _price(spec_of[arm[0]], price_in, price_out) if len(arm) == 1 else _mixed_price(
            [spec_of[m] for m in arm], price_in, price_out)
        estimates.append(
            assess(
                name,
                tally,
                steps=steps,
                target=target,
                price=price,
                level=level,
                simulated=any(spec_of[m].is_simulated for m in arm),  # sim-server and script: too; a mix is simulated
                shares_prompt=len(arm) == 1 and shares_prompt(arm[0], spec_of[arm[0]].api_base, "auto", cluster.speculate),
            )
        )
    recommended, summary = recommend(estimates)
    graded = min((t.steps for t, _ in tallies), default=0)  # per model: one that lost a batch graded fewer
    lost = next((e for _, e in tallies if e), None)
    return EstimateReport(
        task=task.spec.describe(),
        steps=steps,
        target=target,
        measured_steps=graded,
        asked_steps=samples,
        picked_steps=len(indices),
        lost=lost if graded < len(indices) else None,
        votes_per_step=votes_per_step,
        simulated=any(s.is_simulated for s in specs),
        models=tuple(estimates),
        recommended=recommended,
        summary=summary,
        wall_s=round(time.perf_counter() - started, 3),
    )


def _price(spec: ModelSpec, price_in: float | None, price_out: float | None) -> Price:
    """`price_in`/`price_out` (every model) when given, else the spec's own (`ModelSpec.unit_price`)."""
    if price_in is not None or price_out is not None:
        return price_of(spec.model, price_in, price_out)
    return spec.unit_price()


def _mixed_price(specs: list[ModelSpec], price_in: float | None, price_out: float | None) -> Price:
    prices = [_price(s, price_in, price_out) for s in specs]
    n = len(prices)
    return Price(
        sum(p.input_per_m for p in prices) / n,
        sum(p.output_per_m for p in prices) / n,
        "mean of " + "; ".join(sorted({p.source for p in prices})),
        sum(p.cached_per_m for p in prices) / n,
        known=all(p.known for p in prices),
    )


def _run_batches(
    task: Task,
    specs: list[ModelSpec],
    arms: list[tuple[str, ...]],
    batches: list[tuple[int, ...]],
    voting: VotingConfig,
    policy: RedFlagPolicy,
    seed: int,
    votes_per_step: int,
    cluster: ClusterConfig,
    progress: TextIO | None = None,
) -> list[tuple[Tally, str | None]]:
    """Every (arm, batch) job at once on the pool; one merged tally (and error) per arm."""
    import ray

    pool = WorkerPool(task, specs, workers=cluster.workers, address=cluster.address)
    try:
        refs = []
        for arm in arms:
            refs.append(
                [
                    pool.submit(
                        estimate_batch,
                        EstimateJob(b, arm, voting, policy, seed, votes_per_step),
                    )
                    for b in batches
                ]
            )
        out = []
        total, done, drawn, started = sum(len(r) for r in refs), 0, 0, time.perf_counter()
        for arm, arm_refs in zip(arms, refs):
            tally, error = Tally(), None
            for ref in arm_refs:
                try:
                    part = pool.get(ref)
                    tally.merge(part)
                    drawn += part.samples
                except (ray.exceptions.RayError, MakerError) as exc:  # a worker died or raised: this batch is lost
                    error = error or one_line(getattr(exc, "cause", None) or exc, typed=True)
                done += 1
                if progress is not None:
                    print(f"maker: estimate {done}/{total} batches ({' + '.join(arm)}), {drawn:,} samples, "
                          f"{time.perf_counter() - started:.1f}s", file=progress, flush=True)
            out.append((tally, error))
        return out
    finally:
        pool.close()



def estimate_for_run(
    task: Task,
    models: Sequence[ModelSpec | str],
    target: float,
    *,
    samples: int = 200,
    voting: VotingConfig | None = None,
    policy: RedFlagPolicy | None = None,
    seed: int = 0,
    cluster: ClusterConfig | None = None,
    progress: TextIO | None = None,
) -> tuple[int, EstimateReport]:
    """The margin `maker run --k auto` uses when no --p is given: estimate p of the run's
    own model mix on `samples` steps, drawn as the run draws (`voting`'s prompt variants and
    style, temperatures and token cap; the run's red-flag `policy`), and plan k on the
    pessimistic end.

    Raises ModelConfigError when every call failed, UsageError when the models cannot
    reach the target (nothing is run then).
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"--estimate-samples must be an integer >= 1, got {samples!r}")
    report = estimate(task, models, samples=samples, target=target, voting=voting, policy=policy, seed=seed,
                      cluster=cluster, mix=True, progress=progress)
    (est,) = report.models
    if est.verdict == "failed":
        raise ModelConfigError(f"--k auto: could not estimate p: {est.reason}", model=est.model)
    if est.k is None or est.verdict != "ok":
        raise UsageError(
            f"--k auto: the estimate says {est.model} cannot reach target {target}: {est.reason}; "
            "nothing was run (pass --k to run anyway)"
        )
    return est.k, report


def print_auto_k(report: EstimateReport, stream: TextIO = sys.stderr) -> None:
    """The two lines `maker run --k auto` prints before running: the estimate and the k."""
    (e,) = report.models
    label = " [simulated]" if report.simulated else ""
    flags = ", ".join(f"{r} {n}" for r, n in e.red_flags.items()) or "no red flags"
    print(
        f"maker: estimated p = {e.p:.4f} (95% CI [{e.p_low:.4f}, {e.p_high:.4f}]) for {e.model} on "
        f"{report.graded_text} (random, on their true premises), valid rate {e.valid_rate:.3f} ({flags}){label}",
        file=stream,
    )
    print(
        f"maker: k = {e.k} (planned on p = {e.p_low:.4f}, the interval's low end; {e.steps:,} steps, target "
        f"{e.target}: whole-run success >= {e.run_success:.4f}, {e.expected_samples_per_step:.3f} samples/step)",
        file=stream,
    )
