"""`maker run TASK ...`: run a task to the end with voting, red flags and a step log."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from maker.budget.choosing import choose_k as pick_k
from maker.cli.common import (
    add_budget_argument,
    add_model_arguments,
    add_voting_arguments,
    budget_preamble,
    draft_model_name,
    estimate_spend,
    model_specs,
    print_cost_lines,
    served_specs,
    user_prices,
    voting_from_args,
)
from maker.cli.safeguards import add_safeguard_arguments, guard_config, guard_line, red_flag_policy
from maker.cluster import ModelSpec
from maker.config import ClusterConfig, VotingConfig
from maker.errors import StepLogError, UsageError
from maker.runtime.chain.draft import DraftTally
from maker.runtime.driver import RunResult, run, simulated
from maker.runtime.progress import Progress
from maker.tasks import TASKS
from maker.tasks.base import Oracle
from maker.tasks.registry import TaskNameError, resolve, task_from_options

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
  maker run hanoi --disks 10 --model openai/sim --api-base http://127.0.0.1:8400/v1 --concurrency 512 \
      --draft sim:0.95,latency=0.01     (a cheap proposer walks ahead; the voters confirm D steps at once)
  maker run multiply --digits 10 --model sim:0.99 --k 3 --workers 2 --log runs/m10.parquet
  maker run sort --n 500 --model sim:0.99 --k 3          (plans: steps run as soon as their inputs
  maker run plan --file my.plan --model sim:0.99          are decided; see 'maker plan-show --help')
  maker run --task examples/ledger.py:ledger --n 200 --model sim:0.95 --k 2   a task of your own
  maker run --task mypkg.tasks:Ledger --opt n=200 --model py:mypkg.models:client   (see 'maker tasks')

models: py:pkg.module:factory (your own ModelClient or function), sim:P (simulator, answers from ground truth with accuracy P; results are labelled
simulated), local (the embedded SmolLM2-135M) or local:PATH.gguf (served by llama-cpp-python
on 127.0.0.1 while the command runs), or any litellm model string such as openai/gpt-4.1-mini
(needs its API key in the environment) or openai/NAME with --api-base for an OpenAI-compatible server.
exit codes: 0 solved with zero errors (a task without ground truth: finished, errors unknown),
1 run failed or finished with errors, 2 bad input."""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a task with voting and red flags",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_task_arguments(p, "task to run: " + "; ".join(f"{n}: {TASKS[n].summary}" for n in sorted(TASKS)))  # type: ignore[attr-defined]
    add_model_arguments(p)
    add_voting_arguments(p)
    o = p.add_argument_group("output")
    o.add_argument("--log", help="step log folder to create (default: runs/TASK-TIMESTAMP.parquet)")
    o.add_argument("--resume", action="store_true", help="continue the run recorded in --log from its last decided step")
    o.add_argument("--resume-changed-code", action="store_true",
                   help="with --resume: go on although the task's code changed since the log began (refused "
                        "otherwise); the log records the change")
    o.add_argument("--json", action="store_true", help="print one JSON object with the result at the end")
    o.add_argument("--quiet", action="store_true", help="no progress line and no guard warnings (those stay in the log's event rows and --json)")
    o.add_argument("--max-steps", type=int, help="stop after this many steps (a partial run; resume later)")
    add_budget_argument(o)
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
        default="none",
        metavar="MODEL",
        help="a cheap proposer that walks the chain ahead of the voters (speculative decoding, one level up): "
        "each step with no reply yet takes the draft's guess as its leader, so up to --speculate steps (default 64 "
        "with a draft, adapting to how often the guesses hold) are voted at once, each on the premise the guesses "
        "imply; votes still decide every step on their own premise, so the decisions equal an in-order run's. "
        "MODEL: any model string (local, sim:0.95,latency=0.01, openai/gpt-4.1-nano, a --model's name), "
        "py:pkg.module:fn for a function (task, step) -> reply text, or 'reference' (the task's ground truth: "
        "benchmarks only; with --workers N it also starts later segments on the other workers). Its samples are "
        "logged as 'draft' rows, never votes, and their cost is counted. Give the voters --concurrency of at least "
        "depth x k, or the window stays shallow. Chained tasks only; default none",
    )
    c.add_argument("--draft-api-base", metavar="URL",
                   help="base URL of an OpenAI-compatible server for a --draft model that no --model names")
    add_safeguard_arguments(p)  # red flags, prompt variants, the live guard
    p.set_defaults(handler=main)


