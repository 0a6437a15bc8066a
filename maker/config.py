"""Run settings as frozen values, passed explicitly (they must reach Ray workers intact).

Every setting a user gives has its one owner here: how each step is voted (`VotingConfig`),
where the work runs (`ClusterConfig`), how the live guard judges the run (`GuardConfig`)
and how a plan's ready steps are dispatched (`DagConfig`).  Everything else derives its
values from these; `maker.engine.red_flags.RedFlagPolicy` (which detectors run) lives with
the detectors it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from maker.errors import UsageError

#: What a step that gives up does (`VotingConfig.on_undecided`).
UNDECIDED_POLICIES = ("fail", "escalate", "plurality")


@dataclass(frozen=True)
class VotingConfig:
    """How each step is voted.

    The first sample of a step is drawn at `first_temperature` (0: the model's best
    guess), later ones at `temperature` so that they are not copies of each other; an
    escalated tier's fresh ballot starts at `first_temperature` too.
    `max_samples_per_step` is the loud cap: hitting it stops the run with an error
    instead of silently accepting an undecided step or paying forever; so is
    `max_discards_in_a_row` for a step whose every sample is red-flagged, and
    `max_failed_calls` for a step whose every call failed (each after its retries): an
    endpoint that is down or hangs would otherwise cost 50 samples' worth of timeouts;
    and `max_cut_off` for a step whose samples keep coming back cut at the output cap
    (``finish_reason = length``) before any vote: a reasoning model whose hidden reasoning
    fills the cap would otherwise be paid for 50 empty replies.
    `prompt_variants` spreads a step's samples over the task's prompt variants
    (see `maker.engine.variants`).  `prompt_style` ("chat" or "completion"): None takes
    the task's own `prompt_style` (the embedded model's `chase` wants completion
    prompts), else chat -- `style_for(task)`.

    `on_undecided` says what a step that gives up does (`gives_up`): ``"fail"`` stops the
    run (the default); ``"escalate"`` re-opens it on the next tier of `escalate_to` (a
    tuple of tiers, each a tuple of model strings: a cost-aware cascade, cheap models
    first) with a fresh ballot, and fails only when the last tier gives up too;
    ``"plurality"`` takes the ballot's leader (a logged warning; no margin guarantee).
    `escalate_on_split` (with ``"escalate"``) escalates a step at once when the first k
    votes of its tier are not unanimous, instead of drawing on to the sample cap: the
    cheap tier's early split is the sign of a step it finds hard.
    Raises UsageError for an unknown policy, tiers without ``"escalate"``, or
    ``"escalate"`` without tiers (or `escalate_on_split` without it).
    """

    k: int = 3
    first_temperature: float = 0.0
    temperature: float = 0.1
    max_samples_per_step: int = 100
    max_output_tokens: int = 750
    prompt_style: str | None = None
    prompt_variants: int = 1
    max_discards_in_a_row: int = 50
    max_failed_calls: int = 6
    max_cut_off: int = 4
    on_undecided: str = "fail"
    escalate_to: tuple[tuple[str, ...], ...] = ()
    escalate_on_split: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise UsageError(f"--k must be an integer >= 1, got {self.k!r}")
        if self.max_samples_per_step < self.k:
            raise UsageError(
                f"--max-samples-per-step ({self.max_samples_per_step}) must be at least k ({self.k})"
            )
        if self.max_output_tokens < 1:
            raise UsageError("--max-output-tokens must be >= 1")
        for name in ("first_temperature", "temperature"):
            value = getattr(self, name)
            if not 0.0 <= value <= 2.0:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 2], got {value}")
        for name in ("prompt_variants", "max_discards_in_a_row", "max_failed_calls", "max_cut_off"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be an integer >= 1, got {value!r}")
        tiers = tuple(tuple(str(m) for m in ([t] if isinstance(t, str) else t)) for t in self.escalate_to or ())
        object.__setattr__(self, "escalate_to", tiers)  # lists (from a log's JSON metadata) become tuples
        if self.on_undecided not in UNDECIDED_POLICIES:
            raise UsageError(f"--on-undecided must be one of {', '.join(UNDECIDED_POLICIES)}, got {self.on_undecided!r}")
        if tiers and self.on_undecided != "escalate":
            raise UsageError("--escalate-to needs --on-undecided escalate")
        if self.escalate_on_split and self.on_undecided != "escalate":
            raise UsageError("--escalate-on-split needs --on-undecided escalate")
        if self.on_undecided == "escalate" and (not tiers or not all(tiers)):
            raise UsageError("--on-undecided escalate needs --escalate-to MODEL [MODEL ...] (one flag per tier)")
        if self.prompt_style not in (None, "chat", "completion"):
            raise UsageError(f"prompt style must be chat or completion, got {self.prompt_style!r}")

    @classmethod
    def from_options(cls, **options: object) -> VotingConfig:
        """A config from options that may be "not given" (None): those take this class's
        defaults, so the CLI, the MCP tools and Python share one owner of every value.
        Raises UsageError as the constructor does; TypeError for a name it has no field for."""
        return cls(**{name: value for name, value in options.items() if value is not None})  # type: ignore[arg-type]

    def gives_up(self, drawn: int, votes: int, failed_calls: int, cut_off: int = 0) -> bool:
        """Whether a step stops undecided: the sample cap, or no valid vote yet after
        `max_discards_in_a_row` samples, `max_failed_calls` failed calls or `max_cut_off`
        replies cut at the output cap."""
        return drawn >= self.max_samples_per_step or self.stalled(drawn, votes, failed_calls, cut_off)

    def stalled(self, drawn: int, votes: int, failed_calls: int, cut_off: int = 0) -> bool:
        """No valid vote yet after `max_discards_in_a_row` samples, `max_failed_calls` failed
        calls or `max_cut_off` replies cut at the output cap: the model gives nothing to
        count (a step's counts, or a measured batch's: `maker.engine.step.Measure`)."""
        return votes == 0 and (drawn >= self.max_discards_in_a_row or failed_calls >= self.max_failed_calls
                               or cut_off >= self.max_cut_off)

    def style_for(self, task: object) -> str:
        """The prompt style `task`'s steps are rendered in: `prompt_style` when given, else
        the task's own (`Task.prompt_style`), else "chat"."""
        from maker.tasks.base import optional

        return self.prompt_style or optional(task, "prompt_style") or "chat"

    @property
    def escalation_models(self) -> tuple[str, ...]:
        """Every model of every escalation tier, once each, in order."""
        return tuple(dict.fromkeys(m for tier in self.escalate_to for m in tier))

    def temperature_of(self, sample_index: int) -> float:
        """The temperature of sample `sample_index` of one ballot (a step's, or an escalated
        tier's fresh one: `maker.engine.step.StepVote.temperature_of` counts from its start)."""
        return self.first_temperature if sample_index == 0 else self.temperature


