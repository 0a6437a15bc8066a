"""Θ(s ln s): measured samples per step of real simulated runs against the closed form.

For Hanoi with 10..18 disks (s = 2^10 - 1 ... 2^18 - 1 steps) at a fixed accuracy p and
target t, each run uses k = k_min(p, s, t), goes through Ray and the full runner (no step
log), and the table compares the measured samples per step with `expected_samples(p, k)`
and the run's total samples with s ln s.  k_min grows like ln s, so total / (s ln s)
should stay within a constant band while s grows 256-fold.  The closed form is the
binary worst case (one wrong answer); the simulator spreads its errors over the legal
wrong moves, so measured samples per step sit a little below it.  Results come from the
simulator and are labelled so.

    python bench/scaling.py                       # 10..15 disks: about a minute on 2 cores
    python bench/scaling.py --max-disks 18        # the full 2^10 .. 2^18 sweep
    python bench/scaling.py --p 0.99 --target 0.99 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--p", type=float, default=0.9, help="simulated per-sample accuracy (default 0.9)")
    parser.add_argument("--target", type=float, default=0.95, help="whole-run success target (default 0.95)")
    parser.add_argument("--min-disks", type=int, default=10)
    parser.add_argument("--max-disks", type=int, default=15, help="largest run: 2^N - 1 steps (default 15; 18 = full)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--address", help="join a running Ray cluster")
    parser.add_argument("--json", action="store_true", help="one JSON object per run instead of the table")
    args = parser.parse_args()

    import maker.voting as voting
    from maker.cluster import ensure_ray
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run

    ensure_ray(args.address)
    rows = []
    if not args.json:
        print(f"[simulated] sim:{args.p}, target {args.target}, k = k_min(p, s, t); Hanoi through Ray, no step log")
        print(
            f"{'disks':>5} {'steps s':>9} {'k':>3} {'samples/step':>12} {'E[n] pred':>10} {'meas/pred':>9} "
            f"{'total':>11} {'pred s*E[n]':>11} {'total/(s ln s)':>14} {'errors':>6} {'wall s':>7} {'steps/s':>8}"
        )
    for disks in range(args.min_disks, args.max_disks + 1):
        task = get_task("hanoi", disks=disks)
        s = task.total_steps
        k = voting.k_min(args.p, s, args.target)
        predicted = voting.expected_samples(args.p, k)
        started = time.perf_counter()
        result = run(
            task,
            [f"sim:{args.p},seed={disks}"],
            VotingConfig(k=k, max_samples_per_step=max(100, 20 * k)),
            log=None,
            seed=disks,
            cluster=ClusterConfig(workers=args.workers, address=args.address),
        )
        wall = time.perf_counter() - started
        per_step = result.samples / result.steps
        row = {
            "disks": disks,
            "steps": s,
            "k": k,
            "samples_per_step": per_step,
            "predicted_per_step": predicted,
            "samples": result.samples,
            "predicted_samples": s * predicted,
            "per_s_ln_s": result.samples / (s * math.log(s)),
            "errors": result.errors,
            "solved": result.solved,
            "wall_s": round(wall, 2),
            "simulated": True,
        }
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
        else:
            print(
                f"{disks:>5} {s:>9,} {k:>3} {per_step:>12.4f} {predicted:>10.4f} {per_step / predicted:>9.4f} "
                f"{result.samples:>11,} {s * predicted:>11,.0f} {row['per_s_ln_s']:>14.4f} {result.errors:>6} "
                f"{wall:>7.1f} {s / wall:>8,.0f}",
                flush=True,
            )
    if not args.json and len(rows) > 1:
        band = [r["per_s_ln_s"] for r in rows]
        growth = rows[-1]["steps"] / rows[0]["steps"]
        print(
            f"s grew {growth:,.0f}x; total samples grew {rows[-1]['samples'] / rows[0]['samples']:,.0f}x; "
            f"total/(s ln s) stayed in [{min(band):.3f}, {max(band):.3f}] (ratio {max(band) / min(band):.2f})"
        )


if __name__ == "__main__":
    main()
