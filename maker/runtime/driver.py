"""The runner: drive any task to the end through Ray workers, voting every step.

One driver, two schedulers.  `run` validates, checks the settings before anything is
spent (`maker.runtime.preflight`), opens the log (or resumes it), starts the Ray pool and
the live guard, counts faults and red flags, and builds the `RunResult`; the task's shape
picks the scheduler: a plan task (`maker.tasks.plans.plan_task.PlanTask`) goes to the DAG
dispatcher (`maker.runtime.dag`), anything else to the segment loop below.

The driver owns the truth.  It hands a worker a segment (a starting premise and a step
budget; see `maker.runtime.chain.loop`), and while the worker votes the next segment it re-decides
every step of the last one from the returned votes, counts errors, appends everything
to the step log, and updates the progress line.  The next segment starts from the
premise the last one ended on; should a re-check ever disagree with the worker, that
speculative segment is thrown away and redone from the driver's own state.

Example (simulated model, no network):
    >>> from maker.tasks import get_task
    >>> result = run(get_task("hanoi", disks=4), ["sim:0.99"], VotingConfig(k=2))  # doctest: +SKIP
    >>> result.solved, result.errors                                             # doctest: +SKIP
    (True, 0)
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from maker.budget.breakdown import CostBreakdown
from maker.budget.spend import Budget, billed_columns, budget_line, check_cap, refuse_unpriced, resolve_prices
from maker.cluster import ModelSpec, WorkerPool, check_spec
from maker.cluster.clients import warn_unsent_settings
from maker.cluster.pricing import Price
from maker.cluster.worker import stopped_in_worker
from maker.config import ClusterConfig, DagConfig, GuardConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.engine.rows import merge_events
from maker.engine.step import recount
from maker.errors import MakerError, StepLogError, UsageError
from maker.log.identity import code_change, code_fingerprint, resume_refusal
from maker.log.steplog import LogInfo, StepLogWriter, last_decision, open_log, read_table
from maker.runtime.chain.draft import (
    DRAFT_DEPTH,
    Draft,
    DraftTally,
    check_draft,
    draft_event,
    in_order_seconds,
    parse_draft,
)
from maker.runtime.chain.schedule import SegmentSchedule, as_wasted
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.runtime.chain.speculation import speculation_depth
from maker.runtime.guard import Guard, log_events
from maker.runtime.local_models import has_local, local_models, refuse_local_tiers
from maker.runtime.preflight import check_run
from maker.runtime.progress import Progress, cost_text
from maker.runtime.state import RunState
from maker.tasks.base import Oracle, StepInput, Task, optional
from maker.version import __version__


@dataclass
class RunResult:
    """What a run did; `maker run --json` prints exactly this."""

    task: str
    steps: int
    total_steps: int
    solved: bool
    #: wrong decisions against ground truth; None when the task has none (unknown, never 0)
    errors: int | None
    first_error_step: int | None
    #: samples counted: votes and red flags of the steps decided; the wasted speculative
    #: samples (drawn and paid for, on a premise that lost) are `extra["wasted_samples"]`
    samples: int
    red_flags: int
    red_flags_by_reason: dict[str, int]
    k: int
    models: list[str]
    simulated: bool
    wall_s: float
    cost_usd: float
    samples_per_step: float
    log: str | None
    resumed_from_step: int = 0
    status: str = "ok"
    #: failed model calls behind the samples, by kind (retried ones included): what the
    #: endpoint did to the run, e.g. {"rate_limited": 12, "timeout": 3}
    faults_by_kind: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: billed (estimated) for calls maker gave up on that the provider may still have served
    #: (timeouts, cancelled speculative requests), at their prompt cost; not in `cost_usd`
    abandoned_usd: float = 0.0
    #: the spend cap when one was set: {"cap_usd", "spent_usd" (cost_usd + abandoned_usd,
    #: the whole log's when resumed), "reached", "line" (the stop line, when reached)}
    budget: dict[str, Any] | None = None
    #: each model's price and its source ({"input_per_m", "cached_input_per_m", "output_per_m",
    #: "source", "known"}); `known` False: maker does not know what it costs
    prices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The fields above, plus `cost`: `cost_usd` as a label that says when a real model's
        $0 means "free, or no price known" (see `maker.runtime.progress.cost_text`)."""
        unknown = any(not p.get("known", True) for p in self.prices.values())
        return {**asdict(self), "cost": cost_text(self.cost_usd, simulated=self.simulated, steps=self.steps, unknown=unknown)}


