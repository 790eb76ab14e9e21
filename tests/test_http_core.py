"""The framework-neutral HTTP core (integrations/_http.py): every algorithm's policy, keys and
the trusted-proxy walk, header fields parsed with http-sfv, Retry-After, the error mapping and
problem+json bodies, rule matching and construction errors. Async tests run in virtual time."""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import json
import math
import re
from typing import Any

import pytest
from http_sfv import Item as SfItem
from http_sfv import List as SfList
from hypothesis import given
from hypothesis import strategies as st

from aioresilience import (
    GCRA,
    BulkheadFull,
    CircuitBreakerOpenError,
    ConcurrencyLimited,
    Decision,
    FixedWindowCounter,
    LeakyBucket,
    LoadShed,
    Priority,
    RateLimited,
    RateLimiter,
    RatePolicy,
    SlidingWindowCounter,
    SlidingWindowLog,
    Throttled,
    TimeoutExceeded,
    TokenBucket,
)
from aioresilience._core.fixed_window import FixedWindowAlgorithm
from aioresilience._core.gcra import GCRAAlgorithm
from aioresilience._core.leaky_bucket import LeakyBucketMeter, LeakyBucketShaper
from aioresilience._core.ratelimit import decide, with_policy_name
from aioresilience._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from aioresilience._core.sliding_window_log import SlidingWindowLogAlgorithm
from aioresilience._core.token_bucket import TokenBucketAlgorithm
from aioresilience.integrations._http import (
    HEALTH_PATHS,
    QUOTA_EXCEEDED,
    TEMPORARY_REDUCED_CAPACITY,
    ErrorMapper,
    HeaderRenderer,
    HttpResponse,
    Protection,
    RequestInfo,
    Rule,
    client_address,
    compose,
    header_key,
    merge_fields,
    retry_after_header,
    route_key,
    user_key,
)


def req(
    path: str = "/",
    *,
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
    client: tuple[str, int] | None = ("203.0.113.7", 5000),
    route: str | None = None,
    user: object = None,
) -> RequestInfo:
    return RequestInfo(method, path, headers or [], client, route=route, user=user)


def sf_list(value: bytes) -> list[tuple[Any, dict[str, Any]]]:
    """Parse a structured-field List (raises on anything invalid)."""
    parsed = SfList()
    parsed.parse(value)
    return [(item.value, dict(item.params)) for item in parsed]


# -- policies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "quota", "window"),
    [
        (TokenBucketAlgorithm(capacity=10, refill_rate=2.0), 10, 5.0),
        (LeakyBucketMeter(capacity=8, leak_rate=4.0), 8, 2.0),
        # A shaper admits at once only when its line is clear: one unit per interval.
        (LeakyBucketShaper(capacity=6, leak_rate=3.0), 1, 1 / 3),
        (GCRAAlgorithm(interval=60 / 100, burst=10), 10, 6.0),  # web.md's example
        (FixedWindowAlgorithm(limit=100, window=60.0), 100, 60.0),
        (SlidingWindowLogAlgorithm(limit=5, window=1.0), 5, 1.0),
        (SlidingWindowCounterAlgorithm(limit=50, window=10.0), 50, 10.0),
    ],
)
def test_every_algorithm_describes_its_policy(algorithm: Any, quota: int, window: float) -> None:
    policy = algorithm.policy
    assert isinstance(policy, RatePolicy)
    assert (policy.quota, policy.unit) == (quota, "requests")
    assert policy.window == pytest.approx(window)
    # decide() carries it, and a renamed copy leaves the original as it was.
    _, decision = decide(algorithm, None, 0.0, 1)
    assert decision.policy is policy
    renamed = with_policy_name(algorithm, "mine")
    assert renamed.policy.name == "mine" and algorithm.policy.name != "mine"
    assert renamed.reserve(None, 0.0, 1, 0.0)[2]


async def test_a_client_spending_what_a_shaper_states_is_admitted() -> None:
    # A shaper at the edge (which refuses at once) stated q=5;w=5, and of 5 sent at once
    # 4 were refused, every round. It states what it admits: q at once, every w.
    from aioresilience.testing import ManualClock

    clock = ManualClock()
    shaper = LeakyBucket(5, 1.0, mode="shaper", name="shaper", clock=clock)
    protection = Protection(Rule(shaper))
    rules = protection.select("GET", "/")
    first = await protection.admit(req(), rules)
    ((name, policy),) = sf_list(dict(first.headers)[b"ratelimit-policy"])
    assert (name, policy) == ("shaper", {"q": 1, "w": 1})
    for _ in range(20):
        clock.advance(policy["w"])
        for _ in range(policy["q"]):
            assert (await protection.admit(req(), rules)).response is None


@pytest.mark.parametrize(
    ("make", "quota", "window"),
    [
        (lambda: TokenBucket(capacity=10, refill_rate=2.0, name="tb"), 10, 5.0),
        (lambda: LeakyBucket(capacity=4, leak_rate=2.0, name="tb"), 4, 2.0),
        (lambda: GCRA(rate="100/60s", burst=10, name="tb"), 10, 6.0),
        (lambda: FixedWindowCounter(max_requests=3, window_seconds=60.0, name="tb"), 3, 60.0),
        (lambda: SlidingWindowLog(max_requests=3, window_seconds=60.0, name="tb"), 3, 60.0),
        (lambda: SlidingWindowCounter(max_requests=3, window_seconds=60.0, name="tb"), 3, 60.0),
    ],
)
def test_the_limiter_name_is_the_policy_name(make: Any, quota: int, window: float) -> None:
    limiter = make()
    assert limiter.policy == RatePolicy("tb", quota, pytest.approx(window))  # type: ignore[arg-type]
    assert limiter.check().policy is limiter.policy
    assert limiter.shared is False


def test_a_decision_built_without_a_policy_still_works() -> None:
    assert Decision(True, 1, 0, 0.0, 0.0).policy is None


def test_a_custom_algorithm_without_a_policy_renders_its_name_only() -> None:
    class Plain:
        max_cost = 5
        horizon = 1.0

        def reserve(self, state: Any, now: float, cost: int, max_wait: float) -> Any:
            return state, now, True

        def cancel(self, state: Any, now: float, cost: int, at: float) -> Any:
            return state

        def inspect(self, state: Any, now: float) -> tuple[int, float]:
            return 5, 0.0

        def fresh_at(self, state: Any) -> float:
            return 0.0

    limiter: RateLimiter[Any] = RateLimiter(Plain(), name="plain")
    assert limiter.policy is None
    headers = dict(HeaderRenderer("ietf").render([(limiter, limiter.check())]))
    assert b"ratelimit-policy" not in headers
    assert sf_list(headers[b"ratelimit"]) == [("plain", {"r": 5, "t": 0})]


# -- keys -------------------------------------------------------------------------------------


