"""Ray actors that hold model clients, and the pool that feeds them batches.

The pool never knows what work an actor does: every call is ``fn(worker, payload)``,
as in Ray's ActorPool, so the runner ships its own step logic (a module-level function
that Ray pickles by reference) and the actors stay generic.  An actor call costs
milliseconds, so callers send big batches, never single samples.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tasks import build_task
from tasks.base import TaskSpec

from .clients import ModelSpec, make_client
from .protocol import ModelClient


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
    """Start (or join) Ray once per process; reuse an instance that is already up."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
    if address:
        kwargs["address"] = address
    elif num_cpus is not None:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)


class WorkerPool:
    """N `ModelWorker` actors spread over the cluster's nodes."""

    def __init__(
        self,
        task_spec: TaskSpec,
        models: Sequence[ModelSpec],
        workers: int = 1,
        address: str | None = None,
        max_concurrency: int = 64,
    ) -> None:
        import ray

        ensure_ray(address)
        remote_cls = ray.remote(ModelWorker).options(
            num_cpus=0, max_concurrency=max_concurrency, scheduling_strategy="SPREAD"
        )
        self.actors = [remote_cls.remote(task_spec, list(models)) for _ in range(max(1, workers))]
        self._next = 0

    def submit(self, fn: Callable[[ModelWorker, Any], Any], payload: Any) -> Any:
        """Send one batch to the next actor in turn; returns a Ray object ref."""
        actor = self.actors[self._next % len(self.actors)]
        self._next += 1
        return actor.call.remote(fn, payload)

    def map(self, fn: Callable[[ModelWorker, Any], Any], payloads: Sequence[Any]) -> list[Any]:
        """Run one batch per payload across the actors; results in payload order."""
        import ray

        return ray.get([self.submit(fn, p) for p in payloads])

    def node_ids(self) -> list[str]:
        import ray

        return ray.get([a.node_id.remote() for a in self.actors])

    def close(self) -> None:
        import ray

        for actor in self.actors:
            try:
                ray.kill(actor)
            except Exception:  # already gone: nothing to release
                pass
        self.actors = []
