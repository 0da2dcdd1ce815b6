"""AsyncFuture: waiting for an outcome, reading it, cancelling, and done callbacks."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest
from _helpers import wait_until

from antflow import AsyncExecutor, AsyncFuture


class Blocker:
    """An async function whose calls wait until released; records starts and their ends."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[Any] = []
        self.cancelled: list[Any] = []
        self.finished: list[Any] = []

    async def __call__(self, x: Any = None) -> Any:
        self.started.append(x)
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.append(x)
            raise
        finally:
            self.finished.append(x)
        return x


# -- result() and await ------------------------------------------------------------------


async def test_result_returns_the_value() -> None:
    async def answer() -> int:
        return 42

    async with AsyncExecutor() as executor:
        assert await executor.submit(answer).result() == 42


async def test_awaiting_the_future_itself_returns_the_value() -> None:
    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 42

    async with AsyncExecutor() as executor:
        assert await executor.submit(answer) == 42


async def test_result_timeout_raises_timeout_error_and_leaves_the_task_running() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.1)
        return "late"

    async with AsyncExecutor() as executor:
        future = executor.submit(slow)
        with pytest.raises(asyncio.TimeoutError):
            await future.result(timeout=0.01)
        assert not future.done()
        assert not future.cancelled()
        assert await future.result() == "late"


async def test_result_timeout_on_a_finished_future_returns_at_once() -> None:
    async def answer() -> int:
        return 1

    async with AsyncExecutor() as executor:
        future = executor.submit(answer)
        await future
        assert await future.result(timeout=0) == 1


async def test_cancelling_a_caller_awaiting_result_does_not_cancel_the_task() -> None:
    blocker = Blocker()
    async with AsyncExecutor() as executor:
        future = executor.submit(blocker, "x")
        caller = asyncio.create_task(future.result())
        await wait_until(lambda: blocker.started)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not future.cancelled()
        assert future.running()
        blocker.release.set()
        assert await future == "x"
        assert blocker.cancelled == []


async def test_a_future_can_be_awaited_by_many_callers() -> None:
    blocker = Blocker()
    async with AsyncExecutor() as executor:
        future = executor.submit(blocker, 7)
        waiters = [asyncio.create_task(future.result()) for _ in range(3)]
        waiters.append(asyncio.ensure_future(future))
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waiters)
        blocker.release.set()
        assert await asyncio.gather(*waiters) == [7, 7, 7, 7]


async def test_every_awaiter_of_a_failed_future_gets_its_exception() -> None:
    error = OSError("down")
    gate = asyncio.Event()

    async def fail() -> None:
        await gate.wait()
        raise error

    async with AsyncExecutor() as executor:
        future = executor.submit(fail)
        waiters = [asyncio.create_task(future.result()) for _ in range(3)]
        await asyncio.sleep(0.01)
        gate.set()
        outcomes = await asyncio.gather(*waiters, return_exceptions=True)
        assert outcomes == [error, error, error]


# -- done, running, cancelled, exception --------------------------------------------------


async def test_a_queued_future_is_neither_done_running_nor_cancelled() -> None:
    blocker = Blocker()
    async with AsyncExecutor(max_workers=1) as executor:
        executor.submit(blocker, 1)
        queued = executor.submit(blocker, 2)
        await wait_until(lambda: blocker.started)
        assert (queued.done(), queued.running(), queued.cancelled()) == (False, False, False)
        assert queued.exception() is None
        blocker.release.set()


async def test_a_running_future_is_running_and_not_done() -> None:
    blocker = Blocker()
    async with AsyncExecutor() as executor:
        future = executor.submit(blocker)
        await wait_until(lambda: blocker.started)
        assert future.running()
        assert not future.done()
        assert future.exception() is None
        blocker.release.set()


async def test_a_successful_future_is_done_with_no_exception() -> None:
    async def answer() -> int:
        return 1

    async with AsyncExecutor() as executor:
        future = executor.submit(answer)
        await future
        assert future.done()
        assert not future.running()
        assert not future.cancelled()
        assert future.exception() is None


async def test_a_failed_future_is_done_and_exception_returns_the_error() -> None:
    error = ZeroDivisionError("boom")

    async def fail() -> None:
        raise error

    async with AsyncExecutor() as executor:
        future = executor.submit(fail)
        with pytest.raises(ZeroDivisionError):
            await future
        assert future.done()
        assert not future.cancelled()
        assert future.exception() is error


async def test_exception_of_a_cancelled_future_raises_cancelled_error() -> None:
    blocker = Blocker()
    async with AsyncExecutor() as executor:
        future = executor.submit(blocker)
        future.cancel()
        with pytest.raises(asyncio.CancelledError):
            future.exception()
        with pytest.raises(asyncio.CancelledError):
            await future.result()


# -- cancel() ------------------------------------------------------------------------------


