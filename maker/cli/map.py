"""`maker map INPUT --prompt TEMPLATE --out OUT ...`: one voted answer per record of a table."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from maker.cli.common import (
    add_budget_argument,
    add_model_arguments,
    add_voting_arguments,
    budget_preamble,
    model_specs,
    print_cost_lines,
    user_prices,
    voting_from_args,
)
from maker.cli.run import choose_k, errors_text
from maker.cli.safeguards import add_safeguard_arguments, guard_config, guard_line, red_flag_policy
from maker.config import ClusterConfig
from maker.errors import UsageError
from maker.mapping.output import FileSink
from maker.mapping.scheduler import MapConfig, run_map
from maker.runtime.driver import RunResult, simulated
from maker.runtime.progress import Progress, cost_text
from maker.tasks.base import Oracle

DESCRIPTION = """Vote one answer per record of a table. Each row is one step: its prompt (a template
over the row's columns, or a maker.operation) is sampled k at once, red-flagged replies are
thrown away, and the first answer ahead by k wins. Writes every input column plus answer,
votes, samples, red_flags, decided (and correct, with --truth), in input order. Rows stream:
they are read, voted and written a chunk at a time. The step log is a run's step log:
maker replay LOG --verify, maker report, maker tune and --resume work on it."""

EPILOG = r"""examples:
  maker map products.csv --prompt "Copy the weight in grams.\nProduct: Lumo rake, 900 g\nweight: 900\nProduct: {description}\nweight:" \
      --key integer --model openai/gpt-4.1-mini --k 3 --out weights.parquet
  maker map rows.parquet --prompt "Q: {question}\nA:" --key integer --truth answer --model sim:0.99 --k 3 --out out.csv
  maker map records/ --op examples/records.py:AGE --columns record --model local --k 2 --out ages.jsonl
  maker map rows.csv --prompt "..." --key text --model sim:0.9 --truth label --k auto --out o.parquet --log runs/m.parquet
  maker map rows.csv --prompt "..." --key text --model sim:0.9 --truth label --k 3 --out o.parquet --log runs/m.parquet --resume
  maker estimate map --input rows.csv --prompt "..." --key text --truth label --model sim:0.9   (p, k and cost first)

input: a .csv (every column read as text, as written), .jsonl or .parquet file, or a folder of such parts.
output: by the suffix of --out (.parquet, .csv, .jsonl); written beside it under a hidden name and renamed
into place only when complete; an existing --out is refused unless --overwrite.
In --prompt and --stop, \n and \t are a newline and a tab; {COLUMN} is the row's cell ({{ and }} are braces).
exit codes: 0 every row decided (and, with --truth, none wrong), 1 undecided or wrong rows, or a failed run,
2 bad input (a column the prompt names that the input lacks, an existing --out, ...)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("map", help="vote one answer per record of a table (CSV, JSONL, Parquet)", description=DESCRIPTION,
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="the records: a .csv, .jsonl or .parquet file, or a folder of parts")
    s = p.add_argument_group("each row's step")
    s.add_argument("--prompt", help="a prompt template: {COLUMN} is the row's cell; \\n a newline")
    s.add_argument("--prompt-file", metavar="PATH", help="read the prompt template from this file")
    s.add_argument("--op", metavar="REF", help="a maker.operation (pkg.module:attr or file.py:attr) instead of --prompt")
    s.add_argument("--columns", help="with --op: the columns it is given, comma-separated (default: all but --id, --truth)")
    s.add_argument("--key", help="how a reply to --prompt is read: integer, decimal, text (default), choice:a,b, json, literal")
    s.add_argument("--truth", metavar="COLUMN", help="the column with each row's right answer: fills 'correct'")
    s.add_argument("--id", metavar="COLUMN", help="the column that names each row (kept; must exist)")
    s.add_argument("--stop", help="stop each reply at this text (e.g. '\\n')")
    add_model_arguments(p)
    add_voting_arguments(p, "row")
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, help="the output table: .parquet, .csv or .jsonl")
    o.add_argument("--overwrite", action="store_true", help="replace an existing --out (once the new table is complete)")
    o.add_argument("--log", help="step log folder to create (default: runs/map-TIMESTAMP.parquet)")
    o.add_argument("--resume", action="store_true", help="continue the job recorded in --log: decided rows are not voted again")
    add_budget_argument(o)
    o.add_argument("--json", action="store_true", help="print one JSON object with the result at the end")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join an existing Ray cluster; default: a local Ray")
    c.add_argument("--workers", type=int, default=1, help="Ray worker actors (default 1)")
    c.add_argument("--batch-rows", type=int, help="rows one worker call votes (default: 256 on a zero-latency "
                   "simulator, else 8, so that decided rows reach the log within a few model round trips)")
    c.add_argument("--chunk-rows", type=int, default=8192, help="rows read and written at once (default 8192)")
    add_safeguard_arguments(p)
    p.set_defaults(handler=main)


