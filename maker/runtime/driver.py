"""The runner: drive a chained task to the end through Ray workers, voting every step.

The driver owns the truth.  It hands a worker a segment (a starting premise and a step
budget; see `maker.runtime.chain`), and while the worker votes the next segment it re-decides
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

import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from maker import __version__
from maker.cluster import ModelSpec, WorkerPool, check_spec
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.errors import MakerError, StepLogError, UsageError
from maker.log.steplog import StepLogWriter, count_faults, iter_tables, last_decision, open_log
from maker.runtime.chain import SegmentJob, SegmentResult
from maker.runtime.guard import Guard, GuardConfig, log_events
from maker.runtime.preflight import check_run
from maker.runtime.progress import Progress, Totals
from maker.runtime.schedule import SegmentSchedule, as_wasted
from maker.runtime.speculation import speculation_depth
from maker.tasks.base import Oracle, StepInput, Task
from maker.voting import Ballot


@dataclass(frozen=True)
class ClusterConfig:
    """Where the work runs: a local Ray instance by default, or `address`."""

    workers: int = 1
    address: str | None = None
    segment_steps: int = 2048
    segment_seconds: float = 2.0
    #: steps voted ahead on the premise the current leader implies; None: automatic
    #: (8, or 0 when every model is a zero-latency simulator) -- see maker.runtime.speculation
    speculate: int | None = None
    #: fill the speculative window from the task's reference answers before any reply is
    #: in (tasks with ground truth only; decisions unchanged) -- see maker.runtime.speculation
    draft: bool = False


@dataclass
class RunResult:
    """What a run did; `maker run --json` prints exactly this."""

    task: str
    steps: int
    total_steps: int
    solved: bool
    errors: int
    first_error_step: int | None
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_specs(models: Sequence[ModelSpec | str]) -> list[ModelSpec]:
    specs = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]
    if not specs:
        raise UsageError("at least one --model is needed")
    return specs


def run_metadata(task: Task, specs: Sequence[ModelSpec], voting: VotingConfig, seed: int) -> dict[str, Any]:
    """The run's identity, stored in every log part and checked on --resume."""
    import pyarrow

    return {
        "task": task.spec.name,
        "task_options": task.spec.options,
        "total_steps": task.total_steps,
        "models": [s.model for s in specs],
        "voting": asdict(voting),
        "seed": seed,
        "maker_version": __version__,
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "simulated": all(s.is_simulated for s in specs),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _check_resumable(previous: dict[str, Any], current: dict[str, Any]) -> None:
    for key in ("task", "task_options", "models", "seed"):
        if previous.get(key) != current.get(key):
            raise UsageError(
                f"cannot resume: the log was written with {key}={previous.get(key)!r}, this run has {current.get(key)!r}"
            )
    if previous["voting"].get("k") != current["voting"].get("k"):
        raise UsageError(f"cannot resume: the log used k={previous['voting'].get('k')}, this run asks for k={current['voting']['k']}")


def _never_written(log: Path) -> bool:
    """A log folder that a run created and was killed in before its first part was in place:
    empty, or holding only that run's own temporary files."""
    return log.is_dir() and all(p.name == ".write-test" or p.name.startswith(".part-") for p in log.iterdir())


def _resume_point(task: Task, log: Path, reasons: dict[str, int], faults: dict[str, int]) -> tuple[StepInput, Totals]:
    """Where a resumed run starts, and the totals (and counts by kind) its log already holds."""
    info = open_log(log)
    last = last_decision(info)
    totals = Totals()
    for table in iter_tables(info, ["red_flag", "cost_usd", "correct", "wasted", "faults"]):
        kinds = table["kind"].to_pylist()
        flags = table["red_flag"].to_pylist()
        costs = table["cost_usd"].to_pylist()
        correct = table["correct"].to_pylist()
        lost = table["wasted"].to_pylist()
        count_faults(table["faults"].to_pylist(), faults)
        for kind, flag, cost, ok, was_wasted in zip(kinds, flags, costs, correct, lost):
            if kind == "sample" and was_wasted:
                totals.cost_usd += cost or 0.0
            elif kind == "sample":
                totals.samples += 1
                totals.red_flags += flag is not None
                if flag is not None:
                    reasons[flag] = reasons.get(flag, 0) + 1
                totals.cost_usd += cost or 0.0
            elif kind == "decision":
                totals.steps += 1
                totals.errors += ok is False
    if last is None:
        return task.first_step(), totals
    return task.step_after(last[0], last[1]), totals


class _Checker:
    """Re-decides a segment's steps from its votes; the driver's guard against bad segments."""

    def __init__(self, k: int) -> None:
        self.k = k

    def check(self, result: SegmentResult, start: StepInput) -> str | None:
        samples = result.samples
        decisions = result.decisions
        winners = dict(zip(decisions["step"], decisions["answer"]))
        expected = start.index
        for index in decisions["step"]:
            if index != expected:
                return f"segment decided step {index}, expected {expected}"
            expected += 1
        ballots: dict[int, Ballot] = {}
        for index, answer, counted, wasted in zip(
            samples["step"], samples["answer"], samples["counted"], samples["wasted"]
        ):
            if wasted:  # drawn on a speculative premise that lost: never a vote
                if counted:
                    return f"step {index}: a wasted sample was counted"
                continue
            if not counted:
                continue
            ballot = ballots.get(index)
            if ballot is None:
                ballot = ballots[index] = Ballot(self.k)
            if ballot.decided:
                return f"step {index}: a vote was counted after the decision"
            ballot.add(answer)
        for index, winner in winners.items():
            ballot = ballots.get(index)
            if ballot is None or ballot.winner != winner:
                return f"step {index}: the votes do not decide {winner!r}"
        return None


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
) -> RunResult:
    """Run `task` to the end (or `max_steps`), voting every step; return what happened.

    Raises UsageError for bad input (nothing written), ModelConfigError when a model
    cannot be used (before anything is spent), VoteCapError when a step hits the
    sample cap (the log holds everything up to and including that step's samples).
    """
    voting = voting or VotingConfig()
    cluster = cluster or ClusterConfig()
    policy = policy or RedFlagPolicy()
    specs = _as_specs(models)
    for spec in specs:
        check_spec(spec)
    if cluster.segment_steps < 1 or cluster.workers < 1:
        raise UsageError("--segment-steps and --workers must be >= 1")
    speculate = speculation_depth(cluster.speculate, specs)
    if cluster.draft and not isinstance(task, Oracle):
        raise UsageError(f"--draft reference needs a task with ground truth; {task.spec.name} has none")
    guard = guard or GuardConfig()
    check_run(task, policy, voting, specs, guard)  # red flags, variants, k ceiling: before anything is spent
    meta = run_metadata(task, specs, voting, seed)
    meta["red_flags"] = policy.to_metadata()
    resumed_events: list = []
    reasons: dict[str, int] = {}
    faults: dict[str, int] = {}
    start = task.first_step()
    totals = Totals()
    writer = None
    if log is not None:
        log = Path(log)
        if resume:
            if not log.exists():
                raise UsageError(f"{log} does not exist: nothing to resume")
            if not _never_written(log):  # killed before its first part: nothing to resume from, start over
                info = open_log(log)
                _check_resumable(info.run, meta)
                resumed_events = [detail for _, detail in log_events(info)]
                start, totals = _resume_point(task, log, reasons, faults)
        writer = StepLogWriter(log, meta, resume=resume)
    elif resume:
        raise UsageError("--resume needs --log")
    resumed_from = start.index
    last_index = task.total_steps - 1 if max_steps is None else min(task.total_steps, resumed_from + max_steps) - 1
    progress = progress or Progress(task.total_steps, enabled=False)
    progress.start_at(totals.steps)
    first_error: int | None = None
    started = time.perf_counter()
    status = "ok"
    checker = _Checker(voting.k)
    live = Guard(guard, k=voting.k, first_step=start.index, last_step=last_index,
                 stream=progress.stream if progress.enabled else None)  # quiet: events and --json only
    live.restore(resumed_events)  # a resumed run goes on at the k its log last changed to
    model_names = tuple(s.model for s in specs)
    in_flight = tuple((s.model, s.concurrency) for s in specs)
    wasted = 0
    node_ids: list[str] = []
    replaced = 0
    schedule: SegmentSchedule | None = None

    def job(at: StepInput) -> SegmentJob:
        return SegmentJob(
            at, cluster.segment_steps, cluster.segment_seconds, live.voting_for(voting, at.index), policy, model_names,
            seed, last_index,
            speculate, in_flight, cluster.draft,
        )

    pool = None
    try:
        if start.index <= last_index:

            pool = WorkerPool(task.spec, specs, workers=cluster.workers, address=cluster.address)
            node_ids = pool.node_ids()
            current = start
            ahead = cluster.workers if cluster.draft else 1
            schedule = SegmentSchedule(pool, task, job, last_index, ahead, cluster.draft)
            schedule.start(current)
            while (step := schedule.next()) is not None:
                result, ran, thrown_away = step
                for lost in thrown_away:  # drafted segments whose premise lost: paid for, never counted
                    wasted_samples = as_wasted(lost)
                    if writer is not None:
                        writer.append(wasted_samples, {})
                    wasted += len(wasted_samples["step"])
                    totals.cost_usd += sum(wasted_samples["cost_usd"])
                    count_faults(wasted_samples["faults"], faults)  # the log holds them: so does the count
                voted = ran.voting  # the k this segment ran with (the guard may raise it)
                checker.k = voted.k
                problem = checker.check(result, current)
                if problem is not None:
                    raise MakerError(f"worker segment rejected: {problem}")
                live.observe(result.samples, result.decisions)
                events = live.drain()
                if writer is not None:
                    writer.append(result.samples, result.decisions, events)
                flags = result.samples["red_flag"]
                lost = result.samples["wasted"]
                for flag, was_wasted in zip(flags, lost):
                    if flag is not None and not was_wasted:
                        reasons[flag] = reasons.get(flag, 0) + 1
                count_faults(result.samples["faults"], faults)
                n_wasted = sum(lost)
                wasted += n_wasted
                totals.samples += len(flags) - n_wasted
                totals.red_flags += sum(1 for f, w in zip(flags, lost) if f is not None and not w)
                totals.cost_usd += sum(result.samples["cost_usd"])  # wasted samples were paid for too
                totals.steps += len(result.decisions["step"])
                for index, ok in zip(result.decisions["step"], result.decisions["correct"]):
                    if ok is False:
                        totals.errors += 1
                        if first_error is None:
                            first_error = index
                current = result.end
                totals.guard = live.summary()
                progress.update(totals)
                if result.failed_step is not None:  # every sample discarded, or the vote cap
                    raise step_failure(result.samples, result.failed_step, voted)
        else:
            current = start
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if pool is not None:
            replaced = pool.replaced
            pool.close()
        progress.finish(totals)
    solved = task.is_solved(current) and current.index == task.total_steps
    return RunResult(
        task=task.spec.describe(),
        steps=totals.steps,
        total_steps=task.total_steps,
        solved=bool(solved),
        errors=totals.errors,
        first_error_step=first_error,
        samples=totals.samples,
        red_flags=totals.red_flags,
        red_flags_by_reason=reasons,
        k=voting.k,
        models=list(model_names),
        simulated=all(s.is_simulated for s in specs),
        wall_s=round(time.perf_counter() - started, 3),
        cost_usd=round(totals.cost_usd, 6),
        samples_per_step=round(totals.samples / totals.steps, 4) if totals.steps else 0.0,
        log=str(log) if log is not None else None,
        resumed_from_step=resumed_from,
        status=status,
        faults_by_kind=faults,
        extra={
            "speculate": speculate,
            "draft": cluster.draft,
            # segments started on a drafted premise, and how many of those lost
            "drafted_segments": [schedule.drafted, schedule.discarded] if schedule else [0, 0],
            "wasted_samples": wasted,
            "node_ids": node_ids,
            "workers_replaced": replaced,
            "guard": live.to_dict(),
        },
    )


__all__ = ["ClusterConfig", "RunResult", "StepLogError", "run", "run_metadata"]