def add_task_arguments(p: argparse.ArgumentParser, help: str) -> None:
    """TASK (a built-in or plugin name), --task REF (any task), --opt NAME=VALUE and the
    built-in tasks' own option flags."""
    p.add_argument("task", nargs="?", help=help + " (or --task REF for a task of your own; see 'maker tasks')")
    t = p.add_argument_group("your own task")
    t.add_argument("--task", dest="task_ref", metavar="REF",
                   help="pkg.module:attr, path/to/file.py:attr (a task class, factory or task object), or an "
                   "installed plugin's name; its declared options become flags too")
    t.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                   help="an option of the task, repeatable (e.g. --opt n=200)")
    add_task_options(p)


def add_user_task_flags(parser: argparse.ArgumentParser, ref: str) -> None:
    """The declared options (TaskOption) of the task `ref` names, as flags of `parser`
    (the ones no built-in task already offers under the same name)."""
    try:
        source = resolve(ref)
    except TaskNameError as exc:
        raise UsageError(str(exc)) from None
    actions = {s: action for action in parser._actions for s in action.option_strings}
    group = parser.add_argument_group(f"{source.name} options")
    for opt in source.options:
        flag = "--" + opt.name.replace("_", "-")
        action = actions.get(flag)
        if action is None:
            group.add_argument(flag, dest=f"task_{opt.name}", type=opt.type, default=None, help=opt.help)
        elif action.dest == f"task_{opt.name}":  # a built-in task's flag of the same name: this task's type and help
            action.type, action.help = opt.type, opt.help
            for other in parser._action_groups:
                if action in other._group_actions:
                    other._group_actions.remove(action)
            group._group_actions.append(action)


def log_name(task: Any) -> str:
    """`runs/NAME-TIMESTAMP.parquet`, NAME the task's short name (`ledger` for `pkg.mod:ledger`)."""
    name = task.spec.name.rpartition(":")[2].rpartition("/")[2] or "task"
    return f"runs/{name}-{time.strftime('%Y%m%d-%H%M%S')}.parquet"


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
    """The task TASK or --task names, built by `maker.tasks.registry.task_from_options` with
    the options its flags and --opt give; UsageError (one line) for a name that does not
    resolve, an option it does not take, or a factory that raises."""
    ref = getattr(args, "task_ref", None)
    if ref and args.task and args.task != ref:
        raise UsageError(f"name the task once: got {args.task!r} and --task {ref!r}")
    ref = ref or args.task
    if not ref:
        raise UsageError("name a task: TASK (see 'maker tasks') or --task pkg.module:attr / path/to/file.py:attr")
    try:
        source = resolve(ref)
    except TaskNameError as exc:
        raise UsageError(str(exc)) from None
    declared = {opt.name: opt for opt in source.options}
    given = _opt_values(getattr(args, "opt", []) or [], declared)
    flags = {key[len("task_"):]: value for key, value in vars(args).items()
             if key.startswith("task_") and key != "task_ref" and value is not None}
    twice = sorted(set(flags) & set(given))
    if twice:
        raise UsageError(f"give {', '.join(twice)} once: as --{twice[0].replace('_', '-')} or as --opt, not both")
    foreign = sorted(name for name in flags if name not in declared)
    if foreign and source.origin == "built-in":  # another task's flag: refused, never ignored
        takes = ", ".join("--" + n.replace("_", "-") for n in declared) or "no options"
        raise UsageError(f"{source.name} does not take {', '.join('--' + n.replace('_', '-') for n in foreign)} "
                         f"(it takes: {takes})")
    for name, value in flags.items():
        opt = declared.get(name)
        if opt is not None and not isinstance(value, opt.type):  # parsed by a built-in's flag of that name
            try:
                flags[name] = opt.type(value)
            except (TypeError, ValueError):
                raise UsageError(f"--{name.replace('_', '-')}: {value!r} is not a valid {opt.type.__name__}") from None
    missing = [o.name for o in declared.values() if o.required and o.name not in flags and o.name not in given]
    if missing:  # said in flags, as the user gives them
        raise UsageError(f"{source.name} needs --{missing[0].replace('_', '-')}")
    try:
        return task_from_options(ref, {**flags, **given})
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _opt_values(pairs: list[str], declared: dict[str, Any]) -> dict[str, Any]:
    """--opt NAME=VALUE pairs: a declared option's value in its type, any other as a Python
    literal when it reads as one (``3``, ``[1, 2]``), else as text."""
    import ast

    out: dict[str, Any] = {}
    for pair in pairs:
        name, eq, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name.isidentifier():
            raise UsageError(f"--opt takes NAME=VALUE, got {pair!r}")
        opt = declared.get(name)
        try:
            if opt is not None:
                out[name] = opt.type(text)
            else:
                try:
                    out[name] = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    out[name] = text
        except (TypeError, ValueError):
            raise UsageError(f"--opt {name}: {text!r} is not a valid {opt.type.__name__}") from None
    return out


