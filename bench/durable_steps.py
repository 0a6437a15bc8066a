"""How soon a plan's decided steps reach the step log, whatever the batch size.

Runs `maker run --task examples/records.py:records` in a subprocess on a slow simulated
model (every call takes `latency` + up to `jitter` seconds), with one worker, so the plan's
N voted steps go out in 2 batches of N/2.  It polls the log folder and prints, at each time a
new part appeared, how many decided steps were on disk; then the lag figures: when the first
decided step was on disk, and the longest gap between two moments the count grew, against
how long the run took.  Before streaming, nothing was on disk until a whole batch returned.
Results are simulated (the model is the simulator); only the timing of the writes is measured.

    python bench/durable_steps.py                        # 400 records, sim latency 0.2 s + up to 8 s
    python bench/durable_steps.py --n 1000 --jitter 20
    /other/checkout/.venv/bin/python bench/durable_steps.py --examples /other/checkout/examples   # a baseline
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
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def _on_disk(log: Path) -> int:
    from maker.log.steplog import decisions

    try:
        return len(decisions(log))
    except Exception:  # no part yet, or one being renamed into place as we look
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400, help="records (voted steps)")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--jitter", type=float, default=8.0)
    ap.add_argument("--examples", default=str(ROOT / "examples"),
                    help="the examples folder of the maker the run uses (another checkout's, for a baseline)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "bench.parquet"
        model = f"sim:0.99,latency={args.latency},jitter={args.jitter}"
        cmd = [sys.executable, "-m", "maker.cli.main", "run", "--task", f"{args.examples}/records.py:records",
               "--n", str(args.n), "--model", model, "--k", "2", "--log", str(log), "--quiet"]
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp)
        seen: list[tuple[float, int]] = []
        while proc.poll() is None:
            count = _on_disk(log)
            if not seen or count != seen[-1][1]:
                seen.append((time.monotonic() - started, count))
            time.sleep(0.1)
        wall = time.monotonic() - started
        final = _on_disk(log)
        if proc.returncode not in (0, 1):
            raise SystemExit(f"the run failed: {proc.stderr.read()[-500:] if proc.stderr else ''}")
    growth = [(t, c) for t, c in seen if c > 0]
    print(f"records plan, {args.n} voted steps + 1 tool step, model {model} [simulated model], 1 worker")
    for t, c in growth:
        print(f"  {t:7.1f} s  {c:6,d} decided steps on disk")
    if growth:
        gaps = [b[0] - a[0] for a, b in zip(growth, growth[1:])]
        print(f"first decided step on disk after {growth[0][0]:.1f} s; longest gap between writes "
              f"{max(gaps, default=0.0):.1f} s; run (incl. Ray start) {wall:.1f} s; {final:,} steps at the end")


if __name__ == "__main__":
    main()
