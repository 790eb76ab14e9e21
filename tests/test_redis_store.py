"""The Redis store: what only a shared store has (its keys, scripts, coalescing, failure
policy and errors). The behaviour every store shares is tests/limiter_behaviour.py, run on
Redis by tests/test_ratelimit_behaviour.py.

Redis tests run against the suite's own redis-server (conftest) in real time: the server's
clock decides, so they use long periods where time must not matter and waits of a few
milliseconds where it must.
"""

from __future__ import annotations

import asyncio
import enum
import gc
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from limiter_behaviour import LIMITERS, _unique, make, redis_store

from aioresilience import (
    GCRA,
    FixedWindowCounter,
    LeakyBucket,
    SlidingWindowLog,
    StoreError,
    TokenBucket,
)
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import RedisServer

__all__ = ["redis_store"]  # a fixture of the shared suite, used here too


# -- only on Redis ------------------------------------------------------------------------------


@pytest.mark.real_time
async def test_sync_paths_point_to_the_async_ones(redis_store: RedisStore) -> None:
    limiter = TokenBucket(5, 1, name="sync", store=redis_store)
    for call in (limiter.try_acquire, limiter.check, limiter.remaining):
        with pytest.raises(TypeError, match=r"await limiter\.decide"):
            call()
    assert "store=redis:" in repr(limiter)


@pytest.mark.real_time
@pytest.mark.parametrize("kind", LIMITERS)
async def test_one_key_per_limit_with_a_hash_tag_and_a_ttl(
    kind: str, redis_store: RedisStore
) -> None:
    limiter = make(kind, redis_store)
    for _ in range(7):  # two refusals among them: they must write nothing
        await limiter.decide(key="user-1")
    keys = [k.decode() for k in await redis_store.client.keys(f"{redis_store.prefix}:*")]
    script = "gcra" if kind in ("token_bucket", "leaky_bucket") else kind
    assert keys == [f"{redis_store.prefix}:{script}:{{{limiter.name}:user-1}}"]
    ttl = await redis_store.client.pttl(keys[0])
    assert 0 < ttl <= 200_000
    if kind == "sliding_window_log":
        assert await redis_store.client.zcard(keys[0]) == 5  # refusals never recorded


@pytest.mark.real_time
async def test_log_members_stay_unique_within_one_microsecond(redis_store: RedisStore) -> None:
    limiter = SlidingWindowLog(100, 60, name="log", store=redis_store)
    decisions = await asyncio.gather(*(limiter.decide(3, key="k") for _ in range(30)))
    assert all(d.allowed for d in decisions)
    key = f"{redis_store.prefix}:sliding_window_log:{{log:k}}"
    assert await redis_store.client.zcard(key) == 90
    assert [d.remaining for d in decisions][-1] == 10


@pytest.mark.real_time
async def test_gcra_stays_exact_over_long_bursts_of_fractional_intervals(
    redis_store: RedisStore,
) -> None:
    """3 per second is an interval of 333333.33 µs: a float sum of them on a µs epoch would
    drift; counting units keeps a burst of 1000 at exactly 1000."""
    limiter = GCRA(3, 1, burst=1000, name="fractional", store=redis_store)
    decisions = await asyncio.gather(*(limiter.decide(key="k") for _ in range(1001)))
    assert [d.allowed for d in decisions] == [True] * 1000 + [False]  # in order, over 4 chunks
    assert 0 < decisions[-1].retry_after <= 1 / 3 + 1e-6


@pytest.mark.real_time
async def test_decisions_of_one_loop_turn_share_one_round_trip(
    redis_store: RedisStore,
) -> None:
    client = redis_store.client

    async def evalsha_calls() -> int:
        stats = await client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    buckets = TokenBucket(100, 1, name="a", store=redis_store)
    windows = FixedWindowCounter(100, 60, name="b", store=redis_store)
    await buckets.decide(key="warm-up")
    await windows.decide(key="warm-up")
    before = await evalsha_calls()
    await asyncio.gather(*(buckets.decide(key=str(i)) for i in range(64)))
    assert await evalsha_calls() - before == 1  # 64 decisions, one script call
    before = await evalsha_calls()
    await asyncio.gather(
        *(buckets.decide(key=str(i)) for i in range(10)),
        *(windows.decide(key=str(i)) for i in range(10)),
    )
    assert await evalsha_calls() - before == 2  # one call per script, pipelined


