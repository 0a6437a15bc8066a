"""Ray actors that hold model clients, and the pool that feeds them batches.

The pool never knows what work an actor does: every call is ``fn(worker, payload)``,
as in Ray's ActorPool, so the runner ships its own step logic (a module-level function
that Ray pickles by reference) and the actors stay generic.  An actor call costs
milliseconds, so callers send big batches, never single samples.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from maker.tasks import build_task
from maker.tasks.base import TaskSpec

from .clients import ModelSpec, make_client
from .errors import MakerError
from .protocol import ModelClient


class WorkerLostError(MakerError):
    """Workers kept dying on the same batch: the cluster cannot run it."""


class ModelWorker:
    """Holds the task and one client per model; runs whatever function it is sent."""

    def __init__(self, task_spec: TaskSpec, models: Sequence[ModelSpec]) -> None:
        self.task = build_task(task_spec)
        self.clients: dict[str, ModelClient] = {m.model: make_client(m, self.task) for m in models}

    async def call(self, fn: Callable[[ModelWorker, Any], Any | Awaitable[Any]], payload: Any) -> Any:
        result = fn(self, payload)
        if inspect.isawaitable(result):
            result = await result
        return result

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
    ray.init(**kwargs)


#: Ray's note on a task whose actor maker itself killed (closing or replacing the pool):
#: the pool already knows, and the note would add lines to a one-line error.
_KILLED_BY_US = "killed by `ray.kill`"


def _ray_messages_to_stderr() -> None:
    """Send the messages Ray prints on the driver to stderr, never to stdout.

    Why: even with `log_to_driver=False`, Ray's error listener prints cluster errors
    ("(raylet) Task ModelWorker.call failed ... killed by ray.kill", with colour codes)
    to stdout, where they corrupt `maker run --json`.  Ray looks its printer up by name on
    every message, so wrapping `ray._private.worker.print_to_stdstream` reroutes them all;
    should a later Ray move it, nothing changes here (and a test says so).  Notes on tasks
    of actors maker killed itself are dropped."""
    try:
        from ray._private import worker as ray_worker
    except ImportError:
        return
    original = getattr(ray_worker, "print_to_stdstream", None)
    if original is None or getattr(original, "maker_stderr", False):
        return

    def to_stderr(data: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        lines = [line for line in data.get("lines", ()) if _KILLED_BY_US not in str(line)]
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


@dataclass
class Pending:
    """A batch in flight: what was sent where, so it can be sent again if its actor dies."""

    ref: Any
    actor: int
    fn: Callable[[ModelWorker, Any], Any]
    payload: Any
    attempts: int = 1


class WorkerPool:
    """N `ModelWorker` actors spread over the cluster's nodes.

    Actors die: a worker process is killed, a node leaves the cluster.  Ray restarts a
    dead actor (on a live node) and retries its calls; should a call still fail with an
    actor error, `get` replaces the actor itself and sends the same batch again, up to
    `max_attempts` times.  A batch is a pure function of its payload (seeded draws), so
    sending it again is safe; with a paid model it costs the batch's samples once more.
    """

    def __init__(
        self,
        task_spec: TaskSpec,
        models: Sequence[ModelSpec],
        workers: int = 1,
        address: str | None = None,
        max_concurrency: int = 64,
        max_attempts: int = 4,
    ) -> None:
        import ray

        ensure_ray(address)
        self._options: dict[str, Any] = dict(
            num_cpus=0,
            max_concurrency=max_concurrency,
            scheduling_strategy="SPREAD",
            max_restarts=max_attempts,
            max_task_retries=max_attempts,
        )
        self._remote_cls = ray.remote(ModelWorker).options(**self._options)
        self._args = (task_spec, list(models))
        nodes = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
        self.actors = [self._spawn(i, nodes) for i in range(max(1, workers))]
        self.max_attempts = max_attempts
        self.replaced = 0
        self._next = 0

    def _spawn(self, index: int, nodes: Sequence[str]) -> Any:
        """Worker `index`, pinned to node `index mod len(nodes)` (alive a moment ago): SPREAD,
        and even soft node affinity, are best effort and stacked workers on one node here.
        A replacement after a death (`get`) goes wherever SPREAD puts it."""
        if len(nodes) < 2:
            return self._remote_cls.remote(*self._args)
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        strategy = NodeAffinitySchedulingStrategy(nodes[index % len(nodes)], soft=False)
        return ray.remote(ModelWorker).options(**{**self._options, "scheduling_strategy": strategy}).remote(*self._args)

    def submit(self, fn: Callable[[ModelWorker, Any], Any], payload: Any) -> Pending:
        """Send one batch to the next actor in turn."""
        index = self._next % len(self.actors)
        self._next += 1
        return Pending(self.actors[index].call.remote(fn, payload), index, fn, payload)

    def get(self, pending: Pending) -> Any:
        """The batch's result; a batch whose actor died is sent again to a fresh actor."""
        import ray
        from ray.exceptions import ActorUnavailableError, RayActorError

        while True:
            try:
                return ray.get(pending.ref)
            except (RayActorError, ActorUnavailableError):
                if pending.attempts >= self.max_attempts:
                    raise WorkerLostError(
                        f"a worker died {pending.attempts} times on the same batch; giving up"
                    ) from None
                self.actors[pending.actor] = self._remote_cls.remote(*self._args)
                self.replaced += 1
                pending.ref = self.actors[pending.actor].call.remote(pending.fn, pending.payload)
                pending.attempts += 1

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

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone: nothing to release
                pass
        self.actors = []
