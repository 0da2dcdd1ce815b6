"""Cancellation propagates from a caller to the work it started, and no further.

When the task that awaits ``map()`` is cancelled (a client disconnects, an outer
``asyncio.timeout`` or ``wait_for`` fires) or the consumer of ``map_iter()`` stops early,
that call's running items are cancelled and its queued items never start, while the
executor stays usable. ``as_completed``, ``wait`` and ``result()`` cancel nothing: a
cancelled caller only takes its own listeners and waiters away with it.

Each test checks the internal bookkeeping that a leak would show up in:
``AsyncFuture._listeners`` (callbacks registered on a future), ``executor._pool._calls``
(map calls in progress) and ``executor._pool._room_waiters`` (callers waiting for queue room).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _helpers import CountingInput, read_async

from antflow import AsyncExecutor, WaitStrategy

# Executors whose items take the fast inline path, run in their own Task, or take the
# options path (a timer per attempt): cancellation must be exact on all three.
EXECUTOR_OPTIONS = [
    pytest.param({}, id="inline"),
    pytest.param({"propagate_context": True}, id="task-per-item"),
    pytest.param({"task_timeout": 60.0}, id="with-task-timeout"),
]


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Let the loop run until ``condition()`` holds; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not reached within {timeout}s")
        await asyncio.sleep(0.001)


# How long a probe waits for its release at most, so that a failing test cannot hang the
# run (a signal from pytest-timeout does not interrupt uvloop while it waits for I/O).
SAFETY_TIMEOUT = 20.0


class Probe:
    """An async function that records its starts, the cancellations it saw, and its ends."""

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.returned: list[Any] = []
        self.release = asyncio.Event()

    async def hold(self, x: Any) -> Any:
        """Start, then wait for ``release`` (which the test may never set)."""
        self.started.append(x)
        try:
            await asyncio.wait_for(self.release.wait(), SAFETY_TIMEOUT)
        except asyncio.CancelledError:
            self.cancelled.append(x)
            raise
        self.returned.append(x)
        return x


async def noop() -> str:
    return "done"


async def double(x: int) -> int:
    return 2 * x


async def assert_still_usable(executor: AsyncExecutor) -> None:
    """A new task runs to completion; FIFO order means every older queued item went first."""
    assert await executor.submit(noop).result(timeout=5) == "done"


def assert_no_listeners(futures: list[Any]) -> None:
    leftovers = [f for f in futures if f._listeners]
    assert not leftovers, f"listeners left behind on {leftovers}"


# -- map: the caller is cancelled ---------------------------------------------------------


@pytest.mark.parametrize("options", EXECUTOR_OPTIONS)
async def test_cancelling_the_caller_of_map_cancels_its_running_items(
    options: dict[str, Any],
) -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=3, **options) as executor:
        caller = asyncio.create_task(executor.map(probe.hold, range(10)))
        await until(lambda: len(probe.started) == 3)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await until(lambda: len(probe.cancelled) == 3)
        assert sorted(probe.cancelled) == [0, 1, 2]
        assert probe.returned == []


@pytest.mark.parametrize("options", EXECUTOR_OPTIONS)
@pytest.mark.parametrize(
    ("pushed", "read", "counts"),
    [(True, 6, (7, 6, 1)), (False, 2, (3, 2, 1))],
    ids=["async-input", "sync-input"],
)
async def test_cancelling_the_caller_of_map_never_starts_its_queued_items(
    options: dict[str, Any], pushed: bool, read: int, counts: tuple[int, int, int]
) -> None:
    # An async input is read by the caller, a window ahead: 2 items run, 4 wait, and are
    # cancelled with the call. A synchronous input is read by the workers as they free
    # up: nothing waits, so nothing beyond the running items was read, and nothing more is.
    probe = Probe()
    source = CountingInput(100)
    async with AsyncExecutor(max_workers=2, **options) as executor:
        inputs = read_async(source) if pushed else source
        caller = asyncio.create_task(executor.map(probe.hold, inputs, window=6))
        await until(lambda: len(probe.started) == 2)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        await assert_still_usable(executor)
        assert sorted(probe.started) == [0, 1]
        assert source.read == read
        stats = executor.stats()
    assert (stats.submitted, stats.cancelled, stats.completed) == counts


@pytest.mark.parametrize(
    ("pushed", "cancelled"), [(True, 5), (False, 2)], ids=["async-input", "sync-input"]
)
async def test_cancelling_the_caller_of_map_settles_the_counters_at_once(
    pushed: bool, cancelled: int
) -> None:
    # Its running items count as cancelled, and with an async input its queued ones too.
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        source = read_async(range(10)) if pushed else range(10)
        caller = asyncio.create_task(executor.map(probe.hold, source, window=5))
        await until(lambda: len(probe.started) == 2)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        stats = executor.stats()
        assert (stats.running, stats.pending, stats.cancelled) == (0, 0, cancelled)
        assert executor._pool._calls == set()


@pytest.mark.parametrize(
    ("pushed", "cancelled"), [(True, 4), (False, 2)], ids=["async-input", "sync-input"]
)
async def test_an_outer_wait_for_timeout_on_map_cancels_the_calls_items(
    pushed: bool, cancelled: int
) -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        source = read_async(range(10)) if pushed else range(10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(executor.map(probe.hold, source, window=4), timeout=0.05)
        await assert_still_usable(executor)
        assert sorted(probe.cancelled) == sorted(probe.started) == [0, 1]
        assert executor.stats().cancelled == cancelled


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in 3.11")
@pytest.mark.parametrize(
    ("pushed", "cancelled"), [(True, 4), (False, 2)], ids=["async-input", "sync-input"]
)
async def test_an_outer_asyncio_timeout_on_map_cancels_the_calls_items(
    pushed: bool, cancelled: int
) -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        source = read_async(range(10)) if pushed else range(10)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):  # type: ignore[attr-defined]
                await executor.map(probe.hold, source, window=4)
        await assert_still_usable(executor)
        assert sorted(probe.cancelled) == sorted(probe.started) == [0, 1]
        assert executor.stats().cancelled == cancelled


async def test_a_disconnected_request_cancels_only_its_own_fan_out() -> None:
    """Two requests share a global executor; one client goes away mid-request."""
    probe = Probe()

    async def handle(request: str) -> list[str]:
        return await executor.map(probe.hold, [f"{request}-{i}" for i in range(3)])

    async with AsyncExecutor(max_workers=6) as executor:
        gone = asyncio.create_task(handle("gone"))
        stays = asyncio.create_task(handle("stays"))
        await until(lambda: len(probe.started) == 6)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        probe.release.set()
        assert await stays == ["stays-0", "stays-1", "stays-2"]
        assert sorted(probe.cancelled) == ["gone-0", "gone-1", "gone-2"]


async def test_cancelling_the_caller_of_map_closes_its_async_input() -> None:
    closed = asyncio.Event()
    probe = Probe()

    async def slow_source() -> AsyncIterator[int]:
        try:
            for i in range(1000):
                if i == 3:
                    await asyncio.sleep(3600)  # the caller is stuck reading input
                yield i
        finally:
            closed.set()

    async with AsyncExecutor(max_workers=4) as executor:
        caller = asyncio.create_task(executor.map(probe.hold, slow_source()))
        await until(lambda: len(probe.started) == 3)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert closed.is_set()
        await until(lambda: len(probe.cancelled) == 3)
        assert executor._pool._calls == set()


async def test_a_retrying_item_of_a_cancelled_map_makes_no_further_attempts() -> None:
    attempts: list[int] = []

    async def always_fails(x: int) -> None:
        attempts.append(x)
        raise ConnectionError("down")

    async with AsyncExecutor(max_workers=2) as executor:
        caller = asyncio.create_task(
            executor.map(always_fails, range(2), retries=5, retry_delay=0.02)
        )
        await until(lambda: len(attempts) >= 2)  # both items are now in their backoff
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        seen = len(attempts)
        await asyncio.sleep(0.2)  # several backoff periods
        assert len(attempts) == seen
        assert executor.stats().running == 0


async def test_cancelling_the_caller_of_map_while_it_waits_for_queue_room_leaves_no_waiter() -> (
    None
):
    probe = Probe()
    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        blocker = executor.submit(probe.hold, "blocker")
        await until(blocker.running)
        executor.submit(probe.hold, "queued")  # the queue is now full
        # (An async input: its caller reads it and queues the items, so it waits for room.)
        caller = asyncio.create_task(executor.map(probe.hold, read_async(range(5))))
        await until(lambda: len(executor._pool._room_waiters) == 1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        left_behind = list(executor._pool._room_waiters)
        calls = set(executor._pool._calls)
        blocker.cancel()
        probe.release.set()
    assert left_behind == []
    assert calls == set()


async def test_cancelling_a_caller_of_asubmit_that_waits_for_room_leaves_no_waiter() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=1, max_pending=1) as executor:
        blocker = executor.submit(probe.hold, "blocker")
        await until(blocker.running)
        executor.submit(probe.hold, "queued")
        caller = asyncio.create_task(executor.asubmit(probe.hold, "never"))
        await until(lambda: len(executor._pool._room_waiters) == 1)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        left_behind = list(executor._pool._room_waiters)
        blocker.cancel()
        probe.release.set()
    assert left_behind == []
    assert executor.stats().submitted == 2
    assert "never" not in probe.started


# -- map_iter: the consumer stops early ---------------------------------------------------


@pytest.mark.parametrize("options", EXECUTOR_OPTIONS)
async def test_breaking_out_of_map_iter_cancels_its_running_items_at_once(
    options: dict[str, Any],
) -> None:
    probe = Probe()

    async def first_done(x: int) -> int:
        if x == 0:
            return x
        return await probe.hold(x)

    async with AsyncExecutor(max_workers=3, **options) as executor:
        async for value in executor.map_iter(first_done, range(10)):
            assert value == 0
            await until(lambda: len(probe.started) == 3)
            break
        stats = executor.stats()  # no await since the break: the cancel was synchronous
        assert (stats.running, stats.pending) == (0, 0)
        await until(lambda: len(probe.cancelled) == 3)
        assert probe.returned == []


async def test_breaking_out_of_map_iter_never_starts_its_queued_items() -> None:
    probe = Probe()
    source = CountingInput(1000)

    async def first_done(x: int) -> int:
        if x == 0:
            return x
        return await probe.hold(x)

    async with AsyncExecutor(max_workers=2) as executor:
        async for _ in executor.map_iter(first_done, source, window=8):
            await until(lambda: len(probe.started) == 2)
            break
        await assert_still_usable(executor)
        assert sorted(probe.started) == [1, 2]
        assert source.read <= 9  # the window after the consumed item, and never more


async def test_aclose_of_map_iter_cancels_its_items() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        iterator = executor.map_iter(probe.hold, range(10))
        next_value = asyncio.ensure_future(iterator.__anext__())
        await until(lambda: len(probe.started) == 2)
        next_value.cancel()  # the consumer stops waiting ...
        with pytest.raises(asyncio.CancelledError):
            await next_value
        await iterator.aclose()  # type: ignore[attr-defined]  # ... and closes the stream
        await assert_still_usable(executor)
        assert sorted(probe.cancelled) == sorted(probe.started) == [0, 1]
        assert executor._pool._calls == set()


async def test_aclose_from_another_task_ends_the_iteration_of_a_waiting_consumer() -> None:
    release = asyncio.Event()

    async def slow(x: int) -> int:
        await release.wait()
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        iterator = executor.map_iter(slow, range(4))
        seen: list[int] = []

        async def consume() -> None:
            async for value in iterator:
                seen.append(value)

        consumer = asyncio.create_task(consume())
        await until(lambda: executor.stats().running == 2)  # the consumer waits for item 0
        await iterator.aclose()  # type: ignore[attr-defined]
        await asyncio.wait([consumer], timeout=SAFETY_TIMEOUT)
        assert consumer.done(), "the consumer went on waiting after aclose()"
        assert consumer.result() is None and seen == []
        assert not executor._pool._calls


async def test_aclose_before_the_first_item_starts_nothing() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        iterator = executor.map_iter(probe.hold, range(10))
        await iterator.aclose()  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await iterator.__anext__()
        await assert_still_usable(executor)
    assert probe.started == []
    assert executor.stats().submitted == 1


async def test_an_exception_in_the_body_of_a_map_iter_loop_cancels_its_items() -> None:
    probe = Probe()

    async def first_done(x: int) -> int:
        return x if x == 0 else await probe.hold(x)

    async with AsyncExecutor(max_workers=3) as executor:
        with pytest.raises(LookupError):
            async for _ in executor.map_iter(first_done, range(10)):
                await until(lambda: len(probe.started) == 3)
                raise LookupError("the consumer failed")
        assert executor.stats().running == 0
        await until(lambda: len(probe.cancelled) == 3)
        await assert_still_usable(executor)
        assert len(probe.started) == 3


async def test_cancelling_the_consumer_of_map_iter_cancels_its_items() -> None:
    probe = Probe()

    async def consume() -> list[int]:
        return [x async for x in executor.map_iter(probe.hold, range(10))]

    async with AsyncExecutor(max_workers=2) as executor:
        consumer = asyncio.create_task(consume())
        await until(lambda: len(probe.started) == 2)
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        await assert_still_usable(executor)
        assert sorted(probe.cancelled) == sorted(probe.started) == [0, 1]
        assert executor._pool._calls == set()


async def test_an_outer_wait_for_timeout_on_a_map_iter_consumer_cancels_its_items() -> None:
    probe = Probe()

    async def consume() -> list[int]:
        return [x async for x in executor.map_iter(probe.hold, range(10))]

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(consume(), timeout=0.05)
        await assert_still_usable(executor)
        assert sorted(probe.cancelled) == sorted(probe.started) == [0, 1]


# -- a single future ----------------------------------------------------------------------


async def test_cancelling_a_running_future_frees_its_slot_for_the_next_item() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=1) as executor:
        running = executor.submit(probe.hold, "first")
        after = executor.submit(noop)
        await until(running.running)
        assert running.cancel()
        assert await after.result(timeout=5) == "done"
        assert probe.cancelled == ["first"]


async def test_an_item_that_swallows_its_cancellation_stays_cancelled_and_frees_its_slot() -> None:
    started = asyncio.Event()

    async def stubborn() -> str:
        started.set()
        with contextlib.suppress(asyncio.CancelledError):  # swallowed
            await asyncio.sleep(SAFETY_TIMEOUT)
        await asyncio.sleep(0.01)
        return "ignored"

    async def sleeps_normally() -> str:
        await asyncio.sleep(0.01)  # would raise CancelledError if the cancel leaked over
        return "slept"

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(stubborn)
        await started.wait()
        future.cancel()
        follower = executor.submit(sleeps_normally)
        assert await follower.result(timeout=5) == "slept"
        assert future.cancelled()
        stats = executor.stats()
        assert (stats.cancelled, stats.completed, stats.running) == (1, 1, 0)


async def test_a_task_raising_cancelled_error_itself_ends_cancelled_and_the_pool_carries_on() -> (
    None
):
    async def cancels_itself() -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError()

    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(cancels_itself)
        assert await asyncio.wait_for(executor.map(double, range(5)), 5) == [0, 2, 4, 6, 8]
        assert future.cancelled()
        await assert_still_usable(executor)


async def test_a_replaced_worker_still_wakes_for_new_work() -> None:
    """On 3.10 a task's own CancelledError ends its worker, which is replaced."""

    async def cancels_itself() -> None:
        await asyncio.sleep(0)
        raise asyncio.CancelledError()

    executor = AsyncExecutor(max_workers=1)
    try:
        executor.submit(cancels_itself)
        mapper = asyncio.ensure_future(executor.map(double, range(5)))
        for _ in range(4):
            await asyncio.sleep(0)
        assert await executor.submit(noop).result(timeout=5) == "done"
        assert await asyncio.wait_for(mapper, 5) == [0, 2, 4, 6, 8]
    finally:
        await executor.shutdown(cancel_futures=True)  # never hangs, even when this fails


