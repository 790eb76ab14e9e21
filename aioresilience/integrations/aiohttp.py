"""aiohttp integration (extra ``aiohttp``). Server side: the middleware, a handler decorator,
the error middleware and websocket limits, all on the framework-neutral core of
:mod:`aioresilience.integrations._http` (rules, keys, headers and the error mapping are
documented there). (A later part adds the client middleware to this module; the server code
lives in the ``server`` functions and classes below.)

Server API
----------

``resilience_middleware(*, rules=(), headers="ietf", exempt_paths=HEALTH_PATHS,
exempt_methods=(), errors=None, protection=None)``
    An ``@web.middleware`` for ``web.Application(middlewares=[...])``: every request the rules
    select is decided by their limiters (by default, a ``Rule(limiter)`` is one limit per
    client across all routes, keyed on ``request.transport.get_extra_info("peername")``;
    ``X-Forwarded-For`` only from ``trusted_proxies=``). A refusal is a whole 429 response
    (``RateLimit`` fields, ``Retry-After``, an ``application/problem+json`` body); an admitted
    request runs inside the rules' ``guards`` (bulkhead, adaptive limiter, LoadShedder,
    pipeline, breaker... outermost first) and gets the rate-limit headers on its response,
    on a success too, unless the handler already prepared it (a stream or a websocket: its
    headers are on the wire). Errors of ours raised by a guard or the handler become their
    429/503/504 response (:class:`~aioresilience.integrations._http.ErrorMapper`,
    ``errors=`` overrides). A :class:`~aioresilience.LoadShedder` among the guards whose
    signal is an :class:`~aioresilience.InFlight` or :class:`~aioresilience.LatencyEWMA` is
    fed by the middleware with every request a rule selects (nobody tracks calls by hand),
    and it sheds at the rule's priority (``priority=``, or ``priority_header=`` when
    configured). ``middleware.protection`` is the compiled
    :class:`~aioresilience.integrations._http.Protection`. Everything is checked when the
    middleware is built: bad configuration fails at start-up, naming it.
``setup(app, **options) -> Protection``
    The same middleware appended to ``app.middlewares``, and its ``Protection`` stored in the
    app under the typed key :data:`PROTECTION` (``app[PROTECTION]``).
``limit(*limiters_or_guards, key=client_address(), cost=1, per_route=False, headers="ietf",
errors=None, priority=None)``
    The same for one handler, as a decorator
    (``@limit(per_key_limiter, key=header_key("X-API-Key"))`` under ``@routes.get(...)``,
    around a handler given to ``add_get``, or on a ``web.View``'s method);
    ``per_route=True`` keys on the route template too (``"GET /items/{id}"``, not the raw path).
    Refusals are immediate.
``error_middleware(errors=None)``
    Only the error mapping, for apps that guard calls themselves (a pipeline in a handler).
``limited_messages(ws, limiter, *, cost=1, close_code=WSCloseCode.POLICY_VIOLATION)``
    Websockets: iterate a prepared ``WebSocketResponse``'s messages under a per-connection
    limit; a message over it closes the socket with ``close_code``.

Websockets: a handshake (a GET with ``Upgrade: websocket``) is seen by the rules with the
method ``"WEBSOCKET"``; it is refused with a real HTTP 429 before the handler's
``WebSocketResponse.prepare`` (the middleware runs first), so the client sees the status.
"""

from __future__ import annotations

import functools
from collections.abc import (
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any

from .. import Priority, RateLimiter
from ._aiohttp_client import ResilientMiddleware
from ._client import ClientPolicy, HostPaused
from ._guards import GuardRunner
from ._guards import Plan as GuardPlan
from ._http import (
    HEALTH_PATHS,
    ErrorMapper,
    HttpResponse,
    Plan,
    Protection,
    RawHeaders,
    RequestInfo,
    ResponseFactory,
    Rule,
    client_address,
    compose,
    connection_key,
    header_key,
    route_key,
    user_key,
)

try:
    from aiohttp import WSCloseCode, WSMessage, hdrs, web
    from aiohttp.typedefs import Handler, Middleware
    from multidict import istr
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "aioresilience.integrations.aiohttp needs aiohttp: pip install aioresilience[aiohttp]"
    ) from error

# The core's rules and keys, and the client's policy, re-exported: what an app configures
# the middleware, the decorator and the client middleware with.
__all__ = [
    "HEALTH_PATHS",
    "PROTECTION",
    "ClientPolicy",
    "ErrorMapper",
    "HostPaused",
    "Protection",
    "ResilientMiddleware",
    "Rule",
    "client_address",
    "compose",
    "error_middleware",
    "header_key",
    "limit",
    "limited_messages",
    "resilience_middleware",
    "route_key",
    "setup",
    "user_key",
]

