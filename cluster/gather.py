"""`gather`: await several coroutines together, and leave none of them running.

Why not `asyncio.gather`: when one awaitable raises, it raises at once and lets the others
run on.  In a Ray worker those others are model requests (a batch's other steps, another
model's samples) that nothing awaits any more: they go on drawing, and paying, after the
call that started them has failed -- unseen by `ModelWorker.running`, so on an actor a
later pool reuses (`cluster.warm`) they would go on paying for a job that has ended.  Here
the first failure cancels the rest and waits until they have stopped, then raises it.

    >>> import asyncio
    >>> async def two(): return await gather(asyncio.sleep(0, "a"), asyncio.sleep(0, "b"))
    >>> asyncio.run(two())
    ['a', 'b']
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any


async def gather(*aws: Awaitable[Any]) -> list[Any]:
    """The results of `aws`, in order; the first exception (or the caller's cancellation)
    cancels the others, waits for them to end, and is raised."""
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        raise
