"""Speculative steps: vote steps t+1 ... t+D while step t is still being voted.

Why: on a chained task the next step's prompt needs this step's decision, so an
in-order run waits for the slowest of a step's k replies (and for every extra round)
before it starts the next step.  Here a worker starts step t+1 as soon as step t has a
*leader* -- the answer most of its arrived replies name, ties to the earliest -- on the
premise that leader implies, and so on up to D steps ahead of the last decision.

What it cannot do alone: step t+1's premise is known only once some reply for step t
has arrived, so the chain still advances at most one step per model round trip
whatever D is.  What it buys: the *first* reply of a step (not the slowest of k) sets
the next premise, and confirming votes and extra rounds overlap with progress on later
steps.

A *draft* lifts that limit, as in speculative decoding (`maker.runtime.chain.draft`): a step
that has no reply yet takes the draft's guess -- the task's reference answer, a user's
function, or a cheap model's one sample -- as its leader, so the window fills D steps
deep while the voters answer and D steps are voted concurrently.  The draft only
proposes premises; the votes still decide, on exactly the premise they were drawn for,
and the first reply that disagrees with a guess discards what was built on it.  Its
proposals are returned as rows of their own (`SegmentResult.drafts`, never votes), and
the window's depth adapts to how often its guesses hold (`DepthControl`).  The runs'
decisions are the same with or without a draft.

Why the decisions do not change: every step (a *slot*) runs exactly the in-order
protocol of `maker.runtime.chain.loop` on its own premise -- round one draws samples 0..k-1, later
rounds what the ballot still needs, votes counted in sample order, the same draw seeds
-- so a slot's ballot is the ballot an in-order run would have built on that premise.
A slot's votes count only once the step before it is decided and the decision implies
exactly the slot's premise.  Otherwise (or as soon as the leader it was built on is
overtaken) the slot and every slot after it are discarded: requests in flight are
cancelled, and each sample is logged with ``wasted=True`` and never counted.

Example (a worker is anything with `task` and `clients`; the simulator needs no network):
    >>> import asyncio, types
    >>> from maker.cluster import SimulatedModel, parse_sim_model
    >>> from maker.config import VotingConfig
    >>> from maker.engine.red_flags import RedFlagPolicy
    >>> from maker.runtime.chain.segment import SegmentJob
    >>> from maker.tasks import get_task
    >>> task = get_task("hanoi", disks=4)
    >>> worker = types.SimpleNamespace(task=task, clients={"sim:0.9": SimulatedModel(task, parse_sim_model("sim:0.9"))})
    >>> job = SegmentJob(task.first_step(), 100, 60.0, VotingConfig(k=2), RedFlagPolicy(), ("sim:0.9",), 0, 14, speculate=4)
    >>> result = asyncio.run(run_window(worker, job))
    >>> result.decisions["step"] == list(range(15))
    True
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

from maker.cluster.clients import ModelSpec
from maker.cluster.protocol import Sample
from maker.cluster.simulated.simulator import parse_sim_model
from maker.engine.rows import DECISION_COLUMNS, SAMPLE_COLUMNS, Row, append_row, append_rows, new_columns
from maker.engine.step import StepVote
from maker.errors import MakerError, UsageError, one_line
from maker.runtime.chain.draft import DepthControl, Draft, Proposer
from maker.runtime.chain.segment import SegmentJob, SegmentResult
from maker.tasks.base import Oracle, StepInput, Verdict
from maker.voting import Ballot

#: The depth used when none is asked for and some model takes time to answer.
DEFAULT_DEPTH = 8
#: A margin no tally reaches: the arrival-order tally only ranks answers, it never decides.
_NEVER = 1 << 62
#: The error text of a request cancelled because its premise lost.
CANCELLED = "cancelled: speculative premise lost"
_UNLIMITED = 1 << 30
#: The error text of a draft request cancelled because its step was decided first (not wasted: its premise held).
DRAFT_LATE = "cancelled: the step was decided before the draft answered"
#: The "sample index" of a draft request in flight (and of a draft row in the log): never a vote's.
DRAFT_INDEX = -1


class _Slot:
    """One step being voted on one premise (the true one, or a speculative one): the
    engine's `StepVote` decides; the slot adds the arrival-order leader and its requests."""

    __slots__ = ("arrivals", "arrived", "asked", "built_on", "draft_row", "drafting", "guess", "queue", "tasks", "vote")

    def __init__(self, vote: StepVote) -> None:
        self.vote = vote  # sample order: decides, exactly as an in-order run
        self.arrivals = Ballot(_NEVER)  # arrival order: only names the leader
        self.queue: deque[int] = deque()  # asked for, not yet sent (in-flight limit)
        #: sample index -> (its request's task, its place in that task's batch, its model)
        self.tasks: dict[int, tuple[asyncio.Task[list[Sample]], int, str]] = {}
        self.arrived: dict[int, tuple[Sample, Verdict]] = {}  # ahead of the vote's `done`
        self.built_on: Hashable | None = None  # the leader the next slot's premise came from
        self.asked = False  # the draft was asked for a guess of this step
        self.guess: Hashable | None = None  # the draft's guess (its vote key), once in
        self.draft_row: tuple[Sample, Verdict] | None = None  # the draft's sample, to log
        self.drafting: asyncio.Task[list[Sample]] | None = None  # a draft model's request in flight

    @property
    def step(self) -> StepInput:
        return self.vote.step

    def leader(self) -> Hashable | None:
        winner = self.vote.winner
        return winner if winner is not None else self.arrivals.leader


