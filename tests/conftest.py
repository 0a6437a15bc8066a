"""Test-session plumbing.

- One real Ray instance for the whole session (starting Ray costs ~10 s and ~1.5 GB here),
  shared by in-process runs, by CLI subprocesses (via --address) and, under pytest-xdist,
  by every worker: the first worker that needs Ray starts it in a holder process (a lock
  file guards the start), the others join by address, and the controller stops the holder
  (and with it the Ray it started) when the session ends.
- Markers are enforced: a test that starts a process must be marked `subprocess` (or
  `local_model`, whose servers are processes), one that starts Ray or takes the session's
  Ray must be marked `ray`.  The check watches `subprocess.Popen` (which asyncio and the MCP
  client use too) while each test runs, so a helper that spawns counts as well.
- Workers take whole test files (pyproject's `--dist loadfile`): a module may share one server
  set or one cluster among its tests (module-scoped fixtures), in order, in one worker.
  (`xdist_group` would not do: xdist 3.8's loadgroup renames `item._nodeid`, which pytest 9
  no longer reads, so grouped tests were spread over the workers anyway.)
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

#: a folder every process of this test session shares (set by the controller, inherited by workers)
SHARED_ENV = "MAKER_TEST_SHARED_DIR"
#: xdist workers for a run of the suite (or of folders): most slow tests wait (on timeouts,
#: subprocesses, Ray), so more workers than the machine's 2 cores pay; measured in the README
WORKERS = 4
#: a run naming fewer test files than this runs in one process (no workers to start)
FEW_FILES = 4

#: logical CPUs of the session's Ray (actors take 0; a few xdist workers' runs at once)
RAY_CPUS = 4

#: the Ray holder: start maker's local Ray (token auth as a user gets), print its address,
#: live until SIGTERM or until the test session's controller is gone, then stop that Ray
HOLDER = r"""
import os, signal, sys, time
def stop(*_):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, stop)
from maker.cluster import ensure_ray
import ray
ensure_ray(num_cpus=int(sys.argv[2]))
print(ray.get_runtime_context().gcs_address, flush=True)
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # the worker that reads this line may exit first
try:
    while True:
        try:
            os.kill(int(sys.argv[1]), 0)
        except ProcessLookupError:
            break
        time.sleep(1)
finally:
    ray.shutdown()
"""


def _worker(config: pytest.Config) -> str | None:
    return getattr(config, "workerinput", {}).get("workerid")


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): WORKERS for the suite or a folder, none (one process)
    for a few named files, where starting workers costs more than it saves."""
    named = [a.split("::")[0] for a in config.args]
    if named and all(a.endswith(".py") for a in named) and len(set(named)) < FEW_FILES:
        return 0
    return WORKERS


def pytest_configure(config: pytest.Config) -> None:
    if _worker(config) is None and SHARED_ENV not in os.environ:
        os.environ[SHARED_ENV] = tempfile.mkdtemp(prefix="maker-tests-")
        config._maker_shared_owner = True  # type: ignore[attr-defined]
        _compile_once()


#: the packages every process of a test session imports (Ray workers, CLI subprocesses, servers)
PACKAGES = ("maker", "cluster", "tasks", "voting")


def _compile_once() -> None:
    """Where Python may not write its bytecode cache (PYTHONDONTWRITEBYTECODE, as on this
    project's machines), each of the hundreds of processes a session starts would compile
    maker's source again (~0.25 s of CPU each): write the cache once, before any starts.
    Python reads it, and compiles a file afresh in memory when its source has changed."""
    if not sys.dont_write_bytecode:
        return
    import compileall

    root = Path(__file__).resolve().parents[1]
    for package in PACKAGES:
        compileall.compile_dir(root / package, quiet=2)


def pytest_unconfigure(config: pytest.Config) -> None:
    if not getattr(config, "_maker_shared_owner", False):
        return
    shared = Path(os.environ.pop(SHARED_ENV))
    holder = shared / "ray.json"
    if holder.exists():
        pid = json.loads(holder.read_text())["pid"]
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
        except ProcessLookupError:
            pass
    import shutil

    shutil.rmtree(shared, ignore_errors=True)


