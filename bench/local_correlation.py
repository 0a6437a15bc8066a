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
        sys.executable, "-m", "maker.cli.main", "run", "chase", "--hops", str(args.hops), "--model", args.model,
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


def grade(log: Path) -> dict:
    """Grade every valid vote against the task's ground truth *for the premise it was drawn
    on* (chase knows the right hop from any node): the true per-sample accuracy and the
    true collision ratio, which the guard -- blind to a wrong answer that wins -- cannot see."""
    import pandas as pd
    from maker.tasks import get_task

    from maker.log.steplog import open_log

    info = open_log(log)
    task = get_task(info.run["task"], **info.run["task_options"])
    frame = pd.read_parquet(log)
    samples = frame[(frame.kind == "sample") & ~frame.wasted.fillna(False).astype(bool)]
    valid = samples[samples.red_flag.isna() & samples.answer.notna()].sort_values(["step", "sample"])
    by_step = {step: list(group.answer) for step, group in valid.groupby("step")}
    decisions = frame[frame.kind == "decision"].sort_values("step")
    premise = task.first_step()
    right = total = pairs = both_wrong = 0
    for step, decided in zip(decisions.step, decisions.answer):
        truth = task.judge(premise, task.reference_reply(premise)).key
        votes = by_step.get(step, [])
        right += sum(v == truth for v in votes)
        total += len(votes)
        if len(votes) >= 2:
            pairs += 1
            both_wrong += votes[0] != truth and votes[1] != truth
        premise = task.step_after(step, decided)
    p = right / total if total else float("nan")
    expected = pairs * (1 - p) ** 2
    return {"graded_p": p, "graded_votes": total, "pairs": pairs, "both_wrong": both_wrong,
            "graded_collision_ratio": both_wrong / expected if expected else float("nan")}


def ratio_text(ratio: float | None) -> str:
    """A collision ratio, or "undefined" when there is none (no wrong vote: p-hat = 1, or no pairs).

        >>> ratio_text(1.234), ratio_text(None), ratio_text(float("nan"))
        ('1.23', 'undefined', 'undefined')
    """
    if ratio is None or ratio != ratio:
        return "undefined"
    return f"{ratio:.2f}"


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
            guard = {**result["extra"]["guard"], **grade(Path(tmp) / f"v{variants}")}
            if args.json:
                print(json.dumps({"variants": variants, **guard, "errors": result["errors"]}))
            rows.append((variants, result, guard))
    label = "[simulated model] " if any(r["simulated"] for _, r, _ in rows) else ""
    print(f"\n{label}chase, {args.hops} hops, --model {args.model}, k = {args.k}, temperature {args.temperature} "
          f"(first sample 0), seed {args.seed}")
    print("guard: p-hat and collisions as the live guard sees them (a vote that disagrees with the decision is an "
          "error);\ngraded: every valid vote against the ground truth of its own premise.")
    print(f"{'variants':>8}  {'guard p-hat (95% CI)':>24}  {'guard collisions':>16}  {'guard ratio':>11}  "
          f"{'graded p':>8}  {'graded both wrong / pairs':>25}  {'graded ratio':>12}  {'wrong decisions':>15}  "
          f"{'samples/step':>12}  {'wall s':>6}")
    for variants, result, g in rows:
        interval = f"{g['p_hat']:.4f} ({g['p_low']:.4f}-{g['p_high']:.4f})"
        pairs = f"{g['collisions']} / {g['steps_with_two']}"
        graded = f"{g['both_wrong']} / {g['pairs']}"
        print(f"{variants:>8}  {interval:>24}  {pairs:>16}  {ratio_text(g['collision_ratio']):>11}  "
              f"{g['graded_p']:>8.4f}  {graded:>25}  {ratio_text(g['graded_collision_ratio']):>12}  "
              f"{'unknown' if result['errors'] is None else result['errors']:>15}  "
              f"{result['samples_per_step']:>12.3f}  {result['wall_s']:>6.0f}")


if __name__ == "__main__":
    main()
