"""A throwaway ``redis-server`` for tests and benchmarks: loopback, a free port, no persistence.

Needs the ``redis-server`` binary (Debian/Ubuntu: ``apt-get install -y redis-server``), not the
Python client: readiness is checked with a raw ``PING``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

__all__ = ["INSTALL_HINT", "RedisServer"]

INSTALL_HINT = "install it with: apt-get install -y redis-server (or brew install redis)"


def _free_port(*, cluster: bool = False) -> int:
    """A free loopback port; for a cluster node, one whose bus port (port + 10000) is free too."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 <= 65535:
            with socket.socket() as bus:
                try:
                    bus.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port


class RedisServer:
    """``with RedisServer() as server: ... server.url ...``; :meth:`kill`, :meth:`pause`,
    :meth:`resume` and :meth:`start` (again, on the same port) simulate outages.

    ``cluster=True`` starts a one-node Redis Cluster owning every slot (for
    ``RedisCluster`` clients).
    """

    def __init__(self, *, port: int | None = None, cluster: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError(f"redis-server is not installed; {INSTALL_HINT}")
        self.binary = binary
        self.port = port or _free_port(cluster=cluster)
        self.cluster = cluster
        self._dir = tempfile.TemporaryDirectory(prefix="aioresilience-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", self._dir.name,
            "--protected-mode", "no",
        ]  # fmt: skip
        if self.cluster:
            args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
        self._process = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self._dir.name
        )
        deadline = time.monotonic() + timeout
        while self.command("PING") != "+PONG":
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.005)
        if self.cluster and "cluster_state:ok" not in self.command("CLUSTER INFO"):
            self.command("CLUSTER ADDSLOTSRANGE 0 16383")
            while "cluster_state:ok" not in self.command("CLUSTER INFO"):
                if time.monotonic() > deadline:
                    raise RuntimeError("the one-node cluster did not come up")
                time.sleep(0.005)
        return self

    def command(self, line: str) -> str:
        """Send one inline command; the raw reply ("" if the server is not answering)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(line.encode() + b"\r\n")
                return sock.recv(65536).decode(errors="replace").strip()
        except OSError:
            return ""

    def kill(self) -> None:
        """Die at once, as a crashed server does (SIGKILL)."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process = None

    def pause(self) -> None:
        """Stop answering without closing connections (SIGSTOP): a hung server."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self.resume()
                self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
