"""Vote one step: the single implementation under every runner.

A `StepVote` is one step being voted on one premise.  It owns everything the paper's
protocol fixes for that step, so that no scheduler can draw or count differently:

* which request sample i is: model ``models[i % M]``, prompt variant `variant_of`,
  temperature `StepVote.temperature_of(i)` (the first sample of each ballot -- the step's
  and each escalated tier's -- at `first_temperature`, the model's best guess as in the
  paper; the rest at `temperature`), seed ``mix64(*seed, step, i)`` (a run's
  seed prefix is ``(run_seed,)``: `draw_seed`), token cap `request_cap` (derived from the
  one `VotingConfig.max_output_tokens`);
* the rounds: round one asks for k samples, later rounds for what the leader still
  needs (`Ballot.needed`), capped at `max_samples_per_step`;
* giving up (`VotingConfig.gives_up`: the sample cap, a discard streak, a dead endpoint)
  -- the one place a step stops undecided -- and what then (`VotingConfig.on_undecided`):
  fail; escalate (re-open the step on the next tier of `VotingConfig.escalate_to` with a
  fresh ballot: the tier's samples continue the step's sample indices, so no draw seed
  repeats, each tier gets the whole sample cap, and its first sample is drawn at
  `first_temperature` like a fresh step's; with `escalate_on_split` a tier whose first k
  votes are not unanimous escalates at once); or plurality (take the leader);
  each escalation and plurality decision is an event (`events`: step-log event details);
* judging with the run's `RedFlagPolicy`, with each sample's temperature and variant;
* counting valid votes on a `Ballot` strictly in sample order;
* the sample rows and the decision row of the step log (`maker.engine.rows`).

Schedulers only choose *when* requests go out: the in-order loop (`vote_step`) sends a
round at once; the speculative window (`maker.runtime.chain.speculation`) sends one request at
a time and counts replies with `count` once every earlier sample is in; the DAG runner
votes many steps concurrently with `vote_step` (and so does a single voted call,
`maker.vote`, through it); the estimator (`maker.budget.estimate`) calls `vote_step` with a
stopping rule, `Measure`: `votes` valid votes per step, none deciding.

    await vote_step(task, clients, step, voting, policy, models, run_seed) -> StepVote

`clients` maps each model name to a `ModelClient`; the returned vote's `winner` is the
decided vote key or None when the step gave up; `ballot.counts` its {key: votes};
`sample_rows()` the step's samples in `SAMPLE_COLUMNS` order; `decision_row()` in
`DECISION_COLUMNS` order.

Example (the simulator needs no network):
    >>> import asyncio
    >>> from maker.cluster import SimulatedModel, parse_sim_model
    >>> from maker.config import VotingConfig
    >>> from maker.engine.red_flags import RedFlagPolicy
    >>> from maker.tasks import get_task
    >>> task = get_task("hanoi", disks=3)
    >>> clients = {"sim:1.0": SimulatedModel(task, parse_sim_model("sim:1.0"))}
    >>> vote = asyncio.run(vote_step(task, clients, task.first_step(), VotingConfig(k=2), RedFlagPolicy(), ("sim:1.0",), 0))
    >>> vote.ballot.counts == {vote.winner: 2}, len(vote.sample_rows()), vote.decision_row()[3]
    (True, 2, 2)
"""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from typing import Any, Protocol

from maker.cluster.gather import gather
from maker.cluster.protocol import Sample, SampleRequest
from maker.cluster.simulated.simulator import mix64
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, StepJudge
from maker.engine.rows import SAMPLE_COLUMNS, Row, append_rows
from maker.engine.tiers import Redecision, Tiers, tier_of
from maker.engine.variants import step_prompts, variant_of
from maker.tasks.base import Oracle, StepInput, Task, Verdict
from maker.voting import Ballot

__all__ = ["Measure", "StepVote", "StoppingRule", "VoteCount", "draw", "recount", "request_cap", "tier_of", "tier_starts",
           "vote_step"]


def request_cap(voting: VotingConfig) -> int:
    """The `max_tokens` sent with every request: one above the output cap, so that a reply
    over the cap is seen (and red-flagged as overlong) instead of silently cut at it."""
    return voting.max_output_tokens + 1


