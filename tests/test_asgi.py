"""integrations.asgi: the pure ASGI middleware, under a real uvicorn driven by httpx (spoofing,
exempt paths, per-route and global limits, headers parsed with http-sfv, the error mapping,
websockets, a client leaving mid-request, lifespan), plus in-process checks of what a server
cannot show (websocket denial without the extension, bad configuration)."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import pytest
import websockets
from asgi_server import serve
from http_sfv import List as SfList
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from aioresilience import (
    AdaptiveLimiter,
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    FixedWindowCounter,
    InFlight,
    LoadShedder,
    Pipeline,
    Priority,
    TimeoutExceeded,
)
from aioresilience.integrations._http import (
    QUOTA_EXCEEDED,
    TEMPORARY_REDUCED_CAPACITY,
    client_address,
)
from aioresilience.integrations.asgi import ResilienceMiddleware, Rule, install
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import ManualClock

real_time = pytest.mark.real_time


def sf_list(value: str) -> list[tuple[Any, dict[str, Any]]]:
    parsed = SfList()
    parsed.parse(value.encode())
    return [(item.value, dict(item.params)) for item in parsed]


def per_ip(n: int = 3, name: str = "per-ip") -> FixedWindowCounter:
    # A frozen clock: these servers run in real time, and a window boundary falling inside a
    # test (once a minute on the loop's clock) would admit a request the test expects refused.
    return FixedWindowCounter(max_requests=n, window_seconds=60.0, name=name, clock=ManualClock())


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


async def too_slow(request: Request) -> Response:
    raise TimeoutExceeded("downstream", seconds=1.0)


def starlette_app(*routes: Route | WebSocketRoute, **options: Any) -> Starlette:
    base = [
        Route("/", hello),
        Route("/health", hello),
        Route("/api/items", hello),
        Route("/slow", too_slow),
    ]
    return Starlette(routes=[*base, *routes], **options)


# -- clients and spoofing ---------------------------------------------------------------------


@real_time
async def test_rotating_x_forwarded_for_from_an_untrusted_peer_is_no_bypass() -> None:
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(3))])
    # uvicorn's own proxy handling off: the peer (127.0.0.1) is what the key sees.
    async with serve(app, proxy_headers=False) as url, httpx.AsyncClient(base_url=url) as client:
        codes = [
            (await client.get("/", headers={"x-forwarded-for": f"198.51.100.{i}"})).status_code
            for i in range(10)
        ]
    assert codes.count(200) == 3 and codes.count(429) == 7


@real_time
async def test_trusted_proxies_take_the_right_most_untrusted_hop() -> None:
    app = starlette_app()
    key = client_address(trusted_proxies=["127.0.0.1"])
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(3), key=key)])
    async with serve(app, proxy_headers=False) as url, httpx.AsyncClient(base_url=url) as client:
        # The client writes the left part; our proxy (127.0.0.1) appended the real peer.
        codes = [
            (
                await client.get("/", headers={"x-forwarded-for": f"6.6.6.{i}, 203.0.113.5"})
            ).status_code
            for i in range(6)
        ]
        other = await client.get("/", headers={"x-forwarded-for": "203.0.113.6"})
    assert codes == [200] * 3 + [429] * 3
    assert other.status_code == 200  # another client behind the proxy: its own limit


@real_time
async def test_uvicorns_own_proxy_headers_decide_when_trusted_proxies_is_empty() -> None:
    """uvicorn's default: --proxy-headers with --forwarded-allow-ips=127.0.0.1. A peer on
    127.0.0.1 then chooses its address (as the docstring of client_address warns): uvicorn
    rewrote scope["client"] before the middleware saw it. From any other peer it would not."""
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(1))])
    async with (
        serve(app, proxy_headers=True, forwarded_allow_ips="127.0.0.1") as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        codes = [
            (await client.get("/", headers={"x-forwarded-for": f"9.9.9.{i}"})).status_code
            for i in range(3)
        ]
    assert codes == [200, 200, 200]  # each a different client, by uvicorn's word


# -- which requests a rule covers ---------------------------------------------------------------


@real_time
async def test_exempt_paths_and_methods_pass_untouched() -> None:
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(1))], exempt_methods=["OPTIONS"])
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        health = [await client.get("/health") for _ in range(5)]
        options = [await client.options("/") for _ in range(3)]
        assert (await client.get("/")).status_code == 200
        assert (await client.get("/")).status_code == 429
    assert {r.status_code for r in health} == {200}
    assert all("ratelimit" not in r.headers for r in health)
    assert {r.status_code for r in options} == {405}  # the app's answer, not ours


async def test_paths_are_matched_within_the_root_path_as_starlettes_router_does() -> None:
    # uvicorn --root-path=/api (and a Mount) put the prefix in scope["path"]; the router
    # takes it off: /api/health is the /health route, exempt; /api/api/items is /api/items.
    rules = [Rule(per_ip(1)), Rule(per_ip(100, "items"), paths="/api/{rest:path}")]
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=rules)
    mounted = starlette_app()
    mounted.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(1))])
    outer = Starlette(routes=[Mount("/sub", app=mounted)])
    for target, prefix in ((app, "/api"), (outer, "/sub")):
        transport = httpx.ASGITransport(app=target, root_path="/api" if target is app else "")
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            health = [(await client.get(f"{prefix}/health")).status_code for _ in range(3)]
            assert health == [200, 200, 200], prefix
            assert "ratelimit" not in (await client.get(f"{prefix}/health")).headers
            if target is app:
                response = await client.get("/api/api/items")
                assert "items" in response.headers["ratelimit"]


@real_time
async def test_per_route_and_global_limits_merge_into_one_field() -> None:
    app = starlette_app()
    everyone = per_ip(100, "global")
    api = per_ip(2, "api")
    rules = [Rule(everyone), Rule(api, paths="/api/{rest:path}")]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/api/items")
        await client.get("/api/items")
        refused = await client.get("/api/items")
        plain = await client.get("/")
    assert first.status_code == 200 and refused.status_code == 429 and plain.status_code == 200
    assert [n for n, _ in sf_list(first.headers["ratelimit-policy"])] == ["global", "api"]
    assert sf_list(first.headers["ratelimit-policy"]) == [
        ("global", {"q": 100, "w": 60}),
        ("api", {"q": 2, "w": 60}),
    ]
    assert [(n, p["r"]) for n, p in sf_list(first.headers["ratelimit"])] == [
        ("global", 99),
        ("api", 1),
    ]
    # The refused request spends nothing of the global limit (given back: 98, not 97).
    assert [(n, p["r"]) for n, p in sf_list(refused.headers["ratelimit"])] == [
        ("global", 98),
        ("api", 0),
    ]
    ((name, params),) = sf_list(plain.headers["ratelimit"])
    assert name == "global" and params["r"] == 97 and 0 <= params["t"] <= 60
    assert "ratelimit-policy" in refused.headers


# -- headers and the error mapping ------------------------------------------------------------


@real_time
async def test_headers_on_success_and_refusal() -> None:
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip(1))], headers="both")
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        ok = await client.get("/")
        refused = await client.get("/")
    assert "retry-after" not in ok.headers
    for response in (ok, refused):
        assert sf_list(response.headers["ratelimit-policy"]) == [("per-ip", {"q": 1, "w": 60})]
        ((name, params),) = sf_list(response.headers["ratelimit"])
        assert name == "per-ip" and params["r"] == 0 and 0 <= params["t"] <= 60
        assert response.headers["x-ratelimit-limit"] == "1"
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["type"] == QUOTA_EXCEEDED and body["violated-policies"] == ["per-ip"]
    assert body["status"] == 429


@real_time
async def test_guard_refusals_are_503_and_timeouts_504() -> None:
    gate = asyncio.Event()
    inside = asyncio.Event()

    async def wait(request: Request) -> Response:
        inside.set()
        await gate.wait()
        return PlainTextResponse("done")

    bulkhead = Bulkhead(1, name="one")
    app = starlette_app(Route("/wait", wait))
    rules = [Rule(per_ip(100)), Rule(guards=[bulkhead], paths="/wait")]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        holder = asyncio.ensure_future(client.get("/wait"))
        await inside.wait()
        full = await client.get("/wait")
        gate.set()
        done = await holder
        slow = await client.get("/slow")
    assert done.status_code == 200
    assert full.status_code == 503 and full.headers["content-type"] == "application/problem+json"
    assert full.json()["type"] == TEMPORARY_REDUCED_CAPACITY
    assert "ratelimit" in full.headers  # the fields may appear on any status
    assert slow.status_code == 504 and slow.json()["status"] == 504
    assert bulkhead.statistics().active == 0


@real_time
async def test_install_maps_errors_raised_inside_starlette() -> None:
    async def shed(request: Request) -> Response:
        LoadShedder(lambda: 1.0).check(Priority.SHEDDABLE)
        return PlainTextResponse("unreachable")

    app = starlette_app(Route("/shed", shed))
    install(app, errors={TimeoutExceeded: 503})
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        shed_response = await client.get("/shed")
        slow = await client.get("/slow")
    assert shed_response.status_code == 503 and shed_response.headers["retry-after"] == "1"
    assert shed_response.json()["type"] == TEMPORARY_REDUCED_CAPACITY
    assert slow.status_code == 503  # the override


@real_time
async def test_a_load_shedder_is_fed_by_the_middleware_at_the_rules_priority() -> None:
    gate = asyncio.Event()
    entered = [asyncio.Event(), asyncio.Event()]

    async def expensive(request: Request) -> Response:
        next(e for e in entered if not e.is_set()).set()
        await gate.wait()
        return PlainTextResponse("done")

    in_flight = InFlight(capacity=2)
    shedder = LoadShedder(in_flight, thresholds={Priority.SHEDDABLE: 0.4, Priority.NORMAL: 0.9})
    app = starlette_app(Route("/report", expensive), Route("/checkout", expensive))
    rules = [
        Rule(guards=[shedder], paths="/report", priority="sheddable"),
        Rule(guards=[shedder], paths="/checkout", priority="critical"),
    ]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    async with serve(app) as url, httpx.AsyncClient(base_url=url) as client:
        first = asyncio.ensure_future(client.get("/report"))
        await entered[0].wait()  # the first report in flight: load 0.5
        second = await client.get("/report")  # shed: sheddable above 0.4
        critical = asyncio.ensure_future(client.get("/checkout"))  # never shed
        await entered[1].wait()
        assert in_flight() == 1.0
        gate.set()
        results = [await first, await critical]
    assert second.status_code == 503 and second.json()["detail"] == "LoadShed"
    assert [r.status_code for r in results] == [200, 200]
    assert in_flight.count == 0


async def test_every_selected_request_feeds_the_shedder_of_another_rule() -> None:
    """Requests on a cheap route count toward the in-flight load that sheds an expensive
    one (in process, virtual time); nobody calls track()."""
    in_flight = InFlight(capacity=4)
    shedder = LoadShedder(in_flight, thresholds={Priority.SHEDDABLE: 0.5})
    gate = asyncio.Event()
    started = asyncio.Semaphore(0)

    async def cheap(request: Request) -> Response:
        started.release()
        await gate.wait()
        return PlainTextResponse("cheap")

    app = starlette_app(Route("/cheap", cheap), Route("/expensive", hello))
    app.add_middleware(
        ResilienceMiddleware,
        rules=[
            Rule(per_ip(1000)),
            Rule(guards=[shedder], paths="/expensive", priority="sheddable"),
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        assert (await client.get("/expensive")).status_code == 200
        held = [asyncio.ensure_future(client.get("/cheap")) for _ in range(3)]
        for _ in held:
            await started.acquire()
        assert in_flight() == 0.75
        assert (await client.get("/expensive")).status_code == 503
        gate.set()
        assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 3
        assert in_flight.count == 0
        assert (await client.get("/expensive")).status_code == 200
    assert shedder.shed[Priority.SHEDDABLE] == 1


# -- a client that leaves ---------------------------------------------------------------------


@real_time
async def test_a_client_disconnect_mid_request_leaks_no_permit() -> None:
    inside = asyncio.Event()
    left = asyncio.Event()

    async def long_poll(scope: Any, receive: Any, send: Any) -> None:
        inside.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        left.set()  # the handler ends as the client left: no response

    bulkhead = Bulkhead(1, name="slot")
    adaptive = AdaptiveLimiter(initial_limit=1, min_limit=1, max_limit=1, name="adaptive")
    middleware = ResilienceMiddleware(long_poll, rules=[Rule(guards=[bulkhead, adaptive])])
    done = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await middleware(scope, receive, send)
        if scope["type"] == "http":
            done.set()  # the middleware returned: it has left its guards

    async with serve(app) as url:
        for _ in range(3):  # more than either has permits: each leaves its own behind
            inside.clear()
            left.clear()
            done.clear()
            async with httpx.AsyncClient(base_url=url) as client:
                request = asyncio.ensure_future(client.get("/"))
                await inside.wait()
                request.cancel()  # closes the connection
                with pytest.raises(asyncio.CancelledError):
                    await request
            await left.wait()
            await done.wait()
            assert bulkhead.statistics().active == 0 and adaptive.in_flight == 0
    assert bulkhead.statistics().admitted == 3 and bulkhead.statistics().rejected == 0


async def test_a_cancelled_request_releases_its_guards() -> None:
    bulkhead = Bulkhead(1)
    adaptive = AdaptiveLimiter(initial_limit=1, min_limit=1, max_limit=1)

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(3600)

    middleware = ResilienceMiddleware(app, rules=[Rule(guards=[bulkhead, adaptive])])
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("1.2.3.4", 1)}
    task = asyncio.ensure_future(middleware(scope, None, None))  # type: ignore[arg-type]
    await asyncio.sleep(1)
    assert bulkhead.statistics().active == 1 and adaptive.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.statistics().active == 0 and adaptive.in_flight == 0


# -- websockets -------------------------------------------------------------------------------


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except Exception:  # the client or the middleware closed it
        return


@real_time
async def test_websocket_handshakes_are_limited_with_an_http_429() -> None:
    app = starlette_app(WebSocketRoute("/ws", echo))
    rules = [Rule(per_ip(2, "handshakes"), methods=["WEBSOCKET"])]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    async with serve(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        for _ in range(2):
            async with websockets.connect(ws_url) as ws:
                assert ws.response.headers["ratelimit-policy"] == '"handshakes";q=2;w=60'
                await ws.send("hi")
                assert await ws.recv() == "hi"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(ws_url)
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/")).status_code == 200  # http is not this rule's
    response = refused.value.response
    assert response.status_code == 429 and int(response.headers["retry-after"]) >= 1
    assert json.loads(response.body)["violated-policies"] == ["handshakes"]


@real_time
async def test_a_handshake_a_guard_refuses_carries_the_rules_rate_limit_fields() -> None:
    # The rule's limiter admitted the handshake, its breaker refused it (503): the refusal
    # says what the limit is, as the same refusal of an HTTP request does.
    breaker = CircuitBreaker(name="ws-breaker")
    app = starlette_app(WebSocketRoute("/ws", echo))
    rules = [Rule(per_ip(5, "handshakes"), methods=["WEBSOCKET"], guards=[breaker])]
    app.add_middleware(ResilienceMiddleware, rules=rules)
    breaker.trip()
    async with serve(app) as url:
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url.replace("http://", "ws://") + "/ws")
    response = refused.value.response
    assert response.status_code == 503 and int(response.headers["retry-after"]) >= 1
    assert response.headers["ratelimit-policy"] == '"handshakes";q=5;w=60'
    assert response.headers["ratelimit"] == '"handshakes";r=4;t=60'


@real_time
async def test_a_handshake_whose_client_left_while_it_queued_is_no_breaker_failure() -> None:
    # Its client dropped while the handshake waited in the rule's bulkhead: given the slot,
    # the app's accept raised uvicorn's ClientDisconnected (an OSError, the ASGI answer on a
    # closed connection) before it ever received websocket.disconnect: counted a failure.
    bulkhead = Bulkhead(1, max_queue=1)
    breaker = CircuitBreaker(name="ws", failure_threshold=1)
    app = starlette_app(WebSocketRoute("/ws", echo))
    rule = Rule(guards=[bulkhead, breaker], methods=["WEBSOCKET"])
    app.add_middleware(ResilienceMiddleware, rules=[rule])
    async with serve(app) as url:
        holder = await websockets.connect(url.replace("http://", "ws://") + "/ws")
        _, writer = await asyncio.open_connection("127.0.0.1", int(url.rsplit(":", 1)[1]))
        writer.write(
            b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        for _ in range(500):  # until the handshake waits in the bulkhead
            if bulkhead.statistics().queued:
                break
            await asyncio.sleep(0.01)
        writer.transport.abort()
        await asyncio.sleep(0.05)  # (real time: the server sees the reset)
        await holder.close()
        for _ in range(500):  # until the queued handshake has had its slot and left
            if bulkhead.statistics().admitted == 2 and not bulkhead.statistics().active:
                break
            await asyncio.sleep(0.01)
    stats = breaker.statistics()
    assert (stats.failures, stats.cancelled, breaker.state) == (0, 1, CircuitState.CLOSED)
    assert (bulkhead.statistics().active, bulkhead.statistics().queued) == (0, 0)


@real_time
@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_websocket_messages_are_limited_per_connection(
    shared: bool, request: pytest.FixtureRequest
) -> None:
    messages = per_ip(3, "messages")
    store = None
    if shared:  # decided by the store (await decide()), per connection across workers
        redis_server = request.getfixturevalue("redis_server")
        store = RedisStore(redis_server.url, prefix=f"ws-{uuid.uuid4().hex}", on_failure="deny")
        messages = FixedWindowCounter(
            max_requests=3, window_seconds=3600.0, name="messages", store=store
        )
    app = starlette_app(WebSocketRoute("/ws", echo))
    app.add_middleware(
        ResilienceMiddleware,
        rules=[Rule(per_ip(100), methods=["GET"])],
        websocket_messages=messages,
    )
    try:
        await _three_messages_per_connection(app)
    finally:
        if store is not None:
            await store.aclose()


async def _three_messages_per_connection(app: Starlette) -> None:
    async with serve(app) as url:
        ws_url = url.replace("http://", "ws://") + "/ws"
        for _ in range(2):  # each connection its own budget
            async with websockets.connect(ws_url) as ws:
                for i in range(3):
                    await ws.send(str(i))
                    assert await ws.recv() == str(i)
                await ws.send("one too many")
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@real_time
async def test_an_app_closing_after_the_message_limit_closed_it_meets_no_error() -> None:
    # The usual endpoints: a `finally: await ws.close()`, or a send after the disconnect.
    outcomes: list[object] = []

    async def endpoint(ws: WebSocket) -> None:
        await ws.accept()
        try:
            async for text in ws.iter_text():
                await ws.send_text(text)
            if ws.url.path == "/send":
                await ws.send_text("late")
        except Exception as error:  # a closed connection: what the server says then
            outcomes.append(type(error).__name__)
        finally:
            if ws.url.path == "/close":
                try:
                    await ws.close()  # was uvicorn's RuntimeError: a second websocket.close
                    outcomes.append("closed")
                except Exception as error:
                    outcomes.append(repr(error))

    app = starlette_app(WebSocketRoute("/close", endpoint), WebSocketRoute("/send", endpoint))
    app.add_middleware(
        ResilienceMiddleware,
        rules=[Rule(per_ip(100), methods=["GET"])],
        websocket_messages=per_ip(1, "messages"),
    )
    async with serve(app) as url:
        for path in ("/close", "/send"):
            async with websockets.connect(url.replace("http://", "ws://") + path) as ws:
                await ws.send("one")
                assert await ws.recv() == "one"
                await ws.send("one too many")
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
            for _ in range(200):
                if len(outcomes) == (1 if path == "/close" else 2):
                    break
                await asyncio.sleep(0.01)
    # A send meets the closed connection as after the client's close: WebSocketDisconnect.
    assert outcomes == ["closed", "WebSocketDisconnect"]


async def test_an_apps_headers_of_any_iterable_are_kept() -> None:
    # ASGI allows any iterable of pairs for the headers: read once, every one kept.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        pairs = [(b"content-type", b"text/plain"), (b"x-app", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": iter(pairs)})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request"}

    middleware = ResilienceMiddleware(app, rules=Rule(per_ip(5)))
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": ("1.2.3.4", 1)}
    await middleware(scope, receive, send)
    names = [name for name, _ in sent[0]["headers"]]
    assert names == [b"content-type", b"x-app", b"ratelimit-policy", b"ratelimit"]


@pytest.mark.parametrize("extensions", [{}, None])
async def test_websocket_denial_without_the_extension_closes_1008_or_1013(
    extensions: dict[str, Any] | None,
) -> None:
    """A server without the websocket.http.response extension: accept, then close with
    1008 for the client's quota and 1013 (try again later) for our capacity."""
    passed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        passed.append(scope["path"])

    full = Bulkhead(1)
    assert full.try_acquire()  # held: the next handshake is refused for capacity
    rules = [Rule(per_ip(1), paths="/quota"), Rule(guards=[full], paths="/busy")]
    middleware = ResilienceMiddleware(app, rules=rules)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope(path: str) -> dict[str, Any]:
        found = {"type": "websocket", "path": path, "headers": [], "client": ("1.2.3.4", 1)}
        return found if extensions is None else {**found, "extensions": extensions}

    await middleware(scope("/quota"), receive, send)
    assert passed == ["/quota"] and sent == []
    await middleware(scope("/quota"), receive, send)
    await middleware(scope("/busy"), receive, send)
    assert passed == ["/quota"]
    assert [(m["type"], m.get("code")) for m in sent] == [
        ("websocket.accept", None),
        ("websocket.close", 1008),
        ("websocket.accept", None),
        ("websocket.close", 1013),
    ]


