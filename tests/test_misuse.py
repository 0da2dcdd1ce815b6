"""Misuse and bad input: a clear error at the faulty call, and the executor carries on.

Arguments are checked where they are given (the constructor, ``submit``, ``map``,
``map_iter``, ``wait``, ``as_completed``), before anything is queued. A function that
returns something that is not awaitable fails its own future with a ``TypeError`` that
names it. A failing done-callback goes to the loop's exception handler. ``KeyboardInterrupt``
and ``SystemExit`` raised in a task are not swallowed. No coroutine is ever left unawaited.

The tests that need an event loop of their own (a second loop, an interrupt that escapes
the loop, warnings at loop teardown) are plain functions that run each loop kind explicitly.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
import warnings
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from antflow import AsyncExecutor, ExecutorShutdownError, WaitStrategy

LOOPS = [
    pytest.param(asyncio.new_event_loop, id="asyncio"),
    pytest.param(uvloop.new_event_loop, id="uvloop"),
]
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
# A task that should have stopped the loop long before gives up after this long.
SAFETY_SECONDS = 20.0


async def noop(*args: Any) -> str:
    return "done"


def returns_int(x: int = 0) -> int:
    return x


class CallableObject:
    def __call__(self, x: int = 0) -> int:
        return x


def run_in_loop(factory: LoopFactory, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on a new loop of ``factory`` and close the loop, as ``asyncio.run`` does."""
    loop = factory()
    try:
        return loop.run_until_complete(coro)
    finally:
        close_loop(loop)