def choose_k(args: argparse.Namespace, steps: int, task: Any = None, voting: VotingConfig | None = None,
             policy: Any = None) -> int:
    """--k by `maker.budget.margins.choose_k` (for --k auto: from --p, or an estimate of p drawn
    as the run will draw); says how on stderr; the estimate's report goes to ``args.estimate``."""
    choice = pick_k(args.k, steps, target=args.target, p=args.p, task=task,
                    models=model_specs(args) if args.k == "auto" and args.p is None and task is not None else (),
                    voting=voting, policy=policy, samples=args.estimate_samples, seed=args.seed,
                    cluster=ClusterConfig(workers=args.workers, address=args.address),
                    progress=None if args.quiet else sys.stderr)
    if choice.estimate is not None:
        from maker.budget.estimate import print_auto_k

        args.estimate = choice.estimate
        print_auto_k(choice.estimate, sys.stderr)
    elif choice.note:
        print(f"maker: {choice.note}", file=sys.stderr)
    return choice.k


def main(args: argparse.Namespace) -> int:
    if args.log is not None and not args.log.strip():
        raise UsageError("--log is empty: name the step log folder, or leave --log out for runs/TASK-TIMESTAMP.parquet")
    if args.resume_changed_code and not args.resume:
        raise UsageError("--resume-changed-code goes with --resume")
    if args.resume and args.log is None:
        raise UsageError("--resume needs --log: the step log folder of the run to continue")
    task = task_from_args(args)
    voting_config = voting_from_args(args, task, k=1)  # the drawing options first: --k auto estimates p with them
    policy = red_flag_policy(args, task, voting_config)  # bad detectors or variants: exit 2 before anything is spent
    k = choose_k(args, task.total_steps, task, voting_config, policy)
    voting_config = replace(voting_config, k=k)
    if args.max_steps is not None and args.max_steps < 1:
        raise UsageError("--max-steps must be >= 1")
    log = args.log or log_name(task)
    specs = model_specs(args)
    draft = draft_from_args(args, specs)
    steps_left = task.total_steps if args.max_steps is None else min(task.total_steps, args.max_steps)
    budget_preamble(task, specs, voting_config, args, steps_left)
    label = "[simulated] " if simulated([*specs, *([draft] if isinstance(draft, ModelSpec) else [])]) else ""
    progress = Progress(task.total_steps, enabled=not args.quiet, label=label, max_steps=args.max_steps,
                        ground_truth=isinstance(task, Oracle))
    try:
        result = _run(task, specs, voting_config, log, args, policy, progress, k, draft)
    except StepLogError as exc:
        raise _resume_hint(exc, Path(log)) if args.resume else exc from None
    if getattr(args, "estimate", None) is not None:
        result.extra["estimate"] = args.estimate.to_dict()
    report(result, args.json)
    return exit_code(result, partial=bool(args.max_steps))


