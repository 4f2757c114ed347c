"""A headless Chromium driven over the DevTools protocol on a pipe: no port, no extra package.

Chromium started with ``--remote-debugging-pipe`` reads protocol messages
(JSON, each ended by a NUL byte) on its file descriptor 3 and writes on 4.
:class:`Browser` opens a page, records console errors, uncaught exceptions,
log entries and every network request, evaluates JavaScript and takes
screenshots. Debian's ``chromium`` package provides the browser (``.ci/run``
installs it); :func:`find_chromium` says when there is none.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The Chromium executable, or None (``GRIDCV_CHROMIUM`` names another one)."""
    named = os.environ.get("GRIDCV_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _as_fds_3_and_4(reads: int, writes: int) -> None:
    """In the child: the pipe's ends become fds 3 and 4, as ``--remote-debugging-pipe`` expects
    (moved above 10 first, so that neither is overwritten while the other is moved)."""
    high_reads, high_writes = fcntl.fcntl(reads, fcntl.F_DUPFD, 10), fcntl.fcntl(writes, fcntl.F_DUPFD, 10)
    os.dup2(high_reads, 3)
    os.dup2(high_writes, 4)


class Browser:
    """One headless Chromium with one page; use as a context manager.

    Args:
        executable: The browser to start.
        width: The page's width in CSS pixels (the height grows with screenshots).
        timeout: Seconds to wait for any answer of the browser.
    """

    def __init__(self, executable: str, width: int = 1280, timeout: float = 60.0) -> None:
        self.timeout = timeout
        self.errors: list[str] = []  # console errors, uncaught exceptions, error log entries
        self.requests: list[str] = []  # every URL the page asked for
        self._profile = tempfile.TemporaryDirectory(prefix="gridcv-chromium-", ignore_cleanup_errors=True)
        self._log = open(Path(self._profile.name) / "stderr.log", "wb")  # closed in close()
        to_browser, self._write_fd = os.pipe()
        self._read_fd, from_browser = os.pipe()
        self._process = subprocess.Popen(
            [executable, *FLAGS, f"--user-data-dir={self._profile.name}", f"--window-size={width},900", "about:blank"],
            # Python's descriptors are not inherited (PEP 446): only the two that become 3 and 4 are.
            close_fds=False,
            preexec_fn=lambda: _as_fds_3_and_4(to_browser, from_browser),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )
        os.close(to_browser)
        os.close(from_browser)
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=True)
        self.call(
            "Emulation.setDeviceMetricsOverride",
            session=True,
            width=width,
            height=900,
            deviceScaleFactor=1,
            mobile=False,
        )

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Asks the browser to quit, then makes sure it has."""
        try:
            self._send({"id": self._take_id(), "method": "Browser.close"})
        except OSError:
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()
        self._profile.cleanup()

    def open(self, path: Path) -> None:
        """Loads a local file and waits for its load event (and a moment for scripts and layout)."""
        self._events.clear()
        self.call("Page.navigate", session=True, url=path.resolve().as_uri())
        self._wait_for("Page.loadEventFired")
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))", await_promise=True)

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        answer = self.call(
            "Runtime.evaluate", session=True, expression=expression, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"JavaScript failed: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def screenshot(self, target: Path) -> bytes:
        """A PNG of the whole page (beyond the window), written to ``target``; returns its bytes."""
        height = int(self.evaluate("document.documentElement.scrollHeight"))
        width = int(self.evaluate("document.documentElement.scrollWidth"))
        data = self.call(
            "Page.captureScreenshot",
            session=True,
            format="png",
            captureBeyondViewport=True,
            clip={"x": 0, "y": 0, "width": width, "height": min(height, 16000), "scale": 1},
        )["data"]
        png = base64.b64decode(data)
        target.write_bytes(png)
        return png

    # --- the protocol --------------------------------------------------------------------

    def call(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        """Sends one command and returns its result (events that arrive meanwhile are recorded)."""
        message: dict[str, Any] = {"id": self._take_id(), "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        self._send(message)
        while True:
            answer = self._receive()
            if answer.get("id") == message["id"]:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return dict(answer.get("result", {}))

    def _wait_for(self, event: str) -> None:
        while not any(e.get("method") == event for e in self._events):
            self._receive()

    def _take_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, message: dict[str, Any]) -> None:
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read_fd], [], [], left)[0]:
                raise RuntimeError(
                    f"Chromium did not answer in {self.timeout:.0f} s (exit code {self._process.poll()})"
                )
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message = json.loads(raw)
        if "method" in message:
            self._record(message)
        return dict(message)

    def _stderr(self) -> str:
        """The exit code and the end of what the browser wrote to stderr, for an error message."""
        self._log.flush()
        lines = (Path(self._profile.name) / "stderr.log").read_text(errors="replace").splitlines()
        useful = [line for line in lines if "dbus" not in line][-8:]
        return f" (exit code {self._process.poll()}); its stderr ends:\n" + "\n".join(useful)

    def _record(self, event: dict[str, Any]) -> None:
        self._events.append(event)
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append(f"exception: {details.get('exception', {}).get('description', details.get('text'))}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            self.errors.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
