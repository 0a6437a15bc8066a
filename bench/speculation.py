"""Speculation against a real HTTP endpoint: steps/s for --speculate 0 against D > 0.

Starts `maker sim-server` (a separate process: the simulator behind OpenAI-compatible
HTTP, with a set latency and jitter), then runs Hanoi through the full stack -- Ray
worker, litellm, HTTP -- once per speculation depth, and prints steps/s, errors and the
wasted-sample fraction.  Results are simulated (the model is the sim-server).

What to expect on a pure chain: step t+1's premise is known only once some reply for
step t is in, so no depth goes faster than one step per round trip.  Speculation takes
the first of a step's k replies as the premise (an in-order run waits for the slowest)
and overlaps extra voting rounds with later steps; the gain grows with jitter and with
the share of steps that need extra rounds (lower p).  A drafted window ('32d': depth 32,
`--draft reference`) proposes premises before any reply, so D steps are voted at once;
then the client's CPU, not the round trip, bounds the rate.

    python bench/speculation.py                                   # 0.1 s and 0.5 s, 2,000 steps
    python bench/speculation.py --latencies 0.1 --steps 500 --depths 0,8,32d
    python bench/speculation.py --latencies 0.5 --steps 300 --jitter-frac 0.5
    python bench/speculation.py --latencies 0.1 --steps 300 --depths 0,4 --rounds 3   # on a busy machine

On a shared machine the client's CPU (~1 ms per request with the OpenAI-compatible client, ~10 ms
through litellm: bench/client_cpu.py) can bound the rate
before the round trip does; --rounds alternates the depths so load drift hits all alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def start_server(latency: float, jitter: float, p: float, seed: int, task: str = "hanoi") -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "maker.cli.main", "sim-server", "--port", "0", "--latency", str(latency),
           "--jitter", str(jitter), "--p", str(p), "--seed", str(seed), "--task", task, "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"sim-server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def stats(url: str) -> dict:
    import urllib.request

    with urllib.request.urlopen(url.rsplit("/v1", 1)[0] + "/stats", timeout=10) as r:
        return json.loads(r.read())


def one_run(url: str, depth: str, steps: int, args: argparse.Namespace, log: Path) -> dict:
    """One run at `depth`: 'D' (leader-driven window) or 'Dd' (window drafted from the reference)."""
    from maker.cluster import ModelSpec
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run

    task = get_task("hanoi", disks=args.disks)
    spec = ModelSpec("openai/sim", api_base=url, concurrency=args.concurrency, timeout_s=30.0)
    before = stats(url)
    result = run(task, [spec], VotingConfig(k=args.k), log=log, seed=args.seed, max_steps=steps,
                 cluster=ClusterConfig(speculate=int(depth.rstrip("d")), draft=depth.endswith("d"),
                                       workers=args.workers, segment_steps=args.segment_steps))
    after = stats(url)
    total = result.samples + result.extra["wasted_samples"]
    return {
        "depth": depth,
        "steps": result.steps,
        "errors": result.errors,
        "red_flags": result.red_flags,
        "samples": result.samples,
        "wasted": result.extra["wasted_samples"],
        "wasted_fraction": round(result.extra["wasted_samples"] / total, 4) if total else 0.0,
        "wall_s": result.wall_s,
        "requests": after["requests"] - before["requests"],
        "server_max_in_flight": after["max_in_flight"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latencies", default="0.1,0.5", help="server latencies in seconds (default 0.1,0.5)")
    parser.add_argument("--jitter-frac", type=float, default=0.5, help="jitter as a fraction of latency (default 0.5)")
    parser.add_argument("--depths", default="0,1,4,8,32,32d,64d",
                        help="speculation depths to try; a trailing d drafts the window from the task's reference "
                             "(--draft reference) (default 0,1,4,8,32,32d,64d)")
    parser.add_argument("--steps", type=int, default=2000, help="Hanoi steps per run (default 2000)")
    parser.add_argument("--disks", type=int, default=11, help="Hanoi disks (default 11: 2,047 steps)")
    parser.add_argument("--p", type=float, default=0.998, help="server accuracy (default 0.998)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=128, help="in-flight limit per model (default 128)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1,
                        help="Ray workers; with a drafted depth, later segments run on the others (default 1)")
    parser.add_argument("--segment-steps", type=int, default=2048, help="steps per worker call (default 2048)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every depth this often, alternating (default 1)")
    args = parser.parse_args()

    from maker.cluster import ensure_ray

    ensure_ray()
    tmp = Path(tempfile.mkdtemp(prefix="maker-spec-bench-"))
    report = {"simulated": True, "workers": args.workers, "segment_steps": args.segment_steps, "model": "maker sim-server via the OpenAI-compatible client (openai/sim)", "p": args.p, "k": args.k,
              "steps": args.steps, "concurrency": args.concurrency, "cpus": os.cpu_count(), "runs": []}
    try:
        for latency in [float(x) for x in args.latencies.split(",")]:
            jitter = latency * args.jitter_frac
            proc, url = start_server(latency, jitter, args.p, args.seed)
            try:
                # The fixed cost of a run (worker start, litellm import): one step, subtracted below.
                warm = one_run(url, "0", 1, args, tmp / f"warm-{latency}")
                rows = []
                depths = args.depths.split(",")
                for rnd in range(args.rounds):  # rounds alternate the depths, so load drift hits all alike
                    for depth in depths:
                        row = one_run(url, depth, args.steps, args, tmp / f"L{latency}-D{depth}-r{rnd}")
                        row.update(latency_s=latency, jitter_s=jitter, startup_s=warm["wall_s"], round=rnd)
                        row["steps_per_s"] = round(row["steps"] / max(1e-9, row["wall_s"] - warm["wall_s"]), 3)
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                rate = {d: statistics.median(r["steps_per_s"] for r in rows if r["depth"] == d) for d in depths}
                base = rate.get("0")
                best = max(rate, key=rate.__getitem__)
                wasted = sum(r["wasted"] for r in rows if r["depth"] == best)
                drawn = sum(r["wasted"] + r["samples"] for r in rows if r["depth"] == best)
                summary = {"latency_s": latency, "jitter_s": jitter, "median_steps_per_s": rate,
                           "steps_per_s_d0": base, "best_depth": best, "steps_per_s_best": rate[best],
                           "speedup": round(rate[best] / base, 3) if base else None,
                           "wasted_fraction_best": round(wasted / drawn, 4) if drawn else 0.0,
                           "round_trip_bound_steps_per_s": round(1 / latency, 2),
                           "errors": sum(r["errors"] for r in rows)}
                report["runs"].append({"summary": summary, "rows": rows})
                print(json.dumps(summary), flush=True)
            finally:
                proc.terminate()
                proc.wait(10)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("[simulated] " + json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
