"""Progress bars for long ``map`` / ``map_iter`` calls, drawn with rich (an optional extra).

Only calls made with ``progress=True`` come here: they are the plain calls with a bar
started when the call begins and stopped when it ends, so the plain paths pay nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, TypeVar

from ._calls import MapCall
from ._mapiter import IterState

__all__ = ["TrackedIterState", "TrackedMapCall"]

_T = TypeVar("_T")


def _progress_class() -> Any:
    try:
        from rich.progress import Progress
    except ImportError:
        raise ImportError(
            "progress=True draws its bar with rich, which is not installed: "
            "pip install 'antflow[progress]'"
        ) from None
    return Progress


def _total(iterables: tuple[Iterable[Any] | AsyncIterable[Any], ...]) -> int | None:
    """The number of items when every input knows its length, else None."""
    try:
        return min(len(it) for it in iterables)  # type: ignore[arg-type]
    except TypeError:
        return None


class _Bar:
    """One rich progress bar, drawn from ``start`` to ``stop``.

    Made when the call is made, so that a missing rich fails the call that asked for it.
    """

    def __init__(self, description: str, total: int | None) -> None:
        self._progress = _progress_class()()
        self._task = self._progress.add_task(description, total=total)

    def start(self) -> None:
        self._progress.start()

    def show(self, completed: int) -> None:
        self._progress.update(self._task, completed=completed)

    def stop(self) -> None:
        self._progress.stop()


class TrackedMapCall(MapCall[_T]):
    """A map call with a bar; the bar moves whenever the caller wakes."""

    _can_pull = False  # pushed: the caller wakes at every refill and moves the bar

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._bar = _Bar("map", _total(args[2]))

    def _begin(self) -> Any:
        loop = super()._begin()
        self._bar.start()
        return loop

    def _wake(self) -> None:
        # Workers hand results over in place; count them when the caller is woken.
        self._bar.show(self._count - self._in_flight)
        super()._wake()

    def _end(self) -> None:
        if self._open:
            self._bar.show(self._count - self._in_flight)
            self._bar.stop()
        super()._end()


class TrackedIterState(IterState[_T]):
    """A map_iter call with a bar that moves with every result yielded."""

    _can_pull = False  # (a pulled map_iter would do too; one rule for both bars)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._bar = _Bar("map_iter", _total(args[2]))
        self._fast = False  # every result goes through next(), which moves the bar

    def _begin(self) -> Any:
        loop = super()._begin()
        self._bar.start()
        return loop

    async def next(self) -> _T:
        result = await super().next()
        self._bar.show(self._head)
        return result

    def _end(self) -> None:
        if self._open:
            self._bar.stop()
        super()._end()