def test_client_address_without_proxies_ignores_forwarding_headers() -> None:
    key = client_address()
    spoofed = [(b"x-forwarded-for", b"1.1.1.1"), (b"forwarded", b"for=2.2.2.2")]
    assert key(req(headers=spoofed)) == "203.0.113.7"
    assert key(req(client=None)) == "unknown"


def test_rotating_xff_from_an_untrusted_peer_is_no_bypass() -> None:
    key = client_address(trusted_proxies=["10.0.0.0/8"])
    keys = {key(req(headers=[(b"x-forwarded-for", f"198.51.100.{i}".encode())])) for i in range(50)}
    assert keys == {"203.0.113.7"}
    limiter = TokenBucket(capacity=3, refill_rate=0.001)
    allowed = [
        limiter.try_acquire(key=key(req(headers=[(b"x-forwarded-for", f"9.9.9.{i}".encode())])))
        for i in range(10)
    ]
    assert allowed.count(True) == 3


def test_trusted_chain_gives_the_right_most_untrusted_hop() -> None:
    key = client_address(trusted_proxies=["10.0.0.0/8", "192.168.1.1"])
    # The client wrote "6.6.6.6, 7.7.7.7"; our proxies appended the real peer and themselves.
    headers = [(b"x-forwarded-for", b"6.6.6.6, 7.7.7.7, 198.51.100.9, 10.1.2.3")]
    assert key(req(headers=headers, client=("192.168.1.1", 80))) == "198.51.100.9"
    # Several header lines read as one list, in order.
    lines = [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.9, 10.0.0.2")]
    assert key(req(headers=lines, client=("10.0.0.1", 80))) == "198.51.100.9"
    # No header from a trusted peer: the peer itself; all hops trusted: the left-most.
    assert key(req(client=("10.0.0.1", 80))) == "10.0.0.1"
    everyone = [(b"x-forwarded-for", b"10.0.0.5, 10.0.0.6")]
    assert key(req(headers=everyone, client=("10.0.0.1", 80))) == "10.0.0.5"


def test_an_ipv4_proxy_on_a_dual_stack_socket_is_trusted() -> None:
    # A server listening on "::" sees an IPv4 peer as ::ffff:a.b.c.d: the proxy is the IPv4
    # address it is, so the client behind it is read from its header (not keyed on the proxy).
    key = client_address(trusted_proxies=["10.0.0.0/8"])
    mapped = ("::ffff:10.0.0.2", 443)
    for i in range(3):
        xff = [(b"x-forwarded-for", f"198.51.100.{i}".encode())]
        assert key(req(headers=xff, client=mapped)) == f"198.51.100.{i}"
    # ...and an untrusted mapped peer's header is still ignored.
    spoofed = [(b"x-forwarded-for", b"198.51.100.1")]
    assert key(req(headers=spoofed, client=("::ffff:203.0.113.7", 1))) == "203.0.113.7"


def test_xff_hops_with_ports_or_brackets_key_on_the_address() -> None:
    # Some proxies (Azure Application Gateway) append "ip:port": one client, not one key per
    # connection; a trusted proxy's own hop with a port is still recognised as trusted.
    key = client_address(trusted_proxies=["10.0.0.0/8"])
    for hops, expected in [
        (b"203.0.113.9:50001", "203.0.113.9"),
        (b"203.0.113.9:50002, 10.0.0.2:443", "203.0.113.9"),
        (b"[2001:db8::1]:1", "2001:db8::/64"),
        (b"[2001:db8::1]", "2001:db8::/64"),
        (b"2001:db8::1", "2001:db8::/64"),
    ]:
        headers = [(b"x-forwarded-for", hops)]
        assert key(req(headers=headers, client=("10.0.0.1", 80))) == expected, hops


def test_forwarded_rfc7239() -> None:
    key = client_address(trusted_proxies="127.0.0.1/32", forwarded="forwarded")
    value = b'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, for=127.0.0.1'
    got = key(req(headers=[(b"forwarded", value)], client=("127.0.0.1", 1)))
    assert got == "2001:db8:cafe::/64"  # IPv6 keyed by its /64
    v4 = [(b"forwarded", b'for="198.51.100.1:8080";by=127.0.0.1')]
    assert key(req(headers=v4, client=("127.0.0.1", 1))) == "198.51.100.1"
    # This key reads Forwarded only: an X-Forwarded-For from the client is ignored.
    xff = [(b"x-forwarded-for", b"1.1.1.1")]
    assert key(req(headers=xff, client=("127.0.0.1", 1))) == "127.0.0.1"
    # An obfuscated identifier set by the trusted proxy names the client.
    hidden = [(b"forwarded", b"for=_hidden")]
    assert key(req(headers=hidden, client=("127.0.0.1", 1))) == "_hidden"


def test_ipv6_prefix() -> None:
    assert client_address()(req(client=("2001:db8:1:2:3:4:5:6", 1))) == "2001:db8:1:2::/64"
    exact = client_address(ipv6_prefix=128)
    assert exact(req(client=("2001:db8::1", 1))) == "2001:db8::1"
    assert client_address()(req(client=("::ffff:192.0.2.1", 1))) == "192.0.2.1"


@pytest.mark.parametrize(
    ("cidr", "message"),
    [
        ("10.0.0.0/33", "'10.0.0.0/33' is not an IP address or CIDR"),
        ("not-an-ip", "'not-an-ip' is not an IP address"),
        ("10.0.0.1/8", "did you mean '10.0.0.0/8'"),
    ],
)
def test_a_malformed_cidr_names_itself(cidr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client_address(trusted_proxies=["127.0.0.1", cidr])
    with pytest.raises(ValueError, match=r"trusted_proxies\[1\]"):
        client_address(trusted_proxies=["127.0.0.1", cidr])


def test_key_construction_errors() -> None:
    with pytest.raises(ValueError, match="forwarded must be"):
        client_address(forwarded="x-real-ip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ipv6_prefix"):
        client_address(ipv6_prefix=0)
    with pytest.raises(TypeError, match="CIDR string"):
        client_address(trusted_proxies=[10])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="header name"):
        header_key("")
    with pytest.raises(TypeError, match="at least two"):
        compose(route_key())


def test_header_user_route_and_composed_keys() -> None:
    api = header_key("X-API-Key")
    assert api(req(headers=[(b"x-api-key", b"k-1")])) == "k-1"
    assert api(req()) == "203.0.113.7"  # the fallback

    class User:
        is_authenticated = True
        identity = "alice"

    class Anonymous:
        is_authenticated = False

    users = user_key()
    assert users(req(user=User())) == "alice"
    assert users(req(user=Anonymous())) == "203.0.113.7"
    assert route_key()(req("/items/7", method="POST", route="/items/{id}")) == "POST /items/{id}"
    # HEAD runs the GET handler: one route's budget, not a second one.
    assert route_key()(req("/items/7", method="HEAD", route="/items/{id}")) == "GET /items/{id}"
    both = compose(client_address(), route_key())
    assert both(req("/a")) == ("203.0.113.7", "GET /a")


async def test_async_keys_compose_and_are_awaited() -> None:
    async def tenant(request: RequestInfo) -> str:
        await asyncio.sleep(0)
        return "t-1"

    key = compose(tenant, client_address())
    assert await key(req()) == ("t-1", "203.0.113.7")
    limiter = TokenBucket(capacity=1, refill_rate=0.001)
    protection = Protection(Rule(limiter, key=key))
    first = await protection.admit(req(), protection.select("GET", "/"))
    second = await protection.admit(req(), protection.select("GET", "/"))
    assert first.response is None and second.response is not None
    assert limiter.remaining(("t-1", "203.0.113.7")) == 0


# -- headers ----------------------------------------------------------------------------------


def test_ietf_fields_are_valid_structured_field_lists() -> None:
    per_ip = TokenBucket(capacity=10, refill_rate=2.0, name="per-ip")
    daily = FixedWindowCounter(max_requests=1000, window_seconds=86400.0, name='da"ily\\')
    renderer = HeaderRenderer("ietf")
    decisions = [(per_ip, per_ip.check()), (daily, daily.check(cost=3))]
    headers = renderer.render(decisions)
    names = [name for name, _ in headers]
    assert names == [b"ratelimit-policy", b"ratelimit"]  # one field each, merged
    fields = dict(headers)
    assert sf_list(fields[b"ratelimit-policy"]) == [
        ("per-ip", {"q": 10, "w": 5}),
        ('da"ily\\', {"q": 1000, "w": 86400}),
    ]
    ratelimit = sf_list(fields[b"ratelimit"])
    assert [name for name, _ in ratelimit] == ["per-ip", 'da"ily\\']
    assert ratelimit[0][1] == {"r": 9, "t": 1}
    assert ratelimit[1][1]["r"] == 997 and 0 < ratelimit[1][1]["t"] <= 86400
    # The policy bytes are built once per limiter.
    assert renderer.prepare(per_ip) is renderer.prepare(per_ip)


def test_legacy_and_both_styles() -> None:
    limiter = SlidingWindowLog(max_requests=5, window_seconds=30.0, name="w")
    legacy = dict(HeaderRenderer("legacy").render([(limiter, limiter.check(cost=2))]))
    assert legacy == {
        b"x-ratelimit-limit": b"5",
        b"x-ratelimit-remaining": b"3",
        b"x-ratelimit-reset": b"30",  # delta seconds, not an epoch
    }
    both = dict(HeaderRenderer("both").render([(limiter, limiter.check())]))
    assert set(both) == {
        b"ratelimit-policy",
        b"ratelimit",
        b"x-ratelimit-limit",
        b"x-ratelimit-remaining",
        b"x-ratelimit-reset",
    }
    assert HeaderRenderer("none").render([(limiter, limiter.check())]) == []
    # Every field is valid structured-field syntax too: the legacy trio as Integers.
    for name in (b"x-ratelimit-limit", b"x-ratelimit-remaining", b"x-ratelimit-reset"):
        item = SfItem()
        item.parse(both[name])
        assert isinstance(item.value, int) and item.value >= 0


def test_legacy_reports_the_most_restrictive_limit() -> None:
    wide = FixedWindowCounter(max_requests=100, window_seconds=60.0, name="wide")
    narrow = FixedWindowCounter(max_requests=2, window_seconds=1.0, name="narrow")
    fields = dict(HeaderRenderer("legacy").render([(wide, wide.check()), (narrow, narrow.check())]))
    assert fields[b"x-ratelimit-limit"] == b"2" and fields[b"x-ratelimit-remaining"] == b"1"


def test_unknown_header_style_fails_naming_it() -> None:
    with pytest.raises(ValueError, match="'IETF'"):
        HeaderRenderer("IETF")
    with pytest.raises(ValueError, match="'rfc'"):
        Protection(Rule(TokenBucket(capacity=1, refill_rate=1.0)), headers="rfc")


def test_policy_names_must_be_printable_ascii() -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0, name="débit")
    with pytest.raises(ValueError, match="printable ASCII"):
        HeaderRenderer().prepare(limiter)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.2, b"1"), (1.0, b"1"), (1.000001, b"2"), (59.5, b"60"), (0.0, b"0")],
)
def test_retry_after_rounds_up(seconds: float, expected: bytes) -> None:
    assert retry_after_header(seconds) == (b"retry-after", expected)
    item = SfItem()
    item.parse(expected)  # delay-seconds is also a valid sf-integer
    assert item.value == int(expected)


