"""Progress bars for long ``map`` / ``map_iter`` calls, drawn with rich (an optional extra).

Only calls made with ``progress=True`` come here, so the plain paths pay nothing for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any, TypeVar

from ._calls import MapCall
from ._future import AsyncFuture

__all__ = ["track_iter", "track_map"]

_T = TypeVar("_T")


def _progress() -> Any:
    try:
        from rich.progress import Progress
    except ImportError:
        raise ImportError(
            "progress=True draws its bar with rich, which is not installed: "
            "pip install 'antflow[progress]'"
        ) from None
    return Progress()


def _total(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> int | None:
    """The number of items when every input knows its length, else None."""
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


def check_available() -> None:
    """Raise the ImportError naming the extra now, at the call, not at the first result."""
    _progress()


async def track_iter(
    iterator: AsyncIterator[_T], iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]
) -> AsyncIterator[_T]:
    """Yield from ``iterator``, advancing a progress bar per result."""
    with _progress() as progress:
        bar = progress.add_task("map_iter", total=_total(iterables))
        try:
            async for result in iterator:
                progress.advance(bar)
                yield result
        finally:
            await iterator.aclose()  # type: ignore[attr-defined]


class _TrackedMapCall(MapCall[_T]):
    progress: Any
    bar: Any

    def _item_ended(self, item: AsyncFuture[Any]) -> None:
        super()._item_ended(item)
        self.progress.advance(self.bar)


async def track_map(*args: Any) -> list[_T]:
    """Run a map call (``MapCall``'s arguments), advancing a progress bar as items end."""
    call: _TrackedMapCall[_T] = _TrackedMapCall(*args)
    with _progress() as progress:
        call.progress = progress
        call.bar = progress.add_task("map", total=_total(args[2]))
        return await call.run()
