"""ResilientTransport over httpx.MockTransport, in virtual time: the retry decision (the
idempotency matrix), Retry-After in both forms, closing, breaker and budget per host, pacing
from IETF and legacy fields, events, cancellation, construction errors."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import math
import time
from collections.abc import AsyncIterator, Callable
from http import HTTPStatus
from typing import Any

import httpx
import pytest

from aioresilience import (
    GCRA,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    FixedWindowCounter,
    LeakyBucket,
    ResilienceEvent,
    Retry,
    RetryBudget,
    SlidingWindowCounter,
    SlidingWindowLog,
    TimeoutExceeded,
    TokenBucket,
    constant,
)
from aioresilience.abc import memory_breaker_state
from aioresilience.integrations._client import (
    PACING_FIELDS,
    HostPaused,
    HostPolicy,
    HttpAttempt,
    Origin,
    parse_rate_limit,
    parse_retry_after,
    raw_fields,
)
from aioresilience.integrations.httpx import RETRY_EXTENSION, ResilientTransport

Handler = Callable[[httpx.Request], Any]


class ClosingStream(httpx.AsyncByteStream):
    """A response body that records whether it was closed."""

    def __init__(self, log: list[str], label: str, body: bytes = b"body") -> None:
        self.log, self.label, self.body = log, label, body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body

    async def aclose(self) -> None:
        self.log.append(f"closed {self.label}")


class Script:
    """A mock upstream answering from a list of steps: a status (int), a (status, headers)
    pair, an exception instance to raise, or a callable of the request."""

    def __init__(self, *steps: Any, then: Any = 200) -> None:
        self.steps = list(steps)
        self.then = then
        self.requests: list[httpx.Request] = []
        self.log: list[str] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else self.then
        if callable(step):
            step = step(request)
            if asyncio.iscoroutine(step):
                step = await step
        if isinstance(step, BaseException):
            raise step
        status, headers = step if isinstance(step, tuple) else (step, {})
        number = len(self.requests)
        self.log.append(f"sent {number}")
        return httpx.Response(
            status, headers=headers, stream=ClosingStream(self.log, str(number), b"x")
        )

    @property
    def count(self) -> int:
        return len(self.requests)


def client(script: Script | Handler, **options: Any) -> httpx.AsyncClient:
    options.setdefault("retry", {"attempts": 3, "backoff": constant(0.5)})
    return httpx.AsyncClient(transport=ResilientTransport(httpx.MockTransport(script), **options))


# -- the retry decision ----------------------------------------------------------------------


async def test_retryable_statuses_are_retried_and_the_last_response_returned() -> None:
    script = Script(503, 502, then=504)
    async with client(script) as http:
        response = await http.get("http://a.test/x")
    assert response.status_code == 504 and script.count == 3
    # every response not returned was closed before the next request went out
    assert script.log[:5] == ["sent 1", "closed 1", "sent 2", "closed 2", "sent 3"]


async def test_other_statuses_are_returned_at_once() -> None:
    for status in (200, 404, 500, 501):
        script = Script(status)
        async with client(script) as http:
            assert (await http.get("http://a.test/")).status_code == status
        assert script.count == 1


async def test_retry_statuses_are_configurable() -> None:
    script = Script(500, then=200)
    async with client(script, retry_statuses={500}) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    assert script.count == 2


async def test_statuses_may_be_http_status_members_but_not_bools() -> None:
    # http.HTTPStatus is an int: httpx-retries' status_forcelist takes it too
    script = Script(500, then=200)
    statuses = {HTTPStatus.INTERNAL_SERVER_ERROR}
    async with client(script, retry_statuses=statuses, breaker_statuses=statuses) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    assert script.count == 2
    with pytest.raises(ValueError, match=r"retry_statuses .* got True"):
        ResilientTransport(httpx.MockTransport(script), retry_statuses=[True])


CONNECT = httpx.ConnectError("refused")
READ = httpx.ReadError("reset by peer")
MATRIX = [
    # method, failure, Idempotency-Key, retried?
    ("GET", 503, False, True),
    ("GET", READ, False, True),
    ("GET", CONNECT, False, True),
    ("PUT", READ, False, True),
    ("DELETE", 503, False, True),
    ("HEAD", READ, False, True),
    ("OPTIONS", 503, False, True),
    ("POST", 503, False, False),
    ("POST", READ, False, False),
    ("POST", CONNECT, False, True),  # provably never sent
    ("POST", 503, True, True),
    ("POST", READ, True, True),
    ("PATCH", READ, False, False),
    ("PATCH", httpx.PoolTimeout("pool"), False, True),
    ("PATCH", httpx.ConnectTimeout("slow dns"), False, True),
    ("PATCH", httpx.ReadTimeout("stalled"), False, False),
    ("PATCH", httpx.ReadTimeout("stalled"), True, True),
]


@pytest.mark.parametrize(("method", "failure", "keyed", "retried"), MATRIX)
async def test_the_idempotency_matrix(
    method: str, failure: Any, keyed: bool, retried: bool
) -> None:
    script = Script(failure, then=200)
    headers = {"Idempotency-Key": "k-1"} if keyed else {}
    async with client(script) as http:
        if isinstance(failure, Exception) and not retried:
            with pytest.raises(type(failure)) as caught:
                await http.request(method, "http://a.test/", headers=headers, content=b"{}")
            assert caught.value is failure
        else:
            response = await http.request(method, "http://a.test/", headers=headers, content=b"{}")
            assert response.status_code == (200 if retried else failure)
    assert script.count == (2 if retried else 1)


async def test_non_idempotent_methods_are_retried_on_opt_in() -> None:
    script = Script(READ, then=201)
    async with client(script, retry_non_idempotent=True) as http:
        assert (await http.post("http://a.test/", content=b"x")).status_code == 201
    assert script.count == 2


async def test_a_streamed_body_is_never_retried() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"chunk"

    script = Script(503, then=200)
    async with client(script) as http:
        response = await http.put("http://a.test/", content=body())
    assert response.status_code == 503 and script.count == 1


async def test_a_bug_is_not_retried() -> None:
    script = Script(ValueError("bug"), then=200)
    async with client(script) as http:
        with pytest.raises(ValueError, match="bug"):
            await http.get("http://a.test/")
    assert script.count == 1


async def test_retry_may_be_off() -> None:
    script = Script(503, then=200)
    async with client(script, retry=None) as http:
        assert (await http.get("http://a.test/")).status_code == 503
    assert script.count == 1


async def test_a_retry_given_whole_narrows_the_exceptions() -> None:
    policy = Retry(attempts=3, backoff=constant(0.1), retry_on=httpx.ConnectError)
    script = Script(READ, then=200)
    async with client(script, retry=policy, breaker=None) as http:
        with pytest.raises(httpx.ReadError):
            await http.get("http://a.test/")
    assert script.count == 1


async def test_the_transport_errors_after_the_attempts_are_raised() -> None:
    script = Script(READ, READ, READ)
    async with client(script) as http:
        with pytest.raises(httpx.ReadError) as caught:
            await http.get("http://a.test/")
    assert script.count == 3
    assert any("gave up after 3 attempt(s)" in note for note in caught.value.__notes__)


async def test_raise_for_status_raises_the_last_response(virtual_clock: Any) -> None:
    script = Script(503, 503, 503)
    async with client(script, raise_for_status=True) as http:
        with pytest.raises(httpx.HTTPStatusError) as caught:
            await http.get("http://a.test/")
    assert caught.value.response.status_code == 503 and caught.value.response.content == b"x"
    assert script.count == 3


# -- Retry-After -----------------------------------------------------------------------------


async def test_retry_after_seconds_is_the_least_wait(virtual_clock: Any) -> None:
    script = Script((503, {"Retry-After": "7"}), then=200)
    start = virtual_clock.time()
    async with client(script, pacing=False) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    assert virtual_clock.time() - start == pytest.approx(7.0)


async def test_retry_after_http_date(virtual_clock: Any) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    script = Script((429, {"Retry-After": when}), then=200)
    start = virtual_clock.time()
    async with client(script, pacing=False) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    # the date has a resolution of one second
    assert 3.5 <= virtual_clock.time() - start <= 5.5


@pytest.mark.parametrize("pacing", [False, True])
async def test_a_malformed_retry_after_is_ignored_not_raised(pacing: bool) -> None:
    # "\xb2" (superscript two) passes str.isdigit(); the retry and pacing both read it.
    script = Script((503, {"Retry-After": b"\xb2"}), then=200)
    async with client(script, pacing=pacing) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    assert script.count == 2


async def test_retry_after_above_the_cap_returns_the_response(virtual_clock: Any) -> None:
    script = Script((503, {"Retry-After": "3600"}), then=200)
    async with client(script, retry={"max_retry_after": 30}) as http:
        response = await http.get("http://a.test/")
    assert response.status_code == 503 and script.count == 1
    assert virtual_clock.time() == pytest.approx(0.0)


def test_parse_retry_after() -> None:
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 0 ") == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("1.5") is None  # delay-seconds is an integer
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 - 60) == 60.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412480.0 + 60) == 0.0
    # RFC 9110's three date forms, the obsolete two included: the same instant.
    at = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
    for date in (
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ):
        assert parse_retry_after(date, now=at - 10) == 10.0, date
    # Digits of other scripts are no delay-seconds (float() refuses them): ignored, no error.
    for odd in ("\xb2", "\xb9\xb2", "\u0663"):
        assert parse_retry_after(odd) is None
    # A date whose year overflows a C long is malformed too: ignored, no OverflowError.
    assert parse_retry_after("Sun, 06 Nov 10000000000000000000000 08:49:37 GMT") is None


async def test_a_retry_after_date_that_overflows_is_ignored_not_raised() -> None:
    bad = {"Retry-After": "Sun, 06 Nov 10000000000000000000000 08:49:37 GMT"}
    script = Script((503, bad), then=200)
    async with client(script) as http:
        response = await http.get("http://a.test/")
    assert response.status_code == 200 and script.count == 2


# -- the breaker -----------------------------------------------------------------------------


async def test_the_breaker_counts_5xx_and_transport_errors_not_4xx() -> None:
    transport = ResilientTransport(
        httpx.MockTransport(Script(500, READ, 429, 404, then=200)),
        retry=None,
        breaker={"failure_threshold": 10},
    )
    async with httpx.AsyncClient(transport=transport) as http:
        for _ in range(5):
            with contextlib.suppress(httpx.ReadError):
                await http.get("http://a.test/")
    stats = transport.policy.host(Origin("http", "a.test", 80)).breaker.statistics()  # type: ignore[union-attr]
    assert stats.failures == 2 and stats.successes == 3


async def test_an_open_breaker_answers_at_once_without_sending() -> None:
    script = Script(then=503)
    async with client(script, retry=None, breaker={"failure_threshold": 3}) as http:
        for _ in range(3):
            assert (await http.get("http://dead.test/")).status_code == 503
        with pytest.raises(CircuitBreakerOpenError) as caught:
            await http.get("http://dead.test/")
    assert script.count == 3 and caught.value.retry_after == pytest.approx(30.0)


async def test_ten_calls_to_a_dead_host_send_few_requests() -> None:
    script = Script(then=CONNECT)
    async with client(script, breaker={"failure_threshold": 5}) as http:
        for _ in range(10):
            with pytest.raises((httpx.ConnectError, CircuitBreakerOpenError)):
                await http.get("http://dead.test/")
    assert script.count == 5  # the breaker stops the retries too


async def test_breakers_and_budgets_are_per_host() -> None:
    def route(request: httpx.Request) -> Any:
        return CONNECT if request.url.host == "dead.test" else 200

    script = Script(then=route)
    async with client(
        script, retry={"attempts": 3, "backoff": constant(0.1)}, budget={"max_tokens": 4}
    ) as http:
        for _ in range(10):
            with pytest.raises((httpx.ConnectError, CircuitBreakerOpenError)):
                await http.get("http://dead.test/")
        alive = Script(CONNECT, then=200)
        http._transport.inner = httpx.MockTransport(alive)  # type: ignore[attr-defined]
        # the dead host spent its own budget and opened its own breaker: not the live one's
        assert (await http.get("http://alive.test/")).status_code == 200
    assert alive.count == 2


async def test_a_shared_budget_is_shared() -> None:
    budget = RetryBudget.tokens(max_tokens=2, token_ratio=0.1)
    script = Script(then=CONNECT)
    async with client(
        script, retry={"attempts": 3, "backoff": constant(0.1)}, budget=budget, breaker=None
    ) as http:
        for host in ("a.test", "b.test"):
            with pytest.raises(httpx.ConnectError):
                await http.get(f"http://{host}/")
    assert budget.exhausted >= 1


async def test_the_breaker_recovers_after_its_break(virtual_clock: Any) -> None:
    script = Script(503, 503, then=200)
    async with client(
        script, retry=None, breaker={"failure_threshold": 2, "break_duration": 5}
    ) as http:
        for _ in range(2):
            await http.get("http://a.test/")
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://a.test/")
        await asyncio.sleep(5)
        assert (await http.get("http://a.test/")).status_code == 200
        breaker = http._transport.policy.host(Origin("http", "a.test", 80)).breaker  # type: ignore[attr-defined]
        assert breaker.state is CircuitState.CLOSED


async def test_an_attempt_timeout_is_a_retried_failure(virtual_clock: Any) -> None:
    async def stall(request: httpx.Request) -> int:
        await asyncio.sleep(10)
        return 200

    script = Script(stall, then=200)
    async with client(script, attempt_timeout=1.0) as http:
        assert (await http.get("http://a.test/")).status_code == 200
    assert script.count == 2 and virtual_clock.time() == pytest.approx(1.5)


async def test_the_overall_timeout_bounds_the_retries(virtual_clock: Any) -> None:
    script = Script(then=503)
    async with client(script, retry={"attempts": 10, "backoff": constant(1)}, timeout=2.5) as http:
        # The next sleep would cross the deadline: the retries end, the last answer returned.
        assert (await http.get("http://a.test/")).status_code == 503
    assert script.count == 3 and virtual_clock.time() == pytest.approx(2.0)


async def test_a_wait_that_reaches_the_overall_timeout_ends_the_retries(virtual_clock: Any) -> None:
    # A wait ending exactly at the deadline leaves the attempt no time: the last answer is
    # returned, not a TimeoutExceeded raised at the deadline.
    script = Script(then=503)
    async with client(script, retry={"attempts": 10, "backoff": constant(1)}, timeout=2.0) as http:
        assert (await http.get("http://a.test/")).status_code == 503
    assert script.count == 2 and virtual_clock.time() == pytest.approx(1.0)


async def test_the_overall_timeout_cuts_an_attempt_and_counts_for_the_breaker(
    virtual_clock: Any,
) -> None:
    async def stall(request: httpx.Request) -> int:
        await asyncio.sleep(3600)
        return 200

    script = Script(then=stall)
    async with client(script, retry=None, breaker={"failure_threshold": 2}, timeout=2.0) as http:
        for _ in range(2):
            with pytest.raises(TimeoutExceeded):
                await http.get("http://a.test/")
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://a.test/")
    assert script.count == 2


async def test_the_overall_timeout_passing_in_this_clients_own_waits_counts_nothing(
    virtual_clock: Any,
) -> None:
    # A call whose deadline passes while it waits for this client's own limiter was never
    # sent: the host is not to blame, and its breaker counts nothing.
    script = Script()
    one_per_10s = TokenBucket(capacity=1, refill_rate=0.1, name="host")
    async with client(
        script, retry=None, breaker={"failure_threshold": 1}, limiter=one_per_10s, timeout=2.0
    ) as http:
        assert (await http.get("http://a.test/")).status_code == 200
        with pytest.raises(TimeoutExceeded):
            await http.get("http://a.test/")  # waits for the limiter until its deadline
        await asyncio.sleep(10)
        assert (await http.get("http://a.test/")).status_code == 200  # still closed
    assert script.count == 2


# -- pacing ----------------------------------------------------------------------------------


def _reader(headers: dict[str, str]) -> Callable[[str], str | None]:
    lowered = {k.lower(): v for k, v in headers.items()}
    return lowered.get


def test_parse_rate_limit_fields() -> None:
    assert parse_rate_limit(_reader({"RateLimit": '"burst";r=5;t=30'})) == (5, 30.0)
    both = '"burst";r=50;t=30, "daily";r=0;t=86400'
    assert parse_rate_limit(_reader({"RateLimit": both})) == (0, 86400.0)
    assert parse_rate_limit(_reader({"RateLimit": 'a;r=0;t=3, "b";r=0;t=9'})) == (0, 9.0)
    odd = '"a, b";x="1;2";r=2;t=4;pk=:cHsx:'
    assert parse_rate_limit(_reader({"RateLimit": odd})) == (2, 4.0)
    assert parse_rate_limit(_reader({"RateLimit-Remaining": "3", "RateLimit-Reset": "7"})) == (
        3,
        7.0,
    )
    legacy = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000060"}
    assert parse_rate_limit(_reader(legacy), now=1700000000.0) == (0, 60.0)
    delta = {"X-RateLimit-Remaining": "4", "X-RateLimit-Reset": "12"}
    assert parse_rate_limit(_reader(delta)) == (4, 12.0)
    # t is taken as stated, even beyond the policy's window (a sliding window counter's next
    # unit can be up to two windows away)
    beyond = {"RateLimit": '"sw";r=0;t=20', "RateLimit-Policy": '"sw";q=20;w=10'}
    assert parse_rate_limit(_reader(beyond)) == (0, 20.0)
    assert parse_rate_limit(_reader({})) is None
    assert parse_rate_limit(_reader({"RateLimit": "garbage"})) is None


def test_raw_fields_reads_the_names_asked_for_in_any_case() -> None:
    pairs = [
        (b"Content-Type", b"text/plain"),
        (b"RATELIMIT", b'"a";r=1;t=2'),
        (b"Referrer-Policy", b"no-referrer"),  # the initial of a field asked for, not one
        (b"x-RateLimit-Reset", b"5"),
        (b"", b"odd"),
        (b"Retry-After", b"3"),
        (b"retry-after", b"4"),  # repeated: joined, as a header lookup would
    ]
    assert raw_fields(pairs, PACING_FIELDS) == {
        "ratelimit": '"a";r=1;t=2',
        "x-ratelimit-reset": "5",
        "retry-after": "3, 4",
    }
    assert raw_fields(pairs, frozenset({"content-type", "referrer-policy"})) == {
        "content-type": "text/plain",
        "referrer-policy": "no-referrer",
    }
    assert raw_fields(pairs, frozenset()) == {}


class FixedWindowServer:
    """A mock upstream with a fixed window quota (q per w seconds) that states it in
    ``style`` fields."""

    def __init__(self, quota: int, window: float, style: str) -> None:
        self.quota, self.window, self.style = quota, window, style
        self.refused = self.served = 0
        self.start = 0.0
        self.used = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        now = asyncio.get_running_loop().time()
        if now >= self.start + self.window:
            self.start = now - (now % self.window)
            self.used = 0
        reset = max(1, math.ceil(self.start + self.window - now))  # rounded up, as served
        if self.used >= self.quota:
            self.refused += 1
            return httpx.Response(429, headers={"Retry-After": str(reset)})
        self.used += 1
        self.served += 1
        left = self.quota - self.used
        if self.style == "ietf":
            headers = {
                "RateLimit-Policy": f'"q";q={self.quota};w={self.window:g}',
                "RateLimit": f'"q";r={left};t={reset}',
            }
        else:
            headers = {"X-RateLimit-Remaining": str(left), "X-RateLimit-Reset": str(reset)}
        return httpx.Response(200, headers=headers)


@pytest.mark.parametrize("style", ["ietf", "legacy"])
async def test_pacing_follows_the_quota_without_refusals(virtual_clock: Any, style: str) -> None:
    server = FixedWindowServer(quota=10, window=10, style=style)
    async with client(server) as http:

        async def caller() -> None:
            for _ in range(25):
                await http.get("http://a.test/")
                await asyncio.sleep(0.2)  # twice the quota, were it not paced

        await asyncio.gather(caller(), caller())
    assert server.refused == 0
    # 50 calls at 1/s of quota: the whole quota of each window is used
    elapsed = virtual_clock.time()
    assert server.served == 50 and elapsed <= 50 / (10 / 10) + 10


async def test_retry_after_on_429_pauses_the_host(virtual_clock: Any) -> None:
    script = Script((429, {"Retry-After": "4"}), then=200)
    async with client(script, retry=None) as http:
        assert (await http.get("http://a.test/")).status_code == 429
        assert (await http.get("http://a.test/")).status_code == 200  # waited for the pause
        assert virtual_clock.time() == pytest.approx(4.0)
        assert (await http.get("http://b.test/")).status_code == 200  # another host: no pause
        assert virtual_clock.time() == pytest.approx(4.0)


async def test_retry_after_takes_precedence_over_a_spent_quotas_reset(virtual_clock: Any) -> None:
    # The RateLimit draft: with both fields, Retry-After takes precedence (the reset may be
    # ignored). The host paused for the reset (50 s) although Retry-After said 5.
    script = Script((429, {"RateLimit": '"q";r=0;t=50', "Retry-After": "5"}), then=200)
    async with client(script, retry=None) as http:
        assert (await http.get("http://a.test/")).status_code == 429
        assert (await http.get("http://a.test/")).status_code == 200
        assert virtual_clock.time() == pytest.approx(5.0)


def test_a_fractional_reset_is_rounded_up_not_down() -> None:
    # A reset is a time to wait for: rounding 1.7 s down to 1 s sent the next request before
    # it (into a spent quota); a fractional remaining is still rounded down.
    assert parse_rate_limit(_reader({"RateLimit": '"q";r=0;t=0.5'})) == (0, 1.0)
    assert parse_rate_limit(_reader({"RateLimit": '"q";r=2.7;t=1.7'})) == (2, 2.0)
    delta = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1.7"}
    assert parse_rate_limit(_reader(delta)) == (0, 2.0)
    # Discord's form: epoch seconds with a fraction
    epoch = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000060.25"}
    assert parse_rate_limit(_reader(epoch), now=1700000000.0) == (0, 61.0)


async def test_a_spent_quota_with_a_fractional_reset_waits_it_out(virtual_clock: Any) -> None:
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1.5"}
    script = Script((200, spent), then=200)
    async with client(script, retry=None) as http:
        await http.get("http://a.test/")
        await http.get("http://a.test/")
    assert virtual_clock.time() >= 1.5


async def test_a_pause_longer_than_max_pause_is_refused_at_once(virtual_clock: Any) -> None:
    script = Script((503, {"Retry-After": "600"}), then=200)
    async with client(script, retry=None, max_pause=30) as http:
        assert (await http.get("http://a.test/")).status_code == 503
        with pytest.raises(HostPaused) as caught:
            await http.get("http://a.test/")
    assert caught.value.retry_after == pytest.approx(600.0) and script.count == 1


# -- limits, bulkheads, hosts ----------------------------------------------------------------


async def test_a_shared_limiter_limits_each_host_apart(virtual_clock: Any) -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    script = Script(then=200)
    async with client(script, limiter=limiter) as http:
        await asyncio.gather(*(http.get(f"http://{h}.test/") for h in "abc"))
        assert virtual_clock.time() == pytest.approx(0.0)
        await asyncio.gather(http.get("http://a.test/"), http.get("http://a.test/"))
        assert virtual_clock.time() == pytest.approx(2.0)


async def test_per_host_overrides_by_pattern() -> None:
    script = Script(then=503)
    transport = ResilientTransport(
        httpx.MockTransport(script),
        retry={"attempts": 2, "backoff": constant(0.1)},
        hosts={"*.internal": {"retry": None}, "api.test:8443": {"retry_statuses": [500]}},
    )
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://db.internal/")
        assert script.count == 1
        await http.get("https://api.test:8443/")
        assert script.count == 2
        await http.get("http://api.test/")
        assert script.count == 4
    policy = transport.policy.host(Origin("http", "db.internal", 80))
    assert policy.retry is None and policy.breaker is not None


def _retrying_but_for(script: Script, *patterns: str) -> ResilientTransport:
    """Two attempts for every host, none for the hosts ``patterns`` match."""
    return ResilientTransport(
        httpx.MockTransport(script),
        retry={"attempts": 2, "backoff": constant(0.1)},
        hosts={pattern: {"retry": None} for pattern in patterns},
    )


async def test_an_override_pattern_may_spell_an_idna_host_in_ascii() -> None:
    # httpx gives the host decoded ("bücher.test"); DNS and configurations spell it
    # "xn--bcher-kva.test": either form of the pattern applies, whichever the URL used.
    script = Script(then=503)
    transport = _retrying_but_for(script, "xn--bcher-kva.test", "*.xn--caf-dma.test:8443")
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://xn--bcher-kva.test/")
        await http.get("http://bücher.test/")
        assert script.count == 2
        await http.get("https://api.café.test:8443/")
        assert script.count == 3
        await http.get("http://plain.test/")
        assert script.count == 5


async def test_an_override_pattern_may_bracket_an_ipv6_host() -> None:
    # "[::1]:8080" as a URL (and the host's label in events) writes it.
    script = Script(then=503)
    transport = _retrying_but_for(script, "[::1]:8080")
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://[::1]:8080/")
        assert script.count == 1
        await http.get("http://[::1]:8081/")
        assert script.count == 3


async def test_a_bracketed_ipv6_pattern_with_a_wildcard_is_literal_brackets() -> None:
    # fnmatch read "[::1]" as a set of characters: "[::1]:*" matched "::2:8080" (another
    # host) and "[2001:db8::*]" matched nothing.
    script = Script(then=503)
    transport = _retrying_but_for(script, "[::1]:*", "[2001:db8::*]")
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://[::1]:8080/")
        assert script.count == 1
        await http.get("http://[2001:db8::5]/")
        assert script.count == 2
        await http.get("http://[::2]:8080/")
        assert script.count == 4


async def test_an_idna_pattern_in_its_idna_2008_form_matches() -> None:
    # httpx sends "faß.test" as "xn--fa-hia.test" (IDNA 2008); Python's codec (IDNA 2003)
    # spells it "fass.test", so only that form of the pattern matched.
    script = Script(then=503)
    transport = _retrying_but_for(script, "xn--fa-hia.test")
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://faß.test/")
        assert script.count == 1


async def test_hosts_are_bounded_lru() -> None:
    transport = ResilientTransport(httpx.MockTransport(Script(then=200)), max_hosts=2)
    async with httpx.AsyncClient(transport=transport) as http:
        for host in ("a", "b", "a", "c"):
            await http.get(f"http://{host}.test/")
        assert [o.host for o in transport.policy.hosts()] == ["a.test", "c.test"]
        # Repeated calls to one host (found without the LRU's move) keep it the most recent.
        for host in ("a", "a", "c", "c", "a", "a", "b"):
            await http.get(f"http://{host}.test/")
        assert [o.host for o in transport.policy.hosts()] == ["a.test", "b.test"]
        # A host dropped and made again is a new policy, found as the new one afterwards.
        first_c = None
        for host in ("c", "c"):
            await http.get(f"http://{host}.test/")
            c = transport.policy.host_at("http", "c.test", 80)
            assert first_c is None or c is first_c
            first_c = c
    assert [o.host for o in transport.policy.hosts()] == ["b.test", "c.test"]


async def test_a_busy_host_is_not_evicted(virtual_clock: Any) -> None:
    # Evicting a host with a call in its bulkhead let a new policy admit a second call
    # beside it (2 at once under max_concurrent=1), and evicting an open breaker forgot it.
    # The least recently used idle host goes; busy ones stay (up to twice max_hosts).
    running: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def slow(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        running[host] = running.get(host, 0) + 1
        peak[host] = max(peak.get(host, 0), running[host])
        await asyncio.sleep(5 if host == "a.test" else 1)
        running[host] -= 1
        return httpx.Response(503 if host == "down.test" else 200)

    transport = ResilientTransport(
        httpx.MockTransport(slow),
        retry=None,
        max_hosts=2,
        bulkhead={"max_concurrent": 1, "max_queue": 5},
        breaker={"failure_threshold": 1},
    )
    hosts = transport.policy.hosts
    async with httpx.AsyncClient(transport=transport) as http:
        busy = asyncio.create_task(http.get("http://a.test/"))
        await asyncio.sleep(0.1)
        for host in ("b", "c"):
            await http.get(f"http://{host}.test/")
        assert [o.host for o in hosts()] == ["a.test", "c.test"]  # b went, a in flight stayed
        assert (await http.get("http://a.test/")).status_code == 200  # queued behind busy
        assert (await busy).status_code == 200
        assert peak["a.test"] == 1
        assert (await http.get("http://down.test/")).status_code == 503  # opens its breaker
        for host in ("e", "f"):
            await http.get(f"http://{host}.test/")
        assert [o.host for o in hosts()] == ["down.test", "f.test"]
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://down.test/")


async def test_the_host_map_comes_back_down_once_busy_hosts_are_idle(virtual_clock: Any) -> None:
    # Busy hosts kept the map over max_hosts; once they were idle each new host evicted only
    # one, so the map stayed at its peak for ever instead of "for as long as that lasts".
    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.host.startswith("slow"):
            await asyncio.sleep(10)
        return httpx.Response(200)

    transport = ResilientTransport(
        httpx.MockTransport(answer), retry=None, bulkhead={"max_concurrent": 1}, max_hosts=4
    )
    async with httpx.AsyncClient(transport=transport) as http:
        slow = [asyncio.create_task(http.get(f"http://slow{i}.test/")) for i in range(6)]
        await asyncio.sleep(1)
        assert len(transport.policy.hosts()) == 6  # busy: kept, over max_hosts
        await asyncio.gather(*slow)
        for i in range(4):
            await http.get(f"http://h{i}.test/")
        assert len(transport.policy.hosts()) == 4


async def test_at_twice_max_hosts_an_idle_host_goes_before_a_busy_one() -> None:
    # Over twice max_hosts the least recently used went whatever its state, even with an
    # idle host beside it: an open breaker was forgotten while an idle host stayed.
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500 if request.url.host.startswith("dead") else 200)

    transport = ResilientTransport(
        httpx.MockTransport(answer), retry=None, breaker={"failure_threshold": 1}, max_hosts=2
    )
    hosts = transport.policy.hosts
    async with httpx.AsyncClient(transport=transport) as http:
        for host in ("dead1", "dead2", "dead3", "ok1", "ok2"):
            await http.get(f"http://{host}.test/")
        assert [o.host for o in hosts()] == ["dead1.test", "dead2.test", "dead3.test", "ok2.test"]
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://dead1.test/")
        # With no idle host left among them, the least recently used goes at last.
        await http.get("http://dead4.test/")
        await http.get("http://dead5.test/")
        assert len(hosts()) == 4 and "dead2.test" not in [o.host for o in hosts()]


async def test_a_host_stating_quota_left_is_idle() -> None:
    # A host that sends RateLimit fields on every answer is forgotten like any other when
    # nothing of it is spent or paused (only a spent estimate or a pause keeps it).
    def fields(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"ratelimit": '"q";r=5;t=10'})

    transport = ResilientTransport(httpx.MockTransport(fields), retry=None, max_hosts=2)
    async with httpx.AsyncClient(transport=transport) as http:
        for host in ("a", "b", "c"):
            await http.get(f"http://{host}.test/")
    assert [o.host for o in transport.policy.hosts()] == ["b.test", "c.test"]


async def test_a_bulkhead_per_host(virtual_clock: Any) -> None:
    async def slow(request: httpx.Request) -> int:
        await asyncio.sleep(1)
        return 200

    script = Script(then=slow)
    async with client(script, bulkhead={"max_concurrent": 1, "max_queue": 10}) as http:
        await asyncio.gather(*(http.get("http://a.test/") for _ in range(3)))
        assert virtual_clock.time() == pytest.approx(3.0)
        await asyncio.gather(http.get("http://a.test/"), http.get("http://b.test/"))
        assert virtual_clock.time() == pytest.approx(4.0)


# -- events, cancellation --------------------------------------------------------------------


async def test_attempt_events_carry_host_method_status_never_the_url() -> None:
    events: list[ResilienceEvent] = []
    transport = ResilientTransport(
        httpx.MockTransport(Script(503, then=200)), retry={"backoff": constant(0.1)}
    )
    transport.policy.add_listener(events.append)
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://a.test:8080/secret/path?token=1")
    attempts = [e for e in events if isinstance(e, HttpAttempt)]
    assert [(e.host, e.method, e.status, e.attempt, e.outcome) for e in attempts] == [
        ("a.test:8080", "GET", 503, 1, "retryable"),
        ("a.test:8080", "GET", 200, 2, "success"),
    ]
    assert all("secret" not in repr(e) for e in events)


async def test_the_components_made_per_host_are_heard_through_the_policy() -> None:
    # Built lazily per host, they had nothing to listen to in advance: the policy's
    # listeners hear them, whether added before or after the host was first called.
    early: list[ResilienceEvent] = []
    late: list[ResilienceEvent] = []
    shared = CircuitBreaker(name="shared", failure_threshold=1)  # a primitive: its owner's
    transport = ResilientTransport(
        httpx.MockTransport(Script(then=503)),
        retry=None,
        breaker={"failure_threshold": 1},
        hosts={"b.test": {"breaker": shared}},
    )
    transport.policy.add_listener(early.append)
    async with httpx.AsyncClient(transport=transport) as http:
        await http.get("http://a.test/")  # 503: opens a.test's breaker
        transport.policy.add_listener(late.append)
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://a.test/")
        await http.get("http://b.test/")  # opens the shared breaker: not forwarded
    opened = [e for e in early if type(e).__name__ == "CircuitOpened"]
    assert [e.strategy for e in opened] == ["breaker a.test"]
    assert [type(e).__name__ for e in late if e.strategy == "breaker a.test"] == ["CircuitRejected"]
    assert not [e for e in early + late if e.strategy == "shared"]


async def test_cancellation_mid_request_leaks_nothing(virtual_clock: Any) -> None:
    async def stall(request: httpx.Request) -> int:
        await asyncio.sleep(100)
        return 200

    script = Script(503, stall, then=200)
    transport = ResilientTransport(
        httpx.MockTransport(script),
        retry={"attempts": 3, "backoff": constant(1)},
        budget=RetryBudget.concurrency(percent=0.5, min_retries=1),
        bulkhead={"max_concurrent": 1},
    )
    async with httpx.AsyncClient(transport=transport) as http:
        task = asyncio.create_task(http.get("http://a.test/"))
        await asyncio.sleep(2)  # in the second attempt, stalled
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        policy = transport.policy.host(Origin("http", "a.test", 80))
        assert policy.bulkhead.statistics().active == 0  # type: ignore[union-attr]
        breaker = policy.breaker.statistics()  # type: ignore[union-attr]
        assert (breaker.failures, breaker.cancelled) == (1, 1)  # the 503; the cancellation apart
        assert policy._pacing.in_flight == 0  # type: ignore[union-attr]
        assert script.log.count("closed 1") == 1
        # the budget's retry slot came back: the next call may retry at once
        script.steps = [503]
        assert (await http.get("http://a.test/")).status_code == 200


async def test_cancelled_during_the_sleep_closes_the_held_response(virtual_clock: Any) -> None:
    script = Script(503, then=200)
    async with client(script, retry={"backoff": constant(5)}) as http:
        task = asyncio.create_task(http.get("http://a.test/"))
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert script.log == ["sent 1", "closed 1"]


# -- configuration ---------------------------------------------------------------------------


async def test_a_full_pool_of_this_client_is_no_failure_of_the_host() -> None:
    # httpx's PoolTimeout: nothing was sent (a POST may be retried), and the host answered
    # every request it got: its breaker stays closed (it opened on a healthy host).
    script = Script(httpx.PoolTimeout("pool full"), httpx.PoolTimeout("pool full"), then=200)
    async with client(script, retry=None, breaker={"failure_threshold": 1}) as http:
        for _ in range(2):
            with pytest.raises(httpx.PoolTimeout):
                await http.get("http://a.test/")
        assert (await http.get("http://a.test/")).status_code == 200
    retried = Script(httpx.PoolTimeout("pool full"), then=200)
    async with client(retried, retry={"attempts": 2, "backoff": constant(0)}) as http:
        assert (await http.post("http://a.test/", content=b"x")).status_code == 200
    assert retried.count == 2


def test_a_hosts_retry_override_keeps_the_budget_the_defaults_name() -> None:
    # budget=None turned budgets off; a host's own retry options brought one back (its
    # third failing call got one attempt of two): options replace the defaults one by one.
    transport = ResilientTransport(
        httpx.MockTransport(Script()),
        budget=None,
        hosts={"api.example.com": {"retry": {"attempts": 2}}},
    )
    api = transport.policy.host(Origin("https", "api.example.com", 443))
    other = transport.policy.host(Origin("https", "other.example.com", 443))
    assert api.retry is not None and api.retry.budget is None
    assert other.retry is not None and other.retry.budget is None


def test_any_method_token_may_be_retried() -> None:
    # RFC 9110 methods are tokens: "M-SEARCH" (SSDP) is one, refused by an isalpha() check.
    transport = ResilientTransport(httpx.MockTransport(Script()), retry_methods={"GET", "M-SEARCH"})
    assert transport.policy.host(A_TEST).retries("M-SEARCH", True, None, lambda name: False)[0]


@pytest.mark.parametrize(
    ("options", "error", "named"),
    [
        ({"retry": {"attempts": 0}}, ValueError, "attempts"),
        ({"retry": {"budget": RetryBudget.tokens()}}, TypeError, "retry"),
        ({"retry": 3}, TypeError, "retry"),
        ({"retry": Retry(), "budget": {}}, TypeError, "budget"),
        ({"retry": Retry(retry_on_result=lambda r: True)}, TypeError, "retry_on_result"),
        ({"retry": Retry(retry_after=lambda r: 1.0)}, TypeError, "retry_after"),
        ({"budget": {"percent": 2}}, ValueError, "percent"),
        ({"breaker": {"failure_threshold": -1}}, ValueError, "failure_threshold"),
        ({"breaker": {"nonsense": 1}}, TypeError, "nonsense"),
        ({"limiter": {"capacity": 0, "refill_rate": 1}}, ValueError, "capacity"),
        ({"bulkhead": {"max_concurrent": 0}}, ValueError, "max_concurrent"),
        ({"attempt_timeout": -1}, ValueError, "attempt_timeout"),
        ({"attempt_timeout": 0}, ValueError, "attempt_timeout must be > 0"),
        ({"timeout": 0.0}, ValueError, "timeout must be > 0"),
        ({"timeout": "soon"}, TypeError, "timeout"),
        ({"retry_statuses": [700]}, ValueError, "retry_statuses"),
        ({"retry_statuses": "503"}, TypeError, "retry_statuses"),
        ({"retry_methods": ["GET", 1]}, ValueError, "retry_methods"),
        ({"retry_methods": ["GET", "GET /"]}, ValueError, "retry_methods"),
        ({"retry_statuses": [[429]]}, ValueError, "retry_statuses"),
        ({"breaker_statuses": [{500}]}, ValueError, "breaker_statuses"),
        ({"retry_methods": [["GET"]]}, ValueError, "retry_methods"),
        ({"retry_non_idempotent": "yes"}, TypeError, "retry_non_idempotent"),
        ({"max_pause": 0}, ValueError, "max_pause"),
        ({"max_hosts": 0}, ValueError, "max_hosts"),
        ({"hosts": {"*.x": {"colour": 1}}}, TypeError, "colour"),
        ({"hosts": {"*.x": {"breaker": {"window": "x"}}}}, ValueError, "window"),
        (
            {"hosts": {"*.x": {"breaker": {"failure_threshold": 0}}}},
            ValueError,
            "hosts['*.x']: breaker: failure_threshold",
        ),
        ({"hosts": {"*.x": {"retry": {"attempts": 0}}}}, ValueError, "hosts['*.x']: retry"),
        ({"hosts": {"*.x": {"max_pause": -1}}}, ValueError, "hosts['*.x'].max_pause"),
        ({"inner": "transport"}, TypeError, "inner"),
        ({"raise_for_status": 1}, TypeError, "raise_for_status"),
        ({"unknown": 1}, TypeError, "unknown"),
    ],
)
def test_bad_configuration_fails_at_construction(
    options: dict[str, Any], error: type[Exception], named: str
) -> None:
    with pytest.raises(error, match=named.replace("[", r"\[").replace("*", r"\*")):
        ResilientTransport(**options)


def test_an_ipv6_host_is_labelled_in_brackets() -> None:
    assert Origin("http", "::1", 8080).label == "[::1]:8080"  # not "::1:8080"
    assert Origin("https", "2001:db8::1", 443).label == "[2001:db8::1]"
    assert Origin("http", "a.test", 8080).label == "a.test:8080"


def test_primitives_are_taken_whole() -> None:
    breaker = CircuitBreaker(failure_threshold=2)
    transport = ResilientTransport(httpx.MockTransport(Script()), breaker=breaker)
    policy = transport.policy
    assert policy.host(Origin("http", "a", 80)).breaker is breaker
    assert policy.host(Origin("http", "b", 80)).breaker is breaker
    assert (
        policy.host(Origin("http", "a", 80)).retry is not policy.host(Origin("http", "b", 80)).retry
    )


# -- against this library's server core as the peer ------------------------------------------


def protected_upstream(limiter: Any) -> tuple[Callable[[httpx.Request], Any], dict[str, int]]:
    """A mock upstream guarded by the server integration's core (integrations._http):
    its 429s and RateLimit fields are the ones a server of this library sends."""
    from aioresilience.integrations._http import Protection, RequestInfo, Rule

    protection = Protection(Rule([limiter], key=lambda request: "one client"))
    counts = {"served": 0, "refused": 0}

    async def handler(request: httpx.Request) -> httpx.Response:
        info = RequestInfo(
            request.method,
            request.url.path,
            [(k.lower(), v) for k, v in request.headers.raw],
            ("127.0.0.1", 5000),
        )
        admission = await protection.admit(info, protection.select(request.method, "/"))
        if admission.response is not None:
            counts["refused"] += 1
            status, headers, body = admission.response
            return httpx.Response(status, headers=headers, content=body)
        counts["served"] += 1
        return httpx.Response(200, headers=admission.headers)

    return handler, counts


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedWindowCounter(20, 10, name="fw"),
        lambda: SlidingWindowCounter(20, 10, name="sw"),
        lambda: SlidingWindowLog(20, 10, name="log"),
        lambda: TokenBucket(capacity=20, refill_rate=2.0, name="tb"),
        lambda: GCRA(20, 10, burst=20, name="gcra"),
        lambda: LeakyBucket(capacity=20, leak_rate=2.0, name="leaky"),
    ],
    ids=["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra", "leaky_bucket"],
)
async def test_twice_the_quota_against_our_own_server(virtual_clock: Any, make: Any) -> None:
    async def served(pacing: bool) -> dict[str, int]:
        start = virtual_clock.time()
        handler, counts = protected_upstream(make())
        async with client(handler, retry=None, pacing=pacing) as http:

            async def caller() -> None:
                while virtual_clock.time() < start + 300:
                    await http.get("http://api.test/")
                    await asyncio.sleep(0.5)  # 2 callers x 2/s = twice the quota of 2/s

            await asyncio.gather(caller(), caller())
        return counts

    warmup = 20  # the first window: the client has heard nothing yet
    counts = await served(pacing=True)
    assert counts["refused"] <= 2, counts
    used = (counts["served"] - warmup) / (2.0 * 290)
    # What the server admits at all, to clients deaf to its fields: the sliding window
    # counter's estimate admits 19 of its 20 a window at saturation (95 % of its quota).
    capacity = ((await served(pacing=False))["served"] - warmup) / (2.0 * 290)
    assert used >= 0.95 * min(1.0, capacity), (counts, capacity)


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedWindowCounter(20, 10, name="fw"),
        lambda: SlidingWindowCounter(20, 10, name="sw"),
        lambda: SlidingWindowLog(20, 10, name="log"),
    ],
    ids=["fixed_window", "sliding_window", "sliding_log"],
)
async def test_twenty_callers_at_ten_times_the_quota_with_latency(
    virtual_clock: Any, make: Any
) -> None:
    # Bursts of answers in flight at once: the quota stated by an answer sent before others
    # is no guide to when the quota is back once they are counted too (a sliding window
    # counter's t grows with what was used); the gate waits for the newest answer instead.
    async def served(pacing: bool) -> dict[str, int]:
        start = virtual_clock.time()
        upstream, counts = protected_upstream(make())

        async def handler(request: httpx.Request) -> httpx.Response:
            response = await upstream(request)
            await asyncio.sleep(0.05)
            return response

        async with client(handler, retry=None, pacing=pacing, max_pause=120) as http:

            async def caller() -> None:
                while virtual_clock.time() < start + 150:
                    await http.get("http://api.test/")
                    await asyncio.sleep(0.5)

            await asyncio.gather(*(caller() for _ in range(20)))
        return counts

    counts = await served(pacing=True)
    assert counts["refused"] <= 20, counts  # the first burst, before any answer
    used = (counts["served"] - 20) / (2.0 * 140)
    capacity = ((await served(pacing=False))["served"] - 20) / (2.0 * 140)
    assert used >= 0.95 * min(1.0, capacity), (counts, capacity)


async def test_requests_decided_out_of_order_bring_no_refusal(virtual_clock: Any) -> None:
    # Each request reaches the server after 25-75 ms, so it decides them in another order
    # than they were sent: the answer of the last one sent is not the newest state, and the
    # gate waits for every request in flight before it trusts what is left.
    import random

    rng = random.Random(1)
    upstream, counts = protected_upstream(SlidingWindowLog(20, 10, name="log"))

    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.05 * (0.5 + rng.random()))
        return await upstream(request)

    async with client(handler, retry=None) as http:

        async def caller() -> None:
            await asyncio.sleep(rng.random() * 2.5)
            while virtual_clock.time() < 200:
                await http.get("http://api.test/")
                await asyncio.sleep(2.5 * (0.5 + rng.random()))  # 10 x 0.4/s: twice the quota

        await asyncio.gather(*(caller() for _ in range(10)))
    assert counts["refused"] == 0, counts
    assert counts["served"] >= 0.95 * (20 + 2 * 190), counts


def _answers(*answers: str) -> tuple[httpx.AsyncClient, HostPolicy, list[float]]:
    """A client of a host answering each answer in turn (then the last again): a RateLimit
    field, or ``"429"`` (with ``Retry-After: 1``); and the loop times requests reached it."""
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(loop.time())
        answer = answers[min(len(sent), len(answers)) - 1]
        if answer == "429":
            return httpx.Response(429, headers={"retry-after": "1"})
        return httpx.Response(200, headers={"ratelimit": answer})

    transport = ResilientTransport(httpx.MockTransport(handler), retry=None)
    return httpx.AsyncClient(transport=transport), transport.policy.host(A_TEST), sent


A_TEST = Origin("http", "a.test", 80)
# A quota of 3 per 1 s window, used at 0.3 s intervals from the window's start.
_WINDOW = ('"q";r=2;t=1', '"q";r=1;t=1', '"q";r=0;t=1')


async def _spend(http: httpx.AsyncClient) -> None:
    for _ in range(3):
        await http.get("http://a.test/")
        await asyncio.sleep(0.3)


async def test_a_spent_quota_pauses_until_the_earliest_bound_of_its_reset(
    virtual_clock: Any,
) -> None:
    # t is whole seconds rounded up: each answer about one reset says it is at most t away,
    # and the first answer of a 1 s window bounds it best (every one of them says t=1).
    http, host, sent = _answers(*_WINDOW, *_WINDOW, *_WINDOW)
    async with http:
        await _spend(http)
        assert host.paused_until == pytest.approx(sent[0] + 1.0)  # not sent[2] + 1
        await _spend(http)  # the whole quota was back then: the next pause is as short
        assert sent[3] == pytest.approx(sent[0] + 1.0)
        assert host.paused_until == pytest.approx(sent[3] + 1.0)


async def test_a_reset_that_gives_back_less_than_the_whole_quota_ends_short_pauses(
    virtual_clock: Any,
) -> None:
    # A sliding window's reset gives back a unit (and a counter's moves later with use): once
    # the first answer after a shortened pause states less than the whole quota, each pause
    # lasts its own answer's t.
    http, host, sent = _answers(*_WINDOW, '"q";r=0;t=1', *_WINDOW)
    async with http:
        await _spend(http)
        await http.get("http://a.test/")  # at sent[0] + 1: one unit back, spent again
        assert sent[3] == pytest.approx(sent[0] + 1.0)
        await _spend(http)
        assert sent[4] == pytest.approx(sent[3] + 1.0)  # its own t, whole
        assert host.paused_until == pytest.approx(sent[6] + 1.0)  # not sent[4] + 1


async def test_a_refusal_after_a_shortened_pause_ends_short_pauses(virtual_clock: Any) -> None:
    http, host, sent = _answers(*_WINDOW, "429", *_WINDOW)
    async with http:
        await _spend(http)
        assert (await http.get("http://a.test/")).status_code == 429  # the bound was early
        await _spend(http)
        assert sent[4] == pytest.approx(sent[3] + 1.0)  # Retry-After
        assert host.paused_until == pytest.approx(sent[6] + 1.0)  # not sent[4] + 1


async def test_an_answer_that_overtakes_an_earlier_one_starts_a_new_bound(
    virtual_clock: Any,
) -> None:
    # A fixed window of 3 per 1 s, windows [k, k + 1). #2 is decided first in the next window
    # (r=2) but answered late; #3, decided just after it (r=1), overtakes it. Against #1's
    # r=2 (the window before), #3's r=1 looks like one more unit taken, which is not the two
    # requests sent since: the chain of bounds starts again at #3, so the pause once #4
    # spends the quota ends after the window does, not at #1's bound (1.5: refused).
    loop = asyncio.get_running_loop()
    start = loop.time()
    script = {  # request number: (delay to the decision, delay of the answer, RateLimit)
        1: (0.0, 0.0, '"q";r=2;t=1'),
        2: (0.15, 0.15, '"q";r=2;t=1'),
        3: (0.11, 0.01, '"q";r=1;t=1'),
        4: (0.0, 0.0, '"q";r=0;t=1'),
    }
    decided: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        before, after, field = script[len(decided) + 1] if len(decided) < 4 else (0, 0, "")
        decided.append(-1.0)
        number = len(decided)
        await asyncio.sleep(before)
        decided[number - 1] = loop.time() - start
        await asyncio.sleep(after)
        if not field:
            return httpx.Response(200)
        return httpx.Response(200, headers={"ratelimit": field})

    async def at(t: float) -> int:
        await asyncio.sleep(start + t - loop.time())
        return (await http.get("http://a.test/")).status_code

    transport = ResilientTransport(httpx.MockTransport(handler), retry=None)
    host = transport.policy.host(A_TEST)
    async with httpx.AsyncClient(transport=transport) as http:
        calls = [asyncio.create_task(at(t)) for t in (0.5, 0.9, 0.95, 1.0, 1.1)]
        await asyncio.sleep(1.3)
        assert decided[1] < decided[2] and decided[3] == pytest.approx(1.2)
        assert host.paused_until - start == pytest.approx(1.07 + 1.0)  # #3's own bound
        await asyncio.gather(*calls)
    assert decided[4] >= 2.0  # the probe: in the next window


@pytest.mark.parametrize(
    "make",
    [
        lambda: FixedWindowCounter(10, 1, name="fw"),
        lambda: SlidingWindowCounter(10, 1, name="sw"),
        lambda: SlidingWindowLog(10, 1, name="log"),
        lambda: TokenBucket(capacity=10, refill_rate=10.0, name="tb"),
        lambda: GCRA(10, 1, burst=10, name="gcra"),
    ],
    ids=["fixed_window", "sliding_window", "sliding_log", "token_bucket", "gcra"],
)
async def test_one_second_windows_at_twice_the_quota(virtual_clock: Any, make: Any) -> None:
    # Whole-second fields with 1 s windows: a pause on each answer's own t would end up to
    # 1 s late (a fixed window's quota used at 0.74-0.84); bounded by the window's first
    # answer, a fixed window's is used in full. No algorithm sees a refusal.
    async def served(pacing: bool) -> dict[str, int]:
        start = virtual_clock.time()
        upstream, counts = protected_upstream(make())
        async with client(upstream, retry=None, pacing=pacing) as http:

            async def caller() -> None:
                while virtual_clock.time() < start + 30:
                    await http.get("http://api.test/")
                    await asyncio.sleep(0.2)  # 4 x 5/s: twice the quota

            await asyncio.gather(*(caller() for _ in range(4)))
        return counts

    counts = await served(pacing=True)
    assert counts["refused"] == 0, counts
    if make().name == "fw":
        capacity = (await served(pacing=False))["served"]
        assert counts["served"] >= 0.95 * capacity, (counts, capacity)


async def test_after_a_pause_one_request_goes_first_and_its_answer_tells_the_rest(
    virtual_clock: Any,
) -> None:
    # A reset need not give the whole quota back (a sliding window's gives a unit or a few):
    # held requests wait for the first one's answer, which says how many may follow.
    loop = asyncio.get_running_loop()
    sent: list[float] = []
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(loop.time())
        if len(sent) == 1:
            return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=1'})
        if len(sent) == 2:  # the probe: answered once the others had their chance to go
            await gate.wait()
            return httpx.Response(200, headers={"ratelimit": '"q";r=1;t=1'})
        return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=1'})

    async with client(handler, retry=None) as http:
        await http.get("http://a.test/")  # r=0: the host pauses for 1 s
        calls = [asyncio.create_task(http.get("http://a.test/")) for _ in range(3)]
        await asyncio.sleep(1.5)
        assert len(sent) == 2  # the probe alone, past the pause
        gate.set()
        done, pending = await asyncio.wait(calls, timeout=0.5)
        assert len(sent) == 3 and len(done) == 2  # r=1: one more went; the last waits
        await asyncio.wait(pending)
    assert len(sent) == 4 and sent[3] - sent[2] >= 1.0


async def test_a_probe_that_never_went_hands_over(virtual_clock: Any) -> None:
    # The first request after a pause is cancelled before it is sent: the next goes alone.
    breaker = CircuitBreaker(failure_threshold=1)
    answers = iter(['"q";r=0;t=1', '"q";r=5;t=1'])
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        return httpx.Response(200, headers={"ratelimit": next(answers)})

    async with client(handler, retry=None, breaker=breaker) as http:
        await http.get("http://a.test/")
        breaker.isolate()  # the probe is refused by the breaker before anything is sent
        with pytest.raises(CircuitBreakerOpenError):
            await asyncio.wait_for(http.get("http://a.test/"), 5)
        breaker.reset()
        answer = await asyncio.wait_for(http.get("http://a.test/"), 5)  # not held for ever
        assert answer.status_code == 200 and count == 2


async def test_a_probe_cancelled_mid_request_hands_over(virtual_clock: Any) -> None:
    stall = asyncio.Event()
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count == 2:
            await stall.wait()  # the probe hangs until cancelled
        return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=1' if count == 1 else ""})

    async with client(handler, retry=None) as http:
        await http.get("http://a.test/")  # r=0: a pause of 1 s
        probe = asyncio.create_task(http.get("http://a.test/"))
        held = asyncio.create_task(http.get("http://a.test/"))
        waiter = asyncio.create_task(http.get("http://a.test/"))
        await asyncio.sleep(1.5)
        assert count == 2  # the probe is out, the two others held for its answer
        waiter.cancel()  # a held request cancelled: nothing of it stays
        probe.cancel()
        assert (await held).status_code == 200 and count == 3  # it went alone in its place
        with pytest.raises(asyncio.CancelledError):
            await probe
        with pytest.raises(asyncio.CancelledError):
            await waiter
        host = http._transport.policy.host(Origin("http", "a.test", 80))  # type: ignore[attr-defined]
        assert host._pacing.in_flight == 0 and not host._pacing.awaiting
        assert not host._pacing.held and host._pacing.open


def _pacing_of(http: httpx.AsyncClient) -> Any:
    return http._transport.policy.host(Origin("http", "a.test", 80))._pacing  # type: ignore[attr-defined]


@pytest.mark.parametrize("stale", ["answer", "failure"])
async def test_only_the_probes_answer_releases_the_held_requests(
    virtual_clock: Any, stale: str
) -> None:
    # Request 1 was sent before the pause and ends while the probe (3) is out: its answer
    # (without fields) or its failure neither releases the held requests nor starts a
    # second probe.
    loop = asyncio.get_running_loop()
    sent: list[int] = []
    probe_answers = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(n := len(sent) + 1)
        if n == 1:
            await asyncio.sleep(1.5)
            if stale == "failure":
                raise httpx.ReadError("reset by peer", request=request)
            return httpx.Response(200)
        if n == 3:
            await probe_answers.wait()
        return httpx.Response(
            200, headers={"ratelimit": '"q";r=0;t=1' if n == 2 else '"q";r=9;t=1'}
        )

    async with client(handler, retry=None) as http:
        slow = asyncio.create_task(http.get("http://a.test/slow"))
        await asyncio.sleep(0)
        await http.get("http://a.test/")  # r=0: a pause of 1 s
        await asyncio.sleep(0.9)
        # the first of these is the probe (request 3), the two others are held
        calls = [asyncio.create_task(http.get("http://a.test/")) for _ in range(3)]
        await asyncio.sleep(0.8)  # t=1.7: request 1 ended at 1.5, the probe is out
        assert sent == [1, 2, 3]
        probe_answers.set()
        answers = await asyncio.gather(*calls)  # r=9: the held requests go
        assert [a.status_code for a in answers] == [200] * 3 and sent == [1, 2, 3, 4, 5]
        with contextlib.suppress(httpx.ReadError):
            await slow
        assert loop.time() == pytest.approx(1.7)
        pacing = _pacing_of(http)
        assert pacing.open and pacing.in_flight == 0 and not pacing.held


async def test_held_requests_go_in_arrival_order_and_no_latecomer_overtakes(
    virtual_clock: Any,
) -> None:
    # Each answer after the pause gives one unit back, then spends it: every request goes
    # alone, in the order it came, and one issued later (by the probe's caller, right after
    # the probe's answer) queues behind those held before it.
    order: list[str] = []
    answers = iter(['"q";r=0;t=1'])
    flip = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal flip
        order.append(request.url.path)
        await asyncio.sleep(0.05)
        first = next(answers, None)
        if first is None:
            flip += 1
            first = '"q";r=1;t=1' if flip % 2 else '"q";r=0;t=1'
        return httpx.Response(200, headers={"ratelimit": first})

    async with client(handler, retry=None) as http:
        await http.get("http://a.test/first")  # r=0: a pause of 1 s

        async def probe_caller() -> None:
            await http.get("http://a.test/probe")
            await http.get("http://a.test/latecomer")

        calls = [asyncio.create_task(probe_caller())]
        for i in range(5):
            await asyncio.sleep(0.13)
            calls.append(asyncio.create_task(http.get(f"http://a.test/r{i}")))
        await asyncio.gather(*calls)
    assert order == ["/first", "/probe"] + [f"/r{i}" for i in range(5)] + ["/latecomer"]


async def test_nobody_is_held_longer_than_max_pause_behind_a_probe(virtual_clock: Any) -> None:
    loop = asyncio.get_running_loop()
    count = 0
    events: list[Any] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count == 2:
            await asyncio.sleep(600)  # the probe's answer is very late
        return httpx.Response(
            200, headers={"ratelimit": '"q";r=0;t=1' if count == 1 else '"q";r=5;t=1'}
        )

    async with client(handler, retry=None, max_pause=5) as http:
        http._transport.policy.add_listener(events.append)  # type: ignore[attr-defined]
        await http.get("http://a.test/")  # r=0: a pause of 1 s
        probe = asyncio.create_task(http.get("http://a.test/"))
        await asyncio.sleep(1.5)
        with pytest.raises(HostPaused, match=r"held 5s \(max_pause\)") as refused:
            await http.get("http://a.test/")
        assert refused.value.retry_after is None and loop.time() == pytest.approx(6.5)
        assert [e.retry_after for e in events if e.name == "http_paused"] == [None]
        assert count == 2  # the refused request was never sent
        assert (await probe).status_code == 200
        assert _pacing_of(http).open


async def test_a_quota_figure_outlives_its_reset_so_no_burst_follows(virtual_clock: Any) -> None:
    # A sliding log's t (r>0) is when its oldest unit leaves: past it the server has given
    # back that unit, not the quota. The client keeps counting what it was told was left,
    # then sends one request alone to learn the rest.
    served, counts = protected_upstream(SlidingWindowLog(5, 10, name="log"))

    async def handler(request: httpx.Request) -> httpx.Response:
        response = await served(request)
        await asyncio.sleep(0.05)
        return response

    async with client(handler, retry=None) as http:
        await http.get("http://a.test/")  # t=0: r=4
        await asyncio.sleep(9)
        for _ in range(3):
            await http.get("http://a.test/")  # t=9: r=1, t=1
        await asyncio.sleep(1.5)  # t=10.5: the unit of t=0 is back, the client heard r=1
        answers = await asyncio.gather(*(http.get("http://a.test/") for _ in range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert counts["refused"] == 0


async def test_a_counters_reset_beyond_its_window_is_waited_for(virtual_clock: Any) -> None:
    # A sliding window counter's next unit can be more than a window away (t > w).
    handler, counts = protected_upstream(SlidingWindowCounter(5, 10, name="sw"))
    async with client(handler, retry=None) as http:
        for _ in range(6):
            assert (await http.get("http://a.test/")).status_code == 200
    assert counts == {"served": 6, "refused": 0}


async def test_a_huge_figure_is_ignored_not_a_pause_for_ever(virtual_clock: Any) -> None:
    # 400 digits: float() of the int overflows, a float reading is inf; 5000: int() refuses.
    for digits in (400, 5000):
        huge = "9" * digits
        assert parse_rate_limit(_reader({"RateLimit": f'"q";r=1;t={huge}'})) == (1, 0.0)
        legacy = {"X-RateLimit-Remaining": "5", "X-RateLimit-Reset": huge}
        assert parse_rate_limit(_reader(legacy)) == (5, 0.0)
        assert parse_retry_after(huge) is None
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT") is None  # not for ever either
    count = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal count
        count += 1
        if count == 1:
            return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=1'})
        # the probe's answer: a malformed reset and hint
        return httpx.Response(
            429 if count == 2 else 200,
            headers={
                "x-ratelimit-remaining": "5",
                "x-ratelimit-reset": "9" * 400,
                "retry-after": "9" * 400,
            },
        )

    async with client(handler, retry=None, max_pause=5) as http:
        await http.get("http://a.test/")  # r=0: a pause of 1 s
        assert (await http.get("http://a.test/")).status_code == 429  # the probe
        assert (await http.get("http://a.test/")).status_code == 200
        pacing = _pacing_of(http)
        assert pacing.open and not pacing.awaiting and pacing.in_flight == 0


async def test_an_awaited_answer_without_fields_keeps_the_estimate_spent(
    virtual_clock: Any,
) -> None:
    # /plain counts against the quota (3 per 10 s) but its answers carry no fields: when
    # the one awaited is such an answer, the estimate stays spent (one request at a time
    # until an answer states the quota), rather than lost (a burst, refused).
    used = 0
    statuses: list[int] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal used
        await asyncio.sleep(0.05)
        if used >= 3:
            fields = {"ratelimit": '"q";r=0;t=10', "retry-after": "10"}
            return httpx.Response(429, headers=fields)
        used += 1
        if request.url.path == "/plain":
            return httpx.Response(200)
        return httpx.Response(200, headers={"ratelimit": f'"q";r={3 - used};t=10'})

    async with client(handler, retry=None, max_pause=5) as http:
        await http.get("http://a.test/x")  # r=2
        await http.get("http://a.test/x")  # r=1
        await http.get("http://a.test/plain")  # spends the estimate; answered without fields
        calls = [asyncio.create_task(http.get("http://a.test/x")) for _ in range(5)]
        for call in calls:
            with contextlib.suppress(HostPaused):
                statuses.append((await call).status_code)
    assert statuses == [429]  # the one request that went, alone; the others held, then refused


async def test_an_older_answer_arriving_last_can_only_lower_the_estimate(
    virtual_clock: Any,
) -> None:
    # The server decides on arrival; /slow's answer (decided first, r=4) comes back after
    # the answer of a request decided after it (r=3).
    used = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal used
        if used >= 6:
            return httpx.Response(429, headers={"ratelimit": '"q";r=0;t=60'})
        used += 1
        fields = {"ratelimit": f'"q";r={6 - used};t=60'}
        await asyncio.sleep(1.0 if request.url.path == "/slow" else 0.1)
        return httpx.Response(200, headers=fields)

    async def later() -> httpx.Response:
        await asyncio.sleep(0.01)
        return await http.get("http://a.test/x")

    async with client(handler, retry=None) as http:
        await http.get("http://a.test/x")  # r=5
        await asyncio.gather(http.get("http://a.test/slow"), later())
        assert _pacing_of(http).remaining <= 3  # the server has 3 left (it said 4 was left)
        answers = await asyncio.gather(*(http.get("http://a.test/x") for _ in range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200] and used == 6


class _SlowAdmission:
    """A breaker state whose admission is a round trip (as a store's is)."""

    closed_is_local = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def try_admit(self, now: float) -> Any:
        async def admitted() -> Any:
            await asyncio.sleep(0.2)
            return self.inner.try_admit(now)

        return admitted()


class _SlowAdmissionStore:
    def bind_breaker(self, options: Any, report: Any) -> Any:
        return _SlowAdmission(memory_breaker_state(options, report))


async def test_a_pause_begun_while_the_breaker_admits_holds_the_request(
    virtual_clock: Any,
) -> None:
    loop = asyncio.get_running_loop()
    sent: list[tuple[str, float]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, loop.time()))
        await asyncio.sleep(0.1)
        return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=10'})

    breaker = CircuitBreaker(store=_SlowAdmissionStore(), name="slow admission")
    async with client(handler, retry=None, breaker=breaker) as http:
        a = asyncio.create_task(http.get("http://a.test/a"))  # sent at 0.2, paused at 0.3
        await asyncio.sleep(0.25)
        b = asyncio.create_task(http.get("http://a.test/b"))  # the gate is open yet
        await asyncio.gather(a, b)
    assert sent == [("/a", pytest.approx(0.2)), ("/b", pytest.approx(10.3))]