@dataclass(frozen=True)
class ClusterConfig:
    """Where the work runs: a local Ray instance by default, or `address`."""

    workers: int = 1
    address: str | None = None
    segment_steps: int = 2048
    segment_seconds: float = 2.0
    #: steps voted ahead on the premise the current leader implies; None: automatic
    #: (8, or 0 when every model is a zero-latency simulator) -- see maker.runtime.chain.speculation
    speculate: int | None = None
    #: what proposes the window's premises before any reply is in (decisions unchanged; see
    #: maker.runtime.chain.draft): None (no draft), "reference" (or True: the task's ground truth),
    #: a model string or ModelSpec (a cheap model), a function (task, step) -> reply text, or
    #: "py:pkg.module:fn" naming one
    draft: Any = None


@dataclass(frozen=True)
class GuardConfig:
    """How the live guard judges the run and what it may do about it."""

    target: float = 0.95  # wanted probability that the whole run is right
    p_assumed: float | None = None  # p the run assumed (--p); None: the p that k just suffices for
    adaptive: bool = False  # raise k when an alarm says the plan no longer holds
    k_max: int | None = None  # the most k may rise to (default with adaptive: 3 * k)
    collision_factor: float = 3.0
    min_collisions: int = 3
    min_votes: int = 100  # judge p only after this many counted votes (and a perfect record clears the plan)
    level: float = 0.95  # Clopper-Pearson confidence level

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise UsageError(f"--target must be in (0, 1), got {self.target}")
        if self.p_assumed is not None and not 0.5 < self.p_assumed <= 1.0:
            raise UsageError(f"--p must be in (0.5, 1], got {self.p_assumed}")
        if not self.collision_factor >= 1.0:
            raise UsageError(f"--collision-factor must be >= 1, got {self.collision_factor}")
        if self.min_collisions < 1 or self.min_votes < 1:
            raise UsageError("--min-collisions and the guard's min_votes must be >= 1")
        if not 0.0 < self.level < 1.0:
            raise UsageError(f"confidence level must be in (0, 1), got {self.level}")

    def checked_k_max(self, k: int) -> int:
        """The ceiling for k; UsageError (exit 2) when it is below the starting k."""
        k_max = self.k_max if self.k_max is not None else (3 * k if self.adaptive else k)
        if isinstance(k_max, bool) or not isinstance(k_max, int) or k_max < k:
            raise UsageError(f"--k-max ({self.k_max}) must be an integer >= k ({k})")
        return k_max


@dataclass(frozen=True)
class DagConfig:
    """How ready steps are dispatched.

    `sequential` forces one step per Ray call and one call at a time, in plan order: the
    same DAG run as if it were a chain (for comparison; decisions are identical).
    `max_batch` caps the steps one Ray call votes; `calls_per_worker` caps calls in flight.
    """

    sequential: bool = False
    max_batch: int = 256
    calls_per_worker: int = 2

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.calls_per_worker < 1:
            raise UsageError("--max-batch and calls per worker must be >= 1")