@pytest.mark.parametrize("seconds", [None, math.inf, math.nan, -1.0])
def test_retry_after_is_omitted_when_unknown_or_infinite(seconds: float | None) -> None:
    assert retry_after_header(seconds) is None


# -- admission --------------------------------------------------------------------------------


async def test_admission_headers_on_success_and_refusal() -> None:
    limiter = TokenBucket(capacity=2, refill_rate=0.5, name="per-ip")
    protection = Protection(Rule(limiter), headers="ietf")
    rules = protection.select("GET", "/x")
    for remaining in (1, 0):
        admitted = await protection.admit(req("/x"), rules)
        assert admitted.response is None
        fields = dict(admitted.headers)
        assert b"retry-after" not in fields  # never on a success
        assert sf_list(fields[b"ratelimit"])[0][1]["r"] == remaining
    refused = await protection.admit(req("/x"), rules)
    assert refused.response is not None
    status, headers, body = refused.response
    fields = dict(headers)
    assert status == 429
    assert fields[b"content-type"] == b"application/problem+json"
    assert fields[b"retry-after"] == b"2"  # 1 token at 0.5/s
    assert sf_list(fields[b"ratelimit-policy"]) == [("per-ip", {"q": 2, "w": 4})]
    assert sf_list(fields[b"ratelimit"]) == [("per-ip", {"r": 0, "t": 4})]
    problem = json.loads(body)
    assert problem["type"] == QUOTA_EXCEEDED and problem["status"] == 429
    assert problem["violated-policies"] == ["per-ip"]
    await asyncio.sleep(2.0)  # virtual time: the retry-after was honest
    assert (await protection.admit(req("/x"), rules)).response is None


async def test_one_limit_per_client_across_routes_by_default() -> None:
    limiter = FixedWindowCounter(max_requests=2, window_seconds=60.0)
    protection = Protection(Rule(limiter))
    outcomes = []
    for path in ("/a", "/b", "/c"):
        admission = await protection.admit(req(path), protection.select("GET", path))
        outcomes.append(admission.response is None)
    assert outcomes == [True, True, False]
    other = req("/a", client=("198.51.100.1", 1))
    assert (await protection.admit(other, protection.select("GET", "/a"))).response is None


