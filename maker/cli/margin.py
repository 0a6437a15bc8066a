"""`maker margin --p P --steps S --target T`: the margin k, its odds and its cost, in closed form.

(`maker plan` is its old name, kept as a hidden alias that says so on stderr: "plan" in
maker is a DAG of steps -- `maker run plan`, `maker plan-show`.)"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from maker.budget.margins import SampleCost, billed, check_p, margins
from maker.budget.rounds import N_GROUPING, shares_prompt
from maker.errors import UsageError

DESCRIPTION = """Choose a run's vote margin from a known per-sample accuracy p (or error rate): the smallest vote
margin k that makes all S steps right with probability --target, the per-step and whole-run
success at that k, expected votes and samples per step, and the expected cost. Repeat --p or
--error to compare models side by side. Measure p with `maker estimate` first."""

EPILOG = """examples:
  maker margin --error 0.0022 --steps 1048575 --target 0.95          # the paper's gpt-4.1-mini: k = 3
  maker margin --error 0.0022 --error 0.3571 --error 0.0569 --steps 1048575 --target 0.95
  maker margin --p 0.998 --steps 1048575 --target 0.95 --tokens-in 300 --price-in 0.4 \\
             --tokens-out 40 --price-out 1.6 --valid-rate 0.99 --json
  maker margin --p 0.99 --p 0.95 --steps 1048575 --target 0.95 --plot margin.png
  maker margin --p 0.99 --steps 10000 --tokens-in 300 --price-in 0.1 --model openai/qwen \\
             --api-base http://127.0.0.1:8000/v1 --speculate 0   # n-grouping endpoint: prompt billed once per request

