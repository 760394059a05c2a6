"""The local web page: real HTTP on a loopback ephemeral port, and headless Chromium end to end."""

from __future__ import annotations

import http.client
import io
import json
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from edge import cli
from edge.errors import ConfigError, UsageError
from edge.fakes import FakeClock
from edge.settings.web import WebConfig
from edge.act.web import events, health, passwords, render, sessions, set_password, stream
from edge.act.web.handover import LiveFrame, Overlay, overlays_from_tracks
from edge.act.web.server import WebServer

from web_browser import SKIP_REASON, DevTools
from web_browser import chromium as _chromium


ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery"


@pytest.fixture
def pw_file(tmp_path) -> Path:
    p = tmp_path / "web-password"
    # Cheap scrypt parameters keep the tests fast; they are stored in the file and used to verify.
    passwords.write_password_file(p, passwords.hash_password(PASSWORD, n=2**10))
    return p


def red_frame(w: int = 640, h: int = 480) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 220  # R of R,G,B
    return img


class Harness:
    """A started WebServer plus the things the tests look at."""

    def __init__(self, pw_file: Path, tmp_path: Path, clock=time.monotonic, status=None, **cfg) -> None:
        cfg.setdefault("port", 0)
        self.cfg = WebConfig(**cfg)
        self.live = LiveFrame()
        self.tests_run = 0
        self.status = status or {
            "fps": 12.5, "camera_ok": True, "frames": 420, "dropped": 3, "source": "demo",
            "models": [{"name": "yoloface-500k-v2", "sha256": "ab" * 32},
                       {"name": "mask-classifier", "sha256": "cd" * 32}],
            "snapshots": False,
            "events": [{"id": 7, "time": 1.7e9, "track_id": 3, "verdict": "violation", "label": "no_mask",
                        "score": 0.91, "snapshot": None}],
        }
        self.server = WebServer(self.cfg, status=lambda: self.status, latest_frame=self.live.get,
                                test_outputs=self._test_outputs, password_file=pw_file,
                                sys_root=tmp_path / "nosys", clock=clock)
        self.server.start()

    def _test_outputs(self) -> None:
        self.tests_run += 1

    def request(self, method: str, path: str, body: dict | None = None, cookie: str | None = None,
                headers: dict | None = None) -> tuple[int, http.client.HTTPMessage, bytes]:
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = urlencode(body)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        if cookie:
            h["Cookie"] = f"{sessions.SESSION_COOKIE}={cookie}"
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            return r.status, r.headers, r.read()
        finally:
            c.close()

    def login(self, password: str = PASSWORD) -> str:
        status, headers, _ = self.request("POST", "/login", {"password": password, "next": "/status"})
        assert status == 302, status
        cookie = headers["Set-Cookie"]
        return cookie.split(";")[0].split("=", 1)[1]

    def csrf(self, cookie: str) -> str:
        _, _, body = self.request("GET", "/status", cookie=cookie)
        text = body.decode()
        i = text.index('action="/test-outputs"')
        j = text.index('name="csrf" value="', i) + len('name="csrf" value="')
        return text[j:text.index('"', j)]

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def harness(pw_file, tmp_path):
    made: list[Harness] = []

    def make(**kw) -> Harness:
        h = Harness(pw_file, tmp_path, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


# ---- login and sessions ------------------------------------------------------------------------

PAGES = ["/", "/status", "/status.json", "/stream.mjpg", "/frame.jpg", "/thumb/7", "/no-such-page"]


def test_every_page_requires_login(harness):
    h = harness()
    h.live.put(red_frame(), [])
    for cookie in (None, "forged-token"):
        for path in PAGES:
            status, headers, body = h.request("GET", path, cookie=cookie)
            if path in ("/", "/status"):
                assert status == 302 and headers["Location"].startswith("/login?next="), (path, status)
            else:
                assert status == 401, (path, status)
            assert b"\xff\xd8" not in body and b"no_mask" not in body and b"abab" not in body
        status, _, _ = h.request("POST", "/test-outputs", {"csrf": "x"}, cookie=cookie)
        assert status == 401
    assert h.tests_run == 0
    assert h.server.frames_sent == 0
    # The login page itself is public and shows no data.
    status, _, body = h.request("GET", "/login")
    assert status == 200 and b'name="password"' in body and b"no_mask" not in body


def test_login_cookie_and_pages(harness):
    h = harness(live_width=320)
    h.live.put(red_frame(), [Overlay((100, 100, 300, 300), "no_mask", 0.9, "violation", 3)])
    status, headers, _ = h.request("POST", "/login", {"password": PASSWORD, "next": "/status"})
    assert status == 302 and headers["Location"] == "/status"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Max-Age=3600" in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40

    status, headers, body = h.request("GET", "/status", cookie=token)
    text = body.decode()
    assert status == 200
    assert "12.5" in text and "yoloface-500k-v2" in text and "abababababababab" in text
    assert "no_mask" in text and "violation" in text and "/thumb/" not in text  # snapshots off
    assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]

    status, _, body = h.request("GET", "/status.json", cookie=token)
    st = json.loads(body)
    assert status == 200 and st["fps"] == 12.5 and st["events"][0]["label"] == "no_mask"
    assert "snapshot" not in st["events"][0]
    assert h.status["events"][0]["snapshot"] is None  # the runner's dicts are not modified

    status, headers, body = h.request("GET", "/frame.jpg", cookie=token)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (240, 320, 3)  # scaled down to live_width
    # R,G,B in, B,G,R into the encoder: the red frame stays red (sampled away from box and text).
    b, g, r = img[200, 300].astype(int)
    assert r > 180 and b < 60 and g < 60

    # Open redirects are refused.
    status, headers, _ = h.request("POST", "/login", {"password": PASSWORD, "next": "//evil.example/"})
    assert status == 302 and headers["Location"] == "/"

    # Logging out ends the session on the server.
    csrf = h.csrf(token)
    status, _, _ = h.request("POST", "/logout", {"csrf": csrf}, cookie=token)
    assert status == 302
    assert h.request("GET", "/status.json", cookie=token)[0] == 401