async def test_cost_priority_and_guards_of_the_rules() -> None:
    limiter = FixedWindowCounter(max_requests=20, window_seconds=60.0)
    marker = object()
    protection = Protection(
        [
            Rule(limiter, paths="/upload", cost=lambda r: 4),
            Rule(guards=[marker], paths="/{p:path}", priority="sheddable", priority_header="X-P"),
        ]
    )
    rules = protection.select("POST", "/upload")
    admission = await protection.admit(req("/upload", method="POST"), rules)
    assert limiter.remaining("203.0.113.7") == 16
    assert admission.guards == (marker,)
    assert admission.priority is Priority.SHEDDABLE
    critical = req("/upload", method="POST", headers=[(b"x-p", b"critical")])
    assert (await protection.admit(critical, rules)).priority is Priority.CRITICAL
    bogus = req("/upload", method="POST", headers=[(b"x-p", b"urgent")])
    assert (await protection.admit(bogus, rules)).priority is Priority.SHEDDABLE


def test_merge_fields_keeps_one_field_per_name() -> None:
    ours = [
        (b"ratelimit-policy", b'"outer";q=100;w=60'),
        (b"ratelimit", b'"outer";r=99;t=60'),
        (b"x-ratelimit-limit", b"100"),
        (b"x-ratelimit-remaining", b"99"),
        (b"x-ratelimit-reset", b"60"),
    ]
    theirs = [
        (b"content-type", b"text/plain"),
        (b"ratelimit", b'"inner";r=1;t=5'),
        (b"x-ratelimit-limit", b"2"),
        (b"x-ratelimit-remaining", b"1"),
        (b"x-ratelimit-reset", b"5"),
    ]
    merged = merge_fields(iter(theirs), ours)
    names = [name for name, _ in merged]
    assert len(names) == len(set(names))
    fields = dict(merged)
    assert fields[b"ratelimit"] == b'"inner";r=1;t=5, "outer";r=99;t=60'
    assert fields[b"ratelimit-policy"] == b'"outer";q=100;w=60'
    assert fields[b"x-ratelimit-remaining"] == b"1"  # the tighter trio, theirs
    tighter = [(n, b"0" if n == b"x-ratelimit-remaining" else v) for n, v in ours]
    assert dict(merge_fields(theirs, tighter))[b"x-ratelimit-limit"] == b"100"  # ours now
    odd = [(b"x-ratelimit-remaining", b"lots")]  # the app's own, not a number: it stays
    assert dict(merge_fields(odd, ours))[b"x-ratelimit-remaining"] == b"lots"
    assert merge_fields([(b"a", b"1")], ours) == [(b"a", b"1"), *ours]


def test_a_fixed_cost_no_limiter_can_admit_fails_at_construction() -> None:
    small = TokenBucket(capacity=2, refill_rate=1, name="small")
    with pytest.raises(ValueError, match=r"cost=5 .* limiters\[1\] 'small'.* at once is 2"):
        Rule([TokenBucket(capacity=10, refill_rate=1), small], cost=5)
    assert small.max_cost == 2


@pytest.mark.parametrize("fast", [False, True], ids=["admit", "plan"])
async def test_a_cost_function_above_the_limit_is_a_429_without_retry_after(fast: bool) -> None:
    big = FixedWindowCounter(max_requests=100, window_seconds=60.0, name="big")
    limiter = TokenBucket(capacity=10, refill_rate=1, name="upload")

    def size(request: RequestInfo) -> int:
        return int(request.header(b"content-length") or b"1")

    protection = Protection([Rule(big), Rule(limiter, cost=size)])
    heavy = req("/", method="POST", headers=[(b"content-length", b"50")])

    async def outcome(info: RequestInfo) -> HttpResponse | None:
        if not fast:
            return (await protection.admit(info, protection.select("POST", "/"))).response
        plan = protection.plan("POST", "/")
        assert plan is not None and plan.sync and not plan.by_peer
        now = plan.now(info)
        return now if isinstance(now, HttpResponse) else None

    status, headers, body = _fields(await outcome(heavy))
    assert status == 429 and b"retry-after" not in headers  # no wait would admit it
    assert body["violated-policies"] == ["upload"]
    # big had admitted it (r=99) and gave it back: a refused request spends nothing
    # ... and states it as it now stands: all of it, nothing to wait for (t=0, as fresh)
    assert sf_list(headers[b"ratelimit"]) == [("big", {"r": 100, "t": 0})]
    assert big.remaining("203.0.113.7") == 100
    assert limiter.remaining("203.0.113.7") == 10  # nothing taken
    light = req("/", method="POST", headers=[(b"content-length", b"4")])
    assert await outcome(light) is None and limiter.remaining("203.0.113.7") == 6

    def broken(request: RequestInfo) -> int:
        return 0

    protection = Protection(Rule(limiter, cost=broken))
    with pytest.raises(ValueError, match=r"cost function .*broken.* >= 1, got 0"):
        await protection.admit(light, protection.select("POST", "/"))

    def text(request: RequestInfo) -> int:
        return "3"  # type: ignore[return-value]

    protection = Protection(Rule(limiter, cost=text))
    with pytest.raises(TypeError, match=r"cost function .*text.* an int, got '3'"):
        await protection.admit(light, protection.select("POST", "/"))

    class Units(enum.IntEnum):
        THREE = 3

    protection = Protection(Rule(limiter, cost=lambda request: Units.THREE))
    assert (await protection.admit(light, protection.select("POST", "/"))).response is None
    assert limiter.remaining("203.0.113.7") == 3  # an int subclass is an int


async def test_a_request_cancelled_while_a_later_rule_keys_it_spends_nothing() -> None:
    # The client goes away (the request's task cancelled) while the second rule's async key
    # looks the user up: the first rule's limiter had admitted it and gives it back, as for
    # a refusal; a cancelled request has had no effect.
    per_ip = FixedWindowCounter(max_requests=5, window_seconds=60.0, name="per-ip")
    per_user = FixedWindowCounter(max_requests=100, window_seconds=86400.0, name="per-user")
    looking_up = asyncio.Event()

    async def user(request: RequestInfo) -> str:
        looking_up.set()
        await asyncio.sleep(1.0)
        return "alice"

    protection = Protection([Rule(per_ip), Rule(per_user, key=user)])
    admitting = asyncio.create_task(protection.admit(req("/"), protection.select("GET", "/")))
    await looking_up.wait()
    admitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await admitting
    assert per_ip.remaining("203.0.113.7") == 5
    assert per_ip.statistics().admitted == 0
    assert per_user.remaining("alice") == 100


@pytest.mark.parametrize("fast", [False, True], ids=["admit", "plan"])
async def test_a_request_whose_later_key_raises_spends_nothing(fast: bool) -> None:
    per_ip = FixedWindowCounter(max_requests=5, window_seconds=60.0, name="per-ip")
    per_user = FixedWindowCounter(max_requests=100, window_seconds=86400.0, name="per-user")

    def user(request: RequestInfo) -> str:
        raise LookupError("no such user")

    protection = Protection([Rule(per_ip), Rule(per_user, key=user)])
    with pytest.raises(LookupError):
        if fast:
            plan = protection.plan("GET", "/")
            assert plan is not None and plan.sync and not plan.by_peer
            plan.now(req("/"))
        else:
            await protection.admit(req("/"), protection.select("GET", "/"))
    assert per_ip.remaining("203.0.113.7") == 5  # the request went no further: given back


