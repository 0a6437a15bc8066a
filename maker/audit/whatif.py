"""Red-flag what-ifs: re-judge a finished run's samples under another red-flag policy.

Why: the log holds every sample's reply text, output tokens and finish reason, so
"what if replies over 300 tokens had been thrown away?" or "what would this new
detector have caught?" can be answered without drawing a sample.  Each step's logged
samples are judged again, in the order drawn, by a `StepJudge` with the new policy (the
same code the workers run), and the step is re-decided from the new vote keys with the
k it was decided under (`maker.runtime.guard.k_schedule`), tier by tier where it escalated
(`maker.engine.tiers`).  A step then decides the same, decides
differently, or becomes undecidable with the samples the log holds (a tighter policy
may need samples the run never drew); samples after the new decision point are saved.

Replaying with the run's own policy must reproduce every decision: that is the audit
that the live red flags did what the log says (`same == steps`).

Read the answer per step: every sample was drawn on the premise the *logged* decisions
implied, so after the first changed step the later steps are what the new policy would
have said on the old premises.

Example:
    >>> r = whatif_log("runs/h10.parquet", max_output_tokens=300)   # doctest: +SKIP
    >>> r.changed, r.undecidable, r.samples_saved, r.flags_added     # doctest: +SKIP
    (0, 2, 0, {'overlong': 31})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from maker.cluster.protocol import Sample
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy, StepJudge
from maker.engine.tiers import Tiers, tier_of
from maker.engine.variants import variant_of
from maker.errors import StepLogError
from maker.log.by_step import describe_run, iter_chunks, parts_read
from maker.log.steplog import open_log
from maker.runtime.guard import k_schedule, log_events
from maker.tasks.registry import rebuild

_COLUMNS = (
    "reply", "model", "temperature", "tokens_in", "tokens_out", "finish_reason", "error", "cached", "response_id",
    "shared_request",
)


@dataclass(frozen=True)
class PolicyChange:
    """One step whose outcome differs under the new policy (only these are listed)."""

    step: int
    outcome: str  # 'different' | 'undecidable'
    logged: str | None
    new: str | None
    samples: int  # live samples the log holds for the step
    votes: int  # of which valid votes under the new policy
    decision_point: int | None  # 1-based sample at which the new policy's votes decide


@dataclass
class WhatIfReport:
    log: str
    task: str
    policy: dict[str, Any]
    logged_policy: dict[str, Any]
    steps: int = 0  # decided steps re-judged
    same: int = 0
    changed: int = 0
    undecidable: int = 0
    first_changed_step: int | None = None
    first_undecidable_step: int | None = None
    changed_from_correct: int = 0  # changed steps whose logged decision was right
    samples: int = 0  # live samples of decided steps
    samples_needed: int = 0
    samples_saved: int = 0
    cost_usd: float = 0.0
    cost_saved_usd: float = 0.0
    flags: dict[str, int] = field(default_factory=dict)  # discards under the new policy, by reason
    logged_flags: dict[str, int] = field(default_factory=dict)  # discards the run logged, by reason
    flags_added: dict[str, int] = field(default_factory=dict)  # valid in the log, discarded now (new reason)
    flags_removed: dict[str, int] = field(default_factory=dict)  # discarded in the log (old reason), valid now
    simulated: bool = False
    parts: int = 0
    damaged_parts: int = 0
    details: list[PolicyChange] = field(default_factory=list)
    details_left_out: int = 0

    @property
    def reproduces(self) -> bool:
        """Every decided step decides the same under this policy."""
        return self.same == self.steps

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["reproduces"] = self.reproduces
        return out


def logged_policy(run: dict[str, Any]) -> RedFlagPolicy:
    """The policy a run was logged with (older logs: the default policy); its token cap is
    the run's `voting.max_output_tokens` unless a what-if names another."""
    meta = run.get("red_flags")
    return RedFlagPolicy() if meta is None else RedFlagPolicy.from_metadata(meta)


def _shown(policy: RedFlagPolicy, cap: int) -> dict[str, Any]:
    """The policy as the report shows it, with the token cap in force."""
    return {**policy.to_metadata(), "max_output_tokens": policy.max_output_tokens or cap}