async def test_cancelling_the_caller_of_result_leaves_the_task_running_and_no_listener() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(probe.hold, 1)
        waiter = asyncio.create_task(future.result())
        await until(lambda: bool(future._listeners))
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not future._listeners
        assert not future.done()
        probe.release.set()
        assert await future.result(timeout=5) == 1


async def test_a_result_timeout_leaves_the_task_running_and_no_listener() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=1) as executor:
        future = executor.submit(probe.hold, 1)
        with pytest.raises(asyncio.TimeoutError):
            await future.result(timeout=0.01)
        assert not future._listeners
        assert future.running()
        probe.release.set()
        assert await future == 1


# -- as_completed and wait ----------------------------------------------------------------


async def test_cancelling_the_caller_of_as_completed_removes_its_listeners() -> None:
    probe = Probe()

    async def collect(futures: list[Any]) -> list[Any]:
        return [f async for f in executor.as_completed(futures)]

    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(probe.hold, i) for i in range(5)]
        caller = asyncio.create_task(collect(futures))
        await until(lambda: all(f._listeners for f in futures))
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert_no_listeners(futures)
        assert not any(f.done() for f in futures)  # as_completed cancels nothing
        probe.release.set()
        assert sorted([await f for f in futures]) == [0, 1, 2, 3, 4]


