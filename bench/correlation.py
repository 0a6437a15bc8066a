"""Correlated errors on the simulator: what red flags, prompt variants and the adaptive
guard each buy.  SIMULATED: every reply comes from `sim:`, not from an LLM.

The model has correlated hard steps: on a fraction ``hard`` of the steps its accuracy is
``hard_p`` and every error names the same wrong answer; a fraction ``confused`` of its
errors show symptoms that red flags catch (overlong rambling, a fenced answer); and on
hard steps only prompt variant 0 misleads it (``variant_bias=1``).  For each of the 8
cells -- red flags off/on x prompt variants 1/N x adaptive k off/on -- it runs Hanoi
at k = 3 over several seeds (seed s sets both the run seed and the simulator's seed,
so every cell sees the same hard steps) and prints: runs with any wrong decision,
samples per step, and the k the runs ended at.

By default the runner's segments run in this process (`LocalPool` stands in for the Ray
WorkerPool: same runner, same segment code, no actor start-up per run, which on a
shared 2-core machine costs more than the run itself); ``--ray`` goes through Ray.

    python bench/correlation.py                       # 14 disks (16,383 steps), 20 seeds
    python bench/correlation.py --disks 11 --seeds 20 # a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

DEFAULT_MODEL = "sim:0.998,hard=0.1,hard_p=0.8,confused=0.5,variant_bias=1"


class LocalPool:
    """The WorkerPool interface, run in-process: one ModelWorker, batches run on demand."""

    def __init__(self, task_spec, models, workers=1, address=None, **_):
        from maker.cluster.worker import ModelWorker

        self.worker = ModelWorker(task_spec, models)
        self.replaced = 0

    def submit(self, fn, payload):
        from maker.cluster.worker import Pending

        return Pending(None, 0, fn, payload)

    def get(self, pending):
        import asyncio

        return asyncio.run(self.worker.call(pending.fn, pending.payload))

    def node_ids(self):
        return ["local"]

    def close(self):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, default=14)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"simulator string, without seed (default {DEFAULT_MODEL})")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--k-max", type=int, default=12)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--segment-steps", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="also print every run as one JSON line")
    parser.add_argument("--ray", action="store_true", help="run segments through Ray workers instead of in-process")
    args = parser.parse_args()

    import ray
    from maker.cluster import ensure_ray
    from maker.tasks import get_task

    import maker.runtime.driver
    from maker.config import ClusterConfig, GuardConfig, VotingConfig
    from maker.engine.red_flags import RedFlagPolicy
    from maker.runtime.driver import run

    if args.ray:
        ensure_ray(num_cpus=2)
    else:
        maker.runtime.driver.WorkerPool = LocalPool  # type: ignore[misc]
    task = get_task("hanoi", disks=args.disks)
    cluster = ClusterConfig(segment_steps=args.segment_steps)
    cells = [(rf, var, ad) for rf in (False, True) for var in (1, args.variants) for ad in (False, True)]
    rows = []
    started = time.perf_counter()
    for red_flags, variants, adaptive in cells:
        policy = RedFlagPolicy(enabled=red_flags)
        voting = VotingConfig(k=args.k, prompt_variants=variants)
        guard = GuardConfig(adaptive=adaptive, k_max=args.k_max)
        failed = samples = steps = 0
        ks: list[int] = []
        t0 = time.perf_counter()
        for seed in range(args.seeds):
            model = f"{args.model},seed={seed}"
            result = run(task, [model], voting, seed=seed, cluster=cluster, policy=policy, guard=guard)
            failed += result.errors > 0
            samples += result.samples
            steps += result.steps
            ks.append(result.extra["guard"]["k"])
            if args.json:
                print(json.dumps({"red_flags": red_flags, "variants": variants, "adaptive": adaptive, "seed": seed,
                                  "errors": result.errors, "samples_per_step": result.samples_per_step,
                                  "k_final": ks[-1], "simulated": True}))
        rows.append((red_flags, variants, adaptive, failed, samples / max(1, steps), sum(ks) / len(ks),
                     max(ks), time.perf_counter() - t0))
    if args.ray:
        ray.shutdown()

    print(f"\nSIMULATED ({args.model}, seed=s per run): Hanoi {args.disks} disks ({task.total_steps:,} steps), "
          f"k = {args.k}, {args.seeds} seeds per cell, --k-max {args.k_max}, --segment-steps {args.segment_steps}")
    print(f"{'red flags':>9}  {'variants':>8}  {'adaptive k':>10}  {'runs with an error':>18}  "
          f"{'samples/step':>12}  {'final k mean (max)':>18}  {'wall s':>6}")
    for red_flags, variants, adaptive, failed, per_step, k_mean, k_top, wall in rows:
        print(f"{'on' if red_flags else 'off':>9}  {variants:>8}  {'on' if adaptive else 'off':>10}  "
              f"{f'{failed}/{args.seeds}':>18}  {per_step:>12.3f}  {f'{k_mean:.1f} ({k_top})':>18}  {wall:>6.0f}")
    print(f"total wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