class _Window:
    """The slots of one segment, head (the first undecided step) first."""

    def __init__(self, worker: Any, job: SegmentJob) -> None:
        self.task = worker.task
        self.clients = worker.clients
        self.job = job
        self.models = job.models
        every = tuple(dict.fromkeys((*job.models, *job.voting.escalation_models)))  # escalation tiers draw too
        limits = dict(job.in_flight)
        self.limit = {m: max(1, limits.get(m, _UNLIMITED)) for m in every}
        self.in_flight = dict.fromkeys(every, 0)
        self.events: dict[str, list[Any]] = {"step": [], "detail": []}
        self.last = min(job.last_step, job.start.index + job.max_steps - 1)
        draft = Draft("reference") if job.draft is True else job.draft or None
        if draft is not None and draft.kind == "reference" and not isinstance(self.task, Oracle):
            draft = None
        self.proposer = Proposer(draft, self.task, self.clients, job.run_seed) if draft is not None else None
        self.control = DepthControl(job.speculate) if draft is not None else None
        if self.control is not None and job.draft_depth:
            self.control.depth = max(1, min(self.control.limit, job.draft_depth))
        self.drafts = new_columns(SAMPLE_COLUMNS)  # the draft's proposals: rows of their own, never votes
        self.slots: list[_Slot] = []
        self.owner: dict[asyncio.Task[list[Sample]], tuple[_Slot, tuple[int, ...]]] = {}  # its sample indices
        self.samples = new_columns(SAMPLE_COLUMNS)
        self.decisions = new_columns(DECISION_COLUMNS)
        self.ready: asyncio.Queue[asyncio.Task[list[Sample]]] | None = None
        self.blocked = False  # opening the slot after the tail raised (see `_extend`)
        self.budget = job.budget  # the segment's share of the spend cap (None: no cap)
        self.held: dict[asyncio.Task[list[Sample]], float] = {}  # each request's worst case, held in the budget
        self.refused = False  # the last `_send` met a request that did not fit within the cap
        self.closing = False  # out of time with a draft: end at the next rejected guess (`_out_of_time`)

    async def run(self) -> SegmentResult:
        started = time.perf_counter()
        self.ready = asyncio.Queue()
        end = self.job.start
        failed: int | None = None
        error: str | None = None
        budget_stop = False
        try:
            if end.index <= self.last:
                self.slots.append(self._slot(end))
            while self.slots:
                head = self.slots[0]
                if head.vote.winner is not None:
                    end = self._confirm(head)
                    if time.perf_counter() - started > self.job.max_seconds:
                        self._out_of_time(end)
                    if not self.slots and end.index <= self.last:
                        self.slots.append(self._slot(end))
                    continue
                if head.vote.gave_up:
                    failed = head.step.index
                    self.slots.pop(0)
                    if self.proposer is not None:
                        self._draft_rows(head, wasted=False)
                    append_rows(self.samples, failed, head.vote.rows)
                    head.vote.event_columns(self.events)
                    break
                self._extend()
                self._send()
                if not self.owner and self.refused:  # nothing in flight, and the next request does not fit: stop
                    budget_stop = True
                    self._stop_undecided(head)
                    break
                if not self.owner:
                    raise RuntimeError(f"step {head.step.index}: speculative window stalled with nothing in flight")
                await self._receive()
        except MakerError:
            raise
        except Exception as exc:  # the task's own code raised: the decided steps go back with why
            error = one_line(exc, None, typed=True)
        finally:
            self._discard(0)  # failure, error or cancellation: nothing may stay in flight
        return SegmentResult(self.samples, self.decisions, end, failed, time.perf_counter() - started, self.events, error,
                             self.drafts if self.proposer is not None else None,
                             self.control.depth if self.control is not None else 0, budget_stop=budget_stop)

    def _out_of_time(self, end: StepInput) -> None:
        """The segment's time is up: start nothing new and finish the slots already running.

        With a draft the window first goes on until a guess is rejected (`closing`), for at
        most one window depth (`job.speculate`) more steps: a rejection discards every slot
        after it anyway, so ending there hands the next segment nothing worth keeping in
        flight, where ending now would leave the draft's accepted slots to finish with none
        opening behind them -- a pipeline drain of up to one round trip per segment."""
        if self.proposer is not None:
            if not self.closing:
                self.closing = True
                self.last = min(self.last, end.index + self.job.speculate - 1)
            return
        self.last = min(self.last, self.slots[-1].step.index if self.slots else end.index - 1)

    def _rejected(self, tail: _Slot) -> None:
        """A guess was rejected and the slots after `tail` discarded: a closing window ends at `tail`."""
        if self.closing:
            self.last = min(self.last, tail.step.index)

    # -- slots ------------------------------------------------------------------------
    def _slot(self, step: StepInput) -> _Slot:
        job = self.job
        slot = _Slot(StepVote(self.task, step, job.voting, job.policy, self.models, job.run_seed))
        slot.queue.extend(slot.vote.next_round())
        return slot

    def _extend(self) -> None:
        """Open speculative slots behind the last one while it has a leader -- or, with a
        draft, a guess -- up to the depth (adaptive with a draft)."""
        depth = self.control.depth if self.control is not None else self.job.speculate
        slots = self.slots
        if self.blocked:
            return
        while len(slots) <= depth:
            tail = slots[-1]
            if tail.step.index >= self.last:
                return
            leader = tail.leader()
            if leader is None and self.proposer is not None:  # no reply yet: the draft proposes the premise
                if not tail.asked:
                    self._propose(tail)
                leader = tail.guess
            if leader is None:
                return
            try:
                slot = self._slot(self.task.step_after(tail.step.index, leader))
            except MakerError:
                raise
            except Exception:  # the task's code raised on a premise not yet decided: open nothing more
                self.blocked = True  # here; on the decided premise, `run` opens the slot and stops the run
                return
            tail.built_on = leader
            slots.append(slot)

    def _propose(self, slot: _Slot) -> None:
        """Ask the draft for `slot`'s answer: at once (reference, function), or one model request."""
        proposer = self.proposer
        assert proposer is not None and self.ready is not None
        slot.asked = True
        if proposer.sync:
            slot.guess, sample, verdict = proposer.guess(slot.vote)
            slot.draft_row = (sample, verdict)
            return
        request = proposer.request(slot.vote)
        held = 0.0
        if self.budget is not None:  # the draft's worst case is held within the cap, as a vote's is
            reserved = self.budget.reserve([(proposer.draft.model, request)])
            if reserved is None:  # no room: no guess; the voters' leader builds the window from here
                return
            held = reserved
        task = asyncio.ensure_future(proposer.client.complete([request]))
        task.add_done_callback(self.ready.put_nowait)
        slot.drafting = task
        self.held[task] = held
        self.owner[task] = (slot, (DRAFT_INDEX,))

    def _draft_rows(self, slot: _Slot, wasted: bool) -> None:
        """Log `slot`'s draft proposal (cancelled if still in flight) as a draft row."""
        task = slot.drafting
        if task is not None:
            self.owner.pop(task, None)
            slot.drafting = None
            proposer = self.proposer
            assert proposer is not None
            if task.done() and not task.cancelled() and task.exception() is None:
                sample = task.result()[0]
                slot.draft_row = (sample, proposer.judge(slot.vote, sample))
            else:
                sample = _cancel(task, proposer.client, proposer.request(slot.vote), proposer.draft.label,
                                 CANCELLED if wasted else DRAFT_LATE)
                slot.draft_row = (sample, Verdict(None))
            if self.budget is not None:
                self.budget.settle(self.held.pop(task, 0.0), [sample])
        if slot.draft_row is not None:
            sample, verdict = slot.draft_row
            temperature = self.job.voting.first_temperature
            append_rows(self.drafts, slot.step.index, [(DRAFT_INDEX, sample.model, temperature, sample, verdict, False)],
                        wasted=wasted)
            slot.draft_row = None

    def _confirm(self, head: _Slot) -> StepInput:
        """The head is decided on its true premise: log it; keep the next slot only if its
        premise is exactly the one the decision implies."""
        self.slots.pop(0)
        vote = head.vote
        append_rows(self.samples, head.step.index, vote.rows)
        append_row(self.decisions, DECISION_COLUMNS, vote.decision_row())
        vote.event_columns(self.events)
        if self.proposer is not None:
            self._draft_rows(head, wasted=False)
            if head.guess is not None and self.control is not None:  # adaptive depth
                self.control.accepted() if head.guess == vote.winner else self.control.rejected()
        after = self.task.step_after(head.step.index, vote.winner)
        if self.slots and self.slots[0].step != after:
            self._discard(0)
            self._rejected(head)
        return after

    def _stop_undecided(self, head: _Slot) -> None:
        """The spend cap stops the run at the head: log what it drew (not wasted: its premise
        is true; undecided, so a resume draws it again) and discard the slots after it."""
        self.slots.pop(0)
        vote = head.vote
        rows: list[Row] = list(vote.rows)
        rows += [(i, vote.model_of(i), vote.temperature_of(i), *head.arrived[i], False) for i in sorted(head.arrived)]
        append_rows(self.samples, head.step.index, rows)
        vote.event_columns(self.events)
        self._discard(0)

    def _discard(self, first: int) -> None:
        """Drop slots[first:]: cancel their requests, log all their samples as wasted."""
        for slot in self.slots[first:]:
            vote = slot.vote
            if self.proposer is not None:
                self._draft_rows(slot, wasted=True)
            for index, (task, place, model) in slot.tasks.items():
                self.owner.pop(task, None)
                self.in_flight[model] -= 1
                held = self.held.pop(task, 0.0)
                if task.done() and not task.cancelled() and task.exception() is None:
                    sample = task.result()[place]
                    slot.arrived[index] = (sample, vote.verdict(index, sample))
                else:
                    sample = _cancel(task, self.clients[model], vote.request(index), model, CANCELLED)
                    slot.arrived[index] = (sample, Verdict(None))
                if self.budget is not None:
                    self.budget.settle(held, [sample])
            slot.tasks.clear()
            temperature = vote.temperature_of
            rows: list[Row] = [(i, m, t, s, v, False) for i, m, t, s, v, _ in vote.rows]
            rows += [(i, vote.model_of(i), temperature(i), *slot.arrived[i], False) for i in sorted(slot.arrived)]
            append_rows(self.samples, slot.step.index, rows, wasted=True)
        del self.slots[first:]
        self.blocked = False  # a new tail: its next premise may differ

    # -- requests ---------------------------------------------------------------------
    def _send(self) -> None:
        """Send queued draws, earliest step first, within each model's in-flight limit and the
        spend cap (the first batch that does not fit stops sending: `refused`).

        A slot's round goes out as the in-order loop sends it (`maker.engine.step.vote_step`):
        one batch per model, so a client that shares one request among same-prompt samples
        (`n`) groups -- and a seeded server draws -- exactly as in an in-order run.  A batch
        waits until it fits the limit whole; only one larger than the limit is split."""
        self.refused = False
        for slot in self.slots:
            queue = slot.queue
            if not queue:
                continue
            model_of = slot.vote.model_of
            batches: dict[str, list[int]] = {}
            for index in queue:
                batches.setdefault(model_of(index), []).append(index)
            held: deque[int] = deque()
            launched: set[int] = set()
            for model, indices in batches.items():
                room = self.limit[model] - self.in_flight[model]
                if len(indices) > self.limit[model] and room > 0:  # never fits whole: as much as fits
                    held.extend(indices[room:])
                    indices = indices[:room]
                elif len(indices) > room:
                    held.extend(indices)
                    continue
                if not self._launch(slot, tuple(indices), model):  # over the cap: send nothing more for now
                    slot.queue = deque(i for i in queue if i not in launched)
                    return
                launched.update(indices)
            slot.queue = held
            if all(self.in_flight[m] >= self.limit[m] for m in self.limit):
                return

    def _launch(self, slot: _Slot, indices: tuple[int, ...], model: str) -> bool:
        """Send one batch; False (nothing sent, `refused` set) when its worst case does not fit the cap."""
        assert self.ready is not None
        requests = [slot.vote.request(i) for i in indices]
        held = 0.0
        if self.budget is not None:
            reserved = self.budget.reserve([(model, request) for request in requests])
            if reserved is None:
                self.refused = True
                return False
            held = reserved
        task = asyncio.ensure_future(self.clients[model].complete(requests))
        self.held[task] = held
        task.add_done_callback(self.ready.put_nowait)
        for place, index in enumerate(indices):
            slot.tasks[index] = (task, place, model)
        self.owner[task] = (slot, indices)
        self.in_flight[model] += len(indices)
        return True

    async def _receive(self) -> None:
        """Wait for at least one reply; take every reply that is in; re-check the leaders."""
        assert self.ready is not None
        batch = [await self.ready.get()]
        while not self.ready.empty():
            batch.append(self.ready.get_nowait())
        for task in batch:
            owner = self.owner.pop(task, None)
            if owner is None:
                continue  # its slot was discarded: already logged as wasted
            slot, indices = owner
            if indices[0] == DRAFT_INDEX:  # the draft model's guess for this slot
                slot.drafting = None
                sample = task.result()[0]
                if self.budget is not None:
                    self.budget.settle(self.held.pop(task, 0.0), [sample])
                verdict = self.proposer.judge(slot.vote, sample)  # type: ignore[union-attr]
                slot.guess, slot.draft_row = verdict.key, (sample, verdict)
                continue
            samples = task.result()  # a client that raises cannot work at all: stop the run
            if self.budget is not None:
                self.budget.settle(self.held.pop(task, 0.0), list(samples))
            for index, sample in zip(indices, samples):
                model = slot.tasks.pop(index)[2]
                self.in_flight[model] -= 1
                verdict = slot.vote.verdict(index, sample)  # ranks only; the vote finishes it in sample order
                slot.arrived[index] = (sample, verdict)
                if verdict.key is not None:
                    slot.arrivals.add(verdict.key)
            self._count(slot)
        for position, slot in enumerate(self.slots):
            leader = slot.leader()  # None only for a drafted slot with no valid reply yet
            if slot.built_on is not None and leader is not None and leader != slot.built_on:
                slot.built_on = None
                self._discard(position + 1)
                self._rejected(slot)
                break

    def _count(self, slot: _Slot) -> None:
        """Count the slot's replies in sample order, as far as they have arrived; ask for
        the next round once every reply of this one is counted."""
        vote, arrived = slot.vote, slot.arrived
        while vote.done in arrived:
            i = vote.done
            vote.count(i, *arrived.pop(i))
        if vote.winner is None and not vote.gave_up and vote.round_done:
            slot.queue.extend(vote.next_round())


