"""Per-route protection for FastAPI and Starlette: a dependency and a route decorator, over
the HTTP core (``integrations._http``). Needs Starlette (``aioresilience[fastapi]`` or
``[starlette]``).

``protect(*limiters_or_guards, key=None, cost=1, per_route=False, wait=False,
headers="ietf", priority=None, errors=None)``
    A dependency: ``dependencies=[Depends(protect(limiter))]`` on a route, a router or the
    app. Rate limiters are decided for the request's key (default: the client address, see
    ``client_address`` for proxies); other arguments are guards (a bulkhead, an adaptive
    limiter, a LoadShedder at ``priority``, a pipeline without retries) the handler runs in.
    ``per_route=True`` keys on ``"METHOD /route/{template}"`` plus the key (one limit per
    route, per client; the template, never the raw path). A refusal is immediate (429, or
    503 from a guard) unless ``wait=True`` (then the limiters wait their turn, up to their
    own ``max_wait``, in turn, and send no rate-limit fields: nothing is left to describe; a
    unit an earlier limiter gave is not refunded when a later one refuses). The
    rate-limit fields go on a success through FastAPI's ``Response`` dependency, which
    FastAPI merges into the response a handler's *return value* becomes; a handler that
    returns a ``Response`` object itself gets them from :func:`limit` or the middleware.
    On a websocket route both limit the handshake (the method ``"WEBSOCKET"``); its
    refusal is an HTTP response with ``install(app)`` where the server offers the denial.
``@limit(...)`` (same arguments)
    The same as a decorator, under ``@app.get(...)``: for a FastAPI handler (no ``request``
    parameter needed: the decorator asks FastAPI for one under a hidden name, and works with
    ``from __future__ import annotations``) or a Starlette endpoint ``(request)``, ``async
    def`` or plain ``def`` (run in Starlette's thread pool, as FastAPI and Starlette run a
    plain one; the guards hold it until the thread returns). The fields are added to the
    response whatever the handler returns.

Refusals raise :class:`Refused`, an ``HTTPException`` carrying the exact response: with
``aioresilience.integrations.asgi.install(app)`` it is sent as built (problem+json body,
``Retry-After``, the fields); without, the framework's own HTTPException handler sends its
status and headers with its own body. Errors of ours raised by the handler (a downstream
``TimeoutExceeded``) are mapped by ``install(app)`` too.
"""

import asyncio
import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Callable, Coroutine, Hashable, Mapping
from typing import Any

try:
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException
    from starlette.requests import ClientDisconnect, HTTPConnection
    from starlette.responses import Response
    from starlette.routing import Host, Match, Mount
    from starlette.websockets import WebSocketDisconnect
except ImportError as error:  # pragma: no cover - the extra is installed in tests
    raise ImportError(
        "aioresilience.integrations.fastapi needs Starlette: "
        "pip install 'aioresilience[fastapi]' (or 'aioresilience[starlette]')"
    ) from error

from .. import Priority, RateLimited, RateLimiter
from .._support.predicates import is_async_callable
from ._guards import Entered, GuardRunner, enter, leave, leave_raised
from ._http import (
    ErrorMapper,
    HttpResponse,
    KeyFunc,
    Protection,
    RawHeaders,
    RequestInfo,
    ResponseFactory,
    Rule,
    client_address,
    compose,
    merge_fields,
    route_key,
    shared_key,
)

__all__ = ["Refused", "limit", "protect"]

_REQUEST = "_aioresilience_request"
_RESPONSE = "_aioresilience_response"


class Refused(HTTPException):
    """A refusal by :func:`protect` or :func:`limit`: ``response`` is the one to send."""

    def __init__(self, response: HttpResponse) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in response.headers
            if name != b"content-type"  # the body the framework's handler writes is its own
        }
        super().__init__(response.status, headers=headers)
        self.response = response


