"""A real browser for tests of what a person sees: Debian's headless Chromium, driven over the
DevTools protocol with ``websockets`` (a dev dependency already), nothing heavier.

:class:`Browser` starts ``chromium --headless`` with a temporary profile, opens a page, and
records what a person would notice went wrong: console errors, uncaught exceptions and error
log entries (``Runtime.consoleAPICalled``, ``Runtime.exceptionThrown``, ``Log.entryAdded``),
and every URL the page requested (a self-contained report requests only itself). It evaluates
JavaScript and takes PNG screenshots of the whole page.

The README's picture of the simulator's report is made with it, from a real report::

    python -m tests.browser screenshot report.html docs/simulator-report.png [--width 1200]

Tests call :func:`require_chromium`: without Chromium they skip with the install hint, except
under CI (``CI`` set), where its absence fails, as redis-server's does.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from websockets.sync.client import connect

INSTALL_HINT = "install Debian's chromium package (apt-get install -y chromium; .ci/run does it)"
CANDIDATES = ("chromium", "chromium-browser", "/usr/bin/chromium")


def find_chromium() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Chromium's path; otherwise skip the calling test (fail it under CI) saying why."""
    import pytest

    found = find_chromium()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests, but chromium is missing; {INSTALL_HINT}")
        pytest.skip(f"chromium not found; {INSTALL_HINT}")
    return found


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools call failed or timed out."""


@dataclass
class Page:
    """What happened while a page was open."""

    url: str
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


class Browser:
    """``with Browser() as browser: page = browser.open(url)``; one tab, a fresh profile."""

    def __init__(
        self,
        executable: str | None = None,
        *,
        width: int = 1200,
        height: int = 900,
        timeout: float = 20.0,
    ) -> None:
        self.executable = executable or find_chromium()
        if self.executable is None:
            raise BrowserError(f"chromium not found; {INSTALL_HINT}")
        self.width, self.height, self.timeout = width, height, timeout
        self._next_id = 0
        self._page: Page | None = None
        self._loaded = False

    # -- the process and the connection --------------------------------------------------------

    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(
            prefix="aioresilience-chromium-", ignore_cleanup_errors=True
        )
        args = [
            str(self.executable),
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--disable-component-update",
            "--hide-scrollbars",
            "--mute-audio",
            f"--user-data-dir={self._profile.name}",
            "--remote-debugging-port=0",  # Chromium picks a free port and says which
            f"--window-size={self.width},{self.height}",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        with contextlib.ExitStack() as stack:
            stack.callback(self._stop)
            url, port = self._page_socket()
            # Our own socket to the loopback port: a proxy from the environment (http_proxy)
            # never stands between the test and its browser.
            sock = socket.create_connection(("127.0.0.1", port), timeout=self.timeout)
            stack.callback(sock.close)
            self._ws = stack.enter_context(
                connect(url, sock=sock, max_size=None, open_timeout=self.timeout)
            )
            self._exit = stack.pop_all()  # started: closed (socket, then process) on exit
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit.close()

    def _stop(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr is not None:
            self._process.stderr.close()
        self._profile.cleanup()

    def _page_socket(self) -> tuple[str, int]:
        """The DevTools WebSocket of the tab Chromium opened: its stderr names the browser's
        endpoint (and so the port) once it listens; /json/list on that port lists the tabs."""
        lines: queue.Queue[str | None] = queue.Queue()

        def drain() -> None:  # keeps reading, so a chatty Chromium never blocks on a full pipe
            assert self._process.stderr is not None
            for raw in self._process.stderr:
                lines.put(raw.decode(errors="replace"))
            lines.put(None)

        threading.Thread(target=drain, daemon=True, name="chromium-stderr").start()
        deadline = time.monotonic() + self.timeout
        said: list[str] = []
        while True:
            try:
                line = lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                raise BrowserError(f"chromium did not listen within {self.timeout} s") from None
            if line is None:
                raise BrowserError("chromium exited before listening:\n" + "".join(said[-20:]))
            said.append(line)
            if line.startswith("DevTools listening on ws://"):
                port = line.split("ws://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
                break
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with direct.open(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
            targets = json.load(answer)
        for target in targets:
            if target.get("type") == "page":
                return str(target["webSocketDebuggerUrl"]), int(port)
        raise BrowserError(f"chromium lists no page: {targets}")

    # -- the protocol ---------------------------------------------------------------------------

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One DevTools command; the events that arrive meanwhile are recorded."""
        self._next_id += 1
        ident = self._next_id
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = self._receive(deadline, method)
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            self._event(message)

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        try:
            raw = self._ws.recv(timeout=max(deadline - time.monotonic(), 0))
        except TimeoutError:
            raise BrowserError(f"no answer to {waiting_for} within {self.timeout} s") from None
        message: dict[str, Any] = json.loads(raw)
        return message

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        page = self._page
        if method == "Page.loadEventFired":
            self._loaded = True
        if page is None:
            return
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
            )
            page.errors.append(f"console.{params['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            thrown = details.get("exception", {}).get("description") or details.get("text")
            page.errors.append(f"uncaught: {thrown}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            page.errors.append(
                f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}"
            )
        elif method == "Network.requestWillBeSent":
            page.requests.append(params.get("request", {}).get("url", ""))

    # -- what tests use -------------------------------------------------------------------------

    def open(self, url: str) -> Page:
        """Load ``url`` and wait for its load event; the returned page collects what went wrong
        while it was loaded and later (evaluate and screenshot keep recording)."""
        self._page = page = Page(url)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self._viewport(self.height)
        self._loaded = False
        navigated = self.call("Page.navigate", url=url)
        if navigated.get("errorText"):
            raise BrowserError(f"could not open {url}: {navigated['errorText']}")
        deadline = time.monotonic() + self.timeout
        while not self._loaded:
            self._event(self._receive(deadline, f"the load event of {url}"))
        return page

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            thrown = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression!r} threw {thrown}")
        return answer["result"].get("value")

    def screenshot(self, path: str | Path) -> Path:
        """A PNG of the whole page (not only the window), written to ``path``."""
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        self._viewport(height)
        try:
            shot = self.call("Page.captureScreenshot", format="png")
        finally:
            self._viewport(self.height)
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(base64.b64decode(shot["data"]))
        return target

    def _viewport(self, height: int) -> None:
        self.call(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.browser", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    shot = commands.add_parser("screenshot", help="a PNG of a page (a report) opened offline")
    shot.add_argument("page", help="an HTML file, e.g. the simulator's report.html")
    shot.add_argument("png", help="where to write the PNG, e.g. docs/simulator-report.png")
    shot.add_argument("--width", type=int, default=1200, help="window width in CSS pixels")
    args = parser.parse_args(argv)
    with Browser(width=args.width) as browser:
        page = browser.open(Path(args.page).resolve().as_uri())
        written = browser.screenshot(args.png)
    for error in page.errors:
        print(f"{args.page}: {error}", file=sys.stderr)
    print(f"wrote {written}")
    return 1 if page.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
