"""The embedded model with and without llama.cpp's extra buffer types, side by side.

maker turns extra buffer types off on CPUs with AMX (their AMX path crashes; see
`cluster.local.server.default_extra_buffers`) and leaves them on elsewhere.  This script
measures what each setting costs on *this* CPU: one server per setting, started in turn,
each sent the same chase prompts (prompt variant i % 4, temperature 0.5, per-draw seed,
stop at newline), one request at a time as llama.cpp serves them; the rounds alternate
between the settings so the machine's load falls on both alike.  On a CPU with AMX the
"on" server is expected to die at start, which is reported, not raised.

    python bench/local_extra_buffers.py                   # 3 rounds of 40 samples per setting
    python bench/local_extra_buffers.py --rounds 5 --samples 60
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def prompts(samples: int) -> list[tuple[str, int]]:
    from maker.tasks.base import task_prompt
    from maker.tasks.builtin.chase import Chase

    task = Chase(hops=samples)
    out, step = [], task.first_step()
    for i in range(samples):
        out.append((task_prompt(task, step, "completion", i % 4), 1_000_003 * i))
        step = task.step_after(i, task.truth(i))
    return out


def samples_per_second(api_base: str, alias: str, batch: list[tuple[str, int]]) -> float:
    start = time.perf_counter()
    for prompt, seed in batch:
        body = {"model": alias, "prompt": prompt, "max_tokens": 16, "temperature": 0.5, "seed": seed, "stop": ["\n"]}
        request = urllib.request.Request(
            f"{api_base}/completions", json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            json.load(response)
    return len(batch) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--samples", type=int, default=40)
    args = parser.parse_args()

    from maker.cluster.local.server import (
        LocalServer,
        LocalServerConfig,
        LocalServerError,
        cpu_flags,
        default_extra_buffers,
        embedded_gguf_path,
    )

    amx = sorted(f for f in cpu_flags() if f.startswith("amx"))
    print(f"CPU AMX flags: {' '.join(amx) or 'none'}; maker's default here: extra buffers "
          f"{'on' if default_extra_buffers() else 'off'}")
    batch = prompts(args.samples)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, extra in (("on", True), ("off", False)) if r % 2 == 0 else (("off", False), ("on", True)):
                config = LocalServerConfig(embedded_gguf_path(), log_path=Path(tmp) / f"{name}.log",
                                           extra_buffers=extra, max_restarts=0)
                try:
                    with LocalServer(config) as server:
                        samples_per_second(server.api_base, server.alias, batch[:2])  # warm the cache path
                        rates[name].append(samples_per_second(server.api_base, server.alias, batch))
                except LocalServerError as exc:
                    print(f"extra buffers {name}: the server did not start: {exc}")
                    rates[name].append(float("nan"))
    for name, values in rates.items():
        shown = ", ".join(f"{v:.2f}" for v in values)
        print(f"extra buffers {name:>3}: samples/s per round {shown}")


if __name__ == "__main__":
    main()
