"""Background runs for agents: start `maker run` as a child process, read its progress from its log.

Why a child process and not a thread: a run owns Ray and may print; the MCP server's
stdout is its protocol channel, and a run must be stoppable without taking the server
down.  The child is `maker run TASK --option=VALUE ... --model=M --k K --log LOG --json`,
built from checked values only (every value is passed as one ``--name=value`` argument, so
a value can never become a flag), with stdout going to ``result.json`` and stderr to
``stderr.txt`` beside the log, in ``ROOT/maker-runs/RUN_ID/``.

Progress is read from the step log itself (decision and sample rows, as parts land):
the same numbers `maker replay` would show, without trusting the child's output.

    >>> runs = Runs(Path("."))                                     # doctest: +SKIP
    >>> run_id = runs.start("hanoi", {"disks": 4}, ["sim:0.99"], k=3)  # doctest: +SKIP
    >>> runs.status(run_id)["state"]                               # doctest: +SKIP
    'running'
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maker.budget.spend import check_cap, refuse_unpriced, resolve_prices
from maker.errors import MakerError, UsageError
from maker.tasks import TASKS

#: Tasks an agent may start with `run`: `solve` needs `maker solve`, `vote` is the `vote` tool.
NOT_RUNNABLE = frozenset({"solve", "vote"})
#: The child: `maker` itself, run by this interpreter (argv[1:] are its arguments).
_CHILD = "import sys; from maker.cli.main import main; sys.exit(main())"
#: Where background runs live under the root.
RUNS_DIR = "maker-runs"


def refuse_code_models(models: Any) -> None:
    """UsageError for a ``py:`` model: it names code to import and call (`cluster.clients`),
    which `maker run` honours for a user but never for an agent's arguments."""
    for model in models if isinstance(models, (list, tuple)) else ():
        if isinstance(model, str) and model.strip().startswith("py:"):
            raise UsageError(f"model {model!r} names code to import (py:): refused for an agent; "
                             "run such a model with `maker run` yourself")


@dataclass
class BackgroundRun:
    run_id: str
    task: str
    folder: Path
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    progress: LogProgress | None = None

    @property
    def log(self) -> Path:
        return self.folder / "log"