@pytest.mark.real_time
async def test_concurrent_acquires_of_one_key_share_a_round_trip(redis_store: RedisStore) -> None:
    client = redis_store.client
    limiter = GCRA(1, 60, burst=1000, name="one-key", store=redis_store)
    await limiter.acquire(key="k")
    before = int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"])
    await asyncio.gather(*(limiter.acquire(key="k") for _ in range(50)))
    after = int((await client.info("commandstats"))["cmdstat_evalsha"]["calls"])
    assert after - before == 1


@pytest.mark.real_time
async def test_a_caller_cancelled_before_the_round_trip_is_not_sent(
    redis_store: RedisStore,
) -> None:
    limiter = GCRA(1, 60, burst=1, name="cancel-first", store=redis_store)
    first = asyncio.create_task(limiter.decide(key="k"))
    second = asyncio.create_task(limiter.decide(key="k"))
    await asyncio.sleep(0)  # both submitted, nothing sent yet
    first.cancel()
    assert (await second).allowed  # the only unit goes to the caller still there
    with pytest.raises(asyncio.CancelledError):
        await first


@pytest.mark.real_time
async def test_scripts_are_reloaded_after_a_script_flush(redis_store: RedisStore) -> None:
    limiter = GCRA(10, 1, burst=10, name="flush", store=redis_store)
    assert (await limiter.decide()).allowed
    await redis_store.client.script_flush()
    assert (await limiter.decide()).allowed


CROSS_PROCESS = """
import sys, time
if sys.argv[4] == "skewed":  # this process's clocks are hours off, before anything reads them
    _monotonic, _time = time.monotonic, time.time
    time.monotonic = lambda: _monotonic() + 1e6
    time.time = lambda: _time() - 7200
    start_offset = -7200
else:
    start_offset = 0
import asyncio
from aioresilience import GCRA
from aioresilience.stores.redis import RedisStore

async def main(url, prefix, start):
    store = RedisStore(url, prefix=prefix, timeout=5.0)
    limiter = GCRA(1, 3600, burst=200, name="shared", store=store)
    await asyncio.sleep(max(0.0, start - time.time()))
    decisions = await asyncio.gather(*(limiter.decide() for _ in range(100)))
    print(sum(d.allowed for d in decisions))
    await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]) + start_offset))
"""


def test_four_processes_share_one_exact_limit_whatever_their_clocks(
    redis_server: RedisServer,
) -> None:
    """Two of the four processes have clocks hours off (monotonic and wall): every time in a
    decision is the server's, so the limit stays exact."""
    import time

    prefix, start = f"procs-{_unique()}", time.time() + 1.5
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CROSS_PROCESS, redis_server.url, prefix, str(start), clock],
            stdout=subprocess.PIPE,
            text=True,
        )
        for clock in ("skewed", "normal", "skewed", "normal")
    ]
    admitted = [int(p.communicate(timeout=30)[0]) for p in processes]
    assert sum(admitted) == 200  # 400 asked at once by four processes, burst 200