async def test_cancelling_a_queued_future_never_calls_its_function() -> None:
    blocker = Blocker()
    calls: list[int] = []

    async def body() -> None:
        pass

    def never(x: int) -> Any:
        calls.append(x)
        return body()

    async with AsyncExecutor(max_workers=1) as executor:
        first = executor.submit(blocker, 1)
        queued = executor.submit(never, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a coroutine left unawaited would fail here
            assert queued.cancel() is True
            assert queued.cancelled()
            assert queued.done()
            blocker.release.set()
            assert await first == 1
            await asyncio.sleep(0.01)
            gc.collect()
        assert calls == []


async def test_cancelling_a_running_future_cancels_its_coroutine() -> None:
    blocker = Blocker()
    async with AsyncExecutor() as executor:
        future = executor.submit(blocker, "job")
        await wait_until(lambda: blocker.started)
        assert future.cancel() is True
        assert future.cancelled()  # at once, before the coroutine has unwound
        await wait_until(lambda: blocker.finished)
        assert blocker.cancelled == ["job"]


async def test_cancelling_a_running_future_frees_its_worker_slot() -> None:
    blocker = Blocker()

    async def quick() -> str:
        return "next"

    async with AsyncExecutor(max_workers=1) as executor:
        running = executor.submit(blocker)
        await wait_until(lambda: blocker.started)
        following = executor.submit(quick)
        running.cancel()
        assert await asyncio.wait_for(following.result(), 2) == "next"


async def test_cancel_of_a_finished_future_returns_false() -> None:
    async def answer() -> int:
        return 1

    async def fail() -> None:
        raise ValueError

    async with AsyncExecutor() as executor:
        ok = executor.submit(answer)
        bad = executor.submit(fail)
        await asyncio.gather(ok.result(), bad.result(), return_exceptions=True)
        assert ok.cancel() is False
        assert bad.cancel() is False
        assert not ok.cancelled()
        assert await ok == 1
        assert isinstance(bad.exception(), ValueError)


# -- add_done_callback ---------------------------------------------------------------------


async def test_a_done_callback_is_called_once_with_the_future() -> None:
    calls: list[AsyncFuture[Any]] = []

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 1

    async with AsyncExecutor() as executor:
        future = executor.submit(answer)
        future.add_done_callback(calls.append)
        await future
        await asyncio.sleep(0.01)
        assert calls == [future]


async def test_a_done_callback_is_called_soon_not_inside_cancel() -> None:
    calls: list[AsyncFuture[Any]] = []
    blocker = Blocker()
    async with AsyncExecutor(max_workers=1) as executor:
        executor.submit(blocker)
        queued = executor.submit(blocker)
        queued.add_done_callback(calls.append)
        queued.cancel()
        assert calls == []
        await asyncio.sleep(0)
        assert calls == [queued]
        blocker.release.set()
        await asyncio.sleep(0.01)
        assert calls == [queued]


async def test_a_done_callback_added_after_the_future_is_done_is_called_soon() -> None:
    calls: list[AsyncFuture[Any]] = []

    async def answer() -> int:
        return 1

    async with AsyncExecutor() as executor:
        future = executor.submit(answer)
        await future
        future.add_done_callback(calls.append)
        assert calls == []
        await asyncio.sleep(0)
        assert calls == [future]


async def test_every_done_callback_is_called_in_the_order_added() -> None:
    calls: list[str] = []

    async def answer() -> int:
        await asyncio.sleep(0.01)
        return 1

    async with AsyncExecutor() as executor:
        future = executor.submit(answer)
        future.add_done_callback(lambda f: calls.append("first"))
        future.add_done_callback(lambda f: calls.append("second"))
        await future
        await asyncio.sleep(0.01)
        assert calls == ["first", "second"]


async def test_a_raising_done_callback_goes_to_the_loop_exception_handler() -> None:
    loop = asyncio.get_running_loop()
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    error = RuntimeError("callback failed")

    def bad_callback(_future: AsyncFuture[Any]) -> None:
        raise error

    async def answer(x: int) -> int:
        return x

    try:
        async with AsyncExecutor(max_workers=1) as executor:
            future = executor.submit(answer, 1)
            future.add_done_callback(bad_callback)
            assert await future == 1
            await asyncio.sleep(0.01)
            assert [c.get("exception") for c in contexts] == [error]
            assert await executor.submit(answer, 2) == 2  # the executor works on
            assert await executor.map(answer, range(3)) == [0, 1, 2]
    finally:
        loop.set_exception_handler(None)


class _ForeignFutureLoop:
    """The running loop, except that its futures are asyncio's pure-Python Future: what a
    loop whose create_future() returns a Future type of its own looks like to a waiter."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.futures._PyFuture(loop=self._loop)  # type: ignore[attr-defined,no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loop, name)


async def test_waiters_whose_loop_futures_are_of_another_type_are_woken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = asyncio.Event()

    async def gated(x: int) -> int:
        await gate.wait()
        return x

    async with AsyncExecutor() as executor:
        future = executor.submit(gated, 5)
        foreign = _ForeignFutureLoop(asyncio.get_running_loop())
        monkeypatch.setattr(asyncio, "get_running_loop", lambda: foreign)
        with pytest.raises(asyncio.TimeoutError):
            await future.result(timeout=0.01)  # its waiter is unlistened on the way out
        assert future._listeners is None
        one = asyncio.ensure_future(future.result())
        two = asyncio.ensure_future(future.result(timeout=30))  # two waiters: a list
        three = asyncio.ensure_future(_await(future))
        await wait_until(lambda: type(future._listeners) is list and len(future._listeners) == 3)
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(one, two, three), 30) == [5, 5, 5]
        monkeypatch.undo()


async def _await(future: AsyncFuture[int]) -> int:
    return await future