async def test_closing_as_completed_early_removes_its_listeners() -> None:
    probe = Probe()

    async def quick() -> str:
        return "quick"

    async with AsyncExecutor(max_workers=4) as executor:
        slow = [executor.submit(probe.hold, i) for i in range(3)]
        futures = [*slow, executor.submit(quick)]
        async with contextlib.aclosing(executor.as_completed(futures)) as stream:  # type: ignore[type-var]
            async for first in stream:
                assert await first == "quick"
                break
        assert_no_listeners(slow)
        probe.release.set()


async def test_breaking_out_of_as_completed_removes_its_listeners_at_once() -> None:
    probe = Probe()

    async def quick() -> str:
        return "quick"

    async with AsyncExecutor(max_workers=4) as executor:
        slow = [executor.submit(probe.hold, i) for i in range(3)]
        async for first in executor.as_completed([*slow, executor.submit(quick)]):
            assert await first == "quick"
            break
        # No await since the break: dropping the iterator removed the listeners.
        assert_no_listeners(slow)
        probe.release.set()


async def test_an_as_completed_timeout_removes_its_listeners() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        futures = [executor.submit(probe.hold, i) for i in range(2)]
        with pytest.raises(asyncio.TimeoutError):
            async for _ in executor.as_completed(futures, timeout=0.02):
                pass
        assert_no_listeners(futures)
        assert not any(f.done() for f in futures)
        probe.release.set()