FRESH_PROCESS = """
import asyncio, sys
from aioresilience import GCRA
from aioresilience.stores.redis import RedisStore

async def main(url, prefix):
    print("ready", flush=True)
    sys.stdin.readline()  # the test's word: every process starts at once, from nothing
    store = RedisStore(url, prefix=prefix)  # the defaults: timeout 0.1 s, on_failure="allow"
    limiter = GCRA(1, 3600, burst=10, name="fresh", store=store)
    decisions = await asyncio.gather(*(limiter.decide() for _ in range(20)))
    print(sum(d.allowed for d in decisions), limiter.statistics().store_failures)
    await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def test_fresh_processes_with_the_default_options_do_not_fail_open(
    redis_server: RedisServer,
) -> None:
    """Three fresh processes (default timeout and policy) ask 20 each of a limit of 10 at the
    same moment: each connects and loads the scripts before its first decision is timed, so
    Redis decides them all (a connect counted against the 0.1 s timeout let a loaded machine
    admit 50)."""
    prefix = f"fresh-{_unique()}"
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FRESH_PROCESS, redis_server.url, prefix],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        for process in processes:  # all started: imports done, nothing connected yet
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        results = [process.communicate(timeout=30)[0].split() for process in processes]
    finally:
        for process in processes:
            process.kill()
            process.wait()
    assert [int(failures) for _, failures in results] == [0, 0, 0]
    assert sum(int(admitted) for admitted, _ in results) == 10


# The first loop closes with its connection open (its socket is collected unclosed).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_store_connected_on_one_event_loop_decides_on_the_next(
    redis_server: RedisServer,
) -> None:
    """asyncio.run twice (a CLI, a loop per test): the client's pool still holds the first
    loop's connection, unusable on the second; the store connects afresh instead of failing
    the second loop's first callers with StoreError('Event loop is closed')."""
    store = RedisStore(redis_server.url, prefix=f"loops-{_unique()}")
    limiter = FixedWindowCounter(100, 60, name="loops", store=store)

    async def decide() -> list[bool]:
        return [d.allowed for d in await asyncio.gather(*(limiter.decide() for _ in range(3)))]

    async def last() -> list[bool]:
        try:
            return await decide()
        finally:
            await store.aclose()

    assert asyncio.run(decide()) == [True] * 3
    assert asyncio.run(decide()) == [True] * 3
    assert asyncio.run(last()) == [True] * 3
    assert limiter.statistics().store_failures == 0
    gc.collect()  # the first loop's socket warns here, not in a later test


# The first loop closes with its connection and its waiter left (both collected unclosed).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_line_left_on_a_loop_closed_without_cancelling_is_given_up(
    redis_server: RedisServer,
) -> None:
    """A waiter of a key left on a loop closed without cancelling it can never ask again nor
    pass its turn on: its line refused the key forever in this process (decide() False with
    retry_after 0, acquire() RateLimited)."""
    store = RedisStore(redis_server.url, prefix=f"closed-{_unique()}")
    limiter = GCRA(1, 0.1, burst=1, name="closed", store=store)

    abandoned: list[asyncio.Future[None]] = []

    async def first() -> None:
        await limiter.acquire(key="k")
        abandoned.append(asyncio.ensure_future(limiter.acquire(key="k", timeout=5)))  # in line
        await asyncio.sleep(0.02)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()
    time.sleep(0.15)  # the key's bucket is full again on Redis

    async def second() -> tuple[bool, bool]:
        try:
            decided = (await limiter.decide(key="k")).allowed
            await limiter.acquire(key="k", timeout=1)  # waits on this loop's own line
            return decided, True
        finally:
            await store.aclose()

    assert asyncio.run(second()) == (True, True)
    gc.collect()


def test_a_line_of_another_live_loop_is_refused_with_runtime_error(
    redis_server: RedisServer,
) -> None:
    """A second thread's loop joining a key's line whose waiters wait on the first loop: its
    turn would be set from the other thread and never wake it (it stalled to its deadline).
    As a limiter in memory, it is a RuntimeError naming the limiter."""
    store = RedisStore(redis_server.url, prefix=f"threads-{_unique()}", on_failure="deny")
    limiter = GCRA(1, 0.3, burst=1, name="threads", store=store)
    ready, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def first() -> None:
        await limiter.acquire(key="k")
        waiter = asyncio.ensure_future(limiter.acquire(key="k", timeout=3))  # first in line
        await asyncio.sleep(0.02)
        ready.set()
        await asyncio.to_thread(done.wait, 3)
        try:
            await waiter
        finally:
            await store.aclose()

    def second() -> None:
        ready.wait(3)
        try:
            asyncio.run(limiter.acquire(key="k", timeout=2))
        except BaseException as exc:  # (checked below)
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=second)
    thread.start()
    try:
        asyncio.run(first())
    finally:
        thread.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError), errors
    assert "threads has waiters on another event loop" in str(errors[0])
    gc.collect()


# -- errors -------------------------------------------------------------------------------------