async def test_a_breaker_subclass_overriding_async_with_is_entered_and_left(
    virtual_clock: Any,
) -> None:
    class Logged(CircuitBreaker):
        def __init__(self, **options: Any) -> None:
            super().__init__(**options)
            self.log: list[str] = []

        async def __aenter__(self) -> None:
            self.log.append("enter")
            await super().__aenter__()

        async def __aexit__(self, *exc: Any) -> Any:
            self.log.append("exit")
            return await super().__aexit__(*exc)

    breaker = Logged(failure_threshold=2, name="logged")
    async with client(lambda request: httpx.Response(500), retry=None, breaker=breaker) as http:
        for _ in range(2):
            assert (await http.get("http://a.test/")).status_code == 500
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("http://a.test/")
    assert breaker.log == ["enter", "exit", "enter", "exit", "enter"]
    assert breaker.state is CircuitState.OPEN


async def test_a_request_queued_in_the_bulkhead_is_held_by_a_pause_begun_meanwhile(
    virtual_clock: Any,
) -> None:
    loop = asyncio.get_running_loop()
    sent: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        sent.append(loop.time())
        await asyncio.sleep(0.1)
        return httpx.Response(200, headers={"ratelimit": '"q";r=0;t=10'})

    bulkhead = {"max_concurrent": 1, "max_queue": 10}
    async with client(handler, retry=None, bulkhead=bulkhead) as http:
        await asyncio.gather(*(http.get("http://a.test/") for _ in range(3)))
    assert sent == pytest.approx([0.0, 10.1, 20.2])