Errors = ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None

#: Where :func:`setup` keeps the app's :class:`~aioresilience.integrations._http.Protection`.
PROTECTION: web.AppKey[Protection] = web.AppKey("aioresilience.protection", Protection)

_WEBSOCKET = "WEBSOCKET"

# aiohttp's headers are str: the names (a fixed set) and the policy values (stable per limiter)
# are decoded once and kept; only the per-request ``ratelimit`` values are decoded each time.
# Names as ``istr``, multidict's case-insensitive str that carries its folded form: the
# response's CIMultiDict looks it up without folding it again (as aiohttp's own hdrs do).
_text: dict[bytes, str] = {}


def _str(value: bytes, kind: type[str] = str) -> str:
    text = _text.get(value)
    if text is None:
        text = kind(value.decode("latin-1"))
        if len(_text) < 1024:
            _text[value] = text
    return text


def _add_headers(response: web.StreamResponse, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """Add the rate-limit fields to a response, merged with those already there (a handler
    decorated with :func:`limit` behind the middleware): one ``RateLimit`` field listing
    every policy, and the legacy trio of the most restrictive limit."""
    out = response.headers
    legacy = []
    for name, value in headers:
        if name[0] == 120:  # b"x": x-ratelimit-*, one trio for one limit
            legacy.append((name, value))
            continue
        # (The cache's hit inline: dict.get, not a function's frame, on every request.)
        text = value.decode("latin-1") if name == b"ratelimit" else _text.get(value) or _str(value)
        field = _text.get(name) or _str(name, istr)
        existing = out.get(field)
        # Two structured-field lists joined by ", " are one list: merged, not repeated.
        out[field] = text if existing is None else f"{existing}, {text}"
    if legacy:
        existing = out.get("x-ratelimit-remaining")
        # The trio comes as limit, remaining, reset (HeaderRenderer). (Not a number, the
        # handler's own field: it stays, ours is dropped, as merge_fields does; never an error.)
        if existing is not None and (
            not (existing.isascii() and existing.isdigit()) or int(existing) <= int(legacy[1][1])
        ):
            return  # the inner limit already there is the more restrictive
        for name, value in legacy:
            out[_str(name)] = value.decode("latin-1")


def _response(response: HttpResponse) -> web.Response:
    # A list of pairs, not a dict: a factory's repeated fields (two Link, two Set-Cookie)
    # are all sent, as the ASGI adapter sends its raw list.
    headers = []
    content_type = None
    for name, value in response.headers:
        if name == b"content-type":
            content_type = value.decode("latin-1")
        else:
            headers.append((_str(name), value.decode("latin-1")))
    result = web.Response(status=response.status, body=response.body, headers=headers)
    if content_type is not None:
        result.headers[hdrs.CONTENT_TYPE] = content_type
    return result


def _already_sent(request: web.BaseRequest) -> bool:
    """Whether the response's head is on the wire (a handler prepared a stream or a
    websocket, then failed): no other response can be sent then. aiohttp's own error
    handling asks the same question the same way."""
    writer = request.writer
    return writer is not None and writer.output_size > 0


_PLANNED_MAX = 4096  # paths the middleware remembers the plan of (raw paths are unbounded)


def _template(route: Any) -> str | None:
    """The template of a matched route (``request.match_info.route``): ``"/items/{id}"``, or
    None when no route matched (a 404, a 405)."""
    resource = route.resource
    return None if resource is None else resource.canonical


def _peer(request: web.BaseRequest) -> tuple[str, int] | None:
    """``RequestInfo.client``: the TCP peer's ``(host, port)``, or None."""
    transport = request.transport
    peer = None if transport is None else transport.get_extra_info("peername")
    # A unix socket's peername is a str (or ""): no address, the key "unknown".
    return peer if peer.__class__ is tuple else None


class _Info(RequestInfo):
    """The core's view of an aiohttp request; its headers are made only when a key or a
    priority header reads them (most requests are keyed on the peer alone)."""

    __slots__ = ("_lowered", "_raw")

    def __init__(self, request: web.Request, method: str, route: str | None) -> None:
        # The other slots are set here, not by RequestInfo.__init__: ``headers`` is lazy.
        self.method = method
        self.path = request.path
        self.client = _peer(request)
        self.route = route
        self.user = None
        self._raw = request.raw_headers
        self._lowered: list[tuple[bytes, bytes]] | None = None

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]:  # type: ignore[override]
        # The core reads lowercased names; aiohttp keeps the client's spelling.
        lowered = self._lowered
        if lowered is None:
            lowered = self._lowered = [(name.lower(), value) for name, value in self._raw]
        return lowered


