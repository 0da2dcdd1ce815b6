"""Batches: how items travel to the cluster, and how ``map`` / ``map_iter`` feed them.

Dask's cost per task is hundreds of microseconds or more, so items travel in batches,
one Dask task each. A :class:`BatchSizer` picks the size: small at first, then aiming at
a batch of about :data:`TARGET_SECONDS` of work, from the time the worker reports for
each batch. (``map`` and ``map_iter`` feed batches from _calls.)

Payloads are pickled here, on the client, before Dask sees them: a function or an
argument that cannot be pickled is then named in a :class:`TypeError` at the call,
instead of failing somewhere inside Dask.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from ._runner import MAP, SUBMIT, dumps

__all__ = ["Batch", "BatchSizer", "check_batch_size", "encode_map", "encode_submit"]

TARGET_SECONDS = 0.03  # the work a batch aims at: long enough to hide Dask's cost
FIRST_SIZE = 4  # the first batches of a call, before anything is measured
LARGEST_SIZE = 10_000  # bounds the memory of one batch (and of the window)
GROWTH = 8  # a batch is at most this many times larger than the previous one


class BatchOwner(Protocol):
    """What a map batch tells its call (_calls.MapCall) when it ends."""

    def batch_ended(self, batch: Batch) -> None: ...


class BatchSizer:
    """The number of items to put in the next batch; fixed when ``batch_size`` is given."""

    __slots__ = ("fixed", "size")

    def __init__(self, batch_size: int | None) -> None:
        self.fixed = batch_size is not None
        self.size = batch_size if batch_size is not None else FIRST_SIZE

    def observe(self, items: int, elapsed: float) -> None:
        """A batch of ``items`` took ``elapsed`` seconds on its worker."""
        if self.fixed or items <= 0:
            return
        per_item = elapsed / items
        wanted = TARGET_SECONDS / per_item if per_item > 0 else LARGEST_SIZE
        self.size = max(1, min(int(wanted), self.size * GROWTH, LARGEST_SIZE))


def check_batch_size(batch_size: object) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    return batch_size


# -- pickling, with the culprit named ------------------------------------------------------


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unpicklable(obj: Any) -> Exception | None:
    try:
        dumps(obj)
    except Exception as exc:
        return exc
    return None


def _culprit(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any] | None, where: str
) -> TypeError:
    """The TypeError for an item that cannot be pickled, naming what in it cannot."""
    name = _fn_name(fn)
    exc = _unpicklable(fn)
    if exc is not None:
        return TypeError(
            f"cannot send the function {name} to the cluster: it cannot be pickled ({exc})"
        )
    for i, arg in enumerate(args):
        exc = _unpicklable(arg)
        if exc is not None:
            return TypeError(
                f"cannot send argument {i} ({_short(arg)}) of {name}(){where} to the "
                f"cluster: it cannot be pickled ({exc})"
            )
    for key, arg in (kwargs or {}).items():
        exc = _unpicklable(arg)
        if exc is not None:
            return TypeError(
                f"cannot send argument {key}={_short(arg)} of {name}(){where} to the "
                f"cluster: it cannot be pickled ({exc})"
            )
    return TypeError(f"cannot send a call of {name}(){where} to the cluster: it cannot be pickled")


def encode_map(fn: Any, opts: Any, items: list[tuple[Any, ...]], first: int, stop: int) -> bytes:
    """The payload of a map batch; a TypeError naming the culprit if it cannot be pickled.
    ``first`` is the input position of the batch's first item (for the message)."""
    try:
        return dumps((MAP, fn, opts, items, stop))
    except Exception:
        for i, args in enumerate(items):
            if _unpicklable((fn, args)) is not None:
                raise _culprit(fn, args, None, f" for input {first + i}") from None
        raise  # pragma: no cover - the batch failed but none of its parts does


def encode_submit(
    entries: list[tuple[Any, tuple[Any, ...], dict[str, Any] | None, Any]],
) -> tuple[bytes | None, dict[int, TypeError]]:
    """The payload of a batch of submitted calls, and the calls that cannot be pickled
    (by index); those are left out of the payload."""
    try:
        return dumps((SUBMIT, None, None, entries, 0)), {}
    except Exception:
        pass
    bad: dict[int, TypeError] = {}
    for i, (fn, args, kwargs, _opts) in enumerate(entries):
        if _unpicklable((fn, args, kwargs)) is not None:
            bad[i] = _culprit(fn, args, kwargs, "")
    good = [entry for i, entry in enumerate(entries) if i not in bad]
    return (dumps((SUBMIT, None, None, good, 0)) if good else None), bad


# -- a batch on its way ----------------------------------------------------------------------


class Batch:
    """One Dask task: ``size`` items, of one map call or of submitted futures."""

    __slots__ = (
        "call",
        "dask",
        "ended",
        "errors",
        "failure",
        "futures",
        "id",
        "live",
        "retried",
        "size",
        "sizer",
        "task",
        "values",
        "worker_cancelled",
    )

    def __init__(
        self, batch_id: int, size: int, futures: list[Any] | None, call: Any, sizer: BatchSizer
    ) -> None:
        self.id = batch_id
        self.size = size
        self.live = size  # items not cancelled by the client
        self.retried = 0  # the retries of its items counted so far
        self.futures = futures  # the AsyncFutures of submitted items, None for a map batch
        self.call: BatchOwner | None = call
        self.sizer = sizer
        self.dask: Any = None  # the distributed.Future
        self.task: asyncio.Task[None] | None = None  # the client task that collects it
        self.ended = False
        self.values: list[Any] | None = None
        self.errors: dict[int, BaseException] | None = None
        self.worker_cancelled: list[int] | None = None
        self.failure: BaseException | None = None  # the batch itself failed (Dask error)

    def error_at(self, index: int) -> BaseException | None:
        """The exception of item ``index``, or None if it returned a value."""
        if self.failure is not None:
            return self.failure
        if self.errors is not None and index in self.errors:
            return self.errors[index]
        if self.worker_cancelled is not None and index in self.worker_cancelled:
            return asyncio.CancelledError()
        return None

    def first_error(self) -> BaseException | None:
        if self.failure is not None:
            return self.failure
        indices = list(self.errors or ()) + list(self.worker_cancelled or ())
        return self.error_at(min(indices)) if indices else None
