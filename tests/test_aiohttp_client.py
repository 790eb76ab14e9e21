"""ResilientMiddleware with a real aiohttp.ClientSession against a real aiohttp.web server on
loopback with scripted faults: retried statuses, resets, refused connections (the idempotency
matrix), one connection with 4 MB error bodies, streamed bodies, per-host isolation,
cancellation mid-request, bad configuration, the aiohttp version floor."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from upstream import BIG, Upstream, serve

from aioresilience import CircuitBreakerOpenError, HttpAttempt, constant
from aioresilience.integrations import _aiohttp_client
from aioresilience.integrations._client import Origin
from aioresilience.integrations.aiohttp import ResilientMiddleware

pytestmark = pytest.mark.real_time

FAST = {"attempts": 3, "backoff": constant(0.01)}


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with serve() as server:
        yield server


def session(
    upstream: Upstream, middleware: ResilientMiddleware | None = None, **options: Any
) -> aiohttp.ClientSession:
    options.setdefault("retry", FAST)
    limit = options.pop("limit", 100)
    raise_for_status = options.pop("raise_for_status", False)
    return aiohttp.ClientSession(
        base_url=upstream.url,
        middlewares=(middleware or ResilientMiddleware(**options),),
        connector=aiohttp.TCPConnector(limit=limit),
        timeout=aiohttp.ClientTimeout(total=10, connect=2),
        raise_for_status=raise_for_status,
    )


def host_of(middleware: ResilientMiddleware, upstream: Upstream) -> Any:
    return middleware.policy.host(Origin("http", "127.0.0.1", upstream.port))


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_statuses_are_retried_then_the_success_returned(upstream: Upstream) -> None:
    upstream.script("/a", ("status", 503, {}), ("status", 502, {}))
    async with session(upstream) as http, http.get("/a") as response:
        assert response.status == 200 and await response.text() == "200"
    assert upstream.hits["/a"] == 3


async def test_a_500_is_returned_not_retried_and_the_last_response_when_they_run_out(
    upstream: Upstream,
) -> None:
    upstream.script("/a", ("status", 500, {}))
    upstream.script("/b", *[("status", 503, {})] * 3)
    async with session(upstream) as http:
        async with http.get("/a") as response:
            assert response.status == 500
        async with http.get("/b") as response:
            assert response.status == 503 and await response.text() == "503"
    assert (upstream.hits["/a"], upstream.hits["/b"]) == (1, 3)


async def test_the_sessions_raise_for_status_sees_the_last_response(upstream: Upstream) -> None:
    upstream.script("/a", *[("status", 503, {})] * 3)
    async with session(upstream, raise_for_status=True) as http:
        with pytest.raises(aiohttp.ClientResponseError) as caught:
            await http.get("/a")
    assert caught.value.status == 503 and upstream.hits["/a"] == 3


METHODS = ["GET", "PUT", "DELETE", "POST", "PATCH"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("failure", ["status", "reset", "refused"])
@pytest.mark.parametrize("keyed", [False, True])
async def test_the_idempotency_matrix(
    upstream: Upstream, method: str, failure: str, keyed: bool
) -> None:
    middleware = ResilientMiddleware(retry=FAST)
    attempts: list[HttpAttempt] = []
    middleware.policy.add_listener(
        lambda e: attempts.append(e) if isinstance(e, HttpAttempt) else None
    )
    headers = {"Idempotency-Key": "k-1"} if keyed else {}
    # A refused connection provably sent nothing: any method is retried. A status or a reset
    # may have reached the server: only idempotent methods, or a keyed request.
    retried = failure == "refused" or keyed or method not in {"POST", "PATCH"}
    base = upstream.url if failure != "refused" else f"http://127.0.0.1:{closed_port()}"
    async with aiohttp.ClientSession(base_url=base, middlewares=(middleware,)) as http:
        upstream.script("/x", ("status", 503, {}) if failure == "status" else ("reset",))
        try:
            async with http.request(method, "/x", data=b"body", headers=headers) as response:
                status = response.status
        except aiohttp.ClientConnectionError:
            status = None
    if failure == "refused":
        assert status is None and len(attempts) == 3  # every attempt refused
    elif retried:
        assert status == 200 and upstream.hits["/x"] == 2
    else:
        assert status == (503 if failure == "status" else None) and upstream.hits["/x"] == 1
    assert {(e.host, e.method) for e in attempts} == {(base.split("//")[1], method)}


async def test_one_request_opts_in_or_out(upstream: Upstream) -> None:
    middleware = ResilientMiddleware(retry=FAST)
    upstream.script("/in", ("status", 503, {}))
    upstream.script("/out", ("status", 503, {}))
    async with session(upstream, middleware) as http:
        async with http.post("/in", data=b"x", middlewares=(middleware.with_retry(True),)) as r:
            assert r.status == 200
        async with http.get("/out", middlewares=(middleware.with_retry(False),)) as r:
            assert r.status == 503
    assert (upstream.hits["/in"], upstream.hits["/out"]) == (2, 1)
    assert middleware.with_retry(True).policy is middleware.policy


async def test_a_streamed_body_is_sent_once(upstream: Upstream) -> None:
    upstream.script("/s", ("status", 503, {}))

    async def chunks() -> AsyncIterator[bytes]:
        yield b"a"
        yield b"b"

    async with session(upstream) as http:
        headers = {"Idempotency-Key": "k"}
        async with http.put("/s", data=chunks(), headers=headers) as response:
            assert response.status == 503
        async with http.put("/j", json={"a": 1}) as response:  # in memory: replayable
            assert response.status == 200
    assert upstream.hits["/s"] == 1


async def test_one_connection_and_4mb_error_bodies_do_not_deadlock(upstream: Upstream) -> None:
    upstream.script("/big", ("big", 503), ("big", 503), ("big", 503))
    retry = {"attempts": 4, "backoff": constant(0.01)}
    async with session(upstream, retry=retry, budget=None, limit=1) as http:
        async with http.get("/big") as response:
            assert response.status == 200
        # the attempts run out: the last 4 MB response comes back, readable
        upstream.script("/big", *[("big", 503)] * 4)
        async with http.get("/big") as last:
            assert last.status == 503 and len(await last.read()) == len(BIG)
    assert upstream.hits["/big"] == 8


async def test_an_open_breaker_answers_at_once_without_sending(upstream: Upstream) -> None:
    upstream.script("/dead", *[("status", 503, {})] * 10)
    breaker = {"failure_threshold": 3, "break_duration": 30.0}
    async with session(upstream, retry=None, breaker=breaker) as http:
        for _ in range(3):
            async with http.get("/dead") as response:
                assert response.status == 503
        with pytest.raises(CircuitBreakerOpenError) as caught:
            await http.get("/dead")
    assert upstream.hits["/dead"] == 3 and caught.value.retry_after > 25


async def test_breakers_and_budgets_are_per_host(upstream: Upstream) -> None:
    async with serve() as other:
        upstream.script("/dead", *[("status", 503, {})] * 50)
        other.script("/ok", ("status", 503, {}))
        middleware = ResilientMiddleware(retry=FAST, breaker={"failure_threshold": 3})
        async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
            for _ in range(5):
                try:
                    async with http.get(f"{upstream.url}/dead") as response:
                        assert response.status == 503
                except CircuitBreakerOpenError:
                    pass
            async with http.get(f"{other.url}/ok") as response:  # still retried
                assert response.status == 200
        dead = host_of(middleware, upstream)
        alive = middleware.policy.host(Origin("http", "127.0.0.1", other.port))
        assert dead.breaker.state.name == "OPEN" and alive.breaker.state.name == "CLOSED"
        assert dead.retry.budget is not alive.retry.budget
        assert other.hits["/ok"] == 2


async def test_the_same_url_objects_alternating_between_hosts_reach_each_its_own(
    upstream: Upstream,
) -> None:
    # The host found last is taken again for the same URL object: alternating two (yarl
    # hands out one object per string) must still count each host's failures on its own.
    async with serve() as other:
        upstream.script("/dead", *[("status", 503, {})] * 50)
        middleware = ResilientMiddleware(retry=None, breaker={"failure_threshold": 3})
        dead_url, ok_url = f"{upstream.url}/dead", f"{other.url}/ok"
        async with aiohttp.ClientSession(middlewares=(middleware,)) as http:
            for _ in range(3):
                for url in (dead_url, ok_url, ok_url):
                    async with http.get(url) as response:
                        assert response.status == (503 if url == dead_url else 200)
            with pytest.raises(CircuitBreakerOpenError):
                await http.get(dead_url)
            async with http.get(ok_url) as response:
                assert response.status == 200
        alive = middleware.policy.host(Origin("http", "127.0.0.1", other.port))
        assert host_of(middleware, upstream).breaker.state.name == "OPEN"
        assert alive.breaker.state.name == "CLOSED" and other.hits["/ok"] == 7


async def test_pacing_reads_the_servers_fields(upstream: Upstream) -> None:
    fields = {"RateLimit-Policy": '"q";q=5;w=30', "RateLimit": '"q";r=0;t=20'}
    upstream.script("/q", ("status", 200, fields))
    middleware = ResilientMiddleware(retry=FAST)
    async with session(upstream, middleware) as http, http.get("/q") as response:
        assert response.status == 200
    paused = host_of(middleware, upstream).paused_until - asyncio.get_running_loop().time()
    assert 15 < paused <= 20


async def test_cancellation_mid_request_leaks_nothing(upstream: Upstream) -> None:
    upstream.script("/stall", ("stall", 30.0))
    middleware = ResilientMiddleware(retry=FAST, bulkhead={"max_concurrent": 1})
    async with session(upstream, middleware, limit=1) as http:
        task = asyncio.create_task(http.get("/stall"))
        await asyncio.wait_for(upstream.arrived.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the one connection and the bulkhead slot are free again
        async with http.get("/after") as response:
            assert response.status == 200
    host = host_of(middleware, upstream)
    assert host.bulkhead.statistics().active == 0
    assert host.breaker.statistics().failures == 0
    assert host._pacing.in_flight == 0
    budget = host.retry.budget.ledger
    assert budget.tokens == budget.max_tokens


async def test_an_attempt_timeout_is_retried(upstream: Upstream) -> None:
    upstream.script("/stall", ("stall", 5.0))
    async with session(upstream, attempt_timeout=0.2) as http, http.get("/stall") as response:
        assert response.status == 200
    assert upstream.hits["/stall"] == 2


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retry": {"attempts": 0}}, ValueError, "retry: attempts"),
        ({"breaker": {"failure_threshold": -1}}, ValueError, "breaker"),
        ({"retry_statuses": [700]}, ValueError, "retry_statuses"),
        ({"hosts": {"*.internal": {"retries": 2}}}, TypeError, "unknown option"),
        ({"max_pause": 0}, ValueError, "max_pause"),
        ({"retry_request": "yes"}, TypeError, "retry_request"),
        ({"policy": object()}, TypeError, "policy must be a ClientPolicy"),
    ],
)
def test_bad_configuration_fails_at_construction(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ResilientMiddleware(**options)


def test_policy_or_options_not_both_and_with_retry_takes_a_bool() -> None:
    middleware = ResilientMiddleware()
    with pytest.raises(TypeError, match="not both"):
        ResilientMiddleware(policy=middleware.policy, retry=None)
    with pytest.raises(TypeError, match="retry must be a bool"):
        middleware.with_retry(1)  # type: ignore[arg-type]


def test_a_policy_of_another_library_is_refused_at_construction() -> None:
    httpx_adapter = pytest.importorskip("aioresilience.integrations.httpx")
    shared = ResilientMiddleware().policy
    assert ResilientMiddleware(policy=shared).policy is shared  # one library's: shared
    with pytest.raises(TypeError, match="policy must be one built for these responses"):
        httpx_adapter.ResilientTransport(policy=shared)
    with pytest.raises(TypeError, match="policy must be one built for these responses"):
        ResilientMiddleware(policy=httpx_adapter.ResilientTransport().policy)


def test_an_aiohttp_without_client_middlewares_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_aiohttp_client.aiohttp, "__version__", "3.11.18")
    with pytest.raises(RuntimeError, match=r"aiohttp >= 3\.12 .*installed 3\.11\.18"):
        ResilientMiddleware()
