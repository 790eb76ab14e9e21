"""Issue 13, item 7: one Redis limit under uvicorn with 4 worker processes is exact.

uvicorn runs as a subprocess (``--workers 4``, on a listening socket this test passes it with
``--fd``), each worker building the app from :func:`create_app` (this module is also the app
module: the workers import it by name). The rule's limiter is a FixedWindowCounter on the
suite's redis-server: the middleware sees ``limiter.shared`` and awaits ``decide()``, no code
path of its own. A burst of requests, each on a new connection so the kernel spreads them over
the workers, gets exactly the quota of 2xx, served by more than one worker.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("redis")

from aioresilience.testing import RedisServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from httpload import Connection

WORKERS = 4
QUOTA = 37
BURST = 150


def create_app() -> Any:
    """The app each worker builds (``uvicorn --factory``), configured from the environment."""
    from fastapi import FastAPI, Response

    from aioresilience import FixedWindowCounter
    from aioresilience.integrations.asgi import ResilienceMiddleware, Rule
    from aioresilience.stores.redis import RedisStore

    store = RedisStore(
        os.environ["WEB_TEST_REDIS_URL"],
        prefix=os.environ["WEB_TEST_PREFIX"],
        timeout=2.0,
        on_failure="deny",
    )
    limiter = FixedWindowCounter(
        max_requests=int(os.environ["WEB_TEST_QUOTA"]),
        window_seconds=3600.0,  # one window for the whole test: no time dependence
        name="shared",
        store=store,
    )
    assert limiter.shared
    app = FastAPI()

    @app.get("/")
    async def hello() -> Response:
        return Response(b"hello", headers={"x-worker": str(os.getpid())})

    @app.get("/health")  # exempt (HEALTH_PATHS): tells the test which workers are up
    async def health() -> Response:
        return Response(b"ok", headers={"x-worker": str(os.getpid())})

    app.add_middleware(ResilienceMiddleware, rules=[Rule(limiter)])
    return app


@pytest.fixture
def workers(redis_server: RedisServer) -> Iterator[int]:
    """uvicorn with WORKERS workers on a free port; yields the port once every worker answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    env = dict(
        os.environ,
        WEB_TEST_REDIS_URL=redis_server.url,
        WEB_TEST_PREFIX=f"multiworker-{uuid.uuid4().hex}",
        WEB_TEST_QUOTA=str(QUOTA),
    )
    command = [
        sys.executable, "-m", "uvicorn", "--factory", f"{Path(__file__).stem}:create_app",
        "--app-dir", str(Path(__file__).resolve().parent),
        "--fd", str(sock.fileno()), "--workers", str(WORKERS),
        "--log-level", "warning", "--no-access-log", "--lifespan", "off",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=env,
        pass_fds=[sock.fileno()],
    )
    sock.close()  # the server holds its own copy
    try:
        asyncio.run(wait_for_workers(port, process))
        yield port
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def get_once(port: int, path: str) -> tuple[int, str]:
    """One request on a new connection (so the workers share the burst): (status, worker)."""
    conn = await Connection.open("127.0.0.1", port)
    try:
        status, fields = await conn.get(path)
    finally:
        await conn.close()
    return status, fields.get(b"x-worker", b"").decode()


async def wait_for_workers(port: int, process: subprocess.Popen[bytes]) -> None:
    """Until WORKERS distinct workers have answered /health (start-up is the subprocess's
    to finish: this polls it, bounded by a deadline)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < WORKERS:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode} during start-up")
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {WORKERS} workers answered in 30 s")
        try:
            results = await asyncio.gather(*(get_once(port, "/health") for _ in range(8)))
        except OSError:
            await asyncio.sleep(0.05)  # not listening yet
            continue
        seen.update(worker for status, worker in results if status == 200)


@pytest.mark.real_time
@pytest.mark.wall_timeout(90)
async def test_one_redis_limit_is_exact_across_four_workers(workers: int) -> None:
    # Keep-alive connections, sorted by the worker that accepted each: the burst then goes to
    # every worker at once, in equal shares (new connections could all land on one worker).
    by_worker: dict[str, Connection] = {}
    spare: list[Connection] = []
    for _ in range(200):
        if len(by_worker) == WORKERS:
            break
        conn = await Connection.open("127.0.0.1", workers)
        _, fields = await conn.get("/health")
        worker = fields[b"x-worker"].decode()
        if worker in by_worker:
            spare.append(conn)  # closed at the end, not reused: one connection per worker
        else:
            by_worker[worker] = conn
    assert len(by_worker) == WORKERS, by_worker

    async def share(conn: Connection) -> list[tuple[int, str]]:
        out = []
        for _ in range(BURST // WORKERS):
            status, fields = await conn.get("/")
            out.append((status, fields.get(b"x-worker", b"").decode()))
        return out

    try:
        shares = await asyncio.gather(*(share(conn) for conn in by_worker.values()))
    finally:
        await asyncio.gather(*(c.close() for c in [*by_worker.values(), *spare]))
    results = [r for part in shares for r in part]
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: QUOTA, 429: len(results) - QUOTA}, statuses
    admitted_by = Counter(worker for status, worker in results if status == 200)
    # Every worker admitted some, and together exactly the one quota: the limit is shared, not
    # one per process (which would have let up to WORKERS * QUOTA through).
    assert len(admitted_by) == WORKERS, admitted_by
