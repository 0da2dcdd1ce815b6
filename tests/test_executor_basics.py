"""Creating an executor, binding it to a loop, submitting work and reading the outcome.

Also what importing antflow does (nothing global) and the uvloop helpers ``antflow.run``
and ``antflow.new_event_loop``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import uvloop

import antflow
from antflow import AntFlowError, AsyncExecutor, AsyncFuture, ExecutorShutdownError
from antflow._future import ONE_ARG

# -- construction and validation -----------------------------------------------------------


def test_max_workers_defaults_to_five() -> None:
    assert AsyncExecutor().max_workers == 5


def test_max_workers_none_means_cpu_count_plus_four_capped_at_32() -> None:
    assert AsyncExecutor(max_workers=None).max_workers == min(32, (os.cpu_count() or 1) + 4)


@pytest.mark.parametrize("max_workers", [0, -1])
def test_max_workers_below_one_is_a_value_error(max_workers: int) -> None:
    with pytest.raises(ValueError, match="max_workers must be at least 1"):
        AsyncExecutor(max_workers=max_workers)


@pytest.mark.parametrize("max_workers", [1.5, True, "3"])
def test_max_workers_that_is_not_an_int_is_a_type_error(max_workers: Any) -> None:
    with pytest.raises(TypeError, match="max_workers"):
        AsyncExecutor(max_workers=max_workers)


def test_an_executor_is_created_without_any_event_loop() -> None:
    with pytest.raises(RuntimeError):
        asyncio.get_running_loop()
    executor = AsyncExecutor(max_workers=2)

    async def double(x: int) -> int:
        return 2 * x

    async def main() -> int:
        async with executor:
            return await executor.submit(double, 21)

    assert asyncio.run(main()) == 42


def test_submit_outside_a_running_loop_is_a_runtime_error() -> None:
    async def noop() -> None:
        pass

    with pytest.raises(RuntimeError):
        AsyncExecutor().submit(noop)


async def test_using_the_executor_from_a_second_loop_is_a_runtime_error() -> None:
    async def double(x: int) -> int:
        return 2 * x

    async with AsyncExecutor(max_workers=2) as executor:
        assert await executor.submit(double, 1) == 2  # binds to this test's loop

        async def use_from_another_loop() -> BaseException | None:
            try:
                executor.submit(double, 2)
            except BaseException as exc:
                return exc
            return None

        error = await asyncio.to_thread(asyncio.run, use_from_another_loop())
        assert isinstance(error, RuntimeError)
        assert not isinstance(error, ExecutorShutdownError)
        assert "loop" in str(error)

        assert await executor.submit(double, 3) == 6  # still fine on its own loop


def test_an_executor_used_in_one_asyncio_run_refuses_a_second_run() -> None:
    executor = AsyncExecutor(max_workers=2)

    async def double(x: int) -> int:
        return 2 * x

    async def first() -> int:
        return await executor.submit(double, 1)

    async def second() -> int:
        return await executor.submit(double, 2)

    assert asyncio.run(first()) == 2
    with pytest.raises(RuntimeError, match="loop"):
        asyncio.run(second())


# -- submit --------------------------------------------------------------------------------


async def test_submit_never_runs_the_function_before_it_returns() -> None:
    calls: list[int] = []

    async def record(x: int) -> int:
        calls.append(x)
        return x

    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(record, 1)
        assert not future.done()
        assert calls == []
        assert await future == 1
        assert calls == [1]


async def test_submit_never_calls_the_function_before_it_returns() -> None:
    # A plain callable that returns a coroutine shows whether submit called it.
    called: list[int] = []

    async def body(x: int) -> int:
        return x

    def fn(x: int) -> Any:
        called.append(x)
        return body(x)

    async with AsyncExecutor(max_workers=2) as executor:
        future = executor.submit(fn, 7)
        assert called == []
        assert await future == 7


async def test_submit_passes_positional_and_keyword_arguments() -> None:
    async def describe(a: int, b: int, *, c: int = 0, d: int = 0) -> tuple[int, int, int, int]:
        return a, b, c, d

    async with AsyncExecutor() as executor:
        assert await executor.submit(describe, 1, 2, d=4) == (1, 2, 0, 4)
        assert await executor.submit(describe, 1, b=2, c=3) == (1, 2, 3, 0)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((), {}),
        ((7,), {}),  # fn(x): the future keeps x itself, not a 1-tuple (ONE_ARG)
        (((1, 2),), {}),  # one argument that is itself a tuple: passed whole, not unpacked
        ((None,), {}),
        ((1, 2), {}),
        ((7,), {"k": 1}),
        ((), {"k": 1}),
    ],
)
@pytest.mark.parametrize("with_options", [False, True])
async def test_submit_calls_the_function_with_exactly_its_arguments(
    args: tuple[Any, ...], kwargs: dict[str, Any], with_options: bool
) -> None:
    async def echo(*a: Any, **k: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return a, k

    options: dict[str, Any] = {"retries": 1} if with_options else {}
    async with AsyncExecutor() as executor:
        future = executor.submit(echo, *args, **kwargs, **options)
        assert await future.result() == (args, kwargs)
        executor_wide = AsyncExecutor(propagate_context=True)  # options on every item
        async with executor_wide:
            assert await executor_wide.submit(echo, *args, **kwargs) == (args, kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs", "stored"),
    [
        ((7,), {}, (7, ONE_ARG)),
        ((), {}, ((), None)),
        ((1, 2), {}, ((1, 2), None)),
        ((7,), {"k": 1}, ((7,), {"k": 1})),
    ],
)
async def test_submit_fast_path_sets_every_field_that_the_initialiser_sets(
    args: tuple[Any, ...], kwargs: dict[str, Any], stored: tuple[Any, Any]
) -> None:
    # submit inlines AsyncFuture.__init__: a field added to one and not the other fails.
    async def task(*a: Any, **k: Any) -> None:
        return None

    async with AsyncExecutor() as executor:
        fast = executor.submit(task, *args, **kwargs)
        made = AsyncFuture(executor._pool, task, stored[0], stored[1], None)
        fields = [name for name in AsyncFuture.__slots__ if name != "__weakref__"]
        unset = object()
        assert {name: getattr(fast, name, unset) for name in fields} == {
            name: getattr(made, name, unset) for name in fields
        }
        await fast


async def test_submit_passes_a_keyword_argument_named_fn_to_the_function() -> None:
    async def task(*, fn: str) -> str:
        return fn

    async with AsyncExecutor() as executor:
        assert await executor.submit(task, fn="mine") == "mine"


async def test_submit_returns_the_value_of_the_function() -> None:
    async def make(x: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"x": x}

    async with AsyncExecutor() as executor:
        assert await executor.submit(make, 3).result() == {"x": 3}


async def test_an_exception_of_the_function_is_re_raised_by_result() -> None:
    error = ValueError("bad input")

    async def fail() -> None:
        await asyncio.sleep(0)
        raise error

    async with AsyncExecutor() as executor:
        future = executor.submit(fail)
        with pytest.raises(ValueError) as caught:
            await future.result()
        assert caught.value is error
        with pytest.raises(ValueError):
            await future  # awaiting the future itself raises too


async def test_a_non_callable_is_a_type_error_at_submit() -> None:
    async with AsyncExecutor() as executor:
        with pytest.raises(TypeError):
            executor.submit(42)  # type: ignore[arg-type]


async def test_a_failed_task_leaves_the_executor_working() -> None:
    async def fail() -> None:
        raise KeyError("x")

    async def ok() -> str:
        return "ok"

    async with AsyncExecutor(max_workers=1) as executor:
        with pytest.raises(KeyError):
            await executor.submit(fail)
        assert await executor.submit(ok) == "ok"


# -- repr ----------------------------------------------------------------------------------


async def test_the_executor_repr_shows_its_name_state_and_size() -> None:
    executor = AsyncExecutor(max_workers=3, name="reprtest")
    text = repr(executor)
    assert "reprtest" in text
    assert "open" in text
    assert "max_workers=3" in text
    await executor.shutdown()
    assert "closed" in repr(executor)


async def test_the_future_repr_shows_its_state() -> None:
    release = asyncio.Event()

    async def wait_then_return(x: int) -> int:
        await release.wait()
        return x

    async def fail() -> None:
        raise ValueError("no")

    async with AsyncExecutor(max_workers=1) as executor:
        running = executor.submit(wait_then_return, 1)
        queued = executor.submit(wait_then_return, 2)
        cancelled = executor.submit(wait_then_return, 3)
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert "running" in repr(running)
        assert "pending" in repr(queued)
        assert "cancelled" in repr(cancelled)
        release.set()
        await queued
        failed = executor.submit(fail)
        await asyncio.wait_for(asyncio.gather(failed.result(), return_exceptions=True), 1)
        assert "finished" in repr(running)
        assert "ValueError" in repr(failed)


# -- event loops ---------------------------------------------------------------------------


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_importing_antflow_installs_no_event_loop_policy() -> None:
    out = _run_python(
        """
        import asyncio
        before = type(asyncio.get_event_loop_policy())
        import antflow
        after = type(asyncio.get_event_loop_policy())
        async def loop_type():
            return type(asyncio.get_running_loop()).__module__
        print(before is after, after.__module__, asyncio.run(loop_type()))
        """
    )
    same, policy_module, loop_module = out.split()
    assert same == "True"
    assert not policy_module.startswith("uvloop")
    assert not loop_module.startswith("uvloop")


def test_antflow_run_runs_the_coroutine_on_uvloop() -> None:
    async def main() -> type[asyncio.AbstractEventLoop]:
        return type(asyncio.get_running_loop())

    assert antflow.run(main()) is uvloop.Loop


def test_antflow_run_returns_the_value_and_raises_the_exception_of_the_coroutine() -> None:
    async def value() -> int:
        return 5

    async def error() -> None:
        raise LookupError("from main")

    assert antflow.run(value()) == 5
    with pytest.raises(LookupError, match="from main"):
        antflow.run(error())


def test_new_event_loop_returns_a_uvloop_loop() -> None:
    loop = antflow.new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
        assert not loop.is_running()
    finally:
        loop.close()


def test_executor_shutdown_error_is_a_runtime_error_and_an_antflow_error() -> None:
    assert issubclass(ExecutorShutdownError, RuntimeError)
    assert issubclass(ExecutorShutdownError, AntFlowError)