class _RefundFails(FixedWindowCounter):
    """A limiter whose refund raises, as a store's error would."""

    def refund(self, *args: Any, **kwargs: Any) -> Any:
        raise OSError("store away")


async def test_a_refund_that_raises_does_not_give_the_others_back_twice() -> None:
    # A refused request's refunds: one raising (a store's error) left `charged` as it was,
    # and the clean-up on the way out refunded the limiters before it a second time, giving
    # back a unit of another request (admitting past the bound).
    first = FixedWindowCounter(max_requests=5, window_seconds=60.0, name="first")
    second = _RefundFails(max_requests=5, window_seconds=60.0, name="second")
    last = FixedWindowCounter(max_requests=1, window_seconds=60.0, name="last")
    protection = Protection([Rule(first), Rule(second), Rule(last)])
    rules = protection.select("GET", "/")
    assert (await protection.admit(req("/"), rules)).response is None  # all three spent one
    with pytest.raises(OSError, match="store away"):
        await protection.admit(req("/"), rules)  # `last` refuses; second's refund raises
    assert first.remaining("203.0.113.7") == 4  # the first request's unit is still spent


async def test_a_refund_that_raises_still_has_the_limiters_after_it_give_back() -> None:
    # A refused request's refunds: one raising (a store's error) stopped the others, so the
    # limiters after it kept the refused request's unit (recorded a rejected request).
    first = FixedWindowCounter(max_requests=5, window_seconds=60.0, name="first")
    second = _RefundFails(max_requests=5, window_seconds=60.0, name="second")
    third = FixedWindowCounter(max_requests=5, window_seconds=60.0, name="third")
    last = FixedWindowCounter(max_requests=1, window_seconds=60.0, name="last")
    protection = Protection([Rule(first), Rule(second), Rule(third), Rule(last)])
    rules = protection.select("GET", "/")
    assert (await protection.admit(req("/"), rules)).response is None  # all four spent one
    with pytest.raises(OSError, match="store away"):
        await protection.admit(req("/"), rules)  # `last` refuses; second's refund raises
    assert first.remaining("203.0.113.7") == 4  # given back once
    assert third.remaining("203.0.113.7") == 4  # given back too, after second's error


# -- errors -----------------------------------------------------------------------------------


def _fields(response: HttpResponse | None) -> tuple[int, dict[bytes, bytes], dict[str, Any]]:
    assert response is not None
    return response.status, dict(response.headers), json.loads(response.body)


def test_rate_limited_maps_to_429_quota_exceeded() -> None:
    error = RateLimited("x", retry_after=2.5, limiter="per-ip", key="k")
    status, headers, body = _fields(ErrorMapper()(error))
    assert status == 429 and headers[b"retry-after"] == b"3"
    assert headers[b"content-type"] == b"application/problem+json"
    assert body["type"] == QUOTA_EXCEEDED and body["violated-policies"] == ["per-ip"]
    assert "k" not in json.dumps(body)  # the key is never echoed


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (CircuitBreakerOpenError("o", retry_after=4.2, breaker="b", state="open"), b"5"),
        (CircuitBreakerOpenError("o", retry_after=math.inf, breaker="b", state="open"), None),
        (BulkheadFull("f", retry_after=None), None),
        (BulkheadFull("f", retry_after=0.3), b"1"),
        (LoadShed("s"), None),
        (Throttled("t", retry_after=1.0), b"1"),
        (ConcurrencyLimited("c"), None),
    ],
)
def test_capacity_refusals_map_to_503(error: Exception, retry_after: bytes | None) -> None:
    status, headers, body = _fields(ErrorMapper()(error))
    assert status == 503 and headers.get(b"retry-after") == retry_after
    assert body["type"] == TEMPORARY_REDUCED_CAPACITY and body["status"] == 503


def test_timeout_maps_to_504_and_other_errors_are_not_ours() -> None:
    status, headers, body = _fields(ErrorMapper()(TimeoutExceeded("t", seconds=1.0)))
    assert status == 504 and b"retry-after" not in headers and body["status"] == 504
    assert ErrorMapper()(ValueError("boom")) is None
    assert ErrorMapper()(TimeoutError()) is None  # not one of ours


def test_overrides_most_specific_class_wins() -> None:
    def teapot(exc: BaseException) -> HttpResponse:
        return HttpResponse(418, [], b"short and stout")

    mapper = ErrorMapper({LoadShed: teapot, CircuitBreakerOpenError: 502, ValueError: 400})
    assert mapper(LoadShed("s")) == HttpResponse(418, [], b"short and stout")
    status, headers, _ = _fields(
        mapper(CircuitBreakerOpenError("o", retry_after=1.0, breaker="b", state="open"))
    )
    assert status == 502 and b"retry-after" not in headers
    assert _fields(mapper(ValueError()))[0] == 400
    assert _fields(mapper(BulkheadFull("f")))[0] == 503  # untouched defaults stay
    assert _fields(mapper(RateLimited("x", retry_after=1, limiter="l")))[0] == 429


def test_error_mapper_construction_errors() -> None:
    with pytest.raises(TypeError, match="exception types"):
        ErrorMapper({"RateLimited": 429})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"errors\[LoadShed\].*400..599"):
        ErrorMapper({LoadShed: 200})
    with pytest.raises(TypeError, match=r"errors\[LoadShed\]"):
        ErrorMapper({LoadShed: "503"})  # type: ignore[dict-item]
    # Not a mapping: an AttributeError ('float' object has no attribute 'items') before.
    for bad in (1.5, [(LoadShed, 503)]):
        with pytest.raises(TypeError, match="errors must be a mapping"):
            ErrorMapper(bad)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="errors must be a mapping"):
            Protection(Rule(TokenBucket(capacity=1, refill_rate=1.0)), errors=bad)  # type: ignore[arg-type]

    async def factory(exc: BaseException) -> HttpResponse:  # its coroutine was the response
        return HttpResponse(503, [], b"")

    with pytest.raises(TypeError, match=r"errors\[LoadShed\] must be .* plain \(sync\)"):
        ErrorMapper({LoadShed: factory})  # type: ignore[dict-item]


def test_rule_refuses_an_async_cost_function() -> None:
    # Accepted, it failed every request: a coroutine, never awaited, is not a cost.
    async def cost(request: RequestInfo) -> int:
        return 1

    with pytest.raises(TypeError, match="Rule cost must be an int or a plain"):
        Rule(TokenBucket(capacity=1, refill_rate=1.0), cost=cost)  # type: ignore[arg-type]


# -- rules ------------------------------------------------------------------------------------


