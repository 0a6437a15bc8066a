"""A draft model against in-order voting, through the OpenAI-compatible path (simulated).

Starts `maker sim-server` (the voters: the simulator behind OpenAI-compatible HTTP, with
a set latency), then runs Hanoi through the full stack -- Ray worker, the
OpenAI-compatible client, HTTP -- once per variant, all in one invocation so the shared
machine's load hits them alike:

* ``in-order``: ``--speculate 0``, no draft: one step per voting round trip at best;
* ``leader``: ``--speculate 8``, no draft (the leader-driven window);
* ``sim:P,latency=S`` (any ``--drafts`` entry): ``--draft MODEL``, the window at its
  default (64, adaptive).

For each it prints steps/s over the seconds the worker spent voting (`extra.voting_s`:
Ray's start-up, tens of seconds on a loaded machine, left out) and over the wall time,
wasted samples, the draft's acceptance, proposals, tokens and cost, and whether every
decision equals the in-order run's (same seed) on the steps both decided.  Every
figure is simulated: the voters are `maker sim-server`, the drafts the simulator.

    python bench/draft.py                                        # hanoi 10 disks (1,023 steps)
    python bench/draft.py --in-order-steps 120 --steps 1023      # a shorter in-order run (its rate
                                                                 # does not depend on the length)
    python bench/draft.py --latency 0.1 --steps 300 --drafts sim:0.95,latency=0.01
    python bench/draft.py --task chase --hops 1000 --in-order-steps 150 --drafts local
                                                                 # the embedded model as the draft (real
                                                                 # proposer, simulated voters)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from speculation import start_server, stats  # noqa: E402  (bench/speculation.py: the sim-server helpers)


def one_run(url: str, variant: str, steps: int, args: argparse.Namespace, log: Path) -> tuple[dict, list]:
    """One run of `variant` ('in-order', 'leader' or a draft model string): its row and decisions."""
    from maker.cluster import ModelSpec
    from maker.tasks import get_task

    from maker import ClusterConfig, VotingConfig, run
    from maker.log.steplog import decisions, open_log

    task = get_task("hanoi", disks=args.disks) if args.task == "hanoi" else get_task("chase", hops=args.hops)
    spec = ModelSpec("openai/sim", api_base=url, concurrency=args.concurrency, timeout_s=30.0)
    speculate = {"in-order": 0, "leader": 8}.get(variant)
    draft = None if variant in ("in-order", "leader") else variant
    before = stats(url)
    result = run(task, [spec], VotingConfig(k=args.k), log=log, seed=args.seed, max_steps=steps,
                 cluster=ClusterConfig(speculate=speculate, workers=args.workers, segment_seconds=args.segment_seconds), draft=draft)
    after = stats(url)
    draft_stats = result.extra.get("draft_stats") or {}
    row = {
        "variant": variant, "steps": result.steps, "errors": result.errors, "samples": result.samples,
        "wasted": result.extra["wasted_samples"], "wall_s": result.wall_s, "voting_s": result.extra["voting_s"],
        "requests": after["requests"] - before["requests"], "simulated": result.simulated,
        "draft_acceptance": draft_stats.get("acceptance"), "draft_proposals": draft_stats.get("samples"),
        "draft_wasted": draft_stats.get("wasted"), "draft_tokens": [draft_stats.get("tokens_in"), draft_stats.get("tokens_out")]
        if draft_stats else None, "draft_cost_usd": draft_stats.get("cost_usd"),
        "speedup_estimate": draft_stats.get("speedup_estimate"),
    }
    return row, decisions(open_log(log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.5, help="voters' latency in seconds (default 0.5)")
    parser.add_argument("--jitter", type=float, default=0.0, help="voters' extra latency, uniform in [0, J] (default 0)")
    parser.add_argument("--p", type=float, default=0.998, help="voters' accuracy (default 0.998)")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--task", choices=("hanoi", "chase"), default="hanoi",
                        help="hanoi (default) or chase (pointer chasing: the task the embedded model walks; "
                             "try --drafts local)")
    parser.add_argument("--disks", type=int, default=10, help="Hanoi disks (default 10: 1,023 steps)")
    parser.add_argument("--hops", type=int, default=1000, help="chase: hops (default 1000)")
    parser.add_argument("--steps", type=int, help="steps per drafted run (default: the whole task)")
    parser.add_argument("--in-order-steps", type=int, help="steps of the in-order and leader runs (default: --steps)")
    parser.add_argument("--drafts", default="sim:0.95,latency=0.01;sim:0.7,latency=0.01",
                        help="draft models, ';'-separated (default sim:0.95,latency=0.01;sim:0.7,latency=0.01)")
    parser.add_argument("--variants", default="in-order,leader", help="undrafted variants to run first (default in-order,leader)")
    parser.add_argument("--concurrency", type=int, default=512, help="voters' in-flight limit (default 512)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--segment-seconds", type=float, default=2.0, help="seconds a worker votes before it reports back (default 2.0)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from maker.cluster import ensure_ray

    ensure_ray()
    total = 2**args.disks - 1 if args.task == "hanoi" else args.hops
    steps = min(total, args.steps or total)
    base_steps = min(steps, args.in_order_steps or steps)
    tmp = Path(tempfile.mkdtemp(prefix="maker-draft-bench-"))
    proc, url = start_server(args.latency, args.jitter, args.p, args.seed, args.task)
    report = {"simulated": True, "task": args.task, "voters": f"maker sim-server --task {args.task} --p {args.p} --latency {args.latency} --jitter {args.jitter} "
              "via the OpenAI-compatible client (openai/sim)", "k": args.k, "disks": args.disks, "cpus": os.cpu_count(),
              "rows": []}
    try:
        one_run(url, "in-order", 1, args, tmp / "warm")  # the first run's imports and connections
        chosen = [v for v in args.variants.split(",") if v] + [d for d in args.drafts.split(";") if d]
        reference: list | None = None
        for variant in chosen:
            n = base_steps if variant in ("in-order", "leader") else steps
            row, decided = one_run(url, variant, n, args, tmp / variant.replace(":", "_").replace(",", "_"))
            row["steps_per_s"] = round(row["steps"] / max(1e-9, row["voting_s"]), 3)
            row["steps_per_s_wall"] = round(row["steps"] / max(1e-9, row["wall_s"]), 3)
            if reference is None:
                reference = decided
            shared = min(len(reference), len(decided))
            row["decisions_equal_in_order"] = decided[:shared] == reference[:shared]
            row["compared_steps"] = shared
            report["rows"].append(row)
            print("[simulated] " + json.dumps(row), flush=True)
        base = next((r["steps_per_s"] for r in report["rows"] if r["variant"] == "in-order"), None)
        for row in report["rows"]:
            row["speedup_vs_in_order"] = round(row["steps_per_s"] / base, 2) if base else None
        report["summary"] = {r["variant"]: {"steps_per_s": r["steps_per_s"], "speedup": r["speedup_vs_in_order"],
                                            "wasted": r["wasted"], "draft_acceptance": r["draft_acceptance"],
                                            "decisions_equal": r["decisions_equal_in_order"]} for r in report["rows"]}
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    print("[simulated] " + json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
