"""ResilientTransport with a real httpx.AsyncClient against a real aiohttp.web server on
loopback with scripted faults: statuses, connection resets, stalls, slow and large bodies,
Retry-After in both forms, IETF and legacy rate-limit fields, one connection with 4 MB error
bodies, cancellation mid-request."""

from __future__ import annotations

import asyncio
import email.utils
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from upstream import BIG, Upstream, serve

from aioresilience import CircuitBreakerOpenError, TimeoutExceeded, constant
from aioresilience.integrations._client import Origin
from aioresilience.integrations.httpx import ResilientTransport

pytestmark = [pytest.mark.real_time, pytest.mark.starts_first]


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    async with serve() as server:
        yield server


def make_client(upstream: Upstream, **options: Any) -> httpx.AsyncClient:
    options.setdefault("retry", {"attempts": 3, "backoff": constant(0.01)})
    inner = options.pop("inner", None)
    return httpx.AsyncClient(
        base_url=upstream.url,
        transport=ResilientTransport(inner, **options),
        timeout=httpx.Timeout(5.0),
    )


async def test_statuses_retried_then_success(upstream: Upstream) -> None:
    upstream.script("/a", ("status", 503, {}), ("status", 502, {}))
    async with make_client(upstream) as http:
        response = await http.get("/a")
    assert response.status_code == 200 and response.text == "200" and upstream.hits["/a"] == 3


async def test_a_500_is_returned_not_retried(upstream: Upstream) -> None:
    upstream.script("/a", ("status", 500, {}))
    async with make_client(upstream) as http:
        assert (await http.get("/a")).status_code == 500
    assert upstream.hits["/a"] == 1


async def test_a_connection_reset_is_retried_for_get_not_post(upstream: Upstream) -> None:
    upstream.script("/get", ("reset",))
    upstream.script("/post", ("reset",))
    async with make_client(upstream) as http:
        assert (await http.get("/get")).status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await http.post("/post", content=b"order")
        upstream.script("/keyed", ("reset",))
        keyed = await http.post("/keyed", content=b"order", headers={"Idempotency-Key": "o-1"})
        assert keyed.status_code == 200
    assert (upstream.hits["/get"], upstream.hits["/post"], upstream.hits["/keyed"]) == (2, 1, 2)


async def test_connection_refused_is_retried_even_for_post() -> None:
    # A port nobody listens on: the request provably never left.
    attempts: list[int] = []
    transport = ResilientTransport(retry={"attempts": 3, "backoff": constant(0.01)})
    transport.policy.add_listener(lambda e: attempts.append(1) if e.name == "http_attempt" else 0)
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(httpx.ConnectError):
            await http.post("http://127.0.0.1:9/", content=b"x")
    assert len(attempts) == 3


async def test_a_stall_is_cut_by_the_attempt_timeout(upstream: Upstream) -> None:
    upstream.script("/a", ("stall", 5.0))
    async with make_client(upstream, attempt_timeout=0.3) as http:
        started = time.monotonic()
        response = await http.get("/a")
    assert response.status_code == 200 and time.monotonic() - started < 2.0
    assert upstream.hits["/a"] == 2


async def test_the_overall_timeout(upstream: Upstream) -> None:
    upstream.script("/a", ("stall", 5.0), ("stall", 5.0), ("stall", 5.0))
    async with make_client(upstream, attempt_timeout=0.3, timeout=0.5) as http:
        with pytest.raises(TimeoutExceeded):
            await http.get("/a")


async def test_retry_after_seconds_and_date(upstream: Upstream) -> None:
    date = email.utils.formatdate(time.time() + 1, usegmt=True)
    upstream.script("/s", ("status", 503, {"Retry-After": "1"}))
    upstream.script("/d", ("status", 429, {"Retry-After": date}))
    async with make_client(upstream, pacing=False) as http:
        started = time.monotonic()
        assert (await http.get("/s")).status_code == 200
        assert 0.9 <= time.monotonic() - started < 3.0
        started = time.monotonic()
        assert (await http.get("/d")).status_code == 200
        assert time.monotonic() - started < 3.0  # at most the date's second, rounded


