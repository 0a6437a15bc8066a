"""`maker run` for plan tasks (add, multiply, sort, plan --file): the DAG runner behind the same options.

Not a subcommand of its own: `maker run` hands a plan task here, so a user runs a DAG
exactly like a chain.  Chain-only options (--resume, --max-steps, --speculate, --draft) are
refused with one line instead of being silently ignored.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from maker.cli.common import model_specs
from maker.config import VotingConfig
from maker.engine.red_flags import RedFlagPolicy
from maker.errors import UsageError
from maker.runtime.dag import DagConfig, run_plan
from maker.runtime.driver import ClusterConfig, RunResult
from maker.runtime.progress import Progress
from maker.tasks.plan_task import PlanTask


def voting_from_args(args: argparse.Namespace, steps: int) -> VotingConfig:
    """The voting options of `maker run` (and `maker solve`) as a VotingConfig."""
    from maker.cli.run import choose_k

    if args.k == "auto" and getattr(args, "p", None) is None:
        raise UsageError("--k auto on a plan needs --p (the per-step accuracy to plan k with)")
    return VotingConfig(
        k=choose_k(args, steps),
        first_temperature=args.first_temperature,
        temperature=args.temperature,
        max_samples_per_step=args.max_samples_per_step,
        max_output_tokens=args.max_output_tokens,
        max_failed_calls=getattr(args, "max_failed_calls", VotingConfig.max_failed_calls),
    )


def main_plan(args: argparse.Namespace, task: PlanTask) -> int:
    chain_only = (("--resume", args.resume), ("--max-steps", args.max_steps), ("--speculate", args.speculate),
                  ("--draft", getattr(args, "draft", "none") != "none"))
    for flag, value in chain_only:
        if value:
            raise UsageError(f"{flag} applies to chained tasks; {task.spec.name} is a plan (a DAG of steps)")
    voting = voting_from_args(args, task.total_steps)
    specs = model_specs(args)
    log = args.log or f"runs/{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    label = "[simulated] " if all(s.is_simulated for s in specs) else ""
    result = run_plan(
        task,
        specs,
        voting,
        log=Path(log),
        seed=args.seed,
        cluster=ClusterConfig(workers=args.workers, address=args.address),
        dag=DagConfig(),
        policy=RedFlagPolicy(),
        progress=Progress(task.total_steps, enabled=not args.quiet, label=label),
    )
    return report(result, args.json)


def report(result: RunResult, as_json: bool) -> int:
    """Print the result (one JSON object, or the summary with the answer); the exit code."""
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        from maker.cli.run import print_summary

        print_summary(result)
        extra = result.extra
        print(f"  {extra['levels']} levels (widest {extra['widest_level']}), {extra['ray_calls']} Ray calls, "
              f"{extra['dispatch']} dispatch")
        verdict = {True: "right", False: "WRONG", None: "no ground truth to check it"}[extra["answer_correct"]]
        print(f"  answer: {extra['answer']} ({verdict})")
        if extra["answer_correct"] is False:
            print(f"  expected: {extra['expected_answer']}")
    return 0 if result.errors == 0 and result.solved else 1