def _answered(exc: BaseException) -> bool:
    """A raised ``web.HTTPException`` below 500 (a 404, a redirect) is the handler's answer,
    not its failure: the guards are left as after a response (a breaker counts no failure)."""
    return isinstance(exc, web.HTTPException) and exc.status < 500


def _gone(request: web.Request, exc: BaseException) -> bool:
    """Whether ``exc`` is the client going away: aiohttp's ``ConnectionResetError`` from
    reading a request whose connection is lost (with ``handler_cancellation=True`` the
    handler is cancelled instead). A cancellation on the server's side, never a failure for
    the guards; a connection error of the handler's own calls, its client still there, is
    one."""
    if not isinstance(exc, ConnectionError):
        return False
    transport = request.transport
    return transport is None or transport.is_closing()


def _is_websocket(request: web.Request) -> bool:
    upgrade = request.headers.get(hdrs.UPGRADE)
    return upgrade is not None and upgrade.lower() == "websocket"


# -- the server: the Protection, and the guards around the handler -----------------------------


class _Server:
    """What the middleware and the decorator share: the Protection and its guard runner
    (``integrations._guards``: the guards around the handler, the shedders' signals fed)."""

    __slots__ = ("guards", "protection")

    def __init__(self, protection: Protection) -> None:
        self.protection = protection
        runner = GuardRunner(protection.rules)
        self.guards = runner if runner.active else None  # None: no rule has a guard

    async def run(
        self,
        request: web.Request,
        handler: Handler,
        plan: Plan,
        method: str,
        route: str | None,
    ) -> web.StreamResponse:
        protection = self.protection
        runner = self.guards
        guards: GuardPlan = ()
        if plan.sync:  # decided at once: no coroutine, no Admission (the common case)
            if plan.by_peer:  # keyed on the client address alone: no RequestInfo needed
                info = None
                outcome = plan.now_peer(_peer(request))
            else:
                info = _Info(request, method, route)
                outcome = plan.now(info)
            if outcome.__class__ is not list:
                return _response(outcome)  # type: ignore[arg-type]
            extra: RawHeaders = outcome
            if runner is not None:
                priority = plan.priority if info is None else plan.priority_of(info)
                guards = runner.plan(plan.guards, priority)
        else:
            info = _Info(request, method, route)
            admission = await protection.admit(info, plan.rules)
            if admission.response is not None:
                return _response(admission.response)
            extra = admission.headers
            if runner is not None:
                guards = runner.plan(admission.guards, admission.priority)
        response: web.StreamResponse
        try:
            if guards:
                assert runner is not None  # guards come from the runner
                response = await runner.run(
                    guards,
                    handler,
                    request,
                    answer=_answered,
                    gone=functools.partial(_gone, request),
                )
            else:  # the common case: a rate limit alone
                response = await handler(request)
        except Exception as exc:
            mapped = protection.error_response(exc)
            if mapped is None or _already_sent(request):
                if extra and isinstance(exc, web.HTTPException):
                    _add_headers(exc, extra)  # a raised 404 or redirect: the limits apply
                raise
            response = _response(mapped)  # a 503 or 504 still says what the limits are
        if extra and not response.prepared:
            _add_headers(response, extra)
        return response


def _protection(
    rules: Rule | Sequence[Rule],
    headers: str,
    exempt_paths: str | Iterable[str],
    exempt_methods: str | Iterable[str],
    errors: Errors,
    protection: Protection | None,
) -> Protection:
    if protection is not None:
        if not isinstance(protection, Protection):
            raise TypeError(f"protection must be a Protection, got {protection!r}")
        if rules or errors is not None:
            raise TypeError("give rules= (and errors=) or a ready protection=, not both")
        return protection
    if not rules:
        raise ValueError(
            "rules is empty: give at least one Rule (Rule(limiter) limits each client across "
            "all routes)"
        )
    return Protection(
        rules,
        headers=headers,
        exempt_paths=exempt_paths,
        exempt_methods=exempt_methods,
        errors=errors,
    )


