"""Idle Ray workers are reused by the next pool of the same process (`maker.cluster.warm`),
never while the old job still runs on them, and never with the old job's task.

The actors are real (the session's Ray); the functions sent to them are defined inside the
tests, so cloudpickle ships them by value."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from maker.cluster import ModelSpec, WorkerPool, warm
from maker.cluster.worker import ModelWorker, Stale
from maker.tasks import get_task

MODELS = [ModelSpec("sim:0.99")]


def _probe():  # noqa: ANN202
    # a fresh function object each time: pickled by value, as a user's would be
    def probe(worker, payload):  # noqa: ANN001, ANN202
        return os.getpid(), worker.task.total_steps
    return probe


def _second_pool() -> WorkerPool:
    """A pool on the actor a first pool (Hanoi, 3 disks: 7 steps) left idle; its own task is
    Hanoi with 4 disks (15 steps)."""
    first = WorkerPool(get_task("hanoi", disks=3), MODELS)
    first.get(first.submit(_probe(), None))
    first.close()
    return WorkerPool(get_task("hanoi", disks=4), MODELS)


@pytest.mark.ray
def test_the_next_pool_reuses_the_idle_actor_with_its_own_task(ray_address) -> None:
    first = WorkerPool(get_task("hanoi", disks=3), MODELS)
    pid, steps = first.get(first.submit(_probe(), None))
    assert steps == 7
    first.close()
    second = WorkerPool(get_task("hanoi", disks=4), MODELS)
    try:
        pid2, steps2 = second.get(second.submit(_probe(), None))
    finally:
        second.close()
    assert pid2 == pid  # the same process: no new actor was started
    assert steps2 == 15  # and it holds the second pool's task, not the first's


@pytest.mark.ray
def test_an_actor_still_running_a_call_is_killed_not_kept(ray_address) -> None:
    from ray.exceptions import RayActorError

    async def sleepy(worker, payload):  # noqa: ANN001, ANN202
        await asyncio.sleep(payload)
        return "finished"

    pool = WorkerPool(get_task("hanoi", disks=3), MODELS)
    [actor] = pool.actors
    pending = pool.submit(sleepy, 60)
    time.sleep(0.5)  # under way
    pool.close()
    assert actor._actor_id.hex() not in warm.idle_ids()
    import ray

    with pytest.raises(RayActorError):  # killed: the call stops, it does not run on for a minute
        ray.get(pending.ref, timeout=30)


@pytest.mark.ray
def test_a_reused_actor_that_ray_restarts_is_replaced_not_used_with_the_old_task(ray_address) -> None:
    second = _second_pool()
    try:
        pid, steps = second.get(second.submit(_probe(), None))
        assert steps == 15
        os.kill(pid, signal.SIGKILL)  # Ray restarts it with the arguments it was made with: the first pool's task
        pid2, steps2 = second.get(second.submit(_probe(), None))
    finally:
        second.close()
    assert steps2 == 15  # never the first pool's 7
    assert pid2 != pid and second.replaced == 1


@pytest.mark.ray
def test_an_old_pools_late_call_on_a_reused_actor_does_nothing_and_is_no_error(ray_address) -> None:
    """The old pool never reads it: as an exception, Ray would print it on the user's stderr
    ("Unhandled error", seen when a run stopped on a full disk with a call still queued)."""
    import ray

    first = WorkerPool(get_task("hanoi", disks=3), MODELS)
    [actor], old = first.actors, first._ids[0]
    first.close()
    second = WorkerPool(get_task("hanoi", disks=4), MODELS)
    try:
        assert second.actors == [actor]
        late = ray.get(actor.call.remote(_probe(), None, old), timeout=30)
        assert isinstance(late, Stale) and late.serves == second._ids[0]
        assert second.get(second.submit(_probe(), None))[1] == 15
    finally:
        second.close()


def test_a_released_worker_refuses_the_old_setup_and_counts_what_runs() -> None:
    """In process, no Ray: the checks `ModelWorker` itself makes."""
    worker = ModelWorker(get_task("hanoi", disks=3), MODELS, "first")

    async def slow(w, payload):  # noqa: ANN001, ANN202
        task = w.task  # as the runner's step functions do: what the call started with
        await asyncio.sleep(0.2)
        return task.total_steps

    async def scenario() -> tuple[int, int, int]:
        running = asyncio.ensure_future(worker.call(slow, None, "first"))
        await asyncio.sleep(0.05)
        busy = worker.release()  # one call of the old setup still under way
        late = await worker.call(slow, None, "first")  # a call of the old setup that starts later does nothing
        assert isinstance(late, Stale) and late.serves is None
        assert worker.setup(get_task("hanoi", disks=4), MODELS, "second") is None
        return busy, await running, await worker.call(slow, None, "second")

    busy, old, new = asyncio.run(scenario())
    assert busy == 1 and old == 7 and new == 15
    assert worker.release() == 0


def test_at_most_limit_actors_are_kept_and_other_jobs_are_forgotten(monkeypatch) -> None:
    monkeypatch.setattr(warm, "_IDLE", {})
    key = ("job-1", None, ())
    kept = [warm.give(key, object()) for _ in range(warm.LIMIT + 2)]
    assert kept == [True] * warm.LIMIT + [False, False]
    assert warm.take(key) is not None
    assert warm.take(("job-2", None, ())) is None  # a new job: the old job's actors died with it
    assert warm._IDLE == {}


def _model_requests_under_way():  # noqa: ANN202
    def probe(worker, payload):  # noqa: ANN001, ANN202
        # the coroutines still running in this actor's event loop, other than this call's own
        return sorted({t.get_coro().__qualname__ for t in asyncio.all_tasks() if not t.done()}
                      & {"FunctionClient._one", "vote_step"})
    return probe


@pytest.mark.ray
def test_a_failed_batch_leaves_no_model_request_running_on_a_kept_actor(ray_address) -> None:
    """A batch votes its steps concurrently; one step stopping the batch (the task's code raising
    on its row) must not leave the other steps' model requests running, unseen, on an actor the
    next pool takes: they would go on paying for an abandoned job."""
    from maker.cluster import FunctionClient

    import maker

    def prompt(args):  # noqa: ANN001, ANN202
        if args[0] == "row 2":
            raise KeyError("no such column")
        return f"{args[0]}\nanswer:"

    async def slow(prompt, temperature, seed):  # noqa: ANN001, ANN202
        await asyncio.sleep(600)  # a slow provider: still working, still billing
        return " 1"

    op = maker.operation("answer", prompt=prompt, key="integer", parse=lambda r: r.strip())
    rows = [{"record": f"row {i}"} for i in range(4)]
    with pytest.raises(maker.MakerError, match="no such column"):
        maker.map(rows, [FunctionClient(slow, name="slow")], maker.VotingConfig(k=2), op=op)
    pool = WorkerPool(get_task("hanoi", disks=3), MODELS)  # takes the map job's actor, if it was kept
    try:
        assert pool.get(pool.submit(_model_requests_under_way(), None)) == []
    finally:
        pool.close()


RESTART = """
import os, sys
import ray
from maker.cluster import ModelSpec, WorkerPool, ensure_ray
from maker.tasks import get_task