class _Protector:
    """One protection of :func:`protect` / :func:`limit`, built at import time."""

    __slots__ = ("guards", "limiters", "plan", "protection", "rule", "rules", "wait")

    def __init__(
        self,
        where: str,
        items: tuple[object, ...],
        key: KeyFunc | None,
        cost: Any,
        per_route: bool,
        wait: bool,
        headers: str,
        priority: Priority | str | None,
        errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None,
    ) -> None:
        if not items:
            raise ValueError(f"{where}: give at least one rate limiter or guard")
        if not isinstance(per_route, bool) or not isinstance(wait, bool):
            raise TypeError(f"{where}: per_route and wait must be bools")
        limiters = [item for item in items if isinstance(item, RateLimiter)]
        guards = [item for item in items if not isinstance(item, RateLimiter)]
        base = client_address() if key is None else key
        if per_route:
            base = compose(route_key(), base)
        self.rule = Rule(limiters, key=base, cost=cost, priority=priority, guards=guards)
        self.rules = (self.rule,)
        self.limiters = self.rule.limiters
        self.protection = Protection(self.rule, headers=headers, errors=errors)
        self.guards = GuardRunner(self.rules, lambda i, j: f"{where} guard {j}")
        # The guards at the rule's own priority; a priority header picks another plan.
        self.plan = self.guards.plan(self.rule.guards, self.rule.priority)
        self.wait = wait

    def info(self, request: HTTPConnection) -> RequestInfo:
        scope = request.scope
        route = getattr(scope.get("route"), "path", None)  # the template, set by the router
        app_root = scope.get("app_root_path")  # set by a Mount only
        if route is not None and app_root is not None:
            # Mounted apps' templates are relative to their mount ("/items/{id}" under "/a"
            # and "/b"): the mounts' own templates tell them apart. (Not the text they
            # matched, root_path past the app's own: under Mount("/t/{tenant}") that is the
            # client's value, a budget of its own for every tenant it names.)
            mounts = _mount_templates(scope, app_root)
            if mounts is None:  # not found again (a router of its own): the text matched
                mounts = scope["root_path"][len(app_root) :]
            route = mounts + route
        method = "WEBSOCKET" if scope["type"] == "websocket" else scope["method"]
        return RequestInfo(
            method, scope["path"], scope["headers"], scope.get("client"), route, scope.get("user")
        )

    async def admit(self, request: HTTPConnection) -> tuple[RawHeaders, Entered]:
        """Decide the limiters and enter the guards; raises :class:`Refused`."""
        info = self.info(request)
        if self.wait:
            headers: RawHeaders = []
            key: Hashable = await self.rule.key_of(info)
            cost = self.rule.cost_of(info)
            too_costly = self.rule.too_costly(cost)  # no wait would admit it: at once
            if too_costly is not None:
                raise Refused(self.protection._too_costly(too_costly, [], key, cost))
            for limiter in self.limiters:
                if limiter.shared:
                    key = shared_key(key)
                try:
                    await limiter.acquire(cost, key=key)
                except RateLimited as exc:
                    raise Refused(self._mapped(exc)) from None
        else:
            admission = await self.protection.admit(info, self.rules)
            if admission.response is not None:
                raise Refused(admission.response)
            headers = admission.headers
        entered: Entered = []
        if self.plan:
            plan = self.plan
            priority = self.rule.priority_of(info)
            if priority is not self.rule.priority:
                plan = self.guards.plan(self.rule.guards, priority)
            try:
                now = enter(plan)
                entered = now if isinstance(now, list) else await now  # awaited: a guard waits
            except Exception as exc:
                mapped = self.protection.error_response(exc)
                if mapped is None:
                    raise
                raise Refused(mapped) from None
        return headers, entered

    def _mapped(self, exc: BaseException) -> HttpResponse:
        mapped = self.protection.error_response(exc)
        assert mapped is not None  # RateLimited always has an entry
        return mapped


def _mount_templates(scope: Any, app_root: str) -> str | None:
    """The templates of the Mounts a request was routed through, joined (``"/t/{tenant}"``),
    found again from the app's router as Starlette's router chose them (the first Mount or
    Host that matches, level by level, until the request's ``root_path`` is reached); None
    when they cannot be found."""
    routes = getattr(scope.get("router"), "routes", None)
    target = scope["root_path"]
    probe = {
        "type": scope["type"],
        "path": scope["path"],
        "root_path": app_root,
        "path_params": {},
        "headers": scope.get("headers", ()),
    }
    templates = []
    while probe["root_path"] != target:
        for node in routes or ():
            if isinstance(node, Mount | Host):
                match, child = node.matches(probe)
                if match is Match.FULL:
                    break
        else:
            return None
        probe.update(child)
        if isinstance(node, Mount):
            templates.append(node.path)
        routes = node.routes
    return "".join(templates)


def _answered(exc: BaseException) -> bool:
    """A raised ``HTTPException`` below 500 (a 404, a redirect) is the handler's answer, not
    its failure: the guards are left as after a response (a breaker counts no failure)."""
    return isinstance(exc, HTTPException) and exc.status_code < 500


def _gone(exc: BaseException) -> bool:
    """Whether ``exc`` is the client going away (Starlette's ``ClientDisconnect``,
    ``WebSocketDisconnect``): a cancellation on the server's side, never a failure."""
    return isinstance(exc, ClientDisconnect | WebSocketDisconnect)


def protect(
    *limiters_or_guards: object,
    key: KeyFunc | None = None,
    cost: int | Callable[[RequestInfo], int] = 1,
    per_route: bool = False,
    wait: bool = False,
    headers: str = "ietf",
    priority: Priority | str | None = None,
    errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None = None,
) -> Callable[..., Any]:
    """A FastAPI dependency protecting the routes it is given to (module docstring)."""
    protector = _Protector(
        "protect()", limiters_or_guards, key, cost, per_route, wait, headers, priority, errors
    )
    if not protector.plan:

        async def dependency(request: HTTPConnection, response: Response) -> None:
            headers, _ = await protector.admit(request)
            if headers:  # merged: another dependency's fields may be there already
                response.raw_headers[:] = merge_fields(response.raw_headers, headers)

        return dependency

    async def guarded(request: HTTPConnection, response: Response) -> AsyncIterator[None]:
        headers, entered = await protector.admit(request)
        if headers:
            response.raw_headers[:] = merge_fields(response.raw_headers, headers)
        try:
            yield
        except BaseException as failure:  # cancellation included: every guard is left
            # (failure itself, or the error an exit replaced it with, chained to it already)
            raise await leave_raised(entered, failure, _answered, _gone)  # noqa: B904
        pending = leave(entered, None)
        if pending is not None:
            await pending

    return guarded


