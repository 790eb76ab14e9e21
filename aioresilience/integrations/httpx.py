"""httpx: :class:`ResilientTransport`, retries, breakers, limits and pacing per host.

::

    import httpx
    from aioresilience.integrations.httpx import ResilientTransport

    transport = ResilientTransport(retry={"attempts": 4}, breaker={"failure_threshold": 5})
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://api.example.com/items")

It wraps an inner transport (``inner=``; default ``httpx.AsyncHTTPTransport()``), so it also
goes in ``mounts={"https://api.example.com": ResilientTransport(...)}``. Every other option is
:class:`~aioresilience.integrations._client.ClientPolicy`'s (read its docstring): one policy
per origin, RFC 9110 retries (idempotent methods, or ``Idempotency-Key``, or failures before
sending), ``Retry-After``, breaker per host, server-guided pacing. A response that is not
returned is closed (``await response.aclose()``) before the next attempt; when the attempts
run out the last response is returned, or with ``raise_for_status=True`` an error status
(4xx, 5xx) raises ``httpx.HTTPStatusError`` (its body read first, the connection released).
An open breaker raises :class:`~aioresilience.CircuitBreakerOpenError` at once, nothing sent.

httpx exceptions, sorted: ``ConnectError``, ``ConnectTimeout`` and ``PoolTimeout`` never
reached the server (``"connect"``: any method may be retried); every other transport error
(``ReadError``, ``ReadTimeout``, ``RemoteProtocolError``, ``WriteError``...) may have
(idempotent requests only); ``UnsupportedProtocol`` and ``LocalProtocolError`` are the caller's
(never retried, never a breaker failure). One request opts in to retries whatever its method
with ``extensions={RETRY_EXTENSION: True}`` (or out, ``False``). A request body is replayable
when httpx holds it in memory (``content=``, ``data=``, ``json=``); a streamed body (an async
iterator, files) is sent once.
"""

from __future__ import annotations

from functools import partial
from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aioresilience.integrations.httpx needs httpx: pip install 'aioresilience[httpx]'"
    ) from exc

from ._client import ClientPolicy, FailureKind, HostPaused, raw_fields

__all__ = ["RETRY_EXTENSION", "ClientPolicy", "HostPaused", "ResilientTransport"]

#: The request extension by which a caller opts one request in to retries (``True``: retry
#: it whatever its method, as with an ``Idempotency-Key``) or out (``False``):
#: ``client.post(url, extensions={RETRY_EXTENSION: True})``.
RETRY_EXTENSION = "aioresilience.retry"

_DEFAULT_PORTS = {"http": 80, "https": 443}


class _HttpxIO:
    """httpx responses and exceptions, as the client core reads them."""

    __slots__ = ()

    def status(self, response: httpx.Response) -> int:
        return response.status_code

    def header(self, response: httpx.Response, name: str) -> str | None:
        value: str | None = response.headers.get(name)  # several lines joined with ", "
        return value

    def fields(self, response: httpx.Response, names: frozenset[str]) -> dict[str, str]:
        return raw_fields(response.headers.raw, names)

    async def close(self, response: httpx.Response) -> None:
        await response.aclose()

    def failure_kind(self, exc: BaseException) -> FailureKind:
        if isinstance(exc, httpx.PoolTimeout):
            return "local"  # our pool was full: nothing sent, and not the host's failure
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return "connect"
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
            return None
        if isinstance(exc, httpx.TransportError):
            return "transport"
        return None


_IO = _HttpxIO()


class ResilientTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that sends through ``inner`` under a per-host
    resilience policy (``**policy``: the options of ``ClientPolicy``, or ``policy=`` one
    already built, to share it between transports)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        raise_for_status: bool = False,
        policy: ClientPolicy[httpx.Response] | None = None,
        **options: Any,
    ) -> None:
        if inner is not None and not isinstance(inner, httpx.AsyncBaseTransport):
            raise TypeError(f"inner must be an httpx.AsyncBaseTransport or None, got {inner!r}")
        if not isinstance(raise_for_status, bool):
            raise TypeError(f"raise_for_status must be a bool, got {raise_for_status!r}")
        self.policy: ClientPolicy[httpx.Response] = ClientPolicy.given_or_built(
            _IO, policy, options
        )
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self.raise_for_status = raise_for_status

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        opt_in = request.extensions.get(RETRY_EXTENSION)
        if opt_in is not None and not isinstance(opt_in, bool):
            raise TypeError(f"extensions[{RETRY_EXTENSION!r}] must be a bool, got {opt_in!r}")
        policy = self.policy
        host = policy.host_at(scheme, url.host, url.port or _DEFAULT_PORTS.get(scheme, 0))
        method = request.method
        may_retry, after_send = host.retries(
            method,
            # Only a body httpx holds in memory can be sent again.
            isinstance(request.stream, httpx.ByteStream),
            opt_in,
            request.headers.__contains__,  # asked only when an Idempotency-Key decides
        )
        # partial, not a closure: called from C, one Python frame less per attempt.
        send = partial(self.inner.handle_async_request, request)
        response = await policy.run(host, method, may_retry, after_send, send)
        if self.raise_for_status and response.status_code >= 400:
            response.request = request
            await response.aread()  # the error keeps the body; the connection is released
            response.raise_for_status()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __repr__(self) -> str:
        return f"<ResilientTransport inner={self.inner!r} policy={self.policy!r}>"
