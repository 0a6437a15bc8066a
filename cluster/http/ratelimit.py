"""How fast and how wide a client may call a model: per-model rate limits (requests and
tokens per minute, as async token buckets) and the in-flight limit (`InFlightLimit`, below).

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


class InFlightLimit:
    """At most ``int(limit)`` calls in flight (one event loop); `limit` adapts between 1 and
    `ceiling`.  `lowest` is the smallest limit it has fallen to.

    Why: a server that answers one request at a time (llama.cpp's server, many self-hosted
    ones) and does not cancel a request whose client has gone serves every request it
    accepted.  With 8 requests in flight and a 2 s deadline, the 8th waits for 7 answers
    before its own; it misses its deadline and is sent again, and the server spends its time
    on answers nobody reads (issue 22: 67 of 71 served answers went to nobody, and the run
    stopped as if the endpoint were down).  So the limit adapts, as TCP's congestion window
    does (additive increase, multiplicative decrease; RFC 5681), on the deadline:

    * a call that misses its deadline halves the limit -- once per round of calls: calls that
      started before a cut miss together, and are one event;
    * a call answered within half its deadline adds ``1/limit`` (one slot per round of
      answers), back up to `concurrency`;
    * an answer that took more than half the deadline holds the limit: the server is near
      what it can answer in time, and one more call in its queue would push a call past it.

    A server that answers everything quickly keeps the full limit (`EndpointConfig.concurrency`);
    one that serves one request at a time settles where its answers arrive within the deadline.

    Example:
        >>> import asyncio
        >>> async def demo():
        ...     limit = InFlightLimit(8, deadline_s=2.0)
        ...     slot = await limit.acquire()
        ...     await limit.release(slot, latency_s=None, missed=True)   # a call missed its deadline
        ...     return limit.limit
        >>> asyncio.run(demo())
        4.0
    """

    def __init__(self, ceiling: int, deadline_s: float) -> None:
        self.ceiling = max(1, int(ceiling))
        self.deadline_s = deadline_s
        self.limit = float(self.ceiling)
        self.lowest = self.limit
        self.in_flight = 0
        self._epoch = 0  # bumped by each cut: a miss counts only for calls that started after it
        self._free = asyncio.Condition()

    async def acquire(self) -> int:
        """Wait for a free slot; returns the slot's token for `release`."""
        async with self._free:
            await self._free.wait_for(lambda: self.in_flight < max(1, int(self.limit)))
            self.in_flight += 1
            return self._epoch

    async def release(self, token: int, latency_s: float | None, missed: bool = False) -> bool:
        """Give the slot back, after an answer that took `latency_s` seconds, a call that
        `missed` its deadline, or neither (an error, which says nothing about load: both
        None/False).  Returns whether this call lowered the limit."""
        self.in_flight -= 1  # before any await: a cancelled caller still gives its slot back
        cut = False
        if missed:
            if token == self._epoch and self.limit > 1:
                self.limit = max(1.0, self.limit / 2)
                self.lowest = min(self.lowest, self.limit)
                self._epoch += 1
                cut = True
        elif latency_s is not None and latency_s <= self.deadline_s / 2:
            self.limit = min(float(self.ceiling), self.limit + 1.0 / self.limit)
        async with self._free:
            self._free.notify_all()
        return cut
