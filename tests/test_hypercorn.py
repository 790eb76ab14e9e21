"""The ASGI middleware and the FastAPI dependency under hypercorn (issue 13: "uvicorn, and
hypercorn if it installs"): a real hypercorn on a loopback socket, driven by httpx and
websockets. Headers (parsed with http-sfv), a refusal's 429, a guard's 503 and a websocket
handshake refused with a real HTTP 429 (hypercorn offers the ``websocket.http.response``
extension, as uvicorn does)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from fastapi import Depends, FastAPI
from http_sfv import List as SfList
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from aioresilience import Bulkhead, FixedWindowCounter
from aioresilience.integrations._http import QUOTA_EXCEEDED, TEMPORARY_REDUCED_CAPACITY
from aioresilience.integrations.asgi import ResilienceMiddleware, Rule, install
from aioresilience.integrations.fastapi import protect
from aioresilience.testing import ManualClock

hypercorn_asyncio = pytest.importorskip("hypercorn.asyncio")
hypercorn_config = pytest.importorskip("hypercorn.config")

pytestmark = pytest.mark.real_time


@contextlib.asynccontextmanager
async def serve(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with hypercorn on a socket of ours (``fd://``: its port is known before
    hypercorn starts); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = hypercorn_config.Config()
    config.bind = [f"fd://{sock.fileno()}"]
    config.accesslog = None
    config.errorlog = None
    stop = asyncio.Event()
    task = asyncio.ensure_future(hypercorn_asyncio.serve(app, config, shutdown_trigger=stop.wait))
    try:
        # Wait for the socket to answer, not for time to pass.
        async with httpx.AsyncClient() as probe:
            while True:
                if task.done():
                    task.result()
                    raise RuntimeError("hypercorn exited during start-up")
                try:
                    await probe.get(f"http://127.0.0.1:{port}/health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        try:
            await task
        finally:
            sock.detach()  # hypercorn closes the fd it was given: ours must not close it again


def sf_list(value: str) -> list[tuple[Any, dict[str, Any]]]:
    parsed = SfList()
    parsed.parse(value.encode())
    return [(item.value, dict(item.params)) for item in parsed]


def window(n: int, name: str) -> FixedWindowCounter:
    # A frozen clock: the server runs in real time, and a window boundary falling inside a test
    # would admit a request the test expects refused.
    return FixedWindowCounter(max_requests=n, window_seconds=60.0, name=name, clock=ManualClock())


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def echo(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text(await ws.receive_text())
    await ws.close()


async def test_starlette_headers_on_success_and_a_429_on_refusal() -> None:
    app = Starlette(routes=[Route("/", hello), Route("/health", hello)])
    app.add_middleware(ResilienceMiddleware, rules=[Rule(window(1, "per-ip"))])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/")
        refused = await client.get("/")
        exempt = [(await client.get("/health")).status_code for _ in range(3)]
    assert ok.status_code == 200 and "retry-after" not in ok.headers
    for response in (ok, refused):
        assert sf_list(response.headers["ratelimit-policy"]) == [("per-ip", {"q": 1, "w": 60})]
        ((name, params),) = sf_list(response.headers["ratelimit"])
        assert name == "per-ip" and params["r"] == 0
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == QUOTA_EXCEEDED
    assert exempt == [200, 200, 200]  # the probe path is exempt by default


async def test_a_full_bulkhead_is_a_503() -> None:
    inside, gate = asyncio.Event(), asyncio.Event()

    async def wait(request: Request) -> Response:
        inside.set()
        await gate.wait()
        return PlainTextResponse("done")

    app = Starlette(routes=[Route("/wait", wait), Route("/health", hello)])
    app.add_middleware(ResilienceMiddleware, rules=[Rule(guards=[Bulkhead(1, max_wait=0)])])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = asyncio.ensure_future(client.get("/wait"))
        await inside.wait()
        second = await client.get("/wait")
        gate.set()
        assert (await first).status_code == 200
    assert second.status_code == 503
    assert second.json()["type"] == TEMPORARY_REDUCED_CAPACITY


async def test_websocket_handshakes_are_refused_with_an_http_429() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", echo), Route("/health", hello)])
    rules = [Rule(window(1, "handshakes"), methods=["WEBSOCKET"])]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    async with serve(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as ws:
            assert ws.response.headers["ratelimit-policy"] == '"handshakes";q=1;w=60'
            await ws.send("hi")
            assert await ws.recv() == "hi"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url)
    response = refused.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert json.loads(response.body)["violated-policies"] == ["handshakes"]


async def test_a_fastapi_dependency_limits_a_route() -> None:
    app = FastAPI()
    install(app)

    @app.get("/items/{item_id}", dependencies=[Depends(protect(window(2, "items")))])
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        answers = [await client.get(f"/items/{i}") for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[0].json() == {"id": 0}
    assert sf_list(answers[0].headers["ratelimit"])[0][1]["r"] == 1
    assert answers[2].headers["content-type"] == "application/problem+json"
    assert int(answers[2].headers["retry-after"]) >= 1
