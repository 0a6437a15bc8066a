"""Idle `ModelWorker` actors that the next pool of the same process may take.

A fresh actor is a fresh process: Python, `import ray`, maker's modules, the task
unpickled -- about 1 s of CPU and 1 s of wall time on a 2-core machine (`bench/warm_workers.py`:
0.995 s per short `maker.run` with fresh actors, 0.068 s reused; docs/ray.md).  A Python
session that runs many short jobs one after another (`maker.vote` in a loop, one
`maker.run` per record, an estimate and then its run, the test suite) would pay that each time, so a pool
that closes normally hands its actors here and the next pool sets them up with its own
task and models (`ModelWorker.setup`) instead.

An actor is kept only when nothing of the old job still runs on it (`ModelWorker.release`
says how many calls are running); otherwise it is killed, as every actor used to be, so
abandoned requests stop.  A call of the old job that starts later finds the actor's setup
id changed and does nothing (it returns `Stale`).  Actors die with the Ray job (the driver
that made them), so keys carry the job -- its id and the driver's node id, since a fresh local
Ray after `ray.shutdown()` numbers its first job 01000000 again -- and other jobs' entries are dropped.
"""

from __future__ import annotations

import threading
from typing import Any

#: at most this many idle actors per process; the rest are killed
LIMIT = 4

_IDLE: dict[tuple[Any, ...], list[Any]] = {}
_LOCK = threading.Lock()  # pools may open and close in several threads (an MCP server's runs)


def key(options: dict[str, Any], node: str | None) -> tuple[Any, ...]:
    """What an idle actor must match to be reused: this Ray job (its id, which a fresh Ray
    reuses, and the driver's node, which it does not), the node it is pinned to (None:
    unpinned) and its actor options (all but the scheduling strategy)."""
    import ray

    context = ray.get_runtime_context()
    job = (context.get_job_id(), context.get_node_id())
    return (job, node, tuple(sorted((k, v) for k, v in options.items() if k != "scheduling_strategy")))


def _forget_other_jobs(job: Any) -> None:
    for other in [k for k in _IDLE if k[0] != job]:
        del _IDLE[other]  # their job ended (`ray.shutdown`), and its actors with it


def take(key: tuple[Any, ...]) -> Any | None:
    """An idle actor for `key`, or None."""
    with _LOCK:
        _forget_other_jobs(key[0])
        idle = _IDLE.get(key)
        return idle.pop() if idle else None


def give(key: tuple[Any, ...], actor: Any) -> bool:
    """Keep `actor` for a later pool; False (the caller kills it) when LIMIT are kept."""
    with _LOCK:
        _forget_other_jobs(key[0])
        if sum(len(v) for v in _IDLE.values()) >= LIMIT:
            return False
        _IDLE.setdefault(key, []).append(actor)
        return True


def idle_ids() -> set[str]:
    """Hex ids of the idle actors (a test that kills a run's worker must not pick one)."""
    with _LOCK:
        return {actor._actor_id.hex() for idle in _IDLE.values() for actor in idle}


def clear() -> list[Any]:
    """Forget every idle actor; returns them (to kill)."""
    with _LOCK:
        out = [actor for idle in _IDLE.values() for actor in idle]
        _IDLE.clear()
        return out