def draft_from_args(args: argparse.Namespace, specs: list[ModelSpec]) -> Any:
    """--draft as `maker.run` takes it: "none", "reference", "py:..." as given; a --model's
    name as that model's spec (its --api-base, limits, served local model); `local` served
    for the run; any other model string with --draft-api-base and the run's limits."""
    value = args.draft
    if not value or value != value.strip():
        raise UsageError(f"--draft takes none, reference, a model string or py:module:function; got {value!r}")
    if value in ("none", "reference") or value.startswith("py:"):
        if args.draft_api_base:
            raise UsageError(f"--draft-api-base applies to a --draft model; --draft {value} is not one")
        return value
    for name, spec in zip(args.model, specs):
        if name == value:
            return spec if not args.draft_api_base else replace(spec, api_base=args.draft_api_base)
    spec = ModelSpec(value, api_base=args.draft_api_base, concurrency=args.concurrency,
                     timeout_s=getattr(args, "timeout", 60.0))
    from maker.cluster.local.server import is_local_model

    if is_local_model(value):
        if getattr(args, "_served_models", None) is not None:
            raise UsageError(f"--draft {value}: serve one local model per run (--model already names another)")
        return served_specs(args, [spec])[0]
    return spec


def _run(task: Any, specs: Any, voting: VotingConfig, log: str, args: argparse.Namespace, policy: Any,
         progress: Progress, k: Any, draft: Any = "none") -> RunResult:
    return run(
        task,
        specs,
        voting,
        log=Path(log),
        resume=args.resume,
        seed=args.seed,
        cluster=ClusterConfig(
            workers=args.workers, address=args.address, segment_steps=args.segment_steps, speculate=args.speculate,
            draft=draft,
        ),
        policy=policy,
        progress=progress,
        max_steps=args.max_steps,
        guard=guard_config(args, k),
        max_cost_usd=args.max_cost,
        spent_before_usd=estimate_spend(getattr(args, "estimate", None)),
        prices=user_prices(args, [*args.model, *voting.escalation_models, *draft_model_name(args)]),
        allow_code_change=args.resume_changed_code,
    )


def _resume_hint(exc: StepLogError, log: Path) -> StepLogError:
    """A damaged part found on --resume: say what `maker run` can do (it takes no --salvage)."""
    part = Path(exc.path) if exc.path else None
    if part is None or part.parent != log or "damaged" not in str(exc):
        return exc
    return StepLogError(
        f"{part} is damaged, and --resume continues only from an intact log: move {part.name} and every later "
        f"part out of {log} (maker replay {log} --verify --salvage checks the parts before it), then rerun with "
        "--resume: it continues from the last decided step left",
        path=exc.path,
    )


def exit_code(result: RunResult, partial: bool = False) -> int:
    """0: solved (or, with `partial`, stopped) with no known error -- errors unknown (no
    ground truth) counts as none known; 1 otherwise (a run stopped by its spend cap too)."""
    if result.status == "budget_reached":
        return 1
    return 0 if result.errors in (0, None) and (result.solved or partial) else 1


def errors_text(errors: int | None) -> str:
    """How a run's error count is shown: never "0 errors" when nothing could be checked."""
    return "errors: unknown (no ground truth)" if errors is None else f"{errors:,} errors"


def report(result: RunResult, as_json: bool) -> int:
    """Print the result (one JSON object, or the summary); the exit code (0: solved, no known error)."""
    if as_json:
        print(json.dumps(result.to_dict()))
    else:
        print_summary(result)
    return exit_code(result)


