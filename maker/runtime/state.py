"""What a scheduler shares with the driver while a run goes on (`RunState`): the settings,
the log writer, the live guard and the running totals, counted in one place for chain and
plan runs alike."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from maker.budget.breakdown import BREAKDOWN_COLUMNS, CostBreakdown
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.log.steplog import DECIDED_KINDS, LogInfo, StepLogWriter, count_faults, iter_tables
from maker.runtime.chain.draft import DraftTally
from maker.runtime.guard import Guard
from maker.runtime.progress import Progress, Totals
from maker.tasks.base import Task


@dataclass
class RunState:
    """What a scheduler shares with the driver while a run goes on: the settings, the log
    writer, the live guard and the running totals (the one place they are counted)."""

    task: Task
    voting: VotingConfig
    policy: RedFlagPolicy
    model_names: tuple[str, ...]
    seed: int
    writer: StepLogWriter | None
    progress: Progress
    live: Guard
    totals: Totals = field(default_factory=Totals)
    reasons: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    first_error: int | None = None
    wasted: int = 0
    escalations: int = 0  # steps re-opened on a stronger tier (`VotingConfig.on_undecided`)
    plurality_decisions: int = 0  # steps taken by their ballot's leader
    #: the spend cap (`maker.budget.spend.Budget`); None: no cap
    budget: Any = None
    budget_stop: bool = False  # the run stopped because its next round did not fit within the cap
    breakdown: CostBreakdown = field(default_factory=CostBreakdown)  # the bill by model and by kind
    reasoning_tokens: int = 0  # hidden reasoning tokens of every sample paid for (wasted ones too)
    #: the draft's record (proposals, acceptance, its own cost); None without a draft.  Its
    #: cost is also in `totals.cost_usd`, so whatever charges the run's cost charges it too
    draft: DraftTally | None = None

    def count(
        self, samples: dict[str, list[Any]], decisions: dict[str, list[Any]], live: bool = True,
        events: dict[str, list[Any]] | None = None, drafts: dict[str, list[Any]] | None = None,
    ) -> None:
        """Add a checked batch's samples and decisions to the totals (wasted samples were
        paid for, never counted as samples), its engine `events` (escalations, plurality
        decisions) to theirs, its `drafts` (the draft's proposals: paid for, never votes)
        to the cost and the draft's tally, then let the guard see its votes (`live`)."""
        for detail in (events or {}).get("detail", ()):
            kind = json.loads(detail).get("event")
            self.escalations += kind == "escalation"
            self.plurality_decisions += kind == "plurality"
        totals = self.totals
        flags = samples["red_flag"]
        lost = [bool(w) for w in samples["wasted"]]
        count_faults(samples["faults"], self.faults)
        for flag, was_wasted in zip(flags, lost):
            if flag is not None and not was_wasted:
                self.reasons[flag] = self.reasons.get(flag, 0) + 1
                totals.red_flags += 1
        self.breakdown.add(samples)
        n_wasted = sum(lost)
        self.wasted += n_wasted
        totals.samples += len(flags) - n_wasted
        totals.cost_usd += sum(c or 0.0 for c in samples["cost_usd"])
        self.reasoning_tokens += sum(t or 0 for t in samples.get("reasoning_tokens", ()))
        if drafts and drafts.get("step"):
            self.breakdown.add(drafts, kind="draft")  # the budget and the bill count the draft's spend
            if self.draft is None:
                self.draft = DraftTally()
            before = self.draft.cost_usd
            self.draft.add_rows(drafts, dict(zip(decisions.get("step", ()), decisions.get("answer", ()))))
            totals.cost_usd += self.draft.cost_usd - before
        totals.steps += len(decisions.get("step", ()))
        for index, ok in zip(decisions.get("step", ()), decisions.get("correct", ())):
            if ok is False:
                totals.errors += 1
                self.first_error = index if self.first_error is None else min(self.first_error, index)
        if not live:
            return
        if decisions.get("step"):
            self.live.observe(samples, decisions)
        totals.guard = self.live.summary()
        self.progress.update(totals)

    def count_log(self, info: LogInfo) -> None:
        """Add what a log being resumed already holds (the guard restores its own: `Guard.restore`)."""
        wanted = tuple(dict.fromkeys(("red_flag", "cost_usd", "wasted", "faults", "reasoning_tokens", *BREAKDOWN_COLUMNS)))
        read = list(dict.fromkeys(("step", "answer", "correct", "tokens_in", "tokens_out", *wanted)))
        for table in iter_tables(info, read):
            cols = {name: table[name].to_pylist() for name in table.column_names}
            rows = {"sample": [i for i, k in enumerate(cols["kind"]) if k == "sample"],
                    "decision": [i for i, k in enumerate(cols["kind"]) if k in DECIDED_KINDS],
                    "draft": [i for i, k in enumerate(cols["kind"]) if k == "draft"]}
            samples = {c: [cols[c][i] for i in rows["sample"]] for c in wanted}
            drafts = {c: [cols[c][i] for i in rows["draft"]]
                      for c in dict.fromkeys(("step", "answer", "tokens_out", *BREAKDOWN_COLUMNS))}
            self.count(samples, {c: [cols[c][i] for i in rows["decision"]] for c in ("step", "answer", "correct")},
                       live=False, drafts=drafts)


__all__ = ["RunState"]
