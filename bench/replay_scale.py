"""Wall time and peak memory of `maker replay --verify`, `maker replay --k` and `maker report`
on one step log -- the figures for the closing note of the replay issue.

Each command runs in a fresh Python process, so each peak (ru_maxrss) is its own; CPU
time (user + system) is printed beside the wall time, as a steadier figure on a shared
machine (the work is single-threaded apart from Arrow's Parquet decoding).  The
process's resident size right after importing maker is printed beside it, so the part
that grows with the log is visible.  Logs built here use the simulator and are labelled so.

    python bench/replay_scale.py --disks 16                       # build a 65,535-step log, measure
    python bench/replay_scale.py --disks 20 --keep /data/h20.parquet   # the 1,048,575-step log, kept
    python bench/replay_scale.py --log runs/h20.parquet           # measure an existing log
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

#: Runs inside the child: import maker, note the RSS, run one command, print the figures.
CHILD = """
import json, os, resource, sys, time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, {root!r})
import maker.cli.main, maker.audit.verify, maker.audit.redecide, maker.report.summary, maker.report.plots
def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
def cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
base = rss_mb()
sys.stdout = open(os.devnull, "w")
t, c = time.perf_counter(), cpu_s()
code = maker.cli.main.main({args!r})
wall, cpu = time.perf_counter() - t, cpu_s() - c
sys.stdout = sys.__stdout__
print(json.dumps({{"code": code, "wall_s": wall, "cpu_s": cpu, "peak_mb": rss_mb(), "after_import_mb": base}}))
"""


def measure(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), args=args)],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SystemExit(f"{' '.join(args)} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build(disks: int, path: Path, address: str) -> float:
    started = time.perf_counter()
    cmd = [sys.executable, "-m", "maker.cli.main", "run", "hanoi", "--disks", str(disks), "--model", "sim:0.998",
           "--k", "3", "--log", str(path), "--quiet", "--address", address]
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    return time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--disks", type=int, help="build a log of a DISKS-disk Hanoi run (sim:0.998, k = 3)")
    g.add_argument("--log", type=Path, help="measure this existing step log")
    p.add_argument("--keep", type=Path, help="where to keep the built log (default: a temporary folder)")
    p.add_argument("--address", default="local",
                   help="Ray address for building the log (default: 'local', a fresh local Ray, so a stale "
                   "cluster recorded in /tmp/ray is not joined)")
    p.add_argument("--k", type=int, default=2, help="margin for the re-decide measurement (default 2)")
    a = p.parse_args()

    tmp = None
    if a.log is None:
        tmp = Path(tempfile.mkdtemp(prefix="replay-scale-"))
        log = a.keep or tmp / f"h{a.disks}.parquet"
        print(f"building a {2 ** a.disks - 1:,}-step log with the simulator (sim:0.998, k = 3) at {log} ...")
        print(f"  built in {build(a.disks, log, a.address):.1f} s")
    else:
        log = a.log
    try:
        from_parts = sorted(log.glob("part-*.parquet")) if log.is_dir() else [log]
        size = sum(f.stat().st_size for f in from_parts)
        out = (tmp or Path(tempfile.mkdtemp(prefix="replay-scale-"))) / "report"
        runs = {
            "replay --verify": ["replay", str(log), "--verify"],
            f"replay --k {a.k}": ["replay", str(log), "--k", str(a.k)],
            "report": ["report", str(log), "--out", str(out)],
        }
        sys.path.insert(0, str(ROOT))
        from maker.log.steplog import open_log

        info = open_log(log)
        steps = int(info.run.get("total_steps") or 0)
        label = " [simulated model]" if info.run.get("simulated") else ""
        print(f"log {log}: {len(from_parts)} parts, {size / 2**20:.1f} MiB, task {info.run.get('task')} "
              f"{info.run.get('task_options')}, {steps:,} planned steps{label}")
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
        for name, args in runs.items():
            r = measure(args)
            per = f"{1e6 * r['cpu_s'] / steps:6.1f} us cpu/step" if steps else ""
            print(f"{name:<16} exit {r['code']}  wall {r['wall_s']:7.2f} s  cpu {r['cpu_s']:7.2f} s  {per}  "
                  f"peak RSS {r['peak_mb']:7.1f} MiB "
                  f"(after imports {r['after_import_mb']:.1f} MiB)")
    finally:
        if tmp is not None and a.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
