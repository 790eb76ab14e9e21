"""Redis store: rate limits and circuit breakers shared by many processes (extra ``redis``,
on ``redis.asyncio``).

::

    store = RedisStore("redis://localhost:6379/0", prefix="myapp")
    per_user = TokenBucket(10, 5, name="api-per-user", store=store)
    async with per_user.for_key(user_id): ...

Every decision is one Lua script run (EVALSHA) that mirrors the ``_core``
algorithm of the same name (``gcra.lua``, ``fixed_window.lua``, ``sliding_window_log.lua``,
``sliding_window_counter.lua``) and reads the time from the server (``TIME``), so the clocks of
the clients never matter. One key per limit and key, ``<prefix>:<algorithm>:{<name>:<key>}``;
the braces are a hash tag, so Redis Cluster places each limit on one slot. Every write sets a
TTL; refusals write nothing.

Coalescing: decisions asked for by one event loop in the same loop turn travel together, one
script call per algorithm (and per Cluster slot) carrying every key, so throughput grows with
concurrency instead of stopping at one round trip per decision.

Connecting (before the first round trip, or ``await store.connect()``): a connection, the
server's version and every script loaded (again on NOSCRIPT), within ``connect_timeout``;
that is not a decision's round trip, and callers of a fresh store wait for it rather than
apply their failure policy. A failed connection opens the store's breaker at once.

Failure policy (:meth:`RedisStore.on_failure`): when Redis cannot answer within ``timeout``,
or a small breaker around the store is open after repeated failures, the limiter applies its
policy: ``"allow"``, ``"deny"`` or ``"local"`` (an in-process limiter of the same kind with
``local_share`` of the limit), emits a ``store_failure`` event and counts it in
``statistics().store_failures``. The breaker probes again after a short break, so recovery
needs no restart.

Waiting (``await limiter.acquire(...)``) polls: the server reports when the request could
succeed, the caller sleeps that long and asks again. Waiters of one key in one process are
served in arrival order (only the first of them polls); across processes nobody holds a
reservation, so a wait is bounded by the caller's timeout rather than promised up front.

A shared circuit breaker (``CircuitBreaker(name=..., store=store)``) keeps its state machine
in one Redis hash (``breaker.lua``); see :mod:`._breaker`.

Layout, imports pointing one way: ``_store.py`` (the store and its client) imports
``_limits.py`` (a limiter's remote state) and ``_breaker.py`` (a breaker's), which import
``_batcher.py`` (coalescing and round trips), which imports ``_protocol.py`` (the scripts,
their arguments, failure policies and names); and one ``.lua`` file per algorithm.
"""

from __future__ import annotations

try:
    import redis.asyncio  # noqa: F401  (fails here, with the extra named, when missing)
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "aioresilience.stores.redis needs the redis client: pip install aioresilience[redis]"
    ) from exc

from ._protocol import FailurePolicy
from ._store import RedisStore

__all__ = ["FailurePolicy", "RedisStore"]