def resilience_middleware(
    *,
    rules: Rule | Sequence[Rule] = (),
    headers: str = "ietf",
    exempt_paths: str | Iterable[str] = HEALTH_PATHS,
    exempt_methods: str | Iterable[str] = (),
    errors: Errors = None,
    protection: Protection | None = None,
) -> Middleware:
    """The server middleware (see the module docstring)."""
    server = _Server(_protection(rules, headers, exempt_paths, exempt_methods, errors, protection))
    select = server.protection.plan
    error_response = server.protection.error_response
    run = server.run
    # path -> (the route object it matched, method, plan, route template): the last plan of
    # each path, found again without the template's four property reads nor plan()'s frame
    # (an exempt request's cost is mostly this). Checked against the route matched, so that
    # a path two domains' sub-apps route apart is planned for each; bounded as plan() is.
    planned: dict[str, tuple[object, str, Plan | None, str | None]] = {}

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        method = request.method
        if method == "GET" and _is_websocket(request):
            method = _WEBSOCKET
        path = request.path
        matched = request.match_info.route
        hit = planned.get(path)
        if hit is not None and hit[0] is matched and hit[1] == method:
            _, _, plan, route = hit
        else:
            route = _template(matched)
            plan = select(method, path, route)
            # Not a 404's or 405's: their route is made anew per request (and holds its
            # exception, hence the request), so it would never hit and pin each request.
            if route is not None:
                if len(planned) >= _PLANNED_MAX:
                    planned.clear()
                planned[path] = (matched, method, plan, route)
        if plan is not None:
            return await run(request, handler, plan, method, route)
        try:
            return await handler(request)
        except Exception as exc:  # an exempt route's own pipeline: still one mapping
            mapped = error_response(exc)
            if mapped is None or _already_sent(request):
                raise
            return _response(mapped)

    middleware.protection = server.protection  # type: ignore[attr-defined]
    return middleware


def setup(
    app: web.Application,
    *,
    rules: Rule | Sequence[Rule] = (),
    headers: str = "ietf",
    exempt_paths: str | Iterable[str] = HEALTH_PATHS,
    exempt_methods: str | Iterable[str] = (),
    errors: Errors = None,
    protection: Protection | None = None,
) -> Protection:
    """Append :func:`resilience_middleware` to ``app`` and store its Protection under
    :data:`PROTECTION`."""
    middleware = resilience_middleware(
        rules=rules,
        headers=headers,
        exempt_paths=exempt_paths,
        exempt_methods=exempt_methods,
        errors=errors,
        protection=protection,
    )
    compiled: Protection = middleware.protection  # type: ignore[attr-defined]
    app[PROTECTION] = compiled
    app.middlewares.append(middleware)
    return compiled


def limit(
    *protections: object,
    key: Callable[[RequestInfo], Any] | None = None,
    cost: int | Callable[[RequestInfo], int] = 1,
    per_route: bool = False,
    headers: str = "ietf",
    errors: Errors = None,
    priority: Priority | str | None = None,
) -> Callable[[Handler], Handler]:
    """A handler decorator with the middleware's behaviour for one handler (see the module
    docstring): rate limiters are decided, other guards run around the handler."""
    if not protections:
        raise TypeError("limit() needs at least one limiter or guard")
    limiters = [p for p in protections if isinstance(p, RateLimiter)]
    guards = [p for p in protections if not isinstance(p, RateLimiter)]
    if per_route.__class__ is not bool:
        raise TypeError(f"per_route must be a bool, got {per_route!r}")
    rule_key = client_address() if key is None else key
    if per_route:
        rule_key = compose(route_key(), rule_key)
    rule = Rule(limiters, key=rule_key, cost=cost, priority=priority, guards=guards)
    server = _Server(Protection(rule, headers=headers, errors=errors))
    plan = Plan(server.protection, (rule,))
    run = server.run

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def limited(request: web.Request) -> web.StreamResponse:
            call = handler
            if isinstance(request, web.View):  # a class-based view's method: called with self
                view = request
                request = view.request

                async def call(_: web.Request) -> web.StreamResponse:
                    return await handler(view)

            method = request.method
            if method == "GET" and _is_websocket(request):
                method = _WEBSOCKET
            return await run(request, call, plan, method, _template(request.match_info.route))

        return limited

    return decorate


def error_middleware(errors: Errors = None) -> Middleware:
    """Map the error tree (429/503/504, Retry-After, problem+json) for every handler."""
    mapper = errors if isinstance(errors, ErrorMapper) else ErrorMapper(errors)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            mapped = mapper(exc)
            if mapped is None or _already_sent(request):
                raise
            return _response(mapped)

    return middleware


async def limited_messages(
    ws: web.WebSocketResponse,
    limiter: RateLimiter[Any],
    *,
    cost: int = 1,
    close_code: int = WSCloseCode.POLICY_VIOLATION,
) -> AsyncIterator[WSMessage]:
    """The messages of a prepared websocket, each decided by ``limiter`` under a key of its
    own for this connection; the first one refused closes the socket with ``close_code``
    (1008 policy violation by default; 1013 try-again-later is the other usual choice)."""
    if not isinstance(limiter, RateLimiter):
        raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
    if cost.__class__ is not int or cost < 1:
        raise ValueError(f"cost must be an int >= 1, got {cost!r}")
    key = connection_key()
    async for message in ws:
        if limiter.shared:
            decision = await limiter.decide(cost, key=key)
        else:
            decision = limiter.check(cost, key=key)
        if not decision.allowed:
            await ws.close(code=close_code, message=b"message rate limit exceeded")
            return
        yield message
