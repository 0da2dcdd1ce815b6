"""The service under load: a Starlette app whose endpoint fans out to a downstream service.

Each ``GET /fanout/{mode}`` makes ``FANOUT`` (20) calls to the downstream service, one per
item ``0..19``, and answers ``{"results": [0, 1, 4, ..., 361]}``. The modes are the ways of
writing that fan-out, all bounded by the same process-wide limit of ``max_workers`` calls
in flight:

- ``antflow``: ``await executor.map(call_downstream, range(20))`` on one process-wide
  ``AsyncExecutor(max_workers)`` made in the lifespan. This is antflow under development or
  the published antflow 0.10.0, whichever the interpreter imports (same import name; the
  load test runs 0.10.0 from a virtual environment of its own).
- ``gather``: ``asyncio.gather`` over the 20 calls, each guarded by one process-wide
  ``asyncio.Semaphore(max_workers)``.
- ``taskgroup``: ``asyncio.TaskGroup`` with the same semaphore (Python 3.11 and later).

The mixed case: ``POST /background/{mode}?n=20000`` starts one large fan-out of ``n`` calls
in the background, written the same way as the mode (a ``map`` on the same executor, or
gather / TaskGroup over ``n`` calls behind the same semaphore), and answers 202 at once;
``GET /background`` reports its progress. While it keeps the pool busy, the latency of
``/fanout/{mode}`` shows whether a small caller waits behind the big one.

All downstream calls share one ``aiohttp.ClientSession`` whose connection limit is far above
``max_workers``, so the client is never the bottleneck. ``GET /health`` names the antflow
that was imported and the modes available.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import antflow

FANOUT = 20  # downstream calls per request
MAX_WORKERS = 100  # calls in flight, for the whole process, in every mode
CONNECTIONS = 1000  # the client's connection limit: well above MAX_WORKERS

MODES: tuple[str, ...] = ("antflow", "gather", "taskgroup")
if sys.version_info < (3, 11):  # pragma: no cover - no TaskGroup before 3.11
    MODES = ("antflow", "gather")


@dataclass
class Background:
    """The one background fan-out of this process (the mixed case)."""

    mode: str
    n: int
    done: int = 0
    started: float = 0.0
    finished: float | None = None
    error: str | None = None
    task: asyncio.Task[Any] | None = None


class Service:
    """What the lifespan makes once for the whole process and every request shares."""

    def __init__(self, downstream_url: str, max_workers: int, connections: int) -> None:
        self.downstream_url = downstream_url.rstrip("/")
        self.max_workers = max_workers
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None
        self.executor: Any = None  # antflow.AsyncExecutor (either version)
        self.semaphore: asyncio.Semaphore | None = None
        self.background: Background | None = None
        self.in_flight = 0  # /fanout requests being served (the load test waits for 0)

    async def call_downstream(self, i: int) -> int:
        """One call to the partner API."""
        assert self.session is not None
        async with self.session.get(f"{self.downstream_url}/item/{i}") as response:
            if response.status != 200:
                raise RuntimeError(f"downstream answered {response.status} for item {i}")
            return int(await response.text())

    async def guarded(self, fn: Callable[[int], Awaitable[int]], i: int) -> int:
        assert self.semaphore is not None
        async with self.semaphore:
            return await fn(i)

    async def fan_out(self, mode: str, fn: Callable[[int], Awaitable[int]], n: int) -> list[int]:
        """``fn(0) .. fn(n - 1)`` through this process's limit, written the ``mode`` way."""
        if mode == "antflow":
            return list(await self.executor.map(fn, range(n)))
        if mode == "gather":
            return list(await asyncio.gather(*(self.guarded(fn, i) for i in range(n))))
        if mode == "taskgroup":
            async with asyncio.TaskGroup() as group:  # type: ignore[attr-defined]
                tasks = [group.create_task(self.guarded(fn, i)) for i in range(n)]
            return [task.result() for task in tasks]
        raise ValueError(f"unknown mode {mode!r}")

    async def run_background(self, background: Background) -> None:
        async def counted(i: int) -> int:
            value = await self.call_downstream(i)
            background.done += 1
            return value

        try:
            results = await self.fan_out(background.mode, counted, background.n)
            if results != [i * i for i in range(background.n)]:
                background.error = "wrong results"
        except asyncio.CancelledError:
            background.error = "cancelled"
            raise
        except Exception as exc:  # reported by GET /background
            background.error = f"{type(exc).__name__}: {exc}"
        finally:
            background.finished = time.monotonic()

    async def stop_background(self, timeout: float = 5.0) -> None:
        task = self.background.task if self.background else None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=timeout)


