"""The draft: a cheap proposer that walks a chain ahead of the voters.

Why: on a chain, step t+1's prompt needs step t's decision, so an in-order run takes at
least one voting round trip per step, and speculation on the current leader cannot beat
that either (`maker.runtime.chain.speculation`).  Speculative decoding's idea, one level up,
removes the wall: a fast proposer guesses step t's answer, the window opens step t+1
on the premise that guess implies, guesses again, and so on -- so D steps are voted at
once, each on the premise the proposer implied.  The first step whose decision differs
from its guess discards every slot after it (their samples logged as wasted) and the
proposer goes on from the decided (or leading) state.  The votes alone decide: a vote
counts only for the step whose true premise its prompt holds, so the decisions are
exactly those of an in-order run.

What proposes (`Draft.kind`):

* ``reference`` -- the task's ground truth (`Oracle.reference_reply`; a benchmark and
  load-test tool: a task with ground truth needs no LLM);
* ``function`` -- ``fn(task, step) -> reply text`` (sync; ``py:pkg.module:fn`` or a
  Python callable passed as ``maker.run(..., draft=fn)``), judged by the step's parser
  like a model reply; None means "no guess";
* ``model`` -- any model string maker takes (``local``, ``sim:0.95,latency=0.01``,
  ``openai/gpt-4.1-nano``, a ``py:`` client factory): one sample per step at the first
  temperature on the canonical prompt, judged with the run's red flags.

Every proposal is logged as a step-log row of its own kind, ``draft`` (never a vote),
with its reply, key, tokens, latency and cost; the cost is part of the run's cost and is
shown apart (`DraftTally`).  Adaptive depth (`DepthControl`): the window grows by one
step per accepted guess and halves on a rejected one, between 1 and the run's
``--speculate`` depth, so a bad proposer costs little more than no proposer.

    >>> parse_draft("none", None), parse_draft("reference", None).kind
    (None, 'reference')
    >>> parse_draft("sim:0.95,latency=0.01", None).model
    'sim:0.95,latency=0.01'
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from maker.cluster.protocol import Sample, SampleRequest
from maker.cluster.simulated.simulator import mix64
from maker.errors import UsageError
from maker.tasks.base import Oracle, StepInput, Task, Verdict

__all__ = ["DRAFT_DEPTH", "DepthControl", "Draft", "DraftTally", "check_draft", "draft_event", "draft_tally", "in_order_seconds", "parse_draft"]

#: The window depth a drafted run gets when --speculate is not given.
DRAFT_DEPTH = 64
#: The depth a drafted window starts at (it adapts from there: `DepthControl`).
START_DEPTH = 4
#: Salt of a draft request's seed: mix64(run seed, step, DRAFT_SALT) never equals a vote's draw seed
#: mix64(run seed, step, i) for a sample index i < 2**40.
DRAFT_SALT = 0x44524146545F5F5F  # "DRAFT___"
#: The model name draft rows of the reference and of a function carry.
REFERENCE = "reference"


@dataclass(frozen=True)
class Draft:
    """What proposes premises ahead of the votes (see the module docstring).

    `model`: the model string of a ``model`` draft (the worker's client of that name), the
    ``py:`` reference of a ``function`` draft, "reference" for the reference.  `function`:
    a callable (task, step) -> reply text, shipped to the workers by value; None when
    `model` names it (imported on the worker).  `spec`: a ``model`` draft's `ModelSpec`
    (where to reach it), which the worker pool builds a client from."""

    kind: str  # "reference" | "function" | "model"
    model: str = REFERENCE
    function: Callable[[Task, StepInput], Any] | None = field(default=None, compare=False)
    spec: Any = None

    @property
    def label(self) -> str:
        return self.model if self.kind != "function" or self.function is None else _name(self.function)


def _name(fn: Any) -> str:
    return f"fn:{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


def _two_argument(fn: Any) -> bool:
    """A (task, step) function: exactly two required positional parameters."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    required = [p for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(required) == 2


def parse_draft(value: Any, spec_for: Callable[[str], Any] | None) -> Draft | None:
    """The `Draft` a ``--draft`` value or ``maker.run(draft=...)`` names; None for no draft.

    `value`: None, False, "none" (no draft); True or "reference"; a callable (task, step)
    -> reply text; "py:pkg.module:fn" naming such a function (or a `ModelClient`
    factory, which makes it a model); a `ModelSpec`; any other string is a model string.
    `spec_for(model)` builds the `ModelSpec` of a model string (the CLI passes one that
    reuses a --model's settings); None: a plain ``ModelSpec(model)``.

    Raises UsageError (one line) for an empty string or a value of another type, and
    ModelConfigError when a ``py:`` name does not import.
    """
    from maker.cluster import ModelSpec

    if value is None or value is False or value == "none":
        return None
    if value is True or value == "reference":
        return Draft("reference")
    if isinstance(value, ModelSpec):
        return Draft("model", value.model, spec=value)
    if callable(value) and not hasattr(value, "complete"):
        if not _two_argument(value):
            raise UsageError(f"a draft function takes (task, step) and returns a reply; {_name(value)} does not")
        return Draft("function", _name(value), function=value)
    if hasattr(value, "complete"):  # a ModelClient object
        spec = ModelSpec(value)
        return Draft("model", spec.model, spec=spec)
    if not isinstance(value, str) or not value.strip() or value != value.strip():
        raise UsageError(f"--draft takes none, reference, a model string or py:module:function; got {value!r}")
    if value.startswith("py:"):
        from maker.cluster.clients import user_factory

        if _two_argument(user_factory(value)):
            return Draft("function", value)
    spec = spec_for(value) if spec_for is not None else ModelSpec(value)
    return Draft("model", spec.model, spec=spec)


class Proposer:
    """The draft as a worker uses it: `guess` for the synchronous kinds, `request` and
    `judge` for a model.  Built once per segment from the job's `Draft`."""

    def __init__(self, draft: Draft, task: Task, clients: dict[str, Any], run_seed: int) -> None:
        self.draft = draft
        self.task = task
        self.run_seed = run_seed
        self.sync = draft.kind != "model"
        self.client = clients.get(draft.model) if draft.kind == "model" else None
        fn = draft.function
        if draft.kind == "function" and fn is None:
            from maker.cluster.clients import user_factory

            fn = user_factory(draft.model)
        self.function = fn

    def guess(self, vote: Any) -> tuple[Hashable | None, Sample, Verdict]:
        """A synchronous proposal for `vote`'s step: (key or None, the pseudo-sample to log, its verdict)."""
        import time

        started = time.perf_counter()
        if self.draft.kind == "reference":
            text = self.task.reference_reply(vote.step)  # type: ignore[attr-defined]
        else:
            assert self.function is not None
            try:
                answer = self.function(self.task, vote.step)
            except Exception as exc:  # the user's heuristic failed on this premise: no guess
                sample = Sample("", self.draft.label, finish_reason="error", error=f"{type(exc).__name__}: {exc}"[:300])
                return None, sample, Verdict(None, "draft_error", sample.error)
            if answer is None:
                return None, Sample("", self.draft.label, finish_reason="none"), Verdict(None, "no_guess", None)
            text = answer if isinstance(answer, str) else str(answer)
        sample = Sample(text, self.draft.label, latency_s=time.perf_counter() - started)
        verdict = vote.judge.text(text)
        return verdict.key, sample, verdict

    def request(self, vote: Any) -> SampleRequest:
        """The model's one draw for `vote`'s step: the canonical prompt at the first temperature."""
        return SampleRequest(vote.prompts[0], vote.voting.first_temperature, vote.max_tokens,
                             mix64(self.run_seed, vote.step.index, DRAFT_SALT), vote.step, 0)

    def judge(self, vote: Any, sample: Sample) -> Verdict:
        """The run's red flags and parser on the model's reply (checks that need no other sample)."""
        return vote.judge.verdict(sample, vote.voting.first_temperature, 0)


class DepthControl:
    """Adaptive window depth: +1 per accepted guess, halved per rejected one, in [1, limit]."""

    __slots__ = ("depth", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.depth = min(self.limit, START_DEPTH)

    def accepted(self) -> None:
        self.depth = min(self.limit, self.depth + 1)

    def rejected(self) -> None:
        self.depth = max(1, self.depth // 2)


@dataclass
class DraftTally:
    """The draft's record over a run (or a segment): what `maker run` and `maker report` show.

    `proposed`: guesses on a step's true premise (decided steps); `accepted`: of those,
    equal to the decision; `no_guess`: proposals without a valid guess (a red flag, an
    error, None); `wasted`: proposals on a premise that lost; `cost_usd`: every proposal's
    cost (wasted ones too); `elapsed_s`: seconds the drafted segments took;
    `in_order_s`: what an in-order run would have waited for the same steps' votes
    (`in_order_seconds`) -- so `speedup` is an estimate from the voters' latencies."""

    model: str = ""
    proposed: int = 0
    accepted: int = 0
    no_guess: int = 0
    wasted: int = 0
    samples: int = 0
    cost_usd: float = 0.0
    elapsed_s: float = 0.0
    in_order_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0

    def add_rows(self, drafts: dict[str, list[Any]], decided: dict[int, Any]) -> None:
        """Count draft rows (step-log columns) against the decisions {step: answer} of the same batch."""
        self.samples += len(drafts.get("step", ()))
        self.cost_usd += sum(c or 0.0 for c in drafts.get("cost_usd", ()))
        self.tokens_in += sum(t or 0 for t in drafts.get("tokens_in", ()))
        self.tokens_out += sum(t or 0 for t in drafts.get("tokens_out", ()))
        for step, answer, wasted in zip(drafts.get("step", ()), drafts.get("answer", ()), drafts.get("wasted", ())):
            if wasted:
                self.wasted += 1
            elif answer is None:
                self.no_guess += 1
            elif step in decided:
                self.proposed += 1
                self.accepted += answer == decided[step]

    @property
    def acceptance(self) -> float | None:
        """Accepted guesses / guesses on a decided step's true premise; None before any."""
        return self.accepted / self.proposed if self.proposed else None

    @property
    def speedup(self) -> float | None:
        """Estimated in-order seconds / measured seconds; None when either is unknown."""
        return self.in_order_s / self.elapsed_s if self.elapsed_s > 0 and self.in_order_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        acceptance, speedup = self.acceptance, self.speedup
        return {
            "model": self.model, "proposed": self.proposed, "accepted": self.accepted, "no_guess": self.no_guess,
            "wasted": self.wasted, "samples": self.samples, "cost_usd": round(self.cost_usd, 6),
            "acceptance": None if acceptance is None else round(acceptance, 4),
            "elapsed_s": round(self.elapsed_s, 3), "in_order_s_estimate": round(self.in_order_s, 3),
            "speedup_estimate": None if speedup is None else round(speedup, 2),
            "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DraftTally:
        """The tally `to_dict` wrote (what `maker run --json` shows under extra.draft_stats)."""
        return cls(d.get("model", ""), d.get("proposed", 0), d.get("accepted", 0), d.get("no_guess", 0),
                   d.get("wasted", 0), d.get("samples", 0), d.get("cost_usd", 0.0), d.get("elapsed_s", 0.0),
                   d.get("in_order_s_estimate", 0.0), d.get("tokens_in", 0), d.get("tokens_out", 0))

    def line(self) -> str:
        """The summary's line: acceptance, the estimated speed-up, samples and cost."""
        acceptance = "unknown (no guess on a decided step)" if self.acceptance is None else f"{self.acceptance:.1%}"
        speedup = "unknown" if self.speedup is None else f"~{self.speedup:.1f}x"
        cost = f"${self.cost_usd:.4f}" if self.cost_usd else "$0 (simulated, free, or no price known)"
        return (f"  draft {self.model}: acceptance {acceptance} ({self.accepted:,} of {self.proposed:,} guesses), "
                f"speed-up {speedup} over in-order (estimated from the voters' latencies), "
                f"{self.samples:,} draft samples ({self.wasted:,} on lost premises), draft cost {cost}")


def in_order_seconds(samples: dict[str, list[Any]], decisions: dict[str, list[Any]], k: int) -> float:
    """What an in-order run would have waited for these decided steps' votes: per step, the
    slowest of its first k samples (round one, drawn together) plus, per later round, the
    slowest of its later samples -- an estimate from logged latencies (seconds), since
    later rounds' sizes are not logged.  Wasted samples are left out."""
    first: dict[int, float] = {}
    later: dict[int, float] = {}
    for step, i, latency, wasted in zip(samples["step"], samples["sample"], samples["latency_s"], samples["wasted"]):
        if wasted or latency is None:
            continue
        into = first if i < k else later
        if latency > into.get(step, 0.0):
            into[step] = latency
    total = 0.0
    for step, rounds in zip(decisions.get("step", ()), decisions.get("rounds", ())):
        total += first.get(step, 0.0) + max(0, (rounds or 1) - 1) * later.get(step, 0.0)
    return total


def draft_tally(info: Any, events: list[tuple[int, dict[str, Any]]]) -> DraftTally | None:
    """The draft's record from a step log (`maker.log.steplog.LogInfo`): its `draft` rows
    against the decisions written with them (one part holds a segment's both), and the
    per-segment `draft` events' times (`events`: `maker.runtime.guard.log_events`); None
    when the log holds no draft row."""
    import pyarrow.compute as pc

    from maker.log.steplog import iter_tables

    columns = ("step", "answer", "cost_usd", "wasted", "tokens_in", "tokens_out")
    tally: DraftTally | None = None
    for table in iter_tables(info, [*columns, "model"]):
        kind = table["kind"]
        drafts = table.filter(pc.equal(kind, "draft"))
        if not drafts.num_rows:
            continue
        if tally is None:
            tally = DraftTally(model=str(drafts["model"][0].as_py()))
        decided = table.filter(pc.equal(kind, "decision"))
        tally.add_rows({c: drafts[c].to_pylist() for c in columns},
                       dict(zip(decided["step"].to_pylist(), decided["answer"].to_pylist())))
    if tally is not None:
        for _, detail in events:
            if detail.get("event") == "draft":
                tally.elapsed_s += float(detail.get("elapsed_s") or 0.0)
                tally.in_order_s += float(detail.get("in_order_s") or 0.0)
    return tally


def check_draft(draft: Draft | None, task: Task, speculate: int | None, specs: Sequence[Any], tier_specs: Sequence[Any]) -> list[Any]:
    """Refuse a draft that cannot work here (UsageError, one line, before anything is spent);
    the model specs the worker pool must add for it (a draft model no --model names)."""
    if draft is None:
        return []
    if draft.kind == "reference" and not isinstance(task, Oracle):
        raise UsageError(f"--draft reference needs a task with ground truth; {task.spec.name} has none")
    if draft.kind != "reference" and speculate == 0:
        raise UsageError("--draft proposes the premises of the speculative window: it needs --speculate > 0 "
                         "(default with a draft: 64)")
    if draft.kind != "model":
        return []
    from maker.cluster import check_spec
    from maker.cluster.worker import check_shippable

    spec = draft.spec
    check_spec(spec)
    check_shippable(task, [spec])  # the simulator as a draft needs ground truth, like as a voter
    named = {s.model for s in (*specs, *tier_specs)}
    return [] if spec.model in named else [spec]


def draft_event(result: Any, in_order_s: float, first: int) -> dict[str, list[Any]]:
    """One event row per drafted segment: what `maker report` needs for the draft's speed-up."""
    detail = {"event": "draft", "steps": len(result.decisions["step"]), "elapsed_s": round(result.elapsed_s, 6),
              "in_order_s": round(in_order_s, 6), "depth": result.draft_depth}
    return {"step": [first], "detail": [json.dumps(detail, sort_keys=True)]}
