"""Ray actors that hold model clients, and the pool that feeds them batches.

The pool never knows what work an actor does: every call is ``fn(worker, payload)``,
as in Ray's ActorPool, so the runner ships its own step logic (a module-level function
that Ray pickles by reference) and the actors stay generic.  An actor call costs
milliseconds, so callers send big batches, never single samples.

A user's task and model travel to the workers by value.  The pool takes the task object
(or, as before, a `TaskSpec` that every worker rebuilds), and registers the modules that
define it -- and any `FunctionClient`'s function -- with Ray's cloudpickle
(`register_pickle_by_value`), so a task written in a script, a notebook cell or a file
loaded by path reaches workers on nodes that never saw it; installed packages (maker's
own tasks, plugins) still travel by reference.  Why not ``runtime_env={"py_modules":
...}``: that ships whole folders through the cluster's object store, needs a package
layout, and cannot ship a notebook cell; pickling by value ships exactly the code the
task uses.  What it does not ship: other non-installed modules the user's module imports
(install them on every node, or pass them in one module).

Everything that can be checked before a worker starts is (`check_shippable`: the task
pickles, the simulator has ground truth); a user error while a worker builds the task
or a model client (a factory that raises, a bad model spec) is caught in the worker
and raised on the driver as one line, before Ray would restart the actor.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from maker.tasks import build_task
from maker.tasks.base import TaskSpec

from maker.errors import MakerError, ModelConfigError, one_line

from .clients import ModelSpec, make_client
from .protocol import ModelClient


class WorkerLostError(MakerError):
    """Workers kept dying on the same batch: the cluster cannot run it."""


class Stale:
    """What a call returns, having done nothing, when it reached a worker that no longer
    serves the pool that sent it: a reused actor (`cluster.warm`) that Ray restarted with its
    first pool's task, or an old pool's call that started after the actor was released.  The
    pool treats it as a lost actor.  A value, not an exception: the old pool never reads its
    late calls, and Ray prints an error nobody read ("Unhandled error") on the user's stderr."""

    def __init__(self, serves: str | None) -> None:
        self.serves = serves  # the setup the worker serves now (None: released)


def stopped_in_worker(message: str, by_maker: bool = False) -> MakerError:
    """The one-line error for code that raised on a worker ("Type: message"), most often the
    task's own `prompt`, `truth` or `next_state` at some step; `by_maker`: no frame of the
    traceback is the user's (see `raised_by_maker`), so the user's code is not blamed."""
    if by_maker:
        return MakerError(f"the run stopped in a worker: {message} (an error in maker itself, not in your task: "
                          "please report it)")
    return MakerError(f"the run stopped in a worker: {message} (raised by the task's code?)")


#: Top-level packages whose frames are not the user's: maker and the libraries it runs on.
_NOT_USER = frozenset({"maker", "ray", "numpy", "pyarrow", "litellm", "openai", "httpx", "anyio", "scipy"})


def raised_by_maker(exc: BaseException) -> bool:
    """Whether every frame `exc` passed through is maker's, a library's it runs on, or the
    standard library's: then it is maker's own error, and the user's code must not be blamed
    (a user's module loaded by path is `_maker_user_*`; one imported by name is their package)."""
    tb = exc.__traceback__
    while tb is not None:
        top = str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0]
        if top not in _NOT_USER and top not in sys.stdlib_module_names:
            return False
        tb = tb.tb_next
    return True


