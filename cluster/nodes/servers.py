"""The embedded model on every node of a Ray cluster: each node's workers talk to servers on
their own node's 127.0.0.1.

Why: a local model server listens on 127.0.0.1 only (`cluster.local.server`), so workers on
other nodes cannot reach the driver's; and serving on each node is what makes local
inference scale with the cluster.  One `NodeServers` actor per node that runs a model
worker, pinned there (hard node affinity), owns that node's `LocalServer`s -- the same
code, settings (threads, replicas, restarts) and log as a single-machine run -- and
answers their addresses.  The driver rewrites the model's spec to
``openai/<alias>`` with ``node_bases`` (one entry per node), and each worker's client
picks its own node's entry (`ModelSpec.on_node`).

The servers stop when the block ends (normally, on error, on Ctrl-C): the driver asks
every actor to stop them, then kills the actor.  Should the driver die instead, Ray ends
the actors it owns, and each server is tied to its actor's life (``PR_SET_PDEATHSIG``).
A node that cannot serve (no GGUF file there, a server that does not start) ends the
whole start-up: every server already started is stopped, and LocalServerError names the
node.  A server that dies mid-run beyond its restarts interrupts the run as on one machine.

Example:
    >>> with serving_on_nodes([ModelSpec("local")], nodes) as specs:  # doctest: +SKIP
    ...     run(get_task("chase", hops=100), specs, cluster=ClusterConfig(workers=2, address=address))
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from maker.errors import ModelConfigError

from ..clients import ModelSpec
from ..local.server import LocalServerError, check_gguf, is_local_model, model_path_of
from ..local.serving import DEFAULT_REPLICAS, interrupting, start_servers

#: seconds to wait for every node's servers to answer (each server has its own start-up limit)
START_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class NodeServing:
    """How each node serves its local models: `models` are the ``local`` / ``local:PATH``
    strings; the rest as `cluster.local.serving.start_servers` takes them."""

    models: tuple[str, ...]
    threads: int | None = None
    replicas: int = DEFAULT_REPLICAS
    max_restarts: int = 2
    log_path: str | None = None  # on each node, with the node id added before the suffix


@dataclass(frozen=True)
class NodeAnswer:
    """What one node's actor reports after starting: where each model is served (model
    string -> that node's api_bases, the first is the spec's ``api_base``), the servers'
    pids and logs, or why it could not serve (one line)."""

    node_id: str
    host: str
    bases: dict[str, tuple[str, ...]]
    aliases: dict[str, str]
    servers: tuple[tuple[int | None, str, str], ...] = ()  # (pid, api_base, log path)
    error: str | None = None
    bad_input: bool = False  # the error is the user's input (no such GGUF file...), not a server that failed


class NodeServers:
    """Ray actor: the local model servers of the node it is pinned to."""

    def __init__(self, serving: NodeServing) -> None:
        self.serving = serving
        self.stack = contextlib.ExitStack()
        self.failure: str | None = None

    def start(self) -> NodeAnswer:
        """Start the servers; a NodeAnswer with `error` set (nothing left running) if this
        node cannot serve.  Runs in the actor's main thread: servers are tied to it."""
        import platform

        import ray

        node = ray.get_runtime_context().get_node_id()
        cfg = self.serving
        try:
            paths = {m: check_gguf(model_path_of(m), m) for m in cfg.models}
            log = None
            if cfg.log_path:
                log = Path(cfg.log_path)
                log = log.with_name(f"{log.stem}.{node[:12]}{log.suffix}")
            servers = start_servers(self.stack, sorted(set(paths.values())), threads=cfg.threads,
                                    log_path=log, max_restarts=cfg.max_restarts, on_failure=self._failed,
                                    replicas=cfg.replicas)
        except (LocalServerError, ModelConfigError) as exc:
            self.stop()
            return NodeAnswer(node, platform.node(), {}, {}, error=str(exc),
                              bad_input=isinstance(exc, ModelConfigError))
        group = {m: servers[p] for m, p in paths.items()}
        return NodeAnswer(
            node,
            platform.node(),
            {m: tuple(s.api_base for s in g) for m, g in group.items()},
            {m: g[0].model for m, g in group.items()},
            tuple((s.pid, s.api_base, str(s.log_path)) for g in servers.values() for s in g),
        )

    def _failed(self, message: str) -> None:
        self.failure = message

    def failed(self) -> str | None:
        """Why a server of this node is gone for good (died beyond its restarts), or None."""
        return self.failure

    def stop(self) -> None:
        """Stop every server of this node; safe to call twice."""
        self.stack.close()


