"""`cluster.gather`: the first failure cancels the other awaitables and waits for them to end
(`asyncio.gather` lets them run on: a worker's abandoned model requests)."""

from __future__ import annotations

import asyncio

import pytest
from maker.cluster.gather import gather


def test_the_first_failure_stops_the_others_before_it_is_raised() -> None:
    ended: list[str] = []

    async def slow() -> str:
        try:
            await asyncio.sleep(600)
        finally:
            ended.append("slow")
        return "never"

    async def failing() -> str:
        await asyncio.sleep(0)
        raise KeyError("no such column")

    async def scenario() -> set[asyncio.Task]:
        with pytest.raises(KeyError):
            await gather(slow(), failing(), slow())
        return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}

    assert asyncio.run(scenario()) == set()  # nothing left running when the error arrives
    assert ended == ["slow", "slow"]


def test_results_come_in_order() -> None:
    async def after(delay: float, value: int) -> int:
        await asyncio.sleep(delay)
        return value

    assert asyncio.run(gather(after(0.02, 1), after(0, 2))) == [1, 2]
    assert asyncio.run(gather()) == []