class Runs:
    """The runs this server started, by id; `root` is the only directory they write under."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str, BackgroundRun] = {}

    def start(self, task: str, options: dict[str, Any], models: list[str], k: int = 3, seed: int = 0,
              resolve_path: Any = None, max_cost_usd: float | None = None) -> str:
        """Start `maker run` on `task` in the background; the run id names it for `status`.

        `options` are the task's own options (`tasks` lists them); a task option named
        `file` is a path, passed through `resolve_path` (the server confines it to the root).
        `max_cost_usd` is the run's spend cap (`maker run --max-cost`).
        Raises UsageError (one line) for an unknown or unrunnable task, an unknown or
        mistyped option, no model, k < 1, a cap that is not a positive amount, or a cap on
        a model with no known price.
        """
        if task not in TASKS or task in NOT_RUNNABLE:
            known = ", ".join(sorted(set(TASKS) - NOT_RUNNABLE))
            raise UsageError(f"task {task!r} cannot be run here (runnable: {known})")
        declared = {o.name: o for o in getattr(TASKS[task], "options", ())}
        args = [sys.executable, "-c", _CHILD, "run", task]
        for name, value in options.items():
            opt = declared.get(name)
            if opt is None:
                raise UsageError(f"{task} has no option {name!r} (options: {', '.join(declared) or 'none'})")
            if opt.type is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise UsageError(f"{task} option {name!r} must be an integer, got {value!r}")
            if opt.type is str and not isinstance(value, str):
                raise UsageError(f"{task} option {name!r} must be a string, got {value!r}")
            if name == "file":
                if resolve_path is None:
                    raise UsageError("a plan file needs a root to resolve it against")
                value = str(resolve_path(value))
            args.append(f"--{name.replace('_', '-')}={value}")
        missing = [o.name for o in declared.values() if o.required and o.name not in options]
        if missing:
            raise UsageError(f"{task} needs the option(s) {', '.join(missing)}")
        if not models or not all(isinstance(m, str) and m.strip() and not m.startswith("-") for m in models):
            raise UsageError("models must be a non-empty list of model strings")
        refuse_code_models(models)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise UsageError(f"k must be an integer >= 1, got {k!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise UsageError(f"seed must be an integer, got {seed!r}")
        cap = check_cap(max_cost_usd)
        if cap is not None:  # refused here, in one line, rather than by the child
            from maker.cluster import ModelSpec

            refuse_unpriced(cap, resolve_prices([ModelSpec(m) for m in models]))
        run_id = f"{task}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        folder = self.root / RUNS_DIR / run_id
        folder.mkdir(parents=True)
        args += [f"--model={m}" for m in models]
        args += [f"--k={k}", f"--seed={seed}", f"--log={folder / 'log'}", "--json", "--quiet"]
        if cap is not None:
            args.append(f"--max-cost={cap!r}")
        (folder / "command.json").write_text(json.dumps(["maker", *args[3:]]))
        with open(folder / "result.json", "wb") as out, open(folder / "stderr.txt", "wb") as err:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.root,
                                       start_new_session=True)
        self.runs[run_id] = BackgroundRun(run_id, task, folder, process)
        return run_id

    def get(self, run_id: str) -> BackgroundRun:
        run = self.runs.get(run_id)
        if run is None:
            raise UsageError(f"no run {run_id!r} (runs: {', '.join(self.runs) or 'none yet'})")
        return run

    def status(self, run_id: str) -> dict[str, Any]:
        """Where run `run_id` stands: state (running, done, failed), steps done of total, errors,
        samples per step, red flags, cost, elapsed seconds and ETA (seconds; None when unknown);
        a finished run adds its `maker run --json` result, a failed one its error line."""
        run = self.get(run_id)
        rc = run.process.poll()
        out: dict[str, Any] = {"run_id": run_id, "task": run.task, "log": str(run.log),
                               "state": "running" if rc is None else "done" if rc == 0 else "failed"}
        if run.progress is None:
            run.progress = LogProgress(run.log)
        out.update(run.progress.update())
        elapsed = time.monotonic() - run.started
        out["elapsed_s"] = round(elapsed, 2)
        total, done = out.get("total_steps"), out.get("steps", 0)
        out["eta_s"] = round(elapsed / done * (total - done), 1) if rc is None and total and done else (0.0 if rc == 0 else None)
        if rc is not None:
            out["exit_code"] = rc
            text = (run.folder / "result.json").read_text(errors="replace").strip()
            try:
                out["result"] = json.loads(text) if text else None
            except ValueError:
                out["result"] = None
            result = out["result"] if isinstance(out["result"], dict) else {}
            if result.get("status") == "budget_reached":  # stopped cleanly at its cap: resumable
                out["state"] = "budget_reached"
                out["error"] = (result.get("budget") or {}).get("line")
            elif rc != 0:
                lines = (run.folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
                out["error"] = lines[-1][:500] if lines else f"exit code {rc}"
        return out

    def close(self) -> None:
        """Stop every run still going (the server is shutting down)."""
        for run in self.runs.values():
            if run.process.poll() is None:
                run.process.terminate()


class LogProgress:
    """Figures of a growing step log: steps decided, errors (None when the task has no ground
    truth), samples counted and per step (as `maker run` counts them), samples drawn (with
    the wasted speculative ones), red flags, cost.

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
            for table in iter_tables(info, ["kind", "correct", "red_flag", "cost_usd", "wasted"]):
                for kind, correct, flag, cost, wasted in zip(
                    table["kind"].to_pylist(), table["correct"].to_pylist(), table["red_flag"].to_pylist(),
                    table["cost_usd"].to_pylist(), table["wasted"].to_pylist()):
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
            self.read.update(new)
        out: dict[str, Any] = dict(self.counts)
        if self.unknown:
            out["errors"] = None  # no ground truth: never "0 errors"
        out["cost_usd"] = round(self.cost, 6)
        out["samples_per_step"] = round(out["samples"] / out["steps"], 4) if out["steps"] else None
        if self.run is not None:
            out["total_steps"] = self.run.get("total_steps")
            out["simulated"] = bool(self.run.get("simulated"))
        return out
