"""A real uvicorn on a free loopback port, in the test's own event loop (so a test can share
events and primitives with the app it serves)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import uvicorn


@contextlib.asynccontextmanager
async def serve(app: Any, **config: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn (``config``: uvicorn.Config options); yields the base URL."""
    # IPPROTO_TCP: asyncio sets TCP_NODELAY only on TCP sockets (protocol 0 left Nagle on, and
    # every keep-alive response after the first waited ~44 ms for the client's delayed ACK).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    options: dict[str, Any] = {"log_level": "warning", "lifespan": "off", "ws": "websockets-sansio"}
    options.update(config)
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # not ours

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exit:  # uvicorn's answer to a failed start-up: not for the loop
            raise RuntimeError(f"uvicorn start-up failed (exit status {exit.code})") from None

    task = asyncio.ensure_future(run())
    try:
        # Waiting for a real socket to listen, not for time to pass: poll the flag uvicorn sets.
        while not server.started:
            if task.done():
                task.result()  # start-up failed: raise its error
                raise RuntimeError("uvicorn exited during start-up")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