class ModelWorker:
    """Holds the task and one client per model; runs whatever function it is sent.

    A failure while building them is kept (`setup_error`, one line) instead of raised:
    an actor whose constructor raises is restarted by Ray again and again, and the
    driver would see only `RayActorError`.  `ready()` reports it."""

    def __init__(self, task: Any, models: Sequence[ModelSpec], setup_id: str | None = None) -> None:
        self.running = 0  # calls under way (`release`)
        self._build(task, models, setup_id)

    def _build(self, task: Any, models: Sequence[ModelSpec], setup_id: str | None) -> None:
        self.setup_id = setup_id
        self.setup_error: str | None = None
        self.clients: dict[str, ModelClient] = {}
        try:
            self.task = build_task(task) if isinstance(task, TaskSpec) else task
            for m in models:
                self.clients[m.model] = make_client(m, self.task)
        except Exception as exc:  # the user's code or settings: reported by ready(), once
            self.setup_error = one_line(exc, None, typed=True)

    def ready(self) -> str | None:
        """None when the worker holds its task and clients, else why not (one line)."""
        return self.setup_error

    def setup(self, task: Any, models: Sequence[ModelSpec], setup_id: str) -> str | None:
        """Take a new pool's task and models (an actor reused: `cluster.warm`); as `ready`."""
        self._build(task, models, setup_id)
        return self.setup_error

    def release(self) -> int:
        """Drop the task and clients, and refuse the old pool's calls from now on; the number
        of its calls still running (0: the actor may be reused)."""
        self.setup_id, self.task, self.clients = None, None, {}
        return self.running

    def _stale(self, setup_id: str | None) -> bool:
        return setup_id is not None and setup_id != self.setup_id

    async def call(self, fn: Callable[[ModelWorker, Any], Any | Awaitable[Any]], payload: Any,
                   setup_id: str | None = None) -> Any:
        """`fn(self, payload)`, awaited.  An exception that is not a MakerError (the task's own
        `prompt` or `truth` raising at some step) becomes a one-line MakerError: through Ray it
        would reach the user as a RayTaskError and its traceback of both processes.  Returns
        `Stale`, doing nothing, when `setup_id` is not the worker's (see `WorkerPool`)."""
        if self._stale(setup_id):
            return Stale(self.setup_id)
        self.running += 1
        try:
            result = fn(self, payload)
            if inspect.isawaitable(result):
                result = await result
        except MakerError:
            raise
        except Exception as exc:
            raise stopped_in_worker(one_line(exc, None, typed=True), raised_by_maker(exc)) from None
        finally:
            self.running -= 1
        return result

    async def stream(self, fn: Callable[[ModelWorker, Any], AsyncIterator[Any]], payload: Any,
                     setup_id: str | None = None) -> AsyncIterator[Any]:
        """The items of the async iterator `fn(self, payload)`, each sent to the driver as soon as
        it is made (a Ray streaming generator: `WorkerPool.submit_stream`).  Errors as in `call`;
        one `Stale` item, and nothing more, when `setup_id` is not the worker's."""
        if self._stale(setup_id):
            yield Stale(self.setup_id)
            return
        self.running += 1
        try:
            async for item in fn(self, payload):
                yield item
        except MakerError:
            raise
        except Exception as exc:
            raise stopped_in_worker(one_line(exc, None, typed=True), raised_by_maker(exc)) from None
        finally:
            self.running -= 1

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start (or join) Ray once per process; reuse an instance that is already up.

    Without an address (and without RAY_ADDRESS) this always starts a fresh local Ray:
    plain `ray.init()` would join whatever cluster /tmp/ray/ray_current_cluster names,
    and hangs when that cluster is long dead.  That local Ray runs with token
    authentication (`RAY_AUTH_MODE=token`, Ray's default is off): its ports listen on
    every interface, and without the token anyone who reaches them can run code.  Child
    processes inherit the setting, so they can still join by address.  A user's own
    RAY_AUTH_MODE, and an existing cluster's choice, are left as they are.

    Raises MakerError (one line) when Ray does not start or cannot be joined: on a loaded
    machine its node can time out at start-up, which Ray reports as a bare Exception.
    """
    import ray

    if ray.is_initialized():
        return
    _ray_messages_to_stderr()
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
    elif os.environ.get("RAY_ADDRESS"):
        pass  # the user chose a cluster through Ray's own setting
    else:
        kwargs["address"] = "local"
        _token_auth_on()
        if num_cpus is not None:
            kwargs["num_cpus"] = num_cpus
        # Ray starts one idle task worker per CPU when the first driver joins; maker's work
        # runs in actors, each in a process of its own, so those would only idle (each costs
        # ~1.3 s of CPU to start and ~0.6 s a minute after, measured on a 2-core machine)
        kwargs["_system_config"] = {"prestart_worker_first_driver": False}
    term = _own_sigterm_handler()
    try:
        ray.init(**kwargs)
    except Exception as exc:  # Ray raises bare Exceptions (a node that timed out at start-up)
        where = f"join Ray at {address}" if address else "start a local Ray"
        raise MakerError(f"cannot {where}: {one_line(exc, None, typed=True)}") from exc
    finally:
        if term is not None:  # Ray's C++ logger takes SIGTERM over (prints a stack, exits 1): give it back
            signal.signal(signal.SIGTERM, term)


def _own_sigterm_handler() -> Any:
    """The process's own Python SIGTERM handler (the `maker` program's: stop as on Ctrl-C,
    writing the step log's last part), or None when there is none or this is not the main thread."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    handler = signal.getsignal(signal.SIGTERM)
    return handler if callable(handler) else None


#: Ray's notes that maker handles itself: a task whose actor maker killed (closing or
#: replacing the pool), and a failed task Ray is about to retry (the pool reports what
#: finally happens, in one line); either would add lines to a one-line error.
_HANDLED_BY_US = ("killed by `ray.kill`", "retries remaining, so the task will be retried")


def _ray_messages_to_stderr() -> None:
    """Send the messages Ray prints on the driver to stderr, never to stdout.

    Why: even with `log_to_driver=False`, Ray's error listener prints cluster errors
    ("(raylet) Task ModelWorker.call failed ... killed by ray.kill", with colour codes)
    to stdout, where they corrupt `maker run --json`.  Ray looks its printer up by name on
    every message, so wrapping `ray._private.worker.print_to_stdstream` reroutes them all;
    should a later Ray move it, nothing changes here (and a test says so).  Notes on tasks
    of actors maker killed itself, and on tasks Ray will retry, are dropped."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "maker_stderr", False):
        return

    def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        lines = [line for line in data.get("lines", ()) if not any(note in str(line) for note in _HANDLED_BY_US)]
        if not lines:
            return None
        return original({**data, "lines": lines, "is_err": True}, *args, **kwargs)

    to_stderr.maker_stderr = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = to_stderr


def _token_auth_on() -> None:
    """Turn Ray's token authentication on for the Ray this process is about to start.

    Ray reads RAY_AUTH_MODE once, when `ray._raylet` is imported; by now it usually has
    been, so the setting is re-read through Ray's own config hook.  Should that hook
    move in a later Ray, the setting is taken back rather than leave the driver and the
    Ray it starts disagreeing (which makes `ray.init` fail); Ray then runs as its
    default, without the token."""
    if "RAY_AUTH_MODE" in os.environ:
        return  # the user's choice
    os.environ["RAY_AUTH_MODE"] = "token"
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):
        del os.environ["RAY_AUTH_MODE"]


def _last_error(exc: BaseException) -> str:
    """The last `SomeError: message` line of a Ray error (its own text holds whole tracebacks)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", line)]
    return (found or lines or [type(exc).__name__])[-1][:300]


@dataclass
class Pending:
    """A batch in flight: what was sent where, so it can be sent again if its actor dies.

    For a streamed batch (`WorkerPool.submit_stream`) `ref` is Ray's ObjectRefGenerator and
    `payload` is what is sent again: the caller narrows it to the part whose results have not
    come back yet."""

    ref: Any
    actor: int
    fn: Callable[[ModelWorker, Any], Any]
    payload: Any
    attempts: int = 1
    streamed: bool = False
    setup_id: str = ""  # the setup of the actor it was sent to (`ModelWorker.call`)


#: Module-name prefixes that always travel by reference: maker itself and what it runs on.
_BY_REFERENCE = ("maker", "ray", "numpy", "pyarrow", "litellm", "builtins", "__main__")


def _user_modules(task: Any, models: Sequence[ModelSpec]) -> list[str]:
    """Names of the modules whose code the task and user clients need, and which a worker
    may not be able to import: not installed (no site-packages in their path), not
    the standard library, not maker (`__main__` is pickled by value by cloudpickle anyway)."""
    objects: list[Any] = []
    todo: list[tuple[Any, int]] = [(task, 0), *((m.client, 0) for m in models if m.client is not None)]
    while todo:  # the task, its attributes, theirs (plan operations hold the user's functions), 3 deep
        obj, depth = todo.pop()
        objects.append(obj)
        if depth >= 3 or inspect.isfunction(obj) or inspect.isclass(obj) or isinstance(obj, (str, bytes, int, float)):
            continue
        values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (tuple, list)) else \
            getattr(obj, "__dict__", {}).values()
        todo.extend((v, depth + 1) for v in list(values)[:1000])
    names: list[str] = []
    for obj in objects:
        name = getattr(obj, "__module__", None) if inspect.isfunction(obj) or inspect.isclass(obj) else None
        name = name or getattr(type(obj), "__module__", None)
        if not name or name in names or name.split(".")[0] in _BY_REFERENCE or name in sys.stdlib_module_names:
            continue
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if module is None or "site-packages" in path or "dist-packages" in path:
            continue
        names.append(name)
    return names