def _evaluated(param: inspect.Parameter, namespace: Mapping[str, Any]) -> inspect.Parameter:
    """``param`` with a string annotation evaluated in ``namespace`` (left as it is if not)."""
    if not isinstance(param.annotation, str):
        return param
    try:
        return param.replace(annotation=eval(param.annotation, dict(namespace)))
    except Exception:  # a name not defined yet: FastAPI resolves it later, we cannot
        return param


def _annotated(parameters: Mapping[str, inspect.Parameter], kind: type) -> str | None:
    """The name of the last parameter annotated with ``kind`` (or a subclass), if any."""
    found = None
    for name, param in parameters.items():
        annotation = param.annotation
        if isinstance(annotation, type) and issubclass(annotation, kind):
            found = name
    return found


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn`` in the thread pool. No cancellation stops its thread: a request cancelled (a
    timeout, the client gone) waits for it before its guards are left, so a bulkhead's slot
    is held while the handler runs, then is cancelled as it was."""
    call = asyncio.ensure_future(run_in_threadpool(fn, *args, **kwargs))
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        while not call.done():
            # Cancelled again: still cancelled (once) when the thread returns.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(call)
        raise


def limit(
    *limiters_or_guards: object,
    key: KeyFunc | None = None,
    cost: int | Callable[[RequestInfo], int] = 1,
    per_route: bool = False,
    wait: bool = False,
    headers: str = "ietf",
    priority: Priority | str | None = None,
    errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Coroutine[Any, Any, Any]]]:
    """A route decorator for FastAPI handlers and Starlette endpoints (module docstring)."""
    protector = _Protector(
        "limit()", limiters_or_guards, key, cost, per_route, wait, headers, priority, errors
    )

    def decorate(
        fn: Callable[..., Any],
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        if not callable(fn):
            raise TypeError(f"@limit decorates a handler (async def or def), got {fn!r}")
        # A plain def runs in the thread pool, as the framework would have run it (the
        # decorated handler is async: the framework no longer knows it was not).
        in_thread = not is_async_callable(fn)
        # Not evaluated: FastAPI resolves string annotations (from __future__ import
        # annotations) in the handler's own globals, which it finds through __wrapped__.
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        # FastAPI gives the request (and the response) to one parameter only, the last one
        # annotated so: a handler's own is used, not hidden behind ours.
        try:
            found = inspect.signature(fn, eval_str=True).parameters
        except Exception:  # a name not defined yet: FastAPI resolves it later, we cannot
            found = signature.parameters
        # Under another @limit, fn's __signature__ is taken as it is (eval_str does not apply):
        # its string annotations are resolved in the handler's own globals, as FastAPI does.
        namespace = getattr(inspect.unwrap(fn), "__globals__", {})
        resolved = {name: _evaluated(param, namespace) for name, param in found.items()}
        # The connection: a Request, or a WebSocket on a websocket route (FastAPI gives a
        # Request parameter nothing there; an HTTPConnection one is given either).
        own_request = _annotated(resolved, HTTPConnection)
        own_response = _annotated(resolved, Response)
        hidden = []
        if own_request is None:
            hidden.append(
                inspect.Parameter(
                    _REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=HTTPConnection
                )
            )
        if own_response is None:
            hidden.append(
                inspect.Parameter(_RESPONSE, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
            )
        at = next(
            (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD),
            len(params),
        )
        params[at:at] = hidden

        @functools.wraps(fn)
        async def protected(*args: Any, **kwargs: Any) -> Any:
            request = kwargs.pop(_REQUEST, None) if own_request is None else kwargs.get(own_request)
            sub_response = (
                kwargs.pop(_RESPONSE, None) if own_response is None else kwargs.get(own_response)
            )
            if request is None:  # a Starlette endpoint: called with the request
                request = next((a for a in args if isinstance(a, HTTPConnection)), None)
                if request is None:
                    raise TypeError(
                        f"@limit on {fn.__qualname__}: no request (use it on a FastAPI route "
                        "or a Starlette endpoint taking the request)"
                    )
            headers, entered = await protector.admit(request)
            try:
                if in_thread:
                    result = await _in_thread(fn, *args, **kwargs)
                else:
                    result = await fn(*args, **kwargs)
            except BaseException as failure:
                raise await leave_raised(entered, failure, _answered, _gone)  # noqa: B904
            pending = leave(entered, None, result)
            if pending is not None:
                await pending
            if headers:
                if isinstance(result, Response):
                    result.raw_headers[:] = merge_fields(result.raw_headers, headers)
                elif sub_response is not None:  # a dependency's fields may be there
                    sub_response.raw_headers[:] = merge_fields(sub_response.raw_headers, headers)
            return result

        protected.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return protected

    return decorate
