"""What runs on a Dask worker: one batch of items per Dask task, on one AsyncExecutor.

Dask runs :func:`run_batch` (an ``async def``) on the worker's own event loop. Every
batch that a :class:`~antflow.cluster.ClusterExecutor` sends to this worker process runs
its items on the same per-process :class:`~antflow.AsyncExecutor`, made on first use and
keyed by the executor's id, so ``max_workers`` bounds the items running in the process
however many batches Dask runs at once. Retries and ``task_timeout`` run here, with the
same code as in a local executor.

The client reaches running items through :func:`cancel_items`, which it calls with
``Client.run`` on every worker. ``Client.run`` calls a plain function in the worker's
event loop thread, the thread that runs the batches, so cancelling is a plain
``future.cancel()``: a queued item never starts, a running one has its coroutine
cancelled. A cancel that arrives before its batch does is kept as a tombstone, which the
batch reads when it starts; the client tells the workers when such a batch has ended, so
tombstones do not pile up on the workers that never saw it.

Everything here is module-level and importable as ``antflow.cluster._runner``, so Dask
sends these functions by reference.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from functools import partial
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import distributed

from antflow import AsyncExecutor, AsyncFuture, WaitStrategy, wait
from antflow._options import Options, run_with_options

__all__ = ["MAP", "SUBMIT", "cancel_items", "dumps", "forget_executor", "run_batch"]

MAP = 0  # payload (MAP, fn, opts, [args, ...], stop): one function over argument tuples
SUBMIT = 1  # payload (SUBMIT, None, None, [(fn, args, kwargs, opts), ...], 0)
STOP_ALL = 1  # map: an item's failure cancels the rest of its batch
STOP_AFTER = 2  # map_iter: an item's failure cancels the items after it

# Outcome of one batch: (values, errors, cancelled, skipped, retried, elapsed), pickled by
# the worker: values[i] is item i's value, errors maps an index to the exception the item
# raised, cancelled lists the items that ended cancelled, skipped those that a failure
# made useless (see _settle); None stands for an empty list.

TOPIC = "antflow-"  # + the executor's id: the events that stream submitted items' outcomes
STREAM_LIMIT = 4096  # larger outcomes come with their batch's result only

ALL = None  # a tombstone that covers every item of a batch


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``; functions that cannot travel by reference travel by value."""
    return cloudpickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)  # type: ignore[no-any-return]


class _Side:
    """The state of one ClusterExecutor in this worker process."""

    def __init__(self) -> None:
        self.executor: AsyncExecutor | None = None  # made by the first batch
        self.running: dict[int, list[AsyncFuture[Any] | None]] = {}
        self.tombstones: dict[int, set[int] | None] = {}


_sides: dict[str, _Side] = {}
_forgotten: dict[str, None] = {}  # executors shut down: their late batches do not run


def _side(exec_id: str) -> _Side:
    side = _sides.get(exec_id)
    if side is None:
        side = _sides[exec_id] = _Side()
    return side


def _options(opts: tuple[int, float, float | None] | None) -> Options | None:
    if opts is None:
        return None
    retries, retry_delay, task_timeout = opts
    return Options(retries, retry_delay, None, task_timeout, None, False)


async def run_batch(
    exec_id: str, batch_id: int, max_workers: int, name: str, payload: bytes
) -> bytes:
    """Run one batch of items on this process's executor; return its pickled outcomes."""
    started = time.perf_counter()
    kind, fn, opts, items, stop = pickle.loads(payload)
    n = len(items)
    if exec_id in _forgotten:  # its executor has shut down: a late batch never runs
        return dumps(([None] * n, None, list(range(n)), None, 0, 0.0))
    side = _side(exec_id)
    tomb = side.tombstones.pop(batch_id, set())
    if tomb is ALL:
        return dumps(([None] * n, None, list(range(n)), None, 0, 0.0))
    executor = side.executor
    if executor is None:
        executor = side.executor = AsyncExecutor(max_workers, name=name)
    retried = [0]  # retries made by the batch's items so far

    def count_retry() -> None:
        retried[0] += 1

    futures = _start(executor.submit, kind, fn, opts, items, tomb, count_retry)
    del items
    if kind == SUBMIT:
        _stream(exec_id, batch_id, futures, retried)
    side.running[batch_id] = futures
    try:
        skipped = await _settle(futures, stop)
        outcome = _collect(futures, tomb, skipped)
    except BaseException:
        for future in futures:
            if future is not None:
                future.cancel()
        raise
    finally:
        side.running.pop(batch_id, None)
    outcome += (retried[0], time.perf_counter() - started)
    try:
        return dumps(outcome)
    except Exception:
        return dumps(_picklable(fn, outcome))


def _start(
    submit: Any,
    kind: int,
    fn: Any,
    opts: Any,
    items: list[Any],
    tomb: set[int],
    count_retry: Any,
) -> list[AsyncFuture[Any] | None]:
    """Submit the batch's items (but those cancelled already) to the process's executor."""
    futures: list[AsyncFuture[Any] | None] = [None] * len(items)
    if kind == MAP:
        options = _options(opts)
        for i, args in enumerate(items):
            if i in tomb:
                continue
            if options is None:
                futures[i] = submit(fn, *args)
            else:
                futures[i] = submit(
                    run_with_options, fn, args, None, options, None, None, count_retry
                )
    else:
        for i, (item_fn, args, kwargs, item_opts) in enumerate(items):
            if i in tomb:
                continue
            if item_opts is None and not kwargs:
                futures[i] = submit(item_fn, *args)
            else:
                options = _options(item_opts) or Options(0, 0.1, None, None, None, False)
                futures[i] = submit(
                    run_with_options, item_fn, args, kwargs, options, None, None, count_retry
                )
    return futures