@pytest.mark.parametrize("return_when", list(WaitStrategy))
async def test_cancelling_the_caller_of_wait_removes_its_listeners_and_cancels_nothing(
    return_when: WaitStrategy,
) -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=3) as executor:
        futures = [executor.submit(probe.hold, i) for i in range(5)]
        caller = asyncio.create_task(executor.wait(futures, return_when=return_when))
        await until(lambda: all(f._listeners for f in futures))
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert_no_listeners(futures)
        assert not any(f.done() for f in futures)
        probe.release.set()


async def test_wait_first_completed_removes_its_listeners_from_the_futures_still_pending() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=3) as executor:
        slow = [executor.submit(probe.hold, i) for i in range(2)]
        quick = executor.submit(noop)
        done, pending = await executor.wait(
            [*slow, quick], return_when=WaitStrategy.FIRST_COMPLETED
        )
        assert done == {quick}
        assert pending == set(slow)
        assert_no_listeners(slow)
        probe.release.set()


async def test_a_wait_timeout_removes_its_listeners() -> None:
    probe = Probe()
    async with AsyncExecutor(max_workers=2) as executor:
        futures = [executor.submit(probe.hold, i) for i in range(2)]
        with pytest.raises(asyncio.TimeoutError):
            await executor.wait(futures, timeout=0.02)
        assert_no_listeners(futures)
        probe.release.set()


