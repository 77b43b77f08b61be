"""A headless Chromium driven over the DevTools protocol, for the browser tests of the pages.

Debian's ``chromium`` with ``--remote-debugging-pipe``: the protocol's JSON messages, each ended
by a NUL byte, on file descriptors 3 (to the browser) and 4 (from it). Only the standard library,
so no Playwright download and no websocket package: the tests use the browser a user has.

``Browser.find()`` is None when no chromium binary is installed (the tests skip, naming it).
A page's interactions are the real input events (``Input.dispatchMouseEvent`` / key events), so
a hover or click goes through the page's own event handlers.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

SKIP_REASON = "needs Debian's chromium (apt-get install -y chromium; ./dev test installs it as root)"


class BrowserError(RuntimeError):
    """The browser answered a command with an error, or did not answer in time."""


class Browser:
    """One headless chromium process and one page (tab) in it."""

    def __init__(self, binary: str, profile: Path, width: int = 1280, height: int = 900) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # in the child: the pipe ends become fds 3 and 4 (dup first: one may be 3)
            r, w = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-pipe",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buf = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.page("Page.enable")
        self.page("Runtime.enable")
        self.page("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    @staticmethod
    def find() -> str | None:
        return shutil.which("chromium") or shutil.which("chromium-browser")

    def call(self, method: str, session: str | None = None, timeout: float = 60.0, **params: Any) -> Any:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline, method):
                if reply.get("id") == self._next:
                    if "error" in reply:
                        raise BrowserError(f"{method}: {reply['error'].get('message')}")
                    return reply.get("result", {})
                self.events.append(reply)

    def _read(self, deadline: float, method: str) -> list[dict[str, Any]]:
        while b"\0" not in self._buf:
            if time.monotonic() > deadline:
                raise BrowserError(f"{method}: no answer from chromium in time")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise BrowserError(f"{method}: chromium closed the pipe (exit {self.proc.poll()})")
            self._buf += chunk
        *whole, self._buf = self._buf.split(b"\0")
        return [json.loads(m) for m in whole if m]

    def page(self, method: str, **params: Any) -> Any:
        return self.call(method, session=self.session, **params)

    def goto(self, url: str, timeout: float = 60.0) -> float:
        """Open ``url`` and wait for the load event; returns the seconds it took."""
        started = time.monotonic()
        self.page("Page.navigate", url=url)
        while self.js("document.readyState") != "complete" or self.js("location.href") == "about:blank":
            if time.monotonic() - started > timeout:
                raise BrowserError(f"{url} did not load within {timeout}s")
            time.sleep(0.05)
        return time.monotonic() - started

    def js(self, expression: str) -> Any:
        """Evaluate ``expression`` in the page; its JSON value (a thrown error raises BrowserError)."""
        r = self.page("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise BrowserError(f"{expression[:80]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def mouse(self, kind: str, x: float, y: float, **extra: Any) -> None:
        self.page("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def hover(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y, button="left", clickCount=1)
        self.mouse("mouseReleased", x, y, button="left", clickCount=1)

    def center(self, selector: str) -> tuple[float, float]:
        """Where to click ``selector``, in viewport pixels (scrolled into view first, as a user would)."""
        box = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                      " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                      " return [r.left + r.width / 2, r.top + r.height / 2]; })()")
        return float(box[0]), float(box[1])

    def key(self, key: str, code: str, keycode: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.page("Input.dispatchKeyEvent", type=kind, key=key, code=code, windowsVirtualKeyCode=keycode)

    def screenshot(self, path: Path, full: bool = False) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full:
            params["captureBeyondViewport"] = True
        path.write_bytes(base64.b64decode(self.page("Page.captureScreenshot", **params)["data"]))
        return path

    def close(self) -> None:
        with contextlib.suppress(BrowserError, OSError):
            self.call("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)
