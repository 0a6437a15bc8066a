"""The map scheduler: a table of records in, a table of voted answers out, streamed.

Why not the plan runner: a plan is held whole (its text, its node list, a dict of every
decided value), which is right for a DAG and wrong for a million independent records.
Here rows stream: the input is read a chunk at a time (`MapConfig.chunk_rows`), each chunk
is cut into batches that go to the Ray workers (`vote_nodes`, the DAG runner's batch
voter: the one voting engine, `vote_step`, per row), every returned batch is checked by
the driver (`check_batch`: re-decided from its votes, each winner re-judged on its row),
counted, and logged; once every row of a chunk is back, the chunk's output rows are
written, in input order.  At most `MapConfig.open_chunks` chunks are open at once, so
memory stays flat however long the table.

The step log is a run's step log (one step per row, `step` = the row's index, decision
rows' `detail` = ``row N``), so `replay --verify`, `report` and `tune` read it as any
other; parts are written every `MapConfig.flush_seconds` or `flush_rows` samples.
`--resume` takes the rows the log decided from the log (never voted again) and votes the
rest; the output is rewritten whole.

A row that cannot be decided (the sample cap, every sample red-flagged) is written with
``decided`` false and the job goes on; a model endpoint that is down stops it (every row
after would fail the same way).

    >>> from maker.tasks import get_task
    >>> task = get_task("map", input="rows.csv", prompt="Q: {q}\\nA:", key="integer", truth="a")  # doctest: +SKIP
    >>> result = run_map(task, ["sim:0.99"], VotingConfig(k=3), sink=MemorySink())              # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maker.budget.breakdown import CostBreakdown
from maker.budget.spend import Budget, budget_line
from maker.cluster import ModelSpec, WorkerPool
from maker.cluster.pricing import Price
from maker.config import ClusterConfig, GuardConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.engine.rows import merge_events
from maker.errors import EndpointDownError, UsageError
from maker.log.identity import resume_refusal
from maker.log.steplog import LogInfo, StepLogWriter, open_log
from maker.mapping.output import check_input_columns, voted_table
from maker.mapping.resume import LoggedRows
from maker.runtime.dag import NodeJob, NodeResult, take_batch, vote_nodes
from maker.runtime.driver import RunResult, base_metadata, price_dict, priced_models, simulated
from maker.runtime.guard import Guard, log_events
from maker.runtime.local_models import has_local, local_models, refuse_local_tiers
from maker.runtime.preflight import check_run
from maker.runtime.progress import Progress
from maker.runtime.state import RunState
from maker.tasks.base import Oracle, StepInput


@dataclass(frozen=True)
class MapConfig:
    """How rows are streamed: `chunk_rows` read and written at once, `batch_rows` per Ray
    call, `calls_per_worker` calls in flight per worker (both None: chosen by `dispatch`),
    `open_chunks` chunks in memory at most; a log part every `flush_rows` samples or
    `flush_seconds` (as batches return: a batch's rows are logged when it is back)."""

    chunk_rows: int = 8192
    #: None: `SIM_BATCH` rows per call on zero-latency simulators (throughput), else `MODEL_BATCH`,
    #: so that a batch -- and with it the log -- is back within a few model round trips
    batch_rows: int | None = None
    calls_per_worker: int | None = None
    open_chunks: int = 4
    flush_rows: int = 50_000
    flush_seconds: float = 2.0

    def __post_init__(self) -> None:
        for name in ("chunk_rows", "batch_rows", "calls_per_worker", "open_chunks", "flush_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name.replace('_', '-')} must be >= 1, got {value}")

    def dispatch(self, specs: Sequence[ModelSpec]) -> tuple[int, int]:
        """(rows per Ray call, calls in flight per worker) for these models."""
        instant = all(s.in_process_simulator and _instant(s.model) for s in specs)
        batch = self.batch_rows or (SIM_BATCH if instant else MODEL_BATCH)
        # two calls in flight per worker: on a model, 16 rows (about 48 requests) keep a client's 16
        # concurrent requests busy, and a call is back after a few round trips, not after every row's
        return batch, self.calls_per_worker or 2


#: Rows per Ray call: on a zero-latency simulator (Ray's per-call cost dominates), and on a model.
SIM_BATCH, MODEL_BATCH = 256, 8


def _instant(model: str) -> bool:
    from maker.cluster import parse_sim_model

    config = parse_sim_model(model)
    return config.latency == 0 and config.jitter == 0


class _Chunk:
    """A chunk of input rows waiting for its votes; its output once every row is back."""

    def __init__(self, first: int, table: Any) -> None:
        n = table.num_rows
        self.first, self.table, self.left = first, table, n
        self.answers: list[str | None] = [None] * n
        self.votes = [0] * n
        self.samples = [0] * n
        self.red_flags = [0] * n
        self.decided = [False] * n
        self.correct: list[bool | None] = [None] * n


class _Log:
    """The step-log buffer: a part every `flush_rows` samples or `flush_seconds` (and at the end)."""

    def __init__(self, writer: StepLogWriter | None, config: MapConfig) -> None:
        self.writer, self.config = writer, config
        self.samples: dict[str, list[Any]] = {}
        self.decisions: dict[str, list[Any]] = {}
        self.events: dict[str, list[Any]] = {}
        self.flushed = time.monotonic()

    def add(self, result: NodeResult, events: dict[str, list[Any]]) -> None:
        if self.writer is None:
            return
        for into, columns in ((self.samples, result.samples), (self.decisions, result.decisions), (self.events, events)):
            for name, column in columns.items():
                into.setdefault(name, []).extend(column)
        if len(self.samples.get("step", ())) >= self.config.flush_rows or \
                time.monotonic() - self.flushed > self.config.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if self.writer is not None and any(c.get("step") for c in (self.samples, self.decisions, self.events)):
            self.writer.append(self.samples, self.decisions, self.events or None)
        self.samples, self.decisions, self.events = {}, {}, {}
        self.flushed = time.monotonic()


def run_map(
    task: Any,
    models: Sequence[ModelSpec | str],
    voting: VotingConfig | None = None,
    *,
    sink: Any = None,
    log: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
    cluster: ClusterConfig | None = None,
    policy: RedFlagPolicy | None = None,
    progress: Progress | None = None,
    guard: GuardConfig | None = None,
    config: MapConfig | None = None,
    extra_meta: dict[str, Any] | None = None,
    max_cost_usd: float | None = None,
    prices: Mapping[str, Price] | None = None,
) -> RunResult:
    """Vote every row of `task` (a `maker.tasks.records.map_task.MapTask`) and write the output
    table to `sink` (`maker.mapping.output`: a file, memory, or both) in row order.

    Returns the run's `RunResult` (`steps`: rows decided; `extra`: ``rows``,
    ``rows_undecided``, ``first_undecided_row``; `solved`: every row decided and, with
    ground truth, none wrong).  Raises UsageError for bad input before anything is drawn,
    ModelConfigError for an unusable model, EndpointDownError when the model is down (the
    log keeps every decided row).  The sink is committed only when every row is written.

    `max_cost_usd` caps what the job is billed, in flight included, as `maker.run` does
    (`maker.budget.spend`; every model needs a known price: `prices`, `ModelSpec.price` or
    litellm's table): no batch's round is sent whose worst case would cross it, and the job
    then stops with `status` "budget_reached" and `budget["line"]`; the output table is not
    written (the sink is aborted), the log is intact, and a resumed job counts what its log
    already spent.
    """
    voting = voting or VotingConfig()
    cluster = cluster or ClusterConfig()
    policy = policy or RedFlagPolicy()
    guard = guard or GuardConfig()
    config = config or MapConfig()
    specs, tier_specs, cap, priced = priced_models(models, voting, max_cost_usd, prices)  # as maker.run prepares them
    if cluster.workers < 1:
        raise UsageError(f"--workers must be >= 1, got {cluster.workers}")
    oracle = isinstance(task, Oracle)
    check_input_columns(task.source.columns, oracle)
    check_run(task, policy, voting, specs, guard)
    refuse_local_tiers(voting.escalation_models)
    if has_local(specs):  # the embedded model: served for the job as maker.run serves it (maker.map names it too)
        with local_models(specs, address=cluster.address, workers=cluster.workers) as served:
            return run_map(task, served, voting, sink=sink, log=log, resume=resume, seed=seed, cluster=cluster,
                           policy=policy, progress=progress, guard=guard, config=config, extra_meta=extra_meta,
                           max_cost_usd=max_cost_usd, prices=prices)
    meta = base_metadata(task, specs, voting, seed, policy, priced)
    meta["map"] = {"rows": task.total_steps, "truth": task.truth_column, "id": task.id_column,
                   "detail": "decision rows: row N"}
    meta.update(extra_meta or {})
    info: LogInfo | None = None
    resumed_events: list = []
    writer = None
    if log is not None:
        log = Path(log)
        if resume:
            if not log.exists():
                raise UsageError(f"{log} does not exist: nothing to resume")
            if any(log.glob("part-*.parquet")):
                info = open_log(log)
                refusal = resume_refusal(info.run, meta)
                if refusal is not None:
                    raise UsageError(refusal)
                resumed_events = [detail for _, detail in log_events(info)]
        writer = StepLogWriter(log, meta, resume=resume)
    elif resume:
        raise UsageError("--resume needs --log")
    total = task.total_steps
    progress = progress or Progress(total, enabled=False)
    live = Guard(guard, k=voting.k, first_step=0, last_step=max(0, total - 1),
                 stream=progress.stream if progress.enabled else None)
    live.restore(resumed_events)
    state = RunState(task, voting, policy, tuple(s.model for s in specs), seed, writer, progress, live)
    state.breakdown = CostBreakdown(frozenset(s.model for s in tier_specs))
    logged = LoggedRows.read(info, task) if info is not None else LoggedRows.empty()
    if info is not None:
        state.count_log(info)
    if cap is not None:  # what the log already spent counts against the new cap
        state.budget = Budget(cap, priced, spent_usd=state.breakdown.total_usd)
    progress.start_at(state.totals.steps)
    started = time.perf_counter()
    pool = None
    stream = _Stream(task, state, config, logged, sink, _Log(writer, config), config.dispatch([*specs, *tier_specs]))
    try:
        pool = WorkerPool(task, [*specs, *tier_specs], workers=cluster.workers, address=cluster.address)
        stream.run(pool, cluster.workers)
        if sink is not None:
            if stream.budget_stop:
                sink.abort()  # a table with rows never voted is not the answer: the log holds what was decided
            else:
                sink.commit()
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    finally:
        stream.log.flush()
        if pool is not None:
            pool.close()
        progress.finish(state.totals)
    totals = state.totals
    undecided = stream.undecided
    extra = {
        "rows": total, "rows_decided": totals.steps, "rows_undecided": undecided,
        "first_undecided_row": stream.first_undecided, "rows_from_log": logged.count,
        "out": getattr(sink, "path", None) and str(sink.path), "guard": live.to_dict(),
        "escalations": state.escalations, "plurality_decisions": state.plurality_decisions,
        "ray_calls": stream.calls,
    }
    errors = totals.errors if oracle else None
    budget = None
    status = "ok"
    if state.budget is not None:
        budget = state.budget.to_dict()
        budget["spent_usd"] = round(state.breakdown.total_usd, 6)
        budget["reached"] = stream.budget_stop
        if stream.budget_stop:
            status = "budget_reached"
            extra["out"] = None
            budget["line"] = budget_line(budget["spent_usd"], cap, totals.steps, total).replace("steps decided",
                                                                                              "rows decided")
            if writer is not None:
                detail = {"event": "budget_reached", "cap_usd": cap, "spent_usd": budget["spent_usd"], "line": budget["line"]}
                writer.append({}, {}, {"step": [totals.steps], "detail": [json.dumps(detail, sort_keys=True)]})
    extra["cost_breakdown"] = state.breakdown.to_dict()
    return RunResult(
        task=task.describe(), steps=totals.steps, total_steps=total, solved=undecided == 0 and not errors,
        errors=errors, first_error_step=state.first_error, samples=totals.samples, red_flags=totals.red_flags,
        red_flags_by_reason=state.reasons, k=voting.k, models=[s.model for s in specs],
        simulated=simulated([*specs, *tier_specs]), wall_s=round(time.perf_counter() - started, 3),
        cost_usd=round(totals.cost_usd, 6), samples_per_step=round(totals.samples / totals.steps, 4) if totals.steps else 0.0,
        log=str(log) if log is not None else None, resumed_from_step=logged.count, status=status,
        faults_by_kind=state.faults, extra=extra, abandoned_usd=round(state.breakdown.abandoned_usd, 6), budget=budget,
        prices={m: price_dict(p) for m, p in priced.items()},
    )


class _Stream:
    """Reads chunks, dispatches their rows in batches, collects votes, writes chunks in order."""

    def __init__(self, task: Any, state: RunState, config: MapConfig, logged: LoggedRows, sink: Any, log: _Log,
                 dispatch: tuple[int, int]) -> None:
        self.task, self.state, self.config, self.logged, self.sink, self.log = task, state, config, logged, sink, log
        self.batch_rows, self.calls_per_worker = dispatch
        self.open: deque[_Chunk] = deque()
        self.ready: deque[tuple[_Chunk, StepInput]] = deque()
        self.calls = 0
        self.budget_stop = False  # a batch could not send a round within the spend cap: dispatch nothing more
        self.undecided = 0
        self.first_undecided: int | None = None
        self._chunks: Iterator[Any] | None = None
        self._next_row = 0

    def run(self, pool: WorkerPool, workers: int) -> None:
        import ray

        self._chunks = self.task.source.chunks(rows=self.config.chunk_rows)
        in_flight: dict[Any, tuple[Any, _Chunk, dict[int, StepInput], VotingConfig]] = {}
        # Under a spend cap one batch is in flight at a time, holding all that is left of the cap.
        limit = 1 if self.state.budget is not None else workers * self.calls_per_worker
        wrote = False
        while True:
            while len(in_flight) < limit and not self.budget_stop and self._fill():
                chunk, _ = self.ready[0]
                sent: dict[int, StepInput] = {}
                while self.ready and len(sent) < self.batch_rows and self.ready[0][0] is chunk:
                    step = self.ready.popleft()[1]
                    sent[step.index] = step
                state = self.state
                voting = state.live.voting_for(state.voting, min(sent))  # the guard may have raised k
                share = state.budget.share() if state.budget is not None else None
                job = NodeJob(tuple(sent.values()), voting, state.policy, state.model_names, state.seed, share)
                pending = pool.submit(vote_nodes, job)
                in_flight[pending.ref] = (pending, chunk, sent, voting)
                self.calls += 1
            if not self.budget_stop:
                wrote |= self._write_done()
            if not in_flight:
                if self.budget_stop or (not self.ready and self._chunks is None and not self.open):
                    break  # every chunk read, voted and written (or the cap reached: nothing more is sent)
                continue  # rows of logged chunks only, or chunks just written: read on
            done, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in done:
                pending, chunk, sent, voting = in_flight.pop(ref)
                self._accept(pool.get(pending), chunk, sent, voting)
        if self.sink is not None and not wrote and not self.budget_stop:  # an empty table: the output still has its columns
            import pyarrow as pa

            schema = self.task.source.schema
            self.sink.write(voted_table(pa.table({n: pa.array([], schema.field(n).type) for n in schema.names}),
                                        [], [], [], [], [], [] if isinstance(self.task, Oracle) else None))

    def _fill(self) -> bool:
        """Rows ready to send, reading the next chunk when none are and fewer than
        `open_chunks` are open; False when nothing can be sent now."""
        while not self.ready:
            if len(self.open) >= self.config.open_chunks or self._chunks is None:
                return False
            table = next(self._chunks, None)
            if table is None:
                self._chunks = None
                return False
            chunk = _Chunk(self._next_row, table)
            self._next_row += table.num_rows
            self.open.append(chunk)
            steps = self.task.premises(chunk.first, table.select(self.task.needed_columns()))
            for step in self.logged.fill(chunk, steps):
                self.ready.append((chunk, step))
        return True

    def _accept(self, result: NodeResult, chunk: _Chunk, sent: dict[int, StepInput], voting: VotingConfig) -> None:
        state = self.state
        self.budget_stop = take_batch(state, result, sent, self.task, voting.k) or self.budget_stop
        self.log.add(result, merge_events(state.live.drain(), result.events))
        first, value = chunk.first, self.task.value
        d = result.decisions
        for index, answer, votes, samples, correct in zip(d["step"], d["answer"], d["votes"], d["samples"], d["correct"]):
            at = index - first
            chunk.answers[at] = value(answer)
            chunk.votes[at], chunk.samples[at], chunk.decided[at], chunk.correct[at] = votes, samples, True, correct
        s = result.samples
        failed = set(result.failed)
        for index, flag, counted in zip(s["step"], s["red_flag"], s["counted"]):
            at = index - first
            chunk.red_flags[at] += flag is not None
            if index in failed:
                chunk.samples[at] += 1
                chunk.votes[at] += bool(counted)
        for index in result.failed:
            failure = step_failure(result.samples, index, voting, label=f" ({self.task.label(index)})")
            if isinstance(failure, EndpointDownError):
                self.log.flush()
                raise failure
            self.undecided += 1
            self.first_undecided = index if self.first_undecided is None else min(self.first_undecided, index)
        chunk.left -= len(sent)

    def _write_done(self) -> bool:
        """Write the chunks at the front whose rows are all back; whether any was written."""
        wrote = False
        while self.open and self.open[0].left == 0:
            chunk = self.open.popleft()
            if self.sink is not None:
                oracle = isinstance(self.task, Oracle)
                self.sink.write(voted_table(chunk.table, chunk.answers, chunk.votes, chunk.samples, chunk.red_flags,
                                            chunk.decided, chunk.correct if oracle else None))
            wrote = True
        return wrote


__all__ = ["MapConfig", "run_map"]
