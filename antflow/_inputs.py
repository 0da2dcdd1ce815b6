"""Reading a call's inputs: ``zip`` over sync and async iterables, and closing them.

Both executors' ``map`` / ``map_iter`` read their input lazily through these.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

__all__ = ["aclose", "zip_async"]


async def zip_async(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> Any:
    """``zip`` over a mix of sync and async iterables, as an async iterator of tuples.

    It stops at the shortest input, as ``zip`` does; closing it closes the async inputs.
    """
    iterators: list[Iterator[Any] | AsyncIterator[Any]] = [
        aiter(it) if isinstance(it, AsyncIterable) else iter(it) for it in iterables
    ]
    try:
        while True:
            args = []
            for it in iterators:
                try:
                    if isinstance(it, AsyncIterator):
                        args.append(await anext(it))
                    else:
                        args.append(next(it))
                except (StopIteration, StopAsyncIteration):
                    return
            yield tuple(args)
    finally:
        for it in iterators:
            await aclose(it)


async def aclose(iterator: object) -> None:
    """Close an async iterator (an async generator's ``finally`` runs now); else nothing."""
    close = getattr(iterator, "aclose", None)
    if close is not None:
        await close()