def _shared_ray() -> str:
    """The address of the session's shared Ray, starting its holder first if no process has."""
    from filelock import FileLock

    shared = Path(os.environ[SHARED_ENV])
    record = shared / "ray.json"
    with FileLock(str(shared / "ray.lock")):
        if not record.exists():
            controller = str(os.getppid())  # an xdist worker's parent is the session's controller
            with open(shared / "ray-holder.log", "w") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-c", HOLDER, controller, str(RAY_CPUS)],
                    stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                )
            address = (proc.stdout.readline() if proc.stdout else "").strip()
            if not address:
                proc.kill()
                raise RuntimeError("the test session's Ray holder did not start")
            record.write_text(json.dumps({"pid": proc.pid, "address": address}))
        return json.loads(record.read_text())["address"]


@pytest.fixture(scope="session")
def ray_address(request: pytest.FixtureRequest) -> str:
    """The session's Ray: started once (shared by xdist workers); its address, so that
    subprocesses can join instead of starting another."""
    import ray
    from maker.cluster import ensure_ray

    if _worker(request.config) is None:  # one process: this process's own local Ray, as before
        ensure_ray(num_cpus=RAY_CPUS)
        yield ray.get_runtime_context().gcs_address
        ray.shutdown()
        return
    from cluster.worker import _token_auth_on  # the shared Ray demands its token, as a user's local one

    address = _shared_ray()
    _token_auth_on()
    ensure_ray(address=address)
    yield address
    ray.shutdown()


@pytest.fixture
def model_worker_pids():
    """A function giving the pids of the live `ModelWorker` actors of this process's Ray job.

    The session's Ray is shared by every xdist worker, so its processes are not this
    process's children, and other workers' runs have ModelWorkers of their own at the same
    time: a kill test must pick one of its own run's, which the job id tells apart."""

    def pids() -> list[int]:
        import ray
        from maker.cluster import warm
        from ray._private import state

        job = ray.get_runtime_context().get_job_id()
        idle = warm.idle_ids()  # an earlier run's actors, idle until a pool takes them
        return [a["Pid"] for actor_id, a in state.actors().items()
                if a["ActorClassName"] == "ModelWorker" and a["JobID"] == job and a["State"] == "ALIVE" and a["Pid"]
                and actor_id not in idle]

    return pids


# --- marker enforcement -------------------------------------------------------------------

_spawned: list[list[str]] | None = None
# The standard library asks `uname -p` once per process, on the first platform.processor()
# (litellm, aiohttp and Ray reach it lazily): ask now, so no test is charged for that probe.
platform.processor()
_real_execute_child = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _recording_execute_child(self, args, *rest, **kwargs):  # noqa: ANN001, ANN002, ANN003
    if _spawned is not None:
        _spawned.append([str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)])
    return _real_execute_child(self, args, *rest, **kwargs)


subprocess.Popen._execute_child = _recording_execute_child  # type: ignore[attr-defined]

_RAY_PROGRAMS = ("raylet", "gcs_server", "ray/_private", "ray/dashboard", "ray/autoscaler")


@pytest.fixture(autouse=True)
def _markers_match_what_the_test_starts(request: pytest.FixtureRequest):
    """Fail a test that starts a process without `subprocess` (or `local_model`), starts Ray
    without `ray`, or takes the session's Ray without `ray`.  A `ray` test joins the session's
    Ray first, so its outcome does not depend on which test ran before it in its worker."""
    global _spawned
    node = request.node
    marked = {m.name for m in node.iter_markers()}
    if "ray_address" in request.fixturenames and "ray" not in marked:
        pytest.fail("takes the session's Ray (ray_address) but is not marked `ray`", pytrace=False)
    if "ray" in marked:  # joined before the watch starts: a `ray` test never starts a Ray of its own
        request.getfixturevalue("ray_address")  # (whatever ran before it in this worker)
    _spawned = []
    try:
        yield
    finally:
        spawned, _spawned = _spawned, None
    if not spawned:
        return
    ray_started = [a for a in spawned if any(p in " ".join(a) for p in _RAY_PROGRAMS)]
    if ray_started and "ray" not in marked:
        pytest.fail(f"starts Ray ({' '.join(ray_started[0])[:120]}) but is not marked `ray`", pytrace=False)
    if not marked & {"subprocess", "local_model"}:
        pytest.fail(f"starts a process ({' '.join(spawned[0])[:120]}) but is not marked `subprocess`",
                    pytrace=False)


@pytest.fixture
def maker_cli(capsys):
    """`maker ARGS...` in this process (as `maker.cli.main`): a namespace with its
    returncode, stdout and stderr, as `subprocess.run` gives them."""
    from types import SimpleNamespace

    from maker.cli.main import main

    def call(*args: str) -> SimpleNamespace:
        capsys.readouterr()
        code = main(list(args))
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return call
