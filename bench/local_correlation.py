"""Do prompt variants decorrelate the embedded local model's errors?  One variant against several.

For each variant count it runs `maker run chase` on the real local model (SmolLM2-135M
behind llama.cpp, no simulator) with the same seed, k and temperatures, and prints what
the live guard measured from the run's own votes: p-hat with its 95% interval, the
collision ratio (steps whose first two valid votes are both wrong, against the (1-p)^2
independence predicts), plus wrong decisions (chase knows its ground truth) and samples
per step.  A collision ratio near 1 means the errors are about as independent as voting
assumes; well above 1 means they come together, which variants are meant to break.

    python bench/local_correlation.py                     # 300 hops, variants 1 and 4
    python bench/local_correlation.py --hops 200 --variants 1,2,4 --k 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def one_run(variants: int, args: argparse.Namespace, log: Path) -> dict:
    command = [
        sys.executable, "-m", "maker.cli", "run", "chase", "--hops", str(args.hops), "--model", args.model,
        "--k", str(args.k), "--prompt-variants", str(variants), "--temperature", str(args.temperature),
        "--seed", str(args.seed), "--json", "--quiet", "--log", str(log),
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    if not done.stdout.strip():
        raise SystemExit(f"maker run failed (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["bench_wall_s"] = time.perf_counter() - started
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="local")
    parser.add_argument("--hops", type=int, default=300)
    parser.add_argument("--variants", default="1,4", help="comma-separated variant counts to compare")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="also print each run's guard summary as JSON")
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variants in (int(v) for v in args.variants.split(",")):
            result = one_run(variants, args, Path(tmp) / f"v{variants}")
            guard = result["extra"]["guard"]
            if args.json:
                print(json.dumps({"variants": variants, **guard, "errors": result["errors"]}))
            rows.append((variants, result, guard))
    label = "[simulated model] " if any(r["simulated"] for _, r, _ in rows) else ""
    print(f"\n{label}chase, {args.hops} hops, --model {args.model}, k = {args.k}, temperature {args.temperature} "
          f"(first sample 0), seed {args.seed}")
    print(f"{'variants':>8}  {'p-hat (95% CI)':>24}  {'collisions / steps with 2':>26}  {'collision ratio':>15}  "
          f"{'wrong decisions':>15}  {'samples/step':>12}  {'wall s':>6}")
    for variants, result, g in rows:
        interval = f"{g['p_hat']:.4f} ({g['p_low']:.4f}-{g['p_high']:.4f})"
        pairs = f"{g['collisions']} / {g['steps_with_two']}"
        print(f"{variants:>8}  {interval:>24}  {pairs:>26}  "
              f"{g['collision_ratio']:>15.2f}  {result['errors']:>15}  {result['samples_per_step']:>12.3f}  "
              f"{result['wall_s']:>6.0f}")


if __name__ == "__main__":
    main()
