"""Red flags: throw away samples that must not vote, and say why.

A red-flagged sample is not a vote; the runner draws another.  The paper's finding is
that overlong and malformed replies are far more often wrong, and that discarding them
mostly removes *correlated* errors, so a flag is cheap insurance.  Nothing from a reply
is ever executed: the task parses with regular expressions and integer conversion only.

The policy is data.  Every built-in detector is a named, pure function
``detector(sample, ctx) -> detail or None`` listed once in `BUILTIN`; its thresholds
live in the frozen `RedFlagPolicy`.  Detectors run in that order and the first that
fires names the reason; the task's strict parser and rule check ("malformed",
"rule_breaking") come after the text checks; user detectors and `non_independent`
run last, on replies that would otherwise vote.

Users add detectors as ``(name, fn)`` pairs: on the policy
(``RedFlagPolicy(extra=(("too_polite", fn),))``), on the task class (an optional
``red_flags`` attribute holding such pairs: a class attribute, because workers rebuild
the task from its spec), or from the command line (``--red-flag module:function``; see
`maker.engine.detectors`).  A detector must be a pure function of its arguments: replay
re-runs it on the logged samples.

Example:
    >>> from maker.tasks import get_task
    >>> task = get_task("hanoi", disks=3)
    >>> judge = StepJudge(task, task.first_step(), RedFlagPolicy())
    >>> judge(Sample("move = [1, 0, 2]\\nnext_state = [[3, 2], [], [1]]", "m"), 0.0).key is not None
    True
    >>> judge(Sample("move = [1, 0, 2]\\nnext_state = [[3, 2], [], [1]]", "m"), 0.0).red_flag
    'non_independent'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from maker.cluster.http.openai_compatible import NORMAL_STOPS
from maker.cluster.protocol import Sample
from maker.config import VotingConfig
from maker.engine.detectors import ImportedDetector, detector_spec, load_detector
from maker.errors import DetectorError, UsageError, one_line
from maker.tasks.base import Oracle, StepInput, Task, Verdict, optional, task_judge

__all__ = [
    "BUILTIN", "DETECTORS", "REASONS", "Detector", "ImportedDetector", "RedFlagPolicy", "StepContext", "StepJudge",
    "check_detectors", "detector_spec", "judge_sample", "load_detector", "step_failure",
]


class StepContext:
    """What a detector may know besides the sample: the step, the policy, how the sample
    was drawn, and what the step's earlier samples looked like.

    One context lives per step; the judge sets `temperature` and `variant` before each
    call and records each sample's fingerprints after it.  Detectors only read it.
    """

    __slots__ = (
        "max_output_tokens", "policy", "seen_ids", "seen_texts", "shared", "step", "task", "temperature", "variant",
        "zero_votes",
    )

    def __init__(self, task: Task, step: StepInput, policy: RedFlagPolicy, max_output_tokens: int | None = None) -> None:
        self.task = task
        self.step = step
        self.policy = policy
        #: the output-token cap in force: the policy's own (a what-if) or else the run's
        #: `VotingConfig.max_output_tokens` (that field's default when judged outside a run)
        self.max_output_tokens = policy.max_output_tokens or max_output_tokens or VotingConfig().max_output_tokens
        self.temperature: float | None = None  # None: unknown (the temperature rules are off)
        self.variant = 0
        self.seen_ids: set[str] = set()  # response ids of the step's earlier samples
        self.seen_texts: set[str] = set()  # long replies drawn at temperature > 0
        self.zero_votes: set[tuple[str, int]] = set()  # (model, variant) with a temperature-0 vote
        self.shared: set[tuple[str, str]] = set()  # (shared request, reply) of earlier choices of n-requests


Detector = Callable[[Sample, StepContext], "str | None"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")
_CODE = re.compile(
    r"```|<script|__import__|\bimport\s+[A-Za-z_]|\bdef\s+\w+\s*\(|\b(?:eval|exec|system|popen)\s*\("
    r"|\bsubprocess\b|\brm\s+-rf\b|\$\(|\blambda\b"
)
#: Cheap substring checks that every `_CODE` match contains one of: the regex only runs
#: when one is present, which keeps the common case at a few C-level scans.
_CODE_HINTS = ("`", "<script", "import", "def", "eval", "exec", "system", "popen", "subprocess", "rm", "$(", "lambda")


def transport(sample: Sample, ctx: StepContext) -> str | None:
    """The call failed after retries: there is no reply at all."""
    return sample.error


def empty(sample: Sample, ctx: StepContext) -> str | None:
    return "empty reply" if not sample.text.strip() else None


def overlong(sample: Sample, ctx: StepContext) -> str | None:
    """Longer than the policy allows, or cut off by the token cap (finish_reason length)."""
    if sample.finish_reason == "length":
        return "finish_reason=length"
    limit = ctx.max_output_tokens
    if sample.tokens_out > limit:
        return f"{sample.tokens_out} output tokens > {limit}"
    return None


def unfinished(sample: Sample, ctx: StepContext) -> str | None:
    """The provider stopped the reply for a reason other than a normal stop (`length` is
    `overlong`'s): a content filter, a refusal, a tool or function call, an error, or a
    reason maker does not know.  Such a reply is not a finished answer, whatever it says."""
    reason = str(sample.finish_reason or "stop")
    if reason == "length" or reason.lower() in NORMAL_STOPS:
        return None
    return f"finish_reason={reason}"


def binary(sample: Sample, ctx: StepContext) -> str | None:
    match = _CONTROL.search(sample.text)
    return f"control or undecodable character {match.group()!r}" if match else None


def code(sample: Sample, ctx: StepContext) -> str | None:
    text = sample.text
    if not any(hint in text for hint in _CODE_HINTS):
        return None
    match = _CODE.search(text)
    return f"contains code ({match.group()!r})" if match else None


def non_independent(sample: Sample, ctx: StepContext) -> str | None:
    """Not an independent draw: a cached reply, a repeated response id, a choice of an
    n-request byte-identical to an earlier choice of the same request (any length) above
    temperature 0 or at a temperature not sent, a byte-identical long reply where sampling
    at temperature > 0 makes that improbable, or a second temperature-0 vote of the same
    model on the same prompt (variant).

    Why a copied choice is one vote and not a red flag for all: the server made one draw
    (vLLM #10852, TensorRT-LLM #212 copy a seeded batch's first draw), so its first choice
    is as good evidence as any single request; the copies add none."""
    if sample.cached:
        return "served from a cache"
    rid = sample.response_id
    if rid is not None and rid in ctx.seen_ids:
        return f"response id {rid!r} already seen in this step"
    t = ctx.temperature
    if sample.shared_request is not None and (t is None or t > 0) and (sample.shared_request, sample.text) in ctx.shared:
        return (f"byte-identical to another choice of the same request ({sample.shared_request}) "
                f"at temperature {'not sent' if t is None else f'{t:g}'}: a copy of one draw")
    if t is None:
        return None
    if t > 0:
        text = sample.text
        if len(text) >= ctx.policy.identical_min_chars and text in ctx.seen_texts:
            return f"byte-identical to an earlier {len(text)}-character reply at temperature > 0"
    elif (sample.model, ctx.variant) in ctx.zero_votes:
        return f"a second temperature-0 vote of {sample.model} on prompt variant {ctx.variant}"
    return None


#: Every built-in detector, in the order tried: (reason, function, kind).  Kind 'meta'
#: reads the sample's metadata (runs for every sample), 'text' reads its text only (the
#: verdict is shared by identical replies of a step), 'step' compares it with the step's
#: earlier samples (runs last, in sample order, on replies that would otherwise vote).
BUILTIN: tuple[tuple[str, Detector, str], ...] = (
    ("transport", transport, "meta"),
    ("overlong", overlong, "meta"),  # before empty: a reply cut at the cap is empty when reasoning used it all
    ("unfinished", unfinished, "meta"),  # before empty: a refusal or a tool call has no content, and says why
    ("empty", empty, "meta"),
    ("binary", binary, "text"),
    ("code", code, "text"),
    ("non_independent", non_independent, "step"),
)
DETECTORS: dict[str, Detector] = {name: fn for name, fn, _ in BUILTIN}
TEXT_ONLY = frozenset(name for name, _, kind in BUILTIN if kind == "text")
#: Reasons that no policy can switch off: such a sample has no vote key to count.
ALWAYS = ("transport", "malformed", "rule_breaking")
#: Every built-in reason a sample can be discarded for, the task's own two included.
REASONS = (*DETECTORS, "malformed", "rule_breaking")


@dataclass(frozen=True)
class RedFlagPolicy:
    """Which detectors run, with their thresholds.

    `enabled=False` is `--no-red-flags`, for comparison runs: only `ALWAYS` remains,
    because a failed call or an unparseable reply has no key to vote with.  `skip`
    names built-in detectors to leave out; `extra` adds user detectors as
    ``(name, fn)`` pairs, run after the built-ins on replies that would otherwise vote.

    The output-token cap is owned by `VotingConfig.max_output_tokens` (requests are capped
    from it too, and the judge is handed it: `StepJudge(..., max_output_tokens)`);
    `max_output_tokens` here is None except for a what-if re-judging of a log under another
    cap (`maker.audit.whatif`).  A run or a voted call refuses a policy whose cap differs
    from its VotingConfig's (`maker.runtime.preflight.check_settings`).

    The policy holds no state: the detectors it runs on a task (`plan`) are worked out by
    a cached pure function of the policy and the task's own detectors.
    """

    max_output_tokens: int | None = None
    identical_min_chars: int = 200
    enabled: bool = True
    skip: frozenset[str] = frozenset()
    extra: tuple[tuple[str, Detector], ...] = ()

    def __post_init__(self) -> None:
        cap = self.max_output_tokens
        if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
            raise UsageError(f"--max-output-tokens must be an integer >= 1, got {self.max_output_tokens!r}")
        if isinstance(self.identical_min_chars, bool) or not isinstance(self.identical_min_chars, int) or self.identical_min_chars < 1:
            raise UsageError(f"--identical-min-chars must be an integer >= 1, got {self.identical_min_chars!r}")
        object.__setattr__(self, "skip", frozenset(self.skip))
        object.__setattr__(self, "extra", tuple(tuple(pair) for pair in self.extra))
        for name in self.skip:
            if name not in DETECTORS:
                raise UsageError(f"unknown red-flag detector {name!r} (built-in: {', '.join(DETECTORS)})")
            if name in ALWAYS:
                raise UsageError(f"red flag {name!r} cannot be skipped: such a sample has no vote key")
        _check_names(self.extra)

    def plan(self, task: Task) -> tuple[Any, ...]:
        """(meta, text, user detectors, non_independent on) for `task`: a pure function of
        the policy and the task's `red_flags`, cached outside the policy (`_plan`)."""
        own = tuple(optional(task, "red_flags") or ())
        try:
            return _plan(self, own)
        except TypeError:  # an unhashable detector pair (a list): worked out each time, checked as usual
            return _plan.__wrapped__(self, own)

    def active(self) -> tuple[str, ...]:
        """Names of the built-in detectors this policy runs, in order."""
        if not self.enabled:
            return ("transport",)
        return tuple(name for name in DETECTORS if name not in self.skip)

    def to_metadata(self) -> dict[str, Any]:
        """The policy as JSON-able data for the step log (replay rebuilds it from this)."""
        out: dict[str, Any] = {
            "enabled": self.enabled,
            "identical_min_chars": self.identical_min_chars,
            "skip": sorted(self.skip),
            "detectors": list(self.active()),
            "extra": [[name, detector_spec(fn)] for name, fn in self.extra],
        }
        if self.max_output_tokens is not None:  # a what-if cap; a run's cap is in its voting metadata
            out["max_output_tokens"] = self.max_output_tokens
        return out

    @classmethod
    def from_metadata(cls, meta: dict[str, Any] | None, **overrides: Any) -> RedFlagPolicy:
        """Rebuild a logged policy (user detectors are imported again); `overrides` replace fields."""
        meta = meta or {}
        fields: dict[str, Any] = {
            "enabled": bool(meta.get("enabled", True)),
            "max_output_tokens": meta.get("max_output_tokens"),
            "identical_min_chars": int(meta.get("identical_min_chars", 200)),
            "skip": frozenset(meta.get("skip", ())),
            "extra": tuple((name, load_detector(spec)[1]) for name, spec in meta.get("extra", ())),
        }
        fields.update(overrides)
        return cls(**fields)


@functools.lru_cache(maxsize=256)
def _plan(policy: RedFlagPolicy, own: tuple[Any, ...]) -> tuple[Any, ...]:
    """`RedFlagPolicy.plan` for a task whose own detectors are `own`."""
    active = policy.active()
    return (
        tuple((n, f) for n, f, kind in BUILTIN if kind == "meta" and n in active),
        tuple((n, f) for n, f, kind in BUILTIN if kind == "text" and n in active),
        _users(own, policy),
        "non_independent" in active,
    )


def _check_names(pairs: Sequence[tuple[str, Any]]) -> None:
    seen: set[str] = set()
    for pair in pairs:
        if len(pair) != 2:
            raise UsageError(f"a user red-flag detector is a (name, function) pair, got {pair!r}")
        name, fn = pair
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:-]*", name):
            raise UsageError(f"red-flag detector name {name!r} must be a plain identifier")
        if name in REASONS:
            raise UsageError(f"red-flag detector {name!r} clashes with a built-in reason")
        if name in seen:
            raise UsageError(f"red-flag detector {name!r} is given twice")
        if not callable(fn):
            raise UsageError(f"red-flag detector {name!r} is not callable")
        seen.add(name)


def user_detectors(task: Task, policy: RedFlagPolicy) -> tuple[tuple[str, Detector], ...]:
    """The task's own detectors (its `red_flags`, `Task`'s optional member), then the policy's."""
    return _users(tuple(optional(task, "red_flags") or ()), policy)


def _users(own: tuple[Any, ...], policy: RedFlagPolicy) -> tuple[tuple[str, Detector], ...]:
    pairs = (*own, *policy.extra) if policy.enabled else ()
    _check_names(pairs)
    return tuple(pairs)


class StepJudge:
    """Judges the samples of one step, remembering verdicts of identical reply texts.

    Most samples of a step are the same text (the right answer), so the text-only
    checks and the task's parser run once per distinct reply (and variant), not once
    per sample.  Call it on the step's samples in sample order:
    ``judge(sample, temperature, variant)``.  A caller that receives samples out of
    order (the speculative window) uses `verdict` on arrival and `admit` in sample order.
    """

    __slots__ = ("_ctx", "_last", "_memos", "_meta", "_task", "_text", "_track", "_user")

    def __init__(self, task: Task, step: StepInput, policy: RedFlagPolicy, max_output_tokens: int | None = None) -> None:
        self._task = task
        self._ctx = StepContext(task, step, policy, max_output_tokens)
        self._meta, self._text, self._user, self._track = policy.plan(task)
        self._last = bool(self._user) or self._track  # any check that runs last, in sample order
        self._memos: list[dict[str, Verdict]] = [{}]

    def __call__(self, sample: Sample, temperature: float | None = None, variant: int = 0) -> Verdict:
        """The sample's vote key, or the first red flag it raises (samples in sample order)."""
        verdict = self.verdict(sample, temperature, variant)
        if not self._last:
            return verdict
        return self.admit(sample, verdict, temperature, variant)

    def verdict(self, sample: Sample, temperature: float | None = None, variant: int = 0) -> Verdict:
        """Everything but the checks against the step's earlier samples; any order is fine."""
        ctx = self._ctx
        ctx.temperature = temperature
        ctx.variant = variant
        for reason, detector in self._meta:
            detail = detector(sample, ctx)
            if detail is not None:
                return Verdict(None, reason, detail)
        return self.text(sample.text, sample, variant)

    def admit(self, sample: Sample, verdict: Verdict, temperature: float | None = None, variant: int = 0) -> Verdict:
        """The final verdict: user detectors and `non_independent` on a would-be vote, then
        record the sample's fingerprints for later samples of the step (sample order)."""
        if not self._last:
            return verdict
        ctx = self._ctx
        ctx.temperature = temperature
        ctx.variant = variant
        if verdict.key is not None:
            for reason, detector in self._user:
                try:
                    detail = detector(sample, ctx)
                except Exception as exc:  # a user's bug: name it, never swallow it
                    raise DetectorError(
                        f"red-flag detector {reason!r} raised {type(exc).__name__}: {one_line(exc)}", name=reason
                    ) from None
                if detail is not None and detail is not False:
                    verdict = Verdict(None, reason, detail if isinstance(detail, str) else "flagged")
                    break
            if self._track and verdict.key is not None:
                detail = non_independent(sample, ctx)
                if detail is not None:
                    verdict = Verdict(None, "non_independent", detail)
        if self._track and sample.error is None:
            if sample.response_id is not None:
                ctx.seen_ids.add(sample.response_id)
            if sample.shared_request is not None and verdict.key is not None:
                ctx.shared.add((sample.shared_request, sample.text))
            if temperature is not None:
                if temperature > 0:
                    if len(sample.text) >= ctx.policy.identical_min_chars:
                        ctx.seen_texts.add(sample.text)
                elif verdict.key is not None:
                    ctx.zero_votes.add((sample.model, variant))
        return verdict

    def text(self, text: str, sample: Sample | None = None, variant: int = 0) -> Verdict:
        """The text-only part of the verdict (memoised per step and variant)."""
        memos = self._memos
        while len(memos) <= variant:
            memos.append({})
        memo = memos[variant]
        verdict = memo.get(text)
        if verdict is None:
            probe = sample if sample is not None else Sample(text, "")
            ctx = self._ctx
            for reason, detector in self._text:
                detail = detector(probe, ctx)
                if detail is not None:
                    verdict = Verdict(None, reason, detail)
                    break
            else:
                verdict = task_judge(self._task, ctx.step, text, variant)
            memo[text] = verdict
        return verdict


def judge_sample(
    task: Task, step: StepInput, sample: Sample, policy: RedFlagPolicy, temperature: float | None = None, variant: int = 0
) -> Verdict:
    """A lone sample's vote key, or the first red flag it raises."""
    return StepJudge(task, step, policy)(sample, temperature, variant)


def check_detectors(task: Task, policy: RedFlagPolicy, variants: int = 1, max_output_tokens: int | None = None) -> None:
    """Fail fast, before anything is spent, when a user detector is broken.

    Each user detector sees the task's known-good reply for the first step (in every
    prompt variant the run uses); one that raises or discards it is a UsageError naming
    it.  A task without ground truth has no known-good reply: only the names are checked.
    """
    users = user_detectors(task, policy)
    if not users or not isinstance(task, Oracle):
        return
    gradable = optional(task, "gradable_steps")  # a plan: a voted step, never a tool (never run here)
    if gradable is not None:
        candidates = gradable()
        if not candidates:
            return
        step = task.true_step(candidates[0])  # type: ignore[attr-defined]
    else:
        step = task.first_step()
    reference = task.reference_reply(step)
    render = optional(task, "variant_reply")
    for variant in range(variants):
        text = reference if variant == 0 or render is None else render(step, reference, variant)
        sample = Sample(text, "probe", tokens_in=1, tokens_out=len(text) // 4 + 1)
        ctx = StepContext(task, step, policy, max_output_tokens)
        ctx.temperature, ctx.variant = 0.0, variant
        for name, fn in users:
            try:
                detail = fn(sample, ctx)
            except Exception as exc:
                raise UsageError(
                    f"red-flag detector {name!r} raised {type(exc).__name__}: {one_line(exc)} on a known-good "
                    f"reply (step {step.index}); nothing was spent"
                ) from None
            if detail is not None and detail is not False:
                raise UsageError(
                    f"red-flag detector {name!r} discards a known-good reply (the reference answer for step {step.index}, "
                    f"prompt variant {variant}): {detail}; nothing was spent"
                )



def step_failure(samples: dict[str, list[Any]], step: int, voting: Any, label: str = "", *,
                 name: str | None = None, after: str = "the log is intact") -> Exception:
    """The error for a step a worker gave up on: the endpoint is down, every sample
    discarded, or the vote cap (`samples`: sample columns holding the step's rows).

    Why three: "the endpoint fails every call", "the policy or the model throws everything
    away" and "the votes never settled" need different fixes, so the message says which.
    `name` names the step in the message (default "step N" and `label`); `after` ends it
    (a planner that stops says "nothing was run").  Every runner that gives up on a step
    raises this one error (a run, a plan, a map, a voted call, the decomposer).
    """
    from collections import Counter

    from maker.errors import DiscardStreakError, EndpointDownError, VoteCapError

    reasons: Counter[str] = Counter()
    drawn = votes = 0
    last_error = None
    for index, flag, counted, wasted, error in zip(
        samples["step"], samples["red_flag"], samples["counted"], samples["wasted"], samples["error"]
    ):
        if index != step or wasted:
            continue
        drawn += 1
        votes += bool(counted)
        if flag is not None:
            reasons[flag] += 1
        last_error = error or last_error
    step_name = name or f"step {step}{label}"
    if drawn and not votes and reasons.get("transport", 0) >= voting.max_failed_calls:
        return EndpointDownError(
            f"{step_name}: {reasons['transport']} calls in a row failed after their retries, so the run stopped "
            f"(--max-failed-calls {voting.max_failed_calls}); is the model endpoint up? last error: {last_error}; "
            f"{after}",
            step=step,
            samples=drawn,
            reasons=dict(reasons),
        )
    cut = [(tokens or 0, thinking or 0) for index, finish, tokens, thinking, wasted in zip(
        samples["step"], samples["finish_reason"], samples["tokens_out"],
        samples.get("reasoning_tokens") or [0] * len(samples["step"]), samples["wasted"])
        if index == step and not wasted and finish == "length"]
    if drawn and not votes and len(cut) >= voting.max_cut_off:
        hidden = sum(t for _, t in cut)
        why = (f"; {hidden:,} of their {sum(o for o, _ in cut):,} output tokens were hidden reasoning" if hidden else "")
        return DiscardStreakError(
            f"{step_name}: {len(cut)} of {drawn} samples were cut off at the output cap (finish_reason=length; "
            f"--max-output-tokens {voting.max_output_tokens}, sent as max_tokens {voting.max_output_tokens + 1}){why}, "
            f"so the run stopped (--max-cut-off {voting.max_cut_off}); raise --max-output-tokens or use a model whose "
            f"replies fit; {after}",
            step=step,
            samples=drawn,
            reasons=dict(reasons),
        )
    if drawn and not votes:
        by = ", ".join(f"{reason} {n}" for reason, n in reasons.most_common()) or "no reason logged"
        return DiscardStreakError(
            f"{step_name}: all {drawn} samples were red-flagged ({by}); the red-flag policy or the model discards "
            f"everything, so the run stopped (--max-discards-in-a-row {voting.max_discards_in_a_row}); {after}",
            step=step,
            samples=drawn,
            reasons=dict(reasons),
        )
    return VoteCapError(
        f"{step_name}: no answer led by k={voting.k} after {drawn} samples (--max-samples-per-step "
        f"{voting.max_samples_per_step}); {after}",
        step=step,
        samples=drawn,
    )