def test_the_client_must_be_an_asyncio_client() -> None:
    with pytest.raises(TypeError, match=r"synchronous client: use redis\.asyncio"):
        RedisStore(redis.Redis())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"client must be a redis.asyncio.Redis.*got 42"):
        RedisStore(42)  # type: ignore[arg-type]


def test_connecting_is_never_held_to_less_than_a_decisions_timeout() -> None:
    assert RedisStore(aioredis.Redis()).connect_timeout == 1.0
    assert RedisStore(aioredis.Redis(), timeout=5.0).connect_timeout == 5.0
    assert RedisStore(aioredis.Redis(), timeout=5.0, connect_timeout=0.5).connect_timeout == 0.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": ""}, "prefix must be a non-empty str"),
        ({"prefix": "a{b"}, "without braces"),
        ({"timeout": 0}, "timeout"),
        ({"connect_timeout": 0}, "connect_timeout"),
        ({"connect_timeout": float("nan")}, "connect_timeout"),
        ({"connect_timeout": True}, "connect_timeout"),
        ({"on_failure": "ignore"}, "on_failure must be one of allow, deny, local; got 'ignore'"),
        ({"local_share": 1.5}, r"local_share must be in \(0, 1\], got 1.5"),
        ({"local_share": 1e-300}, r"local_share must be >= 1e-12, got 1e-300"),
        ({"local_share": 5e-324}, r"local_share must be >= 1e-12, got 5e-324"),
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"max_key_length": -1}, "max_key_length"),
    ],
)
def test_bad_store_options_are_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises((TypeError, ValueError), match=message):
        RedisStore(aioredis.Redis(), **options)


def test_a_limiter_on_redis_needs_a_name_and_a_shareable_algorithm() -> None:
    store = RedisStore(aioredis.Redis())
    with pytest.raises(TypeError, match=r"needs name=\.\.\.: the name is its identity in Redis"):
        TokenBucket(5, 1, store=store)
    for name in ("", "  "):  # every limiter named "" shared one state on Redis
        with pytest.raises(ValueError, match="must not be empty or blank"):
            TokenBucket(5, 1, name=name, store=store)
    for name in ("a{b}", "api:user"):  # ':' would let a name and a key collide
        with pytest.raises(ValueError, match=r"must not contain \{, \} or :"):
            TokenBucket(5, 1, name=name, store=store)
    with pytest.raises(TypeError, match=r"mode='shaper'.*cannot be shared on Redis"):
        LeakyBucket(5, 1, mode="shaper", name="shaper", store=store)
    with pytest.raises(TypeError, match="store must be a shared store"):
        TokenBucket(5, 1, store=object())  # type: ignore[arg-type]


