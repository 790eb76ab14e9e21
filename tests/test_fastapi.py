"""integrations.fastapi: protect() as a dependency and @limit as a decorator, under a real
uvicorn driven by httpx; in-process over httpx.ASGITransport in virtual time for waiting."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import pytest
import websockets
from asgi_server import serve
from fastapi import APIRouter, Depends, FastAPI, HTTPException, WebSocket
from fastapi.responses import PlainTextResponse
from http_sfv import List as SfList
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from aioresilience import (
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    FixedWindowCounter,
    Pipeline,
    RateLimited,
    TimeoutExceeded,
    TokenBucket,
)
from aioresilience.integrations._http import (
    QUOTA_EXCEEDED,
    TEMPORARY_REDUCED_CAPACITY,
    HttpResponse,
)
from aioresilience.integrations.asgi import ResilienceMiddleware, Rule, install
from aioresilience.integrations.fastapi import Refused, limit, protect
from aioresilience.testing import ManualClock

real_time = pytest.mark.real_time


def sf_list(value: str) -> list[tuple[Any, dict[str, Any]]]:
    parsed = SfList()
    parsed.parse(value.encode())
    return [(item.value, dict(item.params)) for item in parsed]


def window(n: int, name: str) -> FixedWindowCounter:
    # A frozen clock: the server runs in real time, and a window boundary falling inside a test
    # would admit a request the test expects refused.
    return FixedWindowCounter(max_requests=n, window_seconds=60.0, name=name, clock=ManualClock())


@real_time
async def test_a_dependency_limits_a_route_with_headers_on_success_and_refusal() -> None:
    limiter = window(2, "per-ip")
    app = FastAPI()
    install(app)

    @app.get("/items/{item_id}", dependencies=[Depends(protect(limiter))])
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        responses = [await client.get(f"/items/{i}") for i in range(3)]
    ok, _, refused = responses
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert ok.json() == {"id": 0} and "retry-after" not in ok.headers
    assert sf_list(ok.headers["ratelimit-policy"]) == [("per-ip", {"q": 2, "w": 60})]
    assert sf_list(ok.headers["ratelimit"])[0][1]["r"] == 1
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == QUOTA_EXCEEDED
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert sf_list(refused.headers["ratelimit"])[0][1]["r"] == 0


@real_time
async def test_without_install_the_refusal_keeps_its_status_and_headers() -> None:
    app = FastAPI(dependencies=[Depends(protect(window(1, "global")))])  # the whole app

    @app.get("/")
    async def root() -> str:
        return "hi"

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        await client.get("/")
        refused = await client.get("/")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert "ratelimit" in refused.headers and "detail" in refused.json()


@real_time
async def test_per_route_keys_on_the_template_and_routers_share_a_limit() -> None:
    per_route = window(2, "per-route")
    shared = window(3, "router")
    app = FastAPI()
    install(app)
    router = APIRouter(dependencies=[Depends(protect(shared))])

    @app.get("/a/{x}", dependencies=[Depends(protect(per_route, per_route=True))])
    async def a(x: str) -> str:
        return x

    @app.get("/b/{x}", dependencies=[Depends(protect(per_route, per_route=True))])
    async def b(x: str) -> str:
        return x

    @router.get("/r1")
    async def r1() -> str:
        return "r1"

    @router.get("/r2")
    async def r2() -> str:
        return "r2"

    app.include_router(router)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        # Raw paths differ, the template is one: two admitted on /a/{x}, then refused.
        a_codes = [(await client.get(f"/a/{i}")).status_code for i in range(3)]
        b_codes = [(await client.get(f"/b/{i}")).status_code for i in range(3)]
        router_codes = [(await client.get(p)).status_code for p in ("/r1", "/r2", "/r1", "/r2")]
    assert a_codes == [200, 200, 429] and b_codes == [200, 200, 429]
    assert router_codes == [200, 200, 200, 429]  # one limit over the router's routes


@real_time
async def test_limit_decorates_handlers_without_a_request_parameter() -> None:
    limiter = window(1, "decorated")
    app = FastAPI()
    install(app)

    @app.get("/json/{n}")
    @limit(limiter, per_route=True)
    async def json_handler(n: int, q: str = "x") -> dict[str, Any]:
        return {"n": n, "q": q}

    @app.get("/text")
    @limit(limiter, per_route=True)
    async def text_handler() -> PlainTextResponse:
        return PlainTextResponse("plain")

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/json/5", params={"q": "y"})
        second = await client.get("/json/6")
        text = await client.get("/text")
        openapi = (await client.get("/openapi.json")).json()
    assert first.json() == {"n": 5, "q": "y"} and "ratelimit" in first.headers
    assert second.status_code == 429 and second.json()["violated-policies"] == ["decorated"]
    assert text.text == "plain" and "ratelimit-policy" in text.headers  # a returned Response
    params = [p["name"] for p in openapi["paths"]["/json/{n}"]["get"]["parameters"]]
    assert params == ["n", "q"]  # the hidden request and response are no query parameters


async def test_per_route_tells_mounted_apps_apart() -> None:
    limiter = window(2, "per-route")

    @limit(limiter, per_route=True)
    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    routes_seen: list[str | None] = []

    def by_route(info: Any) -> Any:
        routes_seen.append(info.route)
        return info.route

    @limit(window(100, "seen"), key=by_route)
    async def top(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # One template, "/items/{id}", under two mounts: two routes, two budgets.
    app = Starlette(
        routes=[
            *(Mount(prefix, routes=[Route("/items/{id}", item)]) for prefix in ("/a", "/b")),
            Route("/top/{id}", top),
            Mount("/m", routes=[Route("/top/{id}", top)]),
        ]
    )
    # The server's own root_path (a proxy's prefix) is no mount: not part of the template.
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        paths = ["/a/items/1", "/a/items/2", "/b/items/1", "/b/items/2", "/a/items/3"]
        codes = [(await client.get(f"/api{path}")).status_code for path in paths]
        assert (await client.get("/api/top/1")).status_code == 200
        assert (await client.get("/api/m/top/1")).status_code == 200
    assert codes == [200, 200, 200, 200, 429]
    assert routes_seen == ["/top/{id}", "/m/top/{id}"]


async def test_per_route_keys_a_mounts_template_not_the_value_a_client_gives_its_parameter() -> (
    None
):
    limiter = window(2, "per-route")
    seen: list[str | None] = []

    def by_route(info: Any) -> Any:
        seen.append(info.route)
        return info.route

    @limit(limiter, per_route=True)
    async def item(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    @limit(window(100, "seen"), key=by_route)
    async def other(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    # A Mount's path parameter is the client's to choose: one tenant per request was one
    # budget per request (and one key per value), the route's limit never reached.
    app = Starlette(
        routes=[
            Mount(
                "/t/{tenant}",
                routes=[
                    Route("/items/{id}", item),
                    Mount("/v/{version:int}", routes=[Route("/o", other)]),
                ],
            ),
        ]
    )
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        codes = [(await client.get(f"/api/t/tenant-{i}/items/{i}")).status_code for i in range(5)]
        assert (await client.get("/api/t/x/v/3/o")).status_code == 200
    assert codes == [200, 200, 429, 429, 429]
    assert seen == ["/t/{tenant}/v/{version:int}/o"]


@real_time
async def test_limit_on_a_starlette_endpoint() -> None:
    @limit(window(1, "endpoint"))
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", endpoint)])
    install(app)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/")
        refused = await client.get("/")
    assert ok.status_code == 200 and "ratelimit" in ok.headers
    assert refused.status_code == 429 and refused.json()["status"] == 429


@real_time
async def test_guards_in_a_dependency_refuse_with_503_and_errors_map_to_504() -> None:
    gate = asyncio.Event()
    inside = asyncio.Event()
    bulkhead = Bulkhead(1, name="one")
    app = FastAPI()
    install(app)

    @app.get("/wait", dependencies=[Depends(protect(bulkhead))])
    async def wait() -> str:
        inside.set()
        await gate.wait()
        return "done"

    @app.get("/slow")
    @limit(Bulkhead(5))
    async def slow() -> str:
        raise TimeoutExceeded("downstream", seconds=1.0)

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        holder = asyncio.ensure_future(client.get("/wait"))
        await inside.wait()
        full = await client.get("/wait")
        gate.set()
        done = await holder
        timed_out = await client.get("/slow")
    assert done.status_code == 200
    assert full.status_code == 503 and full.json()["type"] == TEMPORARY_REDUCED_CAPACITY
    assert timed_out.status_code == 504
    assert bulkhead.statistics().active == 0


@real_time
@pytest.mark.parametrize("form", ["dependency", "decorator"])
async def test_a_raised_404_is_an_answer_not_a_breaker_failure(form: str) -> None:
    breaker = CircuitBreaker(failure_threshold=2, name="edge")
    app = FastAPI()
    install(app)
    if form == "dependency":
        guarded = app.get("/{status}", dependencies=[Depends(protect(breaker))])
    else:

        def guarded(fn: Any) -> Any:
            return app.get("/{status}")(limit(breaker)(fn))

    @guarded
    async def answer(status: int) -> str:
        raise HTTPException(status)

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        assert [(await client.get("/404")).status_code for _ in range(3)] == [404] * 3
        assert breaker.state is CircuitState.CLOSED
        assert [(await client.get("/500")).status_code for _ in range(2)] == [500] * 2
        assert breaker.state is CircuitState.OPEN  # a 5xx still fails
        assert (await client.get("/404")).status_code == 503


@real_time
async def test_an_app_module_with_future_annotations() -> None:
    import fastapi_future_app as module

    async with serve(module.app) as url, httpx.AsyncClient(base_url=url) as client:
        created = [
            await client.post(f"/items/{i}", json={"name": "n", "price": 1.5}) for i in range(3)
        ]
        read = [await client.get("/things/7", params={"q": "z"}) for _ in range(3)]
    assert [r.status_code for r in created] == [200, 200, 429]
    assert created[0].json() == {"id": 0, "name": "n"}
    assert [r.status_code for r in read] == [200, 200, 429]
    assert read[0].json() == {"id": 7, "q": "z"} and "ratelimit" in read[0].headers


async def test_stacked_limits_on_a_handler_taking_the_request_under_future_annotations() -> None:
    # This module has `from __future__ import annotations`: the inner @limit's signature keeps
    # "Request" a string, which the outer one must still read as the handler's own request
    # (it hid a second one, FastAPI gave the request to it, and every call raised TypeError).
    app = FastAPI()
    install(app)

    @app.get("/t1")
    @limit(window(10, "global"), key=lambda info: "everyone")
    @limit(window(5, "per-ip"))
    async def t1(request: Request, response: Response) -> dict[str, str]:
        return {"request": type(request).__name__}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = [await client.get("/t1") for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert responses[0].json() == {"request": "Request"}
    assert [name for name, _ in sf_list(responses[0].headers["ratelimit-policy"])] == [
        "per-ip",
        "global",
    ]


async def test_wait_true_waits_its_turn_in_virtual_time() -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0, name="waiting", max_wait=10.0)
    app = FastAPI(dependencies=[Depends(protect(limiter, wait=True))])

    @app.get("/")
    async def root() -> str:
        return "ok"

    loop = asyncio.get_running_loop()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        start = loop.time()
        codes = [(await client.get("/")).status_code for _ in range(4)]
        elapsed = loop.time() - start
    assert codes == [200] * 4
    assert elapsed == pytest.approx(3.0, abs=0.01)  # one token a second, waited for


async def test_wait_true_refuses_at_once_a_cost_no_wait_would_admit() -> None:
    limiter = TokenBucket(capacity=10, refill_rate=1.0, name="upload", max_wait=3600.0)

    def size(info: Any) -> int:
        return int(info.header(b"content-length") or b"1")

    app = FastAPI(dependencies=[Depends(protect(limiter, cost=size, wait=True))])
    install(app)

    @app.post("/")
    async def upload() -> str:
        return "ok"

    loop = asyncio.get_running_loop()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        start = loop.time()
        refused = await client.post("/", content=b"x" * 50)
        assert loop.time() == start  # not a wait of the hour it may wait
        assert (await client.post("/", content=b"x" * 5)).status_code == 200
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert refused.json()["violated-policies"] == ["upload"]


@pytest.mark.parametrize("style", ["ietf", "legacy", "both"])
async def test_the_middleware_and_a_dependency_send_one_field_of_each_name(style: str) -> None:
    outer = TokenBucket(capacity=100, refill_rate=1.0, name="outer")
    inner = TokenBucket(capacity=2, refill_rate=0.001, name="inner")
    app = FastAPI()
    install(app)
    app.add_middleware(ResilienceMiddleware, rules=[Rule(outer)], headers=style)

    @app.get("/", dependencies=[Depends(protect(inner, headers=style))])
    async def root() -> str:
        return "ok"

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = [await client.get("/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    for response, inner_left in zip(responses, (1, 0, 0), strict=True):
        names = [name for name, _ in response.headers.raw]
        assert len(names) == len(set(names)), names  # one field per name
        if style != "legacy":
            fields = sf_list(response.headers["ratelimit"])
            assert [name for name, _ in fields] == ["inner", "outer"]
            policies = sf_list(response.headers["ratelimit-policy"])
            assert [name for name, _ in policies] == ["inner", "outer"]
        if style != "ietf":  # the tighter limit's trio: the inner one
            assert response.headers["x-ratelimit-limit"] == "2"
            assert response.headers["x-ratelimit-remaining"] == str(inner_left)


async def test_two_dependencies_and_a_decorator_send_one_field_of_each_name() -> None:
    a, b, c = window(5, "a"), window(4, "b"), window(3, "c")
    app = FastAPI()
    router = APIRouter(dependencies=[Depends(protect(a))])

    @router.get("/", dependencies=[Depends(protect(b))])
    @limit(c)
    async def root() -> str:
        return "ok"

    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/")
    assert response.status_code == 200
    names = [name for name, _ in response.headers.raw]
    assert len(names) == len(set(names)), names  # one field per name, not repeated lines
    assert [n for n, _ in sf_list(response.headers["ratelimit-policy"])] == ["a", "b", "c"]
    assert [(n, p["r"]) for n, p in sf_list(response.headers["ratelimit"])] == [
        ("a", 4),
        ("b", 3),
        ("c", 2),
    ]


def test_construction_errors_name_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least one"):
        protect()
    with pytest.raises(ValueError, match="headers"):
        limit(window(1, "x"), headers="fancy")
    with pytest.raises(TypeError, match="guard 0"):
        protect(object())
    with pytest.raises(TypeError, match="decorates a handler"):
        limit(window(1, "y"))("not a handler")
    assert issubclass(Refused, Exception)


async def test_limit_on_a_route_taking_its_own_request_and_response() -> None:
    # FastAPI fills one Request parameter and one Response parameter only: the handler's own
    # are used, not hidden behind the decorator's (the handler was called without them).
    app = FastAPI()
    install(app)

    @app.get("/own")
    @limit(window(1, "own"))
    async def own(request: Request, response: Response) -> dict[str, str]:
        response.headers["x-own"] = "yes"
        return {"path": request.url.path}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        ok = await client.get("/own")
        refused = await client.get("/own")
    assert ok.status_code == 200 and ok.json() == {"path": "/own"}
    assert ok.headers["x-own"] == "yes" and "ratelimit" in ok.headers
    assert refused.status_code == 429


async def test_an_errors_override_of_rate_limited_answers_every_adapters_refusals() -> None:
    def slow_down(exc: BaseException) -> HttpResponse:
        return HttpResponse(418, [(b"content-type", b"text/plain")], b"slow down")

    errors = {RateLimited: slow_down}

    def one_a_minute() -> FixedWindowCounter:
        return FixedWindowCounter(max_requests=1, window_seconds=60.0, name="l", max_wait=0)

    app = FastAPI()
    install(app, errors=errors)

    @app.get("/dep", dependencies=[Depends(protect(one_a_minute(), errors=errors))])
    async def dep() -> str:
        return "ok"

    @app.get("/waits", dependencies=[Depends(protect(one_a_minute(), wait=True, errors=errors))])
    async def waits() -> str:
        return "ok"

    @app.get("/decorated")
    @limit(one_a_minute(), errors=errors)
    async def decorated() -> str:
        return "ok"

    plain = FastAPI()

    @plain.get("/")
    async def root() -> str:
        return "ok"

    plain.add_middleware(ResilienceMiddleware, rules=[Rule(one_a_minute())], errors=errors)
    answers = []
    for asgi_app, path in ((app, "/dep"), (app, "/waits"), (app, "/decorated"), (plain, "/")):
        transport = httpx.ASGITransport(app=asgi_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get(path)).status_code == 200
            second = await client.get(path)
            answers.append((path, second.status_code, second.text))
    assert answers == [(path, 418, "slow down") for path in ("/dep", "/waits", "/decorated", "/")]


@pytest.mark.real_time  # a thread pool: waited on in real time
async def test_limit_on_plain_def_handlers_runs_them_in_the_thread_pool() -> None:
    # slowapi limits sync endpoints too; FastAPI and Starlette run a plain def in their
    # thread pool, and so does the decorator (it never blocks the loop).
    loop_thread = threading.get_ident()
    threads: list[int] = []
    app = FastAPI()
    install(app)

    @app.get("/sync")
    @limit(window(2, "sync"))
    def sync_handler(n: int = 0) -> dict[str, int]:
        threads.append(threading.get_ident())
        return {"n": n}

    def endpoint(request: Request) -> Response:
        threads.append(threading.get_ident())
        return Response("plain")

    starlette = Starlette(routes=[Route("/", limit(window(1, "plain"))(endpoint))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        answers = [await client.get("/sync", params={"n": i}) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[1].json() == {"n": 1} and "ratelimit" in answers[1].headers
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=starlette), base_url="http://t"
    ) as client:
        plain = [await client.get("/") for _ in range(2)]
    assert (plain[0].status_code, plain[0].text) == (200, "plain")
    assert plain[1].status_code == 429 and "ratelimit" in plain[0].headers
    assert len(threads) == 3 and loop_thread not in threads


async def _upload_and_drop(url: str, path: str) -> None:
    """A client that starts an upload and goes away (a reset) while the handler reads it."""
    host, port = url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode())
    writer.write(b"a" * 100)
    await writer.drain()
    await asyncio.sleep(0.02)  # (real time: the handler is reading the body by then)
    writer.transport.abort()


@pytest.mark.real_time
async def test_a_client_gone_mid_upload_is_a_cancellation_for_the_guards_not_a_failure() -> None:
    # The client going away is the server-side form of cancellation (Starlette raises
    # ClientDisconnect from request.body()): before, three such clients opened each breaker.
    breakers = {
        path: CircuitBreaker(name=path, failure_threshold=1) for path in ("/mw", "/dep", "/dec")
    }
    app = FastAPI()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(guards=[breakers["/mw"]], paths="/mw")])

    @app.post("/mw")
    async def middleware_guarded(request: Request) -> int:
        return len(await request.body())

    @app.post("/dep", dependencies=[Depends(protect(breakers["/dep"]))])
    async def dependency_guarded(request: Request) -> int:
        return len(await request.body())

    @app.post("/dec")
    @limit(breakers["/dec"])
    async def decorator_guarded(request: Request) -> int:
        return len(await request.body())

    async with serve(app) as url:
        for path in breakers:
            for _ in range(3):
                await _upload_and_drop(url, path)
        for _ in range(500):  # until the server has seen every client go
            if all(b.statistics().cancelled == 3 for b in breakers.values()):
                break
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=url) as client:
            answers = [(await client.post(path, content=b"xy")).status_code for path in breakers]
    assert answers == [200, 200, 200]  # every breaker closed
    for breaker in breakers.values():
        stats = breaker.statistics()
        assert (stats.failures, stats.cancelled, breaker.state) == (0, 3, CircuitState.CLOSED)


@real_time
@pytest.mark.parametrize("form", ["protect", "limit"])
async def test_protect_and_limit_on_a_websocket_route(form: str) -> None:
    # Before, neither could be used there: FastAPI gives a Request parameter nothing on a
    # websocket route (protect: TypeError "missing 'request'"; @limit: "no request"), a 500.
    handshakes = window(2, "handshakes")
    bulkhead = Bulkhead(max_concurrent=1, max_queue=0, name="ws-bulkhead")
    breaker = CircuitBreaker(name="ws-breaker", failure_threshold=1)
    app = FastAPI()
    install(app)

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:  # a client's going raises WebSocketDisconnect out of the endpoint
            await websocket.send_text(await websocket.receive_text())

    if form == "protect":

        @app.websocket("/ws", dependencies=[Depends(protect(handshakes, bulkhead, breaker))])
        async def by_dependency(websocket: WebSocket) -> None:
            await echo(websocket)

    else:

        @app.websocket("/ws")
        @limit(handshakes, bulkhead, breaker)
        async def by_decorator(websocket: WebSocket) -> None:
            await echo(websocket)

    async with serve(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        async with websockets.connect(ws_url) as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"
            with pytest.raises(websockets.InvalidStatus) as full:  # the bulkhead's one slot
                await websockets.connect(ws_url)
        with pytest.raises(websockets.InvalidStatus) as limited:
            await websockets.connect(ws_url)
        for _ in range(500):  # until the server has seen the client go
            if bulkhead.idle and breaker.statistics().cancelled == 1:
                break
            await asyncio.sleep(0.01)
    assert full.value.response.status_code == 503
    refused = limited.value.response
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit-policy"] == '"handshakes";q=2;w=60'
    stats = breaker.statistics()
    assert (bulkhead.statistics().active, stats.failures, stats.cancelled) == (0, 0, 1)


async def test_limit_on_a_plain_def_holds_its_guards_until_a_timed_out_thread_returns() -> None:
    # The thread of a cancelled request (a timeout) cannot be stopped: the bulkhead's slot
    # stays held until it returns, or a cap of 1 ran three handler bodies at once. (Virtual
    # time: the timeout fires while the thread works, which takes a few real ms.)
    bulkhead = Bulkhead(1, max_queue=10)
    lock = threading.Lock()
    running = [0, 0]  # now, peak
    app = FastAPI()
    install(app)

    @app.get("/slow")
    @limit(bulkhead, Pipeline.builder("p").timeout(0.05).build())
    def slow() -> dict[str, bool]:
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.01)
        with lock:
            running[0] -= 1
        return {"ok": True}

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        answers = await asyncio.gather(*(client.get("/slow") for _ in range(3)))
    assert [a.status_code for a in answers] == [504, 504, 504]
    assert running == [0, 1]
    assert bulkhead.statistics().active == 0


@pytest.mark.real_time
async def test_a_streamed_responses_failing_background_task_is_a_failure_not_the_client_gone() -> (
    None
):
    # uvicorn answers a receive with http.disconnect once the response is complete, and
    # Starlette's StreamingResponse reads it: the client is still there, and the background
    # task's failure is the handler's. Before, the breaker counted it as a cancellation.
    from starlette.background import BackgroundTask
    from starlette.responses import StreamingResponse

    breaker = CircuitBreaker(name="stream", failure_threshold=100)
    app = FastAPI()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(guards=[breaker], paths="/s")])

    async def fail() -> None:
        raise RuntimeError("the handler's downstream")

    async def chunks() -> Any:
        yield b"a"
        yield b"b"

    @app.get("/s")
    async def streamed() -> StreamingResponse:
        return StreamingResponse(chunks(), background=BackgroundTask(fail))

    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        for _ in range(3):
            assert (await client.get("/s")).text == "ab"
        for _ in range(500):  # until the server has run every background task
            if sum(getattr(breaker.statistics(), f) for f in ("failures", "cancelled")) == 3:
                break
            await asyncio.sleep(0.01)
    stats = breaker.statistics()
    assert (stats.failures, stats.cancelled) == (3, 0)