async def test_one_request_opts_in_or_out() -> None:
    script = Script(READ, 503, then=200)
    async with client(script) as http:
        opted = await http.post("http://a.test/", content=b"x", extensions={RETRY_EXTENSION: True})
        assert opted.status_code == 200 and script.count == 3
        script.steps = [503]
        out = await http.get("http://a.test/", extensions={RETRY_EXTENSION: False})
        assert out.status_code == 503 and script.count == 4
        with pytest.raises(TypeError, match=r"aioresilience\.retry"):
            await http.get("http://a.test/", extensions={RETRY_EXTENSION: "yes"})


async def test_usable_in_mounts() -> None:
    flaky = Script(503, then=200)
    plain = Script(503, then=200)
    async with httpx.AsyncClient(
        mounts={
            "http://flaky.test": ResilientTransport(
                httpx.MockTransport(flaky), retry={"backoff": constant(0.1)}
            ),
            "all://": httpx.MockTransport(plain),
        }
    ) as http:
        assert (await http.get("http://flaky.test/")).status_code == 200
        assert (await http.get("http://other.test/")).status_code == 503
    assert (flaky.count, plain.count) == (2, 1)


async def test_the_readme_snippet_runs() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = next(
        b
        for b in re.findall(r"```python\n(.*?)```", readme, flags=re.DOTALL)
        if "ResilientTransport(" in b
    )
    namespace: dict[str, Any] = {}
    exec(block, namespace)
    transport = namespace["transport"]
    script = Script(503, then=200)
    transport.inner = httpx.MockTransport(script)
    assert await namespace["main"]("http://api.test/") == 200
    assert script.count == 2
    assert transport.policy.host(Origin("http", "db.internal", 80)).retry is None