# -- start-up, lifespan, configuration ----------------------------------------------------------


@real_time
async def test_lifespan_passes_through() -> None:
    events: list[str] = []

    async def lifespan(app: Starlette) -> Any:
        events.append("startup")
        yield
        events.append("shutdown")

    from contextlib import asynccontextmanager

    app = starlette_app(lifespan=asynccontextmanager(lifespan))
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip())])
    async with serve(app, lifespan="on") as url, httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/")).status_code == 200
    assert events == ["startup", "shutdown"]


async def bare(scope: Any, receive: Any, send: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResilienceMiddleware(bare, rules=[Rule(per_ip())], headers="ietf2"), "headers"),
        (lambda: ResilienceMiddleware(bare, rules=[]), "rules is empty"),
        (
            lambda: Rule(per_ip(), key=client_address(trusted_proxies=["10.0.0.0/33"])),
            "10.0.0.0/33",
        ),
        (lambda: Rule(per_ip(), methods=[]), "match no request"),
        (lambda: Rule(per_ip(), priority="urgent"), "urgent"),
        (lambda: ResilienceMiddleware(bare, rules=[Rule(guards=[object()])]), "guards[0]"),
        (
            lambda: ResilienceMiddleware(
                bare, rules=[Rule(guards=[Pipeline.builder("p").retry(attempts=2).build()])]
            ),
            "re-run",
        ),
        (
            lambda: ResilienceMiddleware(bare, rules=[Rule(per_ip())], exempt_paths=["health"]),
            "health",
        ),
    ],
)
def test_bad_configuration_fails_at_start_up_naming_it(build: Any, message: str) -> None:
    with pytest.raises(
        (ValueError, TypeError), match=message.replace("[", r"\[").replace(".", r"\.")
    ):
        build()


