"""Short jobs one after another in one Python process: idle Ray workers reused or not.

Each `maker.run` (and each `maker.vote(..., ray=True)`) starts a `WorkerPool`.  Without
reuse every pool starts fresh actors -- a process each: Python, `import ray`, maker's
modules.  With it (`maker.cluster.warm`, the default) the next pool takes the idle ones.
Both variants run in this one process, in turn, on one local Ray: `--jobs` short runs
(Hanoi, 3 disks, simulated model `sim:0.99`, one worker) and `--jobs` voted calls against a
`maker sim-server` child (0.05 s latency, k = 3).  Figures: seconds per job (wall), and CPU
seconds per job of the whole machine (from /proc/stat: the actors are other processes), so
run it on an otherwise idle machine.  Every model here is simulated.

    python bench/warm_workers.py              # 20 jobs of each kind per variant
    python bench/warm_workers.py --jobs 50 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vote import prompts, start_server  # noqa: E402  (bench/vote.py: the sim-server child, Hanoi prompts)


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has spent (user + system + nice), from /proc/stat."""
    fields = [int(v) for v in open("/proc/stat").readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def measure(kind: str, jobs: int, url: str, reuse: bool, folder: Path, name: str) -> dict[str, float]:
    from maker.cluster import ModelSpec, warm
    from maker.tasks import get_task

    import maker
    from maker import VotingConfig

    for actor in warm.clear():  # each variant starts with no idle actor
        import ray

        ray.kill(actor)
    limit = warm.LIMIT
    warm.LIMIT = limit if reuse else 0
    items = prompts(jobs)
    wall, cpu = time.perf_counter(), machine_cpu_s()
    try:
        for i in range(jobs):
            if kind == "run":
                result = maker.run(get_task("hanoi", disks=3), ["sim:0.99"], VotingConfig(k=2),
                                   log=folder / f"{name}-{i}")
                assert result.solved
            else:
                maker.vote(items[i], [ModelSpec("openai/sim", api_base=url)], k=3, ray=True)
    finally:
        warm.LIMIT = limit
    return {"s_per_job": (time.perf_counter() - wall) / jobs, "cpu_s_per_job": (machine_cpu_s() - cpu) / jobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="jobs of each kind per variant (default 20)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    from maker.cluster import ensure_ray

    ensure_ray()
    server, url = start_server(0.05, 0.998)
    figures: dict[str, dict[str, float]] = {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            measure("run", 2, url, True, Path(folder), "warm-up")  # imports, and Ray's first actor
            for kind in ("run", "vote"):
                for reuse in (False, True):
                    name = f"{kind} {'reused' if reuse else 'fresh'}"
                    figures[name] = measure(kind, args.jobs, url, reuse, Path(folder), name.replace(" ", "-"))
    finally:
        server.terminate()
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"{args.jobs} jobs of each kind, one worker each (simulated models)")
    print(f"{'variant':<14} {'s/job':>8} {'CPU s/job':>10}")
    for name, f in figures.items():
        print(f"{name:<14} {f['s_per_job']:>8.3f} {f['cpu_s_per_job']:>10.3f}")


if __name__ == "__main__":
    main()