def close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on ``loop``, finalise its async generators and close it.

    A worker that meets a KeyboardInterrupt or SystemExit while it is cancelled here lets
    it escape once more: that is the behaviour under test, so keep going.
    """
    for _ in range(10):
        tasks = asyncio.all_tasks(loop)
        if not tasks:
            break
        for task in tasks:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        except (KeyboardInterrupt, SystemExit):
            continue
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()


# -- the constructor ----------------------------------------------------------------------


@pytest.mark.parametrize("max_workers", [0, -1, -100])
def test_a_max_workers_below_one_raises_value_error(max_workers: int) -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        AsyncExecutor(max_workers=max_workers)


@pytest.mark.parametrize("max_workers", [2.5, 4.0, "4", True, False, [4]])
def test_a_max_workers_that_is_not_an_int_raises_type_error(max_workers: Any) -> None:
    with pytest.raises(TypeError, match="max_workers must be an int"):
        AsyncExecutor(max_workers=max_workers)


@pytest.mark.parametrize(
    ("option", "value", "error"),
    [
        ("max_pending", -1, ValueError),
        ("max_pending", 1.5, TypeError),
        ("max_per_second", 0, ValueError),
        ("max_per_second", -2.0, ValueError),
        ("max_per_second", "10", TypeError),
        ("task_timeout", 0, ValueError),
        ("task_timeout", -1.0, ValueError),
        ("task_timeout", "1", TypeError),
        ("name", 3, TypeError),
    ],
)
def test_a_bad_executor_option_raises_at_construction_naming_the_option(
    option: str, value: Any, error: type[Exception]
) -> None:
    with pytest.raises(error, match=option):
        AsyncExecutor(**{option: value})


# -- submit, map and map_iter -------------------------------------------------------------


@pytest.mark.parametrize("fn", [42, "noop", None, [noop]])
async def test_submitting_a_non_callable_raises_type_error_at_submit(fn: Any) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="callable"):
            executor.submit(fn)
        assert executor.stats().submitted == 0
        assert await executor.submit(noop).result() == "done"


async def test_submitting_a_coroutine_object_instead_of_a_function_raises_type_error() -> None:
    coro = noop()
    try:
        async with AsyncExecutor(max_workers=2) as executor:
            with pytest.raises(TypeError, match="coroutine"):
                executor.submit(coro)  # type: ignore[arg-type]
    finally:
        coro.close()


async def test_map_of_a_non_callable_raises_type_error_before_reading_any_input() -> None:
    read: list[int] = []

    def source() -> Any:
        for i in range(3):
            read.append(i)
            yield i

    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="callable"):
            await executor.map(42, source())  # type: ignore[arg-type]
    assert read == []
    assert executor.stats().submitted == 0


async def test_map_iter_of_a_non_callable_raises_type_error_at_the_call() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="callable"):
            executor.map_iter(42, range(3))  # type: ignore[arg-type]


@pytest.mark.parametrize("iterable", [5, None, noop])
async def test_map_of_a_non_iterable_raises_type_error_at_the_call(iterable: Any) -> None:
    # The message names the method that was called.
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match=r"^map\(\) arguments must be iterables"):
            await executor.map(noop, iterable)
        with pytest.raises(TypeError, match=r"^map_iter\(\) arguments must be iterables"):
            executor.map_iter(noop, iterable)


async def test_map_without_an_iterable_raises_type_error() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match=r"^map\(\) needs at least one iterable"):
            await executor.map(noop)
        with pytest.raises(TypeError, match=r"^map_iter\(\) needs at least one iterable"):
            executor.map_iter(noop)


@pytest.mark.parametrize("window", [0, -1, 1.5, True])
async def test_a_bad_window_raises_value_error_at_the_call(window: Any) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(ValueError, match="window"):
            await executor.map(noop, range(3), window=window)
        with pytest.raises(ValueError, match="window"):
            executor.map_iter(noop, range(3), window=window)


BAD_CALL_OPTIONS = [
    pytest.param({"retries": -1}, ValueError, "retries", id="negative-retries"),
    pytest.param({"retries": 1.5}, TypeError, "retries", id="float-retries"),
    pytest.param({"retries": True}, TypeError, "retries", id="bool-retries"),
    # Falsy but not an int: each must fail as loudly as a truthy one, not mean "no retries".
    pytest.param({"retries": False}, TypeError, "retries", id="false-retries"),
    pytest.param({"retries": 0.0}, TypeError, "retries", id="zero-float-retries"),
    pytest.param({"retries": None}, TypeError, "retries", id="none-retries"),
    pytest.param({"retry_delay": -0.1}, ValueError, "retry_delay", id="negative-retry-delay"),
    pytest.param({"retry_delay": "1"}, TypeError, "retry_delay", id="str-retry-delay"),
    pytest.param({"task_timeout": 0}, ValueError, "task_timeout", id="zero-task-timeout"),
    pytest.param({"task_timeout": -1}, ValueError, "task_timeout", id="negative-task-timeout"),
]


# submit has two paths (decisions.md 18): a fast one for an executor with nothing to check,
# and a checked one (here, for an executor with max_pending). Both must refuse bad options.
@pytest.mark.parametrize(
    "executor_options",
    [pytest.param({}, id="fast-path"), pytest.param({"max_pending": 10}, id="checked-path")],
)
@pytest.mark.parametrize(("options", "error", "name"), BAD_CALL_OPTIONS)
async def test_a_bad_option_of_submit_raises_at_submit_naming_it(
    options: dict[str, Any], error: type[Exception], name: str, executor_options: dict[str, Any]
) -> None:
    async with AsyncExecutor(max_workers=2, **executor_options) as executor:
        with pytest.raises(error, match=name):
            executor.submit(noop, **options)
        with pytest.raises(error, match=name):
            await executor.asubmit(noop, **options)
        assert executor.stats().submitted == 0


@pytest.mark.parametrize(("options", "error", "name"), BAD_CALL_OPTIONS)
async def test_a_bad_option_of_map_raises_at_the_call_naming_it(
    options: dict[str, Any], error: type[Exception], name: str
) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(error, match=name):
            await executor.map(noop, range(3), **options)
        with pytest.raises(error, match=name):
            executor.map_iter(noop, range(3), **options)
        assert executor.stats().submitted == 0


async def test_a_semaphore_that_is_not_an_async_context_manager_raises_type_error() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="semaphore"):
            executor.submit(noop, semaphore=5)  # type: ignore[arg-type]


# -- a function that returns no awaitable -------------------------------------------------

NOT_AWAITABLE = [
    pytest.param(returns_int, "returns_int", id="function"),
    pytest.param(lambda x=0: x, "<lambda>", id="lambda"),
    pytest.param(functools.partial(returns_int, 1), "returns_int", id="partial"),
    pytest.param(CallableObject(), "CallableObject", id="callable-object"),
]


@pytest.mark.parametrize(("fn", "name"), NOT_AWAITABLE)
async def test_a_function_returning_a_non_awaitable_fails_its_future_with_a_type_error_naming_it(
    fn: Any, name: str
) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(fn)
        with pytest.raises(TypeError, match="not awaitable") as raised:
            await future.result()
        assert name in str(raised.value)
        assert isinstance(future.exception(), TypeError)
        assert await executor.submit(noop).result() == "done"


@pytest.mark.parametrize(
    "make_options",
    [
        pytest.param(lambda: {"task_timeout": 5.0}, id="task-timeout"),
        pytest.param(lambda: {"semaphore": asyncio.Semaphore(1)}, id="semaphore"),
        pytest.param(lambda: {"retries": 2, "retry_delay": 0}, id="retries"),
    ],
)
async def test_a_non_awaitable_result_on_the_options_path_also_names_the_function(
    make_options: Callable[[], dict[str, Any]],
) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(returns_int, **make_options())
        with pytest.raises(TypeError, match="returns_int"):
            await future.result()


async def test_a_non_awaitable_result_in_propagate_context_mode_names_the_function() -> None:
    async with AsyncExecutor(max_workers=2, propagate_context=True) as executor:
        with pytest.raises(TypeError, match="returns_int"):
            await executor.submit(returns_int).result()


async def test_map_of_a_function_returning_a_non_awaitable_raises_a_type_error_naming_it() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="returns_int"):
            await executor.map(returns_int, range(5))
        with pytest.raises(TypeError, match="returns_int"):
            async for _ in executor.map_iter(returns_int, range(5)):
                pass
        assert await executor.map(noop, range(3)) == ["done"] * 3


# -- wait and as_completed ----------------------------------------------------------------


@pytest.mark.parametrize("return_when", ["SOMETIMES", "first_completed", 1, None])
async def test_an_unknown_return_when_raises_value_error_listing_the_choices(
    return_when: Any,
) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(noop)
        with pytest.raises(ValueError, match="FIRST_COMPLETED, FIRST_EXCEPTION, ALL_COMPLETED"):
            await executor.wait([future], return_when=return_when)
        assert not future._listeners


@pytest.mark.parametrize(
    "return_when",
    [asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION, asyncio.ALL_COMPLETED, *WaitStrategy],
)
async def test_wait_accepts_asyncios_constants_and_the_wait_strategies(return_when: Any) -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(noop)
        done, pending = await executor.wait([future], return_when=return_when)
        assert (done, pending) == ({future}, set())


async def test_a_negative_timeout_of_wait_or_as_completed_raises_value_error() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(noop)
        with pytest.raises(ValueError, match="timeout"):
            await executor.wait([future], timeout=-1)
        with pytest.raises(ValueError, match="timeout"):
            executor.as_completed([future], timeout=-1)


NAN = float("nan")

# Every place that takes seconds, given NaN. The loops disagree on a NaN delay (uvloop
# raises from call_later, asyncio schedules a timer that fires at once or never), so each
# call refuses it before anything is scheduled.
NAN_CALLS = [
    pytest.param(lambda ex, f: ex.map(noop, range(3), timeout=NAN), id="map-timeout"),
    pytest.param(lambda ex, f: ex.map_iter(noop, range(3), timeout=NAN), id="map_iter-timeout"),
    pytest.param(lambda ex, f: ex.wait([f], timeout=NAN), id="wait-timeout"),
    pytest.param(lambda ex, f: ex.as_completed([f], timeout=NAN), id="as_completed-timeout"),
    pytest.param(lambda ex, f: f.result(timeout=NAN), id="result-timeout"),
    pytest.param(lambda ex, f: ex.submit(noop, retries=1, retry_delay=NAN), id="retry_delay"),
    pytest.param(lambda ex, f: ex.submit(noop, task_timeout=NAN), id="task_timeout"),
    pytest.param(lambda ex, f: ex.shutdown(timeout=NAN), id="shutdown-timeout"),
]


@pytest.mark.parametrize("call", NAN_CALLS)
async def test_a_nan_number_of_seconds_is_refused_at_the_call_and_leaves_nothing_behind(
    call: Callable[[AsyncExecutor, Any], Any],
) -> None:
    executor = AsyncExecutor(max_workers=2)
    gate = asyncio.Event()

    async def held() -> str:
        await gate.wait()
        return "held"

    pending = executor.submit(held)
    with pytest.raises(ValueError, match=r"(?i)nan"):
        made = call(executor, pending)
        if asyncio.iscoroutine(made):
            await made
    gate.set()
    assert await asyncio.wait_for(pending.result(), SAFETY_SECONDS) == "held"
    # Nothing of the refused call is left for shutdown to wait for.
    await asyncio.wait_for(executor.shutdown(), SAFETY_SECONDS)
    assert executor.stats().submitted == 1


async def test_a_timeout_of_result_that_is_no_number_raises_type_error_even_once_ended() -> None:
    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(noop)
        with pytest.raises(TypeError, match="timeout"):
            await future.result(timeout="1")  # type: ignore[arg-type]
        assert await future.result() == "done"
        with pytest.raises(TypeError, match="timeout"):
            await future.result(timeout="1")  # type: ignore[arg-type]
        # As in concurrent.futures, a timeout at or below zero means "do not wait".
        assert await future.result(timeout=-1) == "done"


async def test_waiting_on_something_other_than_async_futures_raises_type_error() -> None:
    loop = asyncio.get_running_loop()
    alien = loop.create_future()
    async with AsyncExecutor(max_workers=2) as executor:
        with pytest.raises(TypeError, match="AsyncFuture"):
            executor.as_completed([alien])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="AsyncFuture"):
            await executor.wait([alien])  # type: ignore[list-item]


# -- the wrong loop, no loop --------------------------------------------------------------


async def _first_use(executor: AsyncExecutor) -> Any:
    return await executor.submit(noop).result()


def _misuses(executor: AsyncExecutor) -> dict[str, Callable[[], Coroutine[Any, Any, Any]]]:
    async def submit() -> Any:
        return executor.submit(noop)

    async def asubmit() -> Any:
        return await executor.asubmit(noop)

    async def map_() -> Any:
        return await executor.map(noop, range(3))

    async def map_iter() -> Any:
        return [x async for x in executor.map_iter(noop, range(3))]

    return {"submit": submit, "asubmit": asubmit, "map": map_, "map_iter": map_iter}


@pytest.mark.parametrize("method", ["submit", "asubmit", "map", "map_iter"])
@pytest.mark.parametrize("first", LOOPS)
@pytest.mark.parametrize("second", LOOPS)
def test_using_an_executor_from_a_second_event_loop_raises_runtime_error(
    first: LoopFactory, second: LoopFactory, method: str
) -> None:
    executor = AsyncExecutor(max_workers=2)
    home = first()
    try:
        assert home.run_until_complete(_first_use(executor)) == "done"
        with pytest.raises(RuntimeError, match="another event loop"):
            run_in_loop(second, _misuses(executor)[method]())
        assert executor.stats().submitted == 1
        # The executor still works on its own loop.
        assert home.run_until_complete(_first_use(executor)) == "done"
        home.run_until_complete(executor.shutdown())
    finally:
        close_loop(home)


def test_reusing_an_executor_in_a_second_asyncio_run_raises_runtime_error() -> None:
    executor = AsyncExecutor(max_workers=2)
    assert asyncio.run(_first_use(executor)) == "done"
    with pytest.raises(RuntimeError, match="one executor per event loop"):
        asyncio.run(_first_use(executor))


def test_submitting_outside_a_running_loop_raises_runtime_error() -> None:
    executor = AsyncExecutor(max_workers=2)
    with pytest.raises(RuntimeError, match="running loop"):
        executor.submit(noop)
    assert executor.stats().submitted == 0


def test_submit_threadsafe_before_the_executor_is_bound_raises_runtime_error() -> None:
    executor = AsyncExecutor(max_workers=2)
    with pytest.raises(RuntimeError, match="bound to a running loop"):
        executor.submit_threadsafe(noop)


# -- after shutdown -----------------------------------------------------------------------


async def test_submitting_after_shutdown_raises_executor_shutdown_error() -> None:
    executor = AsyncExecutor(max_workers=2)
    await executor.submit(noop).result()
    await executor.shutdown()
    with pytest.raises(ExecutorShutdownError, match="shutdown"):
        executor.submit(noop)
    assert issubclass(ExecutorShutdownError, RuntimeError)
    assert executor.stats().submitted == 1


async def test_every_way_of_adding_work_after_shutdown_raises_executor_shutdown_error() -> None:
    executor = AsyncExecutor(max_workers=2)
    await executor.shutdown()
    with pytest.raises(ExecutorShutdownError):
        await executor.asubmit(noop)
    with pytest.raises(ExecutorShutdownError):
        await executor.map(noop, range(3))
    with pytest.raises(ExecutorShutdownError):
        executor.map_iter(noop, range(3))
    assert executor.stats().submitted == 0


async def test_submitting_while_shutdown_is_waiting_raises_executor_shutdown_error() -> None:
    release = asyncio.Event()
    executor = AsyncExecutor(max_workers=1)
    running = executor.submit(release.wait)
    closing = asyncio.create_task(executor.shutdown(wait=True))
    await asyncio.sleep(0)
    with pytest.raises(ExecutorShutdownError):
        executor.submit(noop)
    release.set()
    await closing
    assert await running is True


async def test_submit_threadsafe_after_shutdown_fails_the_returned_future() -> None:
    executor = AsyncExecutor(max_workers=2)
    await executor.submit(noop).result()
    await executor.shutdown()
    outcome: list[Any] = []

    def from_a_thread() -> None:
        outer = executor.submit_threadsafe(noop)
        try:
            outcome.append(outer.result(timeout=5))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=from_a_thread)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.001)
    assert len(outcome) == 1
    assert isinstance(outcome[0], ExecutorShutdownError)


# -- failing done-callbacks ---------------------------------------------------------------


async def test_a_failing_done_callback_goes_to_the_loop_exception_handler() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        async with AsyncExecutor(max_workers=2) as executor:
            calls: list[str] = []

            def failing(_future: Any) -> None:
                calls.append("failing")
                raise LookupError("callback bug")

            future = executor.submit(noop)
            future.add_done_callback(failing)
            future.add_done_callback(lambda _f: calls.append("next"))
            assert await future == "done"
            await asyncio.sleep(0)
            future.add_done_callback(failing)  # already done: scheduled at once
            await asyncio.sleep(0)
            assert await executor.submit(noop).result() == "done"
    finally:
        loop.set_exception_handler(previous)
    assert calls == ["failing", "next", "failing"]
    assert [type(context.get("exception")) for context in reported] == [LookupError] * 2


async def test_the_executor_carries_on_after_a_done_callback_fails() -> None:
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, _context: None)
    try:
        async with AsyncExecutor(max_workers=2) as executor:
            futures = [executor.submit(noop, i) for i in range(20)]
            for future in futures:
                future.add_done_callback(lambda _f: 1 / 0)
            assert [await f for f in futures] == ["done"] * 20
            assert await executor.map(noop, range(50)) == ["done"] * 50
            stats = executor.stats()
    finally:
        loop.set_exception_handler(previous)
    assert (stats.completed, stats.failed) == (70, 0)


# -- KeyboardInterrupt and SystemExit ----------------------------------------------------


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
@pytest.mark.parametrize(
    "options",
    [
        pytest.param({}, id="inline"),
        pytest.param({"retries": 3, "retry_delay": 0}, id="with-retries"),
        pytest.param({"task_timeout": 5.0}, id="with-task-timeout"),
    ],
)
@pytest.mark.parametrize("factory", LOOPS)
def test_a_keyboard_interrupt_or_system_exit_in_a_task_escapes_the_loop(
    factory: LoopFactory, options: dict[str, Any], exc_type: type[BaseException]
) -> None:
    attempts: list[int] = []
    box: dict[str, Any] = {}

    async def interrupted() -> None:
        attempts.append(1)
        raise exc_type("stop")

    async def main() -> str:
        executor = AsyncExecutor(max_workers=2)
        box["future"] = executor.submit(interrupted, **options)
        await asyncio.sleep(SAFETY_SECONDS)
        return "swallowed"

    loop = _quiet(factory())
    try:
        with pytest.raises(exc_type):
            loop.run_until_complete(main())
        assert attempts == [1]  # never retried
        future = box["future"]
        assert future.done()
        assert isinstance(future.exception(), exc_type)
    finally:
        close_loop(loop)


@pytest.mark.parametrize("factory", LOOPS)
def test_a_keyboard_interrupt_in_a_task_per_item_escapes_the_loop(factory: LoopFactory) -> None:
    async def interrupted() -> None:
        raise KeyboardInterrupt

    async def main() -> str:
        executor = AsyncExecutor(max_workers=2, propagate_context=True)
        executor.submit(interrupted)
        await asyncio.sleep(SAFETY_SECONDS)
        return "swallowed"

    loop = _quiet(factory())
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(main())
    finally:
        close_loop(loop)


def _quiet(loop: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """A worker that let an interrupt through ends with it, unretrieved: do not log that."""
    loop.set_exception_handler(lambda _loop, _context: None)
    return loop


# -- no coroutine is ever left unawaited --------------------------------------------------


def _never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


async def _cancel_everything_queued() -> None:
    """Leave unstarted items behind in every way there is to abandon them."""
    blocker = asyncio.Event()

    async def item(x: int = 0) -> int:
        if x != 0:
            await blocker.wait()
        return x

    def returns_coroutine(x: int = 0) -> Coroutine[Any, Any, int]:
        return item(x)  # a plain function that returns a coroutine when called

    executor = AsyncExecutor(max_workers=2)

    # A consumer of map_iter stops after the first result, with items queued.
    async for _ in executor.map_iter(returns_coroutine, range(50), window=10):
        break

    # Two items hold both workers; everything submitted next stays queued.
    running = [executor.submit(item, i) for i in (1, 2)]
    while not all(f.running() for f in running):
        await asyncio.sleep(0.001)
    queued = [executor.submit(item, i) for i in range(10)]
    queued += [executor.submit(returns_coroutine, i) for i in range(10)]
    queued += [executor.submit(item, i, retries=2, task_timeout=5) for i in range(5)]
    for future in queued[5:15]:
        future.cancel()  # cancelled while queued

    # The caller of map goes away with all its items queued.
    mapper = asyncio.create_task(executor.map(item, range(50)))
    await asyncio.sleep(0.01)
    mapper.cancel()
    with pytest.raises(asyncio.CancelledError):
        await mapper

    # Shutdown cancels the rest of the queue.
    await executor.shutdown(wait=False, cancel_futures=True)
    blocker.set()
    await executor.shutdown(wait=True)
    assert all(f.cancelled() for f in queued)
    assert [await f for f in running] == [1, 2]


@pytest.mark.parametrize("factory", LOOPS)
def test_cancelled_queued_items_and_shutdown_leave_no_coroutine_unawaited(
    factory: LoopFactory,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # The detector works: a coroutine dropped unawaited is reported.
        dropped = noop()
        del dropped
        gc.collect()
        assert len(_never_awaited(caught)) == 1
        caught.clear()

        run_in_loop(factory, _cancel_everything_queued())
        gc.collect()
    assert _never_awaited(caught) == []
    assert [str(w.message) for w in caught] == []
