"""Client CPU per sample against `maker sim-server`: litellm paths against the `openai` client.

Starts `maker sim-server` as a separate process (its CPU is not counted), then, in this
process, draws Hanoi step samples the way the runner asks for them -- batches of k (the
first at temperature 0, the rest at `--temperature`), `--in-flight` samples at once -- and
reports, for each client path, the client process's CPU seconds per sample
(`time.process_time`, user + system, all threads) and samples/s.  Results are simulated
(the model is the sim-server); only the client's cost is being measured.

Paths:
  litellm-bare   a plain `litellm.acompletion` loop (no maker code)
  litellm        maker's `LiteLLMClient`, one request per sample (today's path before this bench)
  litellm-lean   the same with litellm's per-call logging and token counting turned off
  litellm-n      maker's `LiteLLMClient`, same-prompt samples of a batch in one request with n
  openai-sdk     a plain loop over the official `openai` async client (no maker code)
  compat         maker's `OpenAICompatibleClient` (aiohttp, JSON read directly), one request per sample
  compat-n       the same with n (the default for ``openai/NAME`` at an api_base)

    python bench/client_cpu.py                       # 3,000 samples per path, 64 in flight
    python bench/client_cpu.py --samples 1000 --paths litellm,openai-n --rounds 2

The machine may be shared: --rounds alternates the paths so load drift hits all alike, and
the median per path is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

PATHS = ("litellm-bare", "litellm", "litellm-lean", "litellm-n", "openai-sdk", "compat", "compat-n")


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "maker.cli.main", "sim-server", "--port", "0", "--latency", str(latency), "--p", "0.998", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening on " not in line:
        proc.kill()
        raise SystemExit(f"sim-server did not start: {line!r}")
    return proc, line.split("listening on ", 1)[1].split()[0]


def make(path: str, url: str, in_flight: int):
    """An object with `async complete(requests) -> list[Sample-like]` for one path."""
    from maker.cluster.http.litellm_client import LiteLLMClient, import_litellm
    from maker.cluster.http.openai_compatible import OpenAICompatibleClient
    from maker.cluster.http.transport import EndpointConfig

    use_n = path.endswith("-n")
    config = EndpointConfig("openai/sim", api_base=url, concurrency=in_flight, use_n=use_n, timeout_s=60.0)
    if path.startswith("compat"):
        return OpenAICompatibleClient(config)
    if path == "openai-sdk":
        return BareOpenAI(url)
    litellm = import_litellm()
    if path == "litellm-bare":
        return BareLiteLLM(litellm, url)
    lean(litellm, path == "litellm-lean")
    return LiteLLMClient(config)


def lean(litellm, on: bool) -> None:
    """litellm's switches for per-call logging and token counting (module globals)."""
    litellm.turn_off_message_logging = on
    litellm.disable_token_counter = on
    litellm.disable_streaming_logging = on
    litellm.logging = not on
    litellm.disable_end_user_cost_tracking = on or None


class BareLiteLLM:
    def __init__(self, litellm, url: str) -> None:
        self.litellm, self.url = litellm, url

    async def complete(self, requests):
        return await asyncio.gather(*(self.litellm.acompletion(
            model="openai/sim", messages=r.prompt, temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed,
            api_base=self.url, api_key="sk-local", num_retries=0) for r in requests))


class BareOpenAI:
    def __init__(self, url: str) -> None:
        self.url, self.clients = url, {}

    async def complete(self, requests):
        import openai

        loop = id(asyncio.get_running_loop())
        if loop not in self.clients:  # httpx connections belong to one event loop
            self.clients = {loop: openai.AsyncOpenAI(base_url=self.url, api_key="sk-local", max_retries=0, timeout=60.0)}
        client = self.clients[loop]
        return await asyncio.gather(*(client.chat.completions.create(
            model="sim", messages=r.prompt, temperature=r.temperature, max_tokens=r.max_tokens, seed=r.seed) for r in requests))


async def drive(client, batches, in_flight: int, k: int) -> int:
    gate = asyncio.Semaphore(max(1, in_flight // k))
    errors = 0

    async def one(batch):
        nonlocal errors
        async with gate:
            for s in await client.complete(batch):
                errors += bool(getattr(s, "error", None))

    await asyncio.gather(*(one(b) for b in batches))
    return errors


def batches_for(samples: int, k: int, temperature: float, offset: int):
    from maker.cluster import SampleRequest
    from maker.tasks import get_task

    task = get_task("hanoi", disks=10)
    step = task.first_step()
    out = []
    for b in range(samples // k):
        if b % 50 == 0:  # a fresh premise now and then; prompts are one object per step, as the runner has them
            prompt = task.prompt(step)
            step = task.advance(step, task.truth(step.index))
        out.append([SampleRequest(prompt, 0.0 if i == 0 else temperature, 751, offset + b * k + i, None) for i in range(k)])
    return out


def measure(path: str, url: str, args: argparse.Namespace, offset: int) -> dict:
    client = make(path, url, args.in_flight)
    asyncio.run(drive(client, batches_for(3 * args.in_flight, args.k, args.temperature, offset), args.in_flight, args.k))  # warm-up
    batches = batches_for(args.samples, args.k, args.temperature, offset + 10**6)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    errors = asyncio.run(drive(client, batches, args.in_flight, args.k))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    n = sum(len(b) for b in batches)
    return {"path": path, "samples": n, "errors": errors, "cpu_ms_per_sample": 1000 * cpu / n, "samples_per_s": n / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--latency", type=float, default=0.05, help="sim-server latency per request, s")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    paths = [p for p in args.paths.split(",") if p]
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise SystemExit(f"unknown paths {sorted(unknown)}; choose from {', '.join(PATHS)}")
    server, url = start_server(args.latency)
    rows: dict[str, list[dict]] = {p: [] for p in paths}
    try:
        for r in range(args.rounds):
            for path in paths if r % 2 == 0 else paths[::-1]:
                rows[path].append(measure(path, url, args, offset=r * 10**8 + paths.index(path) * 10**7))
    finally:
        server.terminate()
        server.wait(10)
    summary = []
    for path in paths:
        runs = rows[path]
        summary.append({"path": path, "samples": runs[0]["samples"], "errors": sum(x["errors"] for x in runs),
                        "cpu_ms_per_sample": round(statistics.median(x["cpu_ms_per_sample"] for x in runs), 2),
                        "samples_per_s": round(statistics.median(x["samples_per_s"] for x in runs), 1)})
    if args.json:
        print(json.dumps(summary))
        return
    print(f"client CPU per sample, {args.in_flight} in flight, k={args.k}, sim-server latency {args.latency}s (simulated model; "
          f"median of {args.rounds} round(s); shared machine: compare rows of one run)")
    print(f"{'path':14} {'samples':>8} {'errors':>6} {'CPU ms/sample':>14} {'samples/s':>10}")
    for row in summary:
        print(f"{row['path']:14} {row['samples']:>8} {row['errors']:>6} {row['cpu_ms_per_sample']:>14.2f} {row['samples_per_s']:>10.1f}")


if __name__ == "__main__":
    main()