def test_rule_matching() -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    rule = Rule(
        limiter,
        paths=["/items/{id}", "/api/{rest:path}", "/exact"],
        methods=["get", "POST"],
        exclude_paths="/api/internal/{rest:path}",
        exclude_methods="POST",
    )
    assert rule.matches("GET", "/items/7")
    assert not rule.matches("GET", "/items/7/parts")  # {id} is one segment
    assert rule.matches("GET", "/api/v1/x/y")
    assert rule.matches("GET", "/exact") and not rule.matches("GET", "/exactly")
    assert not rule.matches("POST", "/exact")  # excluded method
    assert not rule.matches("DELETE", "/exact")  # not in methods
    assert not rule.matches("GET", "/api/internal/z")
    # The route template, when the framework knows it, matches as itself.
    assert rule.matches("GET", "/items/%7B", route="/items/{id}")


def test_typed_path_parameters_match_as_starlette_converts_them() -> None:
    # {id:int} matched any segment ("/items/abc"), unlike the route it mirrors.
    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    rule = Rule(limiter, paths=["/items/{id:int}", "/price/{p:float}", "/u/{u:uuid}"])
    assert rule.matches("GET", "/items/42") and not rule.matches("GET", "/items/abc")
    assert rule.matches("GET", "/price/3") and rule.matches("GET", "/price/3.25")
    assert not rule.matches("GET", "/price/3.") and not rule.matches("GET", "/price/x")
    assert rule.matches("GET", "/u/12345678-1234-1234-1234-123456789abc")
    assert not rule.matches("GET", "/u/not-a-uuid")
    assert rule.matches("GET", "/items/%7B", route="/items/{id:int}")  # the template itself


def test_uuid_path_parameters_match_every_form_starlette_accepts() -> None:
    # Starlette's uuid convertor takes upper-case hex and hyphen-less forms too.
    rule = Rule(TokenBucket(capacity=1, refill_rate=1.0), paths="/u/{u:uuid}")
    assert rule.matches("GET", "/u/12345678-1234-1234-1234-123456789ABC")
    assert rule.matches("GET", "/u/12345678123412341234123456789abc")
    assert not rule.matches("GET", "/u/12345678-1234-1234-1234-123456789abg")


def test_a_rule_naming_get_covers_head() -> None:
    # Starlette's Route and aiohttp's add_get run the GET handler for HEAD: a GET-only rule
    # left HEAD unlimited (the same handler, run without limit).
    rule = Rule(TokenBucket(capacity=1, refill_rate=1.0), methods=["GET"])
    assert rule.matches("GET", "/x") and rule.matches("HEAD", "/x")
    assert not rule.matches("POST", "/x")
    excluded = Rule(TokenBucket(capacity=1, refill_rate=1.0), methods="GET", exclude_methods="HEAD")
    assert not excluded.matches("HEAD", "/x")


def test_a_rule_whose_methods_are_all_exempt_fails_at_start_up() -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    with pytest.raises(ValueError, match=r"rules\[0\] methods \['OPTIONS'\] are all in exempt"):
        Protection(Rule(limiter, methods=["OPTIONS"]), exempt_methods=["OPTIONS"])


def test_a_header_key_name_must_be_a_field_name() -> None:
    for name in ("x api key", "x-key:", "", " x-key", "x-kéy"):
        with pytest.raises(ValueError, match="header_key: name must be a header name"):
            header_key(name)
    assert header_key("X-Api-Key").name == b"x-api-key"


def test_a_clients_long_header_or_raw_path_is_held_as_a_digest_not_in_full() -> None:
    # A key of 8 KB (a client's header) was held whole: max_keys of them, gigabytes. A long
    # one is its digest: one key per value as before, of a bounded size.
    by_header = header_key("X-Api-Key")
    long = [RequestInfo("GET", "/", [(b"x-api-key", bytes([c]) * 8000)], None) for c in b"ab"]
    keys = [by_header(info) for info in long]
    assert all(len(key) < 80 for key in keys) and keys[0] != keys[1]
    assert keys[0] == by_header(long[0])  # the same value, the same key
    short = RequestInfo("GET", "/", [(b"x-api-key", b"k" * 128)], None)
    assert by_header(short) == "k" * 128  # up to 128 bytes, as it is
    by_route = route_key()
    paths = [RequestInfo("GET", "/" + c * 5000, [], None) for c in "ab"]
    assert len({by_route(info) for info in paths}) == 2
    assert all(len(by_route(info)) < 80 for info in paths)
    assert by_route(RequestInfo("GET", "/items/1", [], None)) == "GET /items/1"
    templated = RequestInfo("GET", "/" + "a" * 5000, [], None, "/{name}")
    assert by_route(templated) == "GET /{name}"


def test_exempt_paths_and_methods() -> None:
    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    protection = Protection(Rule(limiter), exempt_paths=HEALTH_PATHS, exempt_methods=["OPTIONS"])
    assert protection.select("GET", "/metrics") == ()
    assert protection.select("GET", "/healthz") == ()
    assert protection.select("OPTIONS", "/x") == ()
    assert len(protection.select("GET", "/x")) == 1
    assert protection.select("GET", "/x") is protection.select("GET", "/x")  # cached