ANTFLOW_FILE = os.path.abspath(antflow.__file__ or "")  # which antflow this process imported
# What uvicorn's http="auto" picks: httptools when installed, else h11.
HTTP_PARSER = "httptools" if importlib.util.find_spec("httptools") else "h11"


def antflow_version() -> str:
    return str(getattr(antflow, "__version__", "unknown"))


def create_app(
    downstream_url: str,
    *,
    max_workers: int = MAX_WORKERS,
    connections: int = CONNECTIONS,
    http_parser: str = HTTP_PARSER,
) -> Starlette:
    """The service, calling the downstream service at ``downstream_url``."""
    service = Service(downstream_url, max_workers, connections)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections)
        service.session = aiohttp.ClientSession(connector=connector)
        service.semaphore = asyncio.Semaphore(max_workers)
        service.executor = antflow.AsyncExecutor(max_workers=max_workers)
        try:
            async with service.executor:
                try:
                    yield
                finally:
                    # The background fan-out is cancelled, then queued calls are dropped, so
                    # leaving the executor's block waits only for the calls in flight.
                    await service.stop_background()
                    await service.executor.shutdown(cancel_futures=True)
        finally:
            await service.session.close()

    async def fanout(request: Request) -> JSONResponse:
        mode = request.path_params["mode"]
        if mode not in MODES:
            return JSONResponse({"error": f"unknown mode {mode!r}"}, status_code=404)
        service.in_flight += 1
        try:
            results = await service.fan_out(mode, service.call_downstream, FANOUT)
        except Exception as exc:
            cause: BaseException = exc
            while getattr(cause, "exceptions", None):  # TaskGroup's ExceptionGroup: the first
                cause = cause.exceptions[0]  # type: ignore[attr-defined]
            return JSONResponse({"error": f"{type(cause).__name__}: {cause}"}, status_code=502)
        finally:
            service.in_flight -= 1
        return JSONResponse({"results": results})

    async def start_background(request: Request) -> JSONResponse:
        mode = request.path_params["mode"]
        if mode not in MODES:
            return JSONResponse({"error": f"unknown mode {mode!r}"}, status_code=404)
        current = service.background
        if current is not None and current.task is not None and not current.task.done():
            return JSONResponse({"error": "a background fan-out is running"}, status_code=409)
        n = int(request.query_params.get("n", "20000"))
        background = Background(mode=mode, n=n, started=time.monotonic())
        background.task = asyncio.create_task(service.run_background(background))
        service.background = background
        return JSONResponse({"mode": mode, "n": n}, status_code=202)

    async def background_status(request: Request) -> JSONResponse:
        b = service.background
        if b is None:
            return JSONResponse({"running": False, "n": 0, "done": 0})
        end = b.finished if b.finished is not None else time.monotonic()
        return JSONResponse(
            {
                "mode": b.mode,
                "n": b.n,
                "done": b.done,
                "running": b.finished is None,
                "seconds": round(end - b.started, 3),
                "error": b.error,
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "antflow": antflow_version(),
                "antflow_file": ANTFLOW_FILE,
                "modes": list(MODES),
                "max_workers": max_workers,
                "in_flight": service.in_flight,
                "http": http_parser,  # what serve.py told uvicorn to use
                "python": sys.version.split()[0],
            }
        )

    app = Starlette(
        routes=[
            Route("/fanout/{mode}", fanout, methods=["GET"]),
            Route("/background/{mode}", start_background, methods=["POST"]),
            Route("/background", background_status, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    return app