def whatif_log(
    path: str | Path,
    policy: RedFlagPolicy | None = None,
    *,
    salvage: bool = False,
    max_details: int = 1000,
    **overrides: Any,
) -> WhatIfReport:
    """Re-judge and re-decide every step of the log under `policy` (default: the run's own,
    with `overrides` such as ``max_output_tokens=300`` or ``extra=...`` applied)."""
    info = open_log(path, salvage=salvage)
    run = info.run
    try:
        task = rebuild(run)  # by the name the run recorded; says where it came from when it cannot
        models = list(run["models"])
        variants = int((run.get("voting") or {}).get("prompt_variants", 1))
        cap = int((run.get("voting") or {}).get("max_output_tokens", VotingConfig().max_output_tokens))
    except (KeyError, TypeError, ValueError) as exc:
        raise StepLogError(f"{path}: cannot rebuild the run from the log ({exc})", path=str(path)) from None
    before = logged_policy(run)
    policy = policy or before
    if overrides:
        policy = replace(policy, **overrides)
    events = log_events(info)
    schedule = k_schedule(info, events)
    tiers = Tiers.from_events(events)  # escalated steps: tier by tier, as the run voted them
    r = WhatIfReport(
        log=str(info.path), task=describe_run(run), policy=_shown(policy, cap),
        logged_policy=_shown(before, cap), simulated=bool(run.get("simulated")),
    )
    flags: Counter[str] = Counter()
    logged_flags: Counter[str] = Counter()
    added: Counter[str] = Counter()
    removed: Counter[str] = Counter()
    details: list[PolicyChange] = []
    previous: tuple[int, str] | None = None
    escalate_to = (run.get("voting") or {}).get("escalate_to") or ()
    tier_models = [max(1, len(models)), *(max(1, len(t)) for t in escalate_to)]  # models per tier: the variant cycle
    for chunk in iter_chunks(info, ("red_flag", "answer", *_COLUMNS), ("correct",)):
        table = chunk.samples
        mask = chunk.live()
        if table.num_rows and not mask.all():
            table = table.filter(pa.array(mask))
        cols = {name: table[name].to_pylist() for name in ("step", "sample", "red_flag", *_COLUMNS)}
        costs = table["cost_usd"].fill_null(0.0).to_numpy(zero_copy_only=False)
        steps = np.asarray(cols["step"], dtype=np.int64)
        d = chunk.decisions
        dsteps = d["step"].to_pylist()
        answers = d["answer"].to_pylist()
        correct = d["correct"].to_pylist()
        lo = np.searchsorted(steps, dsteps, "left").tolist()
        hi = np.searchsorted(steps, dsteps, "right").tolist()
        for step, logged, ok, a, b in zip(dsteps, answers, correct, lo, hi):
            if step == 0:
                premise = task.first_step()
            elif previous is not None and previous[0] == step - 1:
                premise = task.step_after(step - 1, previous[1])
            else:
                raise StepLogError(f"{path}: step {step - 1}'s decision is missing, cannot rebuild step {step}",
                                   path=str(path))
            previous = (step, logged)
            judge = StepJudge(task, premise, policy, cap)
            keys: list[str | None] = []
            for i in range(a, b):
                old = cols["red_flag"][i]
                sample = Sample(
                    cols["reply"][i] or "", cols["model"][i] or "", cols["tokens_in"][i] or 0,
                    cols["tokens_out"][i] or 0, cols["finish_reason"][i] or "stop", 0.0, 0.0, cols["error"][i],
                    cols["response_id"][i], bool(cols["cached"][i]), shared_request=cols["shared_request"][i],
                )
                temperature = cols["temperature"][i]
                index = cols["sample"][i] or 0
                variant = variant_of(index, tier_models[tier_of(tiers.starts.get(step), index)], variants)
                verdict = judge(sample, None if temperature is None else float(temperature), variant)
                keys.append(verdict.key)
                if verdict.red_flag is not None:
                    flags[verdict.red_flag] += 1
                if old is not None:
                    logged_flags[old] += 1
                if old is None and verdict.red_flag is not None:
                    added[verdict.red_flag] += 1
                elif old is not None and verdict.red_flag is None:
                    removed[old] += 1
            n = b - a
            r.steps += 1
            r.samples += n
            total = float(costs[a:b].sum())
            r.cost_usd += total
            winner, consumed, _, _ = tiers.redecide(step, keys, schedule.at(step))
            votes = sum(k is not None for k in keys)
            if winner is None:
                r.undecidable += 1
                if r.first_undecidable_step is None:
                    r.first_undecidable_step = step
                details.append(PolicyChange(step, "undecidable", logged, None, n, votes, None))
                continue
            r.samples_needed += consumed
            r.samples_saved += n - consumed
            r.cost_saved_usd += float(costs[a + consumed:b].sum())
            if winner == logged:
                r.same += 1
                continue
            r.changed += 1
            r.changed_from_correct += ok is True
            if r.first_changed_step is None:
                r.first_changed_step = step
            details.append(PolicyChange(step, "different", logged, str(winner), n, votes, consumed))
        if len(details) > max_details:
            r.details_left_out += len(details) - max_details
            del details[max_details:]
    r.details = details
    r.flags, r.logged_flags = dict(flags.most_common()), dict(logged_flags.most_common())
    r.flags_added, r.flags_removed = dict(added.most_common()), dict(removed.most_common())
    r.parts, r.damaged_parts = parts_read(info)
    r.cost_usd = round(r.cost_usd, 6)
    r.cost_saved_usd = round(r.cost_saved_usd, 6)
    return r
