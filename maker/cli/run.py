"""`maker run TASK ...`: run a task to the end with voting, red flags and a step log."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from maker.cli._correlation import add_correlation_arguments, guard_config, guard_line, red_flag_policy
from maker.cli.common import add_model_arguments, model_specs, prompt_style_of
from maker.config import VotingConfig
from maker.errors import UsageError
from maker.runtime.driver import ClusterConfig, RunResult, run, simulated
from maker.runtime.progress import Progress
from maker.tasks import TASKS, TaskSpec, build_task

DESCRIPTION = """Run TASK step by step. Each step draws k samples at once (the first at
temperature 0), discards red-flagged ones, and keeps drawing until one answer leads every
other by k. Every sample and decision goes to the step log (a Parquet folder)."""

EPILOG = """examples:
  maker run hanoi --disks 10 --model sim:0.998 --k 3 --log runs/h10.parquet
  maker run hanoi --disks 10 --model sim:0.998 --k auto --p 0.99 --target 0.95 --log runs/h10b.parquet
  maker run hanoi --disks 10 --model sim:0.99 --model sim:0.98 --k 3 --json
  maker run hanoi --disks 20 --model sim:0.998 --k 3 --log runs/h20.parquet --resume
  maker run chase --hops 200 --model local --k 3 --prompt-variants 4 --temperature 0.5
      (the embedded SmolLM2-135M, offline: served on 127.0.0.1 for the run; see 'maker models')
  maker run hanoi --disks 8 --model openai/sim --api-base http://127.0.0.1:8400/v1 --speculate 8 --rpm 600
      (against 'maker sim-server --port 8400'; --speculate hides latency, --rpm/--tpm cap the rate)
  maker run multiply --digits 10 --model sim:0.99 --k 3 --workers 2 --log runs/m10.parquet
  maker run sort --n 500 --model sim:0.99 --k 3          (plans: steps run as soon as their inputs
  maker run plan --file my.plan --model sim:0.99          are decided; see 'maker plan-show --help')

models: sim:P (simulator, answers from ground truth with accuracy P; results are labelled
simulated), local (the embedded SmolLM2-135M) or local:PATH.gguf (served by llama-cpp-python
on 127.0.0.1 while the command runs), or any litellm model string such as openai/gpt-4.1-mini
(needs its API key in the environment) or openai/NAME with --api-base for an OpenAI-compatible server.
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
    v.add_argument("--k", default="3", help="vote margin: an integer >= 1, or 'auto' (plans k for --target from --p, or from an estimate of p)")
    v.add_argument("--p", type=float, help="per-step accuracy to plan k with when --k auto (default: estimate it first)")
    v.add_argument("--estimate-samples", type=int, default=200, help="--k auto without --p: random steps to estimate p on (default 200)")
    v.add_argument("--target", type=float, default=0.95, help="wanted probability that the whole run is right (default 0.95)")
    v.add_argument("--max-samples-per-step", type=int, default=100, help="loud cap: a step that needs more fails the run (default 100)")
    v.add_argument("--max-output-tokens", type=int, default=750, help="replies longer than this are red-flagged (default 750)")
    v.add_argument("--first-temperature", type=float, default=0.0, help="temperature of each step's first sample (default 0)")
    v.add_argument("--temperature", type=float, default=0.1, help="temperature of later samples (default 0.1)")
    v.add_argument("--prompt-style", choices=("chat", "completion"), help="chat messages or a plain completion prompt (default: the task's choice; chase: completion, hanoi: chat)")
    v.add_argument("--seed", type=int, default=0, help="run seed: names every draw, so seeded simulators repeat exactly")
    o = p.add_argument_group("output")
    o.add_argument("--log", help="step log folder to create (default: runs/TASK-TIMESTAMP.parquet)")
    o.add_argument("--resume", action="store_true", help="continue the run recorded in --log from its last decided step")
    o.add_argument("--json", action="store_true", help="print one JSON object with the result at the end")
    o.add_argument("--quiet", action="store_true", help="no progress line and no guard warnings (those stay in the log's event rows and --json)")
    o.add_argument("--max-steps", type=int, help="stop after this many steps (a partial run; resume later)")
    c = p.add_argument_group("cluster")
    c.add_argument("--address", help="join an existing Ray cluster (e.g. 10.0.0.5:6379 or auto); default: a local Ray")
    c.add_argument("--workers", type=int, default=1, help="Ray worker actors holding model clients (default 1)")
    c.add_argument("--segment-steps", type=int, default=2048, help="steps a worker votes per call (default 2048)")
    c.add_argument(
        "--speculate",
        type=int,
        metavar="D",
        help="vote up to D steps ahead on the premise the current leader implies, to hide model latency; "
        "decisions are unchanged, samples on a losing premise are logged as wasted "
        "(default 8; 0 when every model is a zero-latency simulator)",
    )
    c.add_argument(
        "--draft",
        choices=("none", "reference"),
        default="none",
        help="'reference': before a step has any reply, take the task's ground-truth answer as its leader, so the "
        "window fills D steps deep at once (speculative decoding's draft), and with --workers N later segments "
        "start on the other workers; votes still decide every step, on their own premise. Only for tasks with "
        "ground truth (hanoi, chase); default none",
    )
    add_correlation_arguments(p)  # red flags, prompt variants, the live guard
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


