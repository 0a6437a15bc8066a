"""`maker solve "PROBLEM" --model M`: a model plans the problem (voted), then the plan runs."""

from __future__ import annotations

import argparse
import json
from typing import Any

from maker.cli.common import (
    add_budget_argument,
    add_model_arguments,
    add_voting_arguments,
    budget_preamble,
    model_specs,
    user_prices,
    voting_from_args,
)

DESCRIPTION = """Solve a free-form problem in two phases. Plan: the model is asked whether the problem
is atomic (one short step answers it) or how to split it into sub-problems whose results
combine into the answer (one line each, '#E<n> = sub-problem', later lines naming earlier
results as #E1, #E2, ...). Several proposals are drawn and voted on like any step (first to
lead by k, red-flagged proposals discarded); each sub-problem of the winner is planned the
same way, until every step is atomic. Run: the plan -- a DAG of atomic steps -- runs on the
Ray workers, each step voted as soon as the steps it names are decided."""

EPILOG = """examples:
  maker solve "Compute (12 + 7) * (3 + 4) - 5" --model script:arith --k 2
  maker solve "Compute (12 + 7) * (3 + 4) - 5" --model script:arith,p=0.8 --k 3 --dry-run
  maker solve "How many letters are in the capital of France, times 3?" --model openai/gpt-4.1-mini --k 3
  maker solve "Compute (12 + 7) * (3 + 4) - 5" --model script:arith,p=0.8 --k 3 --max-samples-per-step 4 \\
              --on-undecided escalate --escalate-to script:arith     plans and steps that will not decide re-vote

models: any litellm model string, or script:arith (a built-in scripted fake that plays
decomposer and solver for arithmetic; results are labelled simulated). The simulator sim:P
cannot play it: a free-form problem has no ground truth to answer from.
--dry-run plans (that draws samples) and prints the plan without running it.
exit codes: 0 answered with every step decided, 1 a run failure, 2 bad input or a plan that
cannot run (a step not atomic at --max-depth, too many steps)."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "solve",
        help="plan a problem with a model (voted decomposition), then run the plan",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("problem", help="the problem, in words")
    add_model_arguments(p)
    add_voting_arguments(p, title="voting (plans and steps alike)", auto=False, style=False)
    d = p.add_argument_group("planning")
    d.add_argument("--max-depth", type=int, default=4, help="a sub-problem still not atomic this deep stops the plan (default 4)")
    d.add_argument("--max-steps", type=int, default=64, help="most atomic steps in the whole plan (default 64)")
    d.add_argument("--max-substeps", type=int, default=8, help="most steps one proposal may have (default 8)")
    d.add_argument("--dry-run", action="store_true", help="plan and print the plan; run nothing")
    o = p.add_argument_group("output and cluster")
    o.add_argument("--log", help="step log folder to create (default: runs/solve-TIMESTAMP.parquet)")
    o.add_argument("--json", action="store_true", help="print one JSON object at the end (plan, votes, result)")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    o.add_argument("--address", help="join an existing Ray cluster; default: a local Ray")
    o.add_argument("--workers", type=int, default=1, help="Ray worker actors (default 1)")
    add_budget_argument(o)
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from maker.budget.choosing import choose_k
    from maker.cli.catalog.plan_show import format_plan
    from maker.cli.run import report
    from maker.config import ClusterConfig
    from maker.runtime.decompose import DecomposeConfig
    from maker.runtime.driver import simulated
    from maker.runtime.progress import Progress
    from maker.solving import solve, solve_plan
    from maker.tasks.plans.plan_task import solve_task

    voting = voting_from_args(args, k=choose_k(args.k, 1).k)
    config = DecomposeConfig(args.max_depth, args.max_steps, args.max_substeps)
    specs = model_specs(args)
    prices = user_prices(args, [*args.model, *voting.escalation_models])
    label = " [simulated model]" if simulated(specs) else ""
    if args.dry_run:
        decomposition = solve_plan(args.problem, specs, voting, config=config, seed=args.seed,
                                   max_cost_usd=args.max_cost, prices=prices)
        if args.json:
            print(json.dumps({"plan": decomposition.plan.text(), "plan_votes": decomposition.summary(),
                              "plan_samples": decomposition.samples, "simulated": simulated(specs)}))
        else:
            task = solve_task(args.problem, decomposition.plan.text())
            print(format_plan(task.plan, task.describe(), 0))
            print(f"planned with {len(decomposition.votes)} voted requests, {decomposition.samples} samples, "
                  f"{decomposition.red_flags} red-flagged{label}")
        return 0

    def on_plan(task: Any, decomposition: Any) -> Progress:
        if not args.json:
            print(task.plan.text(), end="")
            print(f"(planned with {len(decomposition.votes)} voted requests, {decomposition.samples} samples){label}")
        args.resume, args.p = False, None
        budget_preamble(task, specs, voting, args, task.total_steps)
        return Progress(task.total_steps, enabled=not args.quiet, label="[simulated] " if label else "",
                        ground_truth=False)  # a free-form problem has no ground truth

    result = solve(args.problem, specs, voting, config=config, seed=args.seed, log=args.log,
                   cluster=ClusterConfig(workers=args.workers, address=args.address),
                   max_cost_usd=args.max_cost, prices=prices, on_plan=on_plan)
    return report(result, args.json)
