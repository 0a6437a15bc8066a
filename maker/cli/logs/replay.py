"""`maker replay LOG`: audit a run from its step log, re-decide it under another margin, or
re-judge it under another red-flag policy (the what-ifs: `maker.audit.whatif`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from maker.engine.red_flags import load_detector
from maker.errors import UsageError

EPILOG = """examples:
  maker replay runs/h10.parquet --verify                 audit every decided step
  maker replay runs/h10.parquet --verify --json
  maker replay runs/h10.parquet --k 2 --json             would k = 2 have been enough?
  maker replay runs/h10.parquet --rule first-to-k --k 2  the simpler rule, margin 2
  maker replay runs/h10.parquet --verify --salvage       a damaged log: read up to the damage

--k/--rule re-decide each step from its logged samples, in the order drawn: a step
decides the same, differently, or is undecidable with the samples the log holds. The
samples were drawn on the logged premises, so read it step by step, not as a new run.
Only changed and undecidable steps are listed (--max-details caps the list).

A log that a run is still writing can be replayed: complete parts are read, the part
being written is not.

exit codes: 0 the trajectory checks out (--verify) or the replay ran (--k/--rule),
1 a bad step was found, 2 unreadable, damaged or foreign log, or bad arguments."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="audit a run from its step log, or re-decide it under another margin",
        description="Re-check every decided step of a run from its step log alone (--verify): the "
        "state chain, each move under the task's rules, each decision against its logged votes, and the "
        "ground truth where the task has one. Or re-decide every step under another margin or rule "
        "(--k, --rule).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", help="step log folder (or one Parquet part)")
    p.add_argument("--verify", action="store_true", help="re-check the whole trajectory")
    p.add_argument("--k", type=int, metavar="K", help="re-decide every step with margin K (default: the run's k)")
    p.add_argument(
        "--rule",
        choices=("ahead-by-k", "first-to-k"),
        help="voting rule for re-deciding: ahead-by-k (the run's rule, default) or first-to-k "
        "(the first answer to reach K votes wins)",
    )
    p.add_argument("--max-details", type=int, default=1000, metavar="N",
                   help="list at most N changed or undecidable steps in --json (default 1000)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--salvage", action="store_true", help="read up to the first damaged part instead of failing")
    p.add_argument("--rerun-tools", action="store_true",
                   help="with --verify: run every tool step again on its logged inputs and compare (a tool is a side "
                   "effect: by default only tools declared pure are run again; the others are checked against the "
                   "inputs their row records)")
    add_whatif_arguments(p)  # --rejudge, --max-output-tokens, --red-flag ...: red-flag what-ifs
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    redecide = args.k is not None or args.rule is not None
    if args.rerun_tools and not args.verify:
        raise UsageError("--rerun-tools goes with --verify")
    if whatif_requested(args):
        if args.verify or redecide:
            raise UsageError("a red-flag what-if (--rejudge, --max-output-tokens, --red-flag ...) goes without --verify/--k/--rule")
        return run_whatif(args)
    if args.verify == redecide:
        raise UsageError("say what to replay: --verify, or --k K / --rule RULE (one of them)")
    if redecide:
        return _redecide(args)
    from maker.audit.verify import verify_log

    report = verify_log(args.log, salvage=args.salvage, rerun_tools=args.rerun_tools)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        label = " [simulated model]" if report.simulated else ""
        if report.valid:
            if report.solved is None:
                print(f"{report.log}: {report.steps:,} step{'' if report.steps == 1 else 's'} verified (rules and votes), finished; "
                      f"errors: unknown (no ground truth){label}")
            elif report.wrong_decisions is None:  # not finished, and no ground truth to count errors against
                print(f"{report.log}: {report.steps:,} of {report.total_steps:,} steps verified (rules and votes), not finished; "
                      f"errors: unknown (no ground truth){label}")
            elif report.steps < report.total_steps:  # not finished: say how far, and the errors so far
                print(f"{report.log}: {report.steps:,} of {report.total_steps:,} steps verified, not finished (solved=False); "
                      f"wrong decisions so far: {report.wrong_decisions:,}{label}")
            else:
                print(f"{report.log}: {report.steps:,} step{'' if report.steps == 1 else 's'} verified, solved={report.solved}{label}")
        else:
            _print_bad(report, label)
        if report.code_note:
            print(f"  note: {report.code_note}")
        if report.tools_unchecked:
            print(f"  {report.tools_unchecked:,} tool step(s) from an older log record no inputs: not checked "
                  "(--rerun-tools runs them again)")
    _salvage_note(report.damaged_parts, report.parts, report.steps)
    return 0 if report.valid else 1


