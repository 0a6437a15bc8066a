"""`maker run --address ADDR --workers 2` on a real two-node Ray cluster on this machine.

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

ROOT = Path(__file__).resolve().parents[2]

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
    from maker.cli import main  # the CLI as a user runs it, joining the cluster by address
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "hanoi", "--disks", "6", "--model", "sim:0.99", "--k", "2", "--address", cluster.address,
                     "--workers", "2", "--segment-steps", "8", "--json", "--quiet", "--log", sys.argv[1]])
    ray.shutdown()
    print(json.dumps({"nodes": nodes, "code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:]}))
finally:
    cluster.shutdown()
"""


def test_workers_spread_over_both_nodes(tmp_path) -> None:
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("RAY_ADDRESS", None)
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "h6")], capture_output=True, text=True, timeout=90, cwd=ROOT, env=env
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, report["stderr"]
    result = json.loads(report["stdout"])
    assert len(report["nodes"]) == 2
    assert result["solved"] and result["errors"] == 0
    assert sorted(result["extra"]["node_ids"]) == report["nodes"], (result["extra"], report["nodes"])  # one worker per node
