"""`maker estimate TASK --model M ...`: measure p per model and pick the cheapest that can do the run."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from maker.budget.estimate import EstimateReport, estimate
from maker.budget.tally import ModelEstimate
from maker.cli.common import add_model_arguments, model_specs, voting_default, voting_from_args
from maker.cli.run import add_task_arguments, task_from_args
from maker.cli.safeguards import add_red_flag_arguments, red_flag_policy
from maker.config import ClusterConfig
from maker.errors import UsageError
from maker.tasks import TASKS

DESCRIPTION = """Measure each model's per-step accuracy p before paying for a run. Draws samples on
random steps of TASK, each on its true premise (from the task's ground truth), the first at
temperature 0 and later ones at 0.1 as a run does (the same prompt style, prompt variants,
token cap and red-flag policy as `maker run` with these options), until each step has two valid votes; grades
them against the truth; and reports per model: p with a 95% Clopper-Pearson interval, the
valid-sample rate and red flags by reason, tokens and cost per sample, the collision rate (both
first votes wrong) against independence, the margin k that reaches --target over the task's
steps on the pessimistic end of the interval, expected samples per step and expected cost.
Recommends the cheapest model that meets the target, or says why none can."""

EPILOG = """examples:
  maker estimate hanoi --disks 20 --model sim:0.998 --model sim:0.99 --samples 200 --target 0.95
  maker estimate hanoi --disks 20 --model openai/gpt-4.1-mini --model openai/gpt-4.1-nano --samples 500 --json
  maker estimate hanoi --disks 10 --model openai/smollm2 --api-base http://127.0.0.1:8080/v1 --price-in 0 --price-out 0
  maker estimate hanoi --disks 20 --model sim:0.99 --model sim:0.95 --price-in 0.4 --price-out 1.6 --plot costs.png

prices: litellm's offline price table for hosted models; --price-in/--price-out [MODEL=]USD (per
million tokens; for MODEL, or every model) to override or to price a model the table does not
know; the simulator is free. A model with no known price is listed apart, never ranked by cost.
exit codes: 0 a model meets the target, 1 none does (the report says why), 2 bad input or
every model failed."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "estimate",
        help="measure p per model; pick k and the cheapest model",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_task_arguments(p, "task to sample steps from: " + ", ".join(sorted(TASKS)))
    add_model_arguments(p)
    for action in p._actions:  # here a repeated --model is a candidate, not a mix
        if action.dest == "model":
            action.help = "sim:P or a litellm model string; repeat to compare candidates, each measured alone"
    e = p.add_argument_group("estimate")
    e.add_argument("--samples", type=int, default=200, help="random steps to measure on (default 200)")
    e.add_argument("--votes-per-step", type=int, default=2, help="valid votes drawn per step, >= 2 (default 2)")
    e.add_argument("--target", type=float, default=0.95, help="wanted whole-run success probability (default 0.95)")
    e.add_argument("--steps", type=int, help="run length to plan for (default: the task's step count)")
    e.add_argument("--seed", type=int, default=0, help="picks the steps and names the draws (default 0)")
    v = p.add_argument_group("sampling, as in a run")
    v.add_argument("--max-output-tokens", type=int,
                   help=f"replies longer than this are red-flagged (default {voting_default('max_output_tokens')})")
    v.add_argument("--first-temperature", type=float,
                   help=f"temperature of each step's first sample (default {voting_default('first_temperature')})")
    v.add_argument("--temperature", type=float, help=f"temperature of later samples (default {voting_default('temperature')})")
    v.add_argument("--prompt-style", choices=("chat", "completion"), help="chat messages or a plain completion prompt (default: the task's choice, as maker run)")
    add_red_flag_arguments(p)  # the run's red-flag policy and prompt variants
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="print one JSON object")
    o.add_argument("--plot", metavar="FILE.png", help="plot expected cost against k and against run length")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join an existing Ray cluster; default: a local Ray")
    c.add_argument("--workers", type=int, default=1, help="Ray worker actors (default 1)")
    c.add_argument("--batch-steps", type=int, default=64, help="steps per worker call (default 64)")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.workers < 1:
        raise UsageError("--workers must be >= 1")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise UsageError(f"--plot writes a PNG: name it FILE.png, got {args.plot!r}")
    task = task_from_args(args)
    voting = voting_from_args(args, task, k=1)
    policy = red_flag_policy(args, task, voting)  # bad detectors or variants: exit 2 before anything is spent
    report = estimate(
        task,
        model_specs(args),
        samples=args.samples,
        target=args.target,
        steps=args.steps,
        voting=voting,
        policy=policy,
        seed=args.seed,
        cluster=ClusterConfig(workers=args.workers, address=args.address),
        votes_per_step=args.votes_per_step,
        batch_steps=args.batch_steps,
        progress=sys.stderr,
    )
    if report.all_failed:
        from maker.cluster import ModelConfigError

        reasons = "; ".join(f"{m.model}: {m.reason}" for m in report.models)
        raise ModelConfigError(f"every model failed, nothing to estimate: {reasons}")
    if args.plot:
        from maker.report.cost_plots import plot_estimate

        plot_estimate(report, args.plot)
    if args.json:
        print(json.dumps(report.to_dict()))
    else:
        print_report(report)
        if args.plot:
            print(f"plot: {args.plot}")
    return 0 if report.recommended else 1


