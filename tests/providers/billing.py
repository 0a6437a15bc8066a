"""A fake hosted provider that bills like OpenAI: the suite's model boundary for money.

`BillingProvider` serves the OpenAI-compatible API on 127.0.0.1 in front of `maker
sim-server` (which answers Hanoi steps from ground truth) and rewrites each answer's
`usage` the way a hosted provider reports it, while keeping its own invoice:

* ``cached_fraction``: that share of every prompt's tokens is reported as read from the
  prompt cache (``usage.prompt_tokens_details.cached_tokens``), as providers do for a
  prompt's stable prefix;
* ``reasoning_tokens``: hidden reasoning added to every choice, counted inside
  ``completion_tokens`` and reported in ``completion_tokens_details.reasoning_tokens``;
* ``latency`` + up to ``jitter`` seconds per request, and *no cancellation*: a request the
  client gave up on is still served to the end and billed, as a hosted API does.

It names itself ``owned_by: fake-provider`` in ``/v1/models``, so maker treats it as a real
endpoint (priced, not labelled simulated).  `invoice()` is what the provider would bill at
the given rates (default: gpt-4.1-mini's, $0.40 / $0.10 cached / $1.60 per million).
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from dataclasses import dataclass, field
from typing import Any

from maker.cluster.simulated.sim_server import SimServer, SimServerConfig, bind


@dataclass
class Ledger:
    requests: int = 0  # served to the end (and billed), whether or not the client still waited
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    abandoned: int = 0  # served after the client had gone
    bodies: list[dict[str, Any]] = field(default_factory=list)


class BillingProvider:
    def __init__(self, *, p: float = 1.0, cached_fraction: float = 0.0, reasoning_tokens: int = 0, latency: float = 0.0,
                 jitter: float = 0.0, rates: tuple[float, float, float] = (0.4, 0.1, 1.6), seed: int = 0) -> None:
        self.cached_fraction = cached_fraction
        self.reasoning_tokens = reasoning_tokens
        self.latency = latency
        self.jitter = jitter
        self.rates = rates
        self.ledger = Ledger()
        self._rng = random.Random(seed)
        self._upstream = SimServer(SimServerConfig(p=p, latency=0.0, seed=seed))
        self._sock = bind(0)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: Any = None
        self._pending: set[asyncio.Task[Any]] = set()

    def invoice(self) -> float:
        """USD this provider bills for everything it served."""
        rate_in, rate_cached, rate_out = self.rates
        led = self.ledger
        return ((led.prompt_tokens - led.cached_tokens) * rate_in + led.cached_tokens * rate_cached
                + led.completion_tokens * rate_out) / 1e6

    # -- serving --------------------------------------------------------------------------
    def __enter__(self) -> BillingProvider:
        self._upstream.__enter__()
        self._thread.start()
        self._runner = asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(60)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._sock.close()
        self._upstream.__exit__(*exc)

    async def _start(self) -> Any:
        import aiohttp
        from aiohttp import web

        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._complete)
        app.router.add_post("/v1/completions", self._complete)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sock).start()
        return runner

    async def _stop(self) -> None:
        if self._pending:  # let every request the provider accepted finish (and be billed)
            await asyncio.gather(*self._pending, return_exceptions=True)
        await self._runner.cleanup()
        await self._session.close()

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "gpt-4.1-mini", "object": "model", "owned_by": "fake-provider"}]})

    async def _complete(self, request: Any) -> Any:
        from aiohttp import web

        body = await request.json()
        self.ledger.bodies.append(body)
        # Served to the end even if the client goes away (no cancellation): a shielded task.
        task = asyncio.ensure_future(self._serve(request.path, body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        try:
            status, data = await asyncio.shield(task)
        except asyncio.CancelledError:
            self.ledger.abandoned += 1
            raise
        return web.Response(status=status, body=data, content_type="application/json")

    async def _serve(self, path: str, body: dict[str, Any]) -> tuple[int, bytes]:
        delay = self.latency + self.jitter * self._rng.random()
        if delay:
            await asyncio.sleep(delay)
        async with self._session.post(self._upstream.url + path[len("/v1"):], json=body) as response:
            status, data = response.status, await response.read()
        if status != 200:
            return status, data
        reply = json.loads(data)
        usage = reply["usage"]
        n = len(reply["choices"])
        cached = int(usage["prompt_tokens"] * self.cached_fraction)
        reasoning = self.reasoning_tokens * n
        usage["completion_tokens"] += reasoning
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        led = self.ledger
        led.requests += 1
        led.prompt_tokens += usage["prompt_tokens"]
        led.cached_tokens += cached
        led.completion_tokens += usage["completion_tokens"]
        led.reasoning_tokens += reasoning
        return 200, json.dumps(reply).encode()


def main() -> None:
    """``python tests/providers/billing.py [--p P] [--cached F] [--latency S]``: serve the fake
    billing provider until Ctrl-C / SIGTERM, printing its URL and, at the end, its invoice
    (what the README's "A hosted model with a budget" section ran against)."""
    import argparse
    import signal
    import time

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--p", type=float, default=0.99, help="accuracy of the simulated answers (default 0.99)")
    parser.add_argument("--cached", type=float, default=0.8, help="share of each prompt reported as cached (default 0.8)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request (default 0)")
    parser.add_argument("--jitter", type=float, default=0.0, help="up to this many more seconds per request")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    with BillingProvider(p=args.p, cached_fraction=args.cached, latency=args.latency, jitter=args.jitter) as provider:
        print(provider.url, flush=True)
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        led = provider.ledger
        print(f"invoice ${provider.invoice():.6f}: {led.requests} requests, {led.prompt_tokens} prompt tokens "
              f"({led.cached_tokens} cached), {led.completion_tokens} completion tokens", flush=True)


if __name__ == "__main__":
    main()