class VoteCount:
    """A ballot that never decides: `Measure`'s, done once `votes` valid votes are in.

    It has a `Ballot`'s reading side (`needed`, `total`, `counts`, `leader`, `lead`), so a
    `StepVote` draws and counts on it exactly as on a ballot: round one asks for `votes`
    samples, later rounds for the valid votes still missing."""

    __slots__ = ("_counts", "total", "votes")

    def __init__(self, votes: int) -> None:
        self.votes = votes
        self.total = 0
        self._counts: dict[Hashable, int] = {}

    def add(self, key: Hashable) -> None:
        """Count one valid vote; never a winner."""
        self._counts[key] = self._counts.get(key, 0) + 1
        self.total += 1

    @property
    def needed(self) -> int:
        return max(self.votes - self.total, 0)

    @property
    def counts(self) -> dict[Hashable, int]:
        return dict(self._counts)

    @property
    def leader(self) -> Hashable | None:
        return max(self._counts, key=self._counts.__getitem__) if self._counts else None

    @property
    def lead(self) -> int:
        top = sorted(self._counts.values(), reverse=True)[:2] + [0, 0]
        return top[0] - top[1]


class StoppingRule(Protocol):
    """When a step stops, other than first-to-ahead-by-k (`StepVote`'s default, no rule):
    `ballot` gives the step's ballot (what counts its votes, and `needed` sizes each round),
    `halted` may stop the step undecided before a round is sent."""

    def ballot(self, vote: StepVote) -> Any: ...

    def halted(self, vote: StepVote) -> bool: ...


class Measure:
    """The estimator's stopping rule: each step draws until `votes` valid votes are in (every
    valid vote graded, none deciding), within the voting config's sample cap and give-up
    counts; and the steps that share one `Measure` (a batch of one model) stop together once
    their counts together stall (`VotingConfig.stalled`: every call failed, every reply cut
    at the cap or red-flagged, as many times as one step would allow), so a model that gives
    nothing to grade is not asked again on every step.  One `Measure` per batch, on one event loop."""

    def __init__(self, votes: int, voting: VotingConfig) -> None:
        self.votes = votes
        self.voting = voting
        self._steps: dict[int, StepVote] = {}

    def ballot(self, vote: StepVote) -> VoteCount:
        self._steps[id(vote)] = vote
        return VoteCount(self.votes)

    def halted(self, vote: StepVote) -> bool:
        steps = self._steps.values()
        return self.voting.stalled(sum(v.done for v in steps), sum(v.ballot.total for v in steps),
                                   sum(v.failed_calls for v in steps), sum(v.cut_off for v in steps))


