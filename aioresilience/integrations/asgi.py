"""A pure ASGI middleware over the HTTP core (``integrations._http``), for any ASGI app:
Starlette, FastAPI, Litestar or a bare ASGI callable. It imports no framework.

``ResilienceMiddleware(app, *, rules=(Rule(...),), headers="ietf", exempt_paths=HEALTH_PATHS,
exempt_methods=(), errors=None, protection=None, websocket_messages=None)``

- ``http``: the rules that match the request decide its limiters (one limit per client
  across all routes with ``Rule(limiter)``); a refusal is answered at once (429,
  problem+json, ``Retry-After``, the rate-limit fields); an admitted request runs inside the
  rules' ``guards`` (a bulkhead, an adaptive limiter, a LoadShedder at the rule's priority,
  a pipeline without retries), which see its whole duration; a shedder's ``InFlight`` or
  ``LatencyEWMA`` signal is fed by the middleware itself, with every request a rule selects
  (the guard runner of ``integrations._guards``, shared with the other adapters). The
  rate-limit fields are added to the response start. An error of ours raised before the
  response started (a guard's refusal, ``RateLimited`` or ``TimeoutExceeded`` from the
  handler) becomes its mapped response (503, 429, 504).
- ``websocket``: the handshake is a request with method ``"WEBSOCKET"``. A refusal before
  accept is an HTTP response where the server offers the ``websocket.http.response``
  extension (uvicorn with ``websockets`` does), else the connection is accepted and closed
  at once with code 1008 (policy: the client's quota) or 1013 (try again later: our
  capacity). ``websocket_messages``: a limiter checked for every message the client sends,
  keyed per connection; over it, the connection is closed with 1008 and the app receives
  ``websocket.disconnect``.
- ``lifespan`` and anything else: passed through.

Paths (of the rules and ``exempt_paths``) are matched against the path within the app,
``scope["path"]`` less its ``root_path`` (uvicorn's ``--root-path``, a ``Mount``'s prefix), as
Starlette's router matches its routes; ``RequestInfo.path`` (what ``route_key()`` keys on) is
``scope["path"]`` itself.

On Starlette/FastAPI: ``app.add_middleware(ResilienceMiddleware, rules=[...])``;
:func:`install` adds exception handlers for the same error mapping, for errors raised where
the middleware cannot see them (inside Starlette's own exception middleware).

Client addresses: see ``client_address`` in ``integrations._http`` for how the
``trusted_proxies`` of a key and uvicorn's ``--forwarded-allow-ips`` combine.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping, Sequence
from typing import Any

from .. import RateLimiter
from ._guards import GuardRunner
from ._guards import Plan as GuardPlan
from ._http import (
    HEALTH_PATHS,
    RATE_LIMIT_FIELDS,
    UNPLANNED,
    Admission,
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
    merge_fields,
    route_key,
    user_key,
)

# The core's rules and keys, re-exported: what an app configures the middleware with.
__all__ = [
    "HEALTH_PATHS",
    "ErrorMapper",
    "Protection",
    "ResilienceMiddleware",
    "Rule",
    "client_address",
    "compose",
    "header_key",
    "install",
    "route_key",
    "user_key",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_WS_EXTENSION = "websocket.http.response"
_CLOSE_POLICY = 1008  # the client broke a policy: its quota
_CLOSE_TRY_LATER = 1013  # our capacity: try again later


async def send_response(send: Send, response: HttpResponse) -> None:
    """Send a whole ``HttpResponse`` on an ``http`` scope."""
    await send(
        {"type": "http.response.start", "status": response.status, "headers": response.headers}
    )
    await send({"type": "http.response.body", "body": response.body})


class ResilienceMiddleware:
    """Protect an ASGI app with rules of limiters and guards (see the module docstring)."""

    __slots__ = (
        "_guards",
        "_messages",
        "_plan",
        "_plans",
        "_select",
        "app",
        "protection",
    )

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: Rule | Sequence[Rule] = (),
        headers: str = "ietf",
        exempt_paths: str | Iterable[str] = HEALTH_PATHS,
        exempt_methods: str | Iterable[str] = (),
        errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None = None,
        protection: Protection | None = None,
        websocket_messages: RateLimiter[Any] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"ResilienceMiddleware: app must be an ASGI callable, got {app!r}")
        if protection is not None:
            if not isinstance(protection, Protection):
                raise TypeError(f"protection must be a Protection, got {protection!r}")
            if rules or errors is not None:
                raise TypeError("give rules= (and errors=) or a ready protection=, not both")
        else:
            if not rules and websocket_messages is None:  # a message limit alone is one
                raise ValueError(
                    "ResilienceMiddleware: rules is empty: give at least one Rule "
                    "(Rule(limiter) limits each client across all routes)"
                )
            protection = Protection(
                rules,
                headers=headers,
                exempt_paths=exempt_paths,
                exempt_methods=exempt_methods,
                errors=errors,
            )
        self.app = app
        self.protection = protection
        self._select = protection.select
        self._plan = protection.plan
        self._plans = protection.plans
        runner = GuardRunner(protection.rules)
        self._guards = runner if runner.active else None  # None: no rule has a guard
        if websocket_messages is not None and not isinstance(websocket_messages, RateLimiter):
            raise TypeError(f"websocket_messages must be a RateLimiter, got {websocket_messages!r}")
        self._messages = websocket_messages

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            method = scope["method"]
            path = scope["path"]
            root = scope.get("root_path")
            where = _route_path(path, root) if root else path
            # Protection.plan's hit inline (this runs once per request, exempt ones too).
            paths = self._plans.get(method)
            found = UNPLANNED if paths is None else paths.get(where, UNPLANNED)
            plan: Plan | None = self._plan(method, where) if found is UNPLANNED else found
            if plan is None:
                return await self.app(scope, receive, send)
        elif kind == "websocket":
            return await self._websocket(scope, receive, send)
        else:  # lifespan, and scopes this middleware knows nothing of
            return await self.app(scope, receive, send)
        runner = self._guards
        guards: GuardPlan = ()
        if plan.sync:  # decided at once: no coroutine, no Admission (the common case)
            if plan.by_peer:  # keyed on the client address alone: no RequestInfo needed
                info = None
                outcome = plan.now_peer(scope.get("client"))
            else:
                info = RequestInfo(
                    method, path, scope["headers"], scope.get("client"), None, scope.get("user")
                )
                outcome = plan.now(info)
            if outcome.__class__ is not list:
                return await send_response(send, outcome)  # type: ignore[arg-type]
            extra: RawHeaders = outcome
            if runner is not None:
                priority = plan.priority if info is None else plan.priority_of(info)
                guards = runner.plan(plan.guards, priority)
        else:
            info = RequestInfo(
                method, path, scope["headers"], scope.get("client"), None, scope.get("user")
            )
            admission = await self.protection.admit(info, plan.rules)
            if admission.response is not None:
                return await send_response(send, admission.response)
            extra = admission.headers
            if runner is not None:
                guards = runner.plan(admission.guards, admission.priority)
        started = False

        # A plain function returning the server's awaitable: no coroutine of ours per message.
        def send_with_headers(message: Message) -> Awaitable[None]:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if extra:
                    headers = message.get("headers", ())
                    if headers.__class__ is not list and headers.__class__ is not tuple:
                        headers = list(headers)  # any iterable of pairs: read once
                    for name, _ in headers:  # (merge_fields' test inline: the hot path)
                        if name in RATE_LIMIT_FIELDS:  # an inner protection's (a dependency's)
                            message["headers"] = merge_fields(headers, extra)
                            break
                    else:
                        message["headers"] = [*headers, *extra]
            return send(message)

        try:
            if guards:
                assert runner is not None  # guards come from the runner
                watched = _Watched(receive)
                watched_send = watched.sent(send_with_headers)
                if _raises_on_closed(scope):
                    watched_send = watched.sending(watched_send)
                await runner.run(guards, self.app, scope, watched, watched_send, gone=watched.gone)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as error:
            response = None if started else self.protection.error_response(error)
            if response is None:
                raise
            await send_response(send, response._replace(headers=[*response.headers, *extra]))

    def _run(
        self, admission: Admission | None, scope: Scope, receive: Receive, send: Send
    ) -> Awaitable[None]:
        """The app, inside the admission's guards (and feeding the shedders' signals) if
        there are any: the one guard runner (``integrations._guards``)."""
        runner = self._guards
        if runner is not None and admission is not None:
            plan = runner.plan(admission.guards, admission.priority)
            if plan:
                watched = _Watched(receive)
                return runner.run(
                    plan, self.app, scope, watched, watched.sending(send), gone=watched.gone
                )
        return self.app(scope, receive, send)

    # -- websockets -------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        root = scope.get("root_path")
        rules = self._select("WEBSOCKET", _route_path(path, root) if root else path)
        if not rules and self._messages is None:
            return await self.app(scope, receive, send)
        if rules:
            info = RequestInfo(
                "WEBSOCKET", path, scope["headers"], scope.get("client"), None, scope.get("user")
            )
            admission = await self.protection.admit(info, rules)
            if admission.response is not None:
                return await self._deny(scope, receive, send, admission.response)
            extra = admission.headers
        else:
            admission, extra = None, []
        accepted = False
        closed_by_us = False

        def ws_send(message: Message) -> Awaitable[None]:
            nonlocal accepted
            if closed_by_us:  # we closed it (its message limit): as if the client had
                return _closed(message)
            if message["type"] == "websocket.accept":
                accepted = True
                if extra:
                    message["headers"] = merge_fields(message.get("headers", ()), extra)
            return send(message)

        ws_receive = receive
        messages = self._messages
        if messages is not None:
            connection = connection_key()
            shared = messages.shared  # on a shared store: decided there, awaited

            async def ws_receive() -> Message:
                nonlocal closed_by_us
                if closed_by_us:
                    return {"type": "websocket.disconnect", "code": _CLOSE_POLICY}
                message = await receive()
                if message["type"] == "websocket.receive" and not (
                    (await messages.decide(key=connection)).allowed
                    if shared
                    else messages.try_acquire(key=connection)
                ):
                    closed_by_us = True
                    await send(
                        {"type": "websocket.close", "code": _CLOSE_POLICY, "reason": "rate limited"}
                    )
                    return {"type": "websocket.disconnect", "code": _CLOSE_POLICY}
                return message

        try:
            await self._run(admission, scope, ws_receive, ws_send)
        except Exception as error:
            response = None if accepted else self.protection.error_response(error)
            if response is None:
                raise
            # The rules' limiters admitted the handshake: their fields go with the refusal.
            response = response._replace(headers=[*response.headers, *extra])
            await self._deny(scope, None, send, response)

    async def _deny(
        self, scope: Scope, receive: Receive | None, send: Send, response: HttpResponse
    ) -> None:
        """Refuse a handshake: an HTTP response if the server can send one, else a close."""
        if receive is not None:
            await receive()  # websocket.connect: the handshake the refusal answers
        if _WS_EXTENSION in (scope.get("extensions") or {}):
            await send(
                {
                    "type": "websocket.http.response.start",
                    "status": response.status,
                    "headers": response.headers,
                }
            )
            await send({"type": "websocket.http.response.body", "body": response.body})
            return
        code = _CLOSE_POLICY if response.status == 429 else _CLOSE_TRY_LATER
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.close", "code": code, "reason": _reason(response)})


class _Watched:
    """An app's ``receive`` and ``send`` that note the client going away (``receive`` gave
    ``http.disconnect`` or ``websocket.disconnect``, a close of ours included; ``send``
    raised ``OSError``, the ASGI spec's answer on a closed connection: uvicorn's
    ``ClientDisconnected`` on a websocket's accept): an exception the app raises after that
    is the client's going (Starlette's ``ClientDisconnect``, any framework's), a
    cancellation on the server's side, never a failure for the guards
    (``GuardRunner.run(gone=)``)."""

    __slots__ = ("_receive", "complete", "disconnected")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.disconnected = False
        self.complete = False  # the HTTP response all sent (sent())

    async def __call__(self) -> Message:
        message = await self._receive()
        if message["type"] in _DISCONNECTS and not self.complete:
            self.disconnected = True
        return message

    def sent(self, send: Send) -> Send:
        """An HTTP response's ``send``, noting the response complete: an ``http.disconnect``
        after that is the server's answer to a receive once the response is out (uvicorn's,
        which Starlette's streaming and file responses read), not the client going away, and
        an exception then (a background task's) is the handler's failure. A plain function
        returning the server's awaitable: no coroutine of ours per message (a server of ASGI
        spec < 2.4, uvicorn's, drops an HTTP send on a closed connection without raising;
        one of 2.4 raises, and gets :meth:`sending` around it too)."""

        def watched_send(message: Message) -> Awaitable[None]:
            kind = message["type"]
            if (
                kind == "http.response.body" and not message.get("more_body", False)
            ) or kind == "http.response.pathsend":
                self.complete = True
            return send(message)

        return watched_send

    def sending(self, send: Send) -> Send:
        """``send``, noting the connection closed under it: the ASGI answer is an
        ``OSError`` (on a websocket: uvicorn's ``ClientDisconnected``, on the accept of a
        handshake whose client left while it queued in a guard; on HTTP from spec 2.4)."""

        async def watched_send(message: Message) -> None:
            try:
                await send(message)
            except OSError:
                self.disconnected = True
                raise

        return watched_send

    def gone(self, error: BaseException) -> bool:
        return self.disconnected


_DISCONNECTS = frozenset({"http.disconnect", "websocket.disconnect"})


def _raises_on_closed(scope: Scope) -> bool:
    """Whether the server raises ``OSError`` on an HTTP send to a closed connection: from
    ASGI spec 2.4 it should ("2.3": uvicorn's, which drops such a send)."""
    version = scope.get("asgi", {}).get("spec_version", "2.0")
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (2, 4)


def _route_path(path: str, root: str) -> str:
    """The path within the app, which rules and exempt paths are matched against: ASGI's
    ``path`` includes the ``root_path`` (uvicorn's ``--root-path``, a Starlette ``Mount``'s
    prefix), which Starlette's router takes off before it matches its routes."""
    if path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


async def _closed(message: Message) -> None:
    """A message the app sends after the middleware closed its connection: its close is
    already done; anything else meets a closed connection, the ``OSError`` ASGI servers raise
    there (Starlette turns it into ``WebSocketDisconnect``), not the server's ``RuntimeError``
    for an app that sent a second close."""
    if message["type"] != "websocket.close":
        raise OSError("the websocket was closed: its message rate limit was exceeded")


def _reason(response: HttpResponse) -> str:
    return {429: "rate limited", 504: "timed out"}.get(response.status, "try again later")


# -- Starlette / FastAPI exception handlers ------------------------------------------------------


def install(
    app: Any,
    *,
    errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None = None,
) -> ErrorMapper:
    """Add Starlette/FastAPI exception handlers mapping the error tree: ``RateLimited`` 429,
    refusals of capacity 503, ``TimeoutExceeded`` 504, with ``Retry-After`` where known and
    problem+json bodies; ``errors`` overrides per type. Returns the mapper."""
    try:
        from starlette.responses import Response
    except ImportError as error:  # pragma: no cover - the extra is installed in tests
        raise ImportError(
            "aioresilience.integrations.asgi.install needs Starlette: "
            "pip install 'aioresilience[starlette]'"
        ) from error
    if not callable(getattr(app, "add_exception_handler", None)):
        raise TypeError(f"install(app): app must be a Starlette or FastAPI app, got {app!r}")
    mapper = errors if isinstance(errors, ErrorMapper) else ErrorMapper(errors)

    from .fastapi import Refused  # (needs Starlette, as install itself does)

    async def refused(request: Any, exc: Exception) -> Any:
        return http_response(Response, exc.response)  # type: ignore[attr-defined]

    app.add_exception_handler(Refused, refused)

    async def handle(request: Any, exc: Exception) -> Any:
        mapped = mapper(exc)
        if mapped is None:  # pragma: no cover - registered only for types the mapper maps
            raise exc
        return http_response(Response, mapped)

    for exc_type in mapper.types:
        app.add_exception_handler(exc_type, handle)
    return mapper


def http_response(response_class: Any, mapped: HttpResponse) -> Any:
    """A Starlette response carrying ``mapped`` exactly (status, raw headers, body)."""
    response = response_class(mapped.body, status_code=mapped.status)
    response.raw_headers.extend(mapped.headers)
    return response