def price_dict(price: Price) -> dict[str, Any]:
    """A `Price` as `--json` shows it: rates per million tokens, its source, and whether it is known."""
    return {"input_per_m": price.input_per_m, "cached_input_per_m": price.cached_input_per_m,
            "output_per_m": price.output_per_m, "source": price.source, "known": price.known}


def simulated(specs: Sequence[ModelSpec]) -> bool:
    """Whether any model is a fake (the simulator `sim:P`, `maker sim-server`, a script
    `script:NAME`): then the results are labelled simulated.  *Any*, not every: a run that
    mixes a fake with a real model (an escalation tier, a second --model) holds simulated
    decisions, and a label "real" would overclaim."""
    return any(s.is_simulated for s in specs)


def run_metadata(task: Task, specs: Sequence[ModelSpec], voting: VotingConfig, seed: int) -> dict[str, Any]:
    """The run's identity, stored in every log part and checked on --resume."""
    import pyarrow

    return {
        "task": task.spec.name,
        "task_options": task.spec.options,
        "task_origin": optional(task, "maker_origin"),  # built-in, plugin DIST VERSION, module M, file F
        "task_code": code_fingerprint(task),  # the defining file's hash: a resume with other code is refused
        "total_steps": task.total_steps,
        "models": [s.model for s in specs],
        "voting": json.loads(json.dumps(asdict(voting))),  # as the log stores it (tiers: lists), so a resume compares alike
        "seed": seed,
        "maker_version": __version__,
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "simulated": simulated([*specs, *(ModelSpec(m) for m in voting.escalation_models)]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _check_resumable(previous: dict[str, Any], current: dict[str, Any], allow_code_change: bool = False) -> None:
    """UsageError naming every setting a resume changes (see `maker.log.identity`)."""
    refusal = resume_refusal(previous, current, allow_code_change)
    if refusal is not None:
        raise UsageError(refusal)


def _never_written(log: Path) -> bool:
    """A log folder that a run created and was killed in before its first part was in place:
    empty, or holding only that run's own temporary files."""
    return log.is_dir() and all(p.name == ".write-test" or p.name.startswith(".part-") for p in log.iterdir())


def plan_decisions(info: LogInfo) -> tuple[dict[int, str], dict[int, bool | None]]:
    """A resumed plan's decided steps (voted and tool steps): step -> answer, step -> `correct`."""
    table = read_table(info, ["step", "answer", "correct"], kind="decision")
    steps = table["step"].to_pylist()
    return dict(zip(steps, table["answer"].to_pylist())), dict(zip(steps, table["correct"].to_pylist()))


def _check_segment(result: SegmentResult, start: StepInput, k: int) -> str | None:
    """The driver's guard against a bad segment: consecutive steps from `start`, each
    decided by its own votes (`maker.engine.step.recount`)."""
    for expected, index in enumerate(result.decisions["step"], start.index):
        if index != expected:
            return f"segment decided step {index}, expected {expected}"
    return recount(result.samples, result.decisions, k, result.events)


def priced_models(
    models: Sequence[ModelSpec | str], voting: VotingConfig, max_cost_usd: float | None,
    prices: Mapping[str, Price] | None,
) -> tuple[list[ModelSpec], list[ModelSpec], float | None, dict[str, Price]]:
    """A job's models made ready, as `run` and `maker.mapping.scheduler.run_map` both need them:
    (specs, escalation tiers' specs -- every worker holds every tier's client --, the spend
    cap, {model: Price}), each spec checked and priced (`prices`, `ModelSpec.price` or
    litellm's table: workers bill at these).  Raises UsageError for no model or a cap on a
    model with no known price (a cap that cannot be enforced must not look enforced),
    ModelConfigError for an unusable model."""
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    if not specs:
        raise UsageError("at least one --model is needed")
    named = {s.model for s in specs}
    tier_specs = [ModelSpec(m) for m in voting.escalation_models if m not in named]
    for spec in (*specs, *tier_specs):
        check_spec(spec)
    cap = check_cap(max_cost_usd)
    priced = resolve_prices([*specs, *tier_specs], prices)
    refuse_unpriced(cap, priced)
    specs = [replace(s, price=priced[s.model]) if s.client is None else s for s in specs]
    tier_specs = [replace(s, price=priced[s.model]) for s in tier_specs]
    return specs, tier_specs, cap, priced


def base_metadata(task: Any, specs: Sequence[ModelSpec], voting: VotingConfig, seed: int, policy: RedFlagPolicy,
                  prices: Mapping[str, Price]) -> dict[str, Any]:
    """The step log's run metadata every job shares: `run_metadata`, the red-flag policy, and
    where each cost figure came from (tune and report read it)."""
    meta = run_metadata(task, specs, voting, seed)
    meta["red_flags"] = policy.to_metadata()
    meta["prices"] = {m: price_dict(p) for m, p in prices.items()}
    return meta


def run(
    task: Task,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    log: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    cluster: ClusterConfig | None = None,
    policy: RedFlagPolicy | None = None,
    progress: Progress | None = None,
    max_steps: int | None = None,
    guard: GuardConfig | None = None,
    dag: Any = None,
    extra_meta: dict[str, Any] | None = None,
    max_cost_usd: float | None = None,
    spent_before_usd: float = 0.0,
    prices: Mapping[str, Price] | None = None,
    allow_code_change: bool = False,
    draft: Any = None,
) -> RunResult:
    """Run `task` to the end (or `max_steps`), voting every step; return what happened.

    Chained tasks run segment by segment (`cluster.speculate`, `cluster.draft` and
    `max_steps` apply); plan tasks run on the DAG dispatcher (`dag`: a
    `maker.runtime.dag.DagConfig`).  A setting the task's shape cannot serve is refused.
    `extra_meta` adds entries to the log's run metadata.  A `resume` whose task code differs
    from the log's is refused unless `allow_code_change` (the change is then logged as a
    ``code_change`` event row).  `draft`: what proposes premises ahead of the votes (the same
    values as `ClusterConfig.draft`, which it replaces; give it in one place): "reference", a
    model string or `ModelSpec`, a function (task, step) -> reply text, or
    "py:pkg.module:fn" -- see `maker.runtime.chain.draft`.

    A ``local`` / ``local:PATH.gguf`` model is served for the run by this process's shared
    servers (`maker.runtime.local_models`: started on first use, reused by later calls,
    stopped at exit; with a multi-node `cluster.address`, on each worker's node), its
    workers reaching them on 127.0.0.1; a server that dies beyond its restarts interrupts
    the run with LocalServerError (the log holds every decided step).

    `max_cost_usd` caps what the run is billed, in flight included (`maker.budget.spend`):
    no round is sent whose worst case would cross it; the run then stops cleanly with
    `status` "budget_reached" and `budget["line"]` saying so (the log stays resumable, and
    a resumed run counts what its log already spent).  `spent_before_usd` is spent already
    (an estimate drawn for this run).  Every model's price must be known for a cap:
    `prices` ({model: Price}, escalation tiers included), `ModelSpec.price`, or litellm's
    table (`ModelSpec.unit_price`).

    Raises UsageError for bad input (nothing written), ModelConfigError when a model
    cannot be used (before anything is spent), VoteCapError (or another give-up error)
    when a step stops undecided (the log holds everything up to and including that
    step's samples).
    """
    from maker.tasks.plans.plan_task import PlanTask

    voting = voting or VotingConfig()
    voting = replace(voting, prompt_style=voting.style_for(task))  # explicit in the log's metadata
    cluster = cluster or ClusterConfig()
    if draft is not None and draft is not False:
        if cluster.draft not in (None, False) and cluster.draft != draft:
            raise UsageError("give the draft once: as run(draft=...) or as ClusterConfig.draft, not both")
        cluster = replace(cluster, draft=draft)
    policy = policy or RedFlagPolicy()
    guard = guard or GuardConfig()
    given = prices
    specs, tier_specs, cap, prices = priced_models(models, voting, max_cost_usd, given)
    for flag, value in (("--workers", cluster.workers), ("--segment-steps", cluster.segment_steps)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1, got {value}")
    is_plan = isinstance(task, PlanTask)
    proposer = parse_draft(cluster.draft, None)
    if is_plan:
        segments = cluster.segment_steps != ClusterConfig.segment_steps or cluster.segment_seconds != ClusterConfig.segment_seconds
        for flag, value in (("--speculate", cluster.speculate), ("--draft", proposer), ("--max-steps", max_steps),
                            ("--segment-steps", segments)):
            if value:
                raise UsageError(f"{flag} applies to chained tasks; {task.spec.name} is a plan (a DAG of steps)")
    elif dag is not None:
        raise UsageError(f"dispatch settings apply to plan tasks; {task.spec.name} is a chain")
    if max_steps is not None and max_steps < 1:
        raise UsageError("--max-steps must be >= 1")
    speculate = 0 if is_plan else speculation_depth(cluster.speculate, specs)
    draft_specs = check_draft(proposer, task, cluster.speculate, specs, tier_specs)
    charged = prices  # what the cap charges: the voters', and a draft model's (its spend counts like a vote's)
    if proposer is not None and proposer.kind == "model" and proposer.spec.model not in prices:
        draft_price = resolve_prices([proposer.spec], given)
        refuse_unpriced(cap, draft_price)
        charged = {**prices, **draft_price}
        # the worker's draft client takes its price from here, as the voters' do (no lookup, no litellm import there)
        draft_specs = [replace(s, price=draft_price[s.model]) if s.client is None and s.model in draft_price else s
                       for s in draft_specs]
    if proposer is not None and cluster.speculate is None and (speculate or proposer.kind != "reference"):
        speculate = DRAFT_DEPTH  # a reference draft on instant simulators drafts segments only, as before
    check_run(task, policy, voting, specs, guard)  # red flags, variants, k ceiling: before anything is spent
    refuse_local_tiers(voting.escalation_models)
    local_draft = proposer is not None and proposer.kind == "model" and has_local([proposer.spec])
    if has_local(specs) or local_draft:  # the embedded model: served for the run (shared by its workers), then run as any model
        wanted = [*specs, proposer.spec] if local_draft else specs
        with local_models(wanted, address=cluster.address, workers=cluster.workers) as served:
            if local_draft:  # the draft reaches the same servers as a model of its own
                cluster = replace(cluster, draft=served[-1])
            return run(task, served[: len(specs)], voting, log=log, resume=resume, seed=seed, cluster=cluster,
                       policy=policy, progress=progress, max_steps=max_steps, guard=guard, dag=dag,
                       extra_meta=extra_meta, allow_code_change=allow_code_change, max_cost_usd=max_cost_usd,
                       spent_before_usd=spent_before_usd, prices=given)
    warn_unsent_settings((*specs, *tier_specs), voting.first_temperature, voting.temperature,
                         tuple(optional(task, "stop") or ()))  # before the first call
    meta = base_metadata(task, specs, voting, seed, policy, prices)
    if is_plan:
        from maker.runtime.dag import plan_metadata

        dag = dag or DagConfig()
        meta["dag"] = plan_metadata(task, dag)
    meta.update(extra_meta or {})
    progress = progress or Progress(task.total_steps, enabled=False)
    resumed_events: list = []
    changed_code: str | None = None
    info: LogInfo | None = None
    writer = None
    if log is not None:
        log = Path(log)
        if resume:
            if not log.exists():
                raise UsageError(f"{log} does not exist: nothing to resume")
            if not _never_written(log):  # killed before its first part: nothing to resume from, start over
                info = open_log(log)
                _check_resumable(info.run, meta, allow_code_change)
                changed_code = code_change(info.run, meta)
                resumed_events = [detail for _, detail in log_events(info)]
        writer = StepLogWriter(log, meta, resume=resume)
    elif resume:
        raise UsageError("--resume needs --log")
    model_names = tuple(s.model for s in specs)
    if is_plan:
        values, correct = plan_decisions(info) if info is not None else ({}, {})
        first, last_index = 0, task.total_steps - 1
    else:
        last = last_decision(info) if info is not None else None
        start = task.first_step() if last is None else task.step_after(last[0], last[1])
        first = start.index
        last_index = task.total_steps - 1 if max_steps is None else min(task.total_steps, first + max_steps) - 1
    if changed_code and writer is not None:  # resumed on other code, as asked: the log says so, from where
        detail = {"event": "code_change", "from_step": first, "message": changed_code,
                  "log": (info.run if info is not None else {}).get("task_code"), "now": meta["task_code"]}
        writer.append({}, {}, {"step": [first], "detail": [json.dumps(detail, sort_keys=True)]})
    live = Guard(guard, k=voting.k, first_step=first, last_step=last_index,
                 stream=progress.stream if progress.enabled else None)  # quiet: events and --json only
    live.restore(resumed_events, info)  # a resumed run goes on at its logged k, with its logged vote counts
    state = RunState(task, voting, policy, model_names, seed, writer, progress, live)
    state.breakdown = CostBreakdown(frozenset(s.model for s in tier_specs))
    if info is not None:
        state.count_log(info)
        state.escalations = sum(d.get("event") == "escalation" for d in resumed_events)  # what the log already holds
        state.plurality_decisions = sum(d.get("event") == "plurality" for d in resumed_events)
    if cap is not None:  # what the log already spent counts against the new cap
        state.budget = Budget(cap, charged, spent_usd=state.breakdown.total_usd + spent_before_usd)
    totals, reasons, faults = state.totals, state.reasons, state.faults
    progress.start_at(totals.steps)
    started = time.perf_counter()
    status = "ok"
    pool = None
    extra: dict[str, Any] = {}
    try:
        pool = WorkerPool(task, [*specs, *tier_specs, *draft_specs], workers=cluster.workers, address=cluster.address)
        if is_plan:
            from maker.runtime.dag import run_dag

            solved, extra = run_dag(pool, state, dag, cluster.workers, values, correct)
            resumed_from = len(values)
        else:
            solved, extra = _run_chain(pool, state, cluster, start, last_index, speculate, specs, proposer, resumed_events)
            resumed_from = first
        extra["node_ids"] = pool.node_ids()
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if pool is not None:
            extra["workers_replaced"] = pool.replaced
            pool.close()
        progress.finish(totals)
    extra["guard"] = live.to_dict()
    extra["escalations"] = state.escalations
    extra["plurality_decisions"] = state.plurality_decisions
    extra["reasoning_tokens"] = state.reasoning_tokens  # hidden reasoning among the output tokens (billed as output)
    extra["cost_breakdown"] = state.breakdown.to_dict()
    budget = None
    if state.budget is not None:
        budget = state.budget.to_dict()
        budget["spent_usd"] = round(state.breakdown.total_usd + spent_before_usd, 6)
        budget["reached"] = state.budget_stop
        if state.budget_stop:
            status = "budget_reached"
            budget["line"] = budget_line(budget["spent_usd"], cap, totals.steps, task.total_steps)  # type: ignore[arg-type]
            if writer is not None:  # an event row: `maker report` shows where the run stopped, and why
                detail = {"event": "budget_reached", "cap_usd": cap, "spent_usd": budget["spent_usd"], "line": budget["line"]}
                writer.append({}, {}, {"step": [totals.steps], "detail": [json.dumps(detail)]})
    return RunResult(
        task=task.describe() if is_plan else task.spec.describe(), steps=totals.steps, total_steps=task.total_steps,
        solved=bool(solved), errors=totals.errors if isinstance(task, Oracle) else None, first_error_step=state.first_error, samples=totals.samples,
        red_flags=totals.red_flags, red_flags_by_reason=reasons, k=voting.k, models=list(model_names),
        simulated=simulated([*specs, *tier_specs, *draft_specs]), wall_s=round(time.perf_counter() - started, 3), cost_usd=round(totals.cost_usd, 6),
        samples_per_step=round(totals.samples / totals.steps, 4) if totals.steps else 0.0,
        log=str(log) if log is not None else None, resumed_from_step=resumed_from, status=status,
        faults_by_kind=faults, extra=extra, abandoned_usd=round(state.breakdown.abandoned_usd, 6), budget=budget,
        prices={m: price_dict(p) for m, p in charged.items()},
    )


def _run_chain(
    pool: WorkerPool, state: RunState, cluster: ClusterConfig, start: StepInput, last_index: int, speculate: int,
    specs: Sequence[ModelSpec], draft: Draft | None = None, resumed_events: Sequence[dict[str, Any]] = (),
) -> tuple[bool, dict[str, Any]]:
    """The segment loop: hand workers segments of consecutive steps, check and log each."""
    task, live, writer = state.task, state.live, state.writer
    reference = draft is not None and draft.kind == "reference"
    if draft is not None:  # the draft's record goes on from what a resumed log holds
        state.draft = state.draft or DraftTally()
        state.draft.model = draft.label
        for detail in resumed_events:
            if detail.get("event") == "draft":
                state.draft.elapsed_s += float(detail.get("elapsed_s") or 0.0)
                state.draft.in_order_s += float(detail.get("in_order_s") or 0.0)
    depth = [0]  # the adaptive depth the last drafted segment ended at
    voting_s = 0.0  # seconds the workers spent voting the segments kept (Ray and start-up not included)
    in_flight = tuple((s.model, s.concurrency) for s in (*specs, *(ModelSpec(m) for m in state.voting.escalation_models)))

    budget = state.budget

    def job(at: StepInput) -> SegmentJob:
        return SegmentJob(
            at, cluster.segment_steps, cluster.segment_seconds, live.voting_for(state.voting, at.index), state.policy,
            state.model_names, state.seed, last_index, speculate, in_flight, draft if speculate else None,
            depth[0], budget.share() if budget is not None else None,
        )

    def charge(result: SegmentResult) -> None:  # before the next segment's share is handed out
        if budget is not None:
            budget.charge(billed_columns(result.samples) + (billed_columns(result.drafts) if result.drafts else 0.0))

    current = start
    schedule = None
    if start.index <= last_index:
        # Under a cap one segment is in flight at a time, holding all that is left of it.
        ahead = cluster.workers if reference and budget is None else 1
        schedule = SegmentSchedule(pool, task, job, last_index, ahead, reference, charge)
        schedule.start(current)
        while (step := schedule.next()) is not None:
            result, ran, thrown_away = step
            for lost in thrown_away:  # drafted segments whose premise lost: paid for, never counted
                wasted_samples = as_wasted(lost.samples)
                wasted_drafts = as_wasted(lost.drafts) if lost.drafts else None
                if writer is not None:
                    writer.append(wasted_samples, {}, drafts=wasted_drafts)
                state.count(wasted_samples, {}, drafts=wasted_drafts)
            voted = ran.voting  # the k this segment ran with (the guard may raise it)
            problem = _check_segment(result, current, voted.k)
            if problem is not None:
                raise MakerError(f"worker segment rejected: {problem}")
            state.count(result.samples, result.decisions, events=result.events, drafts=result.drafts)
            voting_s += result.elapsed_s
            events = merge_events(live.drain(), result.events)
            if result.drafts is not None and state.draft is not None:
                depth[0] = result.draft_depth
                in_order = in_order_seconds(result.samples, result.decisions, voted.k)
                state.draft.elapsed_s += result.elapsed_s
                state.draft.in_order_s += in_order
                events = merge_events(events, draft_event(result, in_order, current.index))
            if writer is not None:
                writer.append(result.samples, result.decisions, events, drafts=result.drafts)
            current = result.end
            if result.failed_step is not None:  # every sample discarded, or the vote cap
                raise step_failure(result.samples, result.failed_step, voted)
            if result.error is not None:  # the task's code raised: the steps decided before it are logged
                raise stopped_in_worker(result.error)
            if result.budget_stop:  # the next round would cross the cap: stop cleanly, the log resumable
                state.budget_stop = True
                break
    solved = task.is_solved(current) and current.index == task.total_steps
    return solved, {
        "speculate": speculate,
        "draft": None if draft is None else draft.label,
        # seconds the workers spent voting this leg's segments (wall time without Ray's start-up; with
        # drafted segments on several workers they overlap, so it can exceed the wall time)
        "voting_s": round(voting_s, 3),
        # the draft's record: proposals, acceptance, its cost (in cost_usd too), the estimated speed-up
        "draft_stats": None if state.draft is None else state.draft.to_dict(),
        # segments started on a drafted premise, and how many of those lost
        "drafted_segments": [schedule.drafted, schedule.discarded] if schedule else [0, 0],
        "wasted_samples": state.wasted,
    }


__all__ = ["ClusterConfig", "RunResult", "RunState", "StepLogError", "run", "run_metadata", "simulated"]