def probe(worker, payload):
    return worker.task.total_steps

for disks in (3, 4):  # a fresh local Ray each time, in one process (a notebook that restarts Ray)
    ensure_ray(num_cpus=1)
    pool = WorkerPool(get_task("hanoi", disks=disks), [ModelSpec("sim:0.99")])
    print(pool.get(pool.submit(probe, None)), flush=True)
    pool.close()
    ray.shutdown()
"""


@pytest.mark.ray
@pytest.mark.subprocess
def test_a_fresh_ray_in_the_same_process_never_gets_the_old_rays_idle_actors() -> None:
    """Its first job has the same id as the old Ray's first job: before, the next pool took an
    idle actor of the dead Ray and failed with Ray's "Can't find actor ... from a different cluster"."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", RESTART], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["7", "15"]


@pytest.mark.ray
def test_batches_in_flight_on_a_reused_actor_that_dies_are_all_sent_again_to_one_replacement(ray_address) -> None:
    async def slow_steps(worker, payload):  # noqa: ANN001, ANN202
        await asyncio.sleep(0.5)
        return payload, worker.task.total_steps

    second = _second_pool()
    try:
        pid, _ = second.get(second.submit(_probe(), None))
        pending = [second.submit(slow_steps, i) for i in range(3)]
        os.kill(pid, signal.SIGKILL)  # Ray restarts it with the first pool's task, and retries the batches there
        results = [second.get(p) for p in pending]
    finally:
        second.close()
    assert results == [(0, 15), (1, 15), (2, 15)]  # every batch, on the second pool's task
    assert second.replaced == 1  # one replacement for the three batches, not one each


@pytest.mark.ray
def test_a_stream_on_a_reused_actor_that_dies_goes_on_with_the_pools_own_task(ray_address) -> None:
    async def steps(worker, payload):  # noqa: ANN001, ANN202
        for _ in range(payload):
            await asyncio.sleep(0.2)
            yield worker.task.total_steps

    second = _second_pool()
    try:
        pid, _ = second.get(second.submit(_probe(), None))
        pending = second.submit_stream(steps, 3)
        items = [second.next_item(pending)]
        os.kill(pid, signal.SIGKILL)  # the rest of the stream is sent again (the whole payload, here)
        while (item := second.next_item(pending)) is not None:
            items.append(item)
    finally:
        second.close()
    assert set(items) == {15} and len(items) >= 3  # never the first pool's 7
    assert second.replaced == 1


@pytest.mark.ray
def test_an_idle_actor_that_died_while_idle_is_replaced_by_a_fresh_one(ray_address) -> None:
    import ray

    for other in warm.clear():  # room for this test's actor, whatever earlier tests left
        ray.kill(other)
    first = WorkerPool(get_task("hanoi", disks=3), MODELS)
    [actor] = first.actors
    first.get(first.submit(_probe(), None))
    first.close()
    assert actor._actor_id.hex() in warm.idle_ids()
    ray.kill(actor)  # gone for good (no restart) while idle
    second = WorkerPool(get_task("hanoi", disks=4), MODELS)
    try:
        _, steps = second.get(second.submit(_probe(), None))
    finally:
        second.close()
    assert steps == 15


@pytest.mark.ray
def test_a_second_ctrl_c_while_the_pool_closes_still_stops_its_busy_actors(ray_address) -> None:
    """`close` asks each actor whether it is idle (up to CLOSE_WAIT_S); a KeyboardInterrupt
    then (the user pressing Ctrl-C again) must not leave the busy ones running their calls."""
    import _thread
    import threading

    import ray
    from ray.exceptions import RayActorError

    def blocking(worker, payload):  # noqa: ANN001, ANN202
        time.sleep(payload)  # a sync call holds the actor's event loop: `release` waits behind it
        return "finished"

    pool = WorkerPool(get_task("hanoi", disks=3), MODELS)
    pending = pool.submit(blocking, 60)
    time.sleep(0.5)  # under way
    threading.Timer(0.5, _thread.interrupt_main).start()  # the second Ctrl-C, while close waits
    with pytest.raises(KeyboardInterrupt):
        pool.close()
        time.sleep(5)  # close returned first: the interrupt lands here instead (and the test fails below)
    with pytest.raises(RayActorError):  # killed: the call stops, it does not run on for a minute
        ray.get(pending.ref, timeout=50)