def test_wrong_password_is_rate_limited(harness):
    clock = FakeClock(1000.0)
    h = harness(clock=clock, login_failures_per_minute=5)
    for _ in range(5):
        status, _, body = h.request("POST", "/login", {"password": "guess"})
        assert status == 401 and b"Wrong password" in body
        clock.t += 1.0
    # Over the limit even the right password is not tried: the answer is 429 with a wait.
    status, headers, _ = h.request("POST", "/login", {"password": PASSWORD})
    assert status == 429
    assert 1 <= int(headers["Retry-After"]) <= 61
    clock.t += 61.0
    assert h.login()  # the window has passed


def test_concurrent_wrong_logins_take_their_slot_before_the_password_check(harness, monkeypatch, caplog):
    """40 wrong logins at once from one address: the limit holds (was: all 40 got 401, each ran
    scrypt), the rest are refused at once, and at most MAX_PASSWORD_CHECKS checks overlap."""
    import logging

    caplog.set_level(logging.INFO)
    lock = threading.Lock()
    seen = {"running": 0, "peak": 0, "calls": 0}
    real = passwords.verify_password

    def slow_verify(password, stored):
        with lock:
            seen["calls"] += 1
            seen["running"] += 1
            seen["peak"] = max(seen["peak"], seen["running"])
        try:
            time.sleep(0.3)  # scrypt's time on a Pi, so that the attempts really overlap
            return real(password, stored)
        finally:
            with lock:
                seen["running"] -= 1

    monkeypatch.setattr(sessions, "verify_password", slow_verify)
    h = harness(login_failures_per_minute=5)
    n = 40
    start = threading.Barrier(n)
    statuses: list[int] = []

    def attempt():
        start.wait()
        statuses.append(h.request("POST", "/login", {"password": "wrong guess"})[0])

    threads = [threading.Thread(target=attempt) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    counts = {code: statuses.count(code) for code in set(statuses)}
    assert len(statuses) == n and set(counts) <= {401, 429, 503}, counts
    # Every attempt took a slot (checked: 401; refused while MAX_PASSWORD_CHECKS ran: 503), so
    # at most 5 got anything but 429.
    assert counts.get(401, 0) + counts.get(503, 0) <= 5 and seen["calls"] <= 5, (counts, seen)
    assert counts.get(429, 0) >= n - 5, counts
    assert seen["peak"] <= sessions.MAX_PASSWORD_CHECKS, seen
    # The limit is used up: even the right password is not tried now.
    assert h.request("POST", "/login", {"password": PASSWORD})[0] == 429
    # The flood is not a log flood: a line per checked attempt and one per kind of refusal.
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 5 + 2, warnings


def test_password_checks_per_minute_are_capped_for_all_addresses(harness):
    """Many addresses, each under its own limit: only MAX_PASSWORD_CHECKS_PER_MINUTE checks a minute."""
    clock = FakeClock(1000.0)
    h = harness(clock=clock, login_failures_per_minute=5)
    n = sessions.MAX_PASSWORD_CHECKS_PER_MINUTE + 10
    codes = []
    for i in range(n):  # one wrong login each from 127.0.0.2, 127.0.0.3, ...
        c = http.client.HTTPConnection("127.0.0.1", h.server.port, timeout=10, source_address=(f"127.0.0.{i + 2}", 0))
        c.request("POST", "/login", body="password=wrong", headers={"Content-Type": "application/x-www-form-urlencoded"})
        codes.append(c.getresponse().status)
        c.close()
    assert codes == [401] * sessions.MAX_PASSWORD_CHECKS_PER_MINUTE + [503] * 10
    clock.t += 61.0
    assert h.login()  # a minute later the right password works again


def test_login_flood_memory_stays_bounded(harness, tmp_path):
    """Real scrypt (32 MiB each): the process grows by a few checks' worth, not 40 (was +1 GB)."""
    real_pw = tmp_path / "real-password"
    passwords.write_password_file(real_pw, passwords.hash_password(PASSWORD))  # the default cost
    h = Harness(real_pw, tmp_path, login_failures_per_minute=5)
    try:
        def rss() -> int:
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))

        base = rss()
        peak = [base]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss())
                time.sleep(0.005)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        start = threading.Barrier(40)

        def attempt():
            start.wait()
            h.request("POST", "/login", {"password": "wrong guess"})

        threads = [threading.Thread(target=attempt) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        done.set()
        sampler.join(5)
        grown = (peak[0] - base) / 2**20
        print(f"\nRSS grew by {grown:.0f} MiB during 40 concurrent wrong logins")
        assert grown < 200, grown  # MAX_PASSWORD_CHECKS (2) x 32 MiB and some slack
    finally:
        h.close()


def test_session_expires(harness):
    clock = FakeClock(1000.0)
    h = harness(clock=clock, session_minutes=0.5)
    status, headers, _ = h.request("POST", "/login", {"password": PASSWORD})
    assert "Max-Age=30" in headers["Set-Cookie"]
    token = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    clock.t += 29.0
    assert h.request("GET", "/status", cookie=token)[0] == 200
    clock.t += 2.0
    status, headers, _ = h.request("GET", "/status", cookie=token)
    assert status == 302 and headers["Location"].startswith("/login")
    assert h.request("GET", "/status.json", cookie=token)[0] == 401


@pytest.mark.parametrize("nxt", [
    "/\t/evil.example", "/\n/evil.example", "/\r\nSet-Cookie: x=1", "/\\evil.example", "\\\\evil.example",
    "//evil.example", "///evil.example", "https://evil.example/", "javascript:alert(1)", "/ /evil.example",
    "/\x00", "/\x7f", "evil.example", "/" + "a" * 600, "/caf\u00e9"])
def test_login_next_is_only_a_path_on_this_page(harness, nxt):
    """`POST /login?next=/%09/evil.example` answered `Location: //evil.example` (browsers drop the
    tab); `/%0A..` gave a 500 with a traceback. Anything but a plain local path goes to /."""
    h = harness()
    for path, form in ((f"/login?next={quote(nxt, safe='')}", {"password": PASSWORD}),
                       ("/login", {"password": PASSWORD, "next": nxt})):
        status, headers, _ = h.request("POST", path, form)
        assert status == 302 and headers["Location"] == "/", (nxt, status, headers["Location"])
    status, _, body = h.request("GET", f"/login?next={quote(nxt, safe='')}")
    assert status == 200 and b'name="next" value="/">' in body


def test_login_next_keeps_local_paths(harness):
    h = harness()
    for nxt in ("/status", "/status?test=ok", "/status.json", "/a%2F%2Fb"):
        status, headers, _ = h.request("POST", "/login", {"password": PASSWORD, "next": nxt})
        assert status == 302 and headers["Location"] == nxt


def test_only_this_devices_host_names_are_served(harness):
    """DNS rebinding: evil.example resolving to the device must not reach the page, even with a
    matching Origin (the Origin check compared against the attacker's own Host)."""
    import socket

    h = harness(allowed_hosts=["doorway.example.lan", ".home.arpa"])
    port = h.server.port
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    status, headers, body = h.request("POST", "/login", {"password": PASSWORD}, headers=evil)
    assert status == 400 and "Set-Cookie" not in headers and b"allowed_hosts" in body
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", "home.arpa.evil",
                 f"127.0.0.1.evil.example:{port}", "", "a:b:c", f"[::1:{port}"):
        assert h.request("GET", "/login", headers={"Host": host})[0] == 400, host
    short = socket.gethostname().split(".")[0].lower()
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST.", f"[::1]:{port}", f"{short}.local:{port}",
                 f"{short}:{port}", f"192.168.1.20:{port}", f"doorway.example.lan:{port}", "cam.home.arpa"):
        assert h.request("GET", "/login", headers={"Host": host})[0] == 200, host
    # A logged-in session is no way around it either.
    token = h.login()
    assert h.request("GET", "/status.json", cookie=token, headers={"Host": "evil.example"})[0] == 400
    with pytest.raises(ValidationError):
        WebConfig(allowed_hosts=["evil example"])


