"""Event loop selection: uvloop where it is available, asyncio otherwise.

Nothing here runs on import: antflow never installs a global event loop policy.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["new_event_loop", "run"]

_T = TypeVar("_T")

try:
    import uvloop as _uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency wherever it builds
    _uvloop = None  # type: ignore[assignment]


def new_event_loop() -> asyncio.AbstractEventLoop:
    """Return a new event loop: a uvloop loop when uvloop imports, else asyncio's."""
    if _uvloop is not None:
        return _uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T:
    """Run ``main`` to completion on a new loop from :func:`new_event_loop`.

    Like :func:`asyncio.run` (leftover tasks are cancelled, async generators finalised,
    the loop closed), only on the fastest loop available.
    """
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=new_event_loop, debug=debug) as runner:
            return runner.run(main)
    return _run_without_runner(main, debug)  # pragma: no cover - Python 3.10


def _run_without_runner(
    main: Coroutine[Any, Any, _T], debug: bool | None
) -> _T:  # pragma: no cover - Python 3.10
    """What ``asyncio.Runner`` does for :func:`run`, for Python 3.10 which lacks it."""
    loop = new_event_loop()
    if debug is not None:
        loop.set_debug(debug)
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(main)
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
