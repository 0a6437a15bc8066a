"""`maker run TASK ...`: run a task to the end with voting, red flags and a step log."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tasks import TASKS, TaskSpec, build_task

from ..config import VotingConfig
from ..errors import UsageError
from ..progress import Progress
from ..red_flags import RedFlagPolicy
from ..runner import ClusterConfig, RunResult, run
from .common import add_model_arguments, model_specs

DESCRIPTION = """Run TASK step by step. Each step draws k samples at once (the first at
temperature 0), discards red-flagged ones, and keeps drawing until one answer leads every
other by k. Every sample and decision goes to the step log (a Parquet folder)."""

EPILOG = """examples:
  maker run hanoi --disks 10 --model sim:0.998 --k 3 --log runs/h10.parquet
  maker run hanoi --disks 10 --model sim:0.998 --k auto --p 0.99 --target 0.95 --log runs/h10b.parquet
  maker run hanoi --disks 10 --model sim:0.99 --model sim:0.98 --k 3 --json
  maker run hanoi --disks 20 --model sim:0.998 --k 3 --log runs/h20.parquet --resume

models: sim:P (simulator, answers from ground truth with accuracy P; results are labelled
simulated), or any litellm model string such as openai/gpt-4.1-mini (needs its API key in
the environment) or openai/NAME with --api-base for an OpenAI-compatible server.
exit codes: 0 solved with zero errors, 1 run failed or finished with errors, 2 bad input."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a task with voting and red flags",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=sorted(TASKS), help="task to run: " + "; ".join(f"{n}: {TASKS[n].summary}" for n in sorted(TASKS)))  # type: ignore[attr-defined]
    add_task_options(p)
    add_model_arguments(p)
    v = p.add_argument_group("voting")
    v.add_argument("--k", default="3", help="vote margin: an integer >= 1, or 'auto' (needs --p; uses --target)")
    v.add_argument("--p", type=float, help="per-step accuracy to plan k with when --k auto")
    v.add_argument("--target", type=float, default=0.95, help="wanted probability that the whole run is right (default 0.95)")
    v.add_argument("--max-samples-per-step", type=int, default=100, help="loud cap: a step that needs more fails the run (default 100)")
    v.add_argument("--max-output-tokens", type=int, default=750, help="replies longer than this are red-flagged (default 750)")
    v.add_argument("--first-temperature", type=float, default=0.0, help="temperature of each step's first sample (default 0)")
    v.add_argument("--temperature", type=float, default=0.1, help="temperature of later samples (default 0.1)")
    v.add_argument("--seed", type=int, default=0, help="run seed: names every draw, so seeded simulators repeat exactly")
    o = p.add_argument_group("output")
    o.add_argument("--log", help="step log folder to create (default: runs/TASK-TIMESTAMP.parquet)")
    o.add_argument("--resume", action="store_true", help="continue the run recorded in --log from its last decided step")
    o.add_argument("--json", action="store_true", help="print one JSON object with the result at the end")
    o.add_argument("--quiet", action="store_true", help="no progress line")
    o.add_argument("--max-steps", type=int, help="stop after this many steps (a partial run; resume later)")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join an existing Ray cluster (e.g. 10.0.0.5:6379 or auto); default: a local Ray")
    c.add_argument("--workers", type=int, default=1, help="Ray worker actors holding model clients (default 1)")
    c.add_argument("--segment-steps", type=int, default=2048, help="steps a worker votes per call (default 2048)")
    p.set_defaults(handler=main)


def add_task_options(p: argparse.ArgumentParser) -> None:
    """Every task's options, grouped per task; only the chosen task's are used."""
    seen: set[str] = set()
    for name in sorted(TASKS):
        group = p.add_argument_group(f"{name} options")
        for opt in getattr(TASKS[name], "options", ()):
            flag = "--" + opt.name.replace("_", "-")
            if flag in seen:
                continue
            seen.add(flag)
            group.add_argument(flag, dest=f"task_{opt.name}", type=opt.type, default=None, help=opt.help)


def task_from_args(args: argparse.Namespace) -> Any:
    cls = TASKS[args.task]
    options = {}
    for opt in getattr(cls, "options", ()):
        value = getattr(args, f"task_{opt.name}", None)
        if value is None:
            if opt.required:
                raise UsageError(f"{args.task} needs --{opt.name.replace('_', '-')}")
            value = opt.default
        options[opt.name] = value
    try:
        return build_task(TaskSpec(args.task, options))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def choose_k(args: argparse.Namespace, steps: int) -> int:
    if args.k != "auto":
        try:
            k = int(args.k)
        except ValueError:
            raise UsageError(f"--k must be an integer >= 1 or 'auto', got {args.k!r}") from None
        if k < 1:
            raise UsageError(f"--k must be an integer >= 1, got {k}")
        return k
    if args.p is None:
        raise UsageError("--k auto needs --p (the per-step accuracy to plan with)")
    import voting

    try:
        k = voting.k_min(args.p, steps, args.target)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    success = voting.run_success(args.p, k, steps)
    print(
        f"maker: k = {k} (smallest margin for p={args.p}, {steps:,} steps, target {args.target}: "
        f"whole-run success {success:.4f})",
        file=sys.stderr,
    )
    return k


def main(args: argparse.Namespace) -> int:
    task = task_from_args(args)
    k = choose_k(args, task.total_steps)
    voting_config = VotingConfig(
        k=k,
        first_temperature=args.first_temperature,
        temperature=args.temperature,
        max_samples_per_step=args.max_samples_per_step,
        max_output_tokens=args.max_output_tokens,
    )
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max-steps must be >= 1")
    log = args.log or f"runs/{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    specs = model_specs(args)
    simulated = all(s.is_simulated for s in specs)
    label = "[simulated] " if simulated else ""
    progress = Progress(task.total_steps, enabled=not args.quiet, label=label)
    result = run(
        task,
        specs,
        voting_config,
        log=Path(log),
        resume=args.resume,
        seed=args.seed,
        cluster=ClusterConfig(workers=args.workers, address=args.address, segment_steps=args.segment_steps),
        policy=RedFlagPolicy(max_output_tokens=args.max_output_tokens),
        progress=progress,
        max_steps=args.max_steps,
    )
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print_summary(result)
    return 0 if result.errors == 0 and (result.solved or args.max_steps) else 1


def print_summary(result: RunResult) -> None:
    label = " [simulated model]" if result.simulated else ""
    verdict = "solved" if result.solved else "NOT solved"
    print(f"{result.task}: {verdict} in {result.steps:,} steps with {result.errors} errors{label}")
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(result.red_flags_by_reason.items())) or "none"
    print(
        f"  k={result.k}  samples {result.samples:,} ({result.samples_per_step:.3f}/step)  "
        f"red flags {result.red_flags:,} ({by_reason})"
    )
    print(f"  wall {result.wall_s:.1f}s  cost ${result.cost_usd:.4f}  log {result.log}")
