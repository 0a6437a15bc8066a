"""`maker report LOG --out DIR`: a Markdown summary and PNG plots of a run's step log."""

from __future__ import annotations

import argparse
import sys
from typing import Any

EPILOG = """examples:
  maker report runs/h10.parquet --out runs/h10-report
  maker report runs/h10.parquet --out runs/h10-report --salvage   a damaged log: up to the damage

writes into DIR (created if needed; files of the same names are replaced):
  report.md               the summary, linking the plots below
  undecided_by_round.png  steps still undecided after each sampling round (log scale)
  votes_per_step.png      histogram of valid votes per step
  red_flags.png           red-flag rate by reason
  error_vs_length.png     share of valid samples disagreeing with their step's decision,
                          by output tokens
  cost.png                cumulative cost (USD) and samples against step
  wasted.png              wasted speculative samples (only when the log has any)

Runs with a simulated model are labelled as simulated in the title of every plot.
The log is read part by part: memory stays flat however long the run was.
exit codes: 0 written, 2 unreadable, damaged or foreign log (nothing written)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="summarise a run's step log in Markdown and plots",
        description="Summarise a run from its step log: undecided steps per round, votes per step, "
        "red flags, error rate against output length, cost over the run, wasted speculation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("log", help="step log folder (or one Parquet part)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.md and the PNG plots")
    p.add_argument("--salvage", action="store_true", help="read up to the first damaged part instead of failing")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from maker.log.steplog import open_log
    from maker.report.stats import collect
    from maker.report.summary import write_report

    info = open_log(args.log, salvage=args.salvage)
    stats = collect(info)  # reads everything before anything is written
    paths = write_report(stats, args.out)
    label = " [simulated model]" if stats.simulated else ""
    print(f"{stats.log}: {stats.steps:,} decided steps, {stats.samples:,} samples{label}")
    for path in paths:
        print(f"  {path}")
    if stats.damaged_parts:
        print(f"maker: salvaged {stats.steps:,} decided steps from {stats.parts:,} complete parts; skipped "
              f"{stats.damaged_parts:,} damaged part(s) and any after them", file=sys.stderr)
    return 0
