"""One background run of the MCP `run` tool: ``python -m maker.agents.job FOLDER``.

Why a process of its own (and not a thread of the server): a run owns Ray and may print,
the server's stdout is its protocol channel, and a run must outlive the server (see
`maker.agents.runs`).  Why not the `maker` CLI: the server checked every value already
with the library's own checks, so the job is the library's run and nothing else --
`maker.tasks.registry.task_from_options`, `VotingConfig.from_options`, `maker.run`.

The job reads ``FOLDER/job.json`` (task, options, models, k, seed, max_cost_usd, local),
writes its step log to ``FOLDER/log``, the result (`RunResult.to_dict`, as `maker run
--json` prints it) to stdout, one error line to stderr, and its exit code to
``FOLDER/exit.json`` however it ends short of SIGKILL: 0 solved with no known error, 1 a
failed run (or one stopped at its spend cap), 2 bad input, 130 interrupted (SIGINT,
`Runs.cancel`; the log keeps every decided step).
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

#: The job's description, in its run folder.
JOB_FILE = "job.json"


def write_json(path: Path, value: dict[str, Any]) -> None:
    """Write `value` to `path` atomically (a reader sees the old file or the new one, never half)."""
    import os

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


def run_job(job: dict[str, Any], folder: Path) -> Any:
    """The run `job` describes (see the module docstring), its log in ``folder/log``; the RunResult."""
    from maker.config import VotingConfig
    from maker.runtime.driver import run
    from maker.runtime.progress import Progress
    from maker.tasks.base import optional
    from maker.tasks.registry import task_from_options

    local = job.get("local") or {}
    if local:  # `maker mcp --local-*`: the embedded model's servers for this run
        from maker.cluster.local.serving import configure
        from maker.runtime.local_models import local_settings

        configure(local_settings(threads=local.get("threads"), replicas=local.get("replicas")))
    try:
        task = task_from_options(job["task"], job.get("options") or {})
    except ValueError as exc:
        from maker.errors import UsageError

        raise UsageError(str(exc)) from None
    voting = VotingConfig.from_options(k=job.get("k"), prompt_style=optional(task, "prompt_style"))
    return run(task, list(job["models"]), voting, log=folder / "log", seed=int(job.get("seed") or 0),
               progress=Progress(task.total_steps, enabled=False), max_cost_usd=job.get("max_cost_usd"))


def exit_code(result: Any) -> int:
    """0: solved with no known error (no ground truth counts as none known); 1 otherwise."""
    if result.status == "budget_reached":
        return 1
    return 0 if result.solved and result.errors in (0, None) else 1


def main(argv: list[str] | None = None) -> int:
    """The job in ``argv[0]`` (its folder); the exit code, also written to ``exit.json``."""
    from maker.cluster.secrets import redact, redacted_stderr
    from maker.errors import MakerError, ModelConfigError, StepLogError, UsageError

    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background process may inherit it ignored
    code = 1
    try:
        with redacted_stderr():
            try:
                result = run_job(json.loads((folder / JOB_FILE).read_text()), folder)
                print(json.dumps(result.to_dict()), flush=True)
                code = exit_code(result)
            except (UsageError, ModelConfigError, StepLogError) as exc:
                print(f"maker: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
                code = 2
            except MakerError as exc:
                print(f"maker: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
                code = 1
            except KeyboardInterrupt:
                print("maker: interrupted; the step log holds every decided step (use --resume)", file=sys.stderr)
                code = 130
            finally:
                _stop_ray()
    finally:
        write_json(folder / "exit.json", {"exit_code": code, "ended": time.time()})
    return code


def _stop_ray() -> None:
    """Stop the Ray this job started or joined, with SIGINT held off meanwhile (a cancel
    that lands during shutdown must not leave Ray's agents behind)."""
    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            ray.shutdown()
        finally:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())