def print_report(report: EstimateReport) -> None:
    label = " [simulated]" if report.simulated else ""
    print(
        f"{report.task}: {report.graded_text} (random, on their true premises), {report.votes_per_step} valid votes asked of each; "
        f"planning for {report.steps:,} steps at target {report.target}{label}"
    )
    for m in report.models:
        print_model(m)
    print(("recommended: " if report.recommended else "verdict: ") + report.summary)


def print_model(m: ModelEstimate) -> None:
    print(f"\n{m.model}{' [simulated]' if m.simulated else ''}: {m.verdict}")
    if m.verdict == "failed":
        print(f"  {m.reason}")
        return
    flags = ", ".join(f"{r} {n}" for r, n in m.red_flags.items()) or "none"
    print(f"  valid rate   {m.valid_rate:.3f} of {m.samples} samples  (red flags: {flags})")
    cost = f"${m.cost_per_sample:.6f}/sample" if m.price_known else "cost unknown"
    cache = f", {m.cache_hit_rate:.1%} of prompt tokens cached" if m.cache_hit_rate else ""
    print(
        f"  tokens       in {m.tokens_in_mean:.1f}, out {m.tokens_out_mean:.1f} per sample{cache}; "
        f"{cost} ({m.price_source})"
    )
    if m.p is None:
        print(f"  {m.reason}")
        return
    print(f"  p            {m.p:.4f}  95% CI [{m.p_low:.4f}, {m.p_high:.4f}]  ({m.correct} of {m.valid} votes right)")
    if m.collision_rate is not None:
        print(
            f"  collisions   {m.first_two_wrong} of {m.steps_with_two} steps ({m.collision_rate:.3%}) "
            f"vs {m.collision_expected:.3%} if independent"
        )
    if m.k is not None:
        cost = ("cost unknown (no known price)" if m.expected_cost is None
                else f"${m.expected_cost:,.2f}" if m.expected_cost else f"$0 ({m.price_source})")
        print(
            f"  plan         k = {m.k} (p = {m.p_low:.4f}, the interval's low end): whole-run success "
            f"{m.run_success:.4f}, {m.expected_samples_per_step:.3f} samples/step, expected {cost}"
            f" (prompt billed once per {'request' if m.shares_prompt else 'sample'})"
        )
    for w in m.warnings:
        print(f"  warning      {w}")
    if m.reason:
        print(f"  why not      {m.reason}")
