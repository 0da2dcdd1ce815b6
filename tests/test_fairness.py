"""Fair turns between callers: each map / map_iter call and the stream of submits is a
lane, and a freed worker takes the next entry from the next lane, round robin.

The tests count turns, not time: a log records every item start, and the bounds below
are ones that a single FIFO queue fails by a wide margin (there, a newcomer waits behind
the whole window that earlier callers queued: half to all of BIG_WINDOW entries).
"""

from __future__ import annotations

import asyncio

from antflow import AsyncExecutor

WORKERS = 4
BIG_WINDOW = 100  # the large map's window: what a newcomer waits behind in a FIFO queue


class StartLog:
    """Items that record their start in one shared list, then hold for a few loop turns."""

    def __init__(self) -> None:
        self.starts: list[str] = []

    async def item(self, tag: str) -> str:
        self.starts.append(tag)
        for _ in range(3):
            await asyncio.sleep(0)
        return tag

    def between(self, marker: int, tag: str) -> list[str]:
        """The starts from index ``marker`` up to the last start of ``tag``."""
        last = max(i for i, t in enumerate(self.starts) if t == tag)
        return self.starts[marker : last + 1]


async def test_a_small_map_beside_a_large_map_gets_every_other_turn() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=WORKERS) as executor:
        big = asyncio.create_task(executor.map(log.item, ["big"] * 400, window=BIG_WINDOW))
        while len(log.starts) < 20:  # the large map is in full flow
            await asyncio.sleep(0)
        marker = len(log.starts)
        small = await executor.map(log.item, ["small"] * 10)
        assert small == ["small"] * 10
        window = log.between(marker, "small")
        # Round robin: at most one of the large map's items per small one (plus those
        # already running when the small map came). A FIFO queue puts at least half of
        # BIG_WINDOW large items ahead of the first small one.
        assert window.count("small") == 10
        assert window.count("big") <= 10 + WORKERS
        await big


async def test_a_lone_submit_waits_for_one_freed_worker_not_for_a_large_map() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=WORKERS) as executor:
        big = asyncio.create_task(executor.map(log.item, ["big"] * 400, window=BIG_WINDOW))
        while len(log.starts) < 20:
            await asyncio.sleep(0)
        marker = len(log.starts)
        assert await executor.submit(log.item, "lone") == "lone"
        ahead = log.between(marker, "lone")[:-1]
        assert len(ahead) <= 2  # FIFO: at least BIG_WINDOW / 2 = 50
        await big


async def test_three_callers_take_turns_round_robin() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=1) as executor:
        # One worker, three calls queued before it runs anything: strict alternation.
        calls = [asyncio.create_task(executor.map(log.item, [tag] * 5)) for tag in ("a", "b", "c")]
        results = await asyncio.gather(*calls)
    assert results == [["a"] * 5, ["b"] * 5, ["c"] * 5]
    assert log.starts == ["a", "b", "c"] * 5


async def test_submits_and_a_map_alternate_when_both_wait() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=1) as executor:
        futures = [executor.submit(log.item, "s") for _ in range(4)]
        mapped = asyncio.create_task(executor.map(log.item, ["m"] * 4))
        await asyncio.gather(*futures, mapped)
    # The submits were queued first, so they start; once the map's items are queued
    # too, the two lanes alternate until the submits run out.
    first_m = log.starts.index("m")
    s_left = log.starts[first_m:].count("s")
    assert 1 <= first_m <= 2
    assert log.starts[first_m:] == ["m", "s"] * s_left + ["m"] * (4 - s_left)


async def test_a_map_iter_caller_takes_turns_too() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=WORKERS) as executor:
        big = asyncio.create_task(executor.map(log.item, ["big"] * 400, window=BIG_WINDOW))
        while len(log.starts) < 20:
            await asyncio.sleep(0)
        marker = len(log.starts)
        got = [tag async for tag in executor.map_iter(log.item, ["it"] * 10)]
        assert got == ["it"] * 10
        window = log.between(marker, "it")
        assert window.count("big") <= 10 + WORKERS
        await big


async def test_an_ended_call_leaves_the_turns_to_the_others() -> None:
    log = StartLog()
    async with AsyncExecutor(max_workers=1) as executor:
        stopped = asyncio.create_task(executor.map(log.item, ["x"] * 50))
        kept = asyncio.create_task(executor.map(log.item, ["k"] * 5))
        while log.starts.count("x") < 2:
            await asyncio.sleep(0)
        stopped.cancel()
        assert await kept == ["k"] * 5
        await asyncio.gather(stopped, return_exceptions=True)
        stats = executor.stats()
        assert executor._pool._ring == []
    assert log.starts.count("x") <= 3  # none of its queued items started after the cancel
    assert stats.pending == 0