async def test_after_many_cancelled_callers_each_parked_worker_leaves_one_live_waiter() -> None:
    probe = Probe()

    async def consume() -> None:
        async for _ in executor.map_iter(probe.hold, range(20), window=6):
            pass

    async with AsyncExecutor(max_workers=3) as executor:
        for round_ in range(5):
            future = executor.submit(probe.hold, round_)
            callers = [
                asyncio.create_task(executor.map(probe.hold, range(20), window=6)),
                asyncio.create_task(consume()),
                asyncio.create_task(executor.wait([future])),
            ]
            await until(lambda: executor.stats().running == 3)
            for caller in callers:
                caller.cancel()
            await asyncio.gather(*callers, return_exceptions=True)
            future.cancel()  # wait() cancels nothing: its caller's future is still running
            await until(lambda: len(executor._pool._idle) == len(executor._pool._workers))
        parked = [waiter.done() for waiter in executor._pool._idle]
        workers = len(executor._pool._workers)
        probe.release.set()
    assert len(parked) == workers <= 3
    assert not any(parked), "a parked worker's waiter is already done"


# -- shutdown ----------------------------------------------------------------------------


async def test_cancelling_the_caller_of_shutdown_cancels_none_of_the_work() -> None:
    probe = Probe()
    executor = AsyncExecutor(max_workers=1)
    futures = [executor.submit(probe.hold, i) for i in range(3)]
    closer = asyncio.create_task(executor.shutdown(wait=True))
    await until(lambda: len(probe.started) == 1)
    closer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closer
    probe.release.set()
    await executor.shutdown(wait=True)  # a second call waits for the rest
    assert [await f for f in futures] == [0, 1, 2]
    assert list(executor._pool._idle) == []
    assert executor._pool._workers == set()


