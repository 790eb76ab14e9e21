"""The framework-neutral HTTP client core: one resilience policy per origin (issue 14).

No HTTP library is imported here: ``integrations.httpx`` (and later the aiohttp client
middleware) describe a request as a :class:`ClientRequest`, hand :meth:`ClientPolicy.execute`
a coroutine function that sends it once, and a :class:`ResponseIO` that reads their response
type and sorts their exceptions. Everything HTTP-specific that does not depend on the library
lives here once.

**Per origin** ``(scheme, host, port)``: a :class:`HostPolicy` is made on a host's first
request and kept in an LRU map of at most ``max_hosts`` (a client that wanders over many hosts
keeps bounded memory; an evicted host starts afresh). The host evicted is the least recently
used one that is idle (no call in its bulkhead, a closed breaker, its limiter's capacity
back, no pause): busy ones stay, the map going over ``max_hosts`` for as long as they are,
up to twice it (then the least recently used goes whatever its state). Each component is
optional and given as options (a mapping: one instance per host, built from them) or as a
primitive (that one instance serves every host the configuration covers; a shared
``RateLimiter`` is keyed by host, so it still limits each host apart):

``retry``      a mapping of :class:`~aioresilience.Retry` options (default ``{}``: 3 attempts,
               exponential backoff with full jitter, ``Retry-After`` honoured up to
               ``max_retry_after``, 60 s), a ``Retry``, or ``None``. Of a ``Retry`` these are
               used: attempts, backoff, max_elapsed, deadline, max_retry_after, hooks,
               budget, ``retry_on`` (which exceptions may be retried at all); which responses
               are retried is ``retry_statuses``'s.
``budget``     a :class:`~aioresilience.RetryBudget` options mapping (``{"percent": ...,
               "min_retries": ...}`` Envoy's form, ``{"max_tokens": ..., "token_ratio": ...}``
               gRPC's; default ``{}``, gRPC's defaults), a ``RetryBudget`` (shared by the
               hosts it covers), or ``None``. A budget per host (the default) keeps one dead
               host from spending every other host's retries. A ``Retry`` given whole brings
               its own budget: giving ``budget`` too is an error.
``breaker``    :class:`~aioresilience.CircuitBreaker` options (default ``{}``: open after 5
               consecutive failures, for 30 s), a ``CircuitBreaker``, or ``None``. Failures:
               statuses in ``breaker_statuses`` (default 500-599), connection errors and
               timeouts; 429 and every other 4xx are answers, not failures. An open breaker
               answers at once with :class:`~aioresilience.CircuitBreakerOpenError` (its
               ``retry_after``), nothing is sent.
``limiter``    :class:`~aioresilience.TokenBucket` options, a ``RateLimiter`` (keyed by host),
               or ``None`` (default).
``bulkhead``   :class:`~aioresilience.Bulkhead` options, a ``Bulkhead``, or ``None`` (default).
``attempt_timeout``, ``timeout``   seconds per attempt and for the whole call, retries and
               their sleeps included (``None``: none); their expiry raises
               :class:`~aioresilience.TimeoutExceeded` (a ``TimeoutError``); an expired
               attempt counts as a failure of the host.
``pacing``     follow the server's rate-limit fields (default ``True``), see below;
               ``max_pause`` (default 60 s): a host paused longer than this answers at once
               with :class:`HostPaused` rather than hold the call, and a call held this
               long for the answer that would tell the quota is refused so too.
``hosts``      per-host overrides: ``{pattern: {option: value, ...}}``; patterns are
               ``fnmatch`` globs matched against ``"host"`` and ``"host:port"``
               (``"*.internal"``, ``"api.example.com:8443"``; an IDNA host in either
               form, ``"bücher.example"`` or ``"xn--bcher-kva.example"``); the first match
               wins and its options replace the defaults one by one.

Bad configuration fails at construction, naming the parameter (every mapping of options is
built once, for the defaults and for each override).

**Which requests are retried** (RFC 9110 §9.2.2): methods in ``retry_methods`` (default the
idempotent ones: GET HEAD OPTIONS TRACE PUT DELETE) on any retryable failure; other methods
(POST, PATCH) only with an ``Idempotency-Key`` header, with ``retry_non_idempotent=True`` (or
the request's own opt-in, ``ClientRequest.retry``), or when the failure provably came before
the request was sent (``"connect"`` failures: connection refused, DNS, pool timeout). A request
whose body cannot be replayed (a stream) is never retried. Retryable failures: statuses in
``retry_statuses`` (default 429 502 503 504), transport errors, attempt timeouts.
``Retry-After`` (delay-seconds or an HTTP-date) is the least wait before the next attempt; one above
``max_retry_after`` ends the retries (the server asks for more than the caller will wait) and
the response is returned. A response that will not be returned is closed before the next
attempt is sent; when the attempts run out the last response is returned.

**Server-guided pacing**: every response's ``RateLimit`` (IETF draft, a structured-field list
of ``"policy";r=R;t=T`` items), the older drafts' ``RateLimit-Remaining``/``-Reset`` and
``X-RateLimit-Remaining``/``-Reset`` tell the host's remaining quota and when it resets;
``Retry-After`` on 429 and 503 tells when to come back. The host keeps an estimate of its
remaining quota (the server's figure, less the requests still in flight, less each request
sent since): when it reaches 0, the host's requests are held instead of being refused.
They wait for the answer of the request that spent it (answers of requests sent before it
tell of an older state: a sliding window counter's ``t`` grows with what was used), which
states the quota left, or that it is spent and when it is back: the host then pauses until
then. ``t`` is whole seconds, rounded up, so each answer about one reset bounds it: the pause
ends at the earliest bound while the host gives its whole quota back at such a reset (a fixed
window does), and at its own answer's ``t`` once a short pause found less, or was refused.
When what an answer states is less than the requests still in flight, they wait for all of
those (a server need not decide requests in the order they were sent). After any
pause the first request goes alone and the others wait for its answer, which states what
the reset gave back (not always the whole quota: a sliding window gives it back unit by
unit); a request awaited that ends without an answer hands over to the next one, sent
alone. The estimate outlives its reset (quota only comes back with time: what was
left is left still); an answer of a request sent before one already heard can only lower
it; a spent estimate whose awaited answer states no quota (another path) stays spent, so
requests go one at a time until an answer states it again. Held requests go in arrival
order, the hold is the last wait before the send (a request that waited in the limiter or
the bulkhead is held too), and none is held longer than ``max_pause`` (per attempt). A
figure above 10^10 is malformed and ignored.
``X-RateLimit-Reset`` is read as epoch seconds when it is above 10^9
(GitHub's form) and as a delta otherwise.

**Events**: :class:`HttpAttempt` (DEBUG) per attempt, with host (``"host"`` or
``"host:port"``, never the URL: low cardinality), method, status, attempt number, duration
and outcome; :class:`HostPaused` refusals; the components' own events (their names carry the
host). ``policy.add_listener(callback)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import email.utils
import fnmatch
import itertools
import math
import re
import time
import types
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from functools import partial
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeVar

from .. import (
    Bulkhead,
    CircuitBreaker,
    CircuitState,
    RateLimiter,
    Rejected,
    Retry,
    RetryBudget,
    TimeoutExceeded,
    TokenBucket,
    timeout,
)
from .._http_events import HttpAttempt, HttpPaused
from .._support.clock import Clock, clock_option
from .._support.context import context_var
from .._support.events import EventSource, ResilienceEvent
from .._support.guard import async_with_is_core
from .._support.validation import (
    finite_positive,
    http_token,
    non_negative_or_none,
    positive_int,
    text,
)
from ..abc import NO_RESULT, GuardStrategy

__all__ = [
    "IDEMPOTENT_METHODS",
    "PACING_FIELDS",
    "RETRY_STATUSES",
    "ClientPolicy",
    "ClientRequest",
    "FailureKind",
    "HostPaused",
    "HostPolicy",
    "HttpAttempt",
    "HttpPaused",
    "Origin",
    "ResponseIO",
    "StatusFailure",
    "parse_rate_limit",
    "parse_retry_after",
    "raw_fields",
]

R = TypeVar("R")
R_contra = TypeVar("R_contra", contravariant=True)

#: RFC 9110 §9.2.2: the methods a client may repeat.
IDEMPOTENT_METHODS: frozenset[str] = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
#: Statuses retried by default: "you are over quota" and the gateway's "not now" family.
RETRY_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
#: Statuses after which ``Retry-After`` also pauses the host (RFC 9110 §10.2.3, RFC 6585).
_PAUSING_STATUSES = frozenset({429, 503})
#: The headers pacing reads (see parse_rate_limit), and Retry-After.
PACING_FIELDS: frozenset[str] = frozenset(
    {
        "ratelimit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    }
)
_PACING_BYTES = frozenset(name.encode("latin-1") for name in PACING_FIELDS)  # raw_fields'


def _initials(names: frozenset[bytes]) -> frozenset[int]:
    """The first bytes the names may start with, either case (raw_fields' quick skip)."""
    return frozenset(b for name in names if name for b in (name[:1].lower() + name[:1].upper()))


_PACING_INITIALS = _initials(_PACING_BYTES)
_EPOCH_THRESHOLD = 1e9  # X-RateLimit-Reset above this is epoch seconds (year 2001 onwards)
_DEFAULT = object()  # "the option was not given" (budget: None is a value there)

#: How an exception of the HTTP library relates to the request: ``"connect"``, it provably
#: never left (refused, DNS, pool timeout: any method may be retried); ``"transport"``, it may
#: have been sent (reset, read error, read timeout: idempotent requests only); ``None``, not a
#: failure of the host (a bug, an invalid URL): never retried, never a breaker failure.
#: ``"local"``: it never left either, and the host is not to blame (our own connection pool
#: was full): retried as ``"connect"``, never a breaker failure.
FailureKind = Literal["connect", "local", "transport"] | None


def _ascii_hosts(host: str) -> list[str]:
    """The ASCII (``xn--``) forms of an IDNA host: IDNA 2008's, which httpx and yarl send
    (with the ``idna`` package both depend on), and Python's IDNA 2003 codec's, which maps
    some letters instead (``"faß"``: ``"xn--fa-hia"`` against ``"fass"``)."""
    forms = []
    try:
        import idna  # (a dependency of httpx and of yarl: there whenever a client is)

        forms.append(idna.encode(host, uts46=True).decode("ascii"))
    except (ImportError, UnicodeError, ValueError):  # (idna.IDNAError is a UnicodeError)
        pass
    with contextlib.suppress(UnicodeError):
        forms.append(host.encode("idna").decode("ascii"))
    return list(dict.fromkeys(forms))


def _glob(pattern: str) -> str:
    """A ``hosts=`` pattern as an fnmatch glob: a bracketed IPv6 host (``"[::1]:8080"``,
    ``"[2001:db8::*]"``) is literal brackets, not a set of characters (no host name has a
    ``:``, so no set of them does)."""
    if pattern.startswith("["):
        end = pattern.find("]")
        if end > 0 and ":" in pattern[1:end]:
            return f"[[]{pattern[1:end]}[]]{pattern[end + 1 :]}"
    return pattern


class Origin(NamedTuple):
    """Where a request goes: scheme, host (lower-case) and port (the scheme's default filled
    in)."""

    scheme: str
    host: str
    port: int

    @property
    def label(self) -> str:
        """``"host"`` for the scheme's default port, else ``"host:port"``: the low-cardinality
        name events carry."""
        default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(self.scheme)
        host = f"[{self.host}]" if ":" in self.host else self.host  # IPv6, as in a URL
        return host if self.port == default else f"{host}:{self.port}"


class ClientRequest(NamedTuple):
    """What the core needs to know of a request: its method (upper-case), origin, whether it
    carries an ``Idempotency-Key`` header, whether its body can be sent again, and whether
    the caller opted in to retrying it whatever its method (``retry=True`` for this request;
    ``False``: never retry it; ``None``: the policy decides)."""

    method: str
    origin: Origin
    idempotency_key: bool = False
    replayable: bool = True
    retry: bool | None = None


class ResponseIO(Protocol[R_contra]):
    """The adapter's view of its library's responses and exceptions."""

    def status(self, response: R_contra) -> int: ...

    def header(self, response: R_contra, name: str) -> str | None:
        """The header's value (several lines joined with ``", "``), name case-insensitive."""
        ...

    def fields(self, response: R_contra, names: frozenset[str]) -> dict[str, str]:
        """The values of the headers in ``names`` (lower-case) that the response has, by
        lower-case name (several lines joined with ``", "``): one pass over the headers."""
        ...

    async def close(self, response: R_contra) -> None:
        """Release the response (its connection goes back to the pool)."""
        ...

    def failure_kind(self, exc: BaseException) -> FailureKind: ...


# -- errors and events -----------------------------------------------------------------------


class StatusFailure(Exception):
    """A response whose status counts as a failure of the host (``breaker_statuses``), as
    the breaker is told of it (the outcome its ``record`` judges); never raised to the
    caller. Name it in the ``record=`` of a ``CircuitBreaker`` given whole."""

    def __init__(self, response: Any, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = response
        self.status = status


class HostPaused(Rejected):
    """The host asked us (``Retry-After``, or a spent rate-limit quota) to wait longer than
    ``max_pause``: the call is refused at once, nothing sent (``retry_after``: seconds
    left). Also raised when a request was held ``max_pause`` for the answer that would tell
    the quota (the first after a pause, or the one that spent it), which never came
    (``retry_after`` ``None``: unknown)."""

    def __init__(self, message: str, *, retry_after: float | None, host: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.host = host


def raw_fields(pairs: Iterable[tuple[bytes, bytes]], names: frozenset[str]) -> dict[str, str]:
    """:meth:`ResponseIO.fields` over a library's raw header pairs: one pass, and only the
    names asked for are decoded (cheaper than a header lookup per name, each of which walks
    every header anyway)."""
    if names is PACING_FIELDS:
        wanted, initials = _PACING_BYTES, _PACING_INITIALS
    else:
        wanted = frozenset(name.encode("latin-1") for name in names)
        initials = _initials(wanted)
    found: dict[str, str] = {}
    for key, value in pairs:
        # Most names are passed over on their first byte (an int: no object made): of a
        # typical answer's four, none is lowered (callgrind, 3.12: ~1,000 instructions less).
        # Lower-cased as bytes, not decoded first: per header one call instead of two, and
        # the same match (no latin-1 letter has an ASCII lower case).
        if not key or key[0] not in initials:
            continue
        lowered = key.lower()
        if lowered in wanted:
            name = lowered.decode("latin-1")
            text = value.decode("latin-1")
            found[name] = f"{found[name]}, {text}" if name in found else text
    return found


# -- header parsing --------------------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` in seconds: delay-seconds (digits), or an HTTP-date less ``now`` (wall
    clock, ``time.time()`` by default; a date in the past is 0). ``None`` when absent or
    malformed (a malformed hint is ignored, not an error: the backoff still applies)."""
    if value is None:
        return None
    value = value.strip()
    # ASCII digits only: str.isdigit() is true of "²" too, which float() refuses.
    if value.isascii() and value.isdigit():
        seconds = float(value)
        return seconds if seconds <= _MAX_FIGURE else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        # (OverflowError: a year of more digits than a C long holds.)
        return None
    if when.tzinfo is None:
        # asctime's form ("Sun Nov  6 08:49:37 1994") has no zone: every HTTP-date is GMT
        # (RFC 9110 §5.6.7, which a recipient must accept in all three forms).
        when = when.replace(tzinfo=datetime.UTC)
    wall = time.time() if now is None else now
    seconds = max(0.0, when.timestamp() - wall)
    return seconds if seconds <= _MAX_FIGURE else None  # year 9999: malformed, not for ever


# One structured-field item with its parameters (RFC 9651 §3.1): the bare item (a string,
# token, number or byte sequence) and then ``;key=value`` pairs. Only what the RateLimit
# fields use is interpreted; anything else is skipped over, never an error.
_SF_BARE = r'"(?:[^"\\]|\\.)*"|:[A-Za-z0-9+/=]*:|[^;,\s]+'
_SF_PARAM = re.compile(r"\s*;\s*([a-z*][a-z0-9_.*-]*)(?:=(" + _SF_BARE + r"))?")
_SF_ITEM = re.compile(r"\s*(" + _SF_BARE + r")")


def _sf_items(value: str) -> list[tuple[str, dict[str, str]]]:
    """Each item of a structured-field list: its bare item and its parameters, raw."""
    items: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(value)
    while pos < end:
        match = _SF_ITEM.match(value, pos)
        if match is None:
            break
        params: dict[str, str] = {}
        pos = match.end()
        while (param := _SF_PARAM.match(value, pos)) is not None:
            params[param.group(1)] = param.group(2) or "?1"
            pos = param.end()
        items.append((match.group(1), params))
        comma = value.find(",", pos)
        if comma < 0:
            break
        pos = comma + 1
    return items


# A figure above this (seconds or requests; 317 years, above every epoch time meant) is taken
# as malformed, not as a pause for ever (nor a float overflow).
_MAX_FIGURE = 10**10

# Hosts looked at, least recently used first, for one to evict (ClientPolicy._evict).
_EVICTION_SCAN = 8


def _int(text: str | None, *, up: bool = False) -> int | None:
    """A figure of a rate-limit field, whole: a fraction rounded down (a quota left), or
    with ``up`` rounded up (a reset: coming back sooner than it would find it spent)."""
    if text is None:
        return None
    text = text.strip()
    if len(text) > 24:
        return None  # no figure this long is meant (int() of 4301 digits raises)
    try:
        number = float(text) if "." in text else int(text)
    except ValueError:
        return None
    if not math.isfinite(number) or number < 0:
        return None
    if number > _MAX_FIGURE:
        return None
    return math.ceil(number) if up else math.floor(number)


def parse_rate_limit(
    header: Callable[[str], str | None], *, now: float | None = None
) -> tuple[int, float] | None:
    """``(remaining, seconds until reset)`` of the most restrictive quota the response states,
    or ``None`` when it states none. ``header(name)`` reads a header (case-insensitive).

    Read in order, the first found wins: ``RateLimit`` (IETF draft: items ``r`` and ``t``,
    ``t`` the seconds until quota comes back, which for a sliding window may be one unit
    and may exceed its window ``w``; several policies: the fewest remaining, and among the
    spent ones the latest reset), ``RateLimit-Remaining``/``-Reset`` (drafts <= -06, delta
    seconds) and ``X-RateLimit-Remaining``/``-Reset`` (epoch seconds above 10^9, else a
    delta; ``now`` is the wall clock, ``time.time()`` by default)."""
    value = header("ratelimit")
    if value is not None:
        best: tuple[int, float] | None = None
        for _name, params in _sf_items(value):
            remaining = _int(params.get("r"))
            if remaining is None:
                continue
            reset = float(_int(params.get("t"), up=True) or 0)
            if best is None or remaining < best[0] or (remaining == best[0] and reset > best[1]):
                best = (remaining, reset)
        if best is not None:
            return best
    for prefix, epoch in (("ratelimit-", False), ("x-ratelimit-", True)):
        remaining = _int(header(prefix + "remaining"))
        if remaining is None:
            continue
        reset = float(_int(header(prefix + "reset"), up=True) or 0)
        if epoch and reset > _EPOCH_THRESHOLD:
            reset = max(0.0, reset - (time.time() if now is None else now))
        return remaining, reset
    return None


# -- options ---------------------------------------------------------------------------------

_OPTIONS = (
    "retry",
    "budget",
    "breaker",
    "limiter",
    "bulkhead",
    "attempt_timeout",
    "timeout",
    "retry_statuses",
    "breaker_statuses",
    "retry_methods",
    "retry_non_idempotent",
    "pacing",
    "max_pause",
)


def _statuses(name: str, value: Any) -> frozenset[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable of HTTP status codes, got {value!r}")
    codes = list(value)  # checked before hashed: an unhashable one is named too
    for code in codes:
        # An int subclass such as http.HTTPStatus is a status code; a bool is not.
        if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
            raise ValueError(f"{name} must hold status codes in 100..599, got {code!r}")
    return frozenset(int(code) for code in codes)


def _methods(name: str, value: Any) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"{name} must be an iterable of method names, got {value!r}")
    methods = list(value)  # checked before hashed: an unhashable one is named too
    for method in methods:
        if not http_token(method):  # RFC 9110 §9.1: a method is a token ("M-SEARCH")
            raise ValueError(f"{name} must hold method names such as 'GET', got {method!r}")
    return frozenset(method.upper() for method in methods)


def _seconds_or_none(name: str, value: Any) -> float | None:
    """A timeout: seconds > 0, or None (or inf) for none. 0 would end every attempt at once."""
    seconds = non_negative_or_none(name, value)
    if seconds == 0:
        raise ValueError(f"{name} must be > 0 or None, got {value!r}")
    return seconds


def _options(name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping of options, got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} must have option names (str) as keys, got {key!r}")
    options = dict(value)
    # Exception classes in a list or set (retry_on, record, ignore) are copied now, as the
    # primitives copy them: a host made later is built from what was given here.
    for option in _EXCEPTION_OPTIONS:
        if isinstance(options.get(option), list | set):
            options[option] = tuple(options[option])
    return options


_EXCEPTION_OPTIONS = ("retry_on", "record", "ignore")


def _build(name: str, factory: Callable[..., Any], options: Mapping[str, Any]) -> Any:
    """``factory(**options)``, its errors prefixed with the option they came from."""
    try:
        return factory(**options)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name}: {exc}") from None


def _budget_of(options: Mapping[str, Any]) -> RetryBudget:
    form = (
        RetryBudget.concurrency
        if "percent" in options or "min_retries" in options
        else RetryBudget.tokens
    )
    budget: RetryBudget = _build("budget", form, options)
    return budget


class _Settings:
    """One validated configuration (the defaults, or the defaults with an override): what
    :class:`HostPolicy` is built from, per host."""

    __slots__ = (
        "attempt_timeout",
        "breaker",
        "breaker_statuses",
        "budget",
        "bulkhead",
        "limiter",
        "max_pause",
        "pacing",
        "retry",
        "retry_methods",
        "retry_non_idempotent",
        "retry_statuses",
        "timeout",
    )

    def __init__(self, options: Mapping[str, Any], where: str) -> None:
        def named(option: str) -> str:
            return option if not where else f"hosts[{where!r}].{option}"

        retry = options["retry"]
        budget = options["budget"]
        if retry is not None and not isinstance(retry, Retry):
            retry = _options(named("retry"), retry)
            for forbidden in ("budget", "retry_on_result", "retry_after"):
                if forbidden in retry:
                    raise TypeError(
                        f"{named('retry')} must not set {forbidden!r}: "
                        + (
                            "give budget= beside it"
                            if forbidden == "budget"
                            else "which responses are retried is retry_statuses', and "
                            "Retry-After is read from the response"
                        )
                    )
        if isinstance(retry, Retry) and retry.judges_results:
            raise TypeError(
                f"{named('retry')}: a Retry given whole must not set retry_on_result or "
                "retry_after: which responses are retried is retry_statuses', and "
                f"Retry-After is read from the response; got {retry!r}"
            )
        if isinstance(retry, Retry) and budget is not _DEFAULT and budget is not None:
            raise TypeError(
                f"{named('budget')}: a Retry given whole brings its own budget "
                f"(Retry(budget=...)); got budget={budget!r} beside retry={retry!r}"
            )
        if budget is _DEFAULT:
            budget = None if isinstance(retry, Retry) or retry is None else {}
        if budget is not None and not isinstance(budget, RetryBudget):
            budget = _options(named("budget"), budget)
        self.retry: Retry | dict[str, Any] | None = retry
        self.budget: RetryBudget | dict[str, Any] | None = budget
        self.breaker = self._component(named("breaker"), options["breaker"], CircuitBreaker)
        self.limiter = self._component(named("limiter"), options["limiter"], RateLimiter)
        self.bulkhead = self._component(named("bulkhead"), options["bulkhead"], Bulkhead)
        self.attempt_timeout = _seconds_or_none(
            named("attempt_timeout"), options["attempt_timeout"]
        )
        self.timeout = _seconds_or_none(named("timeout"), options["timeout"])
        self.retry_statuses = _statuses(named("retry_statuses"), options["retry_statuses"])
        self.breaker_statuses = _statuses(named("breaker_statuses"), options["breaker_statuses"])
        self.retry_methods = _methods(named("retry_methods"), options["retry_methods"])
        for flag in ("retry_non_idempotent", "pacing"):
            if not isinstance(options[flag], bool):
                raise TypeError(f"{named(flag)} must be a bool, got {options[flag]!r}")
        self.retry_non_idempotent: bool = options["retry_non_idempotent"]
        self.pacing: bool = options["pacing"]
        self.max_pause = finite_positive(named("max_pause"), options["max_pause"])

    @staticmethod
    def _component(name: str, value: Any, kind: type) -> Any:
        if value is None or isinstance(value, kind):
            return value
        return _options(name, value)


# -- one host --------------------------------------------------------------------------------


def _release(held: asyncio.Future[bool], went: bool) -> None:
    if not held.done():
        held.set_result(went)


async def _held(held: asyncio.Future[bool], deadline: float, clock: Clock) -> bool:
    """Wait until released (``True``) or ``deadline`` (``False``)."""
    timer = clock.call_at(deadline, partial(_release, held, False))
    try:
        return await held
    finally:
        timer.cancel()


class _Pacing:
    """What the server told of this host's quota, and the requests held for it (see the
    module doc). Requests pass the gate (:meth:`ClientPolicy._gate`) while it is ``open``;
    each one sent gets a number (``last_sent``) that its answer or failure is reported with.

    The gate shuts while the host is paused, and while it waits for the answer of a
    request in flight that will tell what comes next (``awaiting``: its number; a later
    request's end, or the last one in flight, tells as much): the first request after a
    pause (sent alone: a reset need not give the whole quota back, and its answer says how
    much it did), or the one that spent the estimated quota (the server's ``t`` for the
    quota it stated before is no guide to when a unit is back once that is spent: a
    sliding window counter's grows with what was used). Answers of requests sent before it
    tell of an older state: they neither open the gate nor, unless they say the quota is
    spent, pause it."""

    __slots__ = (
        "awaiting",
        "held",
        "in_flight",
        "last_heard",
        "last_ordered",
        "last_sent",
        "last_stated",
        "open",
        "paused_until",
        "peak",
        "probe_due",
        "remaining",
        "reset_by",
        "shortened",
        "shortens",
    )

    def __init__(self) -> None:
        self.paused_until = 0.0  # loop time before which nothing is sent
        self.remaining: int | None = None  # estimated quota left (None: no figure)
        self.in_flight = 0
        self.last_sent = 0  # the number of the last request sent
        self.last_heard = 0  # the highest number of an answer that stated the quota
        self.awaiting = 0  # the gate waits for the answer of this request (0: for none)
        self.probe_due = False  # a pause was set: its first request will go alone
        # The latest the reset under way can come (loop time). Fields state t in whole
        # seconds, rounded up (the reset is up to 1 s sooner than each answer says: every
        # answer in a 1 s window says t=1), so each answer about the same reset bounds it,
        # and the earliest bounds it best. Answers are about the same reset while the
        # quota they state goes down by at least the requests sent in between (what was
        # taken, nothing back), in the order sent.
        self.reset_by = math.inf
        self.last_ordered = 0  # the number of the latest answer that stated the quota
        self.last_stated = -1  # what that answer stated
        self.peak = 0  # the most any answer stated: a whole quota, less one
        # A pause on a spent quota ends at reset_by (shortens) while the host is seen to give
        # its whole quota back at once at such a reset (a fixed window's): the first answer
        # to a request sent after a shortened pause must state the peak again, and not be a
        # refusal. Else (a sliding window's or a bucket's reset gives back a unit, a sliding
        # window counter's moves later as the quota is used) each answer's own t pauses it.
        self.shortens = True
        self.shortened = 0  # the last sent when a shortened pause was set (0: none to judge)
        # The requests held, in arrival order. Only the first is awake (it sleeps out the
        # pause, or waits for the awaited answer, then goes); each one leaving wakes the
        # next, so nobody overtakes anybody and nobody is woken for nothing.
        self.held: deque[asyncio.Future[bool]] = deque()
        # No pause, no answer awaited, nobody held: requests go straight to the send.
        self.open = True

    def _ends_the_wait(self, number: int) -> bool:
        """Whether request ``number``, just ended (``in_flight`` already less it), is what
        the gate waits for (``awaiting`` is set): the request awaited, a later one, or the
        last one in flight."""
        return number >= self.awaiting or not self.in_flight

    def _pause(self, until: float, shortened: bool = False) -> None:
        if until > self.paused_until:
            self.paused_until = until
            self.shortened = self.last_sent if shortened else 0
            self.probe_due = True
            self.open = False

    def settle(self) -> None:
        """The gate changed: wake the first request held, or open when nothing holds any."""
        held = self.held
        if held:
            _release(held[0], True)
        else:
            self.open = not (self.awaiting or self.probe_due)

    def counted(self, number: int) -> None:
        """Request ``number`` is sent (the caller counted it in ``in_flight`` and
        ``last_sent``) while a figure is known: count it against the estimate. The one that
        spends it shuts the gate until its answer (or a later one) comes."""
        remaining = self.remaining
        assert remaining is not None
        remaining -= 1
        self.remaining = remaining
        if remaining <= 0 and not self.awaiting:
            self.awaiting = number
            self.open = False

    def observe(
        self, status: int, header: Callable[[str], str | None], now: float, number: int
    ) -> None:
        """The answer of request ``number`` came, with quota fields or hints."""
        self.in_flight -= 1
        awaiting = self.awaiting
        news = not awaiting or self._ends_the_wait(number)  # it tells the newest state
        state = parse_rate_limit(header)
        waits = False
        pausing = status in _PAUSING_STATUSES
        hint = parse_retry_after(header("retry-after")) if pausing else None
        if state is not None:
            stated, reset = state
            stated_until = until = now + reset
            if number > self.last_ordered:
                if self.shortened and number > self.shortened:
                    # The first answer to a request sent after a shortened pause: was the
                    # whole quota back?
                    self.shortened = 0
                    self.shortens = stated >= self.peak
                if stated > self.peak:
                    self.peak = stated
                # The same reset as the answer before's if the quota went down since by
                # every request sent in between (an answer that overtook an earlier one may
                # be of the next window: the overtaken one, unheard, would have said so) and
                # both bounds can hold (this answer's t - 1 is a lower bound, taking the
                # decision as made now: an earlier one would only lower it).
                if (
                    stated <= self.last_stated - (number - self.last_ordered)
                    and self.reset_by > until - 1.0
                ):
                    self.reset_by = min(self.reset_by, until)
                else:
                    self.reset_by = until
                self.last_stated = stated
                self.last_ordered = number
                if self.shortens:
                    until = self.reset_by
            if stated <= 0:
                # Spent when the server wrote it (an older answer too: quota only comes back
                # with time, and requests sent since took more): back no sooner than t (or
                # the bound of an earlier answer about the same reset). A Retry-After beside
                # it takes precedence (the RateLimit draft: the reset may be ignored).
                self.remaining = 0
                if hint is not None:
                    until = stated_until = now + hint
                self._pause(until, until < stated_until)
            elif news:
                # Requests still in flight may have been counted after this answer was
                # written: assume they were not (the estimate errs towards waiting).
                remaining = stated - self.in_flight
                if number > self.last_heard:
                    self.last_heard = number
                elif self.remaining is not None and self.remaining < remaining:
                    # Sent before one already heard: it may have been decided after it too,
                    # and that one is no longer in flight: it can only lower the estimate.
                    remaining = self.remaining
                self.remaining = remaining
                if remaining <= 0 and self.in_flight:
                    # They may take what is left: the gate waits for all of them (they need
                    # not be decided in the order they were sent; the last answer tells).
                    # (With none in flight the next request sent spends it, and is awaited.)
                    self.awaiting = self.last_sent + 1
                    self.open = False
                    waits = True
        if pausing:
            if self.shortened and number > self.shortened:
                self.shortened = 0
                self.shortens = False  # refused after a shortened pause: no more of them
            if hint is not None:
                self._pause(now + hint)
        if awaiting and news and not waits:
            self.awaiting = 0
            self.settle()

    def abandoned(self, number: int) -> None:
        """Request ``number`` ended without an answer."""
        self.in_flight -= 1
        if self.awaiting and self._ends_the_wait(number):
            # The answer waited for will not come: the next request goes alone instead.
            self.awaiting = 0
            self.probe_due = True
            self.settle()

    def answered(self, io: ResponseIO[Any], response: Any, clock: Clock, number: int) -> None:
        """A response came: learn what it says of the quota, if anything (most responses of
        most hosts say nothing: then neither the clock is read nor a field parsed)."""
        fields = io.fields(response, PACING_FIELDS)
        if fields:
            self.observe(io.status(response), fields.get, clock.time(), number)
            return
        self.in_flight -= 1
        if self.awaiting and self._ends_the_wait(number):
            # The answer awaited states no quota (another path, say): the estimate stays
            # spent, so requests go one at a time until an answer states the quota again.
            self.awaiting = 0
            self.settle()


class HostPolicy:
    """The policy of one origin (built by :class:`ClientPolicy`): its components, read-only
    for inspection (``retry``, ``breaker``, ``limiter``, ``bulkhead``: ``None`` when off)."""

    __slots__ = (
        "_breaker_core",
        "_clock",
        "_heard",
        "_own",
        "_pacing",
        "_plain",
        "_reads_key",
        "_retry_methods",
        "_settings",
        "attempt_timeout",
        "breaker",
        "bulkhead",
        "label",
        "limiter",
        "origin",
        "retry",
        "timeout",
    )

    def __init__(
        self,
        origin: Origin,
        settings: _Settings,
        clock: Clock,
        is_failure: Callable[[BaseException], bool],
    ) -> None:
        self.origin = origin
        self.label = origin.label  # what events and limiter keys call the host
        self._settings = settings
        self._clock = clock
        label = self.label
        retry = settings.retry
        if isinstance(retry, dict):
            budget = settings.budget
            if isinstance(budget, dict):
                budget = _budget_of(budget)
            retry = _build(
                "retry",
                Retry,
                {"name": f"retry {label}", "clock": clock, **retry, "budget": budget},
            )
        self.retry: Retry | None = retry
        breaker = settings.breaker
        if isinstance(breaker, dict):
            breaker = {"record": is_failure, **breaker}
        self.breaker: CircuitBreaker | None = self._make(
            breaker, CircuitBreaker, f"breaker {label}", "breaker"
        )
        self._breaker_core: tuple[Callable[[], Any], Callable[..., Any]] | None = None
        if self.breaker is not None:
            enter, leave = GuardStrategy("circuit_breaker", self.breaker).core()
            assert leave is not None  # a breaker always accounts for the outcome
            self._breaker_core = (enter, leave)
        self.limiter: RateLimiter[Any] | None = self._make(
            settings.limiter, TokenBucket, f"limiter {label}", "limiter"
        )
        self.bulkhead: Bulkhead | None = self._make(
            settings.bulkhead, Bulkhead, f"bulkhead {label}", "bulkhead"
        )
        self.attempt_timeout = settings.attempt_timeout
        self.timeout = settings.timeout
        self._pacing = _Pacing() if settings.pacing else None
        # Per request, only what can apply: no limiter, bulkhead nor attempt timeout (nor a
        # breaker whose subclass overrides its async with: its exit is awaited) lets an
        # attempt run inline in the retry loop (ClientPolicy._calls); the Idempotency-Key
        # header is looked for only when it can decide (a retry, a method not retried as such).
        self._plain = (
            self.limiter is None
            and self.bulkhead is None
            and self.attempt_timeout is None
            and (self.breaker is None or async_with_is_core(type(self.breaker)))
        )
        self._retry_methods = settings.retry_methods
        self._reads_key = self.retry is not None and not settings.retry_non_idempotent
        # The components made for this host from options (a primitive given whole serves
        # every host: its listeners are its owner's), told to the policy's listeners once.
        own = (
            (settings.retry, self.retry),
            (settings.breaker, self.breaker),
            (settings.limiter, self.limiter),
            (settings.bulkhead, self.bulkhead),
        )
        self._own: tuple[EventSource, ...] = tuple(
            made for given, made in own if isinstance(given, dict) and made is not None
        )
        self._heard = False

    def hear(self, forward: Callable[[Any], None]) -> None:
        """Hand the events of this host's own components to ``forward`` (once)."""
        if not self._heard:
            self._heard = True
            for component in self._own:
                component.add_listener(forward)

    def retries(
        self, method: str, replayable: bool, opt_in: bool | None, has_key: Callable[[str], bool]
    ) -> tuple[bool, bool]:
        """``(may retry at all, may retry failures after sending)`` for a request: its method
        (upper-case), whether its body can be sent again, the caller's opt-in (``True``/
        ``False``/``None``), and ``has_key("idempotency-key")`` (the request's header, asked
        only when the answer matters)."""
        if self.retry is None or not replayable or opt_in is False:
            return False, False
        return True, (
            opt_in is True
            or not self._reads_key
            or method in self._retry_methods
            or has_key("idempotency-key")
        )

    def _make(self, value: Any, factory: Callable[..., Any], name: str, option: str) -> Any:
        if isinstance(value, dict):
            return _build(option, factory, {"name": name, "clock": self._clock, **value})
        return value

    @property
    def paused_until(self) -> float:
        """Loop time before which this host is sent nothing (0: not paused)."""
        return 0.0 if self._pacing is None else self._pacing.paused_until

    def idle(self) -> bool:
        """Whether forgetting this host loses nothing that bounds it: no call in its
        bulkhead, a closed breaker, an in-process limiter with its whole capacity back, no
        pause, nothing held or in flight at the gate. (Evicting a busy host would let a new
        policy's bulkhead admit beside calls still running, and forget an open breaker.)"""
        bulkhead, breaker, limiter, pacing = self.bulkhead, self.breaker, self.limiter, self._pacing
        if bulkhead is not None and not bulkhead.idle:
            return False
        if breaker is not None and breaker.state is not CircuitState.CLOSED:
            return False
        if (
            limiter is not None
            and not limiter.shared
            and limiter.remaining(self.label) < limiter.max_cost
        ):
            return False
        if pacing is not None:
            # (A quota stated and not spent is no pause: a host that sends the fields on
            # every answer is still forgotten when idle.)
            busy = pacing.in_flight or pacing.held or pacing.remaining == 0
            if busy or pacing.paused_until > self._clock.time():
                return False
        return True

    def __repr__(self) -> str:
        return (
            f"<HostPolicy {self.origin.label} retry={self.retry!r} breaker={self.breaker!r} "
            f"limiter={self.limiter!r} bulkhead={self.bulkhead!r}>"
        )


# -- the policy ------------------------------------------------------------------------------


class _Outcome:
    """A failed attempt as the retry loop sees it: ``retry_after`` is the server's hint
    (:meth:`Retry.hint` reads it)."""

    __slots__ = ("host", "method", "retry_after", "status")

    def __init__(self, host: str, method: str, status: int, retry_after: float | None) -> None:
        self.host = host
        self.method = method
        self.status = status
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"<HTTP {self.status} {self.method} {self.host}>"


def _expired(
    exc: BaseException, within: timeout | None, sending: list[bool] | None
) -> BaseException:
    """What the breaker is told of an attempt that ended with ``exc``: the call's own
    deadline (``within``) cancelling it while it was sent (``sending``: set when the send
    began) is the host's timeout, a failure; a caller's cancellation, or the deadline
    passing while the attempt waited in this client (the limiter, the bulkhead, pacing's
    gate: no fault of the host's), is never counted. ``exc`` itself propagates unchanged."""
    if (
        within is not None
        and sending is not None
        and sending[0]
        and isinstance(exc, asyncio.CancelledError)
        and within.expired()
    ):
        return TimeoutExceeded("the call's timeout expired while it was sent", seconds=0.0)
    return exc


class ClientPolicy(EventSource, Generic[R]):
    """Resilience for outgoing HTTP calls, one :class:`HostPolicy` per origin (see the module
    docstring for every option)."""

    __slots__ = (
        "_clock",
        "_events",
        "_hosts",
        "_last",
        "_overrides",
        "_settings",
        "io",
        "max_hosts",
        "name",
    )

    def __init__(
        self,
        io: ResponseIO[R],
        *,
        retry: Retry | Mapping[str, Any] | None = _DEFAULT,  # type: ignore[assignment]
        budget: RetryBudget | Mapping[str, Any] | None = _DEFAULT,  # type: ignore[assignment]
        breaker: CircuitBreaker | Mapping[str, Any] | None = _DEFAULT,  # type: ignore[assignment]
        limiter: RateLimiter[Any] | Mapping[str, Any] | None = None,
        bulkhead: Bulkhead | Mapping[str, Any] | None = None,
        attempt_timeout: float | None = None,
        timeout: float | None = None,
        retry_statuses: Iterable[int] = RETRY_STATUSES,
        breaker_statuses: Iterable[int] = range(500, 600),
        retry_methods: Iterable[str] = IDEMPOTENT_METHODS,
        retry_non_idempotent: bool = False,
        pacing: bool = True,
        max_pause: float = 60.0,
        hosts: Mapping[str, Mapping[str, Any]] | None = None,
        max_hosts: int = 1024,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "http"
        for method in ("status", "header", "fields", "close", "failure_kind"):
            if not callable(getattr(io, method, None)):
                raise TypeError(f"io must be a ResponseIO (with {method}()), got {io!r}")
        self.io = io
        self._clock = clock_option("clock", clock)
        self.max_hosts = positive_int("max_hosts", max_hosts)
        # Not given: a retry (with its budget) and a breaker per host. None: off.
        defaults = {
            "retry": {} if retry is _DEFAULT else retry,
            "budget": budget,
            "breaker": {} if breaker is _DEFAULT else breaker,
            "limiter": limiter,
            "bulkhead": bulkhead,
            "attempt_timeout": attempt_timeout,
            "timeout": timeout,
            "retry_statuses": retry_statuses,
            "breaker_statuses": breaker_statuses,
            "retry_methods": retry_methods,
            "retry_non_idempotent": retry_non_idempotent,
            "pacing": pacing,
            "max_pause": max_pause,
        }
        self._settings = _Settings(defaults, "")
        self._overrides: list[tuple[str, _Settings]] = []
        if hosts is not None:
            for pattern, override in _options("hosts", hosts).items():
                where = f"hosts[{pattern!r}]"
                override = _options(where, override)
                unknown = sorted(set(override) - set(_OPTIONS))
                if unknown:
                    raise TypeError(
                        f"{where}: unknown option(s) {', '.join(unknown)}; "
                        f"known: {', '.join(_OPTIONS)}"
                    )
                merged = {**defaults, **override}
                if (
                    "retry" in override
                    and "budget" not in override
                    and isinstance(override["retry"], Retry)
                ):
                    # A Retry given whole brings its own budget; any other retry keeps the
                    # budget the defaults name (budget=None stays None: one by one).
                    merged["budget"] = _DEFAULT
                self._overrides.append((_glob(pattern.lower()), _Settings(merged, pattern)))
        # Built once now, so that bad options fail here and not at the first request.
        for pattern, settings in [("", self._settings), *self._overrides]:
            probe = Origin("http", "validation.invalid", 80)
            try:
                HostPolicy(probe, settings, self._clock, self._is_failure)
            except (TypeError, ValueError) as error:
                if not pattern:
                    raise
                raise type(error)(f"hosts[{pattern!r}]: {error}") from error
        self._hosts: OrderedDict[Origin, HostPolicy] = OrderedDict()
        # The last host looked up, found again without the LRU's move (the common case: one
        # upstream). Never a host evicted: the most recent one is the last to go.
        # The host found last (the most recently used: never evicted), its key, and the
        # adapter's tag for it (host_at's: an immutable URL object it was read from).
        self._last: tuple[object, HostPolicy | None, object] = ((), None, None)
        self._events = None

    def host(self, origin: Origin) -> HostPolicy:
        """The policy of ``origin``, made on first use (least recently used ones beyond
        ``max_hosts`` are dropped)."""
        hosts = self._hosts
        policy = hosts.get(origin)
        if policy is not None:
            hosts.move_to_end(origin)
            self._last = (origin, policy, None)
            return policy
        policy = HostPolicy(origin, self._settings_for(origin), self._clock, self._is_failure)
        if self._events is not None:
            policy.hear(self._forward)
        hosts[origin] = policy
        if len(hosts) > self.max_hosts:
            self._evict()
        self._last = (origin, policy, None)
        return policy

    def _evict(self) -> None:
        """Drop the least recently used host that is idle (see :meth:`HostPolicy.idle`),
        among the oldest few; with none of them idle the map goes over ``max_hosts`` for
        now, up to twice it, where the least recently used goes whatever its state."""
        hosts = self._hosts
        # (Never the newest: the host just made is the one being asked for.)
        oldest = list(itertools.islice(hosts.items(), min(_EVICTION_SCAN, len(hosts) - 1)))
        evicted = 0
        for origin, candidate in oldest:
            if candidate.idle():
                del hosts[origin]
                evicted += 1
                # Over max_hosts since busy hosts stayed: one more, so the map comes back down
                # once they are idle (one per new host would keep it at its peak for ever).
                if evicted == 2 or len(hosts) <= self.max_hosts:
                    return
        if not evicted and len(hosts) > 2 * self.max_hosts:
            hosts.popitem(last=False)

    def add_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Hear this policy's events (:class:`HttpAttempt`, :class:`HttpPaused`) and those of
        the components it made for each host (their names carry the host)."""
        super().add_listener(callback)
        for policy in self._hosts.values():
            policy.hear(self._forward)

    def _forward(self, event: ResilienceEvent) -> None:
        """A host's component's event, to this policy's listeners."""
        listeners = self._events
        if listeners is not None:
            listeners.emit(event)

    def host_at(self, scheme: str, host: str, port: int, tag: object = None) -> HostPolicy:
        """``host(Origin(scheme, host, port))``, the adapters' per-request lookup: a known
        host is found by a plain tuple (equal to its ``Origin``, with the same hash), so no
        ``Origin`` is built but for a new host. ``tag``: an immutable object the three were
        read from (an aiohttp request's URL), kept with the host found (``_last``): an
        adapter given the same object again takes that host without reading them again."""
        # A plain tuple as an Origin (NamedTuple): equal and of equal hash, built cheaper.
        key: Origin = (scheme, host, port)  # type: ignore[assignment]
        last_key, last, last_tag = self._last
        if last_key == key and last is not None:  # the call before's: the most recent already
            if tag is not last_tag:
                self._last = (last_key, last, tag)
            return last
        hosts = self._hosts
        policy = hosts.get(key)
        if policy is None:
            policy = self.host(Origin(scheme, host, port))
        else:
            hosts.move_to_end(key)
        self._last = (key, policy, tag)
        return policy

    def _is_failure(self, exc: BaseException) -> bool:
        """A breaker's ``record`` by default: a failing status, a failure of the transport,
        an attempt's timeout; not a bug of the caller nor a refusal of ours."""
        if isinstance(exc, StatusFailure | TimeoutExceeded):
            return True
        kind = self.io.failure_kind(exc)
        return kind is not None and kind != "local"

    def _settings_for(self, origin: Origin) -> _Settings:
        if self._overrides:
            host = origin.host
            names = [host, f"{host}:{origin.port}"]
            if ":" in host:  # IPv6: "[::1]:8080", as in a URL (and the host's label)
                names += (f"[{host}]", f"[{host}]:{origin.port}")
            elif not host.isascii():
                # httpx and yarl give an IDNA host decoded: a pattern may spell it in its
                # ASCII ("xn--") form, as DNS does.
                for ascii_host in _ascii_hosts(host):
                    names += (ascii_host, f"{ascii_host}:{origin.port}")
            for pattern, settings in self._overrides:
                if any(fnmatch.fnmatchcase(name, pattern) for name in names):
                    return settings
        return self._settings

    def hosts(self) -> dict[Origin, HostPolicy]:
        """The hosts kept now, least recently used first (a copy)."""
        return dict(self._hosts)

    # -- the call -------------------------------------------------------------------------------

    def retries(self, request: ClientRequest, policy: HostPolicy) -> tuple[bool, bool]:
        """``(may retry at all, may retry failures after sending)`` for this request."""
        has_key = request.idempotency_key
        return policy.retries(
            request.method, request.replayable, request.retry, lambda name: has_key
        )

    async def execute(self, request: ClientRequest, send: Callable[[], Awaitable[R]]) -> R:
        """Send ``request`` (``await send()`` per attempt) under its origin's policy; returns
        the response to give the caller (the last one if the attempts run out)."""
        policy = self.host(request.origin)
        return await self.run(policy, request.method, *self.retries(request, policy), send)

    def run(
        self,
        policy: HostPolicy,
        method: str,
        may_retry: bool,
        after_send: bool,
        send: Callable[[], Awaitable[R]],
    ) -> Awaitable[R]:
        """:meth:`execute` for an adapter that found the host (:meth:`host_at`) and the
        retries (:meth:`HostPolicy.retries`) itself. A plain function returning the call's
        coroutine: one coroutine layer less per request than an ``async def`` around it."""
        if policy.timeout is None:
            return self._calls(policy, method, may_retry, after_send, send, self.io)
        return self._within(policy, method, may_retry, after_send, send)

    async def _within(
        self,
        policy: HostPolicy,
        method: str,
        may_retry: bool,
        after_send: bool,
        send: Callable[[], Awaitable[R]],
    ) -> R:
        assert policy.timeout is not None
        async with timeout(policy.timeout) as within:
            return await self._calls(policy, method, may_retry, after_send, send, self.io, within)

    async def _calls(
        self,
        policy: HostPolicy,
        method: str,
        may_retry: bool,
        after_send: bool,
        send: Callable[[], Awaitable[R]],
        io: ResponseIO[R],
        within: timeout | None = None,
    ) -> R:
        retry = policy.retry
        retry_statuses = policy._settings.retry_statuses
        # Retry's own seam: backoff, stop rules, hooks and the budget's accounting are its.
        run = retry.start() if retry is not None and may_retry else None
        if run is not None and within is not None:
            # The call's deadline: a wait that would cross it ends the retries (the last
            # response is returned, the last error raised) instead of sleeping into it.
            run.deadline = within.when()
        retried = run is not None and after_send
        pending: R | None = None  # a response that will not be returned, to close
        number = 0
        try:
            while True:
                if pending is not None:
                    response, pending = pending, None
                    await io.close(response)
                number += 1
                status: int | None = None  # read once: the breaker's inline exit reads it
                # Under an overall timeout, whether this attempt's send began (see _expired).
                sending = None if within is None else [False]
                try:
                    pacing = policy._pacing
                    if (
                        policy._plain
                        and self._events is None
                        and (pacing is None or pacing.open)
                        and context_var.get() is None
                    ):
                        # _attempt's common case inline (no event to emit, no pause, no
                        # limiter, bulkhead nor attempt timeout): the same steps in the same
                        # order, without three coroutine layers per attempt.
                        guard = policy._breaker_core
                        if guard is None:
                            if pacing is None:
                                response = await send()
                            else:
                                response = await self._timed(policy, send, io)
                        else:
                            enter, leave = guard
                            ticket = enter()
                            if ticket.__class__ is types.CoroutineType:
                                ticket = await ticket
                            try:
                                if pacing is None:
                                    if sending is not None:
                                        sending[0] = True
                                    response = await send()
                                elif not pacing.open:
                                    # shut while the breaker's admission awaited: the gate
                                    response = await self._timed(policy, send, io, sending)
                                else:
                                    pacing.in_flight += 1  # _timed's steps, inline
                                    sent = pacing.last_sent = pacing.last_sent + 1
                                    if pacing.remaining is not None:
                                        pacing.counted(sent)
                                    if sending is not None:
                                        sending[0] = True
                                    try:
                                        response = await send()
                                    except BaseException:
                                        pacing.abandoned(sent)
                                        raise
                                    pacing.answered(io, response, self._clock, sent)
                            except BaseException as exc:
                                leave(ticket, _expired(exc, within, sending), NO_RESULT)
                                raise
                            status = io.status(response)
                            if status in policy._settings.breaker_statuses:
                                leave(ticket, StatusFailure(response, status), NO_RESULT)
                            else:
                                leave(ticket, None, response)
                    else:
                        response = await self._attempt(
                            policy, method, send, io, number, retried, within, sending
                        )
                except Exception as exc:
                    if run is None or not run.policy.retryable(exc):
                        raise
                    kind = io.failure_kind(exc)
                    if isinstance(exc, TimeoutExceeded):
                        kind = "transport"  # ours, per attempt: it may have been sent
                    if kind is None or (kind == "transport" and not after_send):
                        raise
                    if not await run.failed(exc):
                        raise
                    continue
                if status is None:
                    status = io.status(response)
                if not retried or status not in retry_statuses:
                    if run is not None:
                        run.succeeded()
                    return response
                assert run is not None
                pending = response
                hint = parse_retry_after(io.header(response, "retry-after"))
                if not await run.failed(None, _Outcome(policy.label, method, status, hint)):
                    pending = None
                    return response
        finally:
            if run is not None:
                run.close()
            if pending is not None:  # cancelled during the sleep, or the hook raised
                await io.close(pending)

    async def _attempt(
        self,
        policy: HostPolicy,
        method: str,
        send: Callable[[], Awaitable[R]],
        io: ResponseIO[R],
        number: int,
        retries_statuses: bool,
        within: timeout | None = None,
        sending: list[bool] | None = None,
    ) -> R:
        """One attempt: the breaker, the limiter, the bulkhead, pacing's gate, then the send."""
        clock = self._clock
        # Events cost a clock read or two and an object: only when someone listens.
        listening = self._events is not None or context_var.get() is not None
        begun = clock.time() if listening else 0.0
        status: int | None = None
        outcome = "failure"
        error: BaseException | None = None
        try:
            pacing = policy._pacing
            if pacing is not None and not pacing.open:
                # Refused at once, before the limiter spends a unit on it (the request is
                # held at the gate, last before the send, otherwise).
                self._refuse_long_pause(policy, pacing, clock.time())
            guard = policy._breaker_core
            if guard is None:
                response = await self._sent(policy, send, io, sending)
                status = io.status(response)
            else:
                # The breaker's guard core (what its call() and a pipeline run), so that a
                # failing status counts as a failure without raising through the stack.
                enter, leave = guard
                ticket = enter()
                if ticket.__class__ is types.CoroutineType:
                    ticket = await ticket
                # (An exit returns an awaitable only for a breaker whose subclass overrides
                # its async with: that __aexit__ is awaited. The inline path never sees one.)
                try:
                    response = await self._sent(policy, send, io, sending)
                except BaseException as exc:
                    left = leave(ticket, _expired(exc, within, sending), NO_RESULT)
                    if left is not None:
                        await left
                    raise
                status = io.status(response)
                if status in policy._settings.breaker_statuses:
                    left = leave(ticket, StatusFailure(response, status), NO_RESULT)
                else:
                    left = leave(ticket, None, response)
                if left is not None:
                    await left
            outcome = (
                "retryable"
                if retries_statuses and status in policy._settings.retry_statuses
                else "success"
            )
            return response
        except Rejected as exc:
            outcome, error = "rejected", exc
            raise
        except Exception as exc:
            error = exc
            raise
        except BaseException as exc:
            outcome, error = "cancelled", exc
            raise
        finally:
            if listening:
                self._emit(
                    HttpAttempt,
                    host=policy.label,
                    method=method,
                    status=status,
                    attempt=number,
                    duration=clock.time() - begun,
                    outcome=outcome,
                    error=None if error is None else type(error).__name__,
                )

    def _refuse_long_pause(self, policy: HostPolicy, pacing: _Pacing, now: float) -> None:
        wait = pacing.paused_until - now
        if wait > policy._settings.max_pause:
            raise self._paused(policy, wait)

    def _paused(self, policy: HostPolicy, wait: float | None) -> HostPaused:
        host = policy.label
        self._emit(HttpPaused, host=host, retry_after=wait)
        max_pause = policy._settings.max_pause
        if wait is None:
            reason = f"held {max_pause:g}s (max_pause) for an answer that did not come"
        else:
            reason = f"asked for a pause of {wait:.3f}s (max_pause {max_pause:g}s)"
        return HostPaused(f"{self.name}: {host} {reason}", retry_after=wait, host=host)

    async def _gate(self, policy: HostPolicy, pacing: _Pacing) -> None:
        """Hold a request while its host's gate is shut, behind every request held before
        it: the first held sleeps out the pause, or waits for the awaited answer; the first
        to go after a pause goes alone (its answer is then awaited). No request is held
        longer than ``max_pause``: it is refused with :class:`HostPaused`. Returns right
        before the send is counted (nothing awaited in between)."""
        clock = self._clock
        now = clock.time()
        self._refuse_long_pause(policy, pacing, now)
        deadline = now + policy._settings.max_pause
        loop = asyncio.get_running_loop()
        held = pacing.held
        me: asyncio.Future[bool] = loop.create_future()
        held.append(me)
        try:
            if held[0] is not me and not await _held(me, deadline, clock):
                raise self._paused(policy, None)
            while True:
                now = clock.time()
                wait = pacing.paused_until - now
                if wait > 0:
                    if pacing.paused_until > deadline:
                        raise self._paused(policy, wait)
                    await clock.sleep(wait)
                elif pacing.awaiting:
                    me = held[0] = loop.create_future()  # woken when the answer comes
                    if not await _held(me, deadline, clock):
                        raise self._paused(policy, None)
                else:
                    break
            if pacing.probe_due:
                pacing.probe_due = False
                pacing.awaiting = pacing.last_sent + 1  # this one, sent next
        finally:
            held.remove(me)
            pacing.settle()

    async def _sent(
        self,
        policy: HostPolicy,
        send: Callable[[], Awaitable[R]],
        io: ResponseIO[R],
        sending: list[bool] | None = None,
    ) -> R:
        """Inside the breaker: the limiter, the bulkhead, then pacing's gate and the send
        (under the attempt's timeout), with what pacing learns of it."""
        limiter = policy.limiter
        if limiter is not None:
            await limiter.acquire(key=policy.label)
        bulkhead = policy.bulkhead
        if bulkhead is None:
            return await self._timed(policy, send, io, sending)
        async with bulkhead:
            return await self._timed(policy, send, io, sending)

    async def _timed(
        self,
        policy: HostPolicy,
        send: Callable[[], Awaitable[R]],
        io: ResponseIO[R],
        sending: list[bool] | None = None,
    ) -> R:
        pacing = policy._pacing
        if pacing is None:
            if sending is not None:
                sending[0] = True
            if policy.attempt_timeout is None:
                return await send()
            async with timeout(policy.attempt_timeout):
                return await send()
        # The gate is the last wait before the send: a request that waited in the limiter or
        # the bulkhead while the host was paused is held here, not sent.
        if not pacing.open:
            await self._gate(policy, pacing)
        # Counted in place (most hosts state no figure: then no call is made).
        pacing.in_flight += 1
        sent = pacing.last_sent = pacing.last_sent + 1
        if pacing.remaining is not None:
            pacing.counted(sent)
        if sending is not None:
            sending[0] = True
        try:
            if policy.attempt_timeout is None:
                response = await send()
            else:
                async with timeout(policy.attempt_timeout):
                    response = await send()
        except BaseException:
            pacing.abandoned(sent)
            raise
        pacing.answered(io, response, self._clock, sent)
        return response

    def __repr__(self) -> str:
        return f"<ClientPolicy {self.name!r} hosts={len(self._hosts)}/{self.max_hosts}>"

    @classmethod
    def given_or_built(
        cls, io: ResponseIO[R], policy: ClientPolicy[R] | None, options: Mapping[str, Any]
    ) -> ClientPolicy[R]:
        """``policy`` (one already built, shared), or a new one from ``options``: what each
        client adapter's ``policy=`` / ``**options`` pair means, checked once here."""
        if policy is None:
            return cls(io, **options)
        if options:
            raise TypeError(
                f"give policy= or the policy's options, not both: got policy={policy!r} "
                f"and {', '.join(sorted(options))}"
            )
        if not isinstance(policy, ClientPolicy):
            raise TypeError(f"policy must be a ClientPolicy, got {policy!r}")
        if type(policy.io) is not type(io):
            # Another library's policy reads other responses: it would fail at the first one.
            raise TypeError(
                f"policy must be one built for these responses (by an adapter of the same "
                f"library), got {policy!r} reading them with {policy.io!r}"
            )
        return policy