class StepVote:
    """One step voted on one premise (see the module docstring).

    `seed` is the seed prefix of the step's draws: an int (a run's seed) or a tuple of
    ints (the estimator salts its own).  Use: ``for i in vote.next_round(): ...
    vote.request(i) ... vote.count(i, sample)`` with samples counted in index order;
    `winner` is set once decided, `gave_up` once `next_round` returned nothing.  `rule`: a
    `StoppingRule` in place of first-to-ahead-by-k (the estimator's `Measure`).
    """

    __slots__ = (
        "ballot", "budget_stop", "cut_off", "done", "drawn", "events", "failed_calls", "gave_up", "judge", "max_tokens",
        "models", "n_models", "prompts", "rounds", "rows", "rule", "seed", "starts", "step", "task", "tier",
        "tier_start", "variants", "voting", "winner",
    )

    def __init__(
        self,
        task: Task,
        step: StepInput,
        voting: VotingConfig,
        policy: RedFlagPolicy,
        models: Sequence[str],
        seed: int | tuple[int, ...],
        rule: StoppingRule | None = None,
    ) -> None:
        self.task = task
        self.rule = rule
        self.step = step
        self.voting = voting
        self.models = models
        self.n_models = len(models)
        self.variants = voting.prompt_variants
        self.seed = (seed,) if isinstance(seed, int) else tuple(seed)
        self.prompts = step_prompts(task, step, voting.style_for(task), voting.prompt_variants)  # one per variant
        self.judge = StepJudge(task, step, policy, voting.max_output_tokens)
        self.max_tokens = request_cap(voting)
        self.drawn = 0  # sample indices asked for
        self.done = 0  # samples counted, in sample order
        self.rounds = 0
        self.failed_calls = 0
        self.cut_off = 0  # replies cut at the output cap (finish_reason length)
        self.rows: list[Row] = []
        self.winner: Hashable | None = None
        self.gave_up = False
        self.budget_stop = False  # a round did not fit within the spend cap: the step stopped undecided
        self.tier = 0  # 0: the run's models; t: `voting.escalate_to[t - 1]`
        self.tier_start = 0  # first sample index of the current tier's ballot
        self.starts = {0}  # first sample index of every ballot so far (drawn at first_temperature)
        self.events: list[dict[str, Any]] = []  # escalation / plurality event details
        self.ballot = self._fresh_ballot()

    def _fresh_ballot(self) -> Any:
        """The ballot of a step or of an escalated tier: first-to-ahead-by-k, or the rule's."""
        return Ballot(self.voting.k) if self.rule is None else self.rule.ballot(self)

    # -- what sample i is -----------------------------------------------------------
    def model_of(self, i: int) -> str:
        """The model of sample i (of the current tier: call before the next escalation)."""
        return self.models[(i - self.tier_start) % self.n_models]

    def temperature_of(self, i: int) -> float:
        """Sample i's temperature: `first_temperature` for the first sample of each ballot
        (the step's, and each escalated tier's fresh one), `temperature` for the rest."""
        return self.voting.temperature_of(i - max(s for s in self.starts if s <= i))  # index within its ballot

    def variant_of(self, i: int) -> int:
        return variant_of(i, self.n_models, self.variants) if self.variants > 1 else 0

    def request(self, i: int) -> SampleRequest:
        """Sample i's request: its variant's prompt, temperature, the request cap and its seed."""
        v = variant_of(i, self.n_models, self.variants) if self.variants > 1 else 0
        return SampleRequest(
            self.prompts[v], self.temperature_of(i), self.max_tokens,
            mix64(*self.seed, self.step.index, i), self.step, v,
        )

    # -- rounds ---------------------------------------------------------------------
    def next_round(self) -> range:
        """The sample indices of the next round; empty (and `gave_up` set) when the step
        stops undecided.  Round one asks for k, later rounds for what the leader needs (the
        ballot's `needed`: k on a fresh ballot); with a `rule`, what its ballot needs."""
        voting = self.voting
        drawn = self.drawn
        if self.ballot.needed <= 0:  # a rule's ballot has its votes (a decided ballot needs none either)
            return range(0)
        if self.rule is not None and self.rule.halted(self):
            self.gave_up = True
            return range(0)
        if self._split():
            self._undecided("split")
        elif voting.gives_up(drawn - self.tier_start, self.ballot.total, self.failed_calls, self.cut_off) and not self._undecided():
            return range(0)
        start = self.tier_start
        want = min(self.ballot.needed, start + voting.max_samples_per_step - drawn)
        self.drawn = drawn + want
        self.rounds += 1
        return range(drawn, drawn + want)

    def _split(self) -> bool:
        """`voting.escalate_on_split`: the tier's first round (k samples) is in, its votes are
        not unanimous, and a stronger tier is left."""
        voting = self.voting
        return (voting.escalate_on_split and self.tier < len(voting.escalate_to)
                and self.drawn - self.tier_start == voting.k and len(self.ballot.counts) >= 2)

    def _undecided(self, reason: str = "undecided") -> bool:
        """The current ballot gave up (`reason` "undecided"), or split early ("split"):
        apply `voting.on_undecided`.  True when a fresh ballot on the next tier goes on;
        False when the step stops (`winner` set by plurality, else `gave_up`)."""
        voting, ballot, drawn = self.voting, self.ballot, self.drawn
        event: dict[str, Any] = {"step": self.step.index, "tier": self.tier, "samples": drawn - self.tier_start,
                                 "votes": ballot.total, "leader": _text(ballot.leader), "lead": ballot.lead,
                                 "reason": reason}
        if voting.on_undecided == "escalate" and self.tier < len(voting.escalate_to):
            self.tier += 1
            self.models = voting.escalate_to[self.tier - 1]
            self.n_models = len(self.models)
            self.tier_start = drawn
            self.ballot = self._fresh_ballot()
            self.starts.add(drawn)
            self.failed_calls = self.cut_off = 0
            self.events.append({"event": "escalation", **event, "to_tier": self.tier, "from_sample": drawn,
                                "models": list(self.models)})
            return True
        if voting.on_undecided == "plurality" and ballot.total:
            self.winner = ballot.leader
            self.events.append({"event": "plurality", **event, "answer": _text(ballot.leader), "from_sample": self.tier_start,
                                "message": f"step {self.step.index} decided by plurality (lead {ballot.lead} < k {voting.k})"})
            return False
        self.gave_up = True
        return False

    def event_columns(self, into: dict[str, list[Any]] | None = None) -> dict[str, list[Any]]:
        """This step's events as step-log event columns (step, detail JSON), appended to `into`."""
        cols = into if into is not None else {"step": [], "detail": []}
        for detail in self.events:
            cols["step"].append(self.step.index)
            cols["detail"].append(json.dumps(detail, sort_keys=True))
        return cols

    @property
    def round_done(self) -> bool:
        """Every sample asked for so far has been counted."""
        return self.done == self.drawn

    # -- judging and counting -------------------------------------------------------
    def verdict(self, i: int, sample: Sample) -> Verdict:
        """The checks that need no earlier sample (any order; the speculative window ranks with it)."""
        return self.judge.verdict(sample, self.temperature_of(i) if sample.temperature_sent else None, self.variant_of(i))

    def count(self, i: int, sample: Sample, verdict: Verdict | None = None) -> Verdict:
        """Judge sample i (finishing `verdict` if given) and count it; call in sample order."""
        t = self.temperature_of(i) if sample.temperature_sent else None  # not sent: judged (and logged) as unknown
        v = variant_of(i, self.n_models, self.variants) if self.variants > 1 else 0
        judge = self.judge
        verdict = judge(sample, t, v) if verdict is None else judge.admit(sample, verdict, t, v)
        self.failed_calls += sample.error is not None
        self.cut_off += sample.finish_reason == "length"
        counted = verdict.key is not None and self.winner is None
        if counted:
            self.winner = self.ballot.add(verdict.key)
        self.rows.append((i, self.models[(i - self.tier_start) % self.n_models], t, sample, verdict, counted))
        self.done = i + 1
        return verdict

    # -- rows -----------------------------------------------------------------------
    def sample_rows(self, wasted: bool = False) -> list[tuple[Any, ...]]:
        cols: list[list[Any]] = [[] for _ in SAMPLE_COLUMNS]
        append_rows(cols, self.step.index, self.rows, wasted)
        return list(zip(*cols))

    def decision_row(self) -> tuple[Any, ...]:
        """(step, answer, votes, samples, rounds, correct): `correct` is None without ground truth."""
        task = self.task
        correct = None
        if _is_oracle(task):
            correct = self.judge.text(task.reference_reply(self.step)).key == self.winner
        return (self.step.index, self.winner, self.ballot.total, self.drawn, self.rounds, correct)


