"""`maker replay LOG --verify`: audit a run from its step log alone."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..errors import UsageError
from ..verify import verify_log

EPILOG = """examples:
  maker replay runs/h10.parquet --verify
  maker replay runs/h10.parquet --verify --json
exit codes: 0 the trajectory checks out, 1 a bad step was found, 2 unreadable or foreign log."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="re-check a run from its step log",
        description="Re-check every decided step of a run from its step log alone: the state chain, "
        "each move under the task's rules, each decision against its logged votes, and the "
        "ground truth where the task has one.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", help="step log folder (or one Parquet part)")
    p.add_argument("--verify", action="store_true", help="re-check the whole trajectory")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--salvage", action="store_true", help="read up to the first damaged part instead of failing")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if not args.verify:
        raise UsageError("say what to replay: --verify")
    report = verify_log(args.log, salvage=args.salvage)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        label = " [simulated model]" if report.simulated else ""
        if report.valid:
            print(f"{report.log}: {report.steps:,} steps verified, solved={report.solved}{label}")
        else:
            print(f"{report.log}: first bad step {report.first_bad_step}: {report.reason}{label}")
    return 0 if report.valid else 1