def _prompt(args: argparse.Namespace) -> str | None:
    if args.prompt_file and args.prompt:
        raise UsageError("give --prompt or --prompt-file, not both")
    if args.prompt_file:
        try:
            return Path(args.prompt_file).read_text()
        except OSError as exc:
            raise UsageError(f"--prompt-file {args.prompt_file}: {exc.strerror or exc}") from None
    return args.prompt


def main(args: argparse.Namespace) -> int:
    from maker.tasks.records.map_task import map_job

    if args.resume and args.log is None:
        raise UsageError("--resume needs --log: the step log folder of the job to continue")
    if args.log is not None and not args.log.strip():
        raise UsageError("--log is empty: name the step log folder")
    try:
        task = map_job(input=args.input, prompt=_prompt(args), op=args.op, key=args.key, truth=args.truth, id=args.id,
                       columns=args.columns, stop=args.stop)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    sink = FileSink(args.out, overwrite=args.overwrite, protect=task.source.files)
    voting = voting_from_args(args, task, k=1)
    policy = red_flag_policy(args, task, voting)
    if args.k == "auto" and args.p is None and not isinstance(task, Oracle):
        raise UsageError("--k auto grades a sample of rows against ground truth: give --truth COLUMN (or --p)")
    k = choose_k(args, max(1, task.total_steps), task, voting, policy)
    voting = replace(voting, k=k)
    specs = model_specs(args)
    log = args.log or f"runs/map-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    args.log, args.max_steps = log, None  # what the budget's preamble reads
    budget_preamble(task, specs, voting, args, task.total_steps)
    label = "[simulated] " if simulated(specs) else ""
    progress = Progress(task.total_steps, enabled=not args.quiet, label=label, ground_truth=isinstance(task, Oracle))
    result = run_map(task, specs, voting, sink=sink, log=Path(log), resume=args.resume, seed=args.seed,
                     cluster=ClusterConfig(workers=args.workers, address=args.address), policy=policy,
                     progress=progress, guard=guard_config(args, k),
                     config=MapConfig(batch_rows=args.batch_rows, chunk_rows=args.chunk_rows),
                     max_cost_usd=args.max_cost, prices=user_prices(args, [*args.model, *voting.escalation_models]))
    if getattr(args, "estimate", None) is not None:
        result.extra["estimate"] = args.estimate.to_dict()
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print_summary(result, args.truth)
        print_cost_lines(result)
    return 0 if result.solved and result.status == "ok" else 1


def print_summary(result: RunResult, truth: str | None) -> None:
    """What a map job did, in four lines (the CLI's summary)."""
    x = result.extra
    label = " [simulated model]" if result.simulated else ""
    graded = f" against --truth {truth}" if truth else ""
    wrong = errors_text(result.errors).replace("errors", "wrong") + graded
    first = f" (first undecided row {x['first_undecided_row']})" if x.get("rows_undecided") else ""
    print(f"{result.task}: {x['rows_decided']:,} rows decided, {x['rows_undecided']:,} undecided{first}, {wrong}{label}")
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(result.red_flags_by_reason.items())) or "none"
    print(f"  k={result.k}  samples counted {result.samples:,} ({result.samples_per_step:.3f}/row)  "
          f"red flags {result.red_flags:,} ({by_reason})")
    resumed = f"  ({x['rows_from_log']:,} rows from the log)" if x.get("rows_from_log") else ""
    cost = cost_text(result.cost_usd, simulated=result.simulated, steps=result.steps)
    print(f"  wall {result.wall_s:.1f}s  cost {cost}  out {x.get('out')}  log {result.log}{resumed}")
    line = guard_line(x.get("guard") or {})
    if line:
        print(line)
    if x.get("estimate"):
        print(f"  k chosen by --k auto from {x['estimate'].get('measured_steps', '?')} rows graded against the truth",
              file=sys.stderr)
