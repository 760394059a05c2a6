"""Headless Chromium for the web page's end-to-end tests (tests/test_web.py, tests/test_zone_editor.py).

:class:`DevTools` speaks the Chrome DevTools Protocol over ``--remote-debugging-pipe``;
:class:`Tab` is one page of it with the few things the tests do: navigate and wait for the
load, evaluate, click where an element is with real mouse events, type, screenshot, and the
page's cookies (the session cookie is HttpOnly: scripts cannot read it, DevTools can).
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from pathlib import Path

#: Why a browser test skips where no Chromium is installed.
SKIP_REASON = "needs Debian's chromium (apt-get install chromium; scripts/sysdeps.sh test)"


def chromium() -> str | None:
    """The path of a Chromium (Debian's chromium) to drive, or None."""
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class DevTools:
    """Chrome DevTools Protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON).

    No websocket and no Node: the browser is a child process with two pipes.
    """

    def __init__(self, binary: str, user_data_dir: Path) -> None:
        import subprocess

        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()
        # Move the child's ends above 4, so that "3<&N 4>&M" cannot overwrite one with the other.
        cmd_r, res_w = (self._high(fd) for fd in (cmd_r, res_w))
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1000,900",
                 f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"]
        # bash puts the pipes on fds 3 and 4 where Chromium expects them (no preexec_fn: threads
        # run here; dash refuses fd numbers above 9).
        self.proc = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{cmd_r} 4>&{res_w}', binary, *flags],
            pass_fds=(cmd_r, res_w), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(cmd_r)
        os.close(res_w)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self.events: list[dict] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @staticmethod
    def _high(fd: int) -> int:
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 5)
        os.close(fd)
        return high

    def _read(self) -> None:
        buf = b""
        while True:
            chunk = os.read(self._res_r, 65536)
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cv:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def send(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float = 20.0) -> dict:
        with self._cv:
            self._next += 1
            i = self._next
        msg = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        try:
            os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        except BrokenPipeError:
            raise RuntimeError(f"chromium exited ({self.proc.wait(5)}): {self.stderr_tail()}") from None
        deadline = time.monotonic() + timeout
        with self._cv:
            while i not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"no reply to {method}")
                self._cv.wait(left)
            reply = self._replies.pop(i)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def stderr_tail(self) -> str:
        """Chromium's last meaningful stderr lines (once it has exited)."""
        if self.proc.poll() is None:
            return ""
        lines = self.proc.stderr.read().decode(errors="replace").splitlines()
        return " | ".join([ln for ln in lines if "dbus" not in ln][-5:])

    def wait_event(self, method: str, after: int, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for ev in self.events[after:]:
                    if ev.get("method") == method:
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {method} event")
                self._cv.wait(left)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - the browser may be gone already
            pass
        try:
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self._cmd_w)
        self._reader.join(timeout=5)
        os.close(self._res_r)


class Tab:
    """One page target of ``browser``, attached in flat mode."""

    def __init__(self, browser: DevTools) -> None:
        self.browser = browser
        try:
            targets = browser.send("Target.getTargets", timeout=60)["targetInfos"]
        except TimeoutError:
            raise RuntimeError(f"chromium did not answer: {browser.stderr_tail()}") from None
        page = next((t["targetId"] for t in targets if t["type"] == "page"), None)
        page = page or browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.sid = browser.send("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")

    def send(self, method: str, params: dict | None = None, timeout: float = 20.0) -> dict:
        return self.browser.send(method, params, session=self.sid, timeout=timeout)

    def evaluate(self, expr: str):
        """The value of a JavaScript expression in the page (an exception there: RuntimeError)."""
        r = self.send("Runtime.evaluate", {"expression": expr, "returnByValue": True})
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expr[:60]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def load(self, url: str | None = None, action: str | None = None, click: str | None = None) -> None:
        """Navigate to ``url``, run ``action``, or :meth:`click` a selector; wait for the next load."""
        n = len(self.browser.events)
        if url:
            self.send("Page.navigate", {"url": url})
        elif click:
            self.click(click)
        else:
            self.evaluate(action)
        self.browser.wait_event("Page.loadEventFired", n)

    def wait_for(self, expr: str, timeout: float = 20.0):
        """Poll until ``expr`` is truthy in the page; its value."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expr)
            if value or time.monotonic() > deadline:
                if not value:
                    raise TimeoutError(f"never true in the page: {expr}")
                return value
            time.sleep(0.1)

    def mouse_click(self, x: float, y: float) -> None:
        """A real left click (press, release) at viewport CSS pixels."""
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            params = {"type": kind, "x": x, "y": y}
            if kind != "mouseMoved":
                params.update(button="left", buttons=1 if kind == "mousePressed" else 0, clickCount=1)
            self.send("Input.dispatchMouseEvent", params)

    def rect(self, selector: str) -> dict:
        """The element's bounding box in viewport CSS pixels (scrolled into view first)."""
        return self.evaluate(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                             "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                             "return {x: r.left, y: r.top, width: r.width, height: r.height}; })()")

    def click(self, selector: str, fx: float = 0.5, fy: float = 0.5) -> None:
        """Click the element at (fx, fy) of its box (0..1) with real mouse events."""
        r = self.rect(selector)
        self.mouse_click(r["x"] + fx * r["width"], r["y"] + fy * r["height"])

    def type(self, selector: str, text: str) -> None:
        """Focus the element and type ``text`` as keyboard input."""
        self.click(selector)
        self.send("Input.insertText", {"text": text})

    def screenshot(self, path: Path) -> bytes:
        png = base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png)
        return png

    def cookie(self, name: str, url: str) -> str | None:
        """The value of a cookie the page holds for ``url`` (HttpOnly ones too)."""
        cookies = self.send("Network.getCookies", {"urls": [url]})["cookies"]
        return next((c["value"] for c in cookies if c["name"] == name), None)