#: wrong steps named in the text report (--json lists every one)
SHOWN = 20


def _print_bad(report: Any, label: str) -> None:
    """An audit that found wrong steps or a broken one: every wrong step (the first SHOWN),
    the consequential ones apart, and a broken rule or vote where the audit stopped."""
    wrong = report.wrong_steps or []
    if not wrong:
        print(f"{report.log}: first bad step {report.first_bad_step}: {report.reason}{label}")
        return
    ids = ", ".join(str(i) for i in wrong[:SHOWN]) + (f", ... ({len(wrong) - SHOWN:,} more; --json lists all)"
                                                     if len(wrong) > SHOWN else "")
    print(f"{report.log}: {len(wrong):,} wrong step{'' if len(wrong) == 1 else 's'} of {report.steps:,} decided "
          f"(differ from the ground truth), first {wrong[0]}: {ids}{label}")
    if report.consequential:
        cons = report.consequential_steps or []
        more = report.consequential - min(len(cons), SHOWN)
        listed = ", ".join(str(i) for i in cons[:SHOWN]) + (f", ... ({more:,} more)" if more else "")
        print(f"  {report.consequential:,} consequential (right on their inputs, an input was wrong; not errors "
              f"of their own): {listed}")
    if report.first_bad_step != wrong[0]:  # a broken rule or vote before the first wrong step
        print(f"  the audit stopped at step {report.first_bad_step}: {report.reason}")
    elif "; the audit stopped" in (report.reason or ""):
        print(f"  {report.reason.split('; ', 1)[1]}")


def _redecide(args: argparse.Namespace) -> int:
    from maker.audit.redecide import redecide_log

    r = redecide_log(args.log, k=args.k, rule=args.rule or "ahead-by-k", salvage=args.salvage,
                     max_details=args.max_details)
    if args.json:
        print(json.dumps(r.to_dict()))
    else:
        label = " [simulated model]" if r.simulated else ""
        margin = "the k each step was decided with" if args.k is None else f"k={r.k}"
        print(f"{r.log}: {r.steps:,} steps re-decided with {r.rule}, {margin} (the run used {r.logged_rule}, "
              f"k={r.logged_k} at the start){label}")
        print(f"  same {r.same:,}   different {r.changed:,}   undecidable with the logged samples {r.undecidable:,}")
        if r.changed:
            print(f"  first changed step {r.first_changed_step}; {r.changed_from_correct:,} changed steps had a "
                  "correct logged decision (the new rule would have erred there)")
        if r.undecidable:
            print(f"  first undecidable step {r.first_undecidable_step}: the new rule needs samples the run never drew")
        # the samples counted on decided steps, not every sample logged (undecided steps and wasted ones are not in it)
        print(f"  samples counted on decided steps {r.samples:,}: {r.samples_needed:,} up to the new decision points, "
              f"{r.samples_saved:,} saved (${r.cost_saved_usd:,.4f} of ${r.cost_usd:,.4f})")
        if r.logged_undecided:
            print(f"  {r.logged_undecided:,} steps have samples but no logged decision; the new rule decides "
                  f"{r.newly_decided:,} of them")
    _salvage_note(r.damaged_parts, r.parts, r.steps)
    return 0


def _salvage_note(damaged: int, parts: int, steps: int) -> None:
    if damaged:
        print(f"maker: salvaged {steps:,} decided steps from {parts:,} complete part(s); skipped {damaged:,} "
              "damaged part(s) and any after them", file=sys.stderr)


# -- red-flag what-ifs ------------------------------------------------------------

