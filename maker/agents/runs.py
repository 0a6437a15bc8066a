"""Background runs for agents: durable run jobs on disk, found by any server on the same root.

Why a child process and not a thread: a run owns Ray and may print; the MCP server's
stdout is its protocol channel, and a run must be stoppable without taking the server
down.  The child is ``python -m maker.agents.job FOLDER`` (`maker.agents.job`): the
library's run of the values this server checked with the library's own checks
(`maker.tasks.registry.task_from_options`, `VotingConfig.from_options`), written to
``job.json`` -- data, never arguments, so a value can never become a flag -- with stdout
(the result, as `maker run --json` prints it) going to ``result.json`` and stderr to
``stderr.txt`` beside the log, in ``ROOT/maker-runs/RUN_ID/``.

A run is a durable job, not a child of the session that asked for it: it runs in its own
process session, so it outlives the MCP client and the server (stdio clients end the
server with their session; ``kill -9`` of the server ends only the server).  Its state is
on disk in its folder -- ``job.json`` (what to run), ``run.json`` (task, job, pid and the process's start time, so
a reused pid is never taken for the run), ``exit.json`` (written by the child itself when
it ends, whatever ended it short of SIGKILL), ``cancel.json`` (a cancel was asked) -- so
any server on the same root lists it, reads its status and result, and cancels it.
Nothing is left without an owner who can stop it: every run is listed by `Runs.list` and
stopped by `Runs.cancel` (SIGINT, maker's Ctrl-C: the log keeps every decided step and Ray
is shut down; SIGKILL to its process group if it has not ended within `CANCEL_GRACE_S`).
SIGINT and not SIGTERM because Ray's driver replaces the SIGTERM handler with an exit(1)
that skips maker's own shutdown message.

Progress is read from the step log itself (decision and sample rows, as parts land):
the same numbers `maker replay` would show, without trusting the child's output.

    >>> runs = Runs(Path("."))                                     # doctest: +SKIP
    >>> run_id = runs.start("hanoi", {"disks": 4}, ["sim:0.99"], k=3)  # doctest: +SKIP
    >>> runs.status(run_id)["state"]                               # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maker.agents.job import JOB_FILE
from maker.agents.job import write_json as _write_json
from maker.budget.spend import check_cap, refuse_unpriced, resolve_prices
from maker.errors import MakerError, UsageError
from maker.tasks import TASKS

#: Tasks an agent may start with `run`: `solve` needs `maker solve`, `vote` is the `vote` tool, `map`
#: needs `maker map` (its output table; and its `op` names code to import).
NOT_RUNNABLE = frozenset({"solve", "vote", "map"})
#: Where background runs live under the root.
RUNS_DIR = "maker-runs"
#: Seconds a cancelled run has to stop after SIGTERM before its process group is killed.
CANCEL_GRACE_S = 30.0
#: What a run id looks like (`task-YYYYmmdd-HHMMSS-hex`; a file task's name is reduced to its stem).
RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,120}$")


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def process_start(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None where
    it cannot be read; with the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def process_alive(pid: int, start: int | None) -> bool:
    """Whether the process `pid` that started at `start` (`process_start`) is still running
    (a zombie is not; a pid now held by another process is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return True
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


def refuse_code_models(models: Any) -> None:
    """UsageError for a ``py:`` model: it names code to import and call (`cluster.clients`),
    which `maker run` honours for a user but never for an agent's arguments."""
    for model in models if isinstance(models, (list, tuple)) else ():
        if isinstance(model, str) and model.strip().startswith("py:"):
            raise UsageError(f"model {model!r} names code to import (py:): refused for an agent; "
                             "run such a model with `maker run` yourself")


def confine_local_models(models: Any, resolve_path: Any) -> Any:
    """`models` with each ``local:PATH`` resolved by `resolve_path` (the server confines it to
    its root, as it does a plan file): an agent's model string names no file outside it.
    ``local`` (the embedded model) and other models pass unchanged; a non-list passes as is."""
    if not isinstance(models, (list, tuple)):
        return models
    return [f"local:{resolve_path(m.split(':', 1)[1].strip())}"
            if isinstance(m, str) and m.startswith("local:") else m for m in models]


@dataclass
class BackgroundRun:
    """One run's folder and what `run.json` says of it; `process` only in the server that started it."""

    run_id: str
    task: str
    folder: Path
    pid: int
    proc_start: int | None
    started: float  # seconds since the epoch
    process: subprocess.Popen[bytes] | None = None
    progress: LogProgress | None = None

    @property
    def log(self) -> Path:
        return self.folder / "log"

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None  # reaps our own child
        return process_alive(self.pid, self.proc_start)


class Runs:
    """The runs under `root` (started by this server or any other on the same root), by id;
    `root` is the only directory they write under."""

    def __init__(self, root: Path, local: dict[str, int] | None = None) -> None:
        self.root = root
        self.runs: dict[str, BackgroundRun] = {}
        #: {"replicas": N, "threads": M} for a job whose models include ``local`` (`maker mcp --local-*`)
        self.local = dict(local or {})

    def start(self, task: str, options: dict[str, Any], models: list[str], k: int | None = None, seed: int = 0,
              resolve_path: Any = None, max_cost_usd: float | None = None) -> str:
        """Start a run of `task` in the background (`maker.agents.job`); the run id names it for `status`.

        `task` is a built-in task name, or a user's own task file under the root
        (``FILE.py:attr``, resolved by `resolve_path`; the run imports it, the server does not).
        `options` are the task's own options (`tasks` lists them for built-ins), checked by
        `maker.tasks.registry.task_from_options` as `maker run` checks them; a task option
        named `file` is a path, passed through `resolve_path` (the server confines it to the
        root).  `k`: None takes `VotingConfig`'s default.  Raises UsageError (one line) for an
        unknown or unrunnable task, an unknown or mistyped option, no model, a bad k, a cap
        that is not a positive amount, or a cap on a model with no known price; `max_cost_usd`
        is the run's spend cap (`maker run --max-cost`).
        """
        from maker.config import VotingConfig
        from maker.tasks.registry import task_from_options

        options = dict(options)
        if task in TASKS and task not in NOT_RUNNABLE:
            if "file" in options:
                if resolve_path is None:
                    raise UsageError("a plan file needs a root to resolve it against")
                options["file"] = str(resolve_path(options["file"])) if isinstance(options["file"], str) else options["file"]
            try:
                task_from_options(task, options)  # the check `maker run` makes, before anything starts
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            ref, label = task, task
        elif ":" in task and task.rpartition(":")[0].endswith(".py"):
            where, _, attr = task.rpartition(":")
            if resolve_path is None:
                raise UsageError("a task file needs a root to resolve it against")
            path = Path(resolve_path(where))
            if not path.is_file():
                raise UsageError(f"task file {where!r} does not exist under the root")
            if not attr.replace(".", "").replace("_", "").isalnum():
                raise UsageError(f"task {task!r}: {attr!r} is not an attribute name")
            self._file_options(task, options)
            ref, label = f"{path}:{attr}", re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem) or "task"
        else:
            known = ", ".join(sorted(set(TASKS) - NOT_RUNNABLE))
            raise UsageError(f"task {task!r} cannot be run here (runnable: {known}, or FILE.py:attr under the root)")
        if not models or not all(isinstance(m, str) and m.strip() and not m.startswith("-") for m in models):
            raise UsageError("models must be a non-empty list of model strings")
        refuse_code_models(models)
        if resolve_path is not None:
            models = confine_local_models(models, resolve_path)
        VotingConfig.from_options(k=k)  # k's one check (None: the config's default)
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UsageError(f"seed must be an integer, got {seed!r}")
        cap = check_cap(max_cost_usd)
        if cap is not None:  # refused here, in one line, rather than by the child
            from maker.cluster import ModelSpec

            refuse_unpriced(cap, resolve_prices([ModelSpec(m) for m in models]))
        run_id = f"{label}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        folder = self.root / RUNS_DIR / run_id
        folder.mkdir(parents=True)
        job = {"task": ref, "options": options, "models": list(models), "k": k, "seed": seed, "max_cost_usd": cap,
               "local": self.local if any(m == "local" or m.startswith("local:") for m in models) else {}}
        _write_json(folder / JOB_FILE, job)
        command = [sys.executable, "-m", "maker.agents.job", str(folder)]
        started = time.time()
        with open(folder / "result.json", "wb") as out, open(folder / "stderr.txt", "wb") as err:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.root,
                                       start_new_session=True)
        run = BackgroundRun(run_id, task, folder, process.pid, process_start(process.pid), started, process)
        _write_json(folder / "run.json", {"run_id": run_id, "task": task, "job": job, "pid": run.pid,
                                          "proc_start": run.proc_start, "started": started})
        self.runs[run_id] = run
        return run_id

    @staticmethod
    def _file_options(task: str, options: dict[str, Any]) -> None:
        """A task file's options, checked for shape only: the server does not import the file,
        so the job checks them against the task (`task_from_options`; a mismatch fails the run
        with one line, which `status` shows)."""
        for name, value in options.items():
            if not isinstance(name, str) or not name.isidentifier():
                raise UsageError(f"{task}: option name {name!r} is not an identifier")
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise UsageError(f"{task} option {name!r} must be a number or a string, got {value!r}")

    def get(self, run_id: str) -> BackgroundRun:
        """The run `run_id`, started by this server or found on disk under the root; UsageError if none."""
        run = self.runs.get(run_id)
        if run is not None:
            return run
        meta = _read_json(self.root / RUNS_DIR / run_id / "run.json") if RUN_ID.match(str(run_id)) else None
        if meta is None or not isinstance(meta.get("pid"), int):
            known = ", ".join(self.list()) or "none yet"
            raise UsageError(f"no run {run_id!r} under {self.root} (runs: {known})")
        start = meta.get("proc_start")
        run = BackgroundRun(run_id, str(meta.get("task")), self.root / RUNS_DIR / run_id, meta["pid"],
                            start if isinstance(start, int) else None, float(meta.get("started") or 0.0))
        self.runs[run_id] = run
        return run

    def list(self) -> list[str]:
        """Every run id under the root, oldest first (by start time, then id)."""
        found = []
        for meta_path in (self.root / RUNS_DIR).glob("*/run.json"):
            meta = _read_json(meta_path)
            if meta is not None and RUN_ID.match(meta_path.parent.name):
                found.append((float(meta.get("started") or 0.0), meta_path.parent.name))
        return [run_id for _, run_id in sorted(found)]

    def status(self, run_id: str) -> dict[str, Any]:
        """Where run `run_id` stands: state (running, done, failed, cancelled, or lost: it
        ended without saying how, e.g. killed by SIGKILL or a reboot), steps done of total,
        errors, samples per step, red flags, cost, elapsed seconds and ETA (seconds; None when
        unknown); an ended run adds its `maker run --json` result, a failed one its error line."""
        run = self.get(run_id)
        alive = run.alive()
        ended = None if alive else _read_json(run.folder / "exit.json")
        if not alive and ended is None and run.process is not None:
            ended = {"exit_code": run.process.returncode, "ended": time.time()}  # ours, killed before it could say
        cancelled = (run.folder / "cancel.json").exists()
        rc = ended.get("exit_code") if ended is not None else None
        if alive:
            state = "running"
        elif cancelled:
            state = "cancelled"
        elif ended is None:
            state = "lost"
        else:
            state = "done" if rc == 0 else "failed"
        out: dict[str, Any] = {"run_id": run_id, "task": run.task, "log": str(run.log), "state": state}
        if run.progress is None:
            run.progress = LogProgress(run.log)
        out.update(run.progress.update())
        end = time.time() if alive or ended is None else float(ended.get("ended") or time.time())
        elapsed = max(0.0, end - run.started)
        out["elapsed_s"] = round(elapsed, 2)
        total, done = out.get("total_steps"), out.get("steps", 0)
        out["eta_s"] = round(elapsed / done * (total - done), 1) if alive and total and done else (0.0 if state == "done" else None)
        if not alive:
            out["exit_code"] = rc
            text = (run.folder / "result.json").read_text(errors="replace").strip() if (run.folder / "result.json").exists() else ""
            try:
                out["result"] = json.loads(text) if text else None
            except ValueError:
                out["result"] = None
            result = out["result"] if isinstance(out["result"], dict) else {}
            if result.get("status") == "budget_reached":  # stopped cleanly at its cap: resumable
                out["state"] = "budget_reached"
                out["error"] = (result.get("budget") or {}).get("line")
            elif state != "done":
                lines = (run.folder / "stderr.txt").read_text(errors="replace").strip().splitlines() \
                    if (run.folder / "stderr.txt").exists() else []
                out["error"] = (lines[-1][:500] if lines else f"exit code {rc}") if state != "lost" else \
                    "the run ended without recording how (killed by SIGKILL, or the machine restarted); " \
                    "its log keeps every decided step (resume it with maker run --resume)"
        return out

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Stop run `run_id` (any run under the root): SIGINT, maker's Ctrl-C (the log keeps
        every decided step), then SIGKILL to its process group if it is still running after
        `CANCEL_GRACE_S`.  Returns its status (state ``cancelled`` once it ended);
        a run that already ended is left as it is."""
        run = self.get(run_id)
        if not run.alive():
            return self.status(run_id)
        _write_json(run.folder / "cancel.json", {"requested": time.time()})
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(run.pid, signal.SIGINT)

        def escalate() -> None:
            deadline = time.monotonic() + CANCEL_GRACE_S
            while run.alive() and time.monotonic() < deadline:
                time.sleep(0.2)
            if run.alive():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.pid, signal.SIGKILL)

        threading.Thread(target=escalate, name=f"maker-cancel-{run_id}", daemon=True).start()
        return self.status(run_id)

    def close(self) -> None:
        """The server is shutting down: runs are durable jobs and go on (any server on this
        root finds them; `cancel` stops them); only our handles on them are dropped."""
        self.runs.clear()


class LogProgress:
    """Figures of a growing step log: steps decided, errors (None when the task has no ground
    truth), samples counted and per step (as `maker run` counts them), samples drawn (with
    the wasted speculative ones), red flags, cost (and, apart, the estimate for abandoned calls).

    Each part is read once: a part is immutable once renamed into place (see
    `maker.log.steplog`), so a poll reads only the parts that landed since the last one."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.run: dict[str, Any] | None = None
        self.read: set[Path] = set()
        #: samples: counted (votes and red flags of decided steps, as `maker run` reports them);
        #: samples_drawn: those plus the wasted speculative ones (all paid for, as `maker report`)
        self.counts = {"steps": 0, "errors": 0, "samples": 0, "samples_drawn": 0, "red_flags": 0}
        self.unknown = 0  # decisions without ground truth to judge them: errors are then unknown
        self.cost = 0.0
        self.abandoned = 0.0  # estimated bill of calls given up on (timeouts, cancels), as `maker run`'s abandoned_usd
        self._lock = threading.Lock()  # two status calls may poll at once (each in a worker thread)

    def update(self) -> dict[str, Any]:
        with self._lock:
            return self._update()

    def _update(self) -> dict[str, Any]:
        from maker.log.steplog import DECIDED_KINDS, SCHEMA_VERSION, LogInfo, iter_tables, open_log

        new = sorted(p for p in self.log.glob("part-*.parquet") if p not in self.read) if self.log.is_dir() else []
        if new and self.run is None:
            try:
                self.run = open_log(self.log).run
            except MakerError:
                new = []
        if new:
            assert self.run is not None
            info = LogInfo(self.log, self.run, SCHEMA_VERSION, tuple(new))
            for table in iter_tables(info, ["kind", "correct", "red_flag", "cost_usd", "wasted", "abandoned_usd"]):
                for kind, correct, flag, cost, wasted, abandoned in zip(
                    table["kind"].to_pylist(), table["correct"].to_pylist(), table["red_flag"].to_pylist(),
                    table["cost_usd"].to_pylist(), table["wasted"].to_pylist(), table["abandoned_usd"].to_pylist()):
                    if kind in ("sample", "draft"):
                        self.abandoned += abandoned or 0.0
                    if kind in DECIDED_KINDS:
                        self.counts["steps"] += 1
                        self.counts["errors"] += correct is False
                        self.unknown += correct is None
                    elif kind == "sample":
                        self.counts["samples_drawn"] += 1
                        self.cost += cost or 0.0
                        if not wasted:
                            self.counts["samples"] += 1
                            self.counts["red_flags"] += flag is not None
                    elif kind == "draft":  # a draft's proposal (--draft MODEL): paid for, never a vote
                        self.cost += cost or 0.0
            self.read.update(new)
        out: dict[str, Any] = dict(self.counts)
        if self.unknown:
            out["errors"] = None  # no ground truth: never "0 errors"
        out["cost_usd"] = round(self.cost, 6)
        out["abandoned_usd"] = round(self.abandoned, 6)
        out["samples_per_step"] = round(out["samples"] / out["steps"], 4) if out["steps"] else None
        if self.run is not None:
            out["total_steps"] = self.run.get("total_steps")
            out["simulated"] = bool(self.run.get("simulated"))
        return out
