"""`maker run --address ADDR --workers 2` on a real two-node Ray cluster on this machine,
and a run that loses one of the two nodes halfway.

The cluster (a head and a second node with its own resources, via
`ray.cluster_utils.Cluster`) lives in a subprocess with its own RAY_TMPDIR, so it never
touches the test session's Ray instance, and other processes' plain `ray.init()` on
this machine never finds it.  `maker run` (the CLI entry point) joins it by address, as
a user would.  The model is the simulator (the fake at the model boundary).  One cluster
serves all four runs (it starts once: one subprocess, one test).
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

#: One two-node cluster for the whole module: `maker run` (the CLI entry point, joining by
#: address as a user would) for each of SCENARIOS' CLI runs in turn, then the node removal
#: (last: it takes the second node away).  argv[1]: the scenarios as JSON; one RESULT line
#: each, `RESULT NAME JSON`.
SCRIPT = r"""
import contextlib, io, json, sys, threading, time
from pathlib import Path
import ray
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                       "_system_config": {"prestart_worker_first_driver": False}})
try:
    second = cluster.add_node(num_cpus=1, resources={"second_node": 1})
    cluster.wait_for_nodes(timeout=40)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    ray.shutdown()
    from maker.cli.main import main  # the CLI as a user runs it, joining the cluster by address

    def cli(run_args, log):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*run_args, "--address", cluster.address, "--workers", "2", "--json", "--quiet", "--log", log])
        ray.shutdown()
        return {"nodes": nodes, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:]}

    def remove_node(log):
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        from maker import ClusterConfig, VotingConfig, run
        from maker.tasks import get_task
        log = Path(log)
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
        ray.shutdown()
        return out

    for name, run_args, log in json.loads(sys.argv[1]):
        try:
            report = cli(run_args, log) if run_args is not None else remove_node(log)
        except BaseException as exc:
            report = {"script_error": repr(exc)}
        print(f"RESULT {name} " + json.dumps(report), flush=True)
finally:
    cluster.shutdown()
"""


def on_two_nodes(scenarios: list[tuple[str, list[str] | None, Path]], timeout: float) -> dict[str, dict]:
    """Run SCRIPT's scenarios (name, `maker run` arguments or None for the node removal, log)
    in one subprocess with its own RAY_TMPDIR; each one's RESULT, as JSON, by name (Ray may
    print its own lines to stdout between them)."""
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("RAY_ADDRESS", None)
    argv = json.dumps([(name, args, str(log)) for name, args, log in scenarios])
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = {}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            name, _, report = line.removeprefix("RESULT ").partition(" ")
            reports[name] = json.loads(report)
    return reports


def cli_result(report: dict | None) -> dict:
    """The `--json` result of a CLI scenario that exited 0."""
    assert report is not None and "script_error" not in report, report
    assert report["code"] == 0, report["stderr"]
    return json.loads(report["stdout"])


@pytest.mark.subprocess
def test_runs_on_two_nodes_and_a_node_removed_mid_run(tmp_path) -> None:
    """One two-node cluster (starting one costs ~10 s and two nodes' worth of processes) for
    four runs, each with its own asserts:

    - workers spread over both nodes (one per node);
    - a task in a file no node can import (a folder outside every sys.path) reaches the
      workers on both nodes by value (cloudpickle), and the run is solved;
    - a plan's batches stream their decided steps back (Ray streaming generators) from
      workers on both nodes: the run is solved, every step logged once, the tool run once;
    - the second node dies while a run goes on: its worker's batch goes to a fresh worker on
      the surviving node, and the log is whole and right.

    One test, not four sharing a module fixture: under xdist the four could land on four
    workers and start four clusters -- `xdist_group` does not keep them together here
    (xdist 3.8's loadgroup renames `item._nodeid`, which pytest 9 no longer reads)."""
    from maker import verify_log
    from maker.log.steplog import open_log, read_table

    user = tmp_path / "user_project"  # a folder outside every sys.path, so no node can import the task
    user.mkdir()
    shutil.copy(ROOT / "examples" / "ledger.py", user / "my_ledger_q15.py")
    reports = on_two_nodes([
        ("spread", ["run", "hanoi", "--disks", "6", "--model", "sim:0.99", "--k", "2", "--segment-steps", "8"],
         tmp_path / "h6"),
        ("own_task", ["run", "--task", f"{user / 'my_ledger_q15.py'}:ledger", "--n", "40", "--model", "sim:0.95",
                      "--k", "2", "--segment-steps", "5"], tmp_path / "ledger"),
        ("plan", ["run", "--task", f"{ROOT / 'examples' / 'records.py'}:records", "--n", "120", "--model",
                  "sim:0.99,latency=0.05,jitter=1.5", "--k", "2"], tmp_path / "rec"),
        ("remove_node", None, tmp_path / "h9"),  # last: it takes the second node away
    ], 480)

    # workers spread over both nodes
    result, nodes = cli_result(reports.get("spread")), reports["spread"]["nodes"]
    assert len(nodes) == 2
    assert result["solved"] and result["errors"] == 0
    assert sorted(result["extra"]["node_ids"]) == nodes, (result["extra"], nodes)  # one worker per node

    # a user's own task runs on both nodes
    result = cli_result(reports.get("own_task"))
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 40
    assert sorted(result["extra"]["node_ids"]) == nodes, (result["extra"], nodes)

    # a plan streams its decided steps from both nodes
    result = cli_result(reports.get("plan"))
    assert result["solved"] and result["steps"] == 121 and result["extra"]["tools_run"] == 1
    assert sorted(result["extra"]["node_ids"]) == nodes, (result["extra"], nodes)
    table = read_table(open_log(tmp_path / "rec"), ["step"], kind="decision")
    assert sorted(table["step"].to_pylist()) == list(range(121))  # none missing, none twice

    # a node removed mid-run costs no step
    report, log = reports.get("remove_node"), tmp_path / "h9"
    assert report is not None and "script_error" not in report, report
    assert report["running_at_removal"] and report["parts_before"] >= 4, report
    assert not report["hung"] and "error" not in report, report
    result = report["result"]
    assert result["solved"] and result["errors"] == 0 and result["steps"] == 511
    assert result["extra"]["workers_replaced"] >= 1
    steps = read_table(open_log(log), ["step"], kind="decision")["step"].to_pylist()
    assert sorted(steps) == list(range(511))  # none missing, none twice
    assert verify_log(log).solved
