"""`maker replay` options for red-flag what-ifs (see `maker.audit.whatif`); not a subcommand."""

from __future__ import annotations

import argparse
import json
from typing import Any

from maker.engine.red_flags import load_detector

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