def _cancel(task: asyncio.Task[list[Sample]], client: Any, request: Any, model: str, why: str) -> Sample:
    """Cancel a request sent and given up on (a vote or a draft's guess): its logged sample,
    billed at the prompt's estimated cost (`prompt_cost`), since the provider may still serve
    and bill it."""
    task.cancel()
    estimate = getattr(client, "prompt_cost", None)
    return Sample("", model, finish_reason="cancelled", error=why,
                  abandoned_usd=estimate(request) if estimate is not None else 0.0)


def speculation_depth(requested: int | None, specs: Sequence[ModelSpec]) -> int:
    """The window depth for a run: `requested`, or when None, `DEFAULT_DEPTH` -- unless every
    model is a zero-latency simulator, where there is no latency to hide and the window
    would only cost CPU time.  UsageError for a negative or non-integer depth.
    """
    if requested is None:
        instant = all(s.in_process_simulator and _instant(s.model) for s in specs)
        return 0 if instant else DEFAULT_DEPTH
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise UsageError(f"--speculate must be an integer >= 0 (0: no speculation), got {requested!r}")
    return requested


def _instant(model: str) -> bool:
    config = parse_sim_model(model)
    return config.latency == 0 and config.jitter == 0


async def run_window(worker: Any, job: SegmentJob) -> SegmentResult:
    """Vote a segment through a speculative window of `job.speculate` steps."""
    return await _Window(worker, job).run()