def _text(key: Hashable | None) -> str | None:
    return None if key is None else key if isinstance(key, str) else str(key)


def _is_oracle(task: Task, _known: dict[type, bool] = {}) -> bool:  # noqa: B006 (a cache)
    """isinstance(task, Oracle), once per task class: a Protocol check costs tens of microseconds."""
    kind = type(task)
    found = _known.get(kind)
    if found is None:
        found = _known[kind] = isinstance(task, Oracle)
    return found


async def draw(clients: dict[str, Any], requests: Sequence[tuple[str, SampleRequest]]) -> list[Sample]:
    """Send (model, request) pairs together: one batch per model, the models concurrently.

    Returns the samples in the order of `requests`.  Transport failures come back as
    samples with `error` set (the `ModelClient` contract), never as exceptions.
    """
    first = requests[0][0]
    if all(m == first for m, _ in requests):
        return await clients[first].complete([r for _, r in requests])
    positions: dict[str, list[int]] = {}
    for pos, (model, _) in enumerate(requests):
        positions.setdefault(model, []).append(pos)
    names = list(positions)
    replies = await gather(*(clients[m].complete([requests[p][1] for p in positions[m]]) for m in names))
    out: list[Any] = [None] * len(requests)
    for model, samples in zip(names, replies):
        for pos, sample in zip(positions[model], samples):
            out[pos] = sample
    return out