def choose_k(
    args: argparse.Namespace, steps: int, task: Any = None, voting: VotingConfig | None = None, policy: Any = None
) -> int:
    """--k as an integer; for --k auto, planned from --p, or from an estimate of p drawn
    exactly as the run will draw (`voting`'s variants, style, temperatures and cap, `policy`)."""
    if args.k != "auto":
        try:
            k = int(args.k)
        except ValueError:
            raise UsageError(f"--k must be an integer >= 1 or 'auto', got {args.k!r}") from None
        if k < 1:
            raise UsageError(f"--k must be an integer >= 1, got {k}")
        return k
    if args.p is None:
        if task is None:
            raise UsageError("--k auto needs --p (the per-step accuracy to plan with)")
        from maker.budget.estimate import estimate_for_run, print_auto_k

        k, args.estimate = estimate_for_run(
            task, model_specs(args), args.target, samples=args.estimate_samples, seed=args.seed,
            cluster=ClusterConfig(workers=args.workers, address=args.address),
            voting=voting or VotingConfig(k=1, first_temperature=args.first_temperature, temperature=args.temperature,
                                          max_output_tokens=args.max_output_tokens, prompt_style=prompt_style_of(args, task)),
            policy=policy, progress=None if args.quiet else sys.stderr,
        )
        print_auto_k(args.estimate, sys.stderr)
        return k
    import maker.voting as voting
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
    policy = red_flag_policy(args, task)  # bad detectors or variants: exit 2 before anything is spent
    voting_config = VotingConfig(
        k=1,  # the drawing options first: --k auto estimates p with them
        first_temperature=args.first_temperature,
        temperature=args.temperature,
        max_samples_per_step=args.max_samples_per_step,
        max_output_tokens=args.max_output_tokens,
        prompt_variants=args.prompt_variants,
        max_discards_in_a_row=args.max_discards_in_a_row,
        max_failed_calls=args.max_failed_calls,
        prompt_style=prompt_style_of(args, task),
    )
    k = choose_k(args, task.total_steps, task, voting_config, policy)
    voting_config = replace(voting_config, k=k)
    log = args.log or f"runs/{task.spec.name}-{time.strftime('%Y%m%d-%H%M%S')}.parquet"
    specs = model_specs(args)
    label = "[simulated] " if simulated(specs) else ""
    progress = Progress(task.total_steps, enabled=not args.quiet, label=label)
    result = run(
        task,
        specs,
        voting_config,
        log=Path(log),
        resume=args.resume,
        seed=args.seed,
        cluster=ClusterConfig(
            workers=args.workers, address=args.address, segment_steps=args.segment_steps, speculate=args.speculate,
            draft=args.draft == "reference",
        ),
        policy=policy,
        progress=progress,
        max_steps=args.max_steps,
        guard=guard_config(args, k),
    )
    if getattr(args, "estimate", None) is not None:
        result.extra["estimate"] = args.estimate.to_dict()
    report(result, args.json)
    return 0 if result.errors == 0 and (result.solved or args.max_steps) else 1


def report(result: RunResult, as_json: bool) -> int:
    """Print the result (one JSON object, or the summary); the exit code (0: solved, no errors)."""
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        print_summary(result)
    return 0 if result.errors == 0 and result.solved else 1


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
    if result.faults_by_kind:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(result.faults_by_kind.items()))
        print(f"  model-call faults {sum(result.faults_by_kind.values()):,} ({faults}; failed calls, retried or not, each logged with its sample)")
    extra = result.extra
    if guard_line(extra.get("guard") or {}):
        print(guard_line(extra["guard"]))
    if extra.get("speculate"):
        drafted = " (drafted from the reference)" if extra.get("draft") else ""
        print(f"  speculation depth {extra['speculate']}{drafted}  wasted samples {extra.get('wasted_samples', 0):,}")
    nodes = sorted(set(extra.get("node_ids") or ()))
    if len(nodes) > 1:
        print(f"  workers on {len(nodes)} Ray nodes: " + ", ".join(n[:12] for n in nodes))
    if "levels" in extra:
        print(f"  {extra['levels']} levels (widest {extra['widest_level']}), {extra['ray_calls']} Ray calls, "
              f"{extra['dispatch']} dispatch")
    if "answer" in extra:
        verdict = {True: "right", False: "WRONG", None: "no ground truth to check it"}[extra["answer_correct"]]
        print(f"  answer: {extra['answer']} ({verdict})")
        if extra["answer_correct"] is False:
            print(f"  expected: {extra['expected_answer']}")
