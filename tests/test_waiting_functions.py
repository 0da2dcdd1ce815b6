"""``antflow.as_completed`` and ``antflow.wait``: waiting on the futures of any executor.

The executors' ``as_completed`` / ``wait`` methods are thin calls of these functions; here
the functions are used on their own, on the futures of one executor and of two executors
mixed in one call. Some tests look at ``future._listeners`` (internal): it is the one place
where a waiter left behind by an abandoned or failed wait would show.

(Futures of a ``ClusterExecutor`` mixed with local ones: see tests/test_cluster.py.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

import pytest
from _helpers import wait_until

import antflow
from antflow import AsyncExecutor, AsyncFuture, WaitStrategy

# A generous bound on every wait under test, so that a wait that never returns fails the
# test instead of hanging it. No test measures a duration against it.
BOUND = 10.0


class Gates:
    """An async function: ``gates(key)`` returns ``key`` once ``open(key)`` is called, or
    raises ``ValueError`` once ``fail(key)`` is. After ``open_all()`` nothing waits."""

    def __init__(self) -> None:
        self._events: dict[Any, asyncio.Event] = {}
        self._failing: set[Any] = set()
        self._all_open = False

    def _event(self, key: Any) -> asyncio.Event:
        event = self._events.setdefault(key, asyncio.Event())
        if self._all_open:
            event.set()
        return event

    async def __call__(self, key: Any) -> Any:
        await self._event(key).wait()
        if key in self._failing:
            raise ValueError(f"{key} failed")
        return key

    def open(self, *keys: Any) -> None:
        for key in keys:
            self._event(key).set()

    def fail(self, *keys: Any) -> None:
        self._failing.update(keys)
        self.open(*keys)

    def open_all(self) -> None:
        self._all_open = True
        for event in self._events.values():
            event.set()


@contextlib.asynccontextmanager
async def two_executors(gates: Gates) -> AsyncIterator[tuple[AsyncExecutor, AsyncExecutor]]:
    """Two independent executors; on the way out every gate opens, so both drain."""
    one = AsyncExecutor(max_workers=4, name="one")
    two = AsyncExecutor(max_workers=4, name="two")
    try:
        yield one, two
    finally:
        gates.open_all()
        await one.shutdown()
        await two.shutdown()


async def ended(awaitable: Awaitable[Any]) -> asyncio.Future[Any]:
    """Run ``awaitable`` and return it as a finished future (result or exception inside);
    fail the test if it has not ended within BOUND seconds."""
    task = asyncio.ensure_future(awaitable)
    done, _ = await asyncio.wait({task}, timeout=BOUND)
    if not done:
        task.cancel()
        pytest.fail(f"still waiting after {BOUND} s")
    return task


async def collect(futures: AsyncIterator[AsyncFuture[Any]]) -> list[AsyncFuture[Any]]:
    return [future async for future in futures]


async def collect_until_error(
    futures: AsyncIterator[AsyncFuture[Any]],
) -> tuple[list[AsyncFuture[Any]], type[BaseException] | None]:
    """What an ``as_completed`` iteration yields, and the type of what ended it, if any."""
    seen: list[AsyncFuture[Any]] = []
    try:
        async for future in futures:
            seen.append(future)
    except Exception as exc:
        return seen, type(exc)
    return seen, None


def listened(futures: Iterable[AsyncFuture[Any]]) -> list[AsyncFuture[Any]]:
    return [future for future in futures if future._listeners]


async def let_loop_run() -> None:
    """Give a wait that should not return yet the chance to return wrongly."""
    await asyncio.sleep(0.02)


# -- as_completed ------------------------------------------------------------------------


async def test_as_completed_yields_the_futures_of_one_executor_in_completion_order() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, _):
        futures = [one.submit(gates, i) for i in range(4)]
        order = [2, 0, 3, 1]
        gates.open(order[0])
        seen: list[int] = []
        async for future in antflow.as_completed(futures, timeout=BOUND):
            seen.append(await future)
            if len(seen) < len(order):
                gates.open(order[len(seen)])
        assert seen == order


async def test_as_completed_yields_the_futures_of_two_executors_in_one_completion_order() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = {
            "one-a": one.submit(gates, "one-a"),
            "two-a": two.submit(gates, "two-a"),
            "one-b": one.submit(gates, "one-b"),
            "two-b": two.submit(gates, "two-b"),
        }
        order = ["two-b", "one-a", "two-a", "one-b"]
        gates.open(order[0])
        seen: list[str] = []
        async for future in antflow.as_completed(futures.values(), timeout=BOUND):
            seen.append(await future)
            if len(seen) < len(order):
                gates.open(order[len(seen)])
        assert seen == order


async def test_as_completed_yields_failed_and_cancelled_futures_of_either_executor() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        ok = one.submit(gates, "ok")
        bad = two.submit(gates, "bad")
        cancelled = two.submit(gates, "cancelled")
        cancelled.cancel()
        gates.open("ok")
        gates.fail("bad")
        got = (await ended(collect(antflow.as_completed([ok, bad, cancelled])))).result()
        assert len(got) == 3
        assert {id(f) for f in got} == {id(ok), id(bad), id(cancelled)}


async def test_as_completed_raises_timeout_error_at_its_deadline() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        quick = one.submit(gates, "quick")
        never = two.submit(gates, "never")
        gates.open("quick")
        seen, error = (
            await ended(collect_until_error(antflow.as_completed([quick, never], timeout=0.1)))
        ).result()
        assert seen == [quick]
        assert error is asyncio.TimeoutError
        assert not never.done()  # nothing was cancelled
        assert not listened([never])
        gates.open("never")
        assert await asyncio.wait_for(never.result(), BOUND) == "never"


async def test_as_completed_deadline_counts_from_the_call_not_from_each_future() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        first = one.submit(gates, "first")
        second = two.submit(gates, "second")
        gates.open("first")

        async def consume() -> list[AsyncFuture[Any]]:
            seen = []
            async for future in antflow.as_completed([first, second], timeout=0.1):
                seen.append(future)
                await asyncio.sleep(0.3)  # the deadline passes while the consumer works
                gates.open("second")  # so this one ends too late
            return seen

        outcome = await ended(consume())
        with pytest.raises(asyncio.TimeoutError):
            outcome.result()
        assert await asyncio.wait_for(second.result(), BOUND) == "second"


async def test_as_completed_yields_a_future_given_twice_once() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        a = one.submit(gates, "a")
        b = two.submit(gates, "b")
        gates.open("a", "b")
        got = (await ended(collect(antflow.as_completed([a, b, a, b, a])))).result()
        assert len(got) == 2
        assert {id(f) for f in got} == {id(a), id(b)}


async def test_breaking_out_of_as_completed_leaves_no_listener_on_any_future() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1), two.submit(gates, 2)]
        gates.open(1)
        async for future in antflow.as_completed(futures, timeout=BOUND):
            assert await future == 1
            break
        assert not listened(futures)
        assert not futures[0].done() and not futures[2].done()  # nothing was cancelled
        gates.open(0, 2)
        assert await asyncio.wait_for(antflow.wait(futures, timeout=BOUND), BOUND) == (
            set(futures),
            set(),
        )


async def test_a_cancelled_as_completed_consumer_leaves_no_listener() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1)]
        consumer = asyncio.ensure_future(collect(antflow.as_completed(futures)))
        await wait_until(lambda: len(listened(futures)) == 2)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert not listened(futures)
        assert not any(f.done() for f in futures)


# -- wait ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "return_when",
    [WaitStrategy.FIRST_COMPLETED, asyncio.FIRST_COMPLETED],
    ids=["WaitStrategy", "asyncio-constant"],
)
async def test_wait_first_completed_returns_when_a_future_of_either_executor_ends(
    return_when: Any,
) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        a, b, c = one.submit(gates, "a"), two.submit(gates, "b"), one.submit(gates, "c")
        waiter = asyncio.ensure_future(antflow.wait([a, b, c], return_when=return_when))
        await let_loop_run()
        assert not waiter.done()
        gates.open("b")
        assert (await ended(waiter)).result() == ({b}, {a, c})
        assert not listened([a, c])


@pytest.mark.parametrize(
    "return_when",
    [WaitStrategy.FIRST_EXCEPTION, asyncio.FIRST_EXCEPTION],
    ids=["WaitStrategy", "asyncio-constant"],
)
async def test_wait_first_exception_returns_when_a_future_of_either_executor_fails(
    return_when: Any,
) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        ok, cancelled, bad, slow = (
            one.submit(gates, "ok"),
            two.submit(gates, "cancelled"),
            two.submit(gates, "bad"),
            one.submit(gates, "slow"),
        )
        waiter = asyncio.ensure_future(
            antflow.wait([ok, cancelled, bad, slow], return_when=return_when)
        )
        gates.open("ok")  # a success does not end the wait
        cancelled.cancel()  # nor does a cancellation
        await let_loop_run()
        assert not waiter.done()
        gates.fail("bad")
        assert (await ended(waiter)).result() == ({ok, cancelled, bad}, {slow})
        assert not listened([slow])


@pytest.mark.parametrize(
    "return_when",
    [WaitStrategy.ALL_COMPLETED, asyncio.ALL_COMPLETED, None],
    ids=["WaitStrategy", "asyncio-constant", "default"],
)
async def test_wait_all_completed_returns_when_the_futures_of_both_executors_are_done(
    return_when: Any,
) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1), two.submit(gates, 2)]
        if return_when is None:
            waiter = asyncio.ensure_future(antflow.wait(futures))
        else:
            waiter = asyncio.ensure_future(antflow.wait(futures, return_when=return_when))
        gates.open(0)
        gates.fail(1)
        await let_loop_run()
        assert not waiter.done()
        gates.open(2)
        assert (await ended(waiter)).result() == (set(futures), set())


async def test_wait_all_completed_raises_timeout_error_when_its_timeout_passes() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        done_one = one.submit(gates, "done")
        never = two.submit(gates, "never")
        gates.open("done")
        outcome = await ended(antflow.wait([done_one, never], timeout=0.05))
        with pytest.raises(asyncio.TimeoutError):
            outcome.result()
        assert not never.done()  # wait never cancels
        assert not listened([never])
        gates.open("never")
        assert await asyncio.wait_for(never.result(), BOUND) == "never"


@pytest.mark.parametrize(
    "return_when",
    [WaitStrategy.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION],
    ids=["FIRST_COMPLETED", "FIRST_EXCEPTION"],
)
async def test_wait_first_strategies_return_done_and_pending_when_their_timeout_passes(
    return_when: Any,
) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1)]
        outcome = await ended(antflow.wait(futures, timeout=0.05, return_when=return_when))
        assert outcome.result() == (set(), set(futures))
        assert not any(f.done() for f in futures)
        assert not listened(futures)


async def test_wait_first_exception_at_its_timeout_returns_the_successes_as_done() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        ok, slow = one.submit(gates, "ok"), two.submit(gates, "slow")
        gates.open("ok")
        await asyncio.wait_for(ok.result(), BOUND)
        outcome = await ended(
            antflow.wait([ok, slow], timeout=0.05, return_when=WaitStrategy.FIRST_EXCEPTION)
        )
        assert outcome.result() == ({ok}, {slow})


async def test_wait_counts_a_future_given_twice_once() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        a, b = one.submit(gates, "a"), two.submit(gates, "b")
        gates.open("a")
        outcome = await ended(antflow.wait([a, b, a, b], return_when=WaitStrategy.FIRST_COMPLETED))
        assert outcome.result() == ({a}, {b})
        gates.open("b")
        assert (await ended(antflow.wait([b, a, b, a]))).result() == ({a, b}, set())


async def test_a_cancelled_wait_leaves_no_listener() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1)]
        waiter = asyncio.ensure_future(antflow.wait(futures))
        await wait_until(lambda: len(listened(futures)) == 2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not listened(futures)
        assert not any(f.done() for f in futures)


# -- what the functions accept ---------------------------------------------------------------


async def test_the_functions_take_any_iterable_of_futures_and_none_at_all() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        futures = [one.submit(gates, 0), two.submit(gates, 1)]
        gates.open(0, 1)
        got = (await ended(collect(antflow.as_completed(f for f in futures)))).result()
        assert {id(f) for f in got} == {id(f) for f in futures}
        assert (await ended(antflow.wait(set(futures)))).result() == (set(futures), set())
        assert (await ended(collect(antflow.as_completed([])))).result() == []
        assert (await ended(antflow.wait(()))).result() == (set(), set())


async def test_the_functions_wait_on_futures_whose_executor_has_shut_down() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    async with AsyncExecutor(max_workers=2) as executor:
        futures = [executor.submit(double, i) for i in range(3)]
    assert (await ended(antflow.wait(futures))).result() == (set(futures), set())
    got = (await ended(collect(antflow.as_completed(futures)))).result()
    assert sorted([await f for f in got]) == [0, 2, 4]


NOT_ANTFLOW_FUTURES: dict[str, Callable[[asyncio.AbstractEventLoop], Any]] = {
    "object": lambda loop: object(),
    "asyncio-future": lambda loop: loop.create_future(),
    "concurrent-future": lambda loop: concurrent.futures.Future(),
    "coroutine-function": lambda loop: asyncio.sleep,
}


@pytest.mark.parametrize("make", NOT_ANTFLOW_FUTURES.values(), ids=NOT_ANTFLOW_FUTURES.keys())
async def test_the_functions_refuse_what_is_not_an_antflow_future_with_type_error(
    make: Callable[[asyncio.AbstractEventLoop], Any],
) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, _):
        good = one.submit(gates, "good")
        bad = make(asyncio.get_running_loop())
        with pytest.raises(TypeError, match="AsyncFuture"):
            await collect(antflow.as_completed([good, bad]))
        with pytest.raises(TypeError, match="AsyncFuture"):
            await antflow.wait([good, bad])
        assert not listened([good])


async def test_the_functions_refuse_a_negative_timeout_with_value_error() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, _):
        future = one.submit(gates, "pending")
        with pytest.raises(ValueError, match="timeout"):
            await collect(antflow.as_completed([future], timeout=-1))
        with pytest.raises(ValueError, match="timeout"):
            await antflow.wait([future], timeout=-0.5)
        assert not listened([future])


async def test_the_functions_refuse_a_timeout_that_is_not_a_number_with_type_error() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, _):
        future = one.submit(gates, "pending")
        with pytest.raises(TypeError, match="timeout"):
            await collect(antflow.as_completed([future], timeout="1"))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="timeout"):
            await antflow.wait([future], timeout="1")  # type: ignore[arg-type]


@pytest.mark.parametrize("return_when", ["FIRST_SUCCESS", "first_completed", None, 1])
async def test_wait_refuses_an_unknown_return_when_with_value_error(return_when: Any) -> None:
    gates = Gates()
    async with two_executors(gates) as (one, _):
        future = one.submit(gates, "pending")
        with pytest.raises(ValueError, match="return_when"):
            await antflow.wait([future], return_when=return_when)
        assert not listened([future])


# -- the methods are the functions ---------------------------------------------------------


async def outcome_of(awaitable: Awaitable[Any]) -> tuple[str, Any]:
    task = await ended(awaitable)
    if task.exception() is not None:
        return "raised", type(task.exception())
    return "returned", task.result()


async def test_the_executor_methods_give_what_the_functions_give() -> None:
    gates = Gates()
    async with two_executors(gates) as (one, two):
        ok = one.submit(gates, "ok")
        bad = two.submit(gates, "bad")
        cancelled = one.submit(gates, "cancelled")
        pending = two.submit(gates, "pending")
        cancelled.cancel()
        gates.open("ok")
        gates.fail("bad")
        await asyncio.wait_for(antflow.wait([ok, bad]), BOUND)
        futures = [pending, bad, ok, cancelled]

        for timeout in (None, 0.05):
            for strategy in WaitStrategy:
                if timeout is None and strategy is WaitStrategy.ALL_COMPLETED:
                    continue  # `pending` never ends: this would wait for ever
                expected = await outcome_of(antflow.wait(futures, timeout, strategy))
                for executor in (one, two):  # each executor's method, on both's futures
                    got = await outcome_of(executor.wait(futures, timeout, strategy))
                    assert got == expected, (executor.name, timeout, strategy)
        assert await outcome_of(antflow.wait(futures, 0.05)) == ("raised", asyncio.TimeoutError)

        expected_iteration = await outcome_of(
            collect_until_error(antflow.as_completed(futures, timeout=0.05))
        )
        how, (yielded, error) = expected_iteration
        assert how == "returned" and error is asyncio.TimeoutError
        assert {id(f) for f in yielded} == {id(bad), id(ok), id(cancelled)}
        for executor in (one, two):
            got = await outcome_of(collect_until_error(executor.as_completed(futures, 0.05)))
            assert got == expected_iteration, executor.name
        assert not listened(futures)
