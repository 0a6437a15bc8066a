"""A segment: the unit of work the driver hands a Ray worker on a chained task.

A starting premise and a step budget go out (`SegmentJob`); every sample and decision
comes back in columns (`SegmentResult`).  The worker votes it in order
(`maker.runtime.chain.loop`) or through a speculative window (`maker.runtime.chain.speculation`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.tasks.base import StepInput


@dataclass(frozen=True)
class SegmentJob:
    start: StepInput
    max_steps: int
    max_seconds: float
    voting: VotingConfig
    policy: RedFlagPolicy
    models: tuple[str, ...]
    run_seed: int
    last_step: int  # index of the task's final step
    #: steps voted ahead of the last decided one, on the premise its leader implies (0: none)
    speculate: int = 0
    #: (model, most requests in flight) pairs; honoured across the speculative window
    in_flight: tuple[tuple[str, int], ...] = ()
    #: what proposes premises ahead of any reply (`maker.runtime.chain.draft.Draft`; True: the task's
    #: reference answers); None/False: no draft (see maker.runtime.chain.speculation)
    draft: Any = None
    #: the adaptive window depth a drafted segment starts at (the last segment's; 0: the default start)
    draft_depth: int = 0
    #: this segment's share of the spend cap (`maker.budget.spend.Budget.grant`); None: no cap
    budget: Any = None


@dataclass
class SegmentResult:
    samples: dict[str, list[Any]]
    decisions: dict[str, list[Any]]
    end: StepInput
    failed_step: int | None = None
    elapsed_s: float = 0.0
    #: event rows of the segment's steps (escalations, plurality decisions): step-log columns
    events: dict[str, list[Any]] = field(default_factory=lambda: {"step": [], "detail": []})
    #: the task's own code (`prompt`, `step_after`, ...) raised here: "Type: message", one
    #: line; the steps decided before it are in `decisions`, so the driver logs them first
    error: str | None = None
    #: the draft's proposals (step-log sample columns, logged as kind 'draft': never votes);
    #: None when the segment ran without a draft
    drafts: dict[str, list[Any]] | None = None
    #: the adaptive depth the drafted window ended at (the next segment starts there)
    draft_depth: int = 0
    #: the segment stopped because its next round did not fit within the spend cap
    budget_stop: bool = False


__all__ = ["SegmentJob", "SegmentResult"]
