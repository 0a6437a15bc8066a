"""Throughput of `maker.vote` against a plain loop of litellm calls, on `maker sim-server`.

1,000 independent voted calls (default), `--concurrency` of them in flight at once, each
on its own prompt (Hanoi step prompts along the true trajectory: the sim-server answers
Hanoi steps only), against a `maker sim-server` child process (0.2 s latency, p = 0.998;
the server runs in its own process so its CPU is not counted).  Beside it, the same
calls made by a plain loop: per call, k `litellm.acompletion` requests gathered at once,
the same concurrency, no voting, no red flags.  Figures: calls per second and client CPU
(this process: user + system) per sample; the ratio of calls per second is what issue 16
asks to keep >= 0.9.  Everything served is simulated.

    python bench/vote.py                       # 1000 calls, concurrency 64, k = 3
    python bench/vote.py --calls 300 --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def start_server(latency: float, p: float) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from maker.cli.main import main; sys.exit(main(sys.argv[1:]))", "sim-server",
         "--port", "0", "--latency", str(latency), "--p", str(p), "--quiet", "--stats-every", "0", "--concurrency", "1024"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split("listening on ", 1)[1].split()[0]
    return proc, url


def prompts(calls: int) -> list[list[dict[str, str]]]:
    from maker.tasks import get_task

    task = get_task("hanoi", disks=12)
    out, step = [], task.first_step()
    for i in range(calls):
        out.append(task.prompt(step, "chat"))
        step = task.step_after(i, task.truth(i))
    return out


async def with_maker(items: list, url: str, k: int, concurrency: int) -> tuple[float, float, int, int]:
    from maker.cluster import ModelSpec

    import maker

    model = ModelSpec("openai/sim", api_base=url, concurrency=concurrency * k)
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, prompt: list) -> maker.VoteResult:
        async with gate:
            return await maker.avote(prompt, [model], k=k, key="lines", seed=i, concurrency=concurrency * k)

    await asyncio.gather(*(one(10**6 + i, items[i]) for i in range(min(32, len(items)))))  # warm up
    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(items)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, sum(r.samples for r in results), sum(bool(r.red_flags) for r in results)


async def plain_loop(items: list, url: str, k: int, concurrency: int) -> tuple[float, float, int, int]:
    from maker.cluster.http.litellm_client import import_litellm

    litellm = import_litellm()
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int, prompt: list) -> list[str]:
        async with gate:
            replies = await asyncio.gather(*(
                litellm.acompletion(model="openai/sim", messages=prompt, api_base=url, api_key="sk-local",
                                    temperature=0.0 if j == 0 else 0.1, max_tokens=751, seed=(i * 1009 + j) & 0x7FFFFFFF,
                                    num_retries=0)
                for j in range(k)))
            return [r.choices[0].message.content for r in replies]

    await asyncio.gather(*(one(10**6 + i, items[i]) for i in range(min(32, len(items)))))
    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one(i, p) for i, p in enumerate(items)))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return wall, cpu, sum(len(r) for r in results), 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--p", type=float, default=0.998)
    ap.add_argument("--maker-first", action="store_true", help="time maker.vote before the plain loop (order check)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    proc, url = start_server(args.latency, args.p)
    try:
        items = prompts(args.calls)
        figures = {}
        order = [("plain_litellm_loop", plain_loop), ("maker_vote", with_maker)]
        for name, fn in order[::-1] if args.maker_first else order:
            wall, cpu, samples, flagged = asyncio.run(fn(items, url, args.k, args.concurrency))
            figures[name] = {
                "calls": args.calls, "wall_s": round(wall, 3), "calls_per_s": round(args.calls / wall, 1),
                "samples": samples, "cpu_s": round(cpu, 3), "cpu_ms_per_sample": round(1000 * cpu / samples, 3),
            }
            if name == "maker_vote":
                figures[name]["calls_with_red_flags"] = flagged
            if not args.json:
                print(f"{name:20s} {figures[name]}", flush=True)
        ratio = figures["maker_vote"]["calls_per_s"] / figures["plain_litellm_loop"]["calls_per_s"]
        figures["ratio_calls_per_s"] = round(ratio, 3)
        figures["simulated"] = True
        figures["settings"] = {"k": args.k, "concurrency": args.concurrency, "latency_s": args.latency, "p": args.p}
        print(json.dumps(figures) if args.json else f"maker.vote / plain loop (calls/s): {ratio:.3f}  [simulated model]")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