exit codes: 0 every p has a margin, 1 some p <= 1/2 (no margin helps), 2 bad input."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "margin",
        help="choose k: success odds and cost for a given p",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_arguments(p)
    p.set_defaults(handler=main)
    old = sub.add_parser("plan", description=DESCRIPTION, epilog=EPILOG,  # no help=: left out of `maker --help`
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_arguments(old)
    old.set_defaults(handler=_old_name)


def _old_name(args: argparse.Namespace) -> int:
    print("maker: 'maker plan' is now 'maker margin' (a plan is a DAG of steps: maker run plan, maker plan-show); "
          "the old name will go", file=sys.stderr)
    return main(args)


def _add_arguments(p: argparse.ArgumentParser) -> None:
    a = p.add_argument_group("accuracy (one or more)")
    a.add_argument("--p", type=float, action="append", default=[], help="per-sample accuracy in (0, 1); repeatable")
    a.add_argument(
        "--error", type=float, action="append", default=[], help="per-sample error rate, p = 1 - E; repeatable"
    )
    r = p.add_argument_group("run")
    r.add_argument("--steps", type=int, required=True, help="steps in the run (20-disk Hanoi: 1048575)")
    r.add_argument("--target", type=float, default=0.95, help="wanted whole-run success probability (default 0.95)")
    r.add_argument(
        "--valid-rate", type=float, default=1.0, help="fraction of samples that are not red-flagged (default 1)"
    )
    c = p.add_argument_group("cost per sample")
    c.add_argument("--tokens-in", type=float, default=0.0, help="input tokens per sample")
    c.add_argument("--price-in", type=float, default=0.0, help="USD per million input tokens")
    c.add_argument("--tokens-out", type=float, default=0.0, help="output tokens per sample")
    c.add_argument("--price-out", type=float, default=0.0, help="USD per million output tokens")
    c.add_argument(
        "--model", help="the model the run will use: an openai/NAME with --api-base draws a round's samples as one "
        "request with n, so its prompt is billed once per request; any other model string, once per sample"
    )
    c.add_argument("--api-base", metavar="URL", help="the --model's OpenAI-compatible endpoint, as for maker run")
    c.add_argument(
        "--speculate", type=int, metavar="D", help="the run's --speculate depth: a speculative run sends one request per "
        "sample (default: maker run's, 8 for a chained task; plan tasks and maker solve never speculate: pass 0)",
    )
    c.add_argument(
        "--n-grouping", choices=N_GROUPING, default="auto",
        help="bill the prompt once per request (on) or once per sample (off); auto (default): infer from --model",
    )
    e = p.add_argument_group("cascade (maker run --on-undecided escalate)")
    e.add_argument("--escalate-fraction", type=float, help="fraction of steps escalated to the stronger model, in [0, 1]")
    e.add_argument("--escalate-p", type=float, help="the stronger model's per-sample accuracy (default: as --p)")
    e.add_argument("--escalate-price-in", type=float, help="stronger model: USD per million input tokens (0 when only "
                   "--escalate-price-out is given)")
    e.add_argument("--escalate-price-out", type=float, help="stronger model: USD per million output tokens (0 when only "
                   "--escalate-price-in is given)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--plot", metavar="FILE.png", help="plot expected cost against k and against run length")


def main(args: argparse.Namespace) -> int:
    ps = [check_p(p, "--p") for p in args.p]
    for e in args.error:
        if not 0.0 < e < 1.0:
            raise UsageError(f"--error must be in (0, 1), got {e!r}")
        ps.append(1.0 - e)
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot writes a PNG: name it FILE.png, got {args.plot!r}")
    cost = SampleCost(args.tokens_in, args.tokens_out, args.price_in, args.price_out)
    grouped = shares_prompt(args.model, args.api_base, args.n_grouping, args.speculate)
    priced = args.escalate_price_in is not None or args.escalate_price_out is not None
    strong = SampleCost(args.tokens_in, args.tokens_out, args.escalate_price_in or 0.0,
                        args.escalate_price_out or 0.0) if priced else None
    table = margins(ps, args.steps, args.target, valid_rate=args.valid_rate, cost=cost, shares_prompt=grouped,
                    escalate_fraction=args.escalate_fraction, escalate_p=args.escalate_p, escalate_cost=strong)
    plans, cascade = list(table.margins), table.cascade
    if args.plot:
        from maker.report.cost_plots import plot_plans

        plot_plans(plans, args.plot, cost)
    if args.json:
        print(json.dumps(table.to_dict()))
    else:
        # no tokens or prices given: the cost is unknown, never "$0.00" as if it were computed
        per_sample = f"${cost.usd:.6f} per sample" if cost.usd else "cost unknown (give --tokens-in/--price-in, --tokens-out/--price-out)"
        print(f"{args.steps:,} steps, target {args.target}, valid rate {args.valid_rate}, {per_sample}")
        print(f"prompt billed {billed(grouped)}" + (
            "" if args.n_grouping != "auto" else f" (inferred from --model {args.model}, --speculate "
            f"{'8 (the default)' if args.speculate is None else args.speculate})" if args.model else " (no --model)"))
        print(
            f"{'p':>10} {'error':>8} {'k':>4} {'p_step':>14} {'run success':>12} {'votes/step':>11} "
            f"{'samples/step':>13} {'expected cost':>14} {'requests/step':>14}"
        )
        for pl in plans:
            if pl.k is None:
                print(f"{pl.p:>10.6g} {pl.error:>8.4g}    -  {pl.reason}")
                continue
            print(
                f"{pl.p:>10.6g} {pl.error:>8.4g} {pl.k:>4} {pl.p_step:>14.10f} {pl.run_success:>12.6f} "
                f"{pl.expected_votes:>11.4f} {pl.expected_samples:>13.4f} "
                f"{'$' + format(pl.expected_cost, ',.2f') if cost.usd else 'unknown':>14} "
                f"{pl.requests_per_step:>14.4f}"
            )
        if cascade is not None:
            for pl, c in zip(plans, cascade):
                if c is not None:
                    print(f"cascade, p {pl.p:.6g}: {args.escalate_fraction:.2%} of steps escalated -> expected cost ${c:,.2f}")
        if args.plot:
            print(f"plot: {args.plot}")
    return 0 if table.all_reach else 1