def _failed(future: AsyncFuture[Any] | None) -> bool:
    return (
        future is not None
        and future.done()
        and not future.cancelled()
        and (future.exception() is not None)
    )


async def _settle(futures: list[AsyncFuture[Any] | None], stop: int) -> set[int]:
    """Wait for the batch's items. With ``stop``, the first failure ends what the caller
    will never read (STOP_ALL: every other item, for ``map``; STOP_AFTER: the items after
    it, for ``map_iter``); return the indices of the items ended that way."""
    live = [f for f in futures if f is not None]
    if not live:
        return set()
    if not stop:
        await wait(live)
        return set()
    _done, pending = await wait(live, return_when=WaitStrategy.FIRST_EXCEPTION)
    skipped: set[int] = set()
    if pending:  # an item failed
        first = min(i for i, f in enumerate(futures) if _failed(f))
        for i, future in enumerate(futures):
            if future is not None and not future.done() and (stop == STOP_ALL or i > first):
                future.cancel()
                skipped.add(i)
        await wait(live)
    return skipped


def _collect(
    futures: list[AsyncFuture[Any] | None], tomb: set[int], skipped: set[int]
) -> tuple[Any, ...]:
    """(values, errors, cancelled, skipped) of the ended items."""
    values: list[Any] = [None] * len(futures)
    errors: dict[int, BaseException] | None = None
    cancelled: list[int] | None = sorted(tomb) if tomb else None
    for i, future in enumerate(futures):
        if future is None or i in skipped:
            continue
        if future.cancelled():
            if cancelled is None:
                cancelled = []
            cancelled.append(i)
            continue
        exc = future.exception()
        if exc is not None:
            if errors is None:
                errors = {}
            errors[i] = exc
        else:
            values[i] = future._result
    return values, errors, cancelled, sorted(skipped) if skipped else None


def _stream(
    exec_id: str, batch_id: int, futures: list[AsyncFuture[Any] | None], retried: list[int]
) -> None:
    """Send each submitted item's outcome to the client as soon as it ends (an event of
    the topic ``antflow-<exec_id>``, with the batch's retries so far), when it is small;
    the batch's result, which carries every outcome, settles the rest when it ends."""
    try:
        worker = distributed.get_worker()
    except ValueError:  # pragma: no cover - not on a worker (run directly)
        return
    topic = TOPIC + exec_id

    def send(index: int, future: AsyncFuture[Any]) -> None:
        if future.cancelled():
            return  # a cancel came from the client, which knows
        exc = future.exception()
        try:
            data = dumps((index, exc is None, future._result if exc is None else exc))
        except Exception:
            return  # the batch's result says what went wrong
        if len(data) <= STREAM_LIMIT:
            worker.log_event(topic, [batch_id, retried[0], data])

    for i, future in enumerate(futures):
        if future is not None:
            future.add_done_callback(partial(send, i))


def _picklable(fn: Any, outcome: tuple[Any, ...]) -> tuple[Any, ...]:
    """The outcome with every value or exception that cannot be pickled replaced by a
    TypeError that says so (the client raises it for that item)."""
    values, errors, cancelled, skipped, retried, elapsed = outcome
    errors = dict(errors or {})
    for i, value in enumerate(values):
        if i not in errors and not _can_pickle(value):
            errors[i] = TypeError(
                f"the result of {_name(fn, i)} cannot be pickled to return it from the "
                f"cluster: {type(value).__qualname__} {_short(value)}"
            )
            values[i] = None
    for i, exc in errors.items():
        if not _can_pickle(exc):
            errors[i] = RuntimeError(f"{type(exc).__qualname__}: {exc} (not picklable)")
    return values, errors, cancelled, skipped, retried, elapsed


def _can_pickle(obj: Any) -> bool:
    try:
        dumps(obj)
    except Exception:
        return False
    return True


def _name(fn: Any, index: int) -> str:
    name = getattr(fn, "__qualname__", None)
    return f"{name}() (item {index})" if name else f"item {index}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def cancel_items(
    exec_id: str, entries: list[tuple[int, list[int] | None]], forget: list[int]
) -> int:
    """Cancel items of this executor's batches (``None``: the whole batch); return how
    many running or queued items it cancelled here. Runs in the worker's loop thread."""
    if not entries and exec_id not in _sides:
        return 0
    side = _side(exec_id)
    hit = 0
    for batch_id, indices in entries:
        futures = side.running.get(batch_id)
        if futures is not None:
            for i in range(len(futures)) if indices is None else indices:
                future = futures[i]
                if future is not None and future.cancel():
                    hit += 1
        elif indices is None:
            side.tombstones[batch_id] = ALL
        else:
            tomb = side.tombstones.setdefault(batch_id, set())
            if tomb is not ALL:
                tomb.update(indices)
    for batch_id in forget:
        side.tombstones.pop(batch_id, None)
    return hit


async def forget_executor(exec_id: str) -> None:
    """Drop a ClusterExecutor's state in this process: cancel what is left of it."""
    _forgotten[exec_id] = None
    while len(_forgotten) > 1024:
        del _forgotten[next(iter(_forgotten))]
    side = _sides.pop(exec_id, None)
    if side is None:
        return
    for futures in side.running.values():
        for future in futures:
            if future is not None:
                future.cancel()
    if side.executor is not None:
        await side.executor.shutdown(wait=False, cancel_futures=True)


def running_loop_name() -> str:
    """The class of the event loop this worker runs batches on (for tests and docs)."""
    loop = asyncio.get_running_loop()
    return f"{type(loop).__module__}.{type(loop).__qualname__}"
