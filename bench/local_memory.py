"""Resident memory of each embedded-model server over a long run, and samples/s, for the old
and the new prompt cache in one run.

Why: llama-cpp-python's RAM prompt cache counts a cached state as its llama.cpp state only
(~4 MB for a chase prompt) but keeps the logits of every prompt token beside it (~35 MB),
so a server's "256 MB" cache held ~2.5 GB and each server grew to 3-4 GB over a long run.
maker's cache (`cluster/local/_child.py`, ``bounded_cache``) keeps one logits row (the only
one a restore can read) and counts everything it keeps against a 128 MB bound.

Each setting runs `maker.run` on chase (the measured setting: k=3, 4 prompt variants,
T=0.5, completion prompts) for `--steps` steps on its own set of servers (one set at a
time), sampling every server's resident memory (VmRSS) every second.  Printed per setting:
each server's RSS at the end and its peak (VmHWM), and samples/s (samples drawn over the
wall time of the run after a one-step warm-up on the same servers).  A shared machine makes
samples/s noisy: compare the lines of one run.

    python bench/local_memory.py                             # 1,000 steps, 4 servers per setting
    python bench/local_memory.py --steps 150 --replicas 2    # smaller, for a loaded machine
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

#: (label, LocalServerConfig.cache): llama-cpp-python's cache as maker used it (256 MB as it counts), and maker's own
SETTINGS = (("old: llama RAM cache, 256 MB as it counts", "llama"), ("new: bounded cache, 128 MB of all it keeps", "bounded"))


def status_mb(pid: int, field: str) -> float | None:
    """A `/proc/PID/status` field (VmRSS, VmHWM) in MB; None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def measure(label: str, cache: str, steps: int, hops: int, replicas: int) -> dict:
    from maker.cluster import ModelSpec
    from maker.cluster.local.serving import LocalSettings, shared, shared_servers
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run

    task = get_task("chase", hops=hops)
    voting = VotingConfig(k=3, prompt_variants=4, temperature=0.5, prompt_style="completion")
    settings = LocalSettings(replicas=replicas, cache=cache)
    with shared([ModelSpec("local")], settings, keep=False) as lease:
        (group,) = shared_servers().values()
        pids = [s.pid for s in group]
        trace: dict[int, list[float]] = {pid: [] for pid in pids}
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                for pid in pids:
                    rss = status_mb(pid, "VmRSS")
                    if rss is not None:
                        trace[pid].append(rss)

        threading.Thread(target=sample, daemon=True).start()
        with tempfile.TemporaryDirectory() as tmp:
            run(task, lease.specs, voting, log=Path(tmp) / "warm", max_steps=1, cluster=ClusterConfig())
            started = time.perf_counter()
            result = run(task, lease.specs, voting, log=Path(tmp) / "run", max_steps=steps, cluster=ClusterConfig())
            wall = time.perf_counter() - started
        done.set()
        end = {pid: status_mb(pid, "VmRSS") for pid in pids}
        peak = {pid: status_mb(pid, "VmHWM") for pid in pids}
    drawn = result.samples + int(result.extra.get("wasted_samples", 0) or 0)
    return {
        "setting": label,
        "steps": result.steps,
        "errors": result.errors,
        "samples": drawn,
        "wall_s": round(wall, 1),
        "samples_per_s": round(drawn / wall, 3),
        "rss_mb": [round(end[p] or 0) for p in pids],
        "peak_rss_mb": [round(peak[p] or 0) for p in pids],
        "rss_mb_over_the_run": [[round(x) for x in trace[p][:: max(1, len(trace[p]) // 10)]] for p in pids],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--hops", type=int, default=1000, help="the chase task's length (steps run: --steps)")
    ap.add_argument("--replicas", type=int, default=4, help="servers per setting (maker's default: 4)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.steps > args.hops:
        ap.error("--steps must not exceed --hops")
    rows = []
    for label, cache in SETTINGS:
        row = measure(label, cache, args.steps, args.hops, args.replicas)
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(f"{label}: {row['steps']} steps, {row['samples']} samples in {row['wall_s']} s = "
                  f"{row['samples_per_s']} samples/s, errors {row['errors']}; RSS per server at the end "
                  f"{row['rss_mb']} MB, peak {row['peak_rss_mb']} MB; over the run {row['rss_mb_over_the_run']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