# -- an item that answers its cancel with another exception ---------------------------------

CANCEL_WAYS = [
    pytest.param("map-deadline", id="its-map-call-times-out"),
    pytest.param("map_iter-deadline", id="its-map_iter-call-times-out"),
    pytest.param("future-cancel", id="its-future-is-cancelled"),
]


async def cancel_an_item_whose_clean_up_raises(executor: AsyncExecutor, way: str) -> Any:
    """Start one item on ``executor`` and cancel it the ``way`` of CANCEL_WAYS; the item
    answers its cancel with a RuntimeError. Returns its future (the "future-cancel" way)."""
    entered = asyncio.Event()

    async def clean_up_raises(x: int) -> int:
        entered.set()
        try:
            await asyncio.sleep(SAFETY_TIMEOUT)
        except asyncio.CancelledError:
            raise RuntimeError("the clean-up failed") from None
        return x

    if way == "map-deadline":
        with pytest.raises(asyncio.TimeoutError):
            await executor.map(clean_up_raises, [0], timeout=0.02)
        return None
    if way == "map_iter-deadline":
        with pytest.raises(asyncio.TimeoutError):
            async for _ in executor.map_iter(clean_up_raises, [0], timeout=0.02):
                pass
        return None
    future = executor.submit(clean_up_raises, 0)
    await asyncio.wait_for(entered.wait(), SAFETY_TIMEOUT)
    assert future.cancel()
    return future


