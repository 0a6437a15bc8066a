"""The million-step benchmark: 20-disk Hanoi (1,048,575 steps), sim:0.998, k = 3,
through Ray and the full step log.  Prints wall time, peak memory, samples per step
and log size.  Results come from the simulator and are labelled so.

    python bench/million.py                 # 20 disks
    python bench/million.py --disks 16      # a quicker look
    python bench/million.py --workers 2 --draft   # segments voted in parallel on drafted premises
    python bench/million.py --time-segment 30000  # the worker's segment loop alone, in this process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


class TreeMemory:
    """Peak resident memory of this process and every process under it (Ray's too)."""

    def __init__(self) -> None:
        import psutil

        self.root = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        import psutil

        while not self._stop.wait(0.5):
            total = 0
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def vectorised_baseline(steps: int, k: int, p: float) -> dict:
    """The same voting (first-to-ahead-by-k, p per vote) as one numpy simulation: no
    prompts, no parsing, no Ray, no log -- the floor the full stack is measured against."""
    import numpy as np
    from maker.voting.montecarlo import simulate_votes

    started = time.perf_counter()
    rate, votes = simulate_votes(p, k, trials=steps, rng=np.random.default_rng(0))
    return {"vectorised_voting_s": round(time.perf_counter() - started, 3), "vectorised_votes_per_step": round(votes, 3),
            "vectorised_step_success": rate}


def profile_segments(task, model: str, k: int, steps: int, profile: bool = True) -> None:
    """cProfile of the worker's segment loop (the bottleneck: it runs the model, the red
    flags, the parser and the ballot for every sample), in this process; with
    `profile=False` only its wall and CPU time (no profiler overhead)."""
    import asyncio
    import cProfile
    import pstats

    from maker.cluster import ModelSpec
    from maker.cluster.worker import ModelWorker

    from maker.config import VotingConfig
    from maker.engine.red_flags import RedFlagPolicy
    from maker.runtime.chain.loop import run_segment
    from maker.runtime.chain.segment import SegmentJob

    worker = ModelWorker(task.spec, [ModelSpec(model)])
    voting = VotingConfig(k=k)
    job = SegmentJob(task.first_step(), steps, 1e9, voting, RedFlagPolicy(), (model,), 0, task.total_steps - 1)
    if not profile:
        started, cpu = time.perf_counter(), time.process_time()
        result = asyncio.run(run_segment(worker, job))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        steps = len(result.decisions["step"])
        print(json.dumps({"simulated": True, "segment_loop_steps": steps, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                          "us_per_step": round(1e6 * wall / steps)}))
        return
    profiler = cProfile.Profile()
    started = time.perf_counter()
    result = profiler.runcall(lambda: asyncio.run(run_segment(worker, job)))
    wall = time.perf_counter() - started
    steps = len(result.decisions["step"])
    print(f"\nworker segment loop under cProfile: {steps:,} steps in {wall:.1f} s ({1e6 * wall / steps:.0f} us/step "
          "with the profiler's overhead); top functions by own time:")
    pstats.Stats(profiler).sort_stats("tottime").print_stats(14)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--disks", type=int, default=20)
    parser.add_argument("--model", default="sim:0.998")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--segment-steps", type=int, default=4096)
    parser.add_argument("--workers", type=int, default=1, help="Ray worker actors (default 1)")
    parser.add_argument("--draft", action="store_true",
                        help="--draft reference: start later segments on other workers on the ground-truth premise")
    parser.add_argument("--profile-steps", type=int, default=0, metavar="N",
                        help="also profile N steps of the worker's segment loop in this process (cProfile) "
                             "and print where its time goes")
    parser.add_argument("--time-segment", type=int, default=0, metavar="N",
                        help="only time N steps of the worker's segment loop in this process (no Ray, no log, "
                             "no profiler) and exit: the quick, quiet figure for comparing engine changes")
    parser.add_argument("--keep-log", help="write the log here and keep it (default: a temp folder, removed)")
    args = parser.parse_args()

    from maker.cluster import ensure_ray
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run
    from maker.runtime.progress import Progress

    if args.time_segment:
        profile_segments(get_task("hanoi", disks=args.disks), args.model, args.k, args.time_segment, profile=False)
        return
    t0 = time.perf_counter()
    ensure_ray()
    ray_start = time.perf_counter() - t0
    tmp = None
    if args.keep_log:
        log = Path(args.keep_log)
    else:
        tmp = tempfile.mkdtemp(prefix="maker-million-")
        log = Path(tmp) / "h.parquet"
    task = get_task("hanoi", disks=args.disks)
    with TreeMemory() as memory:
        result = run(
            task,
            [args.model],
            VotingConfig(k=args.k),
            log=log,
            cluster=ClusterConfig(segment_steps=args.segment_steps, segment_seconds=5.0, workers=args.workers,
                                  draft=args.draft),
            progress=Progress(task.total_steps, label="[simulated] "),
        )
    size = sum(p.stat().st_size for p in log.glob("*.parquet"))
    figures = {
        "simulated": True,
        "task": result.task,
        "steps": result.steps,
        "solved": result.solved,
        "errors": result.errors,
        "k": result.k,
        "workers": args.workers,
        "draft": args.draft,
        "drafted_segments_and_lost": result.extra.get("drafted_segments"),
        "samples": result.samples,
        "samples_per_step": result.samples_per_step,
        "run_wall_s": result.wall_s,
        "ray_start_s": round(ray_start, 1),
        "steps_per_s": round(result.steps / result.wall_s),
        "samples_per_s": round(result.samples / result.wall_s),
        "peak_rss_tree_mb": round(memory.peak / 2**20),
        "log_mb": round(size / 2**20, 1),
    }
    figures.update(vectorised_baseline(task.total_steps, args.k, 0.998))
    figures["full_stack_over_vectorised"] = round(result.wall_s / figures["vectorised_voting_s"])
    print(json.dumps(figures, indent=2))
    if args.profile_steps:
        profile_segments(task, args.model, args.k, args.profile_steps)
    if tmp:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
