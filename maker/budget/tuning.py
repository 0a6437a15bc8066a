"""Re-estimate p, the valid rate and collisions from a finished run's step log.

Why: a run measures its model far better than any pre-run estimate -- every step votes
several times -- so its log is the best basis for the next run's margin.  With no ground
truth at hand, a valid vote is graded against its step's *decided* answer (which is
right with probability p_step, very close to 1 at a sensible k): a vote that disagrees
is an error.  A collision is a step whose first two valid votes (in sample order) both
disagree with the decision.  Samples drawn on a losing speculative premise (`wasted`)
and samples of steps that never got a decision are left out.

The log is read part by part with pyarrow, so a million-step log never sits in memory
as Python objects.

    >>> report = tune_log("runs/h20.parquet", target=0.95)   # doctest: +SKIP
    >>> report.k                                              # doctest: +SKIP
    3
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from maker.budget.margins import check_steps, check_target
from maker.budget.tally import ModelEstimate, Tally, assess
from maker.cluster import ModelSpec
from maker.cluster.pricing import Price
from maker.log.steplog import decided_rows, iter_tables, open_log

__all__ = ["TuneReport", "tally_log", "tune_log"]

_COLUMNS = [
    "step",
    "sample",
    "model",
    "answer",
    "red_flag",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "error",
    "wasted",
    "correct",
]


@dataclass(frozen=True)
class TuneReport:
    """What `maker tune --json` prints."""

    log: str
    task: str
    decided_steps: int
    total_steps: int
    k_used: int | None
    wrong_decisions: int
    undecided_samples: int
    simulated: bool
    overall: ModelEstimate
    per_model: tuple[ModelEstimate, ...]
    k: int | None
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "task": self.task,
            "decided_steps": self.decided_steps,
            "total_steps": self.total_steps,
            "k_used": self.k_used,
            "wrong_decisions": self.wrong_decisions,
            "undecided_samples": self.undecided_samples,
            "simulated": self.simulated,
            "overall": self.overall.to_dict(),
            "per_model": [m.to_dict() for m in self.per_model],
            "k": self.k,
            "summary": self.summary,
        }


def tally_log(path: str | Path) -> tuple[Tally, dict[str, Tally], dict[str, Any]]:
    """Count a log: (all samples, per model, facts about the run).

    Why separate from `tune_log`: the counts are the auditable part, the planning on
    top of them is `maker.budget.tally.assess`.
    """
    info = open_log(path)
    overall = Tally()
    models: dict[str, Tally] = {}
    pending: list[pa.Table] = []
    wrong_decisions = 0
    for table in iter_tables(info, _COLUMNS):
        kind = table["kind"]
        decisions = table.filter(decided_rows(kind))
        wrong_decisions += int(pc.sum(pc.equal(decisions["correct"], False)).as_py() or 0)
        overall.steps += decisions.num_rows
        samples = table.filter(pc.equal(kind, "sample"))
        samples = samples.filter(pc.invert(pc.fill_null(samples["wasted"], False)))
        if pending:
            samples = pa.concat_tables([*pending, samples])
            pending = []
        if not samples.num_rows:
            continue
        decided = pa.table({"step": decisions["step"], "decided": decisions["answer"]})
        joined = samples.join(decided, keys="step", join_type="left outer")
        has = pc.is_valid(joined["decided"])
        later = joined.filter(pc.invert(has)).drop_columns(["decided"])
        if later.num_rows:
            pending.append(later)  # their decision may sit in a later part
        _count(joined.filter(has), overall, models)
    undecided = sum(t.num_rows for t in pending)
    facts = {"run": info.run, "wrong_decisions": wrong_decisions, "undecided_samples": undecided, "log": str(info.path)}
    return overall, models, facts


def _count(rows: pa.Table, overall: Tally, models: dict[str, Tally]) -> None:
    """Add decided samples to the tallies: votes graded against their step's decision."""
    rows = rows.sort_by([("step", "ascending"), ("sample", "ascending")])
    answered = pc.is_null(rows["error"])
    valid = pc.is_valid(rows["answer"])
    right = pc.fill_null(pc.equal(rows["answer"], rows["decided"]), False)
    names = rows["model"].to_numpy(zero_copy_only=False)
    for model in [None, *np.unique(names).tolist()]:
        tally = overall if model is None else models.setdefault(model, Tally())
        mask = None if model is None else pa.array(names == model)
        part = rows if mask is None else rows.filter(mask)

        def count(a: Any, m: Any = mask) -> int:
            return int(pc.sum(a if m is None else pc.filter(a, m)).as_py() or 0)

        tally.samples += part.num_rows
        tally.answered += count(answered)
        tally.valid += count(valid)
        tally.correct += count(right)
        tally.tokens_in += int(pc.sum(part["tokens_in"]).as_py() or 0)
        tally.tokens_out += int(pc.sum(part["tokens_out"]).as_py() or 0)
        tally.cost_usd += float(pc.sum(part["cost_usd"]).as_py() or 0.0)
        flags = part["red_flag"].drop_null()
        if len(flags):
            for entry in pc.value_counts(flags).to_pylist():
                tally.red_flags[entry["values"]] = tally.red_flags.get(entry["values"], 0) + entry["counts"]
        if tally.first_error is None:
            errors = part["error"].drop_null()
            if len(errors):
                tally.first_error = errors[0].as_py()
    # Collisions belong to steps, not models: the first two valid votes of each step.
    votes = rows.filter(valid)
    steps = votes["step"].to_numpy()
    wrong = ~pc.fill_null(pc.equal(votes["answer"], votes["decided"]), False).to_numpy(zero_copy_only=False)
    if len(steps):
        starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]])
        second = starts + 1
        two = second < len(steps)
        two[two] = steps[second[two]] == steps[starts[two]]
        overall.steps_with_two += int(two.sum())
        overall.first_two_wrong += int((wrong[starts[two]] & wrong[second[two]]).sum())