@contextlib.contextmanager
def serving_on_nodes(
    specs: Sequence[ModelSpec],
    nodes: Sequence[str],
    *,
    threads: int | None = None,
    replicas: int = DEFAULT_REPLICAS,
    max_restarts: int = 2,
    log_path: str | Path | None = None,
    on_start: Callable[[NodeAnswer], None] | None = None,
    poll_s: float = 1.0,
) -> Iterator[list[ModelSpec]]:
    """Serve every ``local`` / ``local:PATH`` spec on each Ray node in `nodes` (ids; Ray
    already initialised) for the duration of the block; yield the specs with those
    rewritten to ``openai/<alias>`` with one ``node_bases`` entry per node.  Other specs
    pass through.

    Raises LocalServerError (a server did not start) or ModelConfigError (no such GGUF file
    there, a port...) naming the node, in one line, when a node cannot serve; then no
    server is left running on any node.  A server that dies beyond its restarts mid-run
    interrupts the job (main thread) and LocalServerError is raised from here."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    models = tuple(dict.fromkeys(s.model for s in specs if is_local_model(s.model)))
    if not models:
        yield list(specs)
        return
    config = NodeServing(models, threads=threads, replicas=replicas, max_restarts=max_restarts,
                         log_path=str(log_path) if log_path else None)
    remote = ray.remote(NodeServers)
    actors: dict[str, Any] = {}
    failed: list[LocalServerError] = []

    def failure() -> LocalServerError | None:
        return failed[0] if failed else None

    def stop_all() -> None:
        with contextlib.suppress(Exception):
            ray.get([a.stop.remote() for a in actors.values()], timeout=30)
        for actor in actors.values():
            with contextlib.suppress(Exception):
                ray.kill(actor)

    done = threading.Event()
    try:
        for node in dict.fromkeys(nodes):
            strategy = NodeAffinitySchedulingStrategy(node, soft=False)
            actors[node] = remote.options(num_cpus=0, max_restarts=0, scheduling_strategy=strategy).remote(config)
        refs = {node: a.start.remote() for node, a in actors.items()}
        answers: list[NodeAnswer] = []
        for node, ref in refs.items():
            try:
                answer = ray.get(ref, timeout=START_TIMEOUT_S)
            except Exception as exc:  # the actor could not even run (node gone, import error)
                raise LocalServerError(f"Ray node {node}: the local model servers could not start "
                                       f"({' '.join(str(exc).split())[:300]})", model=models[0]) from None
            if answer.error:
                kind = ModelConfigError if answer.bad_input else LocalServerError  # as on one machine
                raise kind(f"Ray node {node} ({answer.host}): {answer.error}", model=models[0])
            answers.append(answer)
            if on_start is not None:
                on_start(answer)
        served = {m: replace(next(s for s in specs if s.model == m), model=answers[0].aliases[m],
                             api_base=answers[0].bases[m][0], api_bases=answers[0].bases[m][1:],
                             node_bases=tuple((a.node_id, a.bases[m][0], a.bases[m][1:]) for a in answers))
                  for m in models}
        with interrupting(failure) as interrupt:
            def watch() -> None:
                while not done.wait(poll_s):
                    try:
                        found = ray.get([a.failed.remote() for a in actors.values()], timeout=30)
                    except Exception:  # the cluster is going away: the run itself reports that
                        return
                    for node, message in zip(actors, found):
                        if message:
                            failed.append(LocalServerError(
                                f"Ray node {node}: {message}; the step log holds every decided step "
                                "(rerun with --resume)", model=models[0]))
                            interrupt(message)
                            return

            threading.Thread(target=watch, name="maker-node-servers-watch", daemon=True).start()
            yield [served.get(s.model, s) for s in specs]
    finally:
        done.set()
        stop_all()


__all__ = ["NodeAnswer", "NodeServers", "NodeServing", "serving_on_nodes"]
