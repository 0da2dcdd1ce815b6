"""as_completed and wait: completion order, deadlines, strategies, and clean listeners.

Some tests look at ``future._listeners`` (internal): it is the one place where a waiter
left behind by a cancelled or abandoned caller would show.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from typing import Any

import pytest
from _helpers import wait_until

from antflow import AsyncExecutor, AsyncFuture, WaitStrategy


class Gates:
    """Async function ``gates(i)`` that returns ``i`` once ``gates.open(i)`` is called.

    ``gates.fail(i)`` makes call ``i`` raise ``ValueError`` instead.
    """

    def __init__(self) -> None:
        self._events: dict[Any, asyncio.Event] = {}
        self._errors: dict[Any, BaseException] = {}

    def _event(self, i: Any) -> asyncio.Event:
        return self._events.setdefault(i, asyncio.Event())

    async def __call__(self, i: Any) -> Any:
        await self._event(i).wait()
        if i in self._errors:
            raise self._errors[i]
        return i

    def open(self, *keys: Any) -> None:
        for i in keys:
            self._event(i).set()

    def fail(self, i: Any, error: BaseException | None = None) -> None:
        self._errors[i] = error or ValueError(f"item {i} failed")
        self.open(i)


def has_listeners(future: AsyncFuture[Any]) -> bool:
    return bool(future._listeners)


# -- as_completed --------------------------------------------------------------------------


async def test_as_completed_yields_futures_in_completion_order() -> None:
    gates = Gates()
    order = [2, 0, 3, 1]
    async with AsyncExecutor(max_workers=4) as executor:
        futures = [executor.submit(gates, i) for i in range(4)]
        gates.open(order[0])
        seen: list[int] = []
        async for future in executor.as_completed(futures):
            seen.append(await future.result())
            if len(seen) < len(order):
                gates.open(order[len(seen)])
        assert seen == order


async def test_as_completed_yields_failed_and_cancelled_futures_too() -> None:
    gates = Gates()
    async with AsyncExecutor(max_workers=2) as executor:
        ok, bad, cancelled = (executor.submit(gates, i) for i in range(3))
        cancelled.cancel()
        gates.open(0)
        gates.fail(1)
        got = [f async for f in executor.as_completed([ok, bad, cancelled])]
        assert set(got) == {ok, bad, cancelled}
        assert len(got) == 3


async def test_as_completed_yields_already_done_futures_without_waiting() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        done = executor.submit(gates, "done")
        gates.open("done")
        await done
        pending = executor.submit(gates, "pending")
        iterator = executor.as_completed([pending, done])
        assert await asyncio.wait_for(anext(iterator), 1) is done
        gates.open("pending")
        assert await asyncio.wait_for(anext(iterator), 1) is pending
        with pytest.raises(StopAsyncIteration):
            await anext(iterator)


async def test_as_completed_yields_a_duplicated_future_once() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a = executor.submit(gates, "a")
        b = executor.submit(gates, "b")
        gates.open("a", "b")
        got = [f async for f in executor.as_completed([a, b, a, a, b])]
        assert len(got) == 2
        assert set(got) == {a, b}


async def test_as_completed_of_no_futures_yields_nothing() -> None:
    async with AsyncExecutor() as executor:
        assert [f async for f in executor.as_completed([])] == []


async def test_as_completed_timeout_raises_timeout_error() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        never = executor.submit(gates, "never")
        with pytest.raises(asyncio.TimeoutError):
            async for _ in executor.as_completed([never], timeout=0.05):
                pass
        assert not never.done()  # nothing was cancelled
        assert not has_listeners(never)
        gates.open("never")
        assert await never == "never"


async def test_as_completed_timeout_is_a_deadline_for_the_whole_iteration() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        first = executor.submit(gates, "first")
        second = executor.submit(gates, "second")
        gates.open("first")
        seen: list[Any] = []
        with pytest.raises(asyncio.TimeoutError):
            async for future in executor.as_completed([first, second], timeout=0.1):
                seen.append(future)
                await asyncio.sleep(0.15)  # the deadline passes while the consumer works
                gates.open("second")  # ends just after the deadline: too late
        assert seen == [first]
        assert await second == "second"


async def test_as_completed_removes_its_listeners_when_the_consumer_is_cancelled() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]

        async def consume() -> None:
            async for _ in executor.as_completed(futures):
                pass

        consumer = asyncio.create_task(consume())
        await wait_until(lambda: all(has_listeners(f) for f in futures))
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert not any(has_listeners(f) for f in futures)
        assert not any(f.done() for f in futures)  # the futures themselves live on
        gates.open(0, 1, 2)
        assert [await f for f in futures] == [0, 1, 2]


async def test_as_completed_removes_its_listeners_after_break_and_aclose() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        gates.open(1)
        iterator = executor.as_completed(futures)
        async for future in iterator:
            assert await future == 1
            break
        assert has_listeners(futures[0])
        await iterator.aclose()  # type: ignore[attr-defined]
        assert not has_listeners(futures[0])
        assert not has_listeners(futures[2])
        gates.open(0, 2)


async def test_as_completed_refuses_what_is_not_an_async_future() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(TypeError):
            async for _ in executor.as_completed([object()]):  # type: ignore[list-item]
                pass


# -- wait ----------------------------------------------------------------------------------


async def test_wait_all_completed_returns_every_future_done() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        waiter = asyncio.create_task(executor.wait(futures))
        gates.open(0, 1)
        await asyncio.sleep(0.01)
        assert not waiter.done()
        gates.fail(2)
        done, pending = await waiter
        assert done == set(futures)
        assert pending == set()


async def test_wait_without_a_timeout_waits_for_all_by_default() -> None:
    async def later(x: int) -> int:
        await asyncio.sleep(0.05)
        return x

    async with AsyncExecutor() as executor:
        futures = [executor.submit(later, i) for i in range(3)]
        done, pending = await executor.wait(futures)
        assert (done, pending) == (set(futures), set())


async def test_wait_first_completed_returns_when_one_future_ends() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a, b, c = (executor.submit(gates, i) for i in range(3))
        waiter = asyncio.create_task(
            executor.wait([a, b, c], return_when=WaitStrategy.FIRST_COMPLETED)
        )
        await asyncio.sleep(0.01)
        assert not waiter.done()
        gates.open(1)
        done, pending = await waiter
        assert done == {b}
        assert pending == {a, c}
        gates.open(0, 2)


async def test_wait_first_completed_with_a_done_future_returns_at_once() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a = executor.submit(gates, 0)
        b = executor.submit(gates, 1)
        gates.open(0)
        await a
        done, pending = await executor.wait([a, b], return_when=WaitStrategy.FIRST_COMPLETED)
        assert (done, pending) == ({a}, {b})
        gates.open(1)


async def test_wait_first_exception_returns_when_a_future_fails() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a, b, c = (executor.submit(gates, i) for i in range(3))
        waiter = asyncio.create_task(
            executor.wait([a, b, c], return_when=WaitStrategy.FIRST_EXCEPTION)
        )
        gates.open(0)  # a success does not end the wait
        await asyncio.sleep(0.01)
        assert not waiter.done()
        gates.fail(2)
        done, pending = await waiter
        assert done == {a, c}
        assert pending == {b}
        gates.open(1)


async def test_wait_first_exception_does_not_return_for_a_cancelled_future() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a, b, c = (executor.submit(gates, i) for i in range(3))
        waiter = asyncio.create_task(
            executor.wait([a, b, c], return_when=WaitStrategy.FIRST_EXCEPTION)
        )
        await asyncio.sleep(0.01)
        a.cancel()
        await asyncio.sleep(0.01)
        assert not waiter.done()
        gates.fail(1)
        done, pending = await waiter
        assert done == {a, b}
        assert pending == {c}
        gates.open(2)


async def test_wait_first_exception_without_failures_waits_for_all() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        waiter = asyncio.create_task(
            executor.wait(futures, return_when=WaitStrategy.FIRST_EXCEPTION)
        )
        gates.open(0, 1)
        await asyncio.sleep(0.01)
        assert not waiter.done()
        gates.open(2)
        assert await waiter == (set(futures), set())


@pytest.mark.parametrize(
    ("return_when", "expected"),
    [
        ("FIRST_COMPLETED", "first"),
        (asyncio.FIRST_COMPLETED, "first"),
        (concurrent.futures.FIRST_COMPLETED, "first"),
        ("FIRST_EXCEPTION", "exception"),
        (asyncio.FIRST_EXCEPTION, "exception"),
        ("ALL_COMPLETED", "all"),
        (asyncio.ALL_COMPLETED, "all"),
    ],
)
async def test_wait_accepts_the_strategy_names_as_strings(return_when: Any, expected: str) -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        ok, bad, slow = (executor.submit(gates, i) for i in range(3))
        gates.open(0)
        await ok
        waiter = asyncio.create_task(executor.wait([ok, bad, slow], return_when=return_when))
        await asyncio.sleep(0.01)
        if expected == "first":
            assert await waiter == ({ok}, {bad, slow})
        else:
            assert not waiter.done()
            gates.fail(1)
            if expected == "exception":
                assert await waiter == ({ok, bad}, {slow})
            else:
                await asyncio.sleep(0.01)
                assert not waiter.done()
                gates.open(2)
                assert await waiter == ({ok, bad, slow}, set())
        gates.open(1, 2)


async def test_wait_with_an_unknown_return_when_is_a_value_error() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(ValueError, match="return_when"):
            await executor.wait([], return_when="FIRST_SUCCESS")


async def test_wait_all_completed_raises_timeout_error_when_time_runs_out() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(2)]
        gates.open(0)
        with pytest.raises(asyncio.TimeoutError):
            await executor.wait(futures, timeout=0.05)
        gates.open(1)


async def test_wait_first_completed_timeout_returns_nothing_done_and_all_pending() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        done, pending = await executor.wait(
            futures, timeout=0.05, return_when=WaitStrategy.FIRST_COMPLETED
        )
        assert done == set()
        assert pending == set(futures)
        gates.open(0, 1, 2)


async def test_wait_first_exception_timeout_returns_what_is_done_and_pending() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        gates.open(0)
        await futures[0]
        done, pending = await executor.wait(
            futures, timeout=0.05, return_when=WaitStrategy.FIRST_EXCEPTION
        )
        assert done == {futures[0]}
        assert pending == set(futures[1:])
        gates.open(1, 2)


async def test_wait_never_cancels_the_futures() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        with pytest.raises(asyncio.TimeoutError):
            await executor.wait(futures, timeout=0.02)
        await executor.wait(futures, timeout=0.02, return_when=WaitStrategy.FIRST_COMPLETED)
        assert not any(f.done() for f in futures)
        assert not any(has_listeners(f) for f in futures)
        gates.open(0, 1, 2)
        assert [await f for f in futures] == [0, 1, 2]


async def test_wait_of_no_futures_returns_two_empty_sets() -> None:
    async with AsyncExecutor() as executor:
        assert await executor.wait([]) == (set(), set())
        assert await executor.wait([], return_when=WaitStrategy.FIRST_COMPLETED) == (set(), set())


async def test_wait_counts_a_duplicated_future_once() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        a = executor.submit(gates, "a")
        b = executor.submit(gates, "b")
        gates.open("a", "b")
        done, pending = await executor.wait([a, a, b, b])
        assert (done, pending) == ({a, b}, set())


async def test_wait_removes_its_listeners_when_its_caller_is_cancelled() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        waiter = asyncio.create_task(executor.wait(futures))
        await wait_until(lambda: all(has_listeners(f) for f in futures))
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not any(has_listeners(f) for f in futures)
        assert not any(f.done() for f in futures)
        gates.open(0, 1, 2)
        assert [await f for f in futures] == [0, 1, 2]


async def test_wait_removes_its_listeners_from_the_futures_still_pending_when_it_returns() -> None:
    gates = Gates()
    async with AsyncExecutor() as executor:
        futures = [executor.submit(gates, i) for i in range(3)]
        waiter = asyncio.create_task(
            executor.wait(futures, return_when=WaitStrategy.FIRST_COMPLETED)
        )
        await wait_until(lambda: all(has_listeners(f) for f in futures))
        gates.open(0)
        await waiter
        assert not has_listeners(futures[1])
        assert not has_listeners(futures[2])
        gates.open(1, 2)


async def test_as_completed_yields_nothing_more_once_closed_even_with_ended_futures_left() -> None:
    async with AsyncExecutor() as executor:
        futures = [executor.submit(asyncio.sleep, 0, i) for i in range(3)]
        await executor.wait(futures)
        iterator = executor.as_completed(futures)
        first = await iterator.__anext__()  # all three have ended: the fast path
        assert first in futures
        await iterator.aclose()  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await iterator.__anext__()