async def test_slow_bodies_arrive_whole(upstream: Upstream) -> None:
    upstream.script("/slow", ("slow", 5, 0.02))
    async with make_client(upstream) as http:
        response = await http.get("/slow")
    assert response.content == b"chunk" * 5


async def test_one_connection_and_4mb_error_bodies_do_not_deadlock(upstream: Upstream) -> None:
    upstream.script("/big", ("big", 503), ("big", 503), ("big", 503))
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    async with make_client(
        upstream, inner=inner, retry={"attempts": 4, "backoff": constant(0.01)}, budget=None
    ) as http:
        http.timeout = httpx.Timeout(5.0, pool=2.0)  # a leak would end in PoolTimeout
        response = await http.get("/big")
        assert response.status_code == 200
        # exhausted attempts: the last 4 MB response comes back, readable
        upstream.script("/big", *[("big", 503)] * 4)
        last = await http.get("/big")
        assert last.status_code == 503 and len(last.content) == len(BIG)
    assert upstream.hits["/big"] == 8


async def test_ietf_fields_pace_the_client(upstream: Upstream) -> None:
    upstream.script(
        "/q",
        ("status", 200, {"RateLimit-Policy": '"q";q=2;w=1', "RateLimit": '"q";r=1;t=1'}),
        ("status", 200, {"RateLimit-Policy": '"q";q=2;w=1', "RateLimit": '"q";r=0;t=1'}),
    )
    async with make_client(upstream) as http:
        await http.get("/q")
        await http.get("/q")
        started = time.monotonic()
        await http.get("/q")  # remaining 0: waits for the reset
        assert 0.8 <= time.monotonic() - started < 2.5


async def test_legacy_fields_pace_the_client(upstream: Upstream) -> None:
    reset = str(int(time.time()) + 2)  # epoch seconds, GitHub's form
    upstream.script(
        "/q", ("status", 200, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset})
    )
    async with make_client(upstream) as http:
        await http.get("/q")
        started = time.monotonic()
        await http.get("/q")
        assert 0.5 <= time.monotonic() - started < 3.5


async def test_dead_host_then_the_breaker(upstream: Upstream) -> None:
    upstream.script("/dead", *[("status", 503, {})] * 20)
    async with make_client(
        upstream, retry=None, breaker={"failure_threshold": 3, "break_duration": 0.3}
    ) as http:
        for _ in range(3):
            assert (await http.get("/dead")).status_code == 503
        with pytest.raises(CircuitBreakerOpenError):
            await http.get("/dead")
        assert upstream.hits["/dead"] == 3
        await asyncio.sleep(0.35)
        upstream.steps["/dead"].clear()
        assert (await http.get("/dead")).status_code == 200


async def test_cancellation_mid_request_leaks_nothing(upstream: Upstream) -> None:
    upstream.script("/stall", ("stall", 30.0))
    inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=1))
    async with make_client(upstream, inner=inner, bulkhead={"max_concurrent": 1}) as http:
        http.timeout = httpx.Timeout(5.0, pool=2.0)
        task = asyncio.create_task(http.get("/stall"))
        await asyncio.wait_for(upstream.arrived.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # the one connection and the bulkhead slot are free again
        assert (await http.get("/after")).status_code == 200
        policy = http._transport.policy  # type: ignore[attr-defined]
        host = policy.host(Origin("http", "127.0.0.1", int(upstream.url.rsplit(":", 1)[1])))
        assert host.bulkhead.statistics().active == 0
        assert host.breaker.statistics().failures == 0
        assert host._pacing.in_flight == 0


def test_the_example_runs() -> None:
    example = Path(__file__).parent.parent / "examples" / "http_clients.py"
    result = subprocess.run(
        [sys.executable, str(example)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "flaky host: 20 calls, 20 succeeded" in out
    assert "dead host: 10 calls, 3 requests sent, 9 answered by the open breaker" in out
    assert "flaky host after the dead one: 200" in out
    assert "POST without Idempotency-Key: 503 after 1 request" in out
    assert "POST with Idempotency-Key: 201" in out