async def vote_step(
    task: Task,
    clients: dict[str, Any],
    step: StepInput,
    voting: VotingConfig,
    policy: RedFlagPolicy,
    models: Sequence[str],
    seed: int | tuple[int, ...],
    budget: Any = None,
    rule: StoppingRule | None = None,
) -> StepVote:
    """Vote `step` round by round until decided or given up; the finished `StepVote`.

    With a `budget` (`maker.budget.spend.Budget`) each round is sent only if its worst case
    fits within the cap; otherwise the step stops undecided with `budget_stop` set (its
    samples so far are in `rows`) and the round is never sent.  `rule`: a `StoppingRule`
    in place of first-to-ahead-by-k (`Measure`: the estimator's)."""
    vote = StepVote(task, step, voting, policy, models, seed, rule)
    while vote.winner is None:
        indices = vote.next_round()
        if not indices:
            break
        pairs = [(vote.model_of(i), vote.request(i)) for i in indices]
        held = 0.0
        if budget is not None:
            reserved = budget.reserve(pairs)
            if reserved is None:  # the round is never sent
                vote.drawn, vote.rounds, vote.budget_stop = indices.start, vote.rounds - 1, True
                break
            held = reserved
        only = clients[vote.models[0]] if vote.n_models == 1 else None  # escalation may change the models
        if only is not None:
            samples = await only.complete([r for _, r in pairs])
        else:
            samples = await draw(clients, pairs)
        if budget is not None:
            budget.settle(held, samples)
        for i, sample in zip(indices, samples):
            vote.count(i, sample)
    return vote


def tier_starts(events: dict[str, list[Any]] | None) -> tuple[dict[int, list[int]], dict[int, str | None]]:
    """From event columns (step, detail JSON): each step's escalation boundaries (first
    sample index of each later tier, ascending) and its plurality decisions {step: answer}
    (`maker.engine.tiers.Tiers.from_columns`)."""
    tiers = Tiers.from_columns(events)
    return tiers.starts, tiers.plural


def recount(
    samples: dict[str, list[Any]], decisions: dict[str, list[Any]], k: int, events: dict[str, list[Any]] | None = None
) -> str | None:
    """Re-decide returned steps from their counted votes, tier by tier
    (`maker.engine.tiers`): the driver's check of a worker's columns.  None when every
    decision is what its deciding tier's votes decide at margin k (or, for a plurality
    decision, their undecided leader), no vote was counted after a decision or on a wasted
    sample, and no tier that escalated had decided; otherwise what is wrong, in one line.
    `events`: the batch's event columns (escalation boundaries, plurality decisions)."""
    tiers = Tiers.from_columns(events)
    votes: dict[int, dict[int, Any]] = {}
    for index, i, answer, counted, wasted in zip(
        samples["step"], samples["sample"], samples["answer"], samples["counted"], samples["wasted"]
    ):
        if not counted:
            continue
        if wasted:  # drawn on a speculative premise that lost: never a vote
            return f"step {index}: a wasted sample was counted"
        votes.setdefault(index, {})[i] = answer
    redecided: dict[int, Redecision] = {}
    for index, by_sample in votes.items():
        keys: list[Any] = [None] * (max(by_sample) + 1)
        for i, answer in by_sample.items():
            keys[i] = answer
        r = redecided[index] = tiers.redecide(index, keys, k)
        if r.how == "margin" and r.tier < tiers.last(index):
            return f"step {index}: escalated although tier {r.tier} had decided"
        if r.how == "margin" and r.consumed < len(keys):
            return f"step {index}: a vote was counted after the decision"
    for index, winner in zip(decisions["step"], decisions["answer"]):
        r = redecided.get(index)
        if index in tiers.plural:
            if r is None or r.how != "plurality" or r.winner != winner or tiers.plural[index] != _text(winner):
                return f"step {index}: the plurality decision {winner!r} is not its ballot's leader"
        elif r is None or r.how != "margin" or r.winner != winner:
            return f"step {index}: the votes do not decide {winner!r}"
    return None