@pytest.mark.real_time
async def test_aclose_sends_what_is_owed_first(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A refund issued just before aclose() was still on its way when the connections
    # closed: "owed Redis operation(s) unconfirmed" was logged (14 runs of 20) and whether
    # it landed depended on timing.
    for _ in range(5):
        store = RedisStore(redis_server.url, prefix=f"close-{_unique()}")
        limiter = TokenBucket(5, 0.001, name="close", store=store)
        decision = await limiter.decide(5, key="k")
        limiter.refund(decision, 5, key="k")
        with caplog.at_level("WARNING"):
            await store.aclose()
        assert "unconfirmed" not in caplog.text and "not sent" not in caplog.text
        again = RedisStore(redis_server.url, prefix=store.prefix)
        assert (await TokenBucket(5, 0.001, name="close", store=again).decide(5, key="k")).allowed
        await again.aclose()


@pytest.mark.real_time
async def test_bad_keys_are_named(redis_store: RedisStore) -> None:
    limiter = TokenBucket(5, 1, name="keys", store=redis_store)
    with pytest.raises(ValueError, match="a key must not be empty, got ''"):
        await limiter.decide(key="")
    with pytest.raises(ValueError, match="more than max_key_length=512"):
        await limiter.decide(key="x" * 600)
    with pytest.raises(TypeError, match=r"must be str or int, got \('a', 1\)"):
        await limiter.decide(key=("a", 1))
    with pytest.raises(ValueError, match="this int key has no Redis key"):
        await limiter.decide(key=10**5000)  # (Python's own ValueError named neither)
    with pytest.raises(ValueError, match="this str key has no Redis key"):
        await limiter.decide(key="\ud800")  # (a bare UnicodeEncodeError)


@pytest.mark.real_time
async def test_an_enum_key_is_the_key_of_its_value(redis_store: RedisStore) -> None:
    # A str (or int) enum member equals its value and shares its limit in memory; on Redis
    # str() named it "Plan.FREE": a limit of its own, apart from "free".
    class Plan(str, enum.Enum):  # noqa: UP042 (not StrEnum: its str() is its value already)
        FREE = "free"

    class Tier(int, enum.Enum):
        ONE = 1

    limiter = GCRA(1, 60, name="enums", store=redis_store)
    assert (await limiter.decide(key=Plan.FREE)).allowed
    assert not (await limiter.decide(key="free")).allowed
    assert (await limiter.decide(key=Tier.ONE)).allowed
    assert not (await limiter.decide(key=1)).allowed


@pytest.mark.real_time
async def test_a_foreign_value_fails_only_its_own_decision(redis_store: RedisStore) -> None:
    limiter = SlidingWindowLog(5, 60, name="foreign", store=redis_store)
    await redis_store.client.set(f"{redis_store.prefix}:sliding_window_log:{{foreign:bad}}", "x")
    bad, good = await asyncio.gather(
        limiter.decide(key="bad"), limiter.decide(key="good"), return_exceptions=True
    )
    assert isinstance(bad, StoreError) and "WRONGTYPE" in str(bad)
    assert not isinstance(good, BaseException) and good.allowed


@pytest.mark.real_time
async def test_a_server_too_old_is_named(
    redis_store: RedisStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def old_info(*args: Any, **kwargs: Any) -> dict[str, Any]:
        return {"redis_version": "4.0.14"}

    await redis_store.client.script_flush()
    monkeypatch.setattr(redis_store.client, "info", old_info)
    limiter = GCRA(10, 1, name="old", store=redis_store)
    with pytest.raises(StoreError, match=r"need Redis >= 5.0 .*the server is 4.0.14"):
        await limiter.decide()


def test_the_missing_extra_is_named() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "try:\n    import aioresilience.stores.redis\n"
        "except ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install aioresilience[redis]" in out.stdout


@pytest.mark.real_time
async def test_a_cluster_client_decides_slot_by_slot(redis_server: RedisServer) -> None:
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    with RedisServer(cluster=True) as server:  # one node owning all 16384 slots
        client = RedisCluster(host="127.0.0.1", port=server.port, retry=Retry(NoBackoff(), 0))
        store = RedisStore(client, prefix="cluster", timeout=5.0, on_failure="deny")
        buckets = GCRA(1, 60, burst=5, name="g", store=store)
        logs = SlidingWindowLog(5, 60, name="l", store=store)
        users = [f"user-{i % 3}" for i in range(21)]  # three keys, three slots
        decisions = await asyncio.gather(
            *(buckets.decide(key=user) for user in users),
            *(logs.decide(key=user) for user in users),
        )
        assert sum(d.allowed for d in decisions) == 2 * 3 * 5
        await client.script_flush()  # scripts are loaded again on the node that lacks them
        assert (await buckets.decide(key="another")).allowed
        await client.aclose()


@pytest.mark.real_time
async def test_the_store_never_lets_the_client_retry_a_script(redis_server: RedisServer) -> None:
    from redis.asyncio.cluster import RedisCluster

    retrying = aioredis.Redis(host="127.0.0.1", port=redis_server.port)
    assert retrying.get_retry().get_retries() > 0  # redis-py's default
    store = RedisStore(retrying)
    assert store.client is not retrying  # connections of its own, same server and options
    assert store.client.get_retry().get_retries() == 0  # type: ignore[union-attr]
    assert (await GCRA(1, 60, name="no-retry", store=store).decide()).allowed
    await store.aclose()
    await retrying.aclose()
    with pytest.raises(ValueError, match=r"RedisCluster client for a RedisStore must not retry"):
        RedisStore(RedisCluster(host="127.0.0.1", port=redis_server.port))