def check_shippable(task: Any, models: Sequence[ModelSpec]) -> None:
    """Fail before any worker starts when the task cannot reach the workers (it does not
    pickle) or a model cannot work with it (the simulator without ground truth).

    Raises UsageError (one line).  Registers the user's modules for pickling by value."""
    from maker.tasks.base import Oracle

    from maker.errors import UsageError

    if isinstance(task, TaskSpec):
        return
    models = [m if isinstance(m, ModelSpec) else ModelSpec(m) for m in models]  # names too, as maker.run takes
    name = getattr(getattr(task, "spec", None), "name", type(task).__name__)
    for m in models:
        if m.client is None and m.in_process_simulator and not isinstance(task, Oracle):
            raise UsageError(
                f"{m.model}: the simulator needs ground truth, and task {name} has none "
                + ("(maker map: --truth COLUMN names the column of right answers; or run it on a real model)"
                   if name == "map" else "(give it truth=... or a solver, or run it on a real model)")
            )
        if m.client is None and m.in_process_simulator:
            from .simulated.simulator import check_can_be_wrong

            try:
                check_can_be_wrong(task, m.model)
            except ModelConfigError as exc:
                raise UsageError(str(exc)) from None
    import ray.cloudpickle as cloudpickle

    for module in _user_modules(task, models):
        cloudpickle.register_pickle_by_value(sys.modules[module])
    for what, obj in [("task " + name, task), *((f"model {m.model}", m.client) for m in models if m.client)]:
        try:
            cloudpickle.dumps(obj)
        except Exception as exc:
            why = one_line(exc, None, typed=True)
            raise UsageError(f"the {what} cannot be sent to the Ray workers: {why}") from None


