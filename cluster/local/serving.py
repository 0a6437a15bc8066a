"""Serving the embedded model: one set of local servers per process, shared by every call.

`maker.run(task, ["local"])`, `maker.vote(..., ["local"])`, `maker.avote`, the MCP tools
and the CLI all meet the embedded model here.  Each distinct GGUF file gets one *group* of
`LocalServer` replicas (`DEFAULT_REPLICAS`), started on first use and shared by every
call in the process that names it -- concurrent `avote` calls, successive `vote` calls,
the Ray workers of a run (they reach the servers over 127.0.0.1) -- so a thousand calls
start one set, not a thousand.

Lifetime: a call holds the group while it runs (`shared` counts its users).  When the
last user leaves, the group keeps running for the next call (`keep=True`, the library's
default) or stops (`keep=False`, one CLI command).  It always stops when the last user
leaves on Ctrl-C (KeyboardInterrupt) or after a server died beyond its restarts (the
next call starts a fresh group), at interpreter exit (atexit), and -- should the process
be killed instead, by SIGTERM or ``kill -9`` -- the kernel stops each server with it
(``PR_SET_PDEATHSIG``, `cluster.local.server.spawn`).  `stop_shared()` stops every group now.

Example:
    >>> with shared([ModelSpec("local")]) as lease:  # doctest: +SKIP
    ...     run(get_task("chase", hops=100), lease.specs)
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from maker.errors import ModelConfigError

from ..clients import ModelSpec
from .server import LocalServer, LocalServerConfig, LocalServerError, check_gguf, is_local_model, model_path_of

#: the signal a server's monitor thread sends the main thread when the server is gone for good
_WAKE = getattr(signal, "SIGUSR1", signal.SIGINT)


#: Local servers per model: one per prompt variant of the measured chase setting (4 variants).
#: Measured (bench/local_limit.py, 2 cores): a 30-step run took 50 s with 4, 71 s with 2, 88 s with 1.
DEFAULT_REPLICAS = 4


def start_servers(
    stack: contextlib.ExitStack,
    paths: Sequence[Path],
    *,
    port: int | None = None,
    threads: int | None = None,
    log_path: str | Path | None = None,
    max_restarts: int = 2,
    on_failure: Callable[[str], None] | None = None,
    on_start: Callable[[LocalServer], None] | None = None,
    replicas: int = DEFAULT_REPLICAS,
    cache: str = "bounded",
) -> dict[Path, list[LocalServer]]:
    """Start `replicas` servers per GGUF file in `paths` on this machine, each entered on
    `stack` (so closing it stops them all); return them by file, in start order.

    One implementation for the driver's servers (`serving`) and each node's servers on a
    cluster (`cluster.nodes`).  `log_path` names the first replica's log when one
    file is served; replica r writes ``STEM.r.SUFFIX``.  Raises LocalServerError or
    ModelConfigError (a server that does not start; those already started stay on `stack`)."""
    if port is not None and len(paths) > 1:
        raise ModelConfigError("--local-port fixes the port of one local model; leave it out to serve several")
    if port is not None:
        replicas = 1  # a fixed port names one server
    servers: dict[Path, list[LocalServer]] = {}
    for path in paths:
        for r in range(max(1, replicas)):
            log = Path(log_path) if log_path and len(paths) == 1 else None
            if log is not None and r:
                log = log.with_name(f"{log.stem}.{r}{log.suffix}")
            config = LocalServerConfig(path, port=port, n_threads=threads, log_path=log, max_restarts=max_restarts,
                                       cache=cache)
            server = LocalServer(config, on_failure=on_failure)
            if r and log is None:  # the default name is per process: one file per replica
                server.log_path = server.log_path.with_name(f"{server.log_path.stem}.{r}{server.log_path.suffix}")
            servers.setdefault(path, []).append(stack.enter_context(server))
            if on_start is not None:
                on_start(server)
    return servers


@contextlib.contextmanager
def interrupting(failure: Callable[[], LocalServerError | None]) -> Iterator[Callable[[str], None]]:
    """Yield `interrupt(message)`: called from any thread when a server is gone for good,
    it stops the job in the main thread as Ctrl-C would, and this block then raises the
    LocalServerError that `failure()` returns (a KeyboardInterrupt with no failure is
    the user's own Ctrl-C and passes through).

    Why a signal of our own: a real signal wakes blocking calls (`interrupt_main` alone
    waits for the next bytecode), and SIGINT itself may be ignored (`nohup maker run ... &`
    starts with SIGINT ignored, and Python then never turns it into KeyboardInterrupt)."""
    main_thread = threading.current_thread() is threading.main_thread()

    def interrupt(message: str) -> None:
        if main_thread and hasattr(signal, "pthread_kill"):
            signal.pthread_kill(threading.main_thread().ident, _WAKE)  # type: ignore[arg-type]
        elif main_thread:  # pragma: no cover - not Unix
            import _thread

            _thread.interrupt_main()

    def server_down(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("a local model server died")

    previous = signal.signal(_WAKE, server_down) if main_thread and hasattr(signal, "pthread_kill") else None
    try:
        yield interrupt
    except KeyboardInterrupt:
        error = failure()
        if error is None:
            raise
        raise error from None
    finally:
        if previous is not None:
            signal.signal(_WAKE, previous)


@dataclass(frozen=True)
class LocalSettings:
    """How a process serves its local models (the CLI's ``--local-*`` options): `port`
    fixes the port of the one server (then one replica), `threads` is llama.cpp's threads
    per server (None: one per two cores), `log_path` the first replica's log (replica r
    writes ``STEM.r.SUFFIX``; None: the temporary folder), `max_restarts` per server,
    `replicas` servers per GGUF file, `cache` their prompt cache (`LocalServerConfig.cache`)."""

    port: int | None = None
    threads: int | None = None
    log_path: str | None = None
    max_restarts: int = 2
    replicas: int = DEFAULT_REPLICAS
    cache: str = "bounded"


class _Group:
    """The servers of one GGUF file, and the calls using them."""

    def __init__(self, path: Path, settings: LocalSettings) -> None:
        self.path = path
        self.settings = settings
        self.stack = contextlib.ExitStack()
        self.servers: list[LocalServer] = []
        self.users = 0
        self.failure: str | None = None
        self.listeners: list[Callable[[str], None]] = []

    def failed(self, message: str) -> None:
        """A server's watchdog gave up (any thread): remember why and tell the calls using it."""
        if self.failure is None:
            self.failure = message
        for listener in list(self.listeners):
            listener(message)

    def stop(self) -> None:
        self.stack.close()


_LOCK = threading.RLock()
_GROUPS: dict[Path, _Group] = {}
_AT_EXIT = False


class Lease:
    """One call's hold on this process's servers (`acquire`): `specs` are the call's specs
    with the local ones pointed at their servers (``openai/<alias>`` at ``api_base``,
    further replicas in ``api_bases``); `release()` ends the hold (once; later calls do
    nothing)."""

    def __init__(self, specs: list[ModelSpec], groups: Sequence[_Group] = (),
                 listener: Callable[[str], None] | None = None, keep: bool = True) -> None:
        self.specs = specs
        self.groups = tuple(groups)
        self._listener = listener
        self._keep = keep
        self._released = not self.groups

    def failure(self, resume: bool = False) -> LocalServerError | None:
        """LocalServerError (one line naming the log) when a server this call uses died beyond
        its restarts, else None; `resume` adds that the step log can be resumed."""
        for group in self.groups:
            failed = next((s for s in group.servers if s.failure), None)
            if group.failure is not None or failed is not None:
                message = group.failure or failed.failure  # type: ignore[union-attr]
                server = failed or group.servers[0]
                hint = "; the step log holds every decided step (rerun with --resume)" if resume else ""
                return LocalServerError(f"{message}{hint}", model=server.model, log_path=str(server.log_path))
        return None

    def release(self, interrupted: bool = False) -> None:
        """End this hold.  A group whose last user leaves stops when the hold was taken with
        keep=False, when `interrupted` (Ctrl-C), or when one of its servers died for good;
        otherwise it stays up for the next call."""
        with _LOCK:
            if self._released:
                return
            self._released = True
        for group in self.groups:
            _release(group, self._listener, stop=interrupted or not self._keep)


_DEFAULT = [LocalSettings()]


def configure(settings: LocalSettings) -> None:
    """The settings this process's servers start with when a call names none (`maker.vote`,
    `maker.run`, the MCP tools): replicas, threads, restarts, log, cache.  Servers already
    running keep theirs until they stop."""
    if not isinstance(settings, LocalSettings):
        raise TypeError(f"configure takes LocalSettings, got {type(settings).__name__}")
    _DEFAULT[0] = settings


def shared_servers() -> dict[Path, tuple[LocalServer, ...]]:
    """The groups running in this process now: GGUF file -> its servers."""
    with _LOCK:
        return {path: tuple(group.servers) for path, group in _GROUPS.items()}


def stop_shared() -> None:
    """Stop every local server this process started through `shared` (also runs at exit)."""
    with _LOCK:
        groups = list(_GROUPS.values())
        _GROUPS.clear()
    for group in groups:
        group.stop()


def _acquire(path: Path, settings: LocalSettings | None, on_start: Callable[[LocalServer], None] | None) -> _Group:
    """The running group for `path` (one more user), started now if there is none or the
    one there is unusable; ModelConfigError when it runs with other settings for another call."""
    global _AT_EXIT
    group = _GROUPS.get(path)
    if group is not None and group.failure is not None:
        if group.users:  # still failing the calls that hold it
            raise Lease([], (group,)).failure() or LocalServerError(group.failure)
        _GROUPS.pop(path).stop()  # died while idle: start afresh
        group = None
    if group is not None and settings is not None and settings != group.settings:
        if group.users:
            raise ModelConfigError(
                f"{path.name} is already served in this process with other settings ({group.settings}) by a "
                "call still running; wait for it or use the same settings",
                model="local",
            )
        _GROUPS.pop(path).stop()
        group = None
    if group is None:
        group = _Group(path, settings or _DEFAULT[0])
        s = group.settings
        try:
            servers = start_servers(group.stack, [path], port=s.port, threads=s.threads, log_path=s.log_path,
                                    max_restarts=s.max_restarts, on_failure=group.failed, on_start=on_start,
                                    replicas=s.replicas, cache=s.cache)
        except BaseException:
            group.stop()
            raise
        group.servers = servers[path]
        _GROUPS[path] = group
        if not _AT_EXIT:
            atexit.register(stop_shared)
            _AT_EXIT = True
    group.users += 1
    return group


def _release(group: _Group, listener: Callable[[str], None] | None, stop: bool) -> None:
    with _LOCK:
        group.users -= 1
        if listener is not None:
            with contextlib.suppress(ValueError):
                group.listeners.remove(listener)
        if group.users > 0 or not (stop or group.failure is not None):
            return
        if _GROUPS.get(group.path) is group:
            del _GROUPS[group.path]
    group.stop()


def acquire(
    specs: Sequence[ModelSpec],
    settings: LocalSettings | None = None,
    *,
    on_start: Callable[[LocalServer], None] | None = None,
    on_failure: Callable[[str], None] | None = None,
    keep: bool = True,
) -> Lease:
    """Hold this process's servers of every ``local`` / ``local:PATH`` spec, starting them if
    none run; return the `Lease` (call its `release()` when done; `shared` does).  Other
    specs pass through unchanged.

    `settings` None takes the servers as they run (or `configure`'s when none do); given,
    a group running idle with other settings is restarted with these, one in use by
    another call is ModelConfigError.  `on_start(server)` is told of each server started
    for this call; `on_failure(message)` (from any thread) when one dies beyond its
    restarts while held.  `keep` False stops the servers when the last user leaves.
    Raises ModelConfigError (no such GGUF file, llama-cpp-python missing, a port taken)
    or LocalServerError (a server did not start; or the group has failed and another
    call still holds it)."""
    paths: dict[str, Path] = {}
    for spec in specs:
        if is_local_model(spec.model):
            paths[spec.model] = check_gguf(model_path_of(spec.model), spec.model)
    if not paths:
        return Lease(list(specs))
    if settings is not None and settings.port is not None and len(set(paths.values())) > 1:
        raise ModelConfigError("--local-port fixes the port of one local model; leave it out to serve several")
    held: dict[Path, _Group] = {}
    try:
        with _LOCK:
            for path in sorted(set(paths.values())):
                group = held[path] = _acquire(path, settings, on_start)
                if on_failure is not None:
                    group.listeners.append(on_failure)
    except BaseException:
        Lease([], tuple(held.values()), on_failure, keep).release()
        raise
    served = {m: held[p].servers for m, p in paths.items()}
    return Lease(
        [replace(s, model=served[s.model][0].model, api_base=served[s.model][0].api_base,
                 api_bases=tuple(x.api_base for x in served[s.model][1:])) if s.model in served else s
         for s in specs],
        tuple(held.values()), on_failure, keep,
    )


@contextlib.contextmanager
def shared(
    specs: Sequence[ModelSpec],
    settings: LocalSettings | None = None,
    *,
    on_start: Callable[[LocalServer], None] | None = None,
    on_failure: Callable[[str], None] | None = None,
    keep: bool = True,
) -> Iterator[Lease]:
    """`acquire` for the block, released when it ends (interrupted: on KeyboardInterrupt
    or SystemExit, which stops the servers if no other call holds them)."""
    lease = acquire(specs, settings, on_start=on_start, on_failure=on_failure, keep=keep)
    try:
        yield lease
    except (KeyboardInterrupt, SystemExit):
        lease.release(interrupted=True)
        raise
    finally:
        lease.release()


@contextlib.contextmanager
def serving(
    specs: Sequence[ModelSpec],
    *,
    port: int | None = None,
    threads: int | None = None,
    log_path: str | Path | None = None,
    max_restarts: int = 2,
    on_start: Callable[[LocalServer], None] | None = None,
    replicas: int = DEFAULT_REPLICAS,
) -> Iterator[list[ModelSpec]]:
    """Serve every ``local`` / ``local:PATH`` spec for the duration of the block (`shared`
    with these settings, stopped when the block ends unless another call still uses them);
    yield the specs rewritten as `Lease.specs`.

    With more than one replica the client sends prompt variant v to server ``v % replicas``,
    so each server keeps one variant's prefix in its KV cache and the servers compute side
    by side.  If a server dies beyond its restarts while the main thread runs the job, the
    job is interrupted and LocalServerError (naming the log file) is raised from here.

    Example:
        >>> with serving([ModelSpec("local")]) as specs:  # doctest: +SKIP
        ...     run(get_task("chase", hops=100), specs)
    """
    settings = LocalSettings(port, threads, str(log_path) if log_path else None, max_restarts, replicas)
    leases: list[Lease] = []
    with interrupting(lambda: leases[0].failure(resume=True) if leases else None) as interrupt, \
            shared(specs, settings, on_start=on_start, on_failure=interrupt, keep=False) as lease:
        leases.append(lease)
        yield lease.specs


__all__ = [
    "DEFAULT_REPLICAS",
    "Lease",
    "LocalSettings",
    "acquire",
    "configure",
    "interrupting",
    "serving",
    "shared",
    "shared_servers",
    "start_servers",
    "stop_shared",
]
