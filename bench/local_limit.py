"""The embedded model's compute bound on this machine, beside what `maker run` gets from it.

Bound: llama-cpp-python in this process, no HTTP, the chase task's steps along the true
trajectory, the samples maker draws for them (k per step, prompt variant ``variant_of``,
the first at temperature 0 and the rest at `--temperature`, stop at newline, 16 tokens at
most, each draw's seed).  Prefix reuse is arranged as well as this bench knows how: the
prompts put everything shared first (instructions, few-shot examples) and the step's
record last, and each prompt variant gets its own `Llama` (its own KV cache), so a sample
re-reads only the record that changed since that variant's last step plus its reply.
Layouts measured (the best is the bound):

  shared      one Llama for every variant (the prefix changes whenever the variant does)
  per-variant one Llama per variant, one after another, `--threads` threads each
  parallel    one Llama per variant, two threads drawing at once with one llama thread each

maker: the same steps through `maker.run` with ``--model local`` (Ray worker, server,
voting, log), once per `--replicas` value (local servers per model, prompt variant v on
server v % replicas); the rate is the difference of a short and a full run, which cancels
the start-up.  Printed: both rates and their ratio.  A shared machine makes every figure noisy:
compare the lines of one run.

    python bench/local_limit.py                       # 40 steps, k=3, 4 variants, T=0.5
    python bench/local_limit.py --steps 80 --layouts per-variant,parallel --replicas 1,2,4 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

LAYOUTS = ("shared", "per-variant", "parallel")


def workload(task, steps: int, k: int, variants: int, temperature: float) -> list[list[tuple[str, float, int, int]]]:  # type: ignore[no-untyped-def]
    """Per step: (prompt, temperature, seed, variant) of the k first samples maker draws."""
    from maker.tasks.base import task_prompt

    from maker.engine.variants import variant_of

    out = []
    step = task.first_step()
    for i in range(steps):
        draws = []
        for j in range(k):
            v = variant_of(j, 1, variants)
            draws.append((task_prompt(task, step, "completion", v), 0.0 if j == 0 else temperature, 1_000_003 * i + j, v))
        out.append(draws)
        step = task.step_after(i, task.truth(i))
    return out


def load(path: Path, threads: int):  # type: ignore[no-untyped-def]
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, logits_all=False, verbose=False)


def draw(llm, prompt: str, temperature: float, seed: int) -> str:  # type: ignore[no-untyped-def]
    out = llm.create_completion(prompt, max_tokens=16, temperature=temperature, stop=["\n"], seed=seed & 0x7FFFFFFF)
    return out["choices"][0]["text"]


def bound(path: Path, work, layout: str, variants: int, threads: int) -> float:  # type: ignore[no-untyped-def]
    """Samples/s in-process for one layout (a warm-up step first, not counted)."""
    if layout == "shared":
        models = [load(path, threads)] * variants
    else:
        models = [load(path, 1 if layout == "parallel" else threads) for _ in range(variants)]
    for prompt, t, seed, v in work[0]:  # warm-up: each variant's header read once
        draw(models[v], prompt, t, seed)
    rest = work[1:]
    n = sum(len(s) for s in rest)
    started = time.perf_counter()
    if layout != "parallel":
        for draws in rest:
            for prompt, t, seed, v in draws:
                draw(models[v], prompt, t, seed)
        return n / (time.perf_counter() - started)
    # parallel: variants split over two lanes; llama.cpp releases the GIL while it computes
    lanes = [[d for draws in rest for d in draws if d[3] % 2 == lane] for lane in (0, 1)]
    threads_ = [threading.Thread(target=lambda ds: [draw(models[v], p, t, s) for p, t, s, v in ds], args=(ds,)) for ds in lanes]
    for th in threads_:
        th.start()
    for th in threads_:
        th.join()
    return n / (time.perf_counter() - started)


def maker_rate(task, voting, steps: int, replicas: int) -> dict:  # type: ignore[no-untyped-def]
    """Samples/s of `maker.run` with --model local (`replicas` servers): a short and a full
    run on the same servers, differenced (that cancels Ray's and the servers' start-up)."""
    from maker.cluster import ModelSpec
    from maker.cluster.local.serving import serving

    from maker import ClusterConfig, run

    with serving([ModelSpec("local")], replicas=replicas) as specs:

        def one(n: int):  # type: ignore[no-untyped-def]
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                result = run(task, specs, voting, log=Path(tmp) / "limit", max_steps=n, cluster=ClusterConfig())
                return result, time.perf_counter() - started

        one(1)  # warm: Ray, the worker, the first connections (not counted)
        short, short_wall = one(max(2, steps // 5))
        full, wall = one(steps)

    def drawn(r) -> int:  # type: ignore[no-untyped-def]
        return r.samples + int(r.extra.get("wasted_samples", 0) or 0)

    rate = (drawn(full) - drawn(short)) / max(1e-9, wall - short_wall)
    return {"steps": full.steps, "errors": full.errors, "samples": full.samples, "wasted": drawn(full) - full.samples,
            "wall_s": round(wall, 1), "samples_per_s": round(rate, 3),
            "samples_per_step": round(full.samples / max(1, full.steps), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--threads", type=int, help="llama.cpp threads for the one-at-a-time layouts (default: maker's, one per two cores)")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--replicas", default="1", help="maker runs to measure: local servers per model, e.g. 1,2,4")
    ap.add_argument("--no-maker", action="store_true", help="measure the bound only")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from maker.cluster.local.server import default_threads, embedded_gguf_path
    from maker.tasks import get_task

    from maker.config import VotingConfig

    args.threads = args.threads or default_threads()
    task = get_task("chase", hops=max(args.steps, 2))
    path = embedded_gguf_path()
    work = workload(task, args.steps, args.k, args.variants, args.temperature)
    report: dict = {"device": f"{os.cpu_count()} CPU cores", "steps": args.steps, "k": args.k, "variants": args.variants,
                    "temperature": args.temperature, "bound": {}}
    for layout in [x for x in args.layouts.split(",") if x]:
        if layout not in LAYOUTS:
            raise SystemExit(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
        report["bound"][layout] = round(bound(path, work, layout, args.variants, args.threads), 3)
    best = max(report["bound"].values())
    report["bound_samples_per_s"] = best
    if not args.no_maker:
        voting = VotingConfig(k=args.k, first_temperature=0.0, temperature=args.temperature,
                              prompt_variants=args.variants, prompt_style="completion")
        report["maker"] = {}
        for r in [int(x) for x in args.replicas.split(",") if x]:
            m = report["maker"][r] = maker_rate(task, voting, args.steps, r)
            m["ratio"] = round(m["samples_per_s"] / best, 3)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"embedded model bound, chase, {args.steps} steps, k={args.k}, {args.variants} variants, T={args.temperature} "
          f"({report['device']}; a shared machine: compare lines of one run)")
    for layout, rate in report["bound"].items():
        print(f"  bound, in-process {layout:12} {rate:7.2f} samples/s")
    for r, m in report.get("maker", {}).items():
        print(f"  maker run, {r} server(s)      {m['samples_per_s']:7.2f} samples/s  ratio {m['ratio']:.2f} of the bound "
              f"({m['steps']} steps, {m['errors']} errors, {m['samples_per_step']} samples/step, {m['wasted']} wasted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