def test_the_plan_cache_is_bounded_and_stays_right_when_it_is_cleared() -> None:
    """Raw paths (and methods, and routes) come from clients: the cache of plans is bounded.
    Cleared in place, it keeps giving the same answers, and ``plans`` (what the ASGI
    middleware reads inline) stays the same dict."""
    from aioresilience.integrations._http import _CACHE_MAX

    limiter = TokenBucket(capacity=1, refill_rate=1.0)
    protection = Protection([Rule(limiter, paths="/api/{rest:path}")], exempt_paths=HEALTH_PATHS)
    plans = protection.plans
    guarded = protection.plan("GET", "/api/0")
    assert guarded is not None and guarded.rules == protection.rules
    for i in range(3 * _CACHE_MAX):
        route = "/api/{rest:path}" if i % 3 == 0 else None
        method = "GET" if i % 2 else f"M{i % 7}"
        expected = None if i % 5 == 0 else guarded
        path = "/healthz" if expected is None else f"/api/{i}"
        assert protection.plan(method, path, route) is expected  # the same Plan per rules
        cached = sum(map(len, plans.values())) + sum(
            len(paths) for routes in protection._routed.values() for paths in routes.values()
        )
        assert 1 <= cached <= _CACHE_MAX
    assert protection.plans is plans
    assert protection.plan("GET", "/other") is None  # no rule selects it


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"methods": []}, ValueError, "methods is empty"),
        ({"paths": []}, ValueError, "paths is empty"),
        ({"methods": ["GET"], "exclude_methods": ["GET"]}, ValueError, "all in exclude"),
        ({"paths": "items"}, ValueError, "starting with '/'"),
        ({"paths": "/items/{id"}, ValueError, "malformed parameter in '/items/{id'"),
        ({"paths": "/items/{id:slug}"}, ValueError, "unknown converter 'slug'"),
        ({"methods": ["GE T"]}, ValueError, "'GE T' is not an HTTP method"),
        ({"priority": "urgent"}, ValueError, "no priority 'urgent'"),
        ({"priority": 3}, ValueError, "no priority 3"),
        ({"key": "client"}, TypeError, "key must be a callable"),
        ({"cost": 0}, ValueError, "cost must be"),
        ({"priority_header": ""}, ValueError, "priority_header"),
    ],
)
def test_rule_construction_errors_name_the_problem(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Rule(TokenBucket(capacity=1, refill_rate=1.0), **options)


def test_rule_needs_something_to_apply() -> None:
    with pytest.raises(ValueError, match="protects nothing"):
        Rule()
    with pytest.raises(TypeError, match=r"limiters\[0\]"):
        Rule(["not a limiter"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"rules\[0\]"):
        Protection(["rule"])  # type: ignore[list-item]


@given(
    hops=st.lists(st.ip_addresses().map(str), min_size=1, max_size=6),
    untrusted_peer=st.booleans(),
)
def test_forwarding_headers_never_choose_the_key_of_an_untrusted_peer(
    hops: list[str], untrusted_peer: bool
) -> None:
    """Whatever the client writes: from an untrusted peer the key is the peer; through a
    trusted proxy it is the right-most hop outside the trusted networks (or the left-most)."""
    trusted = "10.0.0.0/8"
    key = client_address(trusted_proxies=[trusted], ipv6_prefix=128)
    peer = ("203.0.113.5", 1) if untrusted_peer else ("10.9.9.9", 1)
    headers = [(b"x-forwarded-for", ", ".join(hops).encode())]
    got = key(req(headers=headers, client=peer))
    if untrusted_peer:
        assert got == "203.0.113.5"
        return
    network = ipaddress.ip_network(trusted)
    # An IPv4-mapped hop (::ffff:10.0.0.2, from a dual-stack socket) is its IPv4 address, for
    # trust as for the key.
    normal = [
        a.ipv4_mapped if a.version == 6 and a.ipv4_mapped is not None else a
        for a in map(ipaddress.ip_address, hops)
    ]
    outside = [a for a in normal if a not in network]
    expected = outside[-1] if outside else normal[0]
    assert got == str(expected)


def test_bad_policy_names_fail_at_start_up() -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Protection(Rule(TokenBucket(capacity=1, refill_rate=1.0, name="débit")))
    twins = [TokenBucket(capacity=1, refill_rate=1.0) for _ in range(2)]
    with pytest.raises(ValueError, match="both named 'TokenBucket'"):
        Protection([Rule(twins[0]), Rule(twins[1], paths="/api/{p:path}")])
    # One limiter in two rules is one policy, not a clash.
    Protection([Rule(twins[0], paths="/a"), Rule(twins[0], paths="/b")])
    # Legacy fields and none name no policy: twins are no clash there.
    for style in ("legacy", "none"):
        Protection([Rule(twins[0]), Rule(twins[1], paths="/api/{p:path}")], headers=style)


async def test_a_refusal_by_the_second_limiter_reports_both() -> None:
    per_ip = FixedWindowCounter(max_requests=100, window_seconds=60.0, name="per-ip")
    per_key = FixedWindowCounter(max_requests=1, window_seconds=60.0, name="per-key")
    protection = Protection(
        [Rule(per_ip), Rule(per_key, key=header_key("x-api-key"))], headers="both"
    )
    info = req("/x", headers=[(b"x-api-key", b"k")])
    rules = protection.select("GET", "/x")
    assert (await protection.admit(info, rules)).response is None
    refused = (await protection.admit(info, rules)).response
    assert refused is not None
    fields = dict(refused.headers)
    assert [n for n, _ in sf_list(fields[b"ratelimit-policy"])] == ["per-ip", "per-key"]
    assert sf_list(fields[b"ratelimit"]) == [
        # 99, not 98: the refused request gave back what per-ip had admitted of it
        ("per-ip", {"r": 99, "t": sf_list(fields[b"ratelimit"])[0][1]["t"]}),
        ("per-key", {"r": 0, "t": sf_list(fields[b"ratelimit"])[1][1]["t"]}),
    ]
    assert fields[b"x-ratelimit-remaining"] == b"0"  # the most restrictive
    assert json.loads(refused.body)["violated-policies"] == ["per-key"]
    assert 1 <= int(fields[b"retry-after"]) <= 60
    assert [n for n, _ in refused.headers].count(b"ratelimit") == 1  # merged, not repeated


@pytest.mark.parametrize("path", ["plan", "admit", "async_key"])
async def test_a_request_refused_by_one_limit_spends_nothing_of_the_others(path: str) -> None:
    # A burst limit (10 per minute) before a daily one (1000): 1000 requests at once, 10
    # served. Refused requests are recorded by no limiter, so the day's quota is not gone
    # (it was: 990 refused requests spent it, and the client was locked out for a day).
    daily = FixedWindowCounter(max_requests=1000, window_seconds=86400.0, name="daily")
    burst = TokenBucket(capacity=10, refill_rate=10 / 60, name="burst")

    async def async_ip(info: RequestInfo) -> str:
        return "203.0.113.7"

    key = async_ip if path == "async_key" else client_address()
    protection = Protection(Rule([daily, burst], key=key))
    plan = protection.plan("GET", "/x")
    assert plan is not None and plan.sync == (path != "async_key")
    served = 0
    for _ in range(1000):
        if path == "plan":
            outcome = plan.now(req("/x"))
            refused = isinstance(outcome, HttpResponse)
        else:
            refused = (await protection.admit(req("/x"), plan.rules)).response is not None
        served += not refused
    assert served == 10
    assert daily.remaining("203.0.113.7") == 990
    assert daily.statistics().admitted == 10 and burst.statistics().rejected == 990
    # The refusal states daily's quota as it stands, not one request less.
    if path == "plan":
        response = plan.now(req("/x"))
        assert isinstance(response, HttpResponse)
        items = dict(sf_list(dict(response.headers)[b"ratelimit"]))
        assert items["daily"]["r"] == 990 and items["burst"]["r"] == 0


async def test_the_api_is_enough_for_a_pure_asgi_adapter() -> None:
    """The flow the module docstring gives the adapters, as a dozen lines of bare ASGI: the
    headers land on a success, a refusal is sent whole, an error of ours is mapped."""
    limiter = FixedWindowCounter(max_requests=1, window_seconds=60.0, name="per-ip")
    protection = Protection(Rule(limiter), exempt_paths=HEALTH_PATHS)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["path"] == "/boom":
            raise LoadShed("shed")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> None:
        rules = protection.select(scope["method"], scope["path"])
        if not rules:
            return await app(scope, receive, send)
        info = RequestInfo(scope["method"], scope["path"], scope["headers"], scope["client"])
        admission = await protection.admit(info, rules)
        if admission.response is not None:
            return await send_whole(send, admission.response)

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *admission.headers]
            await send(message)

        try:
            await app(scope, receive, send_with_headers)
        except Exception as error:
            response = protection.error_response(error)
            if response is None:
                raise
            await send_whole(send, response)

    async def send_whole(send: Any, response: HttpResponse) -> None:
        start = {"type": "http.response.start", "status": response.status}
        await send({**start, "headers": response.headers})
        await send({"type": "http.response.body", "body": response.body})

    async def call(path: str, client: str = "192.0.2.1") -> tuple[int, dict[bytes, bytes]]:
        sent: list[dict[str, Any]] = []

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "headers": [],
            "client": (client, 1),
        }
        await middleware(scope, None, send)
        return sent[0]["status"], dict(sent[0]["headers"])

    status, headers = await call("/")
    assert status == 200 and b"ratelimit" in headers and b"retry-after" not in headers
    status, headers = await call("/")
    assert status == 429 and 1 <= int(headers[b"retry-after"]) <= 60
    assert (await call("/metrics"))[0] == 200  # exempt
    assert (await call("/boom", client="192.0.2.2"))[0] == 503


