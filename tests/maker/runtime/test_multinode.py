"""`maker run --address ADDR --workers 2` on a real two-node Ray cluster on this machine,
and a run that loses one of the two nodes halfway.

The cluster (a head and a second node with its own resources, via
`ray.cluster_utils.Cluster`) lives in a subprocess with its own RAY_TMPDIR, so it never
touches the test session's Ray instance, and other processes' plain `ray.init()` on
this machine never finds it.  `maker run` (the CLI entry point) joins it by address, as
a user would.  The model is the simulator (the fake at the model boundary).
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

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[3]

#: `maker run RUN_ARGS` joined to a fresh two-node cluster (see `cli_on_two_nodes`)
SCRIPT = r"""
import contextlib, io, json, sys
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    cluster.add_node(num_cpus=1, resources={"second_node": 1})
    cluster.wait_for_nodes(timeout=40)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    from maker.cli.main import main  # the CLI as a user runs it, joining the cluster by address
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*RUN_ARGS, "--address", cluster.address, "--workers", "2", "--json", "--quiet", "--log", sys.argv[1]])
    ray.shutdown()
    print("RESULT " + json.dumps({"nodes": nodes, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:]}))
finally:
    cluster.shutdown()
"""


REMOVE_NODE = r"""
import json, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    second = cluster.add_node(num_cpus=1, resources={"second_node": 1})
    cluster.wait_for_nodes(timeout=40)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    from maker import ClusterConfig, VotingConfig, run
    from maker.tasks import get_task
    log = Path(sys.argv[1])
    out = {}

    def go():
        try:
            out["result"] = run(get_task("hanoi", disks=9), ["sim:0.99,latency=0.003"], VotingConfig(k=2), log=log,
                                cluster=ClusterConfig(workers=2, segment_steps=8, address=cluster.address)).to_dict()
        except BaseException as exc:
            out["error"] = repr(exc)

    runner = threading.Thread(target=go)
    runner.start()
    deadline = time.time() + 60
    while len(list(log.glob("part-*.parquet"))) < 4 and time.time() < deadline:  # both workers have answered
        time.sleep(0.05)
    out["parts_before"] = len(list(log.glob("part-*.parquet")))
    out["running_at_removal"] = runner.is_alive()
    cluster.remove_node(second, allow_graceful=False)  # the node's raylet and workers die at once
    runner.join(timeout=150)
    out["hung"] = runner.is_alive()
    print("RESULT " + json.dumps(out))
finally:
    ray.shutdown()
    cluster.shutdown()
"""


def cli_on_two_nodes(run_args: list[str]) -> str:
    """The script that runs `maker run *run_args` (plus address, two workers, --json) on two nodes."""
    return SCRIPT.replace("RUN_ARGS", repr(run_args))


def in_own_cluster(script: str, log: Path, timeout: float) -> dict:
    """Run `script` in a subprocess with its own RAY_TMPDIR; its RESULT line, as JSON (Ray may
    print its own lines to stdout after it)."""
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(log)], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.subprocess
def test_workers_spread_over_both_nodes(tmp_path) -> None:
    report = in_own_cluster(cli_on_two_nodes(["run", "hanoi", "--disks", "6", "--model", "sim:0.99", "--k", "2",
                                              "--segment-steps", "8"]), tmp_path / "h6", 90)
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert len(report["nodes"]) == 2
    assert result["solved"] and result["errors"] == 0
    assert sorted(result["extra"]["node_ids"]) == report["nodes"], (result["extra"], report["nodes"])  # one worker per node


@pytest.mark.subprocess
def test_a_node_removed_mid_run_costs_no_step(tmp_path) -> None:
    """The second node dies while the run goes on: its worker's batch goes to a fresh
    worker on the surviving node, and the log is whole and right."""
    from maker import verify_log
    from maker.log.steplog import open_log, read_table

    log = tmp_path / "h9"
    report = in_own_cluster(REMOVE_NODE, log, 240)
    assert report["running_at_removal"] and report["parts_before"] >= 4, report
    assert not report["hung"] and "error" not in report, report
    result = report["result"]
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 511
    assert result["extra"]["workers_replaced"] >= 1
    steps = read_table(open_log(log), ["step"], kind="decision")["step"].to_pylist()
    assert sorted(steps) == list(range(511))  # none missing, none twice
    assert verify_log(log).solved


@pytest.mark.subprocess
def test_a_users_own_task_runs_on_both_nodes(tmp_path) -> None:
    """A task in a file no node can import (a folder outside every sys.path) reaches the
    workers on both nodes by value (cloudpickle), and the run is solved."""
    folder = tmp_path / "user_project"
    folder.mkdir()
    shutil.copy(ROOT / "examples" / "ledger.py", folder / "my_ledger_q15.py")
    task = f"{folder / 'my_ledger_q15.py'}:ledger"
    report = in_own_cluster(cli_on_two_nodes(["run", "--task", task, "--n", "40", "--model", "sim:0.95", "--k", "2",
                                              "--segment-steps", "5"]), tmp_path / "ledger", 120)
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 40
    assert sorted(result["extra"]["node_ids"]) == report["nodes"], (result["extra"], report["nodes"])


@pytest.mark.subprocess
def test_a_plan_streams_its_decided_steps_from_both_nodes(tmp_path) -> None:
    """A plan's batches stream their decided steps back (Ray streaming generators) from
    workers on both nodes: the run is solved, every step logged once, the tool run once."""
    from maker.log.steplog import open_log, read_table

    task = f"{ROOT / 'examples' / 'records.py'}:records"
    report = in_own_cluster(cli_on_two_nodes(["run", "--task", task, "--n", "120", "--model",
                                              "sim:0.99,latency=0.05,jitter=1.5", "--k", "2"]), tmp_path / "rec", 120)
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert result["solved"] and result["steps"] == 121 and result["extra"]["tools_run"] == 1
    assert sorted(result["extra"]["node_ids"]) == report["nodes"], (result["extra"], report["nodes"])
    table = read_table(open_log(tmp_path / "rec"), ["step"], kind="decision")
    assert sorted(table["step"].to_pylist()) == list(range(121))  # none missing, none twice
