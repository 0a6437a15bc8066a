"""`maker tune LOG --target T`: the k the next run should use, from a finished run's log."""

from __future__ import annotations

import argparse
import json
from typing import Any

from maker.budget.tuning import TuneReport, p_source_line, tune_log
from maker.cli.estimate import print_model

DESCRIPTION = """Re-estimate p, the valid-sample rate and the collision rate from a finished run's
step log, and say which margin k the next run of that length (or --steps) should use, on the
pessimistic end of the 95% interval.  Where the run knew its ground truth, p is graded: each
valid vote against the truth of its step's premise; otherwise it is agreement: each valid vote
against its step's decided answer (which can only overstate accuracy).  The report says which
("p used: ...").  A run with known wrong decisions is never told to keep its k."""

EPILOG = """examples:
  maker tune runs/h20.parquet --target 0.95
  maker tune runs/h10.parquet --target 0.99 --steps 1048575 --json

exit codes: 0 a k was found, 1 no k can reach the target (the report says why), 2 bad input or
an unreadable log."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "tune",
        help="re-estimate p from a run's log; k for the next run",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", help="step log folder of a finished (or partial) run")
    p.add_argument("--target", type=float, default=0.95, help="wanted whole-run success probability (default 0.95)")
    p.add_argument("--steps", type=int, help="length of the next run (default: this run's task length)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    report = tune_log(args.log, args.target, args.steps)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report)
    return 0 if report.k is not None else 1


def print_report(report: TuneReport) -> None:
    label = " [simulated model]" if report.simulated else ""
    print(
        f"{report.log}: {report.task}, {report.decided_steps:,} of {report.total_steps:,} steps decided "
        f"with k = {report.k_used}, "
        + (f"{report.wrong_decisions} known wrong decisions" if report.graded_decisions else "wrong decisions unknown (no ground truth)")
        + label
    )
    if report.undecided_samples:
        print(f"  ({report.undecided_samples} samples of undecided steps left out)")
    print(f"  {p_source_line(report)}")
    print_model(report.overall)
    for m in report.per_model:
        print_model(m)
    print("\n" + report.summary)
