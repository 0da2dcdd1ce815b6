"""antflow: the ``concurrent.futures`` way of working for asyncio.

``AsyncExecutor`` runs async callables on a bounded pool of workers, with ``submit``,
``map``, ``map_iter``, ``as_completed``, ``wait`` and ``shutdown``, plus retries,
timeouts, shared limits and backpressure. Importing antflow changes no global state.
"""

from ._base import BaseExecutor
from ._errors import AntFlowError, ExecutorShutdownError
from ._executor import AsyncExecutor
from ._future import AsyncFuture
from ._loop import new_event_loop, run
from ._stats import ExecutorStats
from ._waiting import WaitStrategy, as_completed, wait

__version__ = "1.0.0.dev0"

__all__ = [
    "AntFlowError",
    "AsyncExecutor",
    "AsyncFuture",
    "BaseExecutor",
    "ExecutorShutdownError",
    "ExecutorStats",
    "WaitStrategy",
    "__version__",
    "as_completed",
    "new_event_loop",
    "run",
    "wait",
]
