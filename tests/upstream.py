"""A real aiohttp.web upstream on loopback with scripted faults, for the HTTP client tests
(httpx and aiohttp alike)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict, deque
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

BIG = b"e" * (4 * 1024 * 1024)


class Upstream:
    """An aiohttp.web app whose answers per path come from a script of steps:
    ``("status", code, headers)``, ``("big", code)`` (a 4 MB body), ``("reset",)`` (the
    connection dropped, no response), ``("stall", seconds)``, ``("slow", chunks, pause)``;
    a path with no steps left answers 200 (bodies are the status's digits)."""

    def __init__(self) -> None:
        self.steps: dict[str, deque[tuple[Any, ...]]] = defaultdict(deque)
        self.hits: dict[str, int] = defaultdict(int)
        self.url = ""
        self.port = 0
        self.in_flight = 0
        self.arrived = asyncio.Event()  # set by every request

    def script(self, path: str, *steps: tuple[Any, ...]) -> None:
        self.steps[path].extend(steps)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.hits[path] += 1
        self.arrived.set()
        await request.read()
        queue = self.steps[path]
        step = queue.popleft() if queue else ("status", 200, {})
        kind = step[0]
        self.in_flight += 1
        try:
            if kind == "status":
                return web.Response(status=step[1], headers=step[2], text=f"{step[1]}")
            if kind == "big":
                return web.Response(status=step[1], body=BIG)
            if kind == "reset":
                assert request.transport is not None
                request.transport.abort()
                return web.Response(status=500)  # never reaches the client
            if kind == "stall":
                await asyncio.sleep(step[1])
                return web.Response(text="late")
            if kind == "slow":
                response = web.StreamResponse()
                await response.prepare(request)
                for _ in range(step[1]):
                    await response.write(b"chunk")
                    await asyncio.sleep(step[2])
                await response.write_eof()
                return response
            raise AssertionError(f"unknown step {step!r}")
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def serve() -> AsyncIterator[Upstream]:
    """An :class:`Upstream` listening on 127.0.0.1 (a free port) while the block runs."""
    server = Upstream()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    server.port = port
    try:
        yield server
    finally:
        await runner.cleanup()
