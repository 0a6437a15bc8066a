"""Reliability under fire: driver kills, worker kills, endpoint faults, hostile replies.

Prints one table: fault kind, how many were injected, runs completed, decision errors,
samples lost or redrawn.  Every model here is the simulator (in-process `sim:P`, or
`maker sim-server` behind real HTTP and litellm): the figures are simulated.

    python bench/reliability.py                  # default sizes, a few minutes on 2 cores
    python bench/reliability.py --kills 20 --disks 14
"""

from __future__ import annotations

import argparse
import os
import random
import runpy
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def sample_count(log: Path) -> int:
    from maker.log.steplog import open_log, read_table

    return read_table(open_log(log), ["step"], kind="sample").num_rows


def driver_kills(address: str, disks: int, kills: int, work: Path, rng: random.Random) -> dict:
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run
    from maker.log.steplog import decisions

    model = "sim:0.98,redflag=0.02,seed=11"
    reference = work / "ref.parquet"
    run(get_task("hanoi", disks=disks), [model], VotingConfig(k=3), log=reference, cluster=ClusterConfig(segment_steps=100))
    log = work / "kill.parquet"
    args = [sys.executable, "-m", "maker.cli.main", "run", "hanoi", "--disks", str(disks), "--model", model, "--k", "3",
            "--quiet", "--address", address, "--segment-steps", "100", "--log", str(log)]
    done = 0
    for _ in range(kills):
        extra = ["--resume"] if log.exists() else []
        proc = subprocess.Popen(args + extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0 + rng.random() * 3.0)
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done += 1
    subprocess.run(args + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    same = decisions(log) == decisions(reference)
    redrawn = sample_count(log) - sample_count(reference)
    return {"kind": "driver kill -9", "injected": done, "completed": int(same), "errors": 0 if same else 1,
            "lost_or_redrawn": redrawn}


def worker_kills(disks: int, kills: int, work: Path) -> dict:
    import psutil
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run, verify_log

    log = work / "worker.parquet"
    outcome: dict = {}

    def target() -> None:
        outcome["result"] = run(get_task("hanoi", disks=disks), ["sim:0.99,latency=0.001"], VotingConfig(k=2), log=log,
                                cluster=ClusterConfig(segment_steps=100))

    thread = threading.Thread(target=target)
    thread.start()
    done = 0
    seen: set[int] = set()
    while thread.is_alive() and done < kills:
        time.sleep(1.5)
        for proc in psutil.Process().children(recursive=True):
            try:
                if "ModelWorker" in " ".join(proc.cmdline()) and proc.pid not in seen:
                    seen.add(proc.pid)
                    proc.kill()
                    done += 1
                    break
            except psutil.Error:
                pass
    thread.join()
    result = outcome["result"]
    ok = result.solved and verify_log(log).solved
    return {"kind": "worker actor kill -9", "injected": done, "completed": int(ok), "errors": result.errors,
            "lost_or_redrawn": "whole segments resent"}


#: how the client logs each fault the sim-server injects (litellm reports resets and cut-off JSON as 500s)
LOGGED_AS = {"500": "server_error", "429": "rate_limited", "reset": "connection", "truncated": "bad_json", "hang": "timeout"}


def endpoint_faults(disks: int, work: Path, rate: float) -> list[dict]:
    """One run through litellm against a sim-server that faults at `rate`; without speculation
    no request is cancelled, so every injected fault must be in the log, kind by kind."""
    from maker.cluster import ModelSpec
    from maker.cluster.simulated.sim_server import SimServer, SimServerConfig
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run, verify_log

    log = work / "faults.parquet"
    config = SimServerConfig(p=0.99, latency=0.0, fault_rate=rate, hang_s=30, retry_after_s=0.2)
    with SimServer(config) as server:
        result = run(get_task("hanoi", disks=disks), [ModelSpec("openai/sim", api_base=server.url, timeout_s=1.0)],
                     VotingConfig(k=2), log=log, cluster=ClusterConfig(speculate=0))
        stats = server.stats()
    ok = int(result.solved and verify_log(log).solved)
    logged = result.faults_by_kind
    flagged = result.red_flags_by_reason
    rows = []
    for kind, count in sorted(stats["faults"].items()):
        if kind in LOGGED_AS:
            seen = f"retried; logged as {LOGGED_AS[kind]}: {logged.get(LOGGED_AS[kind], 0)}"
        elif kind == "empty":
            seen = f"red-flagged and redrawn (empty/malformed: {flagged.get('empty', 0) + flagged.get('malformed', 0)})"
        else:
            seen = f"red-flagged and redrawn (overlong: {flagged.get('overlong', 0)})"
        rows.append({"kind": f"endpoint {kind}", "injected": count, "completed": ok, "errors": result.errors,
                     "lost_or_redrawn": seen})
    gave_up = flagged.get("transport", 0)
    rows.append({"kind": "  (that one run)", "injected": stats["faults_total"], "completed": ok, "errors": result.errors,
                 "lost_or_redrawn": f"{stats['requests']} requests for {result.samples} samples; "
                                    f"{gave_up} samples gave up after retries (red flag transport)"})
    return rows


def node_removal(work: Path) -> dict:
    """A two-node Ray cluster (ray.cluster_utils, own RAY_TMPDIR) loses its second node mid-run."""
    script = ROOT / "tests" / "maker" / "runtime" / "test_multinode.py"
    namespace = runpy.run_path(str(script))
    report = namespace["on_two_nodes"]([("remove_node", None, work / "node.parquet")], 300).get("remove_node") or {}
    result = report.get("result") or {}
    ok = bool(result.get("solved")) and not report.get("hung")
    return {"kind": "Ray node removed", "injected": 1, "completed": int(ok), "errors": result.get("errors", "-"),
            "lost_or_redrawn": f"{result.get('extra', {}).get('workers_replaced', 0)} worker(s) replaced, "
                               "their segment resent"}


def hostile() -> dict:
    from maker.cluster import Sample
    from maker.tasks import get_task

    from maker.engine.red_flags import RedFlagPolicy, judge_sample

    corpus = runpy.run_path(str(ROOT / "tests" / "data" / "hostile_replies.py"))
    task = get_task("hanoi", disks=4)
    step = task.first_step()
    reasons = Counter(judge_sample(task, step, Sample(r, "m", tokens_out=len(r) // 4 + 1), RedFlagPolicy()).red_flag
                      for r in corpus["HOSTILE"])
    passed = reasons.pop(None, 0)
    return {"kind": "hostile replies", "injected": len(corpus["HOSTILE"]), "completed": 1, "errors": passed,
            "lost_or_redrawn": ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, default=14)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import ray
    from maker.cluster import ensure_ray

    ensure_ray(num_cpus=2)
    address = ray.get_runtime_context().gcs_address
    rng = random.Random(args.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows.append(driver_kills(address, args.disks, args.kills, work, rng))
        rows.append(worker_kills(max(10, args.disks - 2), max(1, args.kills // 3), work))
        rows.append(node_removal(work))
        rows.extend(endpoint_faults(7, work, args.fault_rate))
        rows.append(hostile())
    print("[simulated models] reliability table")
    print(f"{'fault kind':<24}{'injected':>9}{'completed':>10}{'errors':>8}  lost or redrawn")
    for r in rows:
        print(f"{r['kind']:<24}{r['injected']:>9}{r['completed']:>10}{r['errors']!s:>8}  {r['lost_or_redrawn']}")


if __name__ == "__main__":
    main()
