"""The DAG runner: run a plan, voting each step the moment its inputs are decided.

Why a second scheduler: the chain scheduler (`maker.runtime.driver`) hands a worker a segment of
consecutive steps, because in a chain step t+1 cannot start before step t is decided.
In a plan (`tasks.plans.plan`) many steps are independent -- the digit products of a
multiplication, each level of a sorting network -- and running them one after another
wastes the time a model call takes.  Here the driver keeps the set of *ready* steps
(every input decided), sends them to the Ray workers in batches (one Ray call votes
many independent steps concurrently; batches are spread over `--workers` actors), and
as each batch comes back fills the decided answers into the steps that wait on them,
dispatching whatever became ready at once.  A chain is the special case of a path: one
step ready at a time.

Each step is voted exactly as a chained step (`maker.runtime.chain.loop`): round one draws k samples
together, the first at the first temperature; later rounds draw only what the leader
still needs; red-flagged samples never vote; the sample cap stops the run loudly.  A
step's draws are seeded by (run seed, node index, sample index), so parallel and
sequential dispatch draw the same samples and decide the same answers.

The driver re-decides every returned step from its votes and re-judges the winner on
the premise it sent before accepting it, then logs every sample and decision with the
chain runner's step-log schema: `step` is the node index (the step's position in the
plan), and a decision row's `detail` holds the node's label (`#E12 column`).  The log's
run metadata carries a `dag` entry (steps, levels, widths, dispatch).

A decided step is on disk within seconds, whatever the batch size: a batch streams back
(a Ray streaming generator, `WorkerPool.submit_stream`) in chunks of the steps decided so
far, one at least every `CHUNK_SECONDS` or `CHUNK_ROWS` samples, and the driver writes a
part every `FLUSH_ROWS` samples or `FLUSH_SECONDS` (and when the run stops, however it
stops).  So a kill -9 loses at most the last few seconds of decisions.  `--resume` reads
the decided nodes back from the log and votes the rest: draws are seeded per node, so the
decisions equal an uninterrupted run's.  A tool step's row is written the moment it has
run: its side effect is done, and `--resume` must never do it again.

Example (simulated model):
    >>> from maker.tasks import get_task
    >>> from maker import run
    >>> result = run(get_task("multiply", digits=4), ["sim:0.99"], VotingConfig(k=3))  # doctest: +SKIP
    >>> result.extra["answer"] == result.extra["expected_answer"]                          # doctest: +SKIP
    True
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from maker.budget.spend import billed_columns
from maker.cluster import WorkerPool
from maker.cluster.gather import gather
from maker.config import DagConfig, VotingConfig
from maker.engine.red_flags import RedFlagPolicy, step_failure
from maker.engine.rows import DECISION_COLUMNS, SAMPLE_COLUMNS, append_row, append_rows, merge_events, new_columns
from maker.engine.step import recount, vote_step
from maker.errors import MakerError
from maker.runtime.state import RunState
from maker.tasks.base import Oracle, StepInput
from maker.tasks.plans.plan_task import PlanTask

#: The driver writes a log part once this many samples or seconds have gathered (and at the end):
#: a kill -9 loses at most that much, plus what the workers had not sent yet (below).
FLUSH_ROWS = 20_000
FLUSH_SECONDS = 2.0
#: A worker sends back the steps of a batch decided so far once this many seconds have passed
#: or this many of their samples have gathered (and when the batch is done).
CHUNK_SECONDS = 1.0
CHUNK_ROWS = 5_000
#: A decision row of a plan step also carries the node's label in `detail`.
PLAN_DECISION_COLUMNS = (*DECISION_COLUMNS, "detail")


@dataclass(frozen=True)
class NodeJob:
    """What one Ray call votes: independent ready steps, each with its inputs filled in."""

    steps: tuple[StepInput, ...]
    voting: VotingConfig
    policy: RedFlagPolicy
    models: tuple[str, ...]
    run_seed: int
    #: the batch's share of the spend cap (`maker.budget.spend.Budget`); None: no cap
    budget: Any = None


@dataclass
class NodeResult:
    samples: dict[str, list[Any]]
    decisions: dict[str, list[Any]]
    failed: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0
    #: event rows of the batch's steps (escalations, plurality decisions): step-log columns
    events: dict[str, list[Any]] = field(default_factory=lambda: {"step": [], "detail": []})
    #: steps stopped undecided because their next round did not fit within the spend cap
    budget_stopped: list[int] = field(default_factory=list)


def _ready(worker: Any, payload: Any) -> bool:
    """A no-op call: it returns once the actor is up and has imported this module."""
    return True


async def vote_nodes(worker: Any, job: NodeJob) -> NodeResult:
    """Vote every step of `job` concurrently (runs in a Ray worker); columns in step order."""
    started = time.perf_counter()
    task, clients, voting = worker.task, worker.clients, job.voting
    votes = await gather(
        *(vote_step(task, clients, step, voting, job.policy, job.models, job.run_seed, job.budget) for step in job.steps)
    )
    return _result(task, votes, started)


async def stream_nodes(worker: Any, job: NodeJob) -> AsyncIterator[NodeResult]:
    """`vote_nodes` in chunks: the steps decided so far, sent back every `CHUNK_SECONDS` or
    `CHUNK_ROWS` samples while the rest of the batch is still voting (runs in a Ray worker,
    through `WorkerPool.submit_stream`).  Each chunk holds whole steps only."""
    started = time.perf_counter()
    task, clients, voting = worker.task, worker.clients, job.voting
    pending = {
        asyncio.ensure_future(vote_step(task, clients, step, voting, job.policy, job.models, job.run_seed, job.budget))
        for step in job.steps
    }
    done_votes: list[Any] = []
    rows = 0
    last = time.monotonic()
    try:
        while pending:
            wait = max(0.0, CHUNK_SECONDS - (time.monotonic() - last))
            done, pending = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                vote = finished.result()  # the task's code raised: the batch stops here, as in vote_nodes
                done_votes.append(vote)
                rows += len(vote.rows)
            if done_votes and (not pending or rows >= CHUNK_ROWS or time.monotonic() - last >= CHUNK_SECONDS):
                done_votes.sort(key=lambda v: v.step.index)
                yield _result(task, done_votes, started)
                done_votes, rows, last = [], 0, time.monotonic()
    finally:
        for left in pending:  # the driver stopped reading (an error, an interrupt): stop drawing
            left.cancel()


def _result(task: Any, votes: list[Any], started: float) -> NodeResult:
    """Voted steps as step-log columns (a `NodeResult`)."""
    samples = new_columns(SAMPLE_COLUMNS)
    decisions = new_columns(PLAN_DECISION_COLUMNS)
    sample_cols = [samples[c] for c in SAMPLE_COLUMNS]
    failed = []
    stopped = []
    events: dict[str, list[Any]] = {"step": [], "detail": []}
    for vote in votes:
        index = vote.step.index
        append_rows(sample_cols, index, vote.rows)
        vote.event_columns(events)
        if vote.budget_stop:
            stopped.append(index)
        elif vote.winner is None:
            failed.append(index)
        else:
            append_row(decisions, PLAN_DECISION_COLUMNS, (*vote.decision_row(), task.label(index)))
    return NodeResult(samples, decisions, failed, time.perf_counter() - started, events, stopped)


def check_batch(result: NodeResult, sent: dict[int, StepInput], task: PlanTask, k: int, whole: bool = True) -> str | None:
    """Re-decide a returned batch from its votes and re-judge each winner on the premise sent.

    The driver's guard: a worker that decided a step it was not sent, counted a vote after
    the decision, or returned a winner its votes (or the rules) do not support is rejected.
    `whole`: the result is the whole batch, so every step sent must be in it (a streamed
    chunk holds only some; the driver checks the rest when the stream ends).
    """
    stray = next((i for i in result.samples["step"] if i not in sent), None)
    if stray is not None:
        return f"a sample of step {stray}, which this batch was not sent"
    problem = recount(result.samples, result.decisions, k, result.events)
    if problem is not None:
        return problem
    seen: set[int] = set()
    for index, winner in zip(result.decisions["step"], result.decisions["answer"]):
        if index not in sent or index in seen:
            return f"step {index}: decided but not sent, or decided twice"
        seen.add(index)
        if task.judge(sent[index], winner).key != winner:
            return f"step {index}: the winner {winner!r} breaks the rules on its premise"
    missing = set(sent) - seen - set(result.failed) - set(result.budget_stopped) if whole else ()
    if missing:
        return f"step {min(missing)}: sent but neither decided nor failed"
    return None


def plan_metadata(task: PlanTask, dag: DagConfig) -> dict[str, Any]:
    """The log's `dag` entry: the plan's shape and how it was dispatched."""
    widths = task.plan.widths()
    return {
        "steps": len(task.plan), "levels": len(widths), "widths": widths,
        "dispatch": "sequential" if dag.sequential else "parallel", "detail": "decision rows: node label",
    }


def run_dag(pool: WorkerPool, state: RunState, dag: DagConfig, workers: int, values: dict[int, str],
            correct: dict[int, bool | None] | None = None) -> tuple[bool, dict[str, Any]]:
    """The plan scheduler: vote every step not in `values` (decided steps, e.g. from a
    resumed log, with their logged `correct`) as soon as its inputs are decided; (solved,
    the result's extra fields)."""
    task: PlanTask = state.task  # type: ignore[assignment]
    plan = task.plan
    widths = plan.widths()
    nodes = _Nodes(task, state, values, correct or {})
    if nodes.ready or len(values) < len(plan):
        pool.map(_ready, [None] * workers)  # every actor up, with this module imported
        started = time.perf_counter()
        try:
            _drive(pool, nodes, dag, workers)
        finally:
            nodes.flush()
        nodes.dispatch_s = time.perf_counter() - started
    state.budget_stop = state.budget_stop or nodes.budget_stop
    done = len(nodes.values) == task.total_steps
    answer = task.final_answer(nodes.values) if done else None
    expected = task.expected_answer(nodes.true_tool_outputs()) if isinstance(task, Oracle) else None
    correct_answer = None if answer is None or expected is None else answer == expected
    errors = isinstance(task, Oracle) and state.first_error is not None
    return bool(done and correct_answer is not False and not (correct_answer is None and errors)), {
        "answer": answer,
        "expected_answer": expected,
        "answer_correct": correct_answer,
        "dispatch": "sequential" if dag.sequential else "parallel",
        "levels": len(widths),
        "widest_level": max(widths, default=0),
        "dispatch_s": round(nodes.dispatch_s, 3),
        "ray_calls": nodes.calls,
        "most_calls_in_flight": nodes.most_in_flight,
        "tools_run": nodes.tools_run,
    }


class _Nodes:
    """What the plan scheduler knows: decided values, the steps waiting on them, the log buffer."""

    def __init__(self, task: PlanTask, state: RunState, values: dict[int, str], correct: dict[int, bool | None]) -> None:
        plan = task.plan
        self.task = task
        self.state = state
        self.values = dict(values)
        self.waiting = [sum(d not in values for d in plan.deps(i)) for i in range(len(plan))]
        self.dependents = plan.dependents()
        self.ready: deque[int] = deque(i for i, w in enumerate(self.waiting) if w == 0 and i not in values)
        self.calls = 0
        self.most_in_flight = 0
        self.tools_run = 0
        self.dispatch_s = 0.0  # first dispatch to last decision: the wall time without starting workers
        #: node -> its value equals the ground truth (right on its premise, every input right);
        #: None when unknown.  What says whether a tool's output is the true one.
        self.right: dict[int, bool | None] = {}
        for index in sorted(values):
            self._judge(index, correct.get(index))
        self.budget_stop = False  # a batch could not send a round within the spend cap: dispatch nothing more
        self._samples: dict[str, list[Any]] = {}
        self._decisions: dict[str, list[Any]] = {}
        self._events: dict[str, list[Any]] = {}
        self._tools: dict[str, list[Any]] = {}  # tool steps' decision rows (row kind 'tool')
        self._flushed = time.monotonic()

    def _judge(self, index: int, on_premise: bool | None) -> None:
        inputs = [self.right.get(d) for d in self.task.plan.deps(index)]
        if on_premise is False or False in inputs:
            self.right[index] = False
        elif on_premise is None or None in inputs:
            self.right[index] = None
        else:
            self.right[index] = True

    def true_tool_outputs(self) -> dict[int, str]:
        """Tool steps run on inputs that were all right: their outputs are the true ones (a tool
        that is not pure is never run for ground truth; see `OraclePlanTask.truth_values`)."""
        return {i: v for i, v in self.values.items() if self.task.is_tool(i) and self.right.get(i)}

    def job(self, sent: dict[int, StepInput]) -> NodeJob:
        state = self.state
        voting = state.live.voting_for(state.voting, min(sent))  # the guard may have raised k
        budget = state.budget.share() if state.budget is not None else None
        return NodeJob(tuple(sent.values()), voting, state.policy, state.model_names, state.seed, budget)

    def _buffer(self, result: NodeResult, events: dict[str, list[Any]], tool: bool = False) -> None:
        """Keep a returned batch for the log; write a part once enough has gathered (see `flush`)."""
        if self.state.writer is None:
            return
        decided = self._tools if tool else self._decisions
        for into, columns in ((self._samples, result.samples), (decided, result.decisions), (self._events, events)):
            for name, column in columns.items():
                into.setdefault(name, []).extend(column)
        self.flush_due()

    def flush_due(self) -> None:
        """Write a part when `FLUSH_ROWS` samples or `FLUSH_SECONDS` have gathered."""
        if len(self._samples.get("step", ())) >= FLUSH_ROWS or time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered as one log part (each part is fsynced: small batches would crawl)."""
        writer = self.state.writer
        if writer is not None and any(rows.get("step") for rows in (self._samples, self._decisions, self._events, self._tools)):
            writer.append(self._samples, self._decisions, self._events or None, tools=self._tools or None)
        self._samples, self._decisions, self._events, self._tools = {}, {}, {}, {}
        self._flushed = time.monotonic()

    def run_tools(self) -> None:
        """Run every ready tool step on the driver, once, on its decided inputs: never voted,
        logged as a row of kind 'tool' (decision columns, no votes; `[tool]` in `detail`; the
        inputs it ran on, a JSON list, in `reply`), written at once: the side effect is done.
        Its `correct` is True (a tool is right on its premise); whether its output is the true
        one follows from its inputs (`right`).  A tool that raises stops the run with one line
        naming it."""
        task = self.task
        ran = False
        while tools := [i for i in self.ready if task.is_tool(i)]:
            for index in tools:
                self.ready.remove(index)
                step = task.step_input(index, self.values)
                try:
                    answer = task.run_tool(step)
                except ValueError as exc:  # ToolError: the user's function raised
                    self.flush()
                    raise MakerError(f"step {index} ({task.label(index)}): {exc}") from None
                self.tools_run += 1
                ran = True
                ok = True if isinstance(task, Oracle) else None
                row = (index, answer, 0, 0, 0, ok, f"{task.label(index)} [tool]")
                decisions = {c: [v] for c, v in zip(PLAN_DECISION_COLUMNS, row)}
                decisions["reply"] = [json.dumps(list(step.premise[1]))]
                self.accept(NodeResult({c: [] for c in SAMPLE_COLUMNS}, decisions), {index: None}, self.state.voting,
                            checked=True, tool=True)
        if ran:
            self.flush()

    def take(self, count: int) -> dict[int, StepInput]:
        chosen = [self.ready.popleft() for _ in range(min(count, len(self.ready)))]
        return {i: self.task.step_input(i, self.values) for i in chosen}

    def accept(self, result: NodeResult, sent: dict[int, StepInput], voting: VotingConfig, checked: bool = False,
               tool: bool = False, whole: bool = True) -> None:
        if take_batch(self.state, result, sent, self.task, voting.k, whole=whole, checked=checked):
            self.budget_stop = True
        state = self.state
        self._buffer(result, merge_events(state.live.drain(), result.events), tool)
        for index, answer, ok in zip(result.decisions["step"], result.decisions["answer"], result.decisions["correct"]):
            self.values[index] = answer
            self._judge(index, ok)
            for user in self.dependents[index]:
                self.waiting[user] -= 1
                if self.waiting[user] == 0:
                    self.ready.append(user)
        if result.failed:
            step = min(result.failed)
            raise step_failure(result.samples, step, voting, label=f" ({self.task.label(step)})")


def take_batch(state: RunState, result: NodeResult, sent: dict[int, StepInput], task: Any, k: int, *,
               whole: bool = True, checked: bool = False) -> bool:
    """Check a returned batch (`check_batch`; MakerError if rejected), add it to the run's
    totals and charge its bill to the spend cap before the next batch's share is handed out;
    whether the worker stopped some of its steps at the cap.  The DAG runner and `maker map`
    both take batches this way."""
    problem = None if checked else check_batch(result, sent, task, k, whole)
    if problem is not None:
        raise MakerError(f"worker batch rejected: {problem}")
    state.count(result.samples, result.decisions, events=result.events)
    if state.budget is not None:
        state.budget.charge(billed_columns(result.samples))
    return bool(result.budget_stopped)


@dataclass
class _Batch:
    """A streamed batch in flight: what was sent, under which k, and which steps came back."""

    pending: Any
    sent: dict[int, StepInput]
    voting: VotingConfig
    back: set[int] = field(default_factory=set)


def _drive(pool: WorkerPool, nodes: _Nodes, dag: DagConfig, workers: int) -> None:
    """Dispatch ready steps, take in decided steps as the batches stream them back, repeat
    until every step is decided; a part is written at least every `FLUSH_SECONDS`."""
    import ray

    in_flight: dict[int, _Batch] = {}
    # Under a spend cap one batch is in flight at a time, holding all that is left of the cap
    # (its steps are voted concurrently, up to `max_batch`): batches never split the cap.
    limit = 1 if dag.sequential or nodes.state.budget is not None else workers * dag.calls_per_worker
    while (nodes.ready or in_flight) and not nodes.budget_stop:
        nodes.run_tools()  # tool steps run on the driver as soon as they are ready, never voted
        while nodes.ready and len(in_flight) < limit:
            if dag.sequential:
                size = 1
            else:
                # Spread what is ready over the calls that may still start, capped per call.
                free = limit - len(in_flight)
                size = max(1, min(dag.max_batch, -(-len(nodes.ready) // free)))
            sent = nodes.take(size)
            job = nodes.job(sent)
            pending = pool.submit_stream(stream_nodes, job)
            in_flight[id(pending)] = _Batch(pending, sent, job.voting)
            nodes.calls += 1
        nodes.most_in_flight = max(nodes.most_in_flight, len(in_flight))
        if not in_flight:
            break
        by_ref = {batch.pending.ref: key for key, batch in in_flight.items()}
        done, _ = ray.wait(list(by_ref), num_returns=1, timeout=FLUSH_SECONDS)
        for ref in done:
            key = by_ref[ref]
            batch = in_flight[key]
            chunk = pool.next_item(batch.pending)
            if chunk is None:  # the stream ended: every step sent must have come back
                del in_flight[key]
                missing = set(batch.sent) - batch.back
                if missing:
                    raise MakerError(f"worker batch rejected: step {min(missing)}: sent but neither decided nor failed")
                continue
            again = batch.back.intersection(chunk.decisions["step"], chunk.failed, chunk.budget_stopped)
            if again:
                raise MakerError(f"worker batch rejected: step {min(again)}: decided twice")
            batch.back.update(chunk.decisions["step"], chunk.failed, chunk.budget_stopped)
            # should the worker die now, only the steps still out are sent again
            batch.pending.payload = replace(batch.pending.payload,
                                            steps=tuple(s for s in batch.pending.payload.steps if s.index not in batch.back))
            nodes.accept(chunk, batch.sent, batch.voting, whole=False)
        nodes.flush_due()
    if nodes.budget_stop:
        return
    if len(nodes.values) < nodes.task.total_steps:
        stuck = next(i for i in range(nodes.task.total_steps) if i not in nodes.values)
        raise MakerError(f"step {stuck} ({nodes.task.label(stuck)}): never became ready")
