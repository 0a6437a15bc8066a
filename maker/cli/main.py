"""The `maker` command: a thin layer that parses arguments and calls the library.

Each subcommand lives in one module of `maker/cli` (or of its rooms `logs/`, `catalog/`,
`servers/`) with `add_parser(subparsers)` and `main(args) -> int`; each is parse, one
library call, print.  Errors become one line on stderr: exit 2 for bad input (nothing
was run or written), 1 for a run that failed, 130 for Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
from collections.abc import Sequence

from maker.cluster.secrets import redacted_stderr
from maker.errors import MakerError, ModelConfigError, StepLogError, UsageError, one_line

#: Subcommand modules under maker.cli, in the order `maker --help` lists them (rooms: logs/ reads
#: a finished step log, catalog/ lists what maker can run, servers/ serves).
COMMANDS = ("run", "map", "logs.replay", "estimate", "margin", "logs.tune", "logs.report", "servers.sim_server",
            "catalog.plan_show", "solve", "catalog.models", "servers.mcp", "catalog.tasks")

EPILOG = """examples:
  maker run hanoi --disks 10 --model sim:0.998 --k 3 --log runs/h10.parquet
  maker map rows.csv --prompt "Q: {question}\\nA:" --key integer --model sim:0.99 --truth answer --out out.parquet
  maker replay runs/h10.parquet --verify --json
  maker replay runs/h10.parquet --k 2              would k = 2 have been enough?
  maker report runs/h10.parquet --out runs/h10-report
  maker estimate hanoi --disks 20 --model sim:0.998 --model sim:0.99 --samples 200
  maker margin --error 0.0022 --steps 1048575 --target 0.95
  maker tune runs/h10.parquet --target 0.95
  maker run multiply --digits 10 --model sim:0.99 --k 3      a DAG: digit products run in parallel
  maker plan-show sort --n 16                             print a plan without running it
  maker solve "Compute (12 + 7) * (3 + 4) - 5" --model script:arith --k 2   a model plans, then the plan runs
  maker run --task mytask.py:ledger --n 200 --model sim:0.95 --k 2   a task of your own
  maker tasks                                         every task maker can find, and its options
  maker COMMAND --help      more on one command
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _task_ref(argv: Sequence[str]) -> str | None:
    """The task `run`/`estimate`/`plan-show` name (`--task REF`, or TASK right after the
    command): its declared options become flags of those commands.  None for any other
    command (`maker sim-server --task` names the prompts it answers, not a task to build)."""
    if not argv or argv[0] not in ("run", "estimate", "plan-show"):
        return None
    for i, arg in enumerate(argv):
        if arg == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--task="):
            return arg.split("=", 1)[1]
    if len(argv) > 1 and not argv[1].startswith("-"):
        return argv[1]
    return None


def build_parser(task_ref: str | None = None) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="maker",
        description="Run very long LLM tasks with near-zero errors: every step is sampled several "
        "times, red-flagged samples are discarded, and first-to-ahead-by-k voting decides it.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from maker.version import __version__

    parser.add_argument("--version", action="version", version=f"maker {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        module = importlib.import_module(f"maker.cli.{name}")
        module.add_parser(sub)
    if task_ref:
        from maker.cli.run import add_user_task_flags

        for name in ("run", "estimate", "plan-show"):
            add_user_task_flags(sub.choices[name], task_ref)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the exit code.  As the `maker` program (`argv` None) it also stops the
    Ray it started before returning, with Ctrl-C held off meanwhile (see `_stop_ray`)."""
    if argv is None:
        _terminate_as_interrupt()
    with redacted_stderr():  # keys leave in no message, whoever prints it (#22)
        code = _command(list(sys.argv[1:] if argv is None else argv))
        if argv is None and _stop_ray():
            print("maker: interrupted while Ray was stopping; it was stopped anyway", file=sys.stderr)
            code = code or 130
    return code


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, as Ctrl-C is."""


#: set when SIGTERM arrived (Ray's calls may re-raise the interrupt as a plain KeyboardInterrupt)
_TERMINATED: list[bool] = []


def _terminate_as_interrupt() -> None:
    """Make SIGTERM stop the `maker` program as Ctrl-C does (exit 143 instead of 130).

    Why: Python's default for SIGTERM ends the process on the spot, so no `finally` runs:
    the decided steps a run holds in memory are never written to its step log and the Ray
    it started is left behind.  Raised as an interrupt, every `finally` runs -- the log's last
    part is written, Ray is stopped (`_stop_ray`)."""
    import signal

    def terminate(signum: int, frame: object) -> None:
        _TERMINATED.append(True)
        raise _Terminated()

    try:
        signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave the default
        pass


def _stop_ray() -> bool:
    """Stop this process's Ray, if it started or joined one; True if Ctrl-C came meanwhile.

    Why: left to Ray's own exit hook, a Ctrl-C during shutdown aborts the hook half-way
    ("Exception ignored in atexit callback"), the process exits 0, and Ray's agents
    (`ray::DashboardAgent`, `ray::RuntimeEnvAgent`) outlive it.  Here SIGINT is only
    noted while `ray.shutdown()` runs, so the shutdown always completes and an interrupt
    still makes the exit code non-zero.
    """
    if "ray" not in sys.modules:
        return False
    import signal

    import ray

    if not ray.is_initialized():
        return False
    interrupted = False

    def note(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True

    previous = signal.signal(signal.SIGINT, note)
    previous_term = signal.signal(signal.SIGTERM, note)
    try:
        ray.shutdown()
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.signal(signal.SIGTERM, previous_term)
    return interrupted


def _command(argv: list[str]) -> int:
    try:
        parser = build_parser(_task_ref(argv))
        args = parser.parse_args(argv)
        if not getattr(args, "handler", None):
            parser.print_help()
            return 2
        with contextlib.ExitStack() as stack:
            args._exit_stack = stack  # local model servers live until the command ends
            return int(args.handler(args) or 0)
    except (UsageError, ModelConfigError, StepLogError) as exc:
        return _fail(exc, 2)
    except MakerError as exc:
        return _fail(exc, 1)
    except KeyboardInterrupt as exc:
        term = isinstance(exc, _Terminated) or bool(_TERMINATED)
        how = "terminated (SIGTERM)" if term else "interrupted"
        print(f"maker: {how}; the step log holds every decided step (use --resume)", file=sys.stderr)
        return 143 if term else 130
    except BrokenPipeError:  # `maker tasks | head`: the reader left; say nothing more (Python's docs' recipe)
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _fail(exc: BaseException, code: int) -> int:
    message = one_line(exc, None)
    print(f"maker: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
