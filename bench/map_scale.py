"""`maker map` at scale: N records on `sim:0.99` with k = 3 -- wall time and peak memory.

The goal (issue #24): 1,000,000 rows in at most 10 minutes and 2 GB peak resident memory
on 2 cores, rows streamed (read, voted, written a chunk at a time).  This script writes an
input table of N product records (Parquet, or CSV with --csv), runs

    maker map INPUT --prompt "Copy the weight in grams.\\nProduct: {description}\\nweight:" \\
        --key integer --truth weight --id id --model sim:0.99 --k 3 --out OUT --log LOG

as a child process, samples the resident memory of that process and of every process it
starts (Ray's GCS, raylet and workers included) twice a second, and prints the figures:
wall time, rows/s, peak RSS of the maker process alone and of the whole process tree, the
output's row count and the log's size.  Every figure is simulated (`sim:0.99`).

    python bench/map_scale.py --rows 1000000          # the issue's goal
    python bench/map_scale.py --rows 100000 --verify  # smaller, then maker replay --verify on the log
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def write_input(path: Path, rows: int, csv: bool) -> None:
    """N records (id, description, weight), written a chunk at a time."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    names = np.array(["rake", "kettle", "lamp", "chair", "spade", "drill", "mug", "vase"])
    schema = pa.schema([("id", pa.string()), ("description", pa.string()), ("weight", pa.string())])
    writer = pcsv.CSVWriter(path, schema) if csv else pq.ParquetWriter(path, schema)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        grams = rng.integers(10, 20_000, n)
        kinds = names[rng.integers(0, len(names), n)]
        ids = [f"R{start + i:07d}" for i in range(n)]
        desc = [f"Lumo {k}, {g} g" for k, g in zip(kinds, grams)]
        writer.write_table(pa.table({"id": ids, "description": desc, "weight": [str(g) for g in grams]}, schema=schema))
    writer.close()


def tree_rss(proc: psutil.Process, cpu: dict[int, float]) -> tuple[int, int]:  # noqa: F821
    """(RSS of `proc`, RSS of `proc` and every descendant), bytes; each process's CPU seconds
    so far go into `cpu` (pid -> user + system)."""
    import psutil

    try:
        own = proc.memory_info().rss
        kids = proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    total = own
    for p in (proc, *kids):
        try:
            if p is not proc:
                total += p.memory_info().rss
            times = p.cpu_times()
            cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass
    return own, total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--model", default="sim:0.99")
    ap.add_argument("--csv", action="store_true", help="CSV input instead of Parquet")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--verify", action="store_true", help="then run maker replay --verify on the log")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep the files (default: a temp folder)")
    args = ap.parse_args()
    import psutil

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="map_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / ("rows.csv" if args.csv else "rows.parquet")
    if not src.exists():
        t = time.perf_counter()
        write_input(src, args.rows, args.csv)
        print(f"input: {args.rows:,} rows -> {src} ({src.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - t:.1f}s)")
    out, log = work / "out.parquet", work / "log.parquet"
    for stale in (out,):
        stale.unlink(missing_ok=True)
    if log.exists():
        import shutil

        shutil.rmtree(log)
    maker = Path(sys.executable).parent / "maker"
    cmd = [str(maker), "map", str(src), "--prompt", "Copy the weight in grams.\\nProduct: {description}\\nweight:",
           "--key", "integer", "--truth", "weight", "--id", "id", "--model", args.model, "--k", str(args.k),
           "--workers", str(args.workers), "--out", str(out), "--log", str(log)]
    print("$ " + " ".join(f"'{c}'" if " " in c or "{" in c else c for c in cmd), flush=True)
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    child = subprocess.Popen(cmd, env=env)
    proc = psutil.Process(child.pid)
    peak_own = peak_tree = 0
    cpu: dict[int, float] = {}
    load = os.getloadavg()[0]
    while child.poll() is None:
        own, total = tree_rss(proc, cpu)
        peak_own, peak_tree = max(peak_own, own), max(peak_tree, total)
        time.sleep(0.5)
    wall = time.perf_counter() - started
    rate = f"{args.rows / wall:,.0f} rows/s" if child.returncode == 0 else "FAILED (see above)"
    print(f"\nexit {child.returncode}  rows {args.rows:,}  wall {wall:.1f}s  {rate}  "
          f"cores {os.cpu_count()}  [simulated: {args.model}, k={args.k}]")
    print(f"peak RSS: maker process {peak_own / 2**30:.2f} GiB, with Ray's processes {peak_tree / 2**30:.2f} GiB")
    print(f"CPU: maker process {cpu.get(child.pid, 0):.0f}s, all processes {sum(cpu.values()):.0f}s "
          f"(sampled; load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end: other jobs share the cores)")
    if out.exists():
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(out).metadata
        print(f"output {out}: {meta.num_rows:,} rows, {out.stat().st_size / 1e6:.1f} MB; "
              f"log {sum(p.stat().st_size for p in log.glob('part-*')) / 1e6:.1f} MB in {len(list(log.glob('part-*')))} parts")
    if args.verify:
        t = time.perf_counter()
        subprocess.run([str(maker), "replay", str(log), "--verify"], env=env)
        print(f"verify {time.perf_counter() - t:.1f}s")
    return child.returncode


if __name__ == "__main__":
    raise SystemExit(main())