@real_time
async def test_a_bad_configuration_stops_uvicorn_at_start_up() -> None:
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(per_ip())], headers="bogus")
    with pytest.raises(RuntimeError, match="start-up failed"):
        async with serve(app, lifespan="on"):
            pass


@real_time
async def test_websocket_messages_alone_need_no_rule() -> None:
    # websocket_messages= is an option of its own: a message limit needs no HTTP rule.
    app = starlette_app(WebSocketRoute("/ws", echo))
    app.add_middleware(ResilienceMiddleware, websocket_messages=per_ip(3, "messages"))
    await _three_messages_per_connection(app)


async def test_a_send_refused_by_a_spec_2_4_server_is_the_client_gone_not_a_failure() -> None:
    # ASGI 2.4: a server raises OSError on an HTTP send to a closed connection (uvicorn, of
    # 2.3, drops it). The guards see the client's going, a cancellation: not a failure.
    breaker = CircuitBreaker(name="b", failure_threshold=1)
    app = starlette_app()
    app.add_middleware(ResilienceMiddleware, rules=[Rule(guards=[breaker])])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"x")],
        "client": ("203.0.113.9", 1),
        "server": ("x", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        raise ConnectionResetError("the connection is closed")

    with pytest.raises(OSError):
        await app(scope, receive, send)
    stats = breaker.statistics()
    assert (stats.failures, stats.cancelled, breaker.state) == (0, 1, CircuitState.CLOSED)
