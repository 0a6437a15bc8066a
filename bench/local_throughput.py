"""Samples per second maker gets from the embedded local model, against the server's own
saturation rate.

Three figures on one server, one after the other, with the same prompts (the chase
task's steps along the true trajectory, prompt variant i % V for sample i) and the same
sampling settings (temperature, stop at newline, max tokens, per-draw seed):

* saturation -- a plain concurrent httpx client keeping C requests in flight: the most
  the server can give;
* client     -- `LiteLLMClient` fed step by step by the engine's step voter
  (`maker.engine.step.vote_step`: round one k samples together, then what the leader
  still needs; red flags on), no Ray: litellm's own overhead;
* maker      -- the real runner (`maker.runtime.driver.run`: Ray worker, voting, red flags, step
  log): the difference of a short and a full run, which cancels the fixed start-up
  (Ray actor, litellm import, first connection); samples on a losing speculative
  premise are counted apart.

llama-cpp-python's server answers one request at a time (a lock around the model), so
the saturation rate is simply 1 / service time; maker reaches it when it always has a
request queued.

    python bench/local_throughput.py                 # 60 steps, k=3, 4 variants, T=0.5
    python bench/local_throughput.py --steps 150 --speculate 0 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def trajectory_prompts(task, steps: int, variants: int, per_step: int):  # type: ignore[no-untyped-def]
    """(prompt, seed) for `per_step` samples of each of the first `steps` true steps."""
    from maker.tasks.base import task_prompt

    out = []
    step = task.first_step()
    for i in range(steps):
        for j in range(per_step):
            out.append((task_prompt(task, step, "completion", j % variants), 1_000_003 * i + j, step, j % variants))
        step = task.step_after(i, task.truth(i))
    return out


async def saturation(api_base: str, model: str, prompts, temperature: float, concurrency: int) -> float:  # type: ignore[no-untyped-def]
    import httpx

    queue: asyncio.Queue = asyncio.Queue()
    for p in prompts:
        queue.put_nowait(p)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            prompt, seed, _, _ = queue.get_nowait()
            body = {"model": model, "prompt": prompt, "temperature": temperature, "max_tokens": 16, "stop": ["\n"], "seed": seed & 0x7FFFFFFF}
            r = await client.post(f"{api_base}/completions", json=body, timeout=120)
            r.raise_for_status()

    async with httpx.AsyncClient() as client:
        await worker_warmup(client, api_base, model, prompts[0][0])
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return len(prompts) / (time.perf_counter() - started)


async def worker_warmup(client, api_base: str, model: str, prompt: str) -> None:  # type: ignore[no-untyped-def]
    r = await client.post(f"{api_base}/completions", json={"model": model, "prompt": prompt, "max_tokens": 4}, timeout=120)
    r.raise_for_status()


async def client_rate(spec, task, voting, steps: int) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    """LiteLLMClient driven by maker's one step voter (`maker.engine.step.vote_step`: its
    rounds, red flags, ballot and request cap), step by step as a worker drives it, without
    Ray or a step log."""
    from maker.cluster import make_client
    from maker.cluster.protocol import SampleRequest
    from maker.tasks.base import task_prompt

    from maker.engine.red_flags import RedFlagPolicy
    from maker.engine.step import vote_step

    client = make_client(spec, task)
    clients = {spec.model: client}
    step = task.first_step()
    await client.complete([SampleRequest(task_prompt(task, step, "completion"), 0.0, 16, 1, step)])  # warm
    policy = RedFlagPolicy()
    drawn_total = 0
    started = time.perf_counter()
    for i in range(steps):
        vote = await vote_step(task, clients, step, voting, policy, (spec.model,), 1_000_003)
        drawn_total += vote.drawn
        if vote.winner is None:
            break
        step = task.step_after(i, vote.winner)
    return drawn_total / (time.perf_counter() - started), drawn_total


def _maker_run(spec, task, voting, steps: int, speculate: int | None):  # type: ignore[no-untyped-def]
    from maker.config import ClusterConfig
    from maker.runtime.driver import run

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run(task, [spec], voting, log=Path(tmp) / "bench.parquet", cluster=ClusterConfig(speculate=speculate), max_steps=steps)
        return result, time.perf_counter() - started


def maker_rate(spec, task, voting, steps: int, speculate: int | None) -> dict:  # type: ignore[no-untyped-def]
    """Two runs, a short one and the full one: their difference cancels the fixed start-up
    (Ray actor, litellm import in the worker, first connection) and leaves the rate
    a long run sustains."""
    short, short_wall = _maker_run(spec, task, voting, max(2, steps // 5), speculate)
    result, wall = _maker_run(spec, task, voting, steps, speculate)

    def drawn(r) -> int:  # type: ignore[no-untyped-def]
        return r.samples + int(r.extra.get("wasted_samples", 0) or 0)

    marginal = (drawn(result) - drawn(short)) / max(1e-9, wall - short_wall)
    useful = (result.samples - short.samples) / max(1e-9, wall - short_wall)
    return {
        "steps": result.steps,
        "errors": result.errors,
        "samples": result.samples,
        "wasted_samples": drawn(result) - result.samples,
        "wall_s": round(wall, 2),
        "startup_s": round(short_wall - drawn(short) / marginal, 2) if marginal > 0 else None,
        "overall_samples_per_s": round(drawn(result) / wall, 3),
        "samples_per_s": round(marginal, 3),
        "useful_samples_per_s": round(useful, 3),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--variants", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.5)
    ap.add_argument("--concurrency", type=int, default=4, help="requests the plain client keeps in flight")
    ap.add_argument("--speculate", type=int, help="maker's speculation depth (default: maker's own default)")
    ap.add_argument("--model", default="local")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from maker.cluster import ModelSpec, ensure_ray
    from maker.cluster.local.serving import serving
    from maker.tasks import get_task

    from maker.config import VotingConfig

    task = get_task("chase", hops=max(args.steps, 1))
    voting = VotingConfig(
        k=args.k, first_temperature=0.0, temperature=args.temperature, prompt_variants=args.variants, prompt_style="completion"
    )
    ensure_ray(num_cpus=2)
    report: dict = {"device": f"{os.cpu_count()} CPU cores", "steps": args.steps, "k": args.k, "variants": args.variants}
    with serving([ModelSpec(args.model, concurrency=16)]) as specs:
        spec = specs[0]
        alias = spec.model.split("/", 1)[1]
        # The same prompts maker sends: the steps of the true trajectory, about k+ samples each.
        prompts = trajectory_prompts(task, args.steps, args.variants, args.k + 1)
        # Saturation before and after, averaged: a shared machine's load drifts.
        before = asyncio.run(saturation(spec.api_base, alias, prompts, args.temperature, args.concurrency))
        report["maker"] = maker_rate(spec, task, voting, args.steps, args.speculate)
        rate, drawn = asyncio.run(client_rate(spec, task, voting, args.steps))
        report["client_samples_per_s"] = round(rate, 3)
        report["client_samples"] = drawn
        after = asyncio.run(saturation(spec.api_base, alias, prompts, args.temperature, args.concurrency))
        report["saturation_before_after"] = [round(before, 3), round(after, 3)]
        report["saturation_samples_per_s"] = round((before + after) / 2, 3)
    sat = report["saturation_samples_per_s"]
    report["ratio_maker"] = round(report["maker"]["samples_per_s"] / sat, 3)
    report["ratio_maker_useful"] = round(report["maker"]["useful_samples_per_s"] / sat, 3)
    report["ratio_client"] = round(report["client_samples_per_s"] / sat, 3)
    if args.json:
        print(json.dumps(report))
        return 0
    m = report["maker"]
    print(f"local model throughput, chase task, k={args.k}, {args.variants} prompt variants, T={args.temperature} ({report['device']})")
    b, a = report["saturation_before_after"]
    print(
        f"  server saturation (httpx, {args.concurrency} in flight): {sat:.2f} samples/s (before {b:.2f}, after {a:.2f})  "
        "[the server answers one request at a time]"
    )
    print(f"  LiteLLMClient, runner's batches, no Ray:  {report['client_samples_per_s']:.2f} samples/s  (ratio {report['ratio_client']:.2f})")
    print(
        f"  maker run (Ray, voting, step log):        {m['samples_per_s']:.2f} samples/s  (ratio {report['ratio_maker']:.2f}); "
        f"useful {m['useful_samples_per_s']:.2f}/s ({report['ratio_maker_useful']:.2f}), {m['wasted_samples']} wasted by speculation"
    )
    print(
        f"  maker: {m['steps']} steps, {m['errors']} errors, {m['samples']} samples in {m['wall_s']}s "
        f"(overall {m['overall_samples_per_s']:.2f}/s with ~{m['startup_s']}s of start-up; the rate above excludes it)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