async def test_a_breaker_given_whole_judges_with_its_own_record() -> None:
    # Only transport errors count for this one: a 503 is no failure to it.
    breaker = CircuitBreaker(failure_threshold=2, record=httpx.TransportError)
    script = Script(503, 503, READ, READ, then=200)
    async with client(script, retry=None, breaker=breaker) as http:
        for _ in range(2):
            assert (await http.get("http://a.test/")).status_code == 503
        assert breaker.state is CircuitState.CLOSED
        for _ in range(2):
            with pytest.raises(httpx.ReadError):
                await http.get("http://a.test/")
        assert breaker.state is CircuitState.OPEN


def test_exception_classes_in_a_list_are_copied_at_construction() -> None:
    # retry={"retry_on": [...]} and breaker={"record": [...]} build each host's Retry and
    # breaker later: the list as it was given counts, not as it is when a host is first seen.
    retry_on, record = [ConnectionError], [ConnectionError]
    transport = ResilientTransport(
        httpx.MockTransport(Script(200)),
        retry={"retry_on": retry_on},
        breaker={"record": record},
    )
    retry_on.append(KeyError)
    record.append("not a class")  # type: ignore[arg-type]
    host = transport.policy.host(Origin("http", "a.test", 80))
    assert host.retry is not None and not host.retry.retryable(KeyError())
    assert host.retry.retryable(ConnectionError())