def test_origin_must_be_this_page(harness):
    h = harness()
    token = h.login()
    csrf = h.csrf(token)
    port = h.server.port
    for origin in (f"http://evil.example:{port}", f"http://localhost:{port}", f"http://127.0.0.1:{port + 1}",
                   "http://127.0.0.1"):
        status, _, _ = h.request("POST", "/test-outputs", {"csrf": csrf}, cookie=token, headers={"Origin": origin})
        assert status == 403, origin
    assert h.tests_run == 0
    status, _, _ = h.request("POST", "/test-outputs", {"csrf": csrf}, cookie=token,
                             headers={"Origin": f"http://localhost:{port}", "Host": f"localhost:{port}"})
    assert status == 302 and h.tests_run == 1


def test_no_static_route(harness, tmp_path, monkeypatch):
    """Flask's default /static/<file> served the working directory's static/ without a login."""
    (tmp_path / "static").mkdir()
    (tmp_path / "static" / "secret.txt").write_text("faces and passwords\n")
    monkeypatch.chdir(tmp_path)
    h = harness()
    status, _, body = h.request("GET", "/static/secret.txt")
    assert status == 401 and b"faces" not in body
    token = h.login()
    status, _, body = h.request("GET", "/static/secret.txt", cookie=token)
    assert status == 404 and b"faces" not in body