@pytest.mark.parametrize("options", EXECUTOR_OPTIONS)
@pytest.mark.parametrize("way", CANCEL_WAYS)
async def test_an_item_whose_clean_up_raises_on_cancel_leaves_its_worker_as_it_was(
    way: str, options: dict[str, Any]
) -> None:
    # The item is cancelled, and its clean-up raises another exception. Later items on
    # the same (only) worker must see no cancel that was not meant for them.

    async def cancelled_inside(x: int) -> int:
        await asyncio.sleep(0)
        if x == 1:
            raise asyncio.CancelledError  # it awaited something that was cancelled
        return x

    async def overruns() -> None:
        await asyncio.sleep(SAFETY_TIMEOUT)

    async with AsyncExecutor(max_workers=1, **options) as executor:
        await cancel_an_item_whose_clean_up_raises(executor, way)
        # A task_timeout that runs out fails its item with TimeoutError, not a cancel.
        late = executor.submit(overruns, task_timeout=0.02)
        with pytest.raises(asyncio.TimeoutError, match="task_timeout"):
            await asyncio.wait_for(late.result(), SAFETY_TIMEOUT)
        # An item's own CancelledError ends its map call, as on a fresh worker.
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(executor.map(cancelled_inside, range(3)), SAFETY_TIMEOUT)
        assert await executor.submit(asyncio.sleep, 0, "ok").result() == "ok"


@pytest.mark.parametrize("options", EXECUTOR_OPTIONS)
@pytest.mark.parametrize("way", CANCEL_WAYS)
async def test_an_exception_that_a_cancelled_item_raises_reaches_the_loops_exception_handler(
    way: str, options: dict[str, Any]
) -> None:
    # Its future is cancelled, or its call has ended: nothing can take the exception any
    # more, so it goes where asyncio sends an exception that nobody retrieved.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        executor = AsyncExecutor(max_workers=1, **options)
        future = await cancel_an_item_whose_clean_up_raises(executor, way)
        await until(lambda: bool(reported))
        await executor.shutdown()
        assert len(reported) == 1
        error = reported[0]["exception"]
        assert type(error) is RuntimeError and str(error) == "the clean-up failed"
        assert reported[0]["message"].startswith("an antflow item raised RuntimeError after")
        if future is not None:
            assert future.cancelled()  # the future still ends cancelled, once
        stats = executor.stats()
        assert (stats.cancelled, stats.failed) == (1, 0)
    finally:
        loop.set_exception_handler(None)


@pytest.mark.parametrize("ending", ["returns", "raises"])
async def test_a_future_cancelled_as_its_task_ended_on_its_own_ends_cancelled_reporting_nothing(
    ending: str,
) -> None:
    # In a Task of its own (propagate_context), an item may end just before its future is
    # cancelled, its worker not yet told. The future is not done, so cancel() succeeds
    # (False only for a done future, as in asyncio) and the future ends cancelled. A failure
    # of the item's own did not answer the cancel: it is dropped, not reported as a failed
    # clean-up.
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    holder: list[Any] = []
    answers: list[tuple[bool, bool]] = []

    def cancel() -> None:
        future = holder[0]
        done_before = future.done()
        answers.append((done_before, future.cancel()))

    async def ends_as_the_cancel_comes() -> str:
        await asyncio.sleep(0)
        loop.call_soon(cancel)  # runs before the worker hears that this Task has ended
        if ending == "raises":
            raise ValueError("its own failure")
        return "its own result"

    try:
        async with AsyncExecutor(max_workers=1, propagate_context=True) as executor:
            future = executor.submit(ends_as_the_cancel_comes)
            holder.append(future)
            assert await executor.submit(asyncio.sleep, 0, "after").result() == "after"
            assert answers == [(False, True)]
            assert future.cancelled()
            stats = executor.stats()
            assert (stats.completed, stats.failed, stats.cancelled) == (1, 0, 1)
        assert reported == []
    finally:
        loop.set_exception_handler(None)
