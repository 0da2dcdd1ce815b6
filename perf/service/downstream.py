"""The downstream service: a small aiohttp server standing for a partner's API.

``GET /item/{i}`` waits ``delay`` seconds (an ``asyncio.sleep``, like a partner that takes
that long to answer) and returns ``i * i`` as text. It runs in a process of its own, started
by ``serve.py downstream``; the tests start it in-process with ``create_downstream_app``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

DELAY_KEY = web.AppKey("delay", float)


async def item(request: web.Request) -> web.Response:
    i = int(request.match_info["i"])
    delay = request.app[DELAY_KEY]
    if delay > 0:
        await asyncio.sleep(delay)
    return web.Response(text=str(i * i))


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def create_downstream_app(delay: float = 0.002) -> web.Application:
    """The partner API: answers ``/item/{i}`` with ``i * i`` after ``delay`` seconds."""
    app = web.Application()
    app[DELAY_KEY] = delay
    app.router.add_get("/item/{i}", item)
    app.router.add_get("/health", health)
    return app