def tune_log(path: str | Path, target: float, steps: int | None = None, level: float = 0.95) -> TuneReport:
    """Which k the next run of `steps` steps (default: this run's length) should use.

    Raises StepLogError for a missing, foreign or damaged log, UsageError on bad input.
    """
    target = check_target(target)
    overall, models, facts = tally_log(path)
    run = facts["run"]
    total = int(run.get("total_steps") or overall.steps or 1)
    steps = check_steps(total if steps is None else steps)
    names = list(run.get("models") or sorted(models))
    simulated = bool(run.get("simulated"))
    unpriced = [m for m, p in (run.get("prices") or {}).items() if not p.get("known", True)]
    price = (Price(0.0, 0.0, f"unknown: the log holds no price for {', '.join(unpriced)}", known=False) if unpriced
             else Price(0.0, 0.0, "as logged (cost_usd per sample)"))
    name = " + ".join(names) if names else "log"
    est = assess(name, overall, steps=steps, target=target, price=price, level=level, simulated=simulated)
    per_model: tuple[ModelEstimate, ...] = ()
    if len(models) > 1:
        per_model = tuple(
            assess(m, t, steps=steps, target=target, price=price, level=level, simulated=simulated or ModelSpec(m).is_simulated)
            for m, t in sorted(models.items())
        )
    k_used = (run.get("voting") or {}).get("k")
    if est.k is not None and est.verdict == "ok":
        change = "same as" if est.k == k_used else ("up from" if k_used and est.k > k_used else "down from")
        summary = (
            f"next run of {steps:,} steps at target {target}: use k = {est.k} ({change} this run's k = {k_used}); "
            f"expected {est.expected_samples_per_step:.3f} samples/step"
        )
    elif est.k is not None:
        summary = f"next run of {steps:,} steps: k = {est.k} on paper, but {est.reason}"
    else:
        summary = f"next run of {steps:,} steps: no k reaches target {target}: {est.reason}"
    return TuneReport(
        log=facts["log"],
        task=str(run.get("task", "?")),
        decided_steps=overall.steps,
        total_steps=int(run.get("total_steps") or 0),
        k_used=k_used,
        wrong_decisions=facts["wrong_decisions"],
        undecided_samples=facts["undecided_samples"],
        simulated=simulated,
        overall=est,
        per_model=per_model,
        k=est.k if est.verdict == "ok" else None,
        summary=summary,
    )
