"""aiohttp client: :class:`ResilientMiddleware`, retries, breakers, limits and pacing per host.

::

    import aiohttp
    from aioresilience.integrations.aiohttp import ResilientMiddleware

    resilient = ResilientMiddleware(retry={"attempts": 4}, breaker={"failure_threshold": 5})
    async with aiohttp.ClientSession(middlewares=(resilient,)) as session:
        async with session.get("https://api.example.com/items") as response:
            items = await response.json()

A client middleware (aiohttp >= 3.12, ``ClientSession(middlewares=...)`` or one request's
``middlewares=``): every option is :class:`~aioresilience.integrations._client.ClientPolicy`'s
(read its docstring), the same as httpx's ``ResilientTransport``: one policy per origin, RFC
9110 retries (idempotent methods, or ``Idempotency-Key``, or failures before sending),
``Retry-After``, breaker per host, server-guided pacing. A response that is not returned is
released (``response.release()``: its connection goes back to the pool, or is closed when its
body was not read to the end) before the next attempt, so retries complete on a connector with
``limit=1``; when the attempts run out the last response is returned. For an error status to
raise, use the session's own ``raise_for_status=True``: aiohttp applies it to the response the
middleware returns, after the retries. An open breaker raises
:class:`~aioresilience.CircuitBreakerOpenError` at once, nothing sent.

aiohttp's own timeouts: ``ClientTimeout.total`` spans the whole call, retries and their sleeps
included (its expiry cancels the call: never retried); ``sock_read``/``sock_connect`` end one
attempt (``ServerTimeoutError``, retried like a read error). The policy's ``attempt_timeout``
and ``timeout`` work as with httpx.

aiohttp exceptions, sorted: ``ClientConnectorError`` (refused, DNS, TLS) and
``ConnectionTimeoutError`` (connect or pool timeout) never reached the server (``"connect"``:
any method may be retried); every other ``ClientConnectionError`` (disconnected, reset, read
timeout before the response's headers) may have (idempotent requests only); the body is
read after this middleware returned (a ``ClientPayloadError`` there is the caller's);
``InvalidURL`` and the rest are the caller's (never retried, never a breaker failure). A body
aiohttp holds in memory (bytes, str, ``json=``, form data, ``BytesIO``) is sent again on a
retry; a stream (an async iterator, a file) is sent once. One request opts in to retries
whatever its method, or out: ``session.post(url, middlewares=(resilient.with_retry(True),))``
(the same policy, the same hosts). (aiohttp itself sends an idempotent request once more
when it ends in ``ServerDisconnectedError`` or ``ClientOSError``: that second send runs this
middleware again, retries and all, so such a call may make up to twice the attempts.)
"""

from __future__ import annotations

from functools import partial
from typing import Any

try:
    import aiohttp
    from aiohttp import payload
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aioresilience.integrations.aiohttp needs aiohttp: pip install aioresilience[aiohttp]"
    ) from exc

from ._client import ClientPolicy, FailureKind, raw_fields

__all__ = ["ResilientMiddleware"]

#: The first aiohttp with client middlewares (``ClientSession(middlewares=...)``).
MIN_AIOHTTP = (3, 12)

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Bodies held in memory, sent again as they were (JSON, str and form data are BytesPayloads).
_REPLAYABLE = (payload.BytesPayload, payload.BytesIOPayload)
_CONNECT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_TRANSPORT = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for part in text.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class _AiohttpIO:
    """aiohttp responses and exceptions, as the client core reads them."""

    __slots__ = ()

    def status(self, response: aiohttp.ClientResponse) -> int:
        return response.status

    def header(self, response: aiohttp.ClientResponse, name: str) -> str | None:
        values = response.headers.getall(name, None)
        return None if values is None else ", ".join(values)

    def fields(self, response: aiohttp.ClientResponse, names: frozenset[str]) -> dict[str, str]:
        return raw_fields(response.raw_headers, names)

    async def close(self, response: aiohttp.ClientResponse) -> None:
        response.release()

    def failure_kind(self, exc: BaseException) -> FailureKind:
        if isinstance(exc, _CONNECT):
            return "connect"
        if isinstance(exc, _TRANSPORT):
            return "transport"
        return None


_IO = _AiohttpIO()


class ResilientMiddleware:
    """An aiohttp client middleware that sends each request under a per-host resilience
    policy (``**options``: the options of ``ClientPolicy``, or ``policy=`` one already built,
    to share it with other middlewares or an httpx transport of the same response type)."""

    __slots__ = ("policy", "retry")

    def __init__(
        self,
        *,
        policy: ClientPolicy[aiohttp.ClientResponse] | None = None,
        retry_request: bool | None = None,
        **options: Any,
    ) -> None:
        installed = _version(aiohttp.__version__)
        if installed < MIN_AIOHTTP:
            raise RuntimeError(
                f"ResilientMiddleware needs aiohttp >= 3.12 (client middlewares), installed "
                f"{aiohttp.__version__}: pip install aioresilience[aiohttp]"
            )
        if retry_request is not None and not isinstance(retry_request, bool):
            raise TypeError(f"retry_request must be a bool or None, got {retry_request!r}")
        self.policy: ClientPolicy[aiohttp.ClientResponse] = ClientPolicy.given_or_built(
            _IO, policy, options
        )
        #: This middleware's opt-in (True), opt-out (False) for every request it sends, or
        #: None: the policy decides by method and ``Idempotency-Key``.
        self.retry = retry_request

    def with_retry(self, retry: bool) -> ResilientMiddleware:
        """The same policy, for requests that opt in to retries whatever their method
        (``True``, as with an ``Idempotency-Key``) or out (``False``):
        ``session.post(url, middlewares=(resilient.with_retry(True),))``."""
        if not isinstance(retry, bool):
            raise TypeError(f"retry must be a bool, got {retry!r}")
        return ResilientMiddleware(policy=self.policy, retry_request=retry)

    async def __call__(
        self, request: aiohttp.ClientRequest, handler: aiohttp.ClientHandlerType
    ) -> aiohttp.ClientResponse:
        url = request.url
        body = request.body
        policy = self.policy
        # The host of the request before when this is the same URL object (immutable: yarl
        # hands out the same one for the same string), without reading its scheme, host and
        # port again (three cached properties: ~1,900 instructions on 3.12).
        _, host, seen = policy._last
        if seen is not url or host is None:
            scheme = url.scheme
            host = policy.host_at(
                scheme, url.host or "", url.port or _DEFAULT_PORTS.get(scheme, 0), url
            )
        method = request.method
        may_retry, after_send = host.retries(
            method,
            body.__class__ is bytes or isinstance(body, _REPLAYABLE),
            self.retry,
            request.headers.__contains__,  # asked only when an Idempotency-Key decides
        )

        # partial, not a closure: called from C, one Python frame less per attempt.
        send = partial(handler, request)
        if host.timeout is None:  # policy.run's common case inline: one frame less
            return await policy._calls(host, method, may_retry, after_send, send, policy.io)
        return await policy.run(host, method, may_retry, after_send, send)

    def __repr__(self) -> str:
        return f"<ResilientMiddleware policy={self.policy!r} retry={self.retry!r}>"
