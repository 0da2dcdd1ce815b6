"""The framework examples of docs/server.md, served by the real frameworks.

Each example is the ```python block under a ``<!-- example: NAME -->`` marker in
docs/server.md, run here as a module of its own, so the page and the tests cannot drift
apart. Servers listen on 127.0.0.1 only, on a free port, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import types
import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _helpers import LOOPS, wait_until
from aiohttp import test_utils as aiohttp_test
from prometheus_client import REGISTRY
from starlette.exceptions import StarletteDeprecationWarning

from antflow import AsyncExecutor, ExecutorShutdownError

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it falls back to httpx
    # (which this suite's other clients use); the client behaves the same with either.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SERVER_MD = Path(__file__).resolve().parent.parent / "docs" / "server.md"


def doc_example(name: str) -> types.ModuleType:
    """Run the block marked ``<!-- example: name -->`` in docs/server.md as a fresh module."""
    lines = SERVER_MD.read_text(encoding="utf-8").splitlines()
    marker = f"<!-- example: {name} -->"
    assert lines.count(marker) == 1, f"docs/server.md needs exactly one {marker}"
    fence = lines.index(marker) + 1
    while lines[fence].startswith("<!-- docs-test:"):  # directives may sit in between
        fence += 1
    assert lines[fence] == "```python", f"{marker} must stand just above a ```python block"
    end = lines.index("```", fence + 1)
    # Blank lines in front keep the line numbers of tracebacks those of the Markdown file.
    source = "\n" * (fence + 1) + "\n".join(lines[fence + 1 : end]) + "\n"
    module = types.ModuleType(f"server_md_{name.replace('-', '_')}")
    exec(compile(source, str(SERVER_MD), "exec"), module.__dict__)
    return module


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on this loop, at 127.0.0.1 on a free port; yield its URL.

    Leaving stops the server the way its SIGTERM handler does (``should_exit``), which
    runs the application's lifespan to its end.
    """
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started or serving.done(), timeout=10)
        assert server.started, f"uvicorn did not start: {serving!r}"
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)


def http_client(base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, timeout=10, trust_env=False)


async def sleep_and_return(value: str) -> str:
    await asyncio.sleep(0.05)
    return value


