"""How accurate is the embedded local model on one task's steps, per temperature?

Measures what voting needs to know before a long run (design.md §1): the per-sample
accuracy p with its Clopper-Pearson interval, how the errors spread over wrong answers,
whether they collide (both of a step's first two votes wrong, against (1-p)**2), and --
the number that decides whether voting can work at all -- the worst per-state accuracy:
a state on which the right answer is not the most likely one is lost whatever k is.

Samples go exactly as the runner sends them: through `LiteLLMClient` to the local
server, each state's requests in one batch, prompt variant i % V for sample i.

    python bench/local_accuracy.py                          # chase, all 90 nodes, T=0.5
    python bench/local_accuracy.py --temperatures 0.3,0.7 --variants 4 --samples 2
    python bench/local_accuracy.py --model local:my.gguf --states 30 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="local")
    ap.add_argument("--hops", type=int, default=1000)
    ap.add_argument("--digits", type=int, default=2)
    ap.add_argument("--list-seed", type=int, default=0)
    ap.add_argument("--states", type=int, default=0, help="distinct states to measure (default 0: every node)")
    ap.add_argument("--variants", type=int, default=4, help="prompt variants to spread samples over")
    ap.add_argument("--samples", type=int, default=2, help="samples per state, variant and temperature")
    ap.add_argument("--temperatures", default="0.5")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import maker.voting as voting
    from maker.cluster import ModelSpec, make_client
    from maker.cluster.local.serving import serving
    from maker.cluster.protocol import SampleRequest
    from maker.tasks import get_task
    from maker.tasks.base import StepInput, task_judge, task_prompt

    task = get_task("chase", hops=args.hops, digits=args.digits, list_seed=args.list_seed)
    nodes = list(task.order)  # type: ignore[attr-defined]
    if args.states:
        nodes = nodes[: args.states]
    temps = [float(t) for t in args.temperatures.split(",")]
    V = args.variants
    report: dict = {"task": task.spec.describe(), "model": args.model, "states": len(nodes), "variants": V}

    async def measure(client) -> None:  # type: ignore[no-untyped-def]
        greedy = Counter()
        per_t: dict[float, dict] = {t: {"right": 0, "valid": 0, "flags": 0, "wrong": Counter(), "worst": []} for t in temps}
        pairs = {t: [0, 0] for t in temps}  # [collisions, pairs]
        started = time.perf_counter()
        drawn = 0
        for n, node in enumerate(nodes):
            step = StepInput(n, node)
            truth = task.reference_reply(step)  # type: ignore[attr-defined]
            requests, meta = [], []
            for v in range(V):
                prompt = task_prompt(task, step, "completion", v)
                requests.append(SampleRequest(prompt, 0.0, 16, 7919 * n + v, step, v))
                meta.append((None, v))
                for t in temps:
                    for j in range(args.samples):
                        requests.append(SampleRequest(prompt, t, 16, 104729 * n + 1000 * v + 10 * j + temps.index(t), step, v))
                        meta.append((t, v))
            samples = await client.complete(requests)
            drawn += len(samples)
            keys: dict[float, list] = {t: [] for t in temps}
            for (t, v), sample in zip(meta, samples):
                verdict = task_judge(task, step, sample.text, v)
                if t is None:
                    greedy[v] += verdict.key == truth
                    continue
                keys[t].append(verdict.key)
                stats = per_t[t]
                if verdict.key is None:
                    stats["flags"] += 1
                    continue
                stats["valid"] += 1
                stats["right"] += verdict.key == truth
                if verdict.key != truth:
                    stats["wrong"][verdict.key] += 1
            for t in temps:
                valid = [k for k in keys[t] if k is not None]
                p_state = sum(k == truth for k in valid) / len(valid) if valid else 0.0
                per_t[t]["worst"].append((round(p_state, 3), node))
                for a, b in zip(valid[0::2], valid[1::2]):
                    pairs[t][1] += 1
                    pairs[t][0] += a != truth and b != truth
        elapsed = time.perf_counter() - started
        report["greedy_by_variant"] = {v: round(greedy[v] / len(nodes), 4) for v in range(V)}
        report["samples"] = drawn
        report["wall_s"] = round(elapsed, 1)
        report["samples_per_s"] = round(drawn / elapsed, 2)
        report["by_temperature"] = {}
        for t in temps:
            s = per_t[t]
            p = s["right"] / s["valid"] if s["valid"] else 0.0
            ci = voting.clopper_pearson(s["right"], s["valid"]) if s["valid"] else None
            lo, hi = (ci.low, ci.high) if ci is not None else (0.0, 1.0)
            worst = sorted(s["worst"])[:5]
            collisions, npairs = pairs[t]
            k = voting.k_min(lo, args.hops, 0.95) if lo > 0.5 else None
            report["by_temperature"][t] = {
                "p": round(p, 4),
                "p_interval_95": [round(lo, 4), round(hi, 4)],
                "valid": s["valid"],
                "red_flag_rate": round(s["flags"] / (s["flags"] + s["valid"]), 4) if s["valid"] + s["flags"] else 0.0,
                "distinct_wrong_answers": len(s["wrong"]),
                "top_wrong_share": round(s["wrong"].most_common(1)[0][1] / sum(s["wrong"].values()), 3) if s["wrong"] else 0.0,
                "collision_rate": round(collisions / npairs, 4) if npairs else None,
                "independent_collision_rate": round((1 - p) ** 2, 4),
                "worst_states": worst,
                "states_at_or_below_half": sum(1 for ps, _ in s["worst"] if ps <= 0.5),
                "k_min_at_pessimistic_p": k,
            }

    with serving([ModelSpec(args.model, concurrency=4)]) as specs:
        client = make_client(specs[0], task)
        asyncio.run(measure(client))
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{report['task']}  model {report['model']}  {report['states']} states x {V} variants")
        print(f"  greedy (T=0) accuracy by variant: {report['greedy_by_variant']}")
        for t, r in report["by_temperature"].items():
            lo, hi = r["p_interval_95"]
            print(
                f"  T={t}: p={r['p']:.4f} [{lo:.4f}, {hi:.4f}] over {r['valid']} valid samples, red flags {r['red_flag_rate']:.3f}, "
                f"{r['distinct_wrong_answers']} distinct wrong answers (top one {r['top_wrong_share']:.0%} of errors), "
                f"collisions {r['collision_rate']} vs independent {r['independent_collision_rate']}"
            )
            print(
                f"         worst states (p, node): {r['worst_states']}; states with p <= 1/2: {r['states_at_or_below_half']}; "
                f"k_min(p_low, {args.hops} steps, 0.95) = {r['k_min_at_pessimistic_p']}"
            )
        print(f"  {report['samples']} samples in {report['wall_s']}s ({report['samples_per_s']}/s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
