"""The framework-neutral HTTP core of the web integrations (ASGI, FastAPI, aiohttp).

No framework is imported here: the adapters (``integrations.asgi``, ``.fastapi``,
``.aiohttp``) fill a :class:`RequestInfo` from their own request object and turn the
``(status, headers, body)`` triples below into their own responses. Headers are always the
ASGI raw form, ``list[tuple[bytes, bytes]]`` with lowercased names.

API (what the adapters code against)
------------------------------------

**Request view**

``RequestInfo(method, path, headers, client, route=None, user=None)``
    ``method`` upper-case str; ``path`` the decoded path (``scope["path"]``); ``headers`` the
    ASGI list of ``(name, value)`` bytes pairs, names lowercased (``scope["headers"]``; aiohttp:
    ``request.raw_headers`` with names lowered); ``client`` ``(host, port)`` of the TCP peer or
    ``None`` (``scope["client"]``; aiohttp: ``request.transport.get_extra_info("peername")``);
    ``route`` the route template (``"/items/{id}"``) when the framework knows it, else ``None``;
    ``user`` the authenticated user or ``None``. ``info.header(b"x-api-key") -> bytes | None``
    gives the first value of a header. Websocket handshakes: pass ``method="WEBSOCKET"``,
    so a rule can pick them (``methods=["WEBSOCKET"]``) or leave them out
    (``exclude_methods=``); a rule with ``methods=None`` covers them too.

**Keys** (a key is any callable ``(RequestInfo) -> Hashable``, sync or ``async def``)

``client_address(*, trusted_proxies=(), forwarded="x-forwarded-for", ipv6_prefix=64)``
    The client's address from the connection. Forwarding headers are read only when the TCP
    peer is in ``trusted_proxies`` (CIDRs or addresses; a malformed one raises ``ValueError``
    naming it), and then walked from the right, skipping trusted hops: the key is the
    right-most untrusted hop (never the left-most, which the client writes). ``forwarded``
    picks the ONE header your proxy sets, ``"x-forwarded-for"`` or ``"forwarded"`` (RFC 7239
    ``for=``): reading the other would let clients write it. IPv6 clients are keyed by their
    ``/ipv6_prefix`` network (one host usually owns a whole /64; 128 keys each address).
    No client (a unix socket, a test transport): the key ``"unknown"``.
    *uvicorn*: with ``--proxy-headers`` (its default) uvicorn itself rewrites
    ``scope["client"]`` from ``X-Forwarded-For`` when the peer is in
    ``--forwarded-allow-ips`` (default ``127.0.0.1``), so behind a local proxy the peer we
    see is already the client, and anything that connects from 127.0.0.1 can choose its
    address. Either leave ``trusted_proxies`` empty and let uvicorn's list decide, or start
    uvicorn with ``--no-proxy-headers`` (or ``--forwarded-allow-ips=''``) and configure
    ``trusted_proxies`` here; doing both walks the header twice, so keep one.
``header_key(name, *, fallback=client_address())``
    The value of header ``name`` (an API key) as str; ``fallback`` keys requests without it.
``user_key(*, fallback=client_address())``
    The authenticated user: ``user.identity`` (Starlette's ``BaseUser``), else ``user.id``,
    else ``str(user)``; unauthenticated (``None`` or ``is_authenticated`` false): ``fallback``.
``route_key()``
    ``"METHOD route"`` (the route template when known, else the path; HEAD is keyed as
    GET, whose handler it runs).
``compose(*keys)``
    A tuple of several keys (async if any part is). A limiter on a shared store gets
    ``repr()`` of a tuple key, since Redis keys must be str, and a key longer than 128 bytes
    (a client's long path or header) its SHA-256 digest (``shared_key``).

**Headers**

``HeaderRenderer(style="ietf")``, ``style`` one of ``"ietf" | "legacy" | "both" | "none"``
(anything else raises ``ValueError``). ``render(decisions) -> list[(bytes, bytes)]`` for a
sequence of ``(limiter, Decision)``:

- ``ietf``: ``ratelimit-policy: "name";q=Q;w=W, ...`` (one item per limiter, prepared once per
  limiter and cached on it) and ``ratelimit: "name";r=R;t=T, ...`` (per request), both
  structured-field lists, ``w`` and ``t`` in whole seconds rounded up, the policy name the
  limiter's name as an sf-string; ``qu`` only when the unit is not ``"requests"``.
- ``legacy``: ``x-ratelimit-limit``, ``-remaining`` and ``-reset``, of the most restrictive
  decision (fewest remaining); **Reset is delta seconds**, not an epoch time: the
  decision's ``reset_after``, as ``t`` is (when quota next comes back: the whole quota for
  a fixed window, a unit for a sliding one).
- ``both``: the two; ``none``: nothing.

Never ``Retry-After``: that is :func:`retry_after_header`'s, on refusals only.
``retry_after_header(seconds) -> tuple[bytes, bytes] | None``: integer seconds rounded up;
``None`` (omit) when unknown, infinite, NaN or negative.

**Errors**

``ErrorMapper(overrides=None)``; ``mapper(exc) -> HttpResponse | None``; ``mapper.types`` the
exception types it has an entry for (what exception handlers are registered for):
``RateLimited`` -> 429 (``quota-exceeded`` problem with ``violated-policies``);
``CircuitBreakerOpenError``, ``BulkheadFull``, ``LoadShed``, ``Throttled``,
``ConcurrencyLimited`` and any other ``Rejected`` -> 503 (``temporary-reduced-capacity``);
``TimeoutExceeded`` -> 504. ``Retry-After`` from ``exc.retry_after`` where known. Bodies are
``application/problem+json`` (RFC 9457). ``None``: not an error of ours, let it propagate.
``overrides`` maps an exception type to a status int or a factory
``(exc) -> HttpResponse``; the most specific class in the exception's MRO wins (an override
of ``Rejected`` does not hide the built-in ``RateLimited`` entry, one of ``RateLimited``
does). ``HttpResponse`` is the named tuple ``(status, headers, body)``.

**Rules**

``Rule(limiters=(), *, paths="/{path:path}", methods=None, exclude_paths=(),
exclude_methods=(), key=client_address(), cost=1, priority=None, priority_header=None,
guards=())``
    Which limiters guard which requests. ``paths`` are Starlette-style templates: literal
    segments, ``{name}`` one segment, ``{name:path}`` the rest of the path (so
    ``"/{path:path}"`` is everything and ``"/api/{rest:path}"`` a prefix); a request matches
    when its path (or its route template, when known) fits one. ``methods`` ``None``: all;
    naming GET covers HEAD too (Starlette and aiohttp answer HEAD with the GET handler).
    ``cost`` an int or a callable ``(RequestInfo) -> int``. ``priority`` a
    :class:`~aioresilience.Priority` or its name (``"critical"``, ``"normal"``,
    ``"sheddable"``); ``priority_header`` reads a priority name from that header, the rule's
    own ``priority`` when absent or unknown (read only when configured). ``guards``: other
    protections (a pipeline, bulkhead, LoadShedder, adaptive limiter) the adapter runs the
    handler in, in order. Construction validates everything, naming what is wrong: an empty
    ``paths`` or ``methods`` (a rule matching nothing), a malformed template, an unknown
    priority, a non-RateLimiter in ``limiters``, a key that is not callable.
``Protection(rules, *, headers="ietf", exempt_paths=(), exempt_methods=(), errors=None)``
    The compiled set. ``exempt_paths`` (templates as above; :data:`HEALTH_PATHS` is the usual
    set) and ``exempt_methods`` skip every rule. Per request:

    - ``protection.select(method, path, route=None) -> tuple[Rule, ...]``: the rules that
      apply (``()``: exempt or unguarded: pass the request straight through). Cached per
      ``(method, path, route)``, bounded.
    - ``await protection.admit(info, rules) -> Admission``: decides every limiter of every
      selected rule in order (``check()`` in process, ``await decide()`` on a shared store),
      stopping at the first refusal, which those decided before it give back
      (``RateLimiter.refund``: a refused request is recorded by none, so a burst refused by
      a per-minute limit spends nothing of a per-day one; so does a request that goes no
      further before all are decided: cancelled while an async key or a shared store
      decides, the client gone, or a key that raised). ``Admission.response`` is
      ``None`` when admitted, else the 429 ``HttpResponse`` to send (rate-limit headers,
      ``Retry-After``, problem body);
      ``Admission.headers`` the rate-limit headers to add to a success;
      ``Admission.guards`` the guards to run the handler in; ``Admission.priority`` the
      request's priority (the first rule's that sets one, else ``None``).
    - ``protection.error_response(exc) -> HttpResponse | None``: the error mapping.
    - ``protection.plan(method, path, route=None) -> Plan | None``: what ``select`` finds,
      compiled once per set of rules (``None``: pass through; ``plan.rules`` is ``select``'s
      tuple). When ``plan.sync`` (sync keys, limiters in process), ``plan.now(info)``
      decides at once, as ``admit`` would: a list of headers when admitted, else the 429
      ``HttpResponse``; ``plan.by_peer`` (the default client-address key, no trusted
      proxy, a fixed priority): ``plan.now_peer(info.client)``, no ``RequestInfo`` needed.
      ``plan.guards`` and ``plan.priority_of(info)`` stand for ``Admission``'s.

    ``Admission`` and ``HttpResponse`` are named tuples: ``Admission(response, headers,
    guards, priority)``, ``HttpResponse(status, headers, body)``. ``problem(status, title, *,
    type="about:blank", **members)`` builds a problem+json ``HttpResponse`` for an override.
    The problem type URIs are :data:`QUOTA_EXCEEDED` and :data:`TEMPORARY_REDUCED_CAPACITY`.

**Cost** (``benchmarks/bench_http.py``, CPython 3.12): ``select`` of an exempt path with its
``RequestInfo`` about 0.4 us; ``select`` + ``admit`` with one limiter and full IETF headers
about 1.8 us over the limiter's own ``check()`` (about 2.3 us, most of it the decision's
frozen dataclass); a trusted-proxy walk adds about 1 us (hosts are classified once, cached).

**Adapters, in short**: at start-up build one ``Protection``; per request ``rules =
protection.select(...)``; if ``rules`` is empty call the app untouched; else
``admission = await protection.admit(info, rules)`` (the built-in adapters take the
``plan`` fast path above when the plan is ``sync``); send ``admission.response`` if it is
set; else run the handler inside ``admission.guards`` (with ``admission.priority`` for a
``LoadShedder``), append ``admission.headers`` to the response start, and turn an error of
ours raised there into ``protection.error_response(exc)``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import re
import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

from .. import (
    Decision,
    Priority,
    RateLimited,
    RateLimiter,
    RatePolicy,
    Rejected,
    TimeoutExceeded,
)
from .._ratelimit import rate_limited
from .._support.predicates import is_async_callable
from .._support.validation import http_token

__all__ = [
    "HEALTH_PATHS",
    "QUOTA_EXCEEDED",
    "TEMPORARY_REDUCED_CAPACITY",
    "Admission",
    "ErrorMapper",
    "HeaderRenderer",
    "HeaderStyle",
    "HttpResponse",
    "Protection",
    "RequestInfo",
    "Rule",
    "client_address",
    "compose",
    "connection_key",
    "header_key",
    "merge_fields",
    "problem",
    "retry_after_header",
    "route_key",
    "user_key",
]

RawHeaders = list[tuple[bytes, bytes]]
HeaderStyle = Literal["ietf", "legacy", "both", "none"]
HEADER_STYLES: tuple[str, ...] = ("ietf", "legacy", "both", "none")
#: Paths commonly exempted from protection: probes and the metrics scrape.
HEALTH_PATHS: tuple[str, ...] = ("/health", "/healthz", "/livez", "/readyz", "/metrics")
UNKNOWN_CLIENT = "unknown"
_CACHE_MAX = 4096  # entries of each per-request cache before it is cleared (bounded memory)
UNPLANNED: Any = object()  # not in Protection.plans yet (a path plan() has not seen)


class HttpResponse(NamedTuple):
    """A response for the adapter to send: status, raw headers, body bytes."""

    status: int
    headers: RawHeaders
    body: bytes


# -- the request view -------------------------------------------------------------------------


class RequestInfo:
    """What the core reads of a request (see the module docstring); adapters fill it."""

    __slots__ = ("client", "headers", "method", "path", "route", "user")

    def __init__(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        client: tuple[str, int] | Sequence[Any] | None,
        route: str | None = None,
        user: object = None,
    ) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.client = client
        self.route = route
        self.user = user

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lowercase bytes), or ``None``."""
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def __repr__(self) -> str:
        return f"<RequestInfo {self.method} {self.path!r} route={self.route!r} {self.client!r}>"


