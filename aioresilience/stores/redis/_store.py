"""The Redis store itself: its options, client and the breaker around Redis. Round trips are
made by :mod:`._batcher`; limits (:mod:`._limits`) and breakers (:mod:`._breaker`) bind to the
store; the scripts are in :mod:`._protocol`. Imports point one way: this module imports the
others, which know the store only as the :class:`._batcher.StoreView` it offers them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..._breaker import CircuitBreaker
from ..._support.errors import CircuitBreakerOpenError, StoreError
from ..._support.schedules import exponential
from ..._support.validation import (
    MIN_DIVISOR,
    finite_positive,
    non_negative_or_none,
    positive_int,
)
from ._batcher import Batcher
from ._breaker import RedisBreaker
from ._limits import RedisLimit
from ._protocol import SCRIPTS, FailurePolicy

if TYPE_CHECKING:
    from ...abc import BreakerOptions, BreakerReport, LimiterOptions

__all__ = ["RedisStore"]

_POLICIES: Final = ("allow", "deny", "local")


class RedisStore:
    """Shared limiter and breaker state on Redis. Pass a ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` or a URL, and a key ``prefix``.

    The store never lets a script be retried by the client (a retry after a lost reply would
    apply a decision twice): from a URL, or from a ``Redis`` client that retries, it opens
    connections of its own with the same options (close them with :meth:`aclose`); a
    ``RedisCluster`` must be created with ``retry=Retry(NoBackoff(), 0)``.

    ``connect_timeout`` (default: 1 s, or ``timeout`` if longer) bounds connecting: opening a
    connection, checking the server's version and loading the scripts, done before the first
    round trip (or at :meth:`connect`) and again after a round trip broke the connection. It
    is not a decision's round trip: the first decisions of a fresh store wait for it instead
    of applying the failure policy because connecting takes longer than ``timeout``. If
    connecting fails (refused, or not done within ``connect_timeout``), the store's breaker
    opens at once.

    ``timeout`` bounds each round trip (seconds); after ``failure_threshold`` consecutive
    failures the store stops calling Redis for a break (growing from ``break_duration`` up to
    10x) and the limiters apply their failure policy at no cost. ``on_failure`` is the default
    policy of limiters using this store; :meth:`on_failure` gives a limiter its own (a shared
    breaker always falls back to its own in-process machine). ``breaker_staleness``: how long
    a process trusts its last view of a closed shared breaker before asking Redis again
    (every recorded outcome refreshes it).
    """

    __slots__ = (
        "_batcher",
        "_breaker",
        "_cluster",
        "_owns_client",
        "batch_size",
        "breaker_staleness",
        "client",
        "connect_timeout",
        "local_share",
        "max_key_length",
        "policy",
        "prefix",
        "timeout",
    )

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster | str,
        *,
        prefix: str = "aioresilience",
        timeout: float = 0.1,
        connect_timeout: float | None = None,
        on_failure: FailurePolicy = "allow",
        local_share: float = 1.0,
        failure_threshold: int = 3,
        break_duration: float = 0.5,
        max_key_length: int = 512,
        batch_size: int = 256,
        breaker_staleness: float = 0.05,
    ) -> None:
        if not isinstance(client, str | aioredis.Redis | RedisCluster):
            raise TypeError(
                "client must be a redis.asyncio.Redis, a redis.asyncio.cluster.RedisCluster or "
                f"a redis:// URL, got {client!r} ({type(client).__module__}."
                f"{type(client).__qualname__})"
                + (
                    "; that is the synchronous client: use redis.asyncio"
                    if type(client).__module__.startswith("redis.")
                    else ""
                )
            )
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        # Never a client that retries: a script run again after a lost reply would apply a
        # decision twice.
        self.client, self._owns_client = _without_retries(client)
        self._cluster = isinstance(self.client, RedisCluster)
        self.prefix = prefix
        self.timeout = finite_positive("timeout", timeout)
        # Never stricter than a decision's timeout: a store given 5 s for slow round trips
        # does not give up connecting after 1 s.
        self.connect_timeout = (
            max(1.0, self.timeout)
            if connect_timeout is None
            else finite_positive("connect_timeout", connect_timeout)
        )
        self.policy, self.local_share = _policy(on_failure, local_share)
        self.max_key_length = positive_int("max_key_length", max_key_length)
        self.batch_size = positive_int("batch_size", batch_size)
        staleness = non_negative_or_none("breaker_staleness", breaker_staleness)
        if staleness is None:
            raise ValueError(f"breaker_staleness must be finite, got {breaker_staleness!r}")
        self.breaker_staleness = staleness
        self._breaker = CircuitBreaker(
            name=f"redis store {prefix!r}",
            failure_threshold=positive_int("failure_threshold", failure_threshold),
            break_duration=exponential(
                finite_positive("break_duration", break_duration),
                cap=10 * break_duration,
                jitter="none",
            ),
            record=(RedisError, OSError, TimeoutError),
        )
        # Shared with the views made by on_failure(); it loads every script on connecting.
        self._batcher = Batcher(self, SCRIPTS.values())

    def on_failure(self, policy: FailurePolicy, *, local_share: float = 1.0) -> RedisStore:
        """This store with another failure policy (same client, batching and breaker), for
        the limiters that need it: ``TokenBucket(..., store=store.on_failure("deny"))``."""
        view = object.__new__(RedisStore)
        for name in RedisStore.__slots__:
            setattr(view, name, getattr(self, name))
        view.policy, view.local_share = _policy(policy, local_share)
        return view

    async def connect(self) -> None:
        """Connect to Redis now, check its version and load the scripts (within
        ``connect_timeout``), so that the first decision pays only its own round trip; for
        a process that would rather pay it at start-up. Optional: without it, the first
        round trip connects first. Does nothing if the store is connected (on this event
        loop). Raises :class:`~aioresilience.StoreError` if Redis cannot be reached (the
        store's breaker is then open, and limiters apply their failure policy until it
        reaches Redis again) or the server is too old."""
        try:
            await self._batcher.connect()
        except (RedisError, OSError, TimeoutError, CircuitBreakerOpenError) as exc:
            raise StoreError(
                f"cannot connect to Redis for the store {self.prefix!r}: {exc}"
            ) from exc

    async def aclose(self) -> None:
        """Close the connections the store opened itself (a client given to it stays the
        caller's to close, unless the store had to make its own; see ``client``). What is
        owed to Redis and already on its way (refunds, breaker outcomes) goes first."""
        await self._batcher.drain()
        if self._owns_client:
            await self.client.aclose()

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker guarding round trips to Redis (for inspection and listeners)."""
        return self._breaker

    def bind_limiter(self, options: LimiterOptions) -> RedisLimit:
        """A limiter's state in this store (:class:`~aioresilience.abc.LimiterStore`)."""
        return RedisLimit(self, options)

    def bind_breaker(self, options: BreakerOptions, report: BreakerReport) -> RedisBreaker:
        """The shared state of the breaker with ``options`` (:class:`~aioresilience.abc.
        BreakerStore`): ``CircuitBreaker(name=..., store=store)`` calls it."""
        return RedisBreaker(self, options, report)

    def __repr__(self) -> str:
        return (
            f"<RedisStore prefix={self.prefix!r} on_failure={self.policy!r} "
            f"timeout={self.timeout:g}s breaker={self._breaker.state.name}>"
        )


def _without_retries(
    client: aioredis.Redis | RedisCluster | str,
) -> tuple[aioredis.Redis | RedisCluster, bool]:
    """A client for the store that never retries a command, and whether the store made it."""
    no_retry = Retry(NoBackoff(), 0)
    if isinstance(client, str):
        return aioredis.Redis.from_url(client, retry=no_retry), True
    if isinstance(client, RedisCluster):
        if client.retry.get_retries() > 0:
            raise ValueError(
                "a RedisCluster client for a RedisStore must not retry commands (a script run "
                "again after a lost reply would apply a decision twice): create it with "
                "retry=Retry(NoBackoff(), 0) (redis.asyncio.retry, redis.backoff)"
            )
        return client, False
    retry = client.get_retry()
    if retry is None or retry.get_retries() == 0:
        return client, False
    # The same server and options, on connections of the store's own that do not retry.
    pool = client.connection_pool
    own = aioredis.ConnectionPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        **{**pool.connection_kwargs, "retry": no_retry},
    )
    return aioredis.Redis.from_pool(own), True  # closing the client closes the pool


def _policy(policy: object, local_share: object) -> tuple[FailurePolicy, float]:
    if policy not in _POLICIES:
        raise ValueError(f"on_failure must be one of {', '.join(_POLICIES)}; got {policy!r}")
    # The local fallback divides a rate's interval by the share: a denormal share made it
    # inf, an OverflowError when a limiter was bound to the store.
    share = finite_positive("local_share", local_share, minimum=MIN_DIVISOR)
    if share > 1:
        raise ValueError(f"local_share must be in (0, 1], got {local_share!r}")
    return policy, share