# -- Starlette (and FastAPI): a lifespan ---------------------------------------------------


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_starlette_test_client_runs_the_lifespan_and_every_request_shares_its_executor(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    shop = doc_example("starlette-lifespan")
    with TestClient(shop.app, backend_options={"loop_factory": loop_factory}) as client:
        pricing: AsyncExecutor = shop.app.state.pricing
        first = client.get("/basket", params={"skus": "apple,bread,milk"})
        second = client.get("/basket", params={"skus": "milk"})
        assert (first.status_code, first.json()) == (200, {"total": 3.85})
        assert (second.status_code, second.json()) == (200, {"total": 1.1})
        assert shop.app.state.pricing is pricing  # one executor for both requests
        assert pricing.stats().completed == 4

        # Work still queued when the client closes is done before the lifespan ends.
        # (In a list: the portal would await a future it is handed back.)
        [late] = client.portal.call(lambda: [pricing.submit(sleep_and_return, "finished")])
        assert not late.done()
    assert late.done()
    assert late.exception() is None
    assert pricing.stats().completed == 5


async def test_starlette_app_under_uvicorn_shuts_its_executor_down_when_the_server_stops() -> None:
    shop = doc_example("starlette-lifespan")
    async with served(shop.app) as url, http_client(url) as client:
        pricing: AsyncExecutor = shop.app.state.pricing
        answers = await asyncio.gather(
            *(client.get("/basket", params={"skus": "apple,bread"}) for _ in range(5))
        )
        assert [(r.status_code, r.json()) for r in answers] == [(200, {"total": 2.75})] * 5
        assert pricing.stats().completed == 10

    with pytest.raises(ExecutorShutdownError):
        pricing.submit(sleep_and_return, "too late")


# -- aiohttp: a cleanup context ------------------------------------------------------------


async def test_aiohttp_cleanup_ctx_creates_the_executor_and_closes_it_at_cleanup() -> None:
    shop = doc_example("aiohttp-cleanup-ctx")
    async with aiohttp_test.TestClient(aiohttp_test.TestServer(shop.app)) as client:
        executor = shop.app[shop.thumbnailer]
        response = await client.get("/thumbnails", params={"ids": "1,2,3"})
        assert response.status == 200
        assert await response.json() == ["thumb-1", "thumb-2", "thumb-3"]

        # Four requests of two images at once fill the queue (8) but never overflow it.
        answers = await asyncio.gather(
            *(client.get("/thumbnails", params={"ids": f"{i},{i + 10}"}) for i in range(4))
        )
        assert [r.status for r in answers] == [200] * 4
        assert [await r.json() for r in answers] == [
            [f"thumb-{i}", f"thumb-{i + 10}"] for i in range(4)
        ]
        assert executor.stats().completed == 11

        late = executor.submit(sleep_and_return, "finished")

    assert late.done()  # cleanup waited for the queued work
    assert await late == "finished"
    with pytest.raises(ExecutorShutdownError):
        executor.submit(sleep_and_return, "too late")


async def test_aiohttp_request_larger_than_the_queue_gets_503_and_leaves_nothing_queued() -> None:
    shop = doc_example("aiohttp-cleanup-ctx")
    async with aiohttp_test.TestClient(aiohttp_test.TestServer(shop.app)) as client:
        executor = shop.app[shop.thumbnailer]
        refused = await client.get("/thumbnails", params={"ids": ",".join(map(str, range(20)))})
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        stats = executor.stats()
        assert (stats.submitted, stats.cancelled, stats.pending, stats.completed) == (8, 8, 0, 0)

        accepted = await client.get("/thumbnails", params={"ids": "7"})
        assert (accepted.status, await accepted.json()) == (200, ["thumb-7"])


# -- One executor per process: the uvicorn module ------------------------------------------


async def test_uvicorn_serves_the_shop_module_with_its_executor_and_metrics() -> None:
    shop = doc_example("uvicorn-app")
    labels = {"executor": "partner"}
    async with served(shop.app) as url, http_client(url) as client:
        partner: AsyncExecutor = shop.app.state.partner
        quote = await client.get("/quote/tea")
        assert (quote.status_code, quote.json()) == (200, {"sku": "tea", "price": 2.25})

        scrape = await client.get("/metrics")
        assert scrape.status_code == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        assert 'antflow_tasks_completed_total{executor="partner"} 1.0' in scrape.text
        assert 'antflow_workers{executor="partner"} 20.0' in scrape.text
        assert REGISTRY.get_sample_value("antflow_tasks_submitted_total", labels) == 1

        late = partner.submit(sleep_and_return, "finished")

    # Stopping ran the lifespan to its end: the queued work was done, the executor is shut
    # down, and its collector is gone from the registry.
    assert late.done()
    assert await late == "finished"
    with pytest.raises(ExecutorShutdownError):
        partner.submit(sleep_and_return, "too late")
    assert REGISTRY.get_sample_value("antflow_tasks_submitted_total", labels) is None


async def test_the_uvicorn_module_starts_again_with_a_new_executor_and_collector() -> None:
    # What every worker process of `uvicorn --workers N` or gunicorn does: run the lifespan,
    # and with it create an executor, of its own.
    shop = doc_example("uvicorn-app")
    executors = []
    for _ in range(2):
        async with served(shop.app) as url, http_client(url) as client:
            assert (await client.get("/quote/tea")).status_code == 200
            executors.append(shop.app.state.partner)
            assert executors[-1].stats().submitted == 1  # nothing from the earlier run
    assert executors[0] is not executors[1]


# -- Stopping on SIGTERM: a drain with a deadline ------------------------------------------


async def forever() -> None:
    await asyncio.Event().wait()


async def test_starlette_drain_does_the_queued_work_in_time_and_cancels_what_is_left() -> None:
    shop = doc_example("starlette-drain")
    shop.DRAIN_SECONDS = 0.2  # read when the lifespan ends
    loop = asyncio.get_running_loop()
    async with served(shop.app) as url, http_client(url) as client:
        receipts: AsyncExecutor = shop.app.state.receipts
        answers = await asyncio.gather(*(client.post(f"/orders/{i}") for i in range(5)))
        assert [(r.status_code, r.json()) for r in answers] == [
            (202, {"order": i, "status": "placed"}) for i in range(5)
        ]
        in_time = receipts.submit(sleep_and_return, "finished")
        stuck = receipts.submit(forever)
        await wait_until(stuck.running)
        stopping = loop.time()

    # The server stopped within the drain's timeout (plus a generous margin), not never.
    assert loop.time() - stopping < 5
    assert await in_time == "finished"
    assert stuck.cancelled()
    stats = receipts.stats()
    assert (stats.completed, stats.cancelled, stats.running, stats.pending) == (6, 1, 0, 0)
    with pytest.raises(ExecutorShutdownError):
        receipts.submit(sleep_and_return, "too late")


async def test_aiohttp_drain_does_the_queued_work_in_time_and_cancels_what_is_left() -> None:
    shop = doc_example("aiohttp-drain")
    shop.DRAIN_SECONDS = 0.2
    loop = asyncio.get_running_loop()
    client = aiohttp_test.TestClient(aiohttp_test.TestServer(shop.app))
    await client.start_server()
    try:
        receipts = shop.app[shop.receipts]
        answers = await asyncio.gather(*(client.post(f"/orders/{i}") for i in range(5)))
        assert [r.status for r in answers] == [202] * 5
        assert [await r.json() for r in answers] == [
            {"order": i, "status": "placed"} for i in range(5)
        ]
        in_time = receipts.submit(sleep_and_return, "finished")
        stuck = receipts.submit(forever)
        await wait_until(stuck.running)
        stopping = loop.time()
    finally:
        # Closing runs the cleanup context, and with it the drain; bounded, as every wait.
        await asyncio.wait_for(client.close(), timeout=10)

    assert loop.time() - stopping < 5
    assert await in_time == "finished"
    assert stuck.cancelled()
    stats = receipts.stats()
    assert (stats.completed, stats.cancelled, stats.running, stats.pending) == (6, 1, 0, 0)
    with pytest.raises(ExecutorShutdownError):
        receipts.submit(sleep_and_return, "too late")