def test_half_sent_requests_hold_no_threads_and_time_out(harness):
    """werkzeug's server gave every connection a thread and no timeout (300 half-sent requests
    held 309 threads). waitress: a fixed pool, capped connections, idle ones closed."""
    import socket

    h = harness(idle_timeout_s=1, max_connections=8, max_viewers=1)
    threads_before = threading.active_count()
    socks = []
    try:
        for _ in range(100):
            s = socket.create_connection(("127.0.0.1", h.server.port), timeout=5)
            s.sendall(b"GET /login HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # never finished
            socks.append(s)
        time.sleep(0.5)
        assert threading.active_count() <= threads_before + 1, threading.active_count() - threads_before
        # The first connections are closed by the server once idle for idle_timeout_s.
        socks[0].settimeout(6)
        assert socks[0].recv(100) == b""
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 20
    while True:  # once the backlog drains, the page answers again
        try:
            assert h.request("GET", "/login")[0] == 200
            break
        except (OSError, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_port_in_use_is_one_line(tmp_path):
    """The web port taken by another program: werkzeug printed its own lines and exited with a bare 1."""
    import socket
    import subprocess
    import sys

    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        with pytest.raises(ConfigError, match=f"127.0.0.1:{port}: Address already in use"):
            WebServer(WebConfig(port=port), dict, lambda: None, lambda: None,
                      password_file=tmp_path / "pw").start()
        if not (ROOT / "models" / "yoloface-500k-v2-facemask.json").is_file():
            return
        conf = tmp_path / "doorguard.toml"
        conf.write_text(f'[events]\nstate_dir = "{tmp_path / "state"}"\n[web]\nenabled = true\nport = {port}\n')
        env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "DOORGUARD_DEBUG": "0"}
        env.pop("NOTIFY_SOCKET", None)
        p = subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(conf), "--source", "demo",
                            "--max-frames", "5"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    finally:
        blocker.close()
    assert p.returncode == ConfigError.exit_code, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and not ln.startswith("INFO: ")]
    assert lines == [f"doorguard: error: web: cannot listen on 127.0.0.1:{port}: Address already in use "
                     "(another program uses it; choose another [web] port)"], p.stderr
    assert "Traceback" not in p.stdout + p.stderr and "werkzeug" not in (p.stdout + p.stderr).lower()


