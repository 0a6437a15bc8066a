"""The embedded model (``local``, ``local:PATH.gguf``) for a run or a voted call, served by the library.

Why here: `maker.run`, `maker.vote` / `maker.avote`, the MCP tools and every CLI command
name ``local`` like any other model; serving it (starting the llama.cpp servers, pointing
the specs at them, stopping them) is the library's job, and the CLI only adds its
``--local-*`` settings and its announcements.

On one machine the servers are this process's shared set (`maker.cluster.local.serving.shared`):
started on first use, shared by every call and by the run's Ray workers, stopped at
exit.  With a Ray ``address`` whose worker nodes are not only this one, each node serves
its own (`maker.cluster.nodes.serving_on_nodes`) for the duration of the call.  Either
way, a server that dies beyond its restarts while the main thread runs the job interrupts
it with LocalServerError naming the log.

Example:
    >>> with local_models([ModelSpec("local")]) as specs:  # doctest: +SKIP
    ...     specs[0].model, specs[0].api_base
    ('openai/local-SmolLM2-135M-Instruct.Q4_1', 'http://127.0.0.1:40123/v1')
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from maker.cluster import ModelSpec
from maker.cluster.local.server import LocalServer, is_local_model
from maker.cluster.local.serving import Lease, LocalSettings, interrupting, shared
from maker.errors import UsageError


def has_local(models: Sequence[Any]) -> bool:
    """Whether any of `models` (strings, ModelSpecs, clients) names the embedded model."""
    return any(is_local_model(m if isinstance(m, str) else m.model) for m in models if isinstance(m, (str, ModelSpec)))


def refuse_local_tiers(tiers: Sequence[str]) -> None:
    """UsageError for ``local`` as an escalation tier: a tier is re-voted by models named
    in the voting config, which a worker builds from the name alone, and a local model's
    servers are known only once started.  The embedded model is the weakest there is:
    name it with --model, and escalate to a stronger one."""
    for model in tiers:
        if is_local_model(model):
            raise UsageError(f"--escalate-to {model}: the embedded model cannot be an escalation tier; "
                             "use it as a --model and escalate to a stronger model")


def local_settings(*, port: int | None = None, threads: int | None = None, log: str | None = None,
                   restarts: int | None = None, replicas: int | None = None) -> LocalSettings:
    """`LocalSettings` from options that may be "not given" (None: `LocalSettings`' default;
    a fixed `port` serves one replica).  UsageError, naming the ``--local-*`` flag, for
    threads, replicas < 1 or restarts < 0."""
    if threads is not None and threads < 1:
        raise UsageError("--local-threads must be >= 1")
    if restarts is not None and restarts < 0:
        raise UsageError("--local-restarts must be >= 0")
    if replicas is not None and replicas < 1:
        raise UsageError("--local-replicas must be >= 1")
    given = {"port": port, "threads": threads, "log_path": str(log) if log else None, "max_restarts": restarts,
             "replicas": 1 if port is not None else replicas}
    return LocalSettings(**{name: value for name, value in given.items() if value is not None})  # type: ignore[arg-type]


@contextlib.contextmanager
def local_models(
    specs: Sequence[ModelSpec],
    *,
    address: str | None = None,
    workers: int = 1,
    settings: LocalSettings | None = None,
    on_start: Callable[[LocalServer], None] | None = None,
    on_node_start: Callable[[Any], None] | None = None,
    keep: bool = True,
    resume_hint: bool = True,
) -> Iterator[list[ModelSpec]]:
    """Yield `specs` with every local model pointed at its servers, for the block.

    address / workers: the Ray cluster the job runs on (None: this machine).  settings:
    the CLI's ``--local-*`` options (None: as the servers run, or the defaults).  on_start
    / on_node_start: told of each server (one machine) or node (cluster) started.  keep:
    whether this process's servers stay up for later calls when the block ends (the
    library) or stop (one CLI command).  resume_hint: a server failure's message says the
    step log can be resumed.

    Raises ModelConfigError (no such GGUF file, llama-cpp-python missing, a port taken),
    LocalServerError (a server did not start, or died beyond its restarts mid-job), and
    UsageError for a fixed port with a multi-node cluster."""
    if not has_local(specs):
        yield list(specs)
        return
    if address:
        nodes = _other_nodes(address, workers)
        if nodes is not None:
            if settings is not None and settings.port is not None:
                raise UsageError("--local-port fixes one port on one machine; leave it out with --address")
            from maker.cluster.nodes import serving_on_nodes

            s = settings or LocalSettings()
            with serving_on_nodes(specs, nodes, threads=s.threads, replicas=s.replicas, max_restarts=s.max_restarts,
                                  log_path=s.log_path, on_start=on_node_start) as served:
                yield free_local(specs, served)
            return
    leases: list[Lease] = []
    with interrupting(lambda: leases[0].failure(resume=resume_hint) if leases else None) as interrupt, \
            shared(specs, settings, on_start=on_start, on_failure=interrupt, keep=keep) as lease:
        leases.append(lease)
        yield free_local(specs, lease.specs)


def free_local(specs: Sequence[ModelSpec], served: Sequence[ModelSpec]) -> list[ModelSpec]:
    """`served` with each embedded model priced as free (`FREE_LOCAL`) unless its spec gives a
    price: a spend cap (`maker.budget.spend`) then knows what it costs."""
    from dataclasses import replace

    from maker.cluster.pricing import FREE_LOCAL

    return [replace(t, price=t.price or FREE_LOCAL) if has_local([s]) else t for s, t in zip(specs, served)]


def _other_nodes(address: str, workers: int) -> list[str] | None:
    """The Ray nodes the job's workers will run on; None when that is only this machine
    (then the local models are served here, as without an address)."""
    import ray

    from maker.cluster.worker import ensure_ray, worker_nodes

    ensure_ray(address)
    nodes = worker_nodes(max(1, workers or 1))
    if set(nodes) == {ray.get_runtime_context().get_node_id()}:
        return None
    return nodes


__all__ = ["free_local", "has_local", "local_models", "refuse_local_tiers"]
