"""Samples/s of `maker run --model local` on one machine, and on a Ray cluster of one and of
two nodes (each node serving the embedded model to its own worker: `cluster/nodes/servers.py`).

Each cluster is a `ray.cluster_utils.Cluster` started in a subprocess with its own
RAY_TMPDIR (as the multinode tests do); `maker run` joins it by address with one worker per
node.  Both nodes live on this machine, so they share its cores: the two-node figure says
what the per-node serving costs here, not what a real second machine would add.  The rate
is the run's samples (speculative ones included) over its wall time (`wall_s` of the JSON
result: Ray workers and the run, not the servers' start-up).

    python bench/local_nodes.py                          # chase 40 hops, k=3, 4 variants, T=0.5
    python bench/local_nodes.py --hops 20 --setups local,1,2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: `maker run RUN_ARGS` on a fresh cluster of NODES nodes (one worker each); prints RESULT {...}
CLUSTER = r"""
import contextlib, io, json, sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
try:
    for i in range(NODES - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes(timeout=60)
    from maker.cli.main import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*RUN_ARGS, "--address", cluster.address, "--workers", str(NODES)])
    print("RESULT " + json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()[-2000:]}))
finally:
    import ray
    ray.shutdown()
    cluster.shutdown()
"""


def measure(setup: str, run_args: list[str], timeout: float) -> dict:
    """One run: `setup` is ``local`` (no --address: servers on this machine, as by default)
    or a node count (a fresh cluster of that many nodes)."""
    ray_tmp = tempfile.mkdtemp(prefix="mkr-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env.pop("RAY_ADDRESS", None)
    started = time.perf_counter()
    try:
        if setup == "local":
            done = subprocess.run([sys.executable, "-m", "maker.cli.main", *run_args], capture_output=True, text=True,
                                  timeout=timeout, cwd=ROOT, env=env)
            code, stdout, stderr = done.returncode, done.stdout, done.stderr
        else:
            script = CLUSTER.replace("RUN_ARGS", repr(run_args)).replace("NODES", str(int(setup)))
            done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout,
                                  cwd=ROOT, env=env)
            lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if not lines:
                raise SystemExit(f"{setup} node(s): no result\n{done.stderr[-2000:]}")
            report = json.loads(lines[0].removeprefix("RESULT "))
            code, stdout, stderr = report["code"], report["stdout"], report["stderr"]
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    command_s = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"{setup}: maker run exited {code}: {stderr[-1500:]}")
    result = json.loads(stdout)
    drawn = result["samples"] + int(result["extra"].get("wasted_samples", 0) or 0)
    return {"setup": setup, "steps": result["steps"], "errors": result["errors"], "solved": result["solved"],
            "samples": result["samples"], "drawn": drawn, "wall_s": result["wall_s"],
            "samples_per_s": round(drawn / max(1e-9, result["wall_s"]), 3), "command_s": round(command_s, 1),
            "nodes": len(set(result["extra"].get("node_ids") or [])) or 1}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hops", type=int, default=40)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--setups", default="local,1,2", help="comma-separated: local (no --address) or a node count")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for i, setup in enumerate(x for x in args.setups.split(",") if x):
            run_args = ["run", "chase", "--hops", str(args.hops), "--model", "local", "--k", str(args.k),
                        "--prompt-variants", str(args.variants), "--temperature", str(args.temperature),
                        "--json", "--quiet", "--log", str(Path(tmp) / f"run{i}")]
            rows.append(measure(setup, run_args, args.timeout))
    if args.json:
        print(json.dumps({"device": f"{os.cpu_count()} CPU cores", "runs": rows}))
        return 0
    print(f"maker run chase --hops {args.hops} --model local --k {args.k} --prompt-variants {args.variants} "
          f"--temperature {args.temperature} ({os.cpu_count()} CPU cores, nodes share them)")
    for r in rows:
        where = "this machine, no --address" if r["setup"] == "local" else f"cluster of {r['setup']} node(s)"
        print(f"  {where:28} {r['samples_per_s']:6.2f} samples/s  ({r['drawn']} samples in {r['wall_s']} s, "
              f"{r['steps']} steps, {r['errors']} errors; whole command {r['command_s']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
