"""Run settings as frozen values, passed explicitly (they must reach Ray workers intact)."""

from __future__ import annotations

from dataclasses import dataclass

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

    def gives_up(self, drawn: int, votes: int, failed_calls: int, cut_off: int = 0) -> bool:
        """Whether a step stops undecided: the sample cap, or no valid vote yet after
        `max_discards_in_a_row` samples, `max_failed_calls` failed calls or `max_cut_off`
        replies cut at the output cap."""
        if drawn >= self.max_samples_per_step:
            return True
        return votes == 0 and (drawn >= self.max_discards_in_a_row or failed_calls >= self.max_failed_calls
                               or cut_off >= self.max_cut_off)

    def style_for(self, task: object) -> str:
        """The prompt style `task`'s steps are rendered in: `prompt_style` when given, else
        the task's own (`Task.prompt_style`), else "chat"."""
        return self.prompt_style or getattr(task, "prompt_style", None) or "chat"

    @property
    def escalation_models(self) -> tuple[str, ...]:
        """Every model of every escalation tier, once each, in order."""
        return tuple(dict.fromkeys(m for tier in self.escalate_to for m in tier))

    def temperature_of(self, sample_index: int) -> float:
        """The temperature of sample `sample_index` of one ballot (a step's, or an escalated
        tier's fresh one: `maker.engine.step.StepVote.temperature_of` counts from its start)."""
        return self.first_temperature if sample_index == 0 else self.temperature
