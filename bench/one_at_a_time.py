"""Votes against a one-request-at-a-time server that never cancels (llama.cpp-like): how many
votes decide, how many answers the server computed for nobody, and the wall time (issue 22 §5).

    python bench/one_at_a_time.py [SERVICE_S] [K] [VOTES]      # default 0.8 8 4

The server is the test suite's fake provider (`tests/providers`, personality `one_at_a_time`):
it serves one request at a time, SERVICE_S seconds each, and ignores ``n``.  Each vote asks
for k samples with ``--timeout 2 --concurrency 8``.  Measured on the 2-core machine (load ~20):
before the adaptive in-flight limit 1 of 4 decided (2 endpoint-down, 1 vote cap), 364 of 374
answers to nobody, 341 s; after, 4 of 4, 17 of 49, 40 s.  Not simulated model quality: the
answers are fixed; only the transport is measured.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "providers"))

from fake_provider import FakeProvider  # noqa: E402
from maker.cluster import ModelSpec  # noqa: E402
from maker.cluster.pricing import price_of  # noqa: E402
from personalities import one_at_a_time  # noqa: E402

import maker  # noqa: E402


def main(service_s: float = 0.8, k: int = 8, votes: int = 4) -> None:
    price_of("openai/fake")  # import litellm (and read its price table) before any call is timed
    with FakeProvider(one_at_a_time(service_s), lifetime_s=900, max_requests=5000) as server:
        spec = ModelSpec("openai/fake", api_base=server.url, timeout_s=2, concurrency=8)

        async def run() -> list[str]:
            out = []
            for i in range(votes):
                try:
                    await maker.avote(f"What is 6*7? ({i})", [spec], k=k, key="integer", concurrency=8)
                    out.append("decided")
                except maker.MakerError as exc:
                    out.append(type(exc).__name__)
            return out

        started = time.perf_counter()
        outcomes = asyncio.run(run())
        wall = time.perf_counter() - started
        print(f"votes: {votes}, {outcomes.count('decided')} decided ({', '.join(outcomes)}); requests "
              f"{len(server.calls)}, served {server.served}, served to nobody {server.served_to_nobody}; "
              f"most waiting at the server {server.most_waiting}; wall {wall:.1f} s")


if __name__ == "__main__":
    main(*(float(a) if i == 0 else int(a) for i, a in enumerate(sys.argv[1:])))