WHATIF_HELP = """Re-judge every logged sample under another red-flag policy and re-decide each step
with the k it was decided under: steps that would change, that become undecidable with the
logged samples, and samples saved. With no policy option, --rejudge uses the run's own
policy and must reproduce every decision (an audit of the live red flags; exit 1 if not).
A looser --max-output-tokens cannot bring back replies the run's token cap cut off
(finish_reason length stays flagged).
  maker replay runs/h10.parquet --max-output-tokens 300 --json
  maker replay runs/h10.parquet --red-flag mychecks:too_chatty
  maker replay runs/h10.parquet --rejudge                 the run's own policy: reproduces?"""


def add_whatif_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("red-flag what-ifs", WHATIF_HELP)
    g.add_argument("--rejudge", action="store_true", help="re-judge every sample (the run's own policy unless changed below)")
    g.add_argument("--max-output-tokens", type=int, metavar="N", help="red-flag replies over N output tokens")
    g.add_argument("--red-flag", action="append", default=[], metavar="MODULE:FUNCTION", help="add a user detector (repeatable)")
    g.add_argument("--skip-red-flag", action="append", default=[], metavar="NAME", help="leave out a built-in detector")
    g.add_argument("--identical-min-chars", type=int, metavar="N", help="threshold of the byte-identical-reply check")
    g.add_argument("--no-red-flags", action="store_true", help="every red flag off (transport and unparseable still cannot vote)")


def whatif_requested(args: argparse.Namespace) -> bool:
    return bool(
        getattr(args, "rejudge", False)
        or getattr(args, "max_output_tokens", None) is not None
        or getattr(args, "red_flag", None)
        or getattr(args, "skip_red_flag", None)
        or getattr(args, "identical_min_chars", None) is not None
        or getattr(args, "no_red_flags", False)
    )


def overrides(args: argparse.Namespace, logged: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.max_output_tokens is not None:
        out["max_output_tokens"] = args.max_output_tokens
    if args.identical_min_chars is not None:
        out["identical_min_chars"] = args.identical_min_chars
    if args.skip_red_flag:
        out["skip"] = frozenset(logged.skip) | frozenset(args.skip_red_flag)
    if args.red_flag:
        out["extra"] = (*logged.extra, *(load_detector(spec) for spec in args.red_flag))
    if args.no_red_flags:
        out["enabled"] = False
    return out


def run_whatif(args: argparse.Namespace) -> int:
    from maker.audit.whatif import logged_policy, whatif_log
    from maker.log.steplog import open_log

    logged = logged_policy(open_log(args.log, salvage=args.salvage).run)
    changes = overrides(args, logged)
    r = whatif_log(args.log, logged, salvage=args.salvage, max_details=args.max_details, **changes)
    code = 1 if not changes and not r.reproduces else 0  # the run's own policy must give back every decision
    if args.json:
        print(json.dumps(r.to_dict()))
        return code
    label = " [simulated model]" if r.simulated else ""
    print(f"{r.log}: {r.steps:,} steps re-judged under the red-flag policy {_describe(r.policy)}{label}")
    print(f"  (the run used {_describe(r.logged_policy)})")
    print(f"  same {r.same:,}   different {r.changed:,}   undecidable with the logged samples {r.undecidable:,}")
    if r.changed:
        print(f"  first changed step {r.first_changed_step}; {r.changed_from_correct:,} of them had a correct logged decision")
    print(f"  samples: {r.samples:,} logged, {r.samples_needed:,} up to the new decision points, {r.samples_saved:,} saved")
    print(f"  discards now: {_counts(r.flags)}; logged: {_counts(r.logged_flags)}")
    if r.flags_added or r.flags_removed:
        print(f"  newly discarded: {_counts(r.flags_added)}; no longer discarded: {_counts(r.flags_removed)}")
    if code:
        print(f"  the run's own policy does not reproduce its decisions (first changed step {r.first_changed_step})")
    return code


def _describe(policy: dict[str, Any]) -> str:
    if not policy.get("enabled", True):
        return "off (--no-red-flags)"
    extra = ", ".join(name for name, _ in policy.get("extra", ()))
    text = f"max {policy['max_output_tokens']} tokens, detectors {', '.join(policy['detectors'])}"
    return text + (f", user: {extra}" if extra else "")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"