# -- the adapters' fast path (Protection.plan) agrees with admit() ------------------------------


@pytest.mark.parametrize("style", ["ietf", "legacy", "both", "none"])
@pytest.mark.parametrize(
    "shape",
    ["one", "two-limiters", "two-rules", "cost-fn", "header-key", "ipv6", "no-client"],
)
async def test_plan_now_decides_as_admit_does(style: str, shape: str) -> None:
    from aioresilience.testing import ManualClock

    def protection() -> Protection:
        clock = ManualClock()
        a = TokenBucket(capacity=3, refill_rate=1, name="a", clock=clock)
        b = FixedWindowCounter(max_requests=2, window_seconds=10, name="b", clock=clock)
        rules = {
            "one": [Rule(a)],
            "two-limiters": [Rule([a, b])],
            "two-rules": [Rule(a, priority="critical"), Rule(b, priority="sheddable")],
            "cost-fn": [Rule(a, cost=lambda info: 2)],
            "header-key": [Rule(a, key=header_key("x-api-key"))],
            "ipv6": [Rule(a)],
            "no-client": [Rule(a)],
        }[shape]
        return Protection(rules, headers=style)

    client = {"ipv6": ("2001:db8::1", 1), "no-client": None}.get(shape, ("203.0.113.7", 1))
    fast, slow = protection(), protection()
    for _ in range(5):  # through admissions into refusals
        info = req(client=client, headers=[(b"x-api-key", b"k1")])
        plan = fast.plan("GET", "/")
        assert plan is not None and plan.sync
        assert plan.rules == fast.select("GET", "/")
        outcome = plan.now_peer(client) if plan.by_peer else plan.now(info)
        admission = await slow.admit(info, slow.select("GET", "/"))
        if admission.response is None:
            assert outcome == admission.headers
            assert plan.guards == admission.guards
            assert plan.priority_of(info) == admission.priority
        else:
            assert outcome == admission.response
    # Peer-keyed: one rule, one limiter, the default key, a renderer the plan inlines.
    expected = shape in ("one", "ipv6", "no-client") and style in ("ietf", "none")
    assert plan.by_peer is expected


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Rule(1.5), "Rule limiters must be a sequence, got 1.5"),  # type: ignore[arg-type]
        (
            lambda: Rule(TokenBucket(5, 1.0), guards=2.0),  # type: ignore[arg-type]
            "Rule guards must be a sequence, got 2.0",
        ),
        (
            lambda: Rule(TokenBucket(5, 1.0), paths=3),  # type: ignore[arg-type]
            "Rule paths must be a sequence, got 3",
        ),
        (
            lambda: Rule(TokenBucket(5, 1.0), methods=4),  # type: ignore[arg-type]
            "Rule methods must be a sequence, got 4",
        ),
        (
            lambda: Rule(TokenBucket(5, 1.0), exclude_paths=5),  # type: ignore[arg-type]
            "Rule exclude_paths must be a sequence, got 5",
        ),
        (lambda: Protection(6.5), "rules must be a sequence, got 6.5"),  # type: ignore[arg-type]
        (
            lambda: client_address(trusted_proxies=7),  # type: ignore[arg-type]
            "trusted_proxies must be a sequence, got 7",
        ),
    ],
)
def test_a_non_iterable_where_a_sequence_belongs_is_named(build: Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        build()


async def test_an_errors_override_of_rate_limited_answers_the_limiters_own_refusals() -> None:
    """errors={RateLimited: ...} replaces the built-in 429 for refusals decided from the
    limiter's decision (no exception raised) on every path: the general admit, a plan's sync
    decision (one limiter, and several), and a cost no wait admits. The override gets the
    RateLimited an acquire would raise; the rate-limit fields stay."""
    seen: list[RateLimited] = []

    def slow_down(exc: BaseException) -> HttpResponse:
        assert isinstance(exc, RateLimited)
        seen.append(exc)
        return HttpResponse(418, [(b"content-type", b"text/plain")], b"slow down")

    def protection_of(*rules: Rule) -> Protection:
        return Protection(list(rules), errors={RateLimited: slow_down})

    one = protection_of(Rule(TokenBucket(capacity=1, refill_rate=0.5, name="a")))
    two = protection_of(
        Rule(TokenBucket(capacity=5, refill_rate=1.0, name="b")),
        Rule(FixedWindowCounter(max_requests=1, window_seconds=60.0, name="c"), cost=lambda r: 1),
    )
    costly = protection_of(
        Rule(TokenBucket(capacity=2, refill_rate=1.0, name="d"), cost=lambda r: 3)
    )
    responses = []
    for protection in (one, two):
        rules = protection.select("GET", "/")
        plan = protection.plan("GET", "/")
        assert plan is not None and plan.sync
        assert (await protection.admit(req(), rules)).response is None
        responses.append((await protection.admit(req(), rules)).response)
        responses.append(plan.now(req()))
    responses.append((await costly.admit(req(), costly.select("GET", "/"))).response)
    plan = costly.plan("GET", "/")
    assert plan is not None
    responses.append(plan.now(req()))
    for response in responses:
        assert isinstance(response, HttpResponse), response
        status, headers, body = response
        fields = dict(headers)
        assert (status, body, fields[b"content-type"]) == (418, b"slow down", b"text/plain")
        assert b"retry-after" not in fields  # the override's to give
    assert b"ratelimit" in dict(responses[0].headers)  # the fields stay
    assert [exc.limiter for exc in seen] == ["a", "a", "c", "c", "d", "d"]
    assert seen[0].retry_after == 2.0 and seen[0].key == "203.0.113.7" and seen[0].cost == 1
    assert seen[-1].retry_after == math.inf and seen[-1].cost == 3  # never admitted
    # A status int as the override: the built-in problem body of that status, Retry-After kept.
    by_status = Protection(
        Rule(TokenBucket(capacity=1, refill_rate=0.5)), errors={RateLimited: 503}
    )
    rules = by_status.select("GET", "/")
    await by_status.admit(req(), rules)
    refused = (await by_status.admit(req(), rules)).response
    assert refused is not None and refused.status == 503
    assert dict(refused.headers)[b"retry-after"] == b"2"
