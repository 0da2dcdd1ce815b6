"""Run one server of the load test in this process, on a listening socket it inherits.

    serve.py app --fd N --downstream http://127.0.0.1:PORT [--max-workers 100] [--http h11]
    serve.py downstream --fd N [--delay 0.002]

``scripts/loadtest.py`` binds the socket on 127.0.0.1 (port 0: the kernel picks a free
port), passes its descriptor here, and stops the process when it is done. The app runs on
uvicorn with uvloop, one worker; the downstream service on aiohttp with uvloop.

This file is run as a script, so ``sys.path[0]`` is this folder and not the repository: the
antflow it imports is the one installed in the interpreter's environment (the repository's,
installed in editable mode in ``.venv``, or antflow 0.10.0 in the peer environment).
"""

from __future__ import annotations

import argparse
import asyncio
import socket


def serve_app(sock: socket.socket, downstream: str, max_workers: int, http: str) -> None:
    import uvicorn
    from service_app import HTTP_PARSER, create_app

    http = HTTP_PARSER if http == "auto" else http
    app = create_app(downstream, max_workers=max_workers, http_parser=http)
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=http,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        backlog=4096,
    )
    uvicorn.Server(config).run(sockets=[sock])


def serve_downstream(sock: socket.socket, delay: float) -> None:
    import uvloop
    from aiohttp import web
    from downstream import create_downstream_app

    async def main() -> None:
        runner = web.AppRunner(create_downstream_app(delay), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock, backlog=4096).start()
        try:
            await asyncio.Event().wait()  # until the load test stops this process
        finally:
            await runner.cleanup()

    uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("server", choices=("app", "downstream"))
    parser.add_argument("--fd", type=int, required=True, help="an inherited listening socket")
    parser.add_argument("--downstream", help="the downstream service's base URL (app)")
    parser.add_argument("--max-workers", type=int, default=100, help="the app's limit")
    parser.add_argument("--delay", type=float, default=0.002, help="downstream delay, s")
    parser.add_argument(
        "--http", choices=("auto", "httptools", "h11"), default="auto",
        help="uvicorn's HTTP parser (auto: httptools when installed)",
    )  # fmt: skip
    args = parser.parse_args()
    sock = socket.socket(fileno=args.fd)
    if args.server == "app":
        if not args.downstream:
            parser.error("app needs --downstream")
        serve_app(sock, args.downstream, args.max_workers, args.http)
    else:
        serve_downstream(sock, args.delay)


if __name__ == "__main__":
    main()