def test_refuses_non_loopback_bind_without_password(tmp_path):
    missing = tmp_path / "no-such-password"
    with pytest.raises(ConfigError) as e:
        WebServer(WebConfig(bind="0.0.0.0"), dict, lambda: None, lambda: None, password_file=missing)
    msg = str(e.value)
    assert "\n" not in msg and "0.0.0.0" in msg and "set-password" in msg
    empty = tmp_path / "empty"
    empty.write_text("")
    with pytest.raises(ConfigError):
        WebServer(WebConfig(bind="192.168.1.20"), dict, lambda: None, lambda: None, password_file=empty)
    garbage = tmp_path / "garbage"
    garbage.write_text("hunter2\n")
    with pytest.raises(ConfigError, match="not an scrypt hash"):
        WebServer(WebConfig(), dict, lambda: None, lambda: None, password_file=garbage)
    # Loopback without a password starts, but nothing is reachable (login cannot succeed).
    s = WebServer(WebConfig(port=0), dict, lambda: None, lambda: None, password_file=missing)
    with s:
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        c.request("POST", "/login", body="password=", headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        assert r.status == 401 and b"No password is set" in r.read()
        c.close()
    with pytest.raises(ValidationError):
        WebConfig(bind="doorway.example.com")
    with pytest.raises(ValidationError):
        WebConfig(enabled=True, colour="red")  # extra keys are refused


def test_non_loopback_with_password_is_accepted(pw_file):
    # Constructed only: tests listen on loopback alone.
    s = WebServer(WebConfig(bind="0.0.0.0"), dict, lambda: None, lambda: None, password_file=pw_file)
    assert s.port == 0
    s.close()


def test_test_button_is_csrf_safe(harness):
    h = harness()
    token = h.login()
    assert h.request("POST", "/test-outputs", {}, cookie=token)[0] == 403
    assert h.request("POST", "/test-outputs", {"csrf": "wrong"}, cookie=token)[0] == 403
    csrf = h.csrf(token)
    status, _, _ = h.request("POST", "/test-outputs", {"csrf": csrf}, cookie=token,
                             headers={"Origin": "http://evil.example"})
    assert status == 403
    assert h.tests_run == 0
    status, headers, _ = h.request("POST", "/test-outputs", {"csrf": csrf}, cookie=token,
                                   headers={"Origin": f"http://127.0.0.1:{h.server.port}"})
    assert status == 302 and headers["Location"].endswith("/status?test=ok")
    assert h.tests_run == 1
    assert b"test pattern started" in h.request("GET", "/status?test=ok", cookie=token)[2]


def test_thumbnails_only_when_snapshots_on(harness, tmp_path):
    snap = tmp_path / "snap.jpg"
    cv2.imwrite(str(snap), np.full((480, 640, 3), 128, np.uint8))
    event = {"id": 7, "time": 1.7e9, "track_id": 3, "verdict": "violation", "label": "no_mask", "score": 0.91,
             "snapshot": str(snap)}
    h = harness(status={"snapshots": False, "events": [event]})
    token = h.login()
    assert b"/thumb/7" not in h.request("GET", "/status", cookie=token)[2]
    assert h.request("GET", "/thumb/7", cookie=token)[0] == 404
    h.status["snapshots"] = True
    assert b'src="/thumb/7"' in h.request("GET", "/status", cookie=token)[2]
    status, headers, body = h.request("GET", "/thumb/7", cookie=token)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape[1] == 240
    assert h.request("GET", "/thumb/8", cookie=token)[0] == 404


def test_status_callback_failure_keeps_page_up(harness):
    h = harness()

    def broken():
        raise RuntimeError("runner busy")

    h.server._status = broken
    token = h.login()
    status, _, body = h.request("GET", "/status", cookie=token)
    assert status == 200 and b"runner busy" in body


# ---- the live view -------------------------------------------------------------------------------

class MjpegReader:
    """JPEG parts of a multipart/x-mixed-replace stream (boundary 'frame'), through the chunked body."""

    def __init__(self, resp: http.client.HTTPResponse) -> None:
        self.resp = resp
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.resp.read1(65536)
        assert chunk, "stream ended before a frame"
        self.buf += chunk

    def next(self) -> bytes:
        while b"\r\n\r\n" not in self.buf[self.buf.find(b"--frame"):] or b"--frame" not in self.buf:
            self._fill()
        start = self.buf.index(b"--frame")
        head_end = self.buf.index(b"\r\n\r\n", start)
        headers = dict(line.split(b":", 1) for line in self.buf[start:head_end].split(b"\r\n")[1:])
        length = int({k.strip().lower(): v for k, v in headers.items()}[b"content-length"])
        while len(self.buf) < head_end + 4 + length:
            self._fill()
        jpeg = self.buf[head_end + 4: head_end + 4 + length]
        self.buf = self.buf[head_end + 4 + length:]
        return jpeg


def test_mjpeg_delivers_frames_and_frees_the_viewer(harness):
    h = harness(live_fps=10, live_width=320, max_viewers=1)
    h.live.put(red_frame(), [{"box": [10, 10, 200, 200], "label": "mask", "score": 0.8, "verdict": "compliant",
                              "track_id": 1}])
    token = h.login()
    c = http.client.HTTPConnection("127.0.0.1", h.server.port, timeout=10)
    c.request("GET", "/stream.mjpg", headers={"Cookie": f"{sessions.SESSION_COOKIE}={token}"})
    r = c.getresponse()
    assert r.status == 200 and r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    parts = MjpegReader(r)
    first = cv2.imdecode(np.frombuffer(parts.next(), np.uint8), cv2.IMREAD_COLOR)
    assert first.shape == (240, 320, 3)
    # A new frame from the loop reaches the viewer.
    blue = np.zeros((480, 640, 3), np.uint8)
    blue[..., 2] = 220
    h.live.put(blue, [])
    second = cv2.imdecode(np.frombuffer(parts.next(), np.uint8), cv2.IMREAD_COLOR)
    assert second[120, 160, 0] > 180  # B channel of B,G,R
    assert h.server.viewers == 1
    assert h.request("GET", "/stream.mjpg", cookie=token)[0] == 503  # max_viewers=1
    c.close()
    r.close()
    for _ in range(60):  # noticed at the next write (new frames arrive at 10 fps here)
        h.live.put(red_frame(), [])
        if h.server.viewers == 0:
            break
        time.sleep(0.1)
    assert h.server.viewers == 0


def test_no_encode_without_a_viewer(harness, monkeypatch):
    calls = []
    real = render.render_frame
    monkeypatch.setattr(stream, "render_frame", lambda *a, **k: calls.append(1) or real(*a, **k))
    h = harness()
    frames = [red_frame() for _ in range(3)]
    for f in frames * 10:
        h.live.put(f, [])
        assert h.live.get()[0] is f  # a reference, not a copy
    time.sleep(0.3)
    assert calls == []


def test_overlays_from_tracks():
    from edge.track.tracking import Track
    from edge.types import Box

    settled = Track(id=4, box=Box(1, 2, 30, 40), detector_label="face", detector_score=0.9, window=5)
    settled.label, settled.score = "no_mask", 0.87
    voting = Track(id=5, box=Box(50, 60, 90, 99), detector_label="face", detector_score=0.8, window=5)
    gone = Track(id=6, box=Box(0, 0, 9, 9), detector_label="face", detector_score=0.8, window=5)
    gone.missed = 2
    out = overlays_from_tracks([settled, voting, gone], {4: "violation"})
    assert out == [Overlay((1.0, 2.0, 30.0, 40.0), "no_mask", 0.87, "violation", 4),
                   Overlay((50.0, 60.0, 90.0, 99.0), "face voting 0/5", None, None, 5)]
    jpeg = render.render_frame(red_frame(), out, 640, 9.5, 70)
    assert jpeg[:2] == b"\xff\xd8"


def test_jsonable_web_and_bench_alike():
    # One helper for the status page and the bench report (issue 23). The web's rule is kept:
    # any other object becomes its str (the bench's copy passed it on and json.dumps refused it).
    from edge.jsonable import jsonable

    class Odd:
        def __str__(self):
            return "odd"

    got = jsonable({1: (np.float32(0.5), np.int64(3), np.bool_(True)), "p": Path("/x/y"), "o": Odd(),
                    "n": None, "nan": float("nan")})
    assert got["1"] == [0.5, 3, True] and type(got["1"][2]) is bool
    assert (got["p"], got["o"], got["n"]) == ("/x/y", "odd", None)
    assert got["nan"] != got["nan"]
    json.dumps(got)


def test_pi_health_reads_sysfs(tmp_path):
    zone = tmp_path / "class/thermal/thermal_zone0"
    zone.mkdir(parents=True)
    (zone / "temp").write_text("61234\n")
    (zone / "type").write_text("cpu-thermal\n")
    fw = tmp_path / "devices/platform/soc/soc:firmware"
    fw.mkdir(parents=True)
    (fw / "get_throttled").write_text("0x50005\n")
    got = health.read_pi_health(tmp_path)
    assert got["temperatures_c"] == {"cpu-thermal": pytest.approx(61.234)}
    assert got["throttled"] == 0x50005
    assert got["throttled_flags"] == ["under-voltage now", "throttled now", "under-voltage since boot",
                                      "throttled since boot"]
    assert health.read_pi_health(tmp_path / "absent") == {"temperatures_c": {}, "throttled": None,
                                                       "throttled_flags": []}


def test_recent_events_from_the_event_store(tmp_path):
    from edge.settings.events import EventsConfig, SnapshotConfig
    from edge.act.events import EventStore
    from edge.types import Box, Event

    cfg = EventsConfig(snapshots=SnapshotConfig(enabled=True))
    store = EventStore(tmp_path, cfg, {"detector": "d" * 64})
    try:
        ev = Event(time=5.0, track_id=3, verdict="violation", label="no_mask", score=0.9,
                   box=Box(10, 10, 100, 100), alerted=True)
        store.add(ev, red_frame(), wall_time=1.7e9)
        store.add(Event(time=6.0, track_id=4, verdict="compliant", label="mask", score=0.8,
                        box=Box(0, 0, 50, 50), alerted=False), red_frame(), wall_time=1.7e9 + 1)
        got = events.read_recent_events(store.path, store.snap_dir)  # while the store's connection is open
    finally:
        store.close()
    assert [(e["track_id"], e["verdict"], e["label"]) for e in got] == [(4, "compliant", "mask"),
                                                                        (3, "violation", "no_mask")]
    assert got[0]["snapshot"] is None and Path(got[1]["snapshot"]).is_file()
    assert got[1]["time"] == 1.7e9 and got[1]["alerted"] is True
    assert events.read_recent_events(tmp_path / "none.sqlite3") == []


class LoopSource:
    """A finite-looking FrameSource that repeats its frames (~50 fps) until the run is stopped."""

    live = False
    name = "loop"

    def __init__(self, images) -> None:
        self.images = images
        self.i = 0

    def open(self) -> None:
        pass

    def read(self):
        time.sleep(0.02)
        self.i += 1
        return self.images[self.i % len(self.images)].copy()  # a new array per frame, as cameras give

    def close(self) -> None:
        pass


def test_runner_serves_its_live_frames_and_status(tmp_path, monkeypatch):
    """`doorguard run` with [web] on: the page shows the loop's frames, state and test button."""
    from edge.fakes import (RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators,
                            FakeNotifier, frame_with, write_classifier_manifest, write_detector_manifest)

    from edge import config, service

    state = tmp_path / "state"
    passwords.write_password_file(state / passwords.DEFAULT_PASSWORD_FILE, passwords.hash_password(PASSWORD, n=2**10))
    conf = tmp_path / "doorguard.toml"
    conf.write_text(f'[models]\ndetector = "{write_detector_manifest(tmp_path)}"\n'
                    f'classifier = "{write_classifier_manifest(tmp_path)}"\n'
                    f'[events]\nstate_dir = "{state}"\n'
                    "[web]\nenabled = true\nport = 0\nlive_fps = 10\n")
    servers: list[WebServer] = []
    real_start = WebServer.start
    monkeypatch.setattr(WebServer, "start", lambda self: servers.append(self) or real_start(self))
    act = FakeActuators()
    r = service.Runner(config.load(conf), source=LoopSource([frame_with([(20 + i, 30, 30, RED)]) for i in range(8)]),
                       actuators=act, notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    result: list = []
    t = threading.Thread(target=lambda: result.append(r.run()), daemon=True)
    t.start()
    try:
        for _ in range(100):
            if servers and servers[0].port and r.frames > 10:
                break
            time.sleep(0.1)
        server = servers[0]
        port = server.port
        assert port and server.password_file == state / passwords.DEFAULT_PASSWORD_FILE

        def request(method, path, body=None, cookie=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            h = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
            if cookie:
                h["Cookie"] = f"{sessions.SESSION_COOKIE}={cookie}"
            c.request(method, path, body=urlencode(body) if body is not None else None, headers=h)
            resp = c.getresponse()
            out = resp.status, resp.headers, resp.read()
            c.close()
            return out

        assert request("GET", "/frame.jpg")[0] == 401
        status, headers, _ = request("POST", "/login", {"password": PASSWORD})
        token = headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
        st = json.loads(request("GET", "/status.json", cookie=token)[2])
        assert st["frames"] > 10 and st["fps"] > 0 and st["source"] == "loop" and st["camera_ok"] is True
        assert [m["sha256"] for m in st["models"]] == ["0" * 64, "1" * 64]
        assert st["events"] and st["events"][0]["label"] == "no_mask" and st["events"][0]["verdict"] == "violation"
        status, _, body = request("GET", "/frame.jpg", cookie=token)
        img = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert status == 200 and img.shape[:2] == (96, 128)  # never scaled up
        page = request("GET", "/status", cookie=token)[2].decode()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        before = act.names().count("alert")
        assert request("POST", "/test-outputs", {"csrf": csrf}, cookie=token)[0] == 302
        assert act.names().count("alert") == before + 1
    finally:
        r.request_stop("test over")
        t.join(timeout=20)
    assert result == [0]
    assert servers[0].port == 0  # closed with the run


# ---- doorguard set-password -----------------------------------------------------------------------

class FakeStdin(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_set_password_writes_0600_scrypt_hash(tmp_path, monkeypatch, capsys):
    target = tmp_path / "sub" / "pw"
    monkeypatch.setattr("sys.stdin", FakeStdin("a long passphrase\n"))
    assert cli.main(["set-password", "--password-file", str(target)]) == 0
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    stored = target.read_text().strip()
    assert stored.startswith("scrypt$32768$8$1$")
    assert passwords.verify_password("a long passphrase", stored)
    assert not passwords.verify_password("a long passphrase ", stored)
    assert str(target) in capsys.readouterr().out
    # Too short: one-line usage error, file unchanged.
    monkeypatch.setattr("sys.stdin", FakeStdin("short\n"))
    assert cli.main(["set-password", "--password-file", str(target)]) == UsageError.exit_code
    assert target.read_text().strip() == stored
    assert "at least" in capsys.readouterr().err


def test_set_password_never_follows_planted_symlinks(tmp_path, monkeypatch):
    """Run as root into a folder the service user owns: that user can plant symlinks at the
    temp names and at the final name; none may redirect the write or the chown (issue 17)."""
    state = tmp_path / "state"
    state.mkdir()
    victim = tmp_path / "root-only"
    victim.write_text("root's secret\n")
    victim.chmod(0o600)
    before = os.stat(victim)
    service_uid = 65534 if os.geteuid() == 0 else os.getuid()
    chowned: list[tuple[int, int, int]] = []
    if os.geteuid() == 0:
        os.chown(state, service_uid, service_uid)
    else:  # the root-only branch still runs: fake the euid, record fchown calls
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        monkeypatch.setattr(os, "fchown", lambda fd, uid, gid: chowned.append((os.fstat(fd).st_ino, uid, gid)))
    monkeypatch.setattr(os, "chown", lambda *a, **k: pytest.fail("chown by path follows symlinks"))
    # The old predictable temp names for the next PIDs, and the first names our draws give.
    draws = iter(["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"])
    monkeypatch.setattr(secrets, "token_hex", lambda n=16: next(draws))
    for name in [f".web-password.{os.getpid() + i}.tmp" for i in range(20)] + [
            ".web-password.aaaaaaaaaaaaaaaa.tmp", ".web-password.bbbbbbbbbbbbbbbb.tmp"]:
        (state / name).symlink_to(victim)
    (state / "web-password").symlink_to(victim)  # the final name too

    passwords.write_password_file(state / "web-password", passwords.hash_password(PASSWORD, n=2**10))

    after = os.stat(victim)
    assert victim.read_text() == "root's secret\n", "the planted symlink was followed"
    assert (after.st_uid, after.st_gid, after.st_mode) == (before.st_uid, before.st_gid, before.st_mode)
    target = state / "web-password"
    assert not target.is_symlink() and target.is_file()
    assert passwords.verify_password(PASSWORD, target.read_text())
    st = os.lstat(target)
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert st.st_uid == service_uid  # given to the folder's owner
    else:
        assert chowned == [(st.st_ino, os.stat(state).st_uid, os.stat(state).st_gid)]
    # The planted links are still there, untouched; no temp file of ours is left behind.
    assert (state / ".web-password.aaaaaaaaaaaaaaaa.tmp").is_symlink()
    assert not (state / ".web-password.cccccccccccccccc.tmp").exists()


def test_set_password_prompts_twice_on_a_tty(tmp_path, monkeypatch):
    answers = iter(["first-password", "other-password"])
    monkeypatch.setattr(set_password.getpass, "getpass", lambda prompt="": next(answers))
    tty = FakeStdin()
    tty.isatty = lambda: True
    with pytest.raises(UsageError, match="differ"):
        set_password._read_new_password(tty)
    answers = iter(["same-password", "same-password"])
    assert set_password._read_new_password(tty) == "same-password"


def test_set_password_default_location_is_the_state_dir(tmp_path, monkeypatch):
    state = tmp_path / "state"
    conf = tmp_path / "doorguard.toml"
    conf.write_text(f'[events]\nstate_dir = "{state}"\n')
    monkeypatch.setattr("sys.stdin", FakeStdin("another passphrase\n"))
    assert cli.main(["set-password", "--config", str(conf)]) == 0
    assert passwords.verify_password("another passphrase", (state / passwords.DEFAULT_PASSWORD_FILE).read_text())
    assert passwords.password_path(WebConfig(password_file="x/pw"), state) == state / "x/pw"
    assert passwords.password_path(WebConfig(password_file="/etc/pw"), state) == Path("/etc/pw")


def test_set_password_from_a_shell_uses_the_installed_config_and_the_units_state_dir(tmp_path, monkeypatch):
    """`sudo doorguard set-password` on a Pi: no --config, no $STATE_DIRECTORY; the hash goes where
    the service's page reads it (the installed config's password_file, in /var/lib/doorguard)."""
    from edge import installed

    unit_state = tmp_path / "var-lib-doorguard"
    unit_state.mkdir()
    conf = tmp_path / "etc-doorguard.toml"
    conf.write_text('[web]\npassword_file = "page-pw"\n')
    monkeypatch.setattr(installed, "CONFIG", conf)
    monkeypatch.setattr(installed, "STATE_DIR", unit_state)
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", FakeStdin("the door passphrase\n"))
    assert cli.main(["set-password"]) == 0
    assert passwords.verify_password("the door passphrase", (unit_state / "page-pw").read_text())
    assert not (tmp_path / "state").exists()


# ---- end to end in headless Chromium ----------------------------------------------------------------

def demo_frames():
    """(RGB frame, overlays) from the built-in demo source, else synthetic frames."""
    try:
        from edge.capture import demo

        src = demo.DemoSource(loop=True)
        src.open()
        scale = src.scale
        fx1, fy1, fx2, fy2 = demo.PHOTO_FACE
        pw = int(round(demo.load_photo().shape[1] * scale))
        ph = int(round(demo.load_photo().shape[0] * scale))

        def frame(i: int):
            i %= len(src)
            img = src.render(i)
            step = src._plan[i]
            if step is None:
                return img, []
            k, x = step
            y = demo.HEIGHT - ph + 10
            mirrored = src.appearance_at(i) == "masked"
            a, b = (pw - fx2 * scale, pw - fx1 * scale) if mirrored else (fx1 * scale, fx2 * scale)
            box = (x + a, y + fy1 * scale, x + b, y + fy2 * scale)
            label, verdict = ("mask", "compliant") if mirrored else ("no_mask", "violation")
            return img, [Overlay(box, label, 0.93, verdict, k + 1)]

        return frame
    except Exception:  # noqa: BLE001 - the demo module is optional for this test
        def synthetic(i: int):
            img = np.zeros((480, 640, 3), np.uint8)
            img[..., 1] = np.linspace(40, 200, 640, dtype=np.uint8)[None, :]
            cx = 200 + (i * 7) % 240
            cv2.circle(img, (cx, 220), 70, (230, 190, 160), -1)
            return img, [Overlay((cx - 75, 145, cx + 75, 295), "no_mask", 0.9, "violation", 1)]

        return synthetic


@pytest.mark.slow
def test_chromium_end_to_end(harness, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip(SKIP_REASON)
    h = harness(live_fps=5)
    frame = demo_frames()
    stop = threading.Event()

    def loop():  # stands in for the frame loop: a new frame every 1/15 s, references only
        i = 0
        while not stop.is_set():
            h.live.put(*frame(i))
            i += 1
            stop.wait(1 / 15)

    feeder = threading.Thread(target=loop, daemon=True)
    feeder.start()
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    browser = DevTools(binary, tmp_path / "chromium-profile")
    try:
        try:
            targets = browser.send("Target.getTargets", timeout=60)["targetInfos"]
        except TimeoutError:
            pytest.fail(f"chromium did not answer: {browser.stderr_tail()}")
        page = next((t["targetId"] for t in targets if t["type"] == "page"), None)
        page = page or browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = browser.send("Target.attachToTarget", {"targetId": page, "flatten": True})["sessionId"]
        browser.send("Page.enable", session=sid)

        def evaluate(expr: str):
            return browser.send("Runtime.evaluate", {"expression": expr, "returnByValue": True},
                                session=sid)["result"].get("value")

        def navigate_and_wait(url: str | None, action: str | None = None) -> None:
            n = len(browser.events)
            if url:
                browser.send("Page.navigate", {"url": url}, session=sid)
            else:
                evaluate(action)
            browser.wait_event("Page.loadEventFired", n)

        base = f"http://127.0.0.1:{h.server.port}"
        navigate_and_wait(f"{base}/status")
        assert evaluate("location.pathname") == "/login"  # sent to the login page
        assert evaluate("document.body.innerText").find("12.5") < 0  # no data before login
        navigate_and_wait(None, f"document.getElementById('password').value = {json.dumps(PASSWORD)};"
                                "document.getElementById('login').click()")
        assert evaluate("location.pathname") == "/status"
        text = evaluate("document.body.innerText")
        assert "yoloface-500k-v2" in text and "no_mask" in text and "Test buzzer and LEDs" in text
        assert evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read the session
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=sid)
        (artifacts / "web-status.png").write_bytes(__import__("base64").b64decode(shot["data"]))

        navigate_and_wait(None, "document.getElementById('test-outputs').click()")
        assert evaluate("document.getElementById('tested').innerText").startswith("Buzzer and LED test")
        assert h.tests_run == 1

        # The live page never finishes loading (the stream is endless): poll the image instead.
        browser.send("Page.navigate", {"url": f"{base}/"}, session=sid)
        deadline = time.monotonic() + 30
        width = 0
        while time.monotonic() < deadline:
            width = evaluate("(document.getElementById('live') || {}).naturalWidth || 0")
            if width and h.server.frames_sent >= 2:
                break
            time.sleep(0.2)
        assert width == 640, width
        assert h.server.frames_sent >= 1 and h.server.viewers == 1
        time.sleep(0.5)  # let a later frame paint
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=sid)
        png = __import__("base64").b64decode(shot["data"])
        path = artifacts / "web-live.png"
        path.write_bytes(png)
        img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 400
        print(f"\nscreenshots: {path} and {artifacts / 'web-status.png'}")
    finally:
        browser.close()
        stop.set()
        feeder.join(timeout=5)