def alive_nodes() -> list[str]:
    """Ids of the cluster's live nodes, sorted (Ray initialised)."""
    import ray

    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def worker_nodes(workers: int) -> list[str]:
    """The node each of a new pool's `workers` workers runs on: worker i on live node
    ``i mod nodes`` (what `WorkerPool` does), so a model served per node
    (`cluster.nodes`) can be served on exactly these nodes before the pool starts."""
    nodes = alive_nodes()
    return [nodes[i % len(nodes)] for i in range(max(1, workers))]


#: how long `WorkerPool.close` waits for its actors to say whether they are idle (then kills them)
CLOSE_WAIT_S = 2.0


class WorkerPool:
    """N `ModelWorker` actors spread over the cluster's nodes.

    Actors die: a worker process is killed, a node leaves the cluster.  Ray restarts a
    dead actor (on a live node) and retries its calls; should a call still fail with an
    actor error, `get` replaces the actor itself and sends the same batch again, up to
    `max_attempts` times.  A batch is a pure function of its payload (seeded draws), so
    sending it again is safe; with a paid model it costs the batch's samples once more.

    Actors are reused: the pool takes idle ones an earlier pool of this process left
    (`cluster.warm`) before it starts new ones, and `close` leaves its own there when nothing
    of its job still runs on them.  Each actor's setup has an id that every call carries: a
    reused actor that Ray restarts comes back with its first pool's task, refuses the call
    (it returns `Stale`), and is replaced like a dead one.
    """

    def __init__(
        self,
        task: Any,
        models: Sequence[ModelSpec],
        workers: int = 1,
        address: str | None = None,
        max_concurrency: int = 64,
        max_attempts: int = 4,
    ) -> None:
        import ray

        check_shippable(task, models)  # before Ray starts: a task that cannot travel fails here
        ensure_ray(address)
        self._options: dict[str, Any] = dict(
            num_cpus=0,
            max_concurrency=max_concurrency,
            scheduling_strategy="SPREAD",
            max_restarts=max_attempts,
            max_task_retries=max_attempts,
        )
        self._remote_cls = ray.remote(ModelWorker).options(**self._options)
        # each model's price looked up here, once: a worker left to do it imports litellm (seconds of CPU)
        self._args = (task, [m.priced() for m in models])
        self._ids: list[str] = []  # each actor's setup id, by index
        self._keys: list[tuple[Any, ...]] = []  # each actor's `cluster.warm` key, by index
        self.max_attempts = max_attempts
        self.replaced = 0
        self._next = 0
        nodes = alive_nodes()
        started = [self._spawn(i, nodes) for i in range(max(1, workers))]
        self.actors = [actor for actor, _ in started]
        self._check_ready([setup for _, setup in started], nodes)

    def _check_ready(self, setups: list[Any], nodes: Sequence[str]) -> None:
        """Raise UsageError (one line) when a worker could not build the task or a client:
        the user's code or settings, the same on every retry, so nothing is retried.  A
        reused actor that is gone is replaced by a new one first."""
        import ray

        from maker.errors import UsageError

        refs = [setup if setup is not None else actor.ready.remote() for actor, setup in zip(self.actors, setups)]
        problems: list[str | None] = []
        try:
            for i, ref in enumerate(refs):
                try:
                    problems.append(ray.get(ref))
                except Exception:
                    if setups[i] is None:
                        raise
                    self.actors[i], _ = self._spawn(i, nodes, reuse=False)  # an idle actor that died meanwhile
                    problems.append(ray.get(self.actors[i].ready.remote()))
        except Exception as exc:  # a fresh actor that cannot even start: almost always its code or data
            self.close(reuse=False)
            raise UsageError(f"a Ray worker could not load the task or a model ({_last_error(exc)}); "
                             "is every module it needs installed on every node?") from None
        problem = next((p for p in problems if p), None)
        if problem is not None:
            self.close(reuse=False)
            raise UsageError(f"a Ray worker could not set up the task or a model: {problem}")

    def _spawn(self, index: int, nodes: Sequence[str], reuse: bool = True) -> tuple[Any, Any]:
        """Worker `index`, pinned to node `index mod len(nodes)` (alive a moment ago): SPREAD,
        and even soft node affinity, are best effort and stacked workers on one node here.
        Returns the actor and, for an idle one reused, the ref of its `setup` (else None:
        ask `ready`).  A replacement after a death (`get`) goes wherever SPREAD puts it."""
        from . import warm

        node = nodes[index % len(nodes)] if len(nodes) >= 2 else None
        setup_id = uuid.uuid4().hex
        key = warm.key(self._options, node)
        actor = warm.take(key) if reuse else None
        self._remember(index, setup_id, key)
        if actor is not None:
            try:
                return actor, actor.setup.remote(*self._args, setup_id)
            except Exception:  # a handle this Ray does not know (an earlier Ray's): start a new one
                pass
        return self._fresh(node, setup_id), None

    def _remember(self, index: int, setup_id: str, key: tuple[Any, ...]) -> None:
        if index < len(self._ids):
            self._ids[index], self._keys[index] = setup_id, key
        else:
            self._ids.append(setup_id)
            self._keys.append(key)

    def _fresh(self, node: str | None, setup_id: str) -> Any:
        """A new actor with setup `setup_id`: on `node`, or (None) wherever SPREAD puts it."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        if node is None:
            return self._remote_cls.remote(*self._args, setup_id)
        strategy = NodeAffinitySchedulingStrategy(node, soft=False)
        return ray.remote(ModelWorker).options(**{**self._options, "scheduling_strategy": strategy}).remote(
            *self._args, setup_id)

    def _replacement(self, index: int) -> Any:
        """A fresh actor for dead worker `index`: wherever SPREAD puts it, or, when a model is
        served per node (`ModelSpec.node_bases`), on a live node that serves it.  Never an
        idle one (`cluster.warm`): it is not kept after the pool closes either."""
        import ray

        try:
            ray.kill(self.actors[index])  # dead, or alive serving another setup (`Stale`)
        except Exception:
            pass
        setup_id = uuid.uuid4().hex
        self._remember(index, setup_id, ())
        served = [n for n, _, _ in next((m.node_bases for m in self._args[1] if m.node_bases), ())]
        if not served:
            return self._fresh(None, setup_id)
        alive = set(alive_nodes())
        nodes = [n for n in served if n in alive] or served  # none alive: Ray reports it on the call
        return self._fresh(nodes[index % len(nodes)], setup_id)

    def submit(self, fn: Callable[[ModelWorker, Any], Any], payload: Any) -> Pending:
        """Send one batch to the next actor in turn."""
        index = self._next % len(self.actors)
        self._next += 1
        setup_id = self._ids[index]
        return Pending(self.actors[index].call.remote(fn, payload, setup_id), index, fn, payload, setup_id=setup_id)

    def get(self, pending: Pending) -> Any:
        """The batch's result; a batch whose actor died is sent again to a fresh actor."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        while True:
            try:
                result = ray.get(pending.ref)
                if not isinstance(result, Stale):
                    return result
            except RayTaskError as exc:  # its str is both processes' traceback; a MakerError is one line
                cause = getattr(exc, "cause", None)
                if isinstance(cause, MakerError):
                    raise cause from None
                raise
            except (RayActorError, ActorUnavailableError):
                pass
            self._lost(pending)
            pending.ref = self.actors[pending.actor].call.remote(pending.fn, pending.payload, pending.setup_id)

    def _lost(self, pending: Pending) -> None:
        """`pending`'s actor died (or serves another setup): give its index a fresh actor,
        unless another batch of the same actor already did, and count the attempt.  Raises
        WorkerLostError after `max_attempts`."""
        if pending.attempts >= self.max_attempts:
            raise WorkerLostError(f"a worker died {pending.attempts} times on the same batch; giving up") from None
        if self._ids[pending.actor] == pending.setup_id:
            self.actors[pending.actor] = self._replacement(pending.actor)
            self.replaced += 1
        pending.setup_id = self._ids[pending.actor]
        pending.attempts += 1

    def submit_stream(self, fn: Callable[[ModelWorker, Any], AsyncIterator[Any]], payload: Any) -> Pending:
        """Send one batch whose results stream back item by item (`fn` is an async generator
        function); read them with `next_item`.  `Pending.ref` can be passed to `ray.wait`."""
        index = self._next % len(self.actors)
        self._next += 1
        setup_id = self._ids[index]
        return Pending(self._stream(index, fn, payload, setup_id), index, fn, payload, streamed=True, setup_id=setup_id)

    def _stream(self, index: int, fn: Callable[[ModelWorker, Any], Any], payload: Any, setup_id: str) -> Any:
        # Ray's own retry would replay the generator from its start, with other chunk
        # boundaries: the pool sends the part still out again itself (`next_item`).
        return self.actors[index].stream.options(num_returns="streaming", max_task_retries=0).remote(
            fn, payload, setup_id)

    def next_item(self, pending: Pending) -> Any | None:
        """The next item of a streamed batch, None once it is done.  Should its actor die, the
        batch's current `payload` (what has not come back yet) is sent to a fresh actor, up to
        `max_attempts` times; a MakerError raised in the worker is raised here, one line."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

        while True:
            try:
                item = ray.get(next(pending.ref))
                if not isinstance(item, Stale):
                    return item
            except StopIteration:
                return None
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, MakerError):
                    raise cause from None
                if not isinstance(cause, (RayActorError, ActorUnavailableError)):
                    raise
            except (RayActorError, ActorUnavailableError):
                pass
            self._lost(pending)
            pending.ref = self._stream(pending.actor, pending.fn, pending.payload, pending.setup_id)

    def map(self, fn: Callable[[ModelWorker, Any], Any], payloads: Sequence[Any]) -> list[Any]:
        """Run one batch per payload across the actors; results in payload order."""
        return [self.get(p) for p in [self.submit(fn, p) for p in payloads]]

    def node_ids(self) -> list[str]:
        """The node each worker runs on ('lost' for one that died meanwhile: a report, not a failure)."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        out = []
        for ref in [a.node_id.remote() for a in self.actors]:
            try:
                out.append(ray.get(ref))
            except (RayActorError, ActorUnavailableError):
                out.append("lost")
        return out

    def close(self, reuse: bool = True) -> None:
        """Stop using the actors: each one that nothing of this pool still runs on is left
        for the next pool of this process (`cluster.warm`, when `reuse`), the rest are killed
        (so the requests they were making stop).  Waits at most CLOSE_WAIT_S."""
        import ray

        from . import warm

        actors, self.actors = self.actors, []
        left = dict(enumerate(actors))  # neither kept nor killed yet
        try:
            released = {i: a.release.remote() for i, a in enumerate(actors) if reuse and self._keys[i]}
            done: set[Any] = set()
            if released:
                done = set(ray.wait(list(released.values()), num_returns=len(released), timeout=CLOSE_WAIT_S)[0])
            for i, actor in enumerate(actors):
                ref = released.get(i)
                try:
                    if ref in done and ray.get(ref) == 0 and warm.give(self._keys[i], actor):
                        del left[i]
                except Exception:  # gone meanwhile
                    pass
        finally:  # also on Ctrl-C while it waits: the busy ones must stop
            for actor in left.values():
                try:
                    ray.kill(actor)
                except Exception:  # already gone: nothing to release
                    pass