KeyFunc = Callable[[RequestInfo], Any]


def _is_async(fn: object) -> bool:
    """Whether calling ``fn`` returns an awaitable (decided once, at construction)."""
    return getattr(fn, "is_async", None) is True or is_async_callable(fn)


# -- keys -------------------------------------------------------------------------------------


def _network(where: str, value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(value, str):
        raise TypeError(f"{where}: expected a CIDR string such as '10.0.0.0/8', got {value!r}")
    try:
        return ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as error:
        try:
            loose = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(
                f"{where}: {value!r} is not an IP address or CIDR network "
                f"(such as '10.0.0.0/8' or '::1'): {error}"
            ) from None
        raise ValueError(
            f"{where}: {value!r} has host bits set; did you mean {str(loose)!r}?"
        ) from None


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` nodes of an RFC 7239 ``Forwarded`` value, in order, with quotes, the
    brackets of an IPv6 address and any port removed (an element without ``for=`` gives
    ``""``, which is never trusted)."""
    nodes = []
    for element in value.split(","):
        node = ""
        for pair in element.split(";"):
            name, sep, raw = pair.partition("=")
            if sep and name.strip().lower() == "for":
                node = _host_of(raw.strip().strip('"'))
        nodes.append(node)
    return nodes


def _host_of(node: str) -> str:
    """A hop's address without its port or an IPv6 address's brackets: ``"[2001:db8::1]:4711"``
    and ``"192.0.2.1:8080"`` (as RFC 7239 writes them, and some proxies' X-Forwarded-For)
    are the client of ``"2001:db8::1"`` and ``"192.0.2.1"``, not one key per connection."""
    if node.startswith("["):
        return node[1 : node.find("]")] if "]" in node else node[1:]
    if node.count(":") == 1:
        return node.partition(":")[0]
    return node


def _xff(value: str) -> list[str]:
    return [_host_of(hop.strip()) for hop in value.split(",")]


class ClientAddress:
    """The key of :func:`client_address` (see the module docstring)."""

    __slots__ = ("_header", "_hosts", "_ipv6_prefix", "_networks", "_split")

    def __init__(
        self,
        trusted_proxies: Iterable[str] | str = (),
        forwarded: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
        ipv6_prefix: int = 64,
    ) -> None:
        if isinstance(trusted_proxies, str):
            trusted_proxies = (trusted_proxies,)
        self._networks = tuple(
            _network(f"trusted_proxies[{i}]", cidr)
            for i, cidr in enumerate(_sequence("trusted_proxies", trusted_proxies))
        )
        if forwarded not in ("x-forwarded-for", "forwarded"):
            raise ValueError(
                f"forwarded must be 'x-forwarded-for' or 'forwarded' (RFC 7239), got {forwarded!r}"
            )
        self._header = forwarded.encode()
        self._split: Callable[[str], list[str]] = (
            _xff if forwarded == "x-forwarded-for" else _forwarded_for
        )
        if ipv6_prefix.__class__ is not int or not 1 <= ipv6_prefix <= 128:
            raise ValueError(f"ipv6_prefix must be an int in 1..128, got {ipv6_prefix!r}")
        self._ipv6_prefix = ipv6_prefix
        self._hosts: dict[str, tuple[bool, str] | None] = {}  # see _classify

    def _classify(self, host: str) -> tuple[bool, str] | None:
        """``(trusted, key)`` of an address as text, or ``None`` if it is not one. Parsing an
        address costs a microsecond or more; the few hosts seen over and over (the proxies,
        active clients) are looked up in a bounded cache instead."""
        try:
            return self._hosts[host]
        except KeyError:
            pass
        address = _parse_ip(host.strip())
        if address is None:
            found = None
        else:
            # An IPv4 proxy seen on a dual-stack socket is the mapped "::ffff:a.b.c.d": it
            # is trusted (and keyed) as the IPv4 address it is.
            mapped = address.ipv4_mapped if address.version == 6 else None
            trusted = any(
                address in net or (mapped is not None and mapped in net) for net in self._networks
            )
            if address.version == 4:
                key = str(address)
            elif address.ipv4_mapped is not None:  # ::ffff:1.2.3.4 is the IPv4 client
                key = str(address.ipv4_mapped)
            elif self._ipv6_prefix == 128:
                key = str(address)
            else:  # one host usually owns a whole /64: key on the network
                key = str(ipaddress.ip_network(f"{address}/{self._ipv6_prefix}", strict=False))
            found = (trusted, key)
        if len(self._hosts) >= _CACHE_MAX:
            self._hosts.clear()
        self._hosts[host] = found
        return found

    @property
    def peer_only(self) -> bool:
        """Whether the key is the TCP peer's alone (no trusted proxy: no header is read)."""
        return not self._networks

    def of_peer(self, client: tuple[str, int] | Sequence[Any] | None) -> str:
        """The key of a request from ``client`` (``RequestInfo.client``), for a
        :attr:`peer_only` key: what :meth:`__call__` returns, without a ``RequestInfo``."""
        if not client:
            return UNKNOWN_CLIENT
        host: str = client[0]
        if ":" not in host:
            return host
        found = self._classify(host)
        return host if found is None else found[1]

    def is_trusted(self, host: str) -> bool:
        """Whether ``host`` (an address as text) is in ``trusted_proxies``."""
        found = self._classify(host)
        return found is not None and found[0]

    def __call__(self, request: RequestInfo) -> str:
        client = request.client
        if not client:
            return UNKNOWN_CLIENT
        host: str = client[0]
        if not self._networks and ":" not in host:
            return host  # the common case: no proxies, an IPv4 peer, nothing to parse
        found = self._classify(host)
        if found is None:
            return host  # a peer that is not an address (a test client's name)
        if not found[0]:
            return found[1]
        # The peer is a trusted proxy: walk its forwarding header from the right.
        header = self._header
        values = [v for k, v in request.headers if k == header]
        if not values:
            return found[1]
        hops = self._split(b",".join(values).decode("latin-1"))
        for hop in reversed(hops):
            found = self._classify(hop)
            if found is None:
                # Not an address ("unknown", an obfuscated node, garbage) written by a
                # trusted hop: it names the client as well as anything; stop here.
                return hop or UNKNOWN_CLIENT
            if not found[0]:
                return found[1]
        # Every hop is trusted: the left-most is the nearest we know to the client.
        return found[1]

    def __repr__(self) -> str:
        nets = [str(n) for n in self._networks]
        return f"client_address(trusted_proxies={nets}, forwarded={self._header.decode()!r})"


def connection_key() -> str:
    """A key of its own for one websocket connection's message limit: unique across the
    processes that share a store too (a counter per process would give two workers' first
    connections one budget)."""
    return f"ws-{uuid.uuid4().hex}"


_KEY_MAX = 128  # the length of a key from the request (a header, a path) kept as it is


def _digest(data: bytes) -> str:
    """A key from the request too long to keep (or to send to a store) as it is."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def client_address(
    *,
    trusted_proxies: Iterable[str] | str = (),
    forwarded: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
    ipv6_prefix: int = 64,
) -> ClientAddress:
    """Key on the client's address (see the module docstring for the proxy rules)."""
    return ClientAddress(trusted_proxies, forwarded, ipv6_prefix)


def _sync_key(where: str, key: object) -> KeyFunc:
    if not callable(key):
        raise TypeError(f"{where} must be a callable (RequestInfo) -> key, got {key!r}")
    if _is_async(key):
        raise TypeError(f"{where} must be a sync callable here, got the async {key!r}")
    return key


class HeaderKey:
    """The key of :func:`header_key`."""

    __slots__ = ("_fallback", "name")

    def __init__(self, name: str, fallback: KeyFunc) -> None:
        if not http_token(name):
            # (RFC 9110 §5.1: a field name is a token; "x api key" would never be sent.)
            raise ValueError(f"header_key: name must be a header name, got {name!r}")
        self.name = name.lower().encode("latin-1")
        self._fallback = _sync_key("header_key(fallback=)", fallback)

    def __call__(self, request: RequestInfo) -> Hashable:
        value = request.header(self.name)
        if value:
            # A client's 8 KB header is a key of 8 KB in memory, times max_keys: a long one
            # is held as its digest.
            return value.decode("latin-1") if len(value) <= _KEY_MAX else _digest(value)
        fallback: Hashable = self._fallback(request)
        return fallback


def header_key(name: str, *, fallback: KeyFunc | None = None) -> HeaderKey:
    """Key on header ``name`` (an API key); requests without it on ``fallback`` (default:
    the client address)."""
    return HeaderKey(name, client_address() if fallback is None else fallback)


class UserKey:
    """The key of :func:`user_key`."""

    __slots__ = ("_fallback",)

    def __init__(self, fallback: KeyFunc) -> None:
        self._fallback = _sync_key("user_key(fallback=)", fallback)

    def __call__(self, request: RequestInfo) -> Hashable:
        user = request.user
        if user is None or not getattr(user, "is_authenticated", True):
            fallback: Hashable = self._fallback(request)
            return fallback
        for attribute in ("identity", "id"):
            value = getattr(user, attribute, None)
            if value is not None and not callable(value):
                return str(value)
        return str(user)


def user_key(*, fallback: KeyFunc | None = None) -> UserKey:
    """Key on the authenticated user; anonymous requests on ``fallback`` (default: the
    client address)."""
    return UserKey(client_address() if fallback is None else fallback)


def _route_key(request: RequestInfo) -> str:
    method = request.method
    # HEAD runs the GET handler (Starlette's Route, aiohttp's add_get): one route, one
    # budget, or mixing HEAD in would double it (as a rule naming GET covers HEAD).
    if method == "HEAD":
        method = "GET"
    route = request.route
    if not route:  # the raw path, the client's to choose: a long one as its digest
        route = request.path
        if len(route) > _KEY_MAX:
            route = _digest(route.encode("utf-8", "surrogatepass"))
    return f"{method} {route}"


def route_key() -> KeyFunc:
    """Key on ``"METHOD route"`` (the route template when known, else the path)."""
    return _route_key


class _Composite:
    __slots__ = ("parts",)
    is_async = False

    def __init__(self, parts: tuple[KeyFunc, ...]) -> None:
        self.parts = parts

    def __call__(self, request: RequestInfo) -> tuple[Hashable, ...]:
        return tuple(part(request) for part in self.parts)


class _AsyncComposite(_Composite):
    __slots__ = ("_async",)
    is_async = True

    def __init__(self, parts: tuple[KeyFunc, ...]) -> None:
        super().__init__(parts)
        self._async = tuple(_is_async(p) for p in parts)

    async def __call__(self, request: RequestInfo) -> tuple[Hashable, ...]:  # type: ignore[override]
        values = []
        for part, is_async in zip(self.parts, self._async, strict=True):
            value = part(request)
            values.append(await value if is_async else value)
        return tuple(values)


# The ints whose decimal str is at most _KEY_MAX characters (a longer one is too long a key)
_INT_KEY_LOW, _INT_KEY_HIGH = -(10 ** (_KEY_MAX - 1)), 10**_KEY_MAX


def shared_key(key: Hashable) -> str | int:
    """``key`` as a shared store (Redis) keys it: a str or int as it is (an enum member of
    either, its value: one key with it, as in memory), anything else (a composed tuple) its
    ``repr()``; one the store would refuse (longer than 128 bytes in UTF-8, an int's
    decimal text too, empty or blank, not valid Unicode) its SHA-256 digest. Keys come
    from the request (a path, a header, a user's name): a client's odd one was the store's
    ``ValueError``, a 500 where a limiter in memory limited it."""
    if key.__class__ is not str:
        if key.__class__ is int or (isinstance(key, int) and not isinstance(key, bool)):
            if _INT_KEY_LOW < key < _INT_KEY_HIGH:
                return int(key)
            # A client's 600-digit number (int(header)) is as long a key as its str: the
            # digest of that str, as the str would be (42 and "42" are one key on Redis).
            try:
                return _digest(int.__repr__(key).encode())
            except ValueError:  # past Python's digit limit for a decimal str
                return _digest(hex(key).encode())
        key = str.__str__(key) if isinstance(key, str) else repr(key)
    try:
        data = key.encode()
    except UnicodeEncodeError:  # a lone surrogate
        data = key.encode("utf-8", "surrogatepass")
    else:
        if len(data) <= _KEY_MAX and not key.isspace() and key:
            return key
    return _digest(data)


def compose(*keys: KeyFunc) -> KeyFunc:
    """One key made of several: the tuple of their values (async if any part is)."""
    if len(keys) < 2:
        raise TypeError(f"compose() needs at least two keys, got {len(keys)}")
    for i, key in enumerate(keys):
        if not callable(key):
            raise TypeError(f"compose(): key {i} must be a callable, got {key!r}")
    if any(_is_async(k) for k in keys):
        return _AsyncComposite(keys)
    return _Composite(keys)


# -- headers ----------------------------------------------------------------------------------


def _sf_string(text: str) -> bytes:
    """``text`` as a structured-field String (RFC 9651 §3.3.3): printable ASCII only, with
    ``"`` and ``\\`` escaped."""
    if not all(" " <= c <= "~" for c in text):
        raise ValueError(
            f"a rate-limit policy name must be printable ASCII for the RateLimit headers, "
            f"got {text!r} (rename the limiter)"
        )
    return b'"' + text.replace("\\", "\\\\").replace('"', '\\"').encode("ascii") + b'"'


# int() of a float through a plain builtin call rather than a call of the int type: the same
# value, 500 instructions less (callgrind, 3.12), on every admitted request's RateLimit field.
_trunc = math.trunc


def _seconds_up(seconds: float) -> int:
    """Whole seconds, rounded up, forgiving the float noise of a computed window (6.000001 s
    from 10 x 0.6 s is 6)."""
    whole = int(seconds)
    return whole + 1 if seconds - whole > 1e-6 else max(0, whole)


class _PolicyBytes:
    """A limiter's header pieces, prepared once."""

    __slots__ = ("limit", "name", "policy_header", "policy_item", "r_prefix", "refusal_body")

    def __init__(self, limiter: RateLimiter[Any]) -> None:
        policy: RatePolicy | None = limiter.policy
        # The 429 body names the policy and nothing of the request: the same every time.
        self.refusal_body = _quota_exceeded([limiter.name if policy is None else policy.name])
        self.policy_header: tuple[bytes, bytes] | None = None
        if policy is None:  # an algorithm that does not describe itself: name only
            self.name = _sf_string(limiter.name)
            self.r_prefix = self.name + b";r="
            self.policy_item = b""
            self.limit = b""
            return
        self.name = _sf_string(policy.name)
        self.r_prefix = self.name + b";r="
        item = b"%s;q=%d;w=%d" % (self.name, policy.quota, max(1, _seconds_up(policy.window)))
        if policy.unit != "requests":
            item += b';qu="' + policy.unit.encode() + b'"'
        self.policy_item = item
        self.policy_header = (b"ratelimit-policy", item)
        self.limit = b"%d" % policy.quota


_LISTS = (b"ratelimit", b"ratelimit-policy")  # structured-field lists: merged by joining
_LEGACY = b"x-ratelimit-"
_LEGACY_REMAINING = b"x-ratelimit-remaining"
#: The names :func:`merge_fields` merges on: one of them in the headers, and it merges.
RATE_LIMIT_FIELDS = frozenset((*_LISTS, _LEGACY_REMAINING))


def merge_fields(headers: Iterable[tuple[bytes, bytes]], extra: RawHeaders) -> RawHeaders:
    """A response's raw headers (lower-case names, as ASGI servers and Starlette give them)
    with the rate-limit fields ``extra`` added: one field per name when an inner protection
    (a dependency, a decorator) set some already. ``RateLimit`` and ``RateLimit-Policy`` are
    structured-field lists, joined into one list; of two legacy trios the more restrictive
    one (fewer remaining) stays. Without fields already there, ``headers + extra``."""
    headers = list(headers)  # any iterable of pairs (ASGI allows one): read once
    for name, _ in headers:
        if name in RATE_LIMIT_FIELDS:
            break
    else:
        return headers + extra  # the common case: one protection
    theirs = dict(headers)
    ours = dict(extra)
    if _LEGACY_REMAINING in ours and _LEGACY_REMAINING in theirs:
        theirs_left = theirs[_LEGACY_REMAINING]
        # (Not a number, the app's own field: it stays, ours is dropped; never an error.)
        if theirs_left.isdigit() and int(ours[_LEGACY_REMAINING]) < int(theirs_left):
            headers = [(n, v) for n, v in headers if not n.startswith(_LEGACY)]  # ours is tighter
        else:
            extra = [(n, v) for n, v in extra if not n.startswith(_LEGACY)]
    for name, value in extra:
        if name in _LISTS and name in theirs:
            at = next(i for i, (n, _) in enumerate(headers) if n == name)
            headers[at] = (name, headers[at][1] + b", " + value)
        else:
            headers.append((name, value))
    return headers


def retry_after_header(seconds: float | None) -> tuple[bytes, bytes] | None:
    """``(b"retry-after", b"<int>")``, the wait rounded up, or ``None`` when the wait is
    unknown (``None``), infinite, NaN or negative (then send no Retry-After)."""
    if seconds is None or not 0.0 <= seconds < math.inf:
        return None
    return (b"retry-after", b"%d" % math.ceil(seconds))


class HeaderRenderer:
    """Rate-limit headers in one of the styles (see the module docstring)."""

    __slots__ = ("_cache", "_ietf", "_legacy", "style")

    def __init__(self, style: str = "ietf") -> None:
        if style not in HEADER_STYLES:
            raise ValueError(
                f"headers must be one of {', '.join(map(repr, HEADER_STYLES))}, got {style!r}"
            )
        self.style = style
        self._ietf = style in ("ietf", "both")
        self._legacy = style in ("legacy", "both")
        # Keyed on the limiter object: its policy never changes, so its bytes never do.
        self._cache: dict[RateLimiter[Any], _PolicyBytes] = {}

    def prepare(self, limiter: RateLimiter[Any]) -> _PolicyBytes:
        """The limiter's header pieces (built on first use, then cached)."""
        pb = self._cache.get(limiter)
        if pb is None:
            pb = self._cache[limiter] = _PolicyBytes(limiter)
        return pb

    def render(self, decisions: Sequence[tuple[RateLimiter[Any], Decision]]) -> RawHeaders:
        """The rate-limit headers for these decisions (``[]`` for none or style ``none``)."""
        if not decisions:
            return []
        out: RawHeaders = []
        if self._ietf:
            if len(decisions) == 1:  # the common case, without the joins
                limiter, d = decisions[0]
                pb = self._cache.get(limiter) or self.prepare(limiter)
                if pb.policy_header is not None:
                    out.append(pb.policy_header)
                x = d.reset_after  # whole seconds, up (as _seconds_up, inlined: hot path)
                t = _trunc(x)
                if x - t > 1e-6:
                    t += 1
                out.append((b"ratelimit", b"%s%d;t=%d" % (pb.r_prefix, d.remaining, t)))
            else:
                pbs = [self.prepare(limiter) for limiter, _ in decisions]
                items = [pb.policy_item for pb in pbs if pb.policy_item]
                if items:
                    out.append((b"ratelimit-policy", b", ".join(items)))
                out.append(
                    (
                        b"ratelimit",
                        b", ".join(
                            b"%s%d;t=%d" % (pb.r_prefix, d.remaining, _seconds_up(d.reset_after))
                            for pb, (_, d) in zip(pbs, decisions, strict=True)
                        ),
                    )
                )
        if self._legacy:
            # One trio can describe one limit: the most restrictive (fewest remaining, then
            # the longest until reset).
            if len(decisions) == 1:
                d = decisions[0][1]
            else:
                d = min(decisions, key=lambda ld: (ld[1].remaining, -ld[1].reset_after))[1]
            out.append((b"x-ratelimit-limit", b"%d" % d.limit))
            out.append((b"x-ratelimit-remaining", b"%d" % d.remaining))
            out.append((b"x-ratelimit-reset", b"%d" % _seconds_up(d.reset_after)))
        return out


# -- errors -----------------------------------------------------------------------------------

PROBLEM_TYPES = "https://iana.org/assignments/http-problem-types"
QUOTA_EXCEEDED = f"{PROBLEM_TYPES}#quota-exceeded"
TEMPORARY_REDUCED_CAPACITY = f"{PROBLEM_TYPES}#temporary-reduced-capacity"
_PROBLEM_JSON = (b"content-type", b"application/problem+json")

ResponseFactory = Callable[[BaseException], HttpResponse]


def problem(status: int, title: str, *, type: str = "about:blank", **members: Any) -> HttpResponse:
    """An RFC 9457 ``application/problem+json`` response (no Retry-After: callers add it)."""
    body = {"type": type, "title": title, "status": status, **members}
    return HttpResponse(status, [_PROBLEM_JSON], json.dumps(body, separators=(",", ":")).encode())


def _with_retry_after(response: HttpResponse, retry_after: float | None) -> HttpResponse:
    header = retry_after_header(retry_after)
    if header is not None:
        response.headers.append(header)
    return response


def _quota_exceeded(policies: list[str]) -> bytes:
    """The body of a 429: the draft's ``quota-exceeded`` problem naming the policies."""
    return problem(
        429,
        "Request cannot be satisfied as assigned quota has been exceeded",
        type=QUOTA_EXCEEDED,
        **{"violated-policies": policies},
    ).body


def _rate_limited(exc: BaseException) -> HttpResponse:
    limiter = getattr(exc, "limiter", None)
    policies = [limiter] if isinstance(limiter, str) else []
    response = HttpResponse(429, [_PROBLEM_JSON], _quota_exceeded(policies))
    return _with_retry_after(response, getattr(exc, "retry_after", None))


def _reduced_capacity(exc: BaseException) -> HttpResponse:
    # The detail names the kind of refusal, never the guard's message (it can carry keys).
    return _with_retry_after(
        problem(
            503,
            "Temporary reduced capacity",
            type=TEMPORARY_REDUCED_CAPACITY,
            detail=type(exc).__name__,
        ),
        getattr(exc, "retry_after", None),
    )


def _timed_out(exc: BaseException) -> HttpResponse:
    return problem(504, "Gateway Timeout", detail="a downstream call timed out")


def _status_factory(status: int) -> ResponseFactory:
    titles = {429: "Too Many Requests", 503: "Service Unavailable", 504: "Gateway Timeout"}

    def respond(exc: BaseException) -> HttpResponse:
        response = problem(status, titles.get(status, "Error"))
        if status in (413, 429, 503):
            _with_retry_after(response, getattr(exc, "retry_after", None))
        return response

    return respond


_DEFAULTS: dict[type[BaseException], ResponseFactory] = {
    RateLimited: _rate_limited,
    Rejected: _reduced_capacity,  # breaker open, bulkhead full, shed, throttled, limited
    TimeoutExceeded: _timed_out,
}


class ErrorMapper:
    """The one mapping of the error tree to responses (see the module docstring)."""

    __slots__ = ("_by_type", "_table", "rate_limited")

    def __init__(
        self, overrides: Mapping[type[BaseException], int | ResponseFactory] | None = None
    ) -> None:
        table = dict(_DEFAULTS)
        if overrides is not None and not isinstance(overrides, Mapping):
            raise TypeError(
                "errors must be a mapping {exception type: status or (exc) -> HttpResponse} "
                f"or None, got {overrides!r}"
            )
        for exc_type, target in (overrides or {}).items():
            if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
                raise TypeError(f"errors: keys must be exception types, got {exc_type!r}")
            if isinstance(target, int) and not isinstance(target, bool):
                if not 400 <= target <= 599:
                    raise ValueError(
                        f"errors[{exc_type.__name__}]: a status must be 400..599, got {target}"
                    )
                table[exc_type] = _status_factory(target)
            elif callable(target) and not _is_async(target):
                table[exc_type] = target
            else:
                raise TypeError(
                    f"errors[{exc_type.__name__}] must be a status int or a plain (sync) "
                    f"callable (exc) -> HttpResponse, got {target!r}"
                )
        self._table = table
        self._by_type: dict[type[BaseException], ResponseFactory | None] = {}
        # The override of RateLimited, if any: a limiter's refusal decided by the adapters
        # (no exception raised, the 429 built from the decision) goes through it too.
        found = self.factory(RateLimited)
        self.rate_limited: ResponseFactory | None = None if found is _rate_limited else found

    def factory(self, exc_type: type[BaseException]) -> ResponseFactory | None:
        """The factory for ``exc_type``: its most specific class in the table, or ``None``."""
        try:
            return self._by_type[exc_type]
        except KeyError:
            found = next((self._table[c] for c in exc_type.__mro__ if c in self._table), None)
            self._by_type[exc_type] = found
            return found

    @property
    def types(self) -> tuple[type[BaseException], ...]:
        """The exception types with an entry (the defaults and the overrides): what a
        framework's exception handlers are registered for."""
        return tuple(self._table)

    def handles(self, exc: BaseException) -> bool:
        return self.factory(type(exc)) is not None

    def __call__(self, exc: BaseException) -> HttpResponse | None:
        factory = self.factory(type(exc))
        return None if factory is None else factory(exc)


# -- rules ------------------------------------------------------------------------------------

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_]+))?\}")


# Starlette's convertors' regexes (starlette/convertors.py): {id:int} matches digits only.
_CONVERTERS = {
    "str": "[^/]+",
    "path": ".*",
    "int": "[0-9]+",
    "float": r"[0-9]+(?:\.[0-9]+)?",
    # Upper case and hyphen-less forms too, as Starlette's own.
    "uuid": "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}",
}


def _compile_template(where: str, template: object) -> re.Pattern[str] | str:
    """A path template as a regex, or as the str itself when it has no parameter."""
    if not isinstance(template, str) or not template.startswith("/"):
        raise ValueError(
            f"{where}: a path template must be a str starting with '/', got {template!r}"
        )
    if "{" not in template and "}" not in template:
        return template
    # A brace outside a well-formed {name} or {name:converter} is a typo, not a pattern.
    literal = _PARAM.sub("", template)
    if "{" in literal or "}" in literal:
        raise ValueError(f"{where}: malformed parameter in {template!r} (use {{name}})")
    pattern, end = [], 0
    for match in _PARAM.finditer(template):
        pattern.append(re.escape(template[end : match.start()]))
        name = match.group(2) or "str"
        converter = _CONVERTERS.get(name)
        if converter is not None:
            pattern.append(converter)
        else:
            raise ValueError(
                f"{where}: unknown converter {name!r} in {template!r} "
                "(use {name}, {name:path}, or str/int/float/uuid)"
            )
        end = match.end()
    pattern.append(re.escape(template[end:]))
    return re.compile("".join(pattern))


def _sequence(where: str, value: object) -> tuple[Any, ...]:
    """``value``'s items as a tuple, or a TypeError naming ``where`` and the value (not
    Python's "'float' object is not iterable", which names neither)."""
    if isinstance(value, Iterable):
        return tuple(value)
    raise TypeError(f"{where} must be a sequence, got {value!r}")


class _PathSet:
    """Templates compiled once: literal paths in a set, patterns as one alternation."""

    __slots__ = ("_literals", "_pattern", "templates")

    def __init__(self, where: str, templates: str | Iterable[str]) -> None:
        if isinstance(templates, str):
            templates = (templates,)
        self.templates = _sequence(where, templates)
        literals, patterns = set(), []
        for i, template in enumerate(self.templates):
            compiled = _compile_template(f"{where}[{i}]", template)
            if isinstance(compiled, str):
                literals.add(compiled)
            else:
                patterns.append(compiled.pattern)
                literals.add(template)  # the route template itself matches too
        self._literals = frozenset(literals)
        self._pattern = re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None

    def __bool__(self) -> bool:
        return bool(self.templates)

    def matches(self, path: str, route: str | None) -> bool:
        if path in self._literals or (route is not None and route in self._literals):
            return True
        pattern = self._pattern
        return pattern is not None and pattern.fullmatch(path) is not None


def _methods(where: str, methods: str | Iterable[str] | None) -> frozenset[str] | None:
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = (methods,)
    result = set()
    for method in _sequence(where, methods):
        if not isinstance(method, str) or not method.isalpha():
            raise ValueError(f"{where}: {method!r} is not an HTTP method name")
        result.add(method.upper())
    return frozenset(result)


def _priority(where: str, value: object) -> Priority:
    if isinstance(value, Priority):
        return value
    if isinstance(value, str) and value.upper() in Priority.__members__:
        return Priority[value.upper()]
    names = ", ".join(repr(p.name.lower()) for p in Priority)
    raise ValueError(f"{where}: no priority {value!r}; the priorities are {names}")


class Rule:
    """Which limiters and guards protect which requests (see the module docstring)."""

    __slots__ = (
        "_cost_fn",
        "_exclude",
        "_exclude_methods",
        "_key_async",
        "_methods",
        "_paths",
        "_priority_header",
        "cost",
        "guards",
        "key",
        "limiters",
        "priority",
    )

    def __init__(
        self,
        limiters: RateLimiter[Any] | Sequence[RateLimiter[Any]] = (),
        *,
        paths: str | Iterable[str] = "/{path:path}",
        methods: str | Iterable[str] | None = None,
        exclude_paths: str | Iterable[str] = (),
        exclude_methods: str | Iterable[str] = (),
        key: KeyFunc | None = None,
        cost: int | Callable[[RequestInfo], int] = 1,
        priority: Priority | str | None = None,
        priority_header: str | None = None,
        guards: Sequence[object] = (),
    ) -> None:
        if isinstance(limiters, RateLimiter):
            limiters = (limiters,)
        self.limiters: tuple[RateLimiter[Any], ...] = _sequence("Rule limiters", limiters)
        for i, limiter in enumerate(self.limiters):
            if not isinstance(limiter, RateLimiter):
                raise TypeError(f"Rule limiters[{i}] must be a RateLimiter, got {limiter!r}")
        self.guards = _sequence("Rule guards", guards)
        if not self.limiters and not self.guards:
            raise ValueError("Rule: give limiters or guards, or it protects nothing")
        self._paths = _PathSet("Rule paths", paths)
        if not self._paths:
            raise ValueError("Rule paths is empty: the rule would match no request")
        self._methods = _methods("Rule methods", methods)
        if self._methods is not None and not self._methods:
            raise ValueError("Rule methods is empty: the rule would match no request")
        self._exclude = _PathSet("Rule exclude_paths", exclude_paths)
        self._exclude_methods = _methods("Rule exclude_methods", exclude_methods) or frozenset()
        if self._methods is not None and self._methods <= self._exclude_methods:
            raise ValueError(
                f"Rule methods {sorted(self._methods)} are all in exclude_methods: "
                "the rule would match no request"
            )
        # Starlette's Route and aiohttp's add_get answer HEAD with the GET handler: a rule
        # naming GET covers HEAD too, or the same handler would run unlimited through HEAD.
        if self._methods is not None and "GET" in self._methods:
            self._methods = self._methods | {"HEAD"}
        self.key: KeyFunc = client_address() if key is None else key
        if not callable(self.key):
            raise TypeError(f"Rule key must be a callable (RequestInfo) -> key, got {key!r}")
        self._key_async = _is_async(self.key)
        if callable(cost):
            if _is_async(cost):  # its coroutine, never awaited, would be every request's cost
                raise TypeError(
                    f"Rule cost must be an int or a plain (sync) function, got a coroutine "
                    f"function {cost!r}"
                )
            self._cost_fn: Callable[[RequestInfo], int] | None = cost
            self.cost = 1
        elif cost.__class__ is int and cost >= 1:
            self._cost_fn = None
            self.cost = cost
            for i, limiter in enumerate(self.limiters):
                if cost > limiter.max_cost:
                    raise ValueError(
                        f"Rule cost={cost} can never be admitted by limiters[{i}] "
                        f"{limiter.name!r}: the most it admits at once is {limiter.max_cost}"
                    )
        else:
            raise ValueError(f"Rule cost must be an int >= 1 or a callable, got {cost!r}")
        self.priority = None if priority is None else _priority("Rule priority", priority)
        if priority_header is not None and (
            not isinstance(priority_header, str) or not priority_header.strip()
        ):
            raise ValueError(f"Rule priority_header must be a header name, got {priority_header!r}")
        self._priority_header = (
            None if priority_header is None else priority_header.lower().encode("latin-1")
        )

    def matches(self, method: str, path: str, route: str | None = None) -> bool:
        if self._methods is not None and method not in self._methods:
            return False
        if method in self._exclude_methods:
            return False
        if self._exclude and self._exclude.matches(path, route):
            return False
        return self._paths.matches(path, route)

    async def key_of(self, request: RequestInfo) -> Hashable:
        value = self.key(request)
        return await value if self._key_async else value  # type: ignore[no-any-return]

    def cost_of(self, request: RequestInfo) -> int:
        """The request's cost: the fixed one, or the cost function's answer (checked: an
        int >= 1, else a TypeError/ValueError naming the rule's cost function)."""
        if self._cost_fn is None:
            return self.cost
        cost = self._cost_fn(request)
        if not isinstance(cost, int) or isinstance(cost, bool):
            raise TypeError(
                f"Rule cost function {self._cost_fn!r} must return an int, got {cost!r}"
            )
        if cost < 1:
            raise ValueError(f"Rule cost function {self._cost_fn!r} must return >= 1, got {cost!r}")
        return cost

    def too_costly(self, cost: int) -> RateLimiter[Any] | None:
        """The first of the rule's limiters that can never admit ``cost`` (a cost function's
        answer above its ``max_cost``), or None."""
        for limiter in self.limiters:
            if cost > limiter.max_cost:
                return limiter
        return None

    def priority_of(self, request: RequestInfo) -> Priority | None:
        if self._priority_header is not None:
            value = request.header(self._priority_header)
            if value is not None:
                name = value.decode("latin-1").strip().upper()
                if name in Priority.__members__:
                    return Priority[name]
        return self.priority

    def __repr__(self) -> str:
        names = [limiter.name for limiter in self.limiters]
        return f"<Rule {names} paths={list(self._paths.templates)} methods={self._methods}>"


class Admission(NamedTuple):
    """The outcome of :meth:`Protection.admit` (see the module docstring)."""

    response: HttpResponse | None
    headers: RawHeaders
    guards: tuple[object, ...]
    priority: Priority | None


_NOTHING: tuple[Rule, ...] = ()


class Protection:
    """Rules compiled for one app (see the module docstring)."""

    __slots__ = (
        "_exempt",
        "_exempt_methods",
        "_planned",
        "_plans_by_rules",
        "_routed",
        "errors",
        "plans",
        "renderer",
        "rules",
    )

    def __init__(
        self,
        rules: Rule | Sequence[Rule],
        *,
        headers: str = "ietf",
        exempt_paths: str | Iterable[str] = (),
        exempt_methods: str | Iterable[str] = (),
        errors: ErrorMapper | Mapping[type[BaseException], int | ResponseFactory] | None = None,
    ) -> None:
        self.rules: tuple[Rule, ...] = (
            (rules,) if isinstance(rules, Rule) else _sequence("rules", rules)
        )
        for i, rule in enumerate(self.rules):
            if not isinstance(rule, Rule):
                raise TypeError(f"rules[{i}] must be a Rule, got {rule!r}")
        self.renderer = HeaderRenderer(headers)
        names: dict[bytes, RateLimiter[Any]] = {}
        for rule in self.rules:  # every policy's bytes now, not on the first request
            for limiter in rule.limiters:
                name = self.renderer.prepare(limiter).name
                other = names.setdefault(name, limiter)
                if other is not limiter and headers in ("ietf", "both"):
                    # Two items of one RateLimit field with one name cannot be told apart.
                    raise ValueError(
                        f"two limiters are both named {limiter.name!r}: give each a distinct "
                        "name= (it is the policy name in the RateLimit headers)"
                    )
        self._exempt = _PathSet("exempt_paths", exempt_paths)
        self._exempt_methods = _methods("exempt_methods", exempt_methods) or frozenset()
        for i, rule in enumerate(self.rules):
            methods = rule._methods
            if methods is not None and methods <= self._exempt_methods:
                raise ValueError(
                    f"rules[{i}] methods {sorted(methods)} are all in exempt_methods: the "
                    "rule would match no request (take them out of exempt_methods)"
                )
            # A rule whose every path is a literal one exempt (paths="/health") would never
            # run: say so. (A template is not judged: "/a/{p:path}" reaches past "/a/{q}".)
            templates = rule._paths.templates
            if all("{" not in t and self._exempt.matches(t, None) for t in templates):
                raise ValueError(
                    f"rules[{i}] paths {list(rule._paths.templates)} are all in exempt_paths: "
                    "the rule would match no request (take them out of exempt_paths)"
                )
        self.errors = errors if isinstance(errors, ErrorMapper) else ErrorMapper(errors)
        # What plan() found: method -> path -> its Plan, or None to pass the request through
        # (``plans``, public: the ASGI middleware reads a hit inline); with a route, method ->
        # route -> path -> ... (``_routed``). Dicts of strings, not one dict keyed by
        # (method, path, route): building and hashing that tuple was most of a lookup.
        # Bounded by the count of entries.
        # (Cleared in place, never replaced: an adapter may hold this dict.)
        self.plans: dict[str, dict[str, Plan | None]] = {}
        self._routed: dict[str, dict[str, dict[str, Plan | None]]] = {}
        self._planned = 0
        self._plans_by_rules: dict[tuple[Rule, ...], Plan] = {}  # one Plan per set of rules

    def plan(self, method: str, path: str, route: str | None = None) -> Plan | None:
        """The :class:`Plan` of this request's rules, or ``None`` to pass it through (exempt,
        or no rule selects it). Cached per ``(method, path, route)``, bounded."""
        if route is None:
            paths = self.plans.get(method)
        else:
            routes = self._routed.get(method)
            paths = None if routes is None else routes.get(route)
        if paths is not None:
            plan = paths.get(path, UNPLANNED)
            if plan is not UNPLANNED:
                return plan  # type: ignore[no-any-return]
        return self._compile(method, path, route)

    def _compile(self, method: str, path: str, route: str | None) -> Plan | None:
        if method in self._exempt_methods or (self._exempt and self._exempt.matches(path, route)):
            rules = _NOTHING
        else:
            rules = tuple(r for r in self.rules if r.matches(method, path, route))
        plan = None
        if rules:
            plan = self._plans_by_rules.get(rules)
            if plan is None:  # bounded by the rules' subsets that paths actually select
                plan = self._plans_by_rules[rules] = Plan(self, rules)
        if self._planned >= _CACHE_MAX:  # raw paths are unbounded: keep it bounded
            self.plans.clear()
            self._routed.clear()
            self._planned = 0
        self._planned += 1
        if route is None:
            self.plans.setdefault(method, {})[path] = plan
        else:
            self._routed.setdefault(method, {}).setdefault(route, {})[path] = plan
        return plan

    def select(self, method: str, path: str, route: str | None = None) -> tuple[Rule, ...]:
        """The rules guarding this request, in order; ``()`` to pass it through."""
        plan = self.plan(method, path, route)
        return _NOTHING if plan is None else plan.rules

    async def admit(self, request: RequestInfo, rules: Sequence[Rule]) -> Admission:
        """Decide the limiters of ``rules`` for ``request`` (see the module docstring)."""
        decisions: list[tuple[RateLimiter[Any], Decision]] = []
        charged: list[tuple[Hashable, int]] = []  # the key and cost of each of decisions
        guards: tuple[object, ...] = ()
        priority = None
        try:
            for rule in rules:
                if rule.limiters:
                    key = rule.key(request)
                    if rule._key_async:
                        key = await key
                    cost = rule.cost
                    if rule._cost_fn is not None:
                        cost = rule.cost_of(request)
                        # Before any of the rule's limiters decides: none is charged for nothing.
                        too_costly = rule.too_costly(cost)
                        if too_costly is not None:
                            decisions = self._refunded(charged, decisions)
                            response = self._too_costly(too_costly, decisions, key, cost)
                            return Admission(response, [], (), None)
                    for limiter in rule.limiters:
                        if limiter.shared:
                            key = shared_key(key)
                            decision = await limiter.decide(cost, key=key)
                        else:
                            decision = limiter.check(cost, key=key)
                        if not decision.allowed:
                            decisions = self._refunded(charged, decisions)
                            decisions.append((limiter, decision))
                            response = self._refusal(limiter, decision, decisions, key, cost)
                            return Admission(response, [], (), None)
                        decisions.append((limiter, decision))
                        charged.append((key, cost))
                if rule.guards:
                    guards += rule.guards
                if priority is None:
                    priority = rule.priority_of(request)
        except BaseException:
            # The request goes no further (cancelled while a key or a shared store decides:
            # the client went away; or a key raised): those that admitted it give it back, as
            # for a refusal. (A refusal's refund emptied ``charged``: none is given back twice.)
            self._refunded(charged, decisions[: len(charged)])
            raise
        return Admission(None, self.renderer.render(decisions), guards, priority)

    @staticmethod
    def _refunded(
        charged: list[tuple[Hashable, int]],
        decisions: Sequence[tuple[RateLimiter[Any], Decision]],
    ) -> list[tuple[RateLimiter[Any], Decision]]:
        """A refused request is recorded by no limiter (algorithms.md: never record rejected
        requests): those it passed before the refusal give it back. Their fields then state
        each as it stands after the refund. ``charged`` is emptied: each refunded once; a
        refund that raises does not stop the others (the first error is raised after)."""
        owed = list(charged)
        charged.clear()  # first: a refund that raises must not have the others given twice
        given_back = []
        error: Exception | None = None
        for (limiter, decision), (key, cost) in zip(decisions, owed, strict=True):
            try:
                given_back.append((limiter, limiter.refund(decision, cost, key=key)))
            except Exception as exc:  # (a store's error) the others still give theirs back
                if error is None:
                    error = exc
        if error is not None:
            raise error
        return given_back

    def _too_costly(
        self,
        limiter: RateLimiter[Any],
        decisions: Sequence[tuple[RateLimiter[Any], Decision]],
        key: Hashable,
        cost: int,
    ) -> HttpResponse:
        """The 429 of a request whose cost exceeds what ``limiter`` admits at once: waiting
        never helps (no Retry-After), and nothing was decided for it (no field of its own)."""
        if self.errors.rate_limited is not None:
            return self._overridden(limiter, math.inf, decisions, key, cost)
        body = self.renderer.prepare(limiter).refusal_body
        return HttpResponse(429, [_PROBLEM_JSON, *self.renderer.render(decisions)], body)

    def _refusal(
        self,
        limiter: RateLimiter[Any],
        decision: Decision,
        decisions: Sequence[tuple[RateLimiter[Any], Decision]],
        key: Hashable,
        cost: int,
    ) -> HttpResponse:
        if self.errors.rate_limited is not None:
            return self._overridden(limiter, decision.retry_after, decisions, key, cost)
        body = self.renderer.prepare(limiter).refusal_body
        response = HttpResponse(429, [_PROBLEM_JSON, *self.renderer.render(decisions)], body)
        return _with_retry_after(response, decision.retry_after)

    def _overridden(
        self,
        limiter: RateLimiter[Any],
        retry_after: float,
        decisions: Sequence[tuple[RateLimiter[Any], Decision]],
        key: Hashable,
        cost: int,
    ) -> HttpResponse:
        """A refusal answered by the ``errors`` override of :class:`RateLimited`: it gets the
        :class:`RateLimited` a waiting ``acquire`` would have raised (``retry_after`` inf when
        no wait admits the cost), and the response keeps the rate-limit fields."""
        factory = self.errors.rate_limited
        assert factory is not None  # (the callers checked)
        exc = rate_limited(limiter.name, key, cost, retry_after)
        status, headers, body = factory(exc)
        return HttpResponse(status, [*headers, *self.renderer.render(decisions)], body)

    def error_response(self, exc: BaseException) -> HttpResponse | None:
        """The response for an error raised by a guard or handler (``None``: not ours)."""
        return self.errors(exc)


class Plan:
    """One set of selected rules compiled for the per-request fast path (built once per set,
    by :meth:`Protection.plan`).

    ``rules`` the rules; ``sync`` whether every key is sync and every limiter decides in this
    process, so that :meth:`now` can decide without awaiting (else ``await
    protection.admit(info, plan.rules)``); ``guards`` the rules' guards, in order;
    :meth:`priority_of` the request's priority (:class:`Admission`'s, the same rules).

    Why: the general :meth:`Protection.admit` is a coroutine that walks the rules, builds a
    list of ``(limiter, decision)`` pairs and an :class:`Admission` per request, and renders
    headers through the general renderer; on the common case (one rule keyed on the client,
    one limiter in process) those were most of the adapter's cost. Everything that does not
    change between requests (the checks to call, the header bytes, the guards, whether the
    priority is read from a header) is fixed here once.
    """

    __slots__ = (
        "_peer_key",
        "_priority_static",
        "_protection",
        "_single",
        "_steps",
        "by_peer",
        "guards",
        "priority",
        "rules",
        "sync",
    )

    def __init__(self, protection: Protection, rules: tuple[Rule, ...]) -> None:
        self._protection = protection
        self.rules = rules
        guards: tuple[object, ...] = ()
        for rule in rules:
            guards += rule.guards
        self.guards = guards
        # The first rule's priority that is set, unless a header is read before it.
        self._priority_static = True
        self.priority: Priority | None = None
        for rule in rules:
            if rule._priority_header is not None:
                self._priority_static = False
                break
            if rule.priority is not None:
                self.priority = rule.priority
                break
        # ``limiter.shared`` is fixed at construction: asked once here, not per request.
        self.sync = all(
            not rule._key_async and not any(limiter.shared for limiter in rule.limiters)
            for rule in rules
        )
        # Per rule with limiters: (rule, key, fixed cost, (limiter, its check) pairs).
        self._steps = tuple(
            (rule, rule.key, rule.cost, tuple((lim, lim.check) for lim in rule.limiters))
            for rule in rules
            if rule.limiters
        )
        renderer = protection.renderer
        # One rule, one limiter, no cost function, IETF headers only: the bench's and most
        # apps' case, rendered here without the renderer's lists and joins.
        self._single: tuple[Any, ...] | None = None
        if (
            len(self._steps) == 1
            and len(self._steps[0][3]) == 1
            and self._steps[0][0]._cost_fn is None
            and renderer.style in ("ietf", "none")
        ):
            _, _, cost, ((limiter, check),) = self._steps[0]
            pb = renderer.prepare(limiter)
            self._single = (
                cost,
                limiter,
                check,
                renderer.style == "ietf",
                pb.policy_header,
                pb.r_prefix,
            )
        # The default key (the client address, no trusted proxy) and a fixed priority: the
        # adapters decide from the peer alone (:meth:`now_peer`), with no RequestInfo.
        peer_key = self._steps[0][1] if self._single is not None else None
        self._peer_key: ClientAddress | None = (
            # Exactly the class: a subclass may key otherwise.
            peer_key if type(peer_key) is ClientAddress and peer_key.peer_only else None
        )
        self.by_peer = self.sync and self._priority_static and self._peer_key is not None

    def priority_of(self, request: RequestInfo) -> Priority | None:
        """The request's priority: the first of the rules' that is set (a header read first
        where a rule configures one)."""
        if self._priority_static:
            return self.priority
        for rule in self.rules:
            priority = rule.priority_of(request)
            if priority is not None:
                return priority
        return None

    def now(self, request: RequestInfo) -> RawHeaders | HttpResponse:
        """Decide at once (``sync`` plans only): the rate-limit headers to add to the
        response (a list) when admitted, else the refusal (an :class:`HttpResponse`). The
        same decisions, in the same order, as :meth:`Protection.admit`."""
        single = self._single
        if single is not None:
            return self._decide_single(self._steps[0][1](request))
        decisions: list[tuple[RateLimiter[Any], Decision]] = []
        charged: list[tuple[Hashable, int]] = []  # as in Protection.admit
        protection = self._protection
        try:
            for rule, key_fn, cost, checks in self._steps:
                key = key_fn(request)
                if rule._cost_fn is not None:
                    cost = rule.cost_of(request)
                    too_costly = rule.too_costly(cost)  # before any of the rule's limiters decides
                    if too_costly is not None:
                        decisions = protection._refunded(charged, decisions)
                        return protection._too_costly(too_costly, decisions, key, cost)
                for limiter, check in checks:
                    decision = check(cost, key=key)
                    if not decision.allowed:
                        decisions = protection._refunded(charged, decisions)
                        decisions.append((limiter, decision))
                        return protection._refusal(limiter, decision, decisions, key, cost)
                    decisions.append((limiter, decision))
                    charged.append((key, cost))
        except BaseException:  # a key or cost function raised: as in Protection.admit
            protection._refunded(charged, decisions[: len(charged)])
            raise
        return protection.renderer.render(decisions)

    def now_peer(self, client: tuple[str, int] | Sequence[Any] | None) -> RawHeaders | HttpResponse:
        """:meth:`now` for a :attr:`by_peer` plan, from ``RequestInfo.client`` alone."""
        if client and ":" not in client[0]:
            return self._decide_single(client[0])  # an IPv4 peer is its own key
        return self._decide_single(self._peer_key.of_peer(client))  # type: ignore[union-attr]

    def _decide_single(self, key: Hashable) -> RawHeaders | HttpResponse:
        cost, limiter, check, ietf, policy_header, r_prefix = self._single  # type: ignore[misc]
        decision = check(cost, key=key)
        if not decision.allowed:
            return self._protection._refusal(limiter, decision, ((limiter, decision),), key, cost)
        if not ietf:
            return []
        x = decision.reset_after  # whole seconds, up (as _seconds_up, inlined: hot path)
        t = _trunc(x)
        if x - t > 1e-6:
            t += 1
        field = (b"ratelimit", b"%s%d;t=%d" % (r_prefix, decision.remaining, t))
        return [field] if policy_header is None else [policy_header, field]