def _why_not(result: RunResult) -> str:
    """What reconciles "NOT solved" with "0 errors", so the line never contradicts itself:
    the run stopped early, or every decision matched its premise's truth and the end is
    still not the goal (the task changed under the log, or its goal check disagrees)."""
    if result.solved or result.errors != 0:
        return ""
    if result.steps < result.total_steps:
        return f" so far: stopped after {result.steps:,} of {result.total_steps:,} steps"
    return (": no decision differs from the ground truth on its own premise, yet the end is not the goal "
            f"(check the whole chain: maker replay {result.log or 'LOG'} --verify)")


def print_summary(result: RunResult) -> None:
    label = " [simulated model]" if result.simulated else ""
    if result.errors is None:
        verdict = "finished" if result.solved else "NOT finished"
    else:
        verdict = "solved" if result.solved else "NOT solved"
    print(f"{result.task}: {verdict} in {result.steps:,} steps, {errors_text(result.errors)}{_why_not(result)}{label}")
    by_reason = ", ".join(f"{k} {v}" for k, v in sorted(result.red_flags_by_reason.items())) or "none"
    wasted = int(result.extra.get("wasted_samples") or 0)
    drawn = f", samples drawn {result.samples + wasted:,} (incl. {wasted:,} wasted speculative)" if wasted else ""
    print(
        f"  k={result.k}  samples counted {result.samples:,} ({result.samples_per_step:.3f}/step){drawn}  "
        f"red flags {result.red_flags:,} ({by_reason})"
    )
    cost = result.to_dict()["cost"]
    if not result.cost_usd and any(m.startswith("py:") for m in result.models):
        cost = "unknown (py: models report no price)"
    abandoned = f"  billed (estimated) for abandoned calls ${result.abandoned_usd:,.4f}" if result.abandoned_usd else ""
    print(f"  wall {result.wall_s:.1f}s  cost {cost}{abandoned}  log {result.log}")
    print_cost_lines(result)
    if result.extra.get("reasoning_tokens"):
        print(f"  hidden reasoning tokens {result.extra['reasoning_tokens']:,} (counted in the output tokens, billed as output)")
    if result.extra.get("escalations") or result.extra.get("plurality_decisions"):
        print(f"  undecided steps: {result.extra.get('escalations', 0):,} escalated to a stronger tier, "
              f"{result.extra.get('plurality_decisions', 0):,} taken by plurality (no margin guarantee)")
    if result.faults_by_kind:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(result.faults_by_kind.items()))
        print(f"  model-call faults {sum(result.faults_by_kind.values()):,} ({faults}; failed calls, retried or not, each logged with its sample)")
    extra = result.extra
    left = max(0, result.total_steps - result.steps) if not result.solved else 0
    if guard_line(extra.get("guard") or {}):
        print(guard_line(extra["guard"], steps_left=left))
    if extra.get("speculate"):
        drafted = f" (drafted by {extra['draft']}, adaptive)" if extra.get("draft") else ""
        print(f"  speculation depth {extra['speculate']}{drafted}  wasted speculative samples {extra.get('wasted_samples', 0):,}")
    if extra.get("draft_stats"):
        print(DraftTally.from_dict(extra["draft_stats"]).line())
    nodes = sorted(set(extra.get("node_ids") or ()))
    if len(nodes) > 1:
        print(f"  workers on {len(nodes)} Ray nodes: " + ", ".join(n[:12] for n in nodes))
    if "levels" in extra:
        print(f"  {extra['levels']} levels (widest {extra['widest_level']}), {extra['ray_calls']} Ray calls, "
              f"{extra['dispatch']} dispatch")
    if "answer" in extra:
        unknown = ("unknown: a tool step ran on a wrong input, and a tool is never run again to find its true output"
                   if result.errors else "no ground truth to check it")
        verdict = {True: "right", False: "WRONG", None: unknown}[extra["answer_correct"]]
        print(f"  answer: {extra['answer']} ({verdict})")
        if extra["answer_correct"] is False:
            print(f"  expected: {extra['expected_answer']}")
