"""The HTTP core over a limiter on Redis: the same admission, through ``await decide()``, with
the same headers (the policy comes from the limiter, not from the store's decisions). Real time
(the server's clock decides), long windows so time does not matter."""

from __future__ import annotations

import uuid

import pytest
from http_sfv import List as SfList

from aioresilience import TokenBucket
from aioresilience.integrations._http import Protection, RequestInfo, Rule, compose, route_key
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import RedisServer


@pytest.mark.real_time
async def test_a_shared_limiter_is_decided_remotely_with_the_same_headers(
    redis_server: RedisServer,
) -> None:
    # (Buckets, not hour-long fixed windows: those end on the hour, and a test run just before
    # it found the quota back between two requests.)
    store = RedisStore(
        redis_server.url, prefix=f"http-{uuid.uuid4().hex}", timeout=2.0, on_failure="deny"
    )
    try:
        limiter = TokenBucket(2, 2 / 3600, name="shared", store=store)
        assert limiter.shared is True
        assert (await limiter.decide(key="probe")).policy == limiter.policy  # as in process
        # A tuple key (composed) becomes a str for Redis.
        protection = Protection(Rule(limiter, key=compose(route_key(), route_key())))
        info = RequestInfo("GET", "/x", [], ("192.0.2.1", 1))
        rules = protection.select("GET", "/x")
        outcomes = [await protection.admit(info, rules) for _ in range(3)]
        assert [a.response is None for a in outcomes] == [True, True, False]
        fields = dict(outcomes[0].headers)
        policy = SfList()
        policy.parse(fields[b"ratelimit-policy"])
        assert [(i.value, dict(i.params)) for i in policy] == [("shared", {"q": 2, "w": 3600})]
        refusal = outcomes[2].response
        assert refusal is not None and refusal.status == 429
        assert int(dict(refusal.headers)[b"retry-after"]) >= 1
    finally:
        await store.aclose()


@pytest.mark.real_time
async def test_a_clients_long_key_is_limited_on_redis_as_in_memory(
    redis_server: RedisServer,
) -> None:
    """A key from the request past the store's max_key_length (a long path, a long header)
    raised ValueError in admit: a 500 where a limiter in memory limited the client. On a
    shared store it is keyed by its digest: limited, and apart from other keys."""
    store = RedisStore(redis_server.url, prefix=f"http-{uuid.uuid4().hex}", timeout=2.0)
    try:
        limiter = TokenBucket(1, 1 / 3600, name="long", store=store)
        protection = Protection(Rule(limiter, key=route_key()))
        rules = protection.select("GET", "/x")
        for path in ("/" + "p" * 600, "/" + "p" * 599 + "q", "/" + "é" * 300):
            info = RequestInfo("GET", path, [], ("192.0.2.1", 1))
            outcomes = [await protection.admit(info, rules) for _ in range(2)]
            assert [a.response is None for a in outcomes] == [True, False]
    finally:
        await store.aclose()


@pytest.mark.real_time
async def test_a_blank_key_or_an_enum_key_is_limited_on_redis_as_in_memory(
    redis_server: RedisServer,
) -> None:
    """A key function's blank value (a user whose name is "", an empty header) raised the
    store's "key must not be empty", a 500; a str enum member went as its repr(), another
    key than the value it equals (as it is in memory and for the limiter's own calls)."""
    import enum

    class Plan(enum.StrEnum):
        FREE = "free"

    store = RedisStore(redis_server.url, prefix=f"http-{uuid.uuid4().hex}", timeout=2.0)
    try:
        limiter = TokenBucket(1, 1 / 3600, name="odd", store=store)
        for value in ("", "   "):
            protection = Protection(Rule(limiter, key=lambda info, value=value: value))
            info = RequestInfo("GET", "/", [], ("192.0.2.1", 1))
            rules = protection.select("GET", "/")
            outcomes = [await protection.admit(info, rules) for _ in range(2)]
            assert [a.response is None for a in outcomes] == [True, False]
        protection = Protection(Rule(limiter, key=lambda info: Plan.FREE))
        rules = protection.select("GET", "/")
        assert (await limiter.decide(key="free")).allowed  # the value's own quota, spent
        admitted = await protection.admit(RequestInfo("GET", "/", [], None), rules)
        assert admitted.response is not None  # the member is the same key on Redis
    finally:
        await store.aclose()


@pytest.mark.real_time
async def test_a_clients_long_int_key_is_limited_on_redis_as_in_memory(
    redis_server: RedisServer,
) -> None:
    """An int key went to the store as it is, however long: a client's 600-digit account
    number (``int(header)``) was past max_key_length, the store's ValueError, a 500. It is
    keyed by the digest of its decimal text, as that text would be (42 and "42" are one key
    on Redis)."""
    store = RedisStore(redis_server.url, prefix=f"http-{uuid.uuid4().hex}", timeout=2.0)
    try:
        limiter = TokenBucket(1, 1 / 3600, name="long-int", store=store)
        for number in (10**600, -(10**600), 10**600 + 1):
            protection = Protection(Rule(limiter, key=lambda info, number=number: number))
            rules = protection.select("GET", "/")
            info = RequestInfo("GET", "/", [], ("192.0.2.1", 1))
            outcomes = [await protection.admit(info, rules) for _ in range(2)]
            assert [a.response is None for a in outcomes] == [True, False]
        protection = Protection(Rule(limiter, key=lambda info: str(10**600 + 2)))
        rules = protection.select("GET", "/")
        assert (await protection.admit(RequestInfo("GET", "/", [], None), rules)).response is None
        protection = Protection(Rule(limiter, key=lambda info: 10**600 + 2))
        rules = protection.select("GET", "/")
        refused = await protection.admit(RequestInfo("GET", "/", [], None), rules)
        assert refused.response is not None  # the int is one key with its decimal text
    finally:
        await store.aclose()
