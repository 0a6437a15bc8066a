"""Per-model rate limits: requests and tokens per minute, as async token buckets.

Why: a hosted model answers 429 when a client goes faster than its account allows, and
every 429 costs a back-off of seconds.  Speculation and wide windows make bursts easy,
so the client paces itself instead: each call first takes one request from the RPM
bucket and its estimated prompt tokens from the TPM bucket; once the reply is in, the
tokens actually used are settled (`charge`), so over a minute the rate is exact even
though the estimate before the call is rough.

A bucket holds at most one second's worth (at least one unit): providers enforce their
per-minute limits in finer slices, so a full minute's burst at once would still be
refused.  A request bigger than the bucket waits until it is full and leaves it in debt.

Example:
    >>> import asyncio
    >>> bucket = TokenBucket(per_minute=6000)       # 100 per second
    >>> asyncio.run(bucket.acquire(50)); bucket.level < 51
    True
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    """`per_minute` units per minute, refilled continuously, waited for in FIFO order."""

    def __init__(self, per_minute: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if not per_minute > 0:
            raise ValueError(f"a rate limit must be > 0 per minute, got {per_minute!r}")
        self.rate = per_minute / 60.0
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        self.level = self.capacity
        self._clock = clock
        self._updated = clock()
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.waited_s = 0.0  # total time callers spent waiting here

    def _refill(self) -> None:
        now = self._clock()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` units (at most a full bucket) are there, then take `amount`."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:
            self._lock, self._loop = asyncio.Lock(), loop
        async with self._lock:
            self._refill()
            need = min(amount, self.capacity)
            while self.level < need:
                wait = (need - self.level) / self.rate
                self.waited_s += wait
                await asyncio.sleep(wait)
                self._refill()
            self.level -= amount

    def charge(self, amount: float) -> None:
        """Settle units spent after the fact (negative: give back); later callers wait for it."""
        self._refill()
        self.level = min(self.capacity, self.level - amount)


class RateLimits:
    """The two limits of one model; either may be None (no limit)."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.requests = TokenBucket(rpm) if rpm else None
        self.tokens = TokenBucket(tpm) if tpm else None

    async def before(self, estimated_tokens: int) -> None:
        if self.requests is not None:
            await self.requests.acquire(1.0)
        if self.tokens is not None:
            await self.tokens.acquire(float(estimated_tokens))

    def after(self, estimated_tokens: int, used_tokens: int) -> None:
        if self.tokens is not None:
            self.tokens.charge(float(used_tokens - estimated_tokens))
