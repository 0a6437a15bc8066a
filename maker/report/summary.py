"""`maker report LOG --out DIR`: where a run's samples, errors and money went.

Why: a step log is too long to read, and the questions users ask of it are always the
same -- how fast did undecided steps fall round by round, how many votes did steps
need, which red flags fired, are long replies worse, where did the cost go, how much
speculation was thrown away.  `maker.report.stats.collect` answers them in one streaming pass over the
log (part by part, constant memory in the run's length); `write_report` turns the
answers into `report.md` and a few PNG plots (see `maker.report.plots`).

Example:
    >>> from maker.report.stats import collect                       # doctest: +SKIP
    >>> stats = collect(open_log("runs/h10.parquet"))                 # doctest: +SKIP
    >>> write_report(stats, "runs/h10-report")                       # doctest: +SKIP
    ['runs/h10-report/report.md', 'runs/h10-report/undecided_by_round.png', ...]
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from maker.errors import UsageError
from maker.report.money import money_lines
from maker.report.stats import RunStats
from maker.runtime.progress import cost_text


def write_report(stats: RunStats, out: str | Path) -> list[Path]:
    """Write report.md and the PNG plots into `out` (created if needed); return the paths."""
    from maker.report import plots

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    written = plots.draw_all(stats, out)
    md = out / "report.md"
    md.write_text(render_markdown(stats, {p.name for p in written}))
    return [md, *written]


def render_markdown(s: RunStats, images: set[str]) -> str:
    from maker.budget.advice import next_k
    from maker.voting import clopper_pearson, k_min_pessimistic

    sim = " (simulated model)" if s.simulated else ""
    models = ", ".join(s.run.get("models") or []) or "?"
    lines = [f"# maker run report: {s.task}{sim}", ""]
    lines += [
        f"Log `{s.log}`: {s.parts} part(s), written by maker {s.run.get('maker_version', '?')} "
        f"on {s.run.get('started_at', '?')}; models {models}; first-to-ahead-by-k with k = {s.k}.",
    ]
    if s.k_changes:
        raised = ", ".join(f"to {k} from step {step:,}" for step, k in s.k_changes)
        lines += ["", f"The live guard raised k {raised}."]
    if s.escalations:
        tiers = (s.run.get("voting") or {}).get("escalate_to") or []
        by_tier = Counter(t for _, t in s.escalations)
        said = "; ".join(f"{n:,} to tier {t} ({', '.join(tiers[t - 1]) if t <= len(tiers) else '?'})"
                         for t, n in sorted(by_tier.items()))
        first = ", ".join(f"{step:,}" for step, _ in s.escalations[:10])
        lines += ["", f"**Escalations**: {len(s.escalations):,} step re-vote(s) on a stronger tier with a fresh "
                  f"ballot: {said}; steps {first}{' ...' if len(s.escalations) > 10 else ''}"
                  + (f" ({s.split_escalations:,} at once because the tier's first k votes split)." if s.split_escalations
                     else ".")]
    if s.plurality:
        first = ", ".join(f"{step:,}" for step in s.plurality[:10])
        lines += ["", f"**Plurality decisions** (warning: no margin guarantee): {len(s.plurality):,} step(s) "
                  f"taken by their ballot's leader: {first}{' ...' if len(s.plurality) > 10 else ''}."]
    if s.simulated:
        lines += ["", "**Simulated run**: every reply came from a simulated model (`sim:`, `script:` or "
                  "`maker sim-server`), not from an LLM."]
    if s.damaged_parts:
        lines += ["", f"**Salvaged**: {s.damaged_parts} damaged part(s) at the end were skipped."]
    lines += ["", "| | |", "|---|---|"]
    total = f" of {s.total_steps:,}" if s.total_steps else ""
    lines.append(f"| decided steps | {s.steps:,}{total} |")
    if s.logged_undecided:
        lines.append(f"| steps drawn but not decided | {s.logged_undecided:,} |")
    counted = s.samples - s.wasted
    per = f" ({counted / s.steps:.3f} per step)" if s.steps else ""
    lines.append(f"| samples counted (votes and red flags; what `maker run` reports) | {counted:,}{per} |")
    per = f" ({s.samples / s.steps:.3f} per step)" if s.steps else ""
    lines.append(f"| samples drawn (counted + {s.wasted:,} wasted speculative; all paid for) | {s.samples:,}{per} |")
    flagged = sum(s.red_flags.values())
    lines.append(f"| red-flagged samples | {flagged:,} ({_pct(flagged, s.samples)}) |")
    if s.graded_decisions:
        lines.append(f"| wrong decisions (against ground truth) | {s.wrong_decisions:,} of {s.graded_decisions:,} |")
    else:
        lines.append("| wrong decisions | unknown (no ground truth) |")
    if s.valid:
        ci = clopper_pearson(s.valid - s.errors_vs_decision, s.valid)
        lines.append(
            f"| valid samples agreeing with their step's decision | {ci.point:.5f} "
            f"(95% CI {ci.low:.5f}-{ci.high:.5f}; {s.valid:,} samples) |"
        )
        if s.graded_decisions and not s.wrong_decisions:
            lines.append("| which p that is | graded: every decision equals the ground truth, so agreeing is being right |")
        elif s.graded_decisions:
            lines.append(f"| which p that is | agreement, not accuracy: {s.wrong_decisions:,} decisions differ from the "
                         "ground truth, and votes that agree with a wrong decision count as right here "
                         "(`maker tune` grades them) |")
        else:
            lines.append("| which p that is | agreement (no ground truth): errors that agree and win look right |")
        if s.steps:
            kp = k_min_pessimistic(s.valid - s.errors_vs_decision, s.valid, max(s.total_steps, s.steps), 0.95)
            reached = max([s.k, *(k for _, k in s.k_changes)])
            advised, why = next_k(kp, k_used=reached, wrong_decisions=s.wrong_decisions if s.graded_decisions else None)
            shown = f"{advised} ({why}; that p alone asks for {kp})" if why else (kp if kp else "none")
            lines.append(f"| smallest k for 95% run success, on that interval's low end | {shown} |")
    if s.first_two_steps and s.valid:
        p = 1 - s.errors_vs_decision / s.valid
        lines.append(
            f"| steps whose first two votes both disagree with the decision | {s.first_two_wrong:,} of "
            f"{s.first_two_steps:,} (independent errors would give {(1 - p) ** 2 * s.first_two_steps:.2f}) |"
        )
    if s.slowest:
        lines.append(f"| slowest step | step {s.slowest[1]:,}: {s.slowest[0]} votes |")
    lines.append(f"| cost | {cost_text(s.cost_usd, simulated=s.simulated, steps=s.steps)} |")
    if s.bill.abandoned_usd:
        lines.append(f"| billed (estimated) for abandoned calls | ${s.bill.abandoned_usd:,.6f} (timeouts and cancelled "
                     "requests, at their prompt cost: the provider may still have served them) |")
    hidden = f" (of which {s.reasoning_tokens:,} hidden reasoning)" if s.reasoning_tokens else ""
    lines.append(f"| tokens in / out | {s.tokens_in:,} / {s.tokens_out:,}{hidden} |")
    lines.append(f"| model time (sum of latencies) | {s.latency_s:,.1f} s |")
    lines.append(f"| wasted speculative samples | {s.wasted:,} |")
    if s.draft is not None:
        d = s.draft
        acceptance = "unknown" if d.acceptance is None else f"{d.acceptance:.1%}"
        speedup = "unknown" if d.speedup is None else f"~{d.speedup:.1f}x"
        lines.append(f"| draft ({d.model}): guesses accepted by the votes | {acceptance} ({d.accepted:,} of {d.proposed:,}) |")
        lines.append(f"| draft: speed-up over in-order (estimated from the voters' latencies) | {speedup} |")
        lines.append(f"| draft: proposals (on lost premises; without a valid guess) | {d.samples:,} ({d.wasted:,}; "
                     f"{d.no_guess:,}) |")
        lines.append(f"| draft: cost (included in the cost above) | {cost_text(d.cost_usd, simulated=s.simulated, steps=s.steps)} |")

    lines += ["", "## Undecided steps after each sampling round", ""]
    lines += [
        "Round 1 draws k samples per step; later rounds draw what the leader still needs. "
        "Steps the log holds drawn but undecided are not in this count.",
        "",
        _img("undecided_by_round.png", images),
        "",
        "| round | undecided after it |",
        "|---|---|",
    ]
    lines += [f"| {r} | {n:,} |" for r, n in s.undecided_after()]
    lines += ["", "## Votes per step", "", _img("votes_per_step.png", images)]
    lines += ["", "## Red flags by reason", ""]
    if s.red_flags:
        lines += [f"- {reason}: {n:,} ({_pct(n, s.samples)} of samples)" for reason, n in s.red_flags.most_common()]
    else:
        lines.append("No sample was red-flagged.")
    lines += ["", _img("red_flags.png", images)]
    lines += ["", "## Model-call faults", ""]
    if s.faults:
        lines.append(f"Failed attempts behind the logged samples, retried ones included ({sum(s.faults.values()):,} in all):")
        lines.append("")
        lines += [f"- {kind}: {n:,}" for kind, n in s.faults.most_common()]
    else:
        lines.append("No model call failed.")
    lines += ["", "## Error rate against output length", ""]
    lines += [
        "An error is a valid sample that disagrees with its step's decision; buckets of output tokens "
        "hold similar numbers of samples; bars are 95% Clopper-Pearson intervals.",
        "",
        _img("error_vs_length.png", images),
    ]
    lines += money_lines(s, images)
    lines += ["", "## Cost over the run", "", _img("cost.png", images)]
    if not s.cost_usd:
        lines += ["", "Every sample's cost_usd is 0 in this log (a simulated or free model, or one with no known price): "
                  "the plot shows samples."]
    lines += ["", "## Wasted speculative samples", ""]
    if s.wasted:
        lines += [f"{s.wasted:,} samples ({_pct(s.wasted, s.samples)}) were drawn on a premise that lost its vote.", ""]
        lines.append(_img("wasted.png", images))
    else:
        lines.append("None in this log (no speculation, or none wasted): plot skipped.")
    return "\n".join(lines) + "\n"


def _pct(n: int, of: int) -> str:
    return f"{100 * n / of:.3g}%" if of else "0%"


def _img(name: str, images: set[str]) -> str:
    return f"![{name}]({name})" if name in images else f"({name} not drawn)"

