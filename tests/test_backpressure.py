"""max_pending: how many items may wait to start; submit refuses beyond it, asubmit waits.

An item waits from the moment it is accepted until a worker starts it; running items do
not count. map and map_iter wait for room too, and read their input only when there is
room, so backpressure reaches whatever produces the input.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from _helpers import CountingInput

from antflow import AsyncExecutor, AsyncFuture, ExecutorShutdownError

GENEROUS = 10.0


async def echo(x: Any) -> Any:
    await asyncio.sleep(0)
    return x


class Gate:
    """Holds workers of one executor busy until opened."""

    def __init__(self, executor: AsyncExecutor) -> None:
        self.executor = executor
        self.event = asyncio.Event()

    async def hold(self) -> AsyncFuture[str]:
        """Occupy one more worker and return once the holding task is running."""
        started = asyncio.Event()

        async def held() -> str:
            started.set()
            await self.event.wait()
            return "held"

        future = self.executor.submit(held)
        await started.wait()
        return future

    def open(self) -> None:
        self.event.set()


@asynccontextmanager
async def pool(**options: Any) -> AsyncIterator[tuple[AsyncExecutor, Gate]]:
    """An executor and its gate; on the way out the gate opens (a failing test never hangs)."""
    executor = AsyncExecutor(**options)
    gate = Gate(executor)
    try:
        yield executor, gate
    finally:
        gate.open()
        await executor.shutdown()


async def yield_to_the_loop(times: int = 20) -> None:
    for _ in range(times):
        await asyncio.sleep(0)


# -- construction -----------------------------------------------------------------------


def test_a_negative_max_pending_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        AsyncExecutor(max_pending=-1)


@pytest.mark.parametrize("value", [1.5, "3", None, True])
def test_a_max_pending_that_is_not_an_int_is_refused_at_construction(value: object) -> None:
    with pytest.raises(TypeError, match="max_pending"):
        AsyncExecutor(max_pending=value)  # type: ignore[arg-type]


# -- submit -------------------------------------------------------------------------------


async def test_submit_refuses_the_item_after_max_pending_items_are_waiting() -> None:
    async with pool(max_workers=1, max_pending=3) as (executor, gate):
        await gate.hold()
        waiting = [executor.submit(echo, i) for i in range(3)]
        with pytest.raises(asyncio.QueueFull):
            executor.submit(echo, 3)
        gate.open()
        assert [await f for f in waiting] == [0, 1, 2]


async def test_a_refused_submit_leaves_no_trace() -> None:
    calls: list[int] = []

    async def record(x: int) -> None:
        calls.append(x)

    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(record, 1)
        before = executor.stats()
        with pytest.raises(asyncio.QueueFull):
            executor.submit(record, 2)
        assert executor.stats() == before
        gate.open()
    assert calls == [1]


async def test_running_items_do_not_count_against_max_pending() -> None:
    async with pool(max_workers=3, max_pending=1) as (executor, gate):
        for _ in range(3):
            await gate.hold()
        waiting = executor.submit(echo, "waits")
        with pytest.raises(asyncio.QueueFull):
            executor.submit(echo, "refused")
        gate.open()
        assert await waiting == "waits"


async def test_items_submitted_together_wait_even_while_workers_are_idle() -> None:
    # Nothing runs before submit returns, so an item waits until a worker has picked it
    # up, as with asyncio.Queue(maxsize): idle workers do not make room in the same tick.
    async with AsyncExecutor(max_workers=4, max_pending=2) as executor:
        first = executor.submit(echo, 1)
        second = executor.submit(echo, 2)
        with pytest.raises(asyncio.QueueFull):
            executor.submit(echo, 3)
        assert [await first, await second] == [1, 2]


async def test_an_item_that_starts_makes_room_for_exactly_one_more_submit() -> None:
    outcomes: list[str] = []

    async def submits_when_it_starts() -> None:
        # This item has just left the queue: room for one, and only one, more.
        executor.submit(echo, "room")
        outcomes.append("accepted")
        try:
            executor.submit(echo, "no room")
        except asyncio.QueueFull:
            outcomes.append("refused")

    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()
        submitter = executor.submit(submits_when_it_starts)
        executor.submit(echo, "filler")
        with pytest.raises(asyncio.QueueFull):
            executor.submit(echo, "full")
        gate.open()
        await submitter
    assert outcomes == ["accepted", "refused"]


async def test_cancelling_a_waiting_item_makes_room() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        waiting = executor.submit(echo, "cancelled")
        assert waiting.cancel()
        replacement = executor.submit(echo, "replacement")
        gate.open()
        assert await replacement == "replacement"


async def test_max_pending_zero_puts_no_bound_on_waiting_items() -> None:
    async with pool(max_workers=1, max_pending=0) as (executor, gate):
        await gate.hold()
        futures = [executor.submit(echo, i) for i in range(1000)]
        assert executor.stats().pending == 1000
        gate.open()
        assert [await f for f in futures] == list(range(1000))


# -- asubmit ------------------------------------------------------------------------------


async def test_asubmit_waits_for_room_and_then_submits() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "waiting")
        late = asyncio.create_task(executor.asubmit(echo, "late"))
        await yield_to_the_loop()
        assert not late.done()
        assert executor.stats().submitted == 2  # the held item and the waiting one
        gate.open()
        future = await asyncio.wait_for(late, GENEROUS)
        assert await future == "late"


async def test_asubmit_with_room_does_not_wait_for_an_item_to_start() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        # The worker is held, so nothing starts: asubmit must not need anything to start.
        future = await asyncio.wait_for(executor.asubmit(echo, "room"), GENEROUS)
        assert not future.done()
        gate.open()
        assert await future == "room"


async def test_asubmit_passes_arguments_and_options_like_submit() -> None:
    attempts = 0

    async def flaky(a: int, *, b: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise ConnectionError("transient")
        return a + b

    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        future = await executor.asubmit(flaky, 1, b=2, retries=1, retry_delay=0)
        assert await future == 3
        assert attempts == 2


async def test_asubmit_waiters_get_room_in_the_order_they_came() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "waiting")
        order: list[str] = []

        async def submit_late(tag: str) -> AsyncFuture[Any]:
            future = await executor.asubmit(echo, tag)
            order.append(tag)
            return future

        tasks = [asyncio.create_task(submit_late(tag)) for tag in "abc"]
        await yield_to_the_loop()
        gate.open()
        futures = await asyncio.wait_for(asyncio.gather(*tasks), GENEROUS)
        assert order == ["a", "b", "c"]
        assert [await f for f in futures] == ["a", "b", "c"]


async def test_a_cancelled_asubmit_submits_nothing() -> None:
    calls: list[str] = []

    async def record(tag: str) -> None:
        calls.append(tag)

    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(record, "waiting")
        late = asyncio.create_task(executor.asubmit(record, "cancelled"))
        await yield_to_the_loop()
        late.cancel()
        with pytest.raises(asyncio.CancelledError):
            await late
        gate.open()
    assert calls == ["waiting"]
    assert executor.stats().submitted == 2


async def test_an_asubmit_cancelled_just_after_it_got_room_passes_the_room_on() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        first: asyncio.Task[AsyncFuture[Any]] | None = None

        async def cancels_the_first_waiter() -> None:
            # Starting this item has just woken the first asubmit; cancel it before it runs.
            assert first is not None
            first.cancel()

        executor.submit(cancels_the_first_waiter)
        first = asyncio.create_task(executor.asubmit(echo, "first"))
        second = asyncio.create_task(executor.asubmit(echo, "second"))
        await yield_to_the_loop()
        gate.open()
        future = await asyncio.wait_for(second, GENEROUS)
        assert await future == "second"
        assert first.cancelled()


async def test_an_asubmit_cancelled_as_room_is_freed_ends_cancelled_and_the_room_goes_on() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        queued = executor.submit(echo, "queued")  # the queue is full
        first = asyncio.create_task(executor.asubmit(echo, "first"))
        second = asyncio.create_task(executor.asubmit(echo, "second"))
        await yield_to_the_loop()
        # In one iteration: the first caller gives up, then room is freed. The room
        # passes over the first (cancelled) waiter to the second, before the first runs.
        first.cancel()
        assert queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        future = await asyncio.wait_for(second, GENEROUS)
        gate.open()
        assert await future.result(timeout=GENEROUS) == "second"


async def test_asubmit_raises_executor_shutdown_error_when_shutdown_happens_while_it_waits() -> (
    None
):
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "waiting")
        late = asyncio.create_task(executor.asubmit(echo, "late"))
        await yield_to_the_loop()
        await executor.shutdown(wait=False)
        with pytest.raises(ExecutorShutdownError):
            await asyncio.wait_for(late, GENEROUS)
        gate.open()


async def test_asubmit_without_max_pending_never_waits() -> None:
    async with pool(max_workers=1) as (executor, gate):
        await gate.hold()
        futures = [await executor.asubmit(echo, i) for i in range(100)]
        assert executor.stats().pending == 100
        gate.open()
        assert [await f for f in futures] == list(range(100))


# -- map and map_iter -------------------------------------------------------------------


async def agen(values: list[int]) -> AsyncIterator[int]:
    for value in values:
        yield value


async def test_room_that_a_woken_call_does_not_fill_goes_on_to_the_next_waiter() -> None:
    # Two calls over async inputs wait for room. The one woken first has nothing left to
    # queue (its input is empty): the place must go on to the other, not be lost.
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "queued")  # the queue is full
        empty = asyncio.create_task(executor.map(echo, agen([])))
        other = asyncio.create_task(executor.map(echo, agen([1, 2])))
        await yield_to_the_loop()
        assert len(executor._pool._room_waiters) == 2
        gate.open()
        assert await asyncio.wait_for(empty, GENEROUS) == []
        assert await asyncio.wait_for(other, GENEROUS) == [1, 2]


async def test_room_that_a_woken_call_over_a_sync_input_does_not_fill_goes_on() -> None:
    # The same over synchronous inputs that the caller reads (a window below the pool's
    # size keeps a call pushed): the call woken first finds its input empty.
    async with pool(max_workers=2, max_pending=1) as (executor, gate):
        await gate.hold()
        await gate.hold()
        executor.submit(echo, "queued")  # the queue is full
        empty = asyncio.create_task(executor.map(echo, [], window=1))
        other = asyncio.create_task(executor.map(echo, [1, 2], window=1))
        await yield_to_the_loop()
        assert len(executor._pool._room_waiters) == 2
        gate.open()
        assert await asyncio.wait_for(empty, GENEROUS) == []
        assert await asyncio.wait_for(other, GENEROUS) == [1, 2]


@pytest.mark.parametrize("kind", ["map", "map_iter"])
async def test_an_async_input_never_queues_past_max_pending_when_others_take_the_room(
    kind: str,
) -> None:
    # The caller counts the room, then awaits its input item by item; submits made while
    # it awaits take places. It must wait for room again, not queue past max_pending.
    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()

        async def contested() -> AsyncIterator[int]:
            for i in range(4):
                await asyncio.sleep(0)
                if executor.stats().pending < 2:
                    executor.submit(echo, "rival")  # takes a place while the caller waits
                yield i

        async def call() -> list[int]:
            if kind == "map":
                return await executor.map(echo, contested())
            return [r async for r in executor.map_iter(echo, contested())]

        caller = asyncio.create_task(call())
        peak = 0
        for _ in range(50):  # the worker is held: look at the queue at every step
            peak = max(peak, executor.stats().pending)
            await asyncio.sleep(0)
        gate.open()
        assert await asyncio.wait_for(caller, GENEROUS) == [0, 1, 2, 3]
    assert peak == 2


async def test_an_asubmit_waiter_that_loses_its_room_to_a_submit_keeps_its_place() -> None:
    order: list[str] = []
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        queued = executor.submit(echo, "queued")  # the queue is full

        async def waiter(tag: str) -> None:
            await executor.asubmit(echo, tag)
            order.append(tag)

        first = asyncio.create_task(waiter("first"))
        await yield_to_the_loop()
        second = asyncio.create_task(waiter("second"))
        await yield_to_the_loop()
        assert queued.cancel()  # room for one: the first waiter is woken...
        executor.submit(echo, "rival")  # ...but a submit takes the place before it runs
        await yield_to_the_loop()
        assert order == []
        gate.open()
        await asyncio.wait_for(asyncio.gather(first, second), GENEROUS)
    assert order == ["first", "second"]


async def test_asubmit_waiters_that_all_lose_their_room_to_submits_keep_their_order() -> None:
    order: list[str] = []
    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()
        queued = [executor.submit(echo, "queued") for _ in range(2)]  # the queue is full

        async def waiter(tag: str) -> None:
            await executor.asubmit(echo, tag)
            order.append(tag)

        tasks = []
        for tag in "abc":
            tasks.append(asyncio.create_task(waiter(tag)))
            await yield_to_the_loop()
        assert all(future.cancel() for future in queued)  # room for two: a and b are woken...
        executor.submit(echo, "rival 1")  # ...but submits take both places before they run
        executor.submit(echo, "rival 2")
        await yield_to_the_loop()
        assert order == []
        gate.open()  # each item that starts now makes room for one waiter
        await asyncio.wait_for(asyncio.gather(*tasks), GENEROUS)
    assert order == ["a", "b", "c"]


@pytest.mark.parametrize("seed", range(20))
async def test_asubmit_waiters_get_room_in_the_order_they_came_whatever_overtakes_them(
    seed: int,
) -> None:
    # The one worker is held throughout, so places come free only when a queued item is
    # cancelled; each round frees a few and lets submits take some of them before the woken
    # waiters run. However they are overtaken, the waiters get room in the order they came.
    rng = random.Random(seed)
    got_room: list[int] = []
    async with pool(max_workers=1, max_pending=rng.randint(1, 3)) as (executor, gate):
        await gate.hold()
        queued: list[AsyncFuture[Any]] = []
        with pytest.raises(asyncio.QueueFull):
            while True:
                queued.append(executor.submit(echo, "filler"))

        async def waiter(n: int) -> None:
            queued.append(await executor.asubmit(echo, n))
            got_room.append(n)

        waiters = []
        for n in range(rng.randint(2, 8)):
            waiters.append(asyncio.create_task(waiter(n)))
            await yield_to_the_loop(2)  # in line before the next one comes
        rounds = 0
        while not all(w.done() for w in waiters) and rounds < 500:
            rounds += 1
            waiting = [f for f in queued if not f.done()]
            freed = rng.sample(waiting, rng.randint(1, len(waiting)))
            for future in freed:
                assert future.cancel()
            for _ in range(rng.randint(0, len(freed))):  # rivals, before any waiter runs
                queued.append(executor.submit(echo, "rival"))
            await yield_to_the_loop(rng.randint(1, 4))
        assert all(w.done() for w in waiters), f"waiters left after {rounds} rounds"
    assert got_room == sorted(got_room)
    assert len(got_room) == len(waiters)


# How a call can end while its caller waits for room in the queue.
ROOM_ENDINGS = [
    pytest.param("timeout", asyncio.TimeoutError, id="its-deadline-passes"),
    pytest.param("shutdown", ExecutorShutdownError, id="shutdown-cancel-futures"),
]


@pytest.mark.parametrize(("ending", "error"), ROOM_ENDINGS)
@pytest.mark.parametrize("kind", ["map", "map_iter"])
async def test_a_call_that_ends_while_it_waits_for_room_raises_at_once(
    kind: str, ending: str, error: type[BaseException]
) -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()  # held until the end of the test: room never comes
        queued = executor.submit(echo, "queued")
        timeout = 0.05 if ending == "timeout" else None

        async def call() -> list[int]:
            if kind == "map":
                return await executor.map(echo, agen([1, 2]), timeout=timeout)
            return [r async for r in executor.map_iter(echo, agen([1, 2]), timeout=timeout)]

        caller = asyncio.create_task(call())
        await yield_to_the_loop()
        assert len(executor._pool._room_waiters) == 1
        if ending == "shutdown":
            await executor.shutdown(wait=False, cancel_futures=True)
        # (Not wait_for: its own TimeoutError would pass for the call's.)
        await asyncio.wait([caller], timeout=GENEROUS)
        assert caller.done(), "the call went on waiting for room after it had ended"
        with pytest.raises(error):
            caller.result()
        assert not executor._pool._room_waiters
        assert queued.cancelled() == (ending == "shutdown")


async def test_map_waits_for_room_instead_of_raising_queue_full() -> None:
    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        assert await executor.map(echo, range(30), window=10) == list(range(30))


async def test_map_iter_waits_for_room_instead_of_raising_queue_full() -> None:
    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        results = [r async for r in executor.map_iter(echo, range(30), window=10)]
        assert results == list(range(30))


async def test_map_does_not_read_its_input_while_the_queue_is_full() -> None:
    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "a")
        executor.submit(echo, "b")
        source = CountingInput(10)
        call = asyncio.create_task(executor.map(echo, source))
        await yield_to_the_loop()
        assert source.read == 0
        gate.open()
        assert await asyncio.wait_for(call, GENEROUS) == list(range(10))


async def test_map_iter_does_not_read_its_input_while_the_queue_is_full() -> None:
    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "a")
        executor.submit(echo, "b")
        source = CountingInput(10)

        async def consume() -> list[int]:
            return [r async for r in executor.map_iter(echo, source)]

        call = asyncio.create_task(consume())
        await yield_to_the_loop()
        assert source.read == 0
        gate.open()
        assert await asyncio.wait_for(call, GENEROUS) == list(range(10))


async def test_map_does_not_read_an_async_input_while_the_queue_is_full() -> None:
    read = 0

    async def produce() -> AsyncIterator[int]:
        nonlocal read
        for i in range(10):
            read += 1
            yield i

    async with pool(max_workers=1, max_pending=2) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "a")
        executor.submit(echo, "b")
        call = asyncio.create_task(executor.map(echo, produce()))
        await yield_to_the_loop()
        assert read == 0
        gate.open()
        assert await asyncio.wait_for(call, GENEROUS) == list(range(10))


async def test_map_reads_an_input_only_when_the_queue_has_room() -> None:
    max_pending = 3
    pending_at_reads: list[int] = []

    def source() -> Iterator[int]:
        for i in range(40):
            pending_at_reads.append(executor.stats().pending)
            yield i

    async def work(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    async with AsyncExecutor(max_workers=2, max_pending=max_pending) as executor:
        assert await executor.map(work, source(), window=20) == list(range(40))
    assert len(pending_at_reads) == 40
    assert max(pending_at_reads) < max_pending


async def test_map_iter_reads_an_input_only_when_the_queue_has_room() -> None:
    max_pending = 3
    pending_at_reads: list[int] = []

    def source() -> Iterator[int]:
        for i in range(40):
            pending_at_reads.append(executor.stats().pending)
            yield i

    async def work(x: int) -> int:
        await asyncio.sleep(0.001)
        return x

    async with AsyncExecutor(max_workers=2, max_pending=max_pending) as executor:
        results = [r async for r in executor.map_iter(work, source(), window=20)]
        assert results == list(range(40))
    assert len(pending_at_reads) == 40
    assert max(pending_at_reads) < max_pending


async def test_a_map_cancelled_while_it_waits_for_room_queues_nothing() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "waiting")
        source = CountingInput(10)
        call = asyncio.create_task(executor.map(echo, source))
        await yield_to_the_loop()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        gate.open()
    assert source.read == 0
    assert executor.stats().submitted == 2


async def test_a_map_waiting_for_room_still_finishes_after_shutdown() -> None:
    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        executor.submit(echo, "waiting")
        call = asyncio.create_task(executor.map(echo, range(5)))
        await yield_to_the_loop()
        await executor.shutdown(wait=False)
        gate.open()
        assert await asyncio.wait_for(call, GENEROUS) == list(range(5))


# -- random mixes of callers under max_pending ----------------------------------------------

CALLERS = ["map-async", "map_iter-async", "map-sync-window", "asubmit", "submit"]


async def run_random_mix(seed: int) -> tuple[int, int, list[str]]:
    """Several callers of random kinds share a small queue; some end early (a failing item,
    a deadline, a shutdown with cancel_futures). Return the limit, the largest number of
    items seen waiting, and what went wrong."""
    rng = random.Random(seed)
    limit = rng.randint(1, 3)
    executor = AsyncExecutor(max_workers=rng.randint(1, 3), max_pending=limit)
    problems: list[str] = []

    async def item(x: int) -> int:
        for _ in range(x % 3):
            await asyncio.sleep(0)
        if x == 7:
            raise ValueError(x)
        return x

    async def numbers(n: int) -> AsyncIterator[int]:
        for i in range(n):
            for _ in range(rng.randint(0, 2)):
                await asyncio.sleep(0)
            yield i

    async def caller(kind: str) -> None:
        n = rng.randint(0, 12)
        timeout = rng.choice([None, None, 0.002, 0.02])
        expected: tuple[type[BaseException], ...] = (ExecutorShutdownError,)
        if n > 7:
            expected += (ValueError,)
        if timeout is not None:
            expected += (asyncio.TimeoutError,)
        try:
            if kind == "map-async":
                got = await executor.map(item, numbers(n), timeout=timeout)
            elif kind == "map_iter-async":
                got = [r async for r in executor.map_iter(item, numbers(n), timeout=timeout)]
            elif kind == "map-sync-window":
                got = await executor.map(item, range(n), timeout=timeout, window=1)
            elif kind == "asubmit":
                got = [await (await executor.asubmit(item, 3))]
                n, expected = 4, (ExecutorShutdownError, asyncio.CancelledError)
            else:
                try:
                    got = [await executor.submit(item, 3)]
                except asyncio.QueueFull:
                    return  # refused at once: allowed when the queue is full
                n, expected = 4, (asyncio.CancelledError,)
            if kind in ("asubmit", "submit"):
                assert got == [3]
            elif got != list(range(n)):
                problems.append(f"{kind} returned {got}, not list(range({n}))")
        except expected:
            pass
        except BaseException as exc:  # reported, with its kind
            problems.append(f"{kind}: unexpected {exc!r}")

    tasks = [asyncio.create_task(caller(rng.choice(CALLERS))) for _ in range(rng.randint(2, 6))]
    shutdown_at = rng.choice([None, None, 0, 5, 20])
    peak = step = 0
    while not all(t.done() for t in tasks) and step < 20_000:
        peak = max(peak, executor.stats().pending)
        if step == shutdown_at:
            await executor.shutdown(wait=False, cancel_futures=True)
        step += 1
        await asyncio.sleep(0 if step < 2_000 else 0.001)
    if not all(t.done() for t in tasks):
        problems.append(f"callers still waiting: {executor._pool!r}")
        for t in tasks:
            t.cancel()
        await asyncio.wait(tasks, timeout=GENEROUS)
    await asyncio.wait([asyncio.ensure_future(executor.shutdown())], timeout=GENEROUS)
    if executor._pool._workers:
        problems.append(f"shutdown did not end: {executor._pool!r}")
    return limit, peak, problems


@pytest.mark.parametrize("seed", range(25))
async def test_random_callers_under_max_pending_all_end_and_never_overfill(seed: int) -> None:
    limit, peak, problems = await run_random_mix(seed)
    assert problems == []
    assert peak <= limit


async def test_an_async_input_that_stalls_holds_no_place_in_the_queue() -> None:
    # A call over an async input is woken for the one free place, then its input stalls: the
    # place must go to the next waiter meanwhile, not stay idle with the queue empty.
    stall = asyncio.Event()

    async def stalls() -> AsyncIterator[int]:
        await stall.wait()
        yield 1

    async with pool(max_workers=1, max_pending=1) as (executor, gate):
        await gate.hold()
        queued = executor.submit(echo, "queued")  # the queue is full
        call = asyncio.create_task(executor.map(echo, stalls()))
        try:
            await yield_to_the_loop()
            late = asyncio.create_task(executor.asubmit(echo, "late"))
            await yield_to_the_loop()
            assert len(executor._pool._room_waiters) == 2
            assert queued.cancel()  # one free place: the call is first in line...
            future = await asyncio.wait_for(late, GENEROUS)  # ...and lets it go on
            gate.open()
            assert await asyncio.wait_for(future, GENEROUS) == "late"
        finally:
            stall.set()  # (so that the executor can shut down whatever happened)
        assert await asyncio.wait_for(call, GENEROUS) == [1]
