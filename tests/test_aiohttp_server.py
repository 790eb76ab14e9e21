"""aioresilience.integrations.aiohttp, server side: a real aiohttp server on a loopback port
(aiohttp.test_utils.TestServer) driven by aiohttp.ClientSession. Tests assert counts, never
timings; whatever has to wait for the server waits on an event the handler sets."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from http_sfv import Item as SfItem
from http_sfv import List as SfList

from aioresilience import (
    AdaptiveLimiter,
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    FixedWindowCounter,
    InFlight,
    LoadShed,
    LoadShedder,
    Pipeline,
    Priority,
    RateLimited,
    TimeoutExceeded,
    TokenBucket,
)
from aioresilience.integrations._http import (
    QUOTA_EXCEEDED,
    TEMPORARY_REDUCED_CAPACITY,
    HttpResponse,
    Protection,
    Rule,
    client_address,
    header_key,
)
from aioresilience.integrations.aiohttp import (
    PROTECTION,
    error_middleware,
    limit,
    limited_messages,
    resilience_middleware,
    setup,
)
from aioresilience.testing import ManualClock

pytestmark = pytest.mark.real_time


def window(n: int, name: str | None = None) -> FixedWindowCounter:
    # A frozen clock: these servers run in real time, and a window boundary falling inside a
    # test (once a minute on the loop's clock) would admit a request the test expects refused.
    return FixedWindowCounter(max_requests=n, window_seconds=60.0, name=name, clock=ManualClock())


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def ok(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def app_with(*middlewares: Any, routes: dict[str, Handler] | None = None) -> web.Application:
    app = web.Application(middlewares=list(middlewares))
    for path, handler in (routes or {"/": ok, "/a": ok, "/b": ok, "/health": ok}).items():
        app.router.add_get(path, handler)
    return app


@asynccontextmanager
async def serve(app: web.Application, **kwargs: Any) -> AsyncIterator[Client]:
    async with TestServer(app, **kwargs) as server, aiohttp.ClientSession() as session:
        yield Client(server, session)


class Client:
    def __init__(self, server: BaseTestServer, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        async with self.session.get(self.server.make_url(path), headers=headers) as response:
            return response.status, response.headers, await response.read()

    async def statuses(self, path: str, n: int, headers: dict[str, str] | None = None) -> list[int]:
        return [(await self.get(path, headers))[0] for _ in range(n)]


def sf_list(value: str) -> list[tuple[Any, dict[str, Any]]]:
    parsed = SfList()
    parsed.parse(value.encode())
    return [(item.value, dict(item.params)) for item in parsed]


def sf_integer(value: str) -> int:
    item = SfItem()
    item.parse(value.encode())
    assert isinstance(item.value, int)
    return item.value


# -- limits, keys, headers ---------------------------------------------------------------------


async def test_one_limit_per_client_headers_on_success_and_refusal() -> None:
    limiter = TokenBucket(capacity=2, refill_rate=0.5, name="per-ip")
    async with serve(app_with(resilience_middleware(rules=[Rule(limiter)]))) as client:
        for remaining, path in ((1, "/a"), (0, "/b")):  # one limit across routes
            status, headers, _ = await client.get(path)
            assert status == 200
            assert "Retry-After" not in headers  # never on a success
            assert sf_list(headers["RateLimit-Policy"]) == [("per-ip", {"q": 2, "w": 4})]
            [(name, params)] = sf_list(headers["RateLimit"])
            assert name == "per-ip" and params["r"] == remaining and params["t"] >= 1
        status, headers, body = await client.get("/")
        assert status == 429
        assert headers["Content-Type"] == "application/problem+json"
        assert 1 <= sf_integer(headers["Retry-After"]) <= 2
        assert sf_list(headers["RateLimit"])[0][1]["r"] == 0
        problem = json.loads(body)
        assert problem["type"] == QUOTA_EXCEEDED and problem["violated-policies"] == ["per-ip"]


@pytest.mark.parametrize(
    ("style", "present", "absent"),
    [
        ("ietf", {"RateLimit", "RateLimit-Policy"}, {"X-RateLimit-Limit"}),
        (
            "legacy",
            {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"},
            {"RateLimit"},
        ),
        ("both", {"RateLimit", "RateLimit-Policy", "X-RateLimit-Limit"}, set()),
        ("none", set(), {"RateLimit", "RateLimit-Policy", "X-RateLimit-Limit"}),
    ],
)
async def test_header_styles(style: str, present: set[str], absent: set[str]) -> None:
    limiter = window(5, name="per-ip")
    middleware = resilience_middleware(rules=[Rule(limiter)], headers=style)
    async with serve(app_with(middleware)) as client:
        status, headers, _ = await client.get("/")
    assert status == 200
    names = {name.lower() for name in headers}  # field names are case-insensitive
    assert {n.lower() for n in present} <= names and not {n.lower() for n in absent} & names
    for name in present:  # every emitted field is a valid structured field
        if name.startswith("X-"):
            sf_integer(headers[name])
        else:
            sf_list(headers[name])
    if "X-RateLimit-Remaining" in present:
        assert headers["X-RateLimit-Limit"] == "5" and headers["X-RateLimit-Remaining"] == "4"


async def test_rotating_x_forwarded_for_from_an_untrusted_peer_is_no_bypass() -> None:
    limiter = window(3)
    async with serve(app_with(resilience_middleware(rules=[Rule(limiter)]))) as client:
        statuses = [
            (
                await client.get(
                    "/", {"X-Forwarded-For": f"10.0.{i}.1", "Forwarded": f"for=10.1.{i}.1"}
                )
            )[0]
            for i in range(6)
        ]
    assert statuses == [200, 200, 200, 429, 429, 429]


async def test_a_trusted_proxy_gives_the_right_most_untrusted_hop() -> None:
    # The test client connects from 127.0.0.1: here that is the trusted proxy.
    key = client_address(trusted_proxies=["127.0.0.1/32"])
    limiter = window(2)
    async with serve(app_with(resilience_middleware(rules=[Rule(limiter, key=key)]))) as client:
        # The client writes the left-most entries; the proxy appends the address it saw.
        spoofed = [
            (await client.get("/", {"X-Forwarded-For": f"6.6.6.{i}, 203.0.113.9"}))[0]
            for i in range(4)
        ]
        other = await client.statuses("/", 1, {"X-Forwarded-For": "198.51.100.4"})
    assert spoofed == [200, 200, 429, 429]
    assert other == [200]  # another client behind the proxy has its own limit


async def test_exempt_paths_and_methods() -> None:
    limiter = window(1)
    middleware = resilience_middleware(rules=[Rule(limiter)], exempt_methods=["OPTIONS"])
    app = app_with(middleware)
    app.router.add_route("OPTIONS", "/", ok)
    async with serve(app) as client:
        assert await client.statuses("/health", 5) == [200] * 5  # HEALTH_PATHS by default
        _status, headers, _ = await client.get("/health")
        assert "RateLimit" not in headers
        for _ in range(3):
            async with client.session.options(client.server.make_url("/")) as response:
                assert response.status == 200
        assert await client.statuses("/", 2) == [200, 429]


async def test_methods_of_one_path_are_planned_apart() -> None:
    # The middleware remembers each path's last plan: GET and POST taking turns on one path
    # must each get theirs (only POST is limited here).
    posts = window(2, "posts")

    async def either(request: web.Request) -> web.Response:
        return web.Response(text=request.method)

    app = web.Application(
        middlewares=[resilience_middleware(rules=[Rule(posts, methods=["POST"])])]
    )
    app.router.add_route("*", "/items", either)
    async with serve(app) as client:
        url = client.server.make_url("/items")
        seen = []
        for method in ["GET", "POST"] * 4:
            async with client.session.request(method, url) as response:
                seen.append((method, response.status))
    assert [s for m, s in seen if m == "GET"] == [200] * 4
    assert [s for m, s in seen if m == "POST"] == [200, 200, 429, 429]


async def test_unmatched_paths_are_not_remembered() -> None:
    # A 404's route is made anew per request and holds the request: the middleware's memory
    # of each path's plan must not keep them.
    app = app_with(resilience_middleware(rules=Rule(window(1000))))
    async with serve(app) as client:
        for i in range(40):
            assert (await client.get(f"/missing/{i}"))[0] == 404
        gc.collect()
        # issubclass of the type, not isinstance: isinstance of a dead weakproxy raises
        alive = [o for o in gc.get_objects() if issubclass(type(o), web.BaseRequest)]
    assert len(alive) <= 2, len(alive)


async def test_errors_override_a_raised_http_exception_on_protected_paths_too() -> None:
    async def gone(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    middleware = resilience_middleware(rules=Rule(window(100)), errors={web.HTTPNotFound: 410})
    app = app_with(middleware, routes={"/x": gone, "/health": gone})
    async with serve(app) as client:
        assert (await client.get("/x"))[0] == 410  # protected
        assert (await client.get("/health"))[0] == 410  # exempt


async def test_per_route_head_spends_the_get_routes_budget() -> None:
    # add_get answers HEAD with the same handler: mixing HEAD in doubles nothing.
    @limit(window(2, name="items"), per_route=True)
    async def item(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["id"])

    async with serve(app_with(routes={"/items/{id}": item})) as client:
        statuses = []
        for method in ("GET", "HEAD", "HEAD", "GET"):
            async with client.session.request(method, client.server.make_url("/items/1")) as r:
                statuses.append(r.status)
    assert statuses == [200, 200, 429, 429]


async def test_per_route_and_global_limits() -> None:
    per_ip = window(10, name="per-ip")
    per_key = window(2, name="per-key")
    per_item = window(2, name="per-item")

    @limit(per_key, key=header_key("X-API-Key"))
    async def keyed(request: web.Request) -> web.Response:
        return web.Response(text="keyed")

    @limit(per_item, per_route=True)
    async def item(request: web.Request) -> web.Response:
        return web.Response(text=request.match_info["id"])

    middleware = resilience_middleware(rules=[Rule(per_ip)])
    app = app_with(middleware, routes={"/keyed": keyed, "/items/{id}": item, "/": ok})
    async with serve(app) as client:
        assert await client.statuses("/keyed", 3, {"X-API-Key": "alice"}) == [200, 200, 429]
        assert await client.statuses("/keyed", 1, {"X-API-Key": "bob"}) == [200]
        # The route template is the key, not the raw path: /items/1 and /items/2 share it.
        assert [(await client.get(f"/items/{i}"))[0] for i in range(3)] == [200, 200, 429]
        _status, headers, _ = await client.get("/keyed", {"X-API-Key": "carol"})
        # Both policies on one response, merged into one field each.
        assert len(headers.getall("RateLimit")) == len(headers.getall("RateLimit-Policy")) == 1
        assert {name for name, _ in sf_list(headers["RateLimit"])} == {"per-ip", "per-key"}
        assert {name for name, _ in sf_list(headers["RateLimit-Policy"])} == {"per-ip", "per-key"}
        # 3 + 1 + 3 + 1 requests so far through the global per-IP limit of 10.
        assert await client.statuses("/", 3) == [200, 200, 429]


# -- the error mapping -------------------------------------------------------------------------


def raising(error: BaseException) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        raise error

    return handler


ERRORS = {
    "/rate": (RateLimited("slow down", retry_after=2.5, limiter="per-ip"), 429, "3"),
    "/open": (
        CircuitBreakerOpenError("o", retry_after=math.inf, breaker="b", state="open"),
        503,
        None,
    ),
    "/full": (BulkheadFull("full", retry_after=1.0), 503, "1"),
    "/shed": (LoadShed("shed", retry_after=4.0), 503, "4"),
    "/slow": (TimeoutExceeded("slow", seconds=1.0), 504, None),
}


@pytest.mark.parametrize("middleware", ["error", "resilience"])
async def test_errors_map_to_429_503_504_problem_json(middleware: str) -> None:
    mw = (
        error_middleware()
        if middleware == "error"
        else resilience_middleware(rules=[Rule(window(100))])
    )
    routes = {path: raising(error) for path, (error, _, _) in ERRORS.items()}
    routes["/bug"] = raising(KeyError("not ours"))
    async with serve(app_with(mw, routes=routes)) as client:
        for path, (_, expected, retry_after) in ERRORS.items():
            status, headers, body = await client.get(path)
            assert status == expected, path
            assert headers["Content-Type"] == "application/problem+json"
            assert headers.get("Retry-After") == retry_after, path
            problem = json.loads(body)
            assert problem["status"] == expected
            if expected == 503:
                assert problem["type"] == TEMPORARY_REDUCED_CAPACITY
        assert (await client.get("/bug"))[0] == 500  # not ours: aiohttp's own handling


async def test_error_overrides() -> None:
    async with serve(
        app_with(error_middleware({LoadShed: 429}), routes={"/shed": raising(LoadShed("x"))})
    ) as client:
        assert (await client.get("/shed"))[0] == 429


@pytest.mark.parametrize("middleware", ["resilience", "errors"])
async def test_an_override_factorys_repeated_fields_are_all_sent(middleware: str) -> None:
    # Two Link (or Set-Cookie) fields are two fields: none is dropped for the other.
    def busy(exc: BaseException) -> HttpResponse:
        links = [(b"link", b"</a>; rel=a"), (b"link", b"</b>; rel=b")]
        return HttpResponse(503, [(b"content-type", b"text/plain"), *links], b"busy")

    errors = {LoadShed: busy}
    used = (
        resilience_middleware(rules=[Rule(window(100))], errors=errors)
        if middleware == "resilience"
        else error_middleware(errors)
    )
    async with serve(app_with(used, routes={"/shed": raising(LoadShed("x"))})) as client:
        status, headers, body = await client.get("/shed")
    assert (status, body, headers["Content-Type"]) == (503, b"busy", "text/plain")
    assert headers.getall("Link") == ["</a>; rel=a", "</b>; rel=b"]


# -- guards around the handler -----------------------------------------------------------------


async def test_a_full_bulkhead_is_a_503_and_a_pipeline_timeout_a_504() -> None:
    bulkhead = Bulkhead(max_concurrent=1, name="edge")
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        await release.wait()
        return web.Response(text="done")

    pipeline = Pipeline.builder().timeout(0.01).build()  # a downstream call that times out

    async def hangs(request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    middleware = resilience_middleware(
        rules=[
            Rule(guards=[bulkhead], paths="/slow"),
            Rule(guards=[pipeline], paths="/downstream"),
        ]
    )
    async with serve(app_with(middleware, routes={"/slow": slow, "/downstream": hangs})) as client:
        first = asyncio.ensure_future(client.get("/slow"))
        await entered.wait()
        status, _headers, body = await client.get("/slow")
        assert status == 503 and json.loads(body)["detail"] == "BulkheadFull"
        release.set()
        assert (await first)[0] == 200
        assert bulkhead.statistics().active == 0
        assert (await client.get("/downstream"))[0] == 504


@pytest.mark.parametrize("form", ["middleware", "decorator"])
async def test_a_raised_404_or_redirect_is_an_answer_not_a_breaker_failure(form: str) -> None:
    breaker = CircuitBreaker(failure_threshold=2, name="edge")
    limiter = window(100, "per-ip")

    async def missing(request: web.Request) -> web.Response:
        raise web.HTTPNotFound()

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/")

    async def broken(request: web.Request) -> web.Response:
        raise web.HTTPInternalServerError()

    routes: dict[str, Handler] = {"/missing": missing, "/moved": moved, "/broken": broken}
    if form == "middleware":
        app = app_with(resilience_middleware(rules=Rule(limiter, guards=[breaker])), routes=routes)
    else:
        protected = limit(limiter, breaker)
        app = app_with(routes={path: protected(handler) for path, handler in routes.items()})
    async with serve(app) as client:
        for _ in range(3):
            status, headers, _ = await client.get("/missing")
            assert status == 404 and "ratelimit" in headers  # the limits apply to it too
        async with client.session.get(
            client.server.make_url("/moved"), allow_redirects=False
        ) as response:
            assert response.status == 302
        assert breaker.state is CircuitState.CLOSED
        assert await client.statuses("/broken", 2) == [500, 500]  # a 5xx still fails
        assert breaker.state is CircuitState.OPEN


async def test_the_shedder_is_fed_by_the_middleware() -> None:
    """Requests on the cheap route count toward the in-flight load that sheds the expensive
    one; nobody calls track()."""
    in_flight = InFlight(capacity=4)
    shedder = LoadShedder(in_flight, thresholds={Priority.SHEDDABLE: 0.5})
    started, release = asyncio.Semaphore(0), asyncio.Event()

    async def cheap(request: web.Request) -> web.Response:
        started.release()
        await release.wait()
        return web.Response(text="cheap")

    middleware = resilience_middleware(
        rules=[
            Rule(window(1000)),
            Rule(guards=[shedder], paths="/expensive", priority="sheddable"),
        ]
    )
    app = app_with(middleware, routes={"/cheap": cheap, "/expensive": ok})
    async with serve(app) as client:
        assert (await client.get("/expensive"))[0] == 200
        held = [asyncio.ensure_future(client.get("/cheap")) for _ in range(3)]
        for _ in held:
            await started.acquire()
        assert in_flight() == 0.75
        status, headers, _ = await client.get("/expensive")
        assert status == 503 and headers["Retry-After"] == "1"
        release.set()
        assert [r[0] for r in await asyncio.gather(*held)] == [200, 200, 200]
        assert in_flight() == 0.0
        assert (await client.get("/expensive"))[0] == 200
    assert shedder.shed[Priority.SHEDDABLE] == 1


async def test_a_streamed_response_is_left_alone() -> None:
    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"chunk")
        return response

    async def stream_then_fail(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"partial")
        raise LoadShed("mid-stream")

    middleware = resilience_middleware(rules=[Rule(window(100))])
    app = app_with(middleware, routes={"/stream": stream, "/broken": stream_then_fail})
    async with serve(app) as client:
        status, headers, body = await client.get("/stream")
        assert status == 200 and body == b"chunk" and "RateLimit" not in headers
        # Its head is on the wire: no second response is written into the body.
        with pytest.raises(aiohttp.ClientPayloadError):
            await client.get("/broken")
        assert (await client.get("/stream"))[0] == 200


# -- client disconnect -------------------------------------------------------------------------


@pytest.mark.parametrize("cancel", [True, False])
async def test_a_client_disconnect_leaks_no_permit(cancel: bool) -> None:
    bulkhead = Bulkhead(max_concurrent=1)
    adaptive = AdaptiveLimiter(initial_limit=5, min_limit=1)
    entered, finished, release = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        entered.set()
        try:
            await release.wait()
            return web.Response(text="late")
        finally:
            finished.set()

    middleware = resilience_middleware(rules=[Rule(guards=[bulkhead, adaptive])])
    app = app_with(middleware, routes={"/slow": slow, "/": ok})
    async with serve(app, handler_cancellation=cancel) as client:
        request = asyncio.ensure_future(client.get("/slow"))
        await entered.wait()
        request.cancel()  # the client goes away mid-request
        with pytest.raises(asyncio.CancelledError):
            await request
        if not cancel:  # aiohttp's default: the handler runs to its end
            release.set()
        await finished.wait()
        for _ in range(100):  # the guards' exits run right after the handler's finally
            if bulkhead.statistics().active == 0 and adaptive.in_flight == 0:
                break
            await asyncio.sleep(0)
        assert bulkhead.statistics().active == 0
        assert adaptive.in_flight == 0
        assert (await client.get("/"))[0] == 200


# -- websockets --------------------------------------------------------------------------------


async def test_websocket_handshakes_are_limited_with_a_real_429() -> None:
    prepared = 0

    async def socket(request: web.Request) -> web.WebSocketResponse:
        nonlocal prepared
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        prepared += 1
        async for message in limited_messages(ws, window(3)):
            await ws.send_str(f"echo {message.data}")
        return ws

    handshakes = window(2, name="ws")
    middleware = resilience_middleware(rules=[Rule(handshakes, methods=["WEBSOCKET"])])
    app = app_with(middleware, routes={"/ws": socket, "/": ok})
    async with serve(app) as client:
        url = client.server.make_url("/ws")
        async with client.session.ws_connect(url) as ws:
            for i in range(3):
                await ws.send_str(str(i))
                assert (await ws.receive()).data == f"echo {i}"
            await ws.send_str("one too many")
            closing = await ws.receive()
            assert closing.type is aiohttp.WSMsgType.CLOSE
            assert closing.data == aiohttp.WSCloseCode.POLICY_VIOLATION
        async with client.session.ws_connect(url):
            pass
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.session.ws_connect(url)
        assert refused.value.status == 429
        assert refused.value.headers is not None
        assert int(refused.value.headers["Retry-After"]) >= 1
        assert prepared == 2  # refused before WebSocketResponse.prepare
        assert await client.statuses("/", 3) == [200] * 3  # plain HTTP is not that rule's


# -- configuration -----------------------------------------------------------------------------


async def test_setup_stores_the_protection_under_a_typed_key() -> None:
    app = web.Application()
    app.router.add_get("/", ok)
    protection = setup(app, rules=[Rule(window(1))])
    assert isinstance(protection, Protection) and app[PROTECTION] is protection
    async with serve(app) as client:
        assert await client.statuses("/", 2) == [200, 429]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: resilience_middleware(rules=[Rule(TokenBucket(5, 1.0))], headers="fancy"),
            "fancy",
        ),
        (lambda: client_address(trusted_proxies=["10.0.0.300/8"]), "10.0.0.300/8"),
        (lambda: Rule(TokenBucket(5, 1.0), paths=[]), "paths is empty"),
        (lambda: Rule(TokenBucket(5, 1.0), methods=["GET"], exclude_methods=["GET"]), "no request"),
        (lambda: Rule(TokenBucket(5, 1.0), priority="urgent"), "urgent"),
        (lambda: resilience_middleware(rules=[Rule(guards=[object()])]), "guards[0]"),
        (lambda: limit(object()), "guards[0]"),
        (  # a request cannot be re-run (its body read, its response maybe sent)
            lambda: resilience_middleware(
                rules=[Rule(guards=[Pipeline.builder("p").retry(attempts=2).build()])]
            ),
            "re-run",
        ),
        (lambda: limit(), "at least one"),
        (lambda: limit(TokenBucket(5, 1.0), headers="x"), "'x'"),
        (lambda: resilience_middleware(protection="p"), "protection"),  # type: ignore[arg-type]
        (lambda: resilience_middleware(), "rules is empty"),
        (  # every path of the rule exempt: it would never run
            lambda: resilience_middleware(rules=[Rule(TokenBucket(5, 1.0), paths="/health")]),
            "rules[0] paths ['/health'] are all in exempt_paths",
        ),
        (
            lambda: resilience_middleware(
                rules=[Rule(TokenBucket(5, 1.0), paths=["/a", "/b"])], exempt_paths=["/a", "/b"]
            ),
            "all in exempt_paths",
        ),
    ],
)
def test_bad_configuration_fails_at_start_up_naming_it(
    make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(
        (ValueError, TypeError), match=message.replace("[", r"\[").replace("]", r"\]")
    ):
        make()


def test_without_aiohttp_the_import_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['aiohttp'] = None  # as if the extra were not installed\n"
        "try:\n"
        "    import aioresilience.integrations.aiohttp\n"
        "except ImportError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "pip install aioresilience[aiohttp]" in result.stdout, result.stderr


async def test_a_decorated_handler_behind_the_middleware_reports_the_tighter_legacy_limit() -> None:
    outer = window(10, name="outer")
    inner = window(3, name="inner")

    @limit(inner, headers="both")
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    middleware = resilience_middleware(rules=[Rule(outer)], headers="both")
    async with serve(app_with(middleware, routes={"/": handler})) as client:
        _, headers, _ = await client.get("/")
    assert headers["X-RateLimit-Limit"] == "3" and headers["X-RateLimit-Remaining"] == "2"
    assert [name for name, _ in sf_list(headers["RateLimit"])] == ["inner", "outer"]


@pytest.mark.parametrize("theirs", ["n/a", "\u00b2"])
async def test_a_handlers_own_non_numeric_legacy_remaining_stays_and_is_no_error(
    theirs: str,
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="ok", headers={"X-RateLimit-Remaining": theirs})

    middleware = resilience_middleware(rules=[Rule(window(10, name="outer"))], headers="both")
    async with serve(app_with(middleware, routes={"/": handler})) as client:
        status, headers, _ = await client.get("/")
    assert status == 200  # was a 500: int("n/a") in the merge of the legacy trio
    assert headers["X-RateLimit-Remaining"] == theirs  # the handler's field stays
    assert [name for name, _ in sf_list(headers["RateLimit"])] == ["outer"]


async def test_the_readme_snippet_runs_as_written() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL) if "setup(" in b
    )
    namespace: dict[str, Any] = {}
    exec(compile(block, "README.md", "exec"), namespace)
    app: web.Application = namespace["app"]
    assert isinstance(app[PROTECTION], Protection)
    async with serve(app) as client:
        statuses = await client.statuses("/search", 21)
        assert statuses == [200] * 20 + [429]  # 20 per client, bursts of 20
        assert (await client.get("/health"))[0] == 404  # exempt: no route here, no limit


async def test_limit_on_a_class_based_views_method() -> None:
    # A web.View's method is called with self (the request at self.request), not the request.
    routes = web.RouteTableDef()

    @routes.view("/table")
    class Table(web.View):
        @limit(window(1, name="table"), per_route=True)
        async def get(self) -> web.Response:
            return web.Response(text=self.request.match_info.get("x", "table"))

    class Added(web.View):
        @limit(window(1, name="added"))
        async def get(self) -> web.Response:
            raise web.HTTPFound("/table")

    app = web.Application()
    app.add_routes(routes)
    app.router.add_view("/added", Added)
    async with serve(app) as client:
        status, headers, body = await client.get("/table")
        assert (status, body) == (200, b"table")
        assert sf_list(headers["RateLimit"])[0][0] == "table"
        assert (await client.get("/table"))[0] == 429
        async with client.session.get(
            client.server.make_url("/added"), allow_redirects=False
        ) as response:
            assert response.status == 302 and "RateLimit" in response.headers
        async with client.session.get(
            client.server.make_url("/added"), allow_redirects=False
        ) as response:
            assert response.status == 429


async def test_an_errors_override_of_rate_limited_answers_the_limiters_own_refusals() -> None:
    def slow_down(exc: BaseException) -> HttpResponse:
        assert isinstance(exc, RateLimited) and exc.limiter == "l"
        return HttpResponse(418, [(b"content-type", b"text/plain")], b"slow down")

    errors = {RateLimited: slow_down}

    @limit(window(1, name="l"), errors=errors)
    async def decorated(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    middleware = resilience_middleware(rules=Rule(window(1, name="l")), errors=errors)
    for app in (app_with(routes={"/": decorated}), app_with(middleware)):
        async with serve(app) as client:
            assert (await client.get("/"))[0] == 200
            status, headers, body = await client.get("/")
        assert (status, body, headers["content-type"]) == (418, b"slow down", "text/plain")
        assert "ratelimit" in headers


async def _upload_and_drop(port: int, path: str) -> None:
    """A client that starts an upload and goes away (a reset) while the handler reads it."""
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode())
    writer.write(b"a" * 100)
    await writer.drain()
    await asyncio.sleep(0.02)  # (real time: the handler is reading the body by then)
    writer.transport.abort()


async def test_a_client_gone_mid_upload_is_a_cancellation_for_the_guards_not_a_failure() -> None:
    # aiohttp (handler_cancellation off, its default) raises ConnectionResetError from
    # request.read(): the client's going, not the handler failing. Before, three such
    # clients opened the breaker. A connection error of the handler's own, its client still
    # there, is a failure as before.
    by_middleware = CircuitBreaker(name="mw", failure_threshold=1)
    by_decorator = CircuitBreaker(name="dec", failure_threshold=1)

    async def upload(request: web.Request) -> web.Response:
        return web.Response(text=str(len(await request.read())))

    @limit(by_decorator)
    async def decorated(request: web.Request) -> web.Response:
        if request.query.get("fail"):
            raise ConnectionResetError("the handler's own upstream")
        return web.Response(text=str(len(await request.read())))

    app = web.Application(
        middlewares=[resilience_middleware(rules=Rule(guards=[by_middleware], paths="/mw"))]
    )
    app.router.add_post("/mw", upload)
    app.router.add_post("/dec", decorated)
    # A server as deployed (web.run_app's runner, handler_cancellation off): the test
    # server cancels a handler whose client left, which hides the case.
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        for path in ("/mw", "/dec"):
            for _ in range(3):
                await _upload_and_drop(port, path)
        for _ in range(500):  # until the server has seen every client go
            stats = (by_middleware.statistics(), by_decorator.statistics())
            if all(s.cancelled == 3 for s in stats):
                break
            await asyncio.sleep(0.01)
        for breaker in (by_middleware, by_decorator):
            stats = breaker.statistics()
            assert (stats.failures, stats.cancelled, breaker.state) == (0, 3, CircuitState.CLOSED)
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://127.0.0.1:{port}/dec?fail=1") as response,
        ):
            assert response.status == 500
    finally:
        await runner.cleanup()
    assert by_decorator.statistics().failures == 1 and by_decorator.state is CircuitState.OPEN
