"""Re-estimate p, the valid rate and collisions from a finished run's step log.

Why: a run measures its model far better than any pre-run estimate -- every step votes
several times -- so its log is the best basis for the next run's margin.  Which p
(`maker.budget.advice`):

* ``graded`` where the run knew its ground truth (decision rows carry `correct`): a valid
  vote is right when it equals the truth of its step's premise.  On a step decided right
  that is its decision; on a step decided wrong the task is rebuilt from the log and the
  truth of that premise computed, so the votes that made the wrong decision count as
  errors, not as agreement.
* ``agreement`` otherwise: a valid vote is graded against its step's *decided* answer
  (right with probability p_step, close to 1 at a sensible k): a vote that disagrees is
  an error.  Errors that agree and win look right, so this p can only overstate accuracy.

A collision is a step whose first two valid votes (in sample order) are both wrong.
Samples drawn on a losing speculative premise (`wasted`) and samples of steps that never
got a decision are left out.  The advice follows `maker.budget.advice.next_k`: a run with
known wrong decisions is never told to keep its k; advice below the run's k is checked by
re-deciding the log at that k (`maker.audit.redecide`, tier by tier where steps
escalated): a lower k that would have turned a right decision wrong is not advised.

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

from maker.budget.advice import next_k, p_source_text
from maker.budget.margins import check_steps, check_target
from maker.budget.tally import ModelEstimate, Tally, assess
from maker.cluster import ModelSpec
from maker.cluster.pricing import Price
from maker.log.steplog import decided_rows, iter_tables, open_log

__all__ = ["TuneReport", "p_source_line", "regrade", "tally_log", "tune_log"]

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
    #: which p the plan used: "graded" (against ground truth) or "agreement" (against the decisions)
    p_source: str = "agreement"
    #: why the p is not graded although the run knew its ground truth (None otherwise)
    p_note: str | None = None
    graded_decisions: int = 0  # decisions with a known ground truth (0: none)
    k_reached: int | None = None  # the largest k the run decided with (the live guard may raise it)

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
            "p_source": self.p_source,
            "p_note": self.p_note,
            "graded_decisions": self.graded_decisions,
            "k_reached": self.k_reached,
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
    wrong_decisions = graded = 0
    wrong_votes: list[pa.Table] = []  # the votes of steps decided wrong: regraded against the truth
    wrong_steps: dict[int, str] = {}
    for table in iter_tables(info, _COLUMNS):
        kind = table["kind"]
        decisions = table.filter(decided_rows(kind))
        is_wrong = pc.fill_null(pc.equal(decisions["correct"], False), False)
        wrong_decisions += int(pc.sum(is_wrong).as_py() or 0)
        graded += int(pc.sum(pc.is_valid(decisions["correct"])).as_py() or 0)
        wrong = decisions.filter(is_wrong)
        wrong_steps.update(zip(wrong["step"].to_pylist(), wrong["answer"].to_pylist()))
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
        decided_samples = joined.filter(has)
        _count(decided_samples, overall, models)
        if wrong_steps:
            on_wrong = pc.is_in(decided_samples["step"], value_set=pa.array(list(wrong_steps), pa.int64()))
            wrong_votes.append(decided_samples.filter(on_wrong).select(["step", "sample", "model", "answer", "decided"]))
    undecided = sum(t.num_rows for t in pending)
    facts = {"run": info.run, "wrong_decisions": wrong_decisions, "undecided_samples": undecided, "log": str(info.path),
             "graded_decisions": graded, "wrong_steps": wrong_steps,
             "wrong_votes": pa.concat_tables(wrong_votes) if wrong_votes else None, "info": info}
    return overall, models, facts


def regrade(overall: Tally, models: dict[str, Tally], facts: dict[str, Any]) -> str | None:
    """Turn agreement into graded accuracy on the steps decided wrong: each of their votes is
    compared with the truth of its step's premise (the task rebuilt from the log).  The
    tallies change in place; returns None, or why the task could not grade (they stay
    agreement then).  Steps decided right need nothing: their decision is the truth."""
    votes = facts.get("wrong_votes")
    if votes is None or not votes.num_rows:
        return None
    try:
        truth = _truths(facts["info"], facts["wrong_steps"])
    except Exception as exc:  # noqa: BLE001 -- the user's task may not rebuild here: say so, keep agreement
        return f"the task could not be rebuilt to grade the votes of the wrong decisions ({type(exc).__name__}: {exc})"[:300]
    rows = votes.sort_by([("step", "ascending"), ("sample", "ascending")]).to_pydict()
    seen: dict[int, list[tuple[bool, bool]]] = {}
    for step, model, answer, decided in zip(rows["step"], rows["model"], rows["answer"], rows["decided"]):
        if answer is None:
            continue
        before, after = answer == decided, answer == truth[step]
        for tally in (overall, models.setdefault(model, Tally())):
            tally.correct += after - before
        seen.setdefault(step, []).append((before, after))
    for pairs in seen.values():
        if len(pairs) >= 2:
            overall.first_two_wrong += (not pairs[0][1] and not pairs[1][1]) - (not pairs[0][0] and not pairs[1][0])
    return None


def _truths(info: Any, wrong_steps: dict[int, str]) -> dict[int, str]:
    """The true key of each wrong-decided step's premise (the premise its logged
    predecessors imply), from the task rebuilt from the log."""
    from maker.tasks.plans.plan_task import PlanTask
    from maker.tasks.registry import rebuild

    task = rebuild(info.run)
    plan = isinstance(task, PlanTask)
    needed = None if plan else {s - 1 for s in wrong_steps if s > 0}
    logged: dict[int, str] = {}
    for table in iter_tables(info, ["step", "answer"], kind="decision"):
        for step, answer in zip(table["step"].to_pylist(), table["answer"].to_pylist()):
            if needed is None or step in needed:
                logged[step] = answer
    out = {}
    for step in wrong_steps:
        if plan:
            premise = task.step_input(step, logged)
        else:
            premise = task.first_step() if step == 0 else task.step_after(step - 1, logged[step - 1])
        out[step] = task.judge(premise, task.reference_reply(premise)).key
    return out


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
    graded, wrong = facts["graded_decisions"], facts["wrong_decisions"]
    note = regrade(overall, models, facts) if graded else None
    source = "graded" if graded and note is None else "agreement"
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
    from maker.runtime.guard import k_schedule

    schedule = k_schedule(facts["info"])
    reached = max([schedule.k0, *(k for _, k in schedule.changes)])
    k, why = next_k(est.k if est.verdict == "ok" else None, k_used=reached, wrong_decisions=wrong if graded else None)
    if k is not None and why is None and k < reached:
        why, k = _lower_k_check(path, k, reached)
    used = f"this run's k = {k_used}" + (f", raised to {reached} by the guard" if reached != k_used else "")
    if k is not None and est.verdict == "ok":
        change = "same as" if k == reached else ("up from" if k > reached else "down from")
        summary = f"next run of {steps:,} steps at target {target}: use k = {k} ({change} {used})"
        if why:
            summary += f": {why}"
        elif k == est.k:
            summary += f"; expected {est.expected_samples_per_step:.3f} samples/step"
    elif est.k is not None:
        summary = f"next run of {steps:,} steps: k = {est.k} on paper, but {est.reason}"
    else:
        summary = f"next run of {steps:,} steps: no k reaches target {target}: {est.reason}"
    summary += f" [p {source}]"
    return TuneReport(
        log=facts["log"],
        task=str(run.get("task", "?")),
        decided_steps=overall.steps,
        total_steps=int(run.get("total_steps") or 0),
        k_used=k_used,
        wrong_decisions=wrong,
        undecided_samples=facts["undecided_samples"],
        simulated=simulated,
        overall=est,
        per_model=per_model,
        k=k if est.verdict == "ok" else None,
        summary=summary,
        p_source=source,
        p_note=note,
        graded_decisions=graded,
        k_reached=reached,
    )


def _lower_k_check(path: str | Path, k: int, reached: int) -> tuple[str | None, int]:
    """Advice below the run's k, checked on the log: re-decided at `k` (tier by tier), would
    any decision known right have changed?  Then keep the run's k, and say why."""
    from maker.audit.redecide import redecide_log

    r = redecide_log(path, k=k, max_details=0)
    if r.changed_from_correct:
        return (f"k = {k} is what p asks for, but re-deciding this log at k = {k} turns "
                f"{r.changed_from_correct} right decision(s) wrong", reached)
    return None, k


def p_source_line(report: TuneReport) -> str:
    """One line: which p the report planned from, and why when it is not graded."""
    line = f"p used: {p_source_text(report.p_source)}"
    return line + (f"; {report.p_note}" if report.p_note else "")
