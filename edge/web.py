"""The local web page: live annotated view and status, behind a login.

Whoever mounts the Pi by a door has to aim the camera and check that faces come
out large enough; later they want to glance at what it has seen. Faces are
personal data, so the page is off by default (``[web] enabled = false``), listens
on loopback by default (reach it from a laptop with
``ssh -L 8080:localhost:8080 pi@doorway.local``), and never shows anything
without a login. Binding beyond loopback without a password set is refused.

The page runs on Flask, served by waitress (a fixed pool of worker threads,
capped connections, idle connections closed) from a background thread of the
runner process. Only this device's host names are answered (DNS rebinding), a
login takes its slot in the per-address limit before the password is checked,
at most ``MAX_PASSWORD_CHECKS`` scrypt checks run at once and
``MAX_PASSWORD_CHECKS_PER_MINUTE`` a minute from all addresses, and ``next``
after a login is only ever a path on this page. The frame loop never waits for
it: the loop only hands over a *reference* to its newest frame and overlays
(:class:`LiveFrame`, no copy, no encode); the JPEG encode at reduced size and
rate happens on the viewer's request thread, and only while a viewer is
connected.

Pages (all need a login):

* ``/``           live annotated MJPEG view (boxes, labels, verdicts, fps)
* ``/status``     uptime, fps, camera, models and hashes, CPU temperature and
  throttling, last events (thumbnails only when snapshots are on), and the
  "test buzzer/LEDs" button (POST with a CSRF token)
* ``/status.json`` the same as JSON; ``/frame.jpg`` one annotated frame;
  ``/stream.mjpg`` the stream itself; ``/thumb/<id>`` an event's thumbnail
* ``/zones``      draw zones and privacy masks over the live view and save them
  to the config file (``edge/zone_editor.py``; only when the runner passes one)

``doorguard set-password`` stores the password as an scrypt hash with a random
salt in a 0600 file (by default ``web-password`` in the state directory).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import errno
import getpass
import hashlib
import hmac
import html
import ipaddress
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence
from urllib.parse import urlsplit

import numpy as np

from .errors import ConfigError, StateError, UsageError
from .jsonable import jsonable
from .pi_health import decode_throttled
from .settings.web import WebConfig

log = logging.getLogger("doorguard.web")

#: File name of the password hash inside the state directory (when not configured).
DEFAULT_PASSWORD_FILE = "web-password"
#: Shortest password ``set-password`` accepts.
MIN_PASSWORD_LENGTH = 8
SESSION_COOKIE = "doorguard_session"

# scrypt cost: N=2**15, r=8 needs 32 MiB and ~0.1-0.3 s on a Pi 4 per login. The
# parameters are stored in the file, so raising them later keeps old files valid.
_SCRYPT_N = 2**15
_SCRYPT_R = 8
_SCRYPT_P = 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024
#: Password checks (scrypt, 32 MiB and ~0.1 s each) running at once, whatever the address;
#: a login beyond it is answered 503 at once. Bounds the memory and CPU a login flood can take
#: from the frame loop (README "The web page's defences").
MAX_PASSWORD_CHECKS = 2
#: Password checks per minute from all addresses together; beyond it logins answer 503. With
#: the per-address limit alone, a flood from many addresses could keep MAX_PASSWORD_CHECKS
#: scrypt runs going all the time (two cores of a Pi); this caps it at a few seconds a minute.
MAX_PASSWORD_CHECKS_PER_MINUTE = 30
#: Longest ``next`` a login accepts (it is only ever a path on this page).
_MAX_NEXT = 512


def is_loopback(bind: str) -> bool:
    """True when ``bind`` only accepts connections from this machine."""
    if bind == "localhost":
        return True
    try:
        return ipaddress.ip_address(bind).is_loopback
    except ValueError:
        return False


def password_path(cfg: WebConfig, state_dir: str | os.PathLike | None) -> Path:
    """Where the password hash lives: ``cfg.password_file`` (relative: in the state dir), else the default name."""
    base = Path(state_dir) if state_dir is not None else Path("state")
    if cfg.password_file:
        p = Path(cfg.password_file).expanduser()
        return p if p.is_absolute() else base / p
    return base / DEFAULT_PASSWORD_FILE


def safe_next(value: str | None) -> str:
    """Where a login sends the browser: ``value`` when it is a path on this page, else ``"/"``.

    Only a path that starts with a single ``/`` and holds printable ASCII without spaces or
    backslashes. Browsers drop tabs and newlines inside a URL and read ``\\`` as ``/``, so
    ``/<TAB>/evil.example`` or ``/\\evil.example`` would become ``//evil.example``: another site.
    A newline would also end up in the ``Location`` header.
    """
    if not value or len(value) > _MAX_NEXT or not value.startswith("/") or value.startswith("//"):
        return "/"
    if any(not (0x21 <= ord(c) <= 0x7E) or c == "\\" for c in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def default_host_names() -> set[str]:
    """Names this device answers to by default: localhost, its host name and ``<hostname>.local``."""
    names = {"localhost", "localhost.localdomain"}
    try:
        host = socket.gethostname().strip().lower().rstrip(".")
    except OSError:
        host = ""
    if host:
        short = host.split(".")[0]
        names |= {host, short, f"{short}.local"}
    return names


def _split_host(host: str) -> str | None:
    """The host name or address of a ``Host`` header value (port dropped), None when malformed."""
    h = host.strip().lower()
    if h.startswith("["):
        end = h.find("]")
        rest = h[end + 1:] if end > 0 else "x"
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        return h[1:end]
    if h.count(":") == 1:
        h, _, port = h.partition(":")
        if not port.isdigit():
            return None
    return h.rstrip(".") or None


def host_allowed(host: str | None, allowed: set[str] | frozenset[str]) -> bool:
    """True when a request's ``Host`` names this device.

    An IP address always does: DNS rebinding needs a *name* that an attacker's DNS
    points at the device, and a page the browser loaded from an address has that
    address as its own origin. A name must be in ``allowed`` (entries starting with a
    dot allow that domain and its subdomains).
    """
    name = _split_host(host or "")
    if name is None:
        return False
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    for a in allowed:
        if name == a or (a.startswith(".") and (name.endswith(a) or name == a[1:])):
            return True
    return False


# ---- password hashing -----------------------------------------------------------------------

def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    """Hash a password with scrypt and a random 16-byte salt.

    Returns:
        ``scrypt$N$r$p$<salt base64>$<hash base64>`` (one line, parameters included).
    """
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.strip().split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("not an scrypt hash written by `doorguard set-password`")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, dk = base64.b64decode(parts[4], validate=True), base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error) as e:
        raise ValueError(f"malformed scrypt hash: {e}") from None
    if n < 2 or n & (n - 1) or not (1 <= r <= 64 and 1 <= p <= 16) or len(salt) < 8 or len(dk) < 16:
        raise ValueError("scrypt parameters out of range")
    return n, r, p, salt, dk


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches a hash from :func:`hash_password` (constant-time compare)."""
    try:
        n, r, p, salt, dk = _parse_hash(stored)
    except ValueError:
        return False
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=len(dk))
    return hmac.compare_digest(got, dk)


def read_password_hash(path: Path) -> str | None:
    """The stored hash, or None when no password is set (file absent or empty).

    Raises:
        ConfigError: the file exists but cannot be read or is not a hash from set-password.
    """
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"web: password file {path} is unreadable: {getattr(e, 'strerror', None) or e}") from e
    if not text:
        return None
    try:
        _parse_hash(text)
    except ValueError as e:
        raise ConfigError(f"web: password file {path}: {e}; run `doorguard set-password` again") from None
    return text


def write_password_file(path: Path, stored: str) -> None:
    """Write a hash atomically with mode 0600, never following a symlink (``edge.atomic``).

    When run as root (``sudo doorguard set-password``), the file is given to the
    owner of its directory, so the service user can read it.

    Raises:
        StateError: the directory cannot be created or written.
    """
    from .atomic import write_atomic

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (stored.strip() + "\n").encode("ascii"), 0o600, owner_from_folder=True)
    except OSError as e:
        raise StateError(f"cannot write password file {path}: {e.strerror or e}") from e


# ---- the hand-over from the frame loop --------------------------------------------------------

class LiveFrame:
    """Newest frame and overlays, handed from the frame loop to the web page.

    :meth:`put` stores references only (one attribute assignment, atomic under
    the GIL): no copy and no encode per frame. The array must not be written to
    by the loop after it is put (the web thread may be reading it); sources that
    return a new array per frame satisfy this.
    """

    def __init__(self) -> None:
        self._item: tuple[np.ndarray, Sequence[Any]] | None = None

    def put(self, image: np.ndarray, overlays: Sequence[Any] = ()) -> None:
        """Publish the newest RGB frame (H, W, 3 uint8) and its overlays (see :func:`overlay_fields`)."""
        self._item = (image, overlays)

    def get(self) -> tuple[np.ndarray, Sequence[Any]] | None:
        """The newest ``(image, overlays)``, or None before the first frame."""
        return self._item


@dataclass(frozen=True)
class Overlay:
    """One box to draw on the live view."""

    box: tuple[float, float, float, float]
    label: str = ""
    score: float | None = None
    verdict: str | None = None
    track_id: int | None = None


def overlay_fields(o: Any) -> Overlay:
    """Read one overlay item: an :class:`Overlay`, a dict, or any object with ``box``.

    ``box`` may be an ``edge.types.Box`` or ``[x1, y1, x2, y2]`` in frame pixels;
    optional ``label``, ``score``, ``verdict`` and ``track_id`` (or ``id``), so a
    ``Detection`` or a tracker's track can be passed as is.
    """
    if isinstance(o, Overlay):
        return o
    get = o.get if isinstance(o, dict) else (lambda k, d=None: getattr(o, k, d))
    box = get("box")
    if box is None:
        raise ValueError("overlay without a box")
    coords = box.as_list() if hasattr(box, "as_list") else list(box)
    tid = get("track_id")
    if tid is None:
        tid = get("id")
    score = get("score")
    return Overlay(
        box=tuple(float(c) for c in coords[:4]),  # type: ignore[arg-type]
        label=str(get("label") or ""),
        score=None if score is None else float(score),
        verdict=get("verdict"),
        track_id=None if tid is None else int(tid),
    )


def overlays_from_tracks(tracks: Sequence[Any], verdicts: dict[int, str] | None = None) -> list[Overlay]:
    """Immutable overlays of the tracker's visible tracks, for :meth:`LiveFrame.put`.

    Tracks are updated in place by the next frame, so the loop hands over this
    snapshot (a few small objects per frame, no pixel copy) rather than the tracks.

    Args:
        tracks: ``edge.tracking.Track`` objects (``id``, ``box``, ``label``, ``score``,
            ``detector_label``, ``votes``, ``window``, ``missed``).
        verdicts: track id -> verdict of its settled label.
    """
    verdicts = verdicts or {}
    out = []
    for t in tracks:
        if getattr(t, "missed", 0):
            continue
        if t.label:
            label, score = t.label, t.score
        else:
            label = f"{getattr(t, 'detector_label', '')} voting {len(getattr(t, 'votes', ()))}/{getattr(t, 'window', '?')}"
            score = None
        out.append(Overlay(tuple(t.box.as_list()), label.strip(), score, verdicts.get(t.id), t.id))
    return out


# BGR colours (the encoder takes BGR): red for a violation, green compliant, amber otherwise.
_COLOURS = {"violation": (40, 40, 230), "compliant": (60, 200, 60)}
_OTHER = (0, 190, 255)


def render_frame(image: np.ndarray, overlays: Sequence[Any], width: int, fps: float | None,
                 quality: int) -> bytes:
    """Scale an RGB frame down to ``width``, draw overlays and fps, encode as JPEG.

    Raises:
        ValueError: the image cannot be encoded.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, width / float(w)) if w else 1.0
    if scale < 1.0:
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    else:
        small = image
    # Frames are R,G,B; OpenCV draws and encodes B,G,R. cvtColor also gives a private copy to draw on.
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = max(0.4, bgr.shape[1] / 1100.0)
    th = 1 if bgr.shape[1] < 900 else 2
    for item in overlays:
        try:
            ov = overlay_fields(item)
        except (ValueError, TypeError):
            continue
        x1, y1, x2, y2 = (int(round(c * scale)) for c in ov.box)
        colour = _COLOURS.get(str(ov.verdict), _OTHER)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
        parts = []
        if ov.track_id is not None:
            parts.append(f"#{ov.track_id}")
        if ov.label:
            parts.append(ov.label)
        if ov.score is not None:
            parts.append(f"{ov.score:.2f}")
        if ov.verdict:
            parts.append(str(ov.verdict))
        text = " ".join(parts)
        if text:
            (tw, tht), base = cv2.getTextSize(text, font, fs, th)
            ty = y1 - 4 if y1 - tht - base - 4 >= 0 else y2 + tht + 4
            tx = max(0, min(x1, bgr.shape[1] - tw - 4))  # keep the label inside the frame
            cv2.rectangle(bgr, (tx, ty - tht - 3), (tx + tw + 4, ty + base), colour, -1)
            cv2.putText(bgr, text, (tx + 2, ty), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    if fps is not None:
        text = f"{fps:.1f} fps"
        (tw, tht), base = cv2.getTextSize(text, font, fs, th)
        cv2.rectangle(bgr, (0, 0), (tw + 8, tht + base + 8), (0, 0, 0), -1)
        cv2.putText(bgr, text, (4, tht + 4), font, fs, (255, 255, 255), th, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encode failed")
    return buf.tobytes()


# ---- events for the status page ---------------------------------------------------------------------

def read_recent_events(db_path: str | os.PathLike, snapshot_dir: str | os.PathLike | None = None,
                       limit: int = 20) -> list[dict]:
    """Newest events of the event store (edge/events.py), in the shape the status page reads.

    Opens its own read-only SQLite connection per call: the loop's connection
    stays the loop's, and WAL lets this reader run while the loop writes.

    Args:
        db_path: the event database file.
        snapshot_dir: the store's snapshot folder; None leaves ``snapshot`` None.
        limit: most events returned.

    Returns:
        Newest first: ``{"id", "time", "track_id", "verdict", "label", "score",
        "alerted", "snapshot"}`` with ``snapshot`` a full path or None; [] when
        the database cannot be read (logged at debug level).
    """
    import sqlite3
    from urllib.parse import quote

    try:
        con = sqlite3.connect(f"file:{quote(str(Path(db_path).resolve()))}?mode=ro", uri=True, timeout=1.0)
        try:
            rows = con.execute("SELECT id, time, track, verdict, label, score, alerted, snapshot FROM events "
                               "ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        log.debug("web: events not readable from %s: %s", db_path, e)
        return []
    out = []
    for rid, t, track, verdict, label, score, alerted, snap in rows:
        path = None
        if snap and snapshot_dir is not None:
            path = str(Path(snapshot_dir) / Path(snap).name)  # a bare file name: never leave the folder
        out.append({"id": rid, "time": t, "track_id": track, "verdict": verdict, "label": label, "score": score,
                    "alerted": bool(alerted), "snapshot": path})
    return out


# ---- Pi health ----------------------------------------------------------------------------------

def read_pi_health(sys_root: str | os.PathLike = "/sys") -> dict[str, Any]:
    """CPU temperature (thermal zones) and Raspberry Pi throttling flags from sysfs.

    Returns:
        ``{"temperatures_c": {zone type: degrees}, "throttled": int | None,
        "throttled_flags": [str]}``; empty values where the files do not exist
        (not a Pi, or a container).
    """
    root = Path(sys_root)
    temps: dict[str, float] = {}
    for zone in sorted(root.glob("class/thermal/thermal_zone*")):
        try:
            milli = int((zone / "temp").read_text().strip())
        except (OSError, ValueError):
            continue
        try:
            kind = (zone / "type").read_text().strip() or zone.name
        except OSError:
            kind = zone.name
        temps[kind if kind not in temps else f"{kind} ({zone.name})"] = milli / 1000.0
    throttled = None
    # Pi 4 and earlier: soc/soc:firmware; Pi 5: soc@.../...:firmware. Single-level globs only (sysfs has loops).
    for pattern in ("devices/platform/soc/soc:firmware/get_throttled",
                    "devices/platform/soc*/*firmware*/get_throttled"):
        for f in root.glob(pattern):
            try:
                throttled = int(f.read_text().strip(), 16)
                break
            except (OSError, ValueError):
                continue
        if throttled is not None:
            break
    now, past = decode_throttled(throttled) if throttled is not None else ([], [])
    flags = [f"{w} now" for w in now] + [f"{w} since boot" for w in past]
    return {"temperatures_c": temps, "throttled": throttled, "throttled_flags": flags}


# ---- sessions and the login rate limit ------------------------------------------------------------

@dataclass
class _Session:
    expires: float
    csrf: str


class _Sessions:
    """Server-side sessions: the cookie holds a random token only (revocable, dies with the process)."""

    MAX = 64

    def __init__(self, minutes: float, clock: Callable[[], float]) -> None:
        self.ttl = minutes * 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, _Session] = {}

    def create(self) -> tuple[str, _Session]:
        token = secrets.token_urlsafe(32)
        s = _Session(expires=self._clock() + self.ttl, csrf=secrets.token_urlsafe(32))
        with self._lock:
            self._purge()
            while len(self._by_token) >= self.MAX:  # oldest login goes first
                self._by_token.pop(next(iter(self._by_token)))
            self._by_token[token] = s
        return token, s

    def get(self, token: str | None) -> _Session | None:
        if not token:
            return None
        with self._lock:
            s = self._by_token.get(token)
            if s is not None and s.expires <= self._clock():
                del self._by_token[token]
                return None
            return s

    def drop(self, token: str | None) -> None:
        with self._lock:
            self._by_token.pop(token or "", None)

    def _purge(self) -> None:
        now = self._clock()
        for t in [t for t, s in self._by_token.items() if s.expires <= now]:
            del self._by_token[t]


class _LoginLimiter:
    """At most ``limit`` failed logins per client address in any 60 s window.

    A login attempt takes its failure slot *before* the password is checked
    (:meth:`reserve`, atomic under the lock); the slots are given back only when
    a password was right (:meth:`succeeded`). Checking first and recording after
    let 40 concurrent wrong logins all through while each ran scrypt.
    """

    WINDOW = 60.0
    MAX_CLIENTS = 1024

    def __init__(self, limit: int, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}

    def reserve(self, client: str) -> float:
        """Take a failure slot for an attempt about to be checked.

        Returns:
            0 when the slot was taken (go on and check the password), else the
            seconds until ``client`` may try again (answer 429, check nothing).
        """
        now = self._clock()
        with self._lock:
            q = self._failures.get(client)
            if q is not None:
                while q and q[0] <= now - self.WINDOW:
                    q.popleft()
                if len(q) >= self.limit:
                    return max(0.001, q[0] + self.WINDOW - now)
            else:
                if len(self._failures) >= self.MAX_CLIENTS:
                    for c in [c for c, d in self._failures.items() if not d or d[-1] <= now - self.WINDOW]:
                        del self._failures[c]
                    if len(self._failures) >= self.MAX_CLIENTS:
                        self._failures.pop(next(iter(self._failures)))
                q = self._failures[client] = deque()
            q.append(now)
            return 0.0

    def succeeded(self, client: str) -> None:
        """The password was right: forget this address's failures."""
        with self._lock:
            self._failures.pop(client, None)


# ---- the server ---------------------------------------------------------------------------------------

StatusFn = Callable[[], dict]
LatestFrameFn = Callable[[], "tuple[np.ndarray, Sequence[Any]] | None"]


class WebServer:
    """The local page, served from a background thread.

    Args:
        cfg: the ``[web]`` section.
        status: returns the runner's state as a dict; the page reads these keys
            when present (others are listed as they are): ``fps`` (float),
            ``camera_ok`` (bool), ``frames``, ``dropped`` (int), ``uptime_s``
            (float; default: since this server was built), ``source`` (str),
            ``models`` (list of ``{"name", "sha256"}``), ``snapshots`` (bool:
            snapshots are on), ``events`` (newest first, list of ``{"id",
            "time", "track_id", "verdict", "label", "score", "snapshot"}``
            where ``snapshot`` is a JPEG path or None). Called per page view and
            about once a second per live viewer, never by the frame loop.
        latest_frame: returns the newest ``(rgb_image, overlays)`` or None
            (e.g. :meth:`LiveFrame.get`); overlays as in :func:`overlay_fields`.
        test_outputs: plays the buzzer/LED test pattern; must return at once.
        arming: ``arming(action, client_address)`` applies an arm/disarm/schedule/mute/unmute
            button of the status page (POST /arming with the CSRF token; edge/arming.py) and
            raises ValueError for an unknown action; None: no such buttons. The status dict's
            ``arming`` (``Arming.snapshot()`` plus ``history``) is shown above them.
        state_dir: where a relative/default password file lives (``Config.state_dir()``).
        password_file: overrides the password file location entirely.
        sys_root: sysfs root for temperature/throttling (tests point it elsewhere).
        clock: monotonic clock in seconds (sessions, rate limit).
        zone_editor: an ``edge.zone_editor.ZoneEditor``: adds the ``/zones`` page (draw zones and
            privacy masks over the live view, save them to the config file); None: no such page.

    Raises:
        ConfigError: bound beyond loopback without a password set, or the
            password file is unreadable/malformed.
    """

    def __init__(
        self,
        cfg: WebConfig,
        status: StatusFn,
        latest_frame: LatestFrameFn,
        test_outputs: Callable[[], None],
        *,
        state_dir: str | os.PathLike | None = None,
        password_file: str | os.PathLike | None = None,
        sys_root: str | os.PathLike = "/sys",
        clock: Callable[[], float] = time.monotonic,
        arming: Callable[[str, str], Any] | None = None,
        zone_editor: Any = None,
    ) -> None:
        self.cfg = cfg
        self._arming = arming
        self._zone_editor = zone_editor
        self._status = status
        self._latest = latest_frame
        self._test_outputs = test_outputs
        self._sys_root = sys_root
        self._clock = clock
        self.password_file = Path(password_file) if password_file is not None else password_path(cfg, state_dir)
        stored = read_password_hash(self.password_file)
        if stored is None and not is_loopback(cfg.bind):
            raise ConfigError(
                f"web: refusing to listen on {cfg.bind} (not loopback) without a password; "
                f"run `doorguard set-password` (writes {self.password_file}) or bind 127.0.0.1"
            )
        self._sessions = _Sessions(cfg.session_minutes, clock)
        self._limiter = _LoginLimiter(cfg.login_failures_per_minute, clock)
        self._password_checks = threading.BoundedSemaphore(MAX_PASSWORD_CHECKS)
        self._all_checks = _LoginLimiter(MAX_PASSWORD_CHECKS_PER_MINUTE, clock)
        #: Host names the page answers to (IP addresses always; see :func:`host_allowed`).
        self.allowed_hosts = frozenset(default_host_names() | set(cfg.allowed_hosts))
        self._quiet_until: dict[str, float] = {}
        self._started = clock()
        self._stop = threading.Event()
        self._viewers = 0
        self._viewers_lock = threading.Lock()
        self._server = None
        self._serving = False
        self._thread: threading.Thread | None = None
        self._health: tuple[float, dict] | None = None
        self._fps_cache: tuple[float, float | None] | None = None
        #: JPEG frames sent to live viewers so far (all streams together).
        self.frames_sent = 0
        self.app = self._build_app()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one when ``cfg.port`` is 0); 0 before start()."""
        return int(self._server.effective_port) if self._server is not None else 0

    @property
    def url(self) -> str:
        """Base URL of the page (``http://host:port``)."""
        host = self.cfg.bind
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def viewers(self) -> int:
        """Live viewers connected now."""
        return self._viewers

    def start(self) -> "WebServer":
        """Listen and serve in a daemon thread; returns at once.

        waitress serves the page: a request is handed to one of ``max_viewers + 3``
        worker threads only once it has fully arrived, at most ``max_connections``
        connections are open at once, and a connection idle for ``idle_timeout_s``
        (a half-sent request included) is closed. werkzeug's development server had
        none of these: 300 half-sent requests held 309 threads.

        Raises:
            ConfigError: the address/port cannot be bound (in use, not local).
        """
        if self._server is not None:
            return self
        from waitress.server import create_server

        # waitress warns per queued request while the workers are busy ("Task queue depth is 13")
        # and at every crossing of the connection limit: a flood of requests would become a
        # journald flood. Its errors still show; refusals are logged once a minute (_log_limited).
        logging.getLogger("waitress").setLevel(logging.ERROR)
        cfg = self.cfg
        # "localhost" would give one listener per address family (and two ports for port 0).
        host = "127.0.0.1" if cfg.bind == "localhost" else cfg.bind
        try:
            server = create_server(
                self.app, host=host, port=cfg.port,
                threads=cfg.max_viewers + 3,  # each live viewer holds a thread for its stream
                connection_limit=cfg.max_connections, channel_timeout=cfg.idle_timeout_s,
                cleanup_interval=min(30, cfg.idle_timeout_s),
                max_request_header_size=16 * 1024, max_request_body_size=64 * 1024,
                # A viewer that stops reading blocks its stream after this much, not after 16 MiB.
                outbuf_high_watermark=1024 * 1024,
                asyncore_use_poll=True, ident="doorguard", server_name="localhost",
                expose_tracebacks=False)
        except OSError as e:
            hint = "another program uses it; choose another [web] port" if e.errno == errno.EADDRINUSE else \
                "check [web] bind"
            raise ConfigError(f"web: cannot listen on {cfg.bind}:{cfg.port}: "
                              f"{e.strerror or e} ({hint})") from e
        self._server = server
        self._serving = True
        self._thread = threading.Thread(target=self._serve, args=(server,), name="doorguard-web", daemon=True)
        self._thread.start()
        log.info("web: serving on %s (login required; live view %g fps, %d px wide)", self.url,
                 cfg.live_fps, cfg.live_width)
        return self

    def _serve(self, server: Any) -> None:
        from waitress import wasyncore

        # waitress's own run() only ends once every socket is closed; one poll at a time lets
        # close() stop the loop first and then take the server apart from its own thread.
        while self._serving:
            wasyncore.loop(timeout=1.0, map=server._map, use_poll=True, count=1)

    def close(self) -> None:
        """Stop the streams and the server; idempotent."""
        self._stop.set()
        server, self._server = self._server, None
        if server is None:
            return
        self._serving = False
        try:
            server.pull_trigger()  # wakes the loop out of its poll
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        for d in list(server._map.values()):
            if d is not server and d is not server.trigger:
                try:
                    d.handle_close()  # running tasks see a closed channel and end
                except Exception as e:  # noqa: BLE001 - closing: carry on with the rest
                    log.debug("web: closing a connection: %s", e)
        from waitress import wasyncore

        wasyncore.dispatcher.close(server)  # the listener alone (the server's close() shuts the trigger too)
        # The trigger's pipe stays open until every worker is gone: a task that ends writes to it,
        # and a closed (then reused) descriptor would be some other file.
        if server.task_dispatcher.shutdown(cancel_pending=True, timeout=5):
            server.trigger.close()
        else:
            log.warning("web: a request was still running 5 s after stopping the page")

    def __enter__(self) -> "WebServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- pieces ------------------------------------------------------------------------------------

    def _safe_status(self) -> dict:
        try:
            st = self._status()
            return dict(st) if st else {}
        except Exception as e:  # noqa: BLE001 - a broken status callable must not break the page
            log.warning("web: status callback failed: %s: %s", type(e).__name__, e)
            return {"status_error": f"{type(e).__name__}: {e}"}

    def _pi_health(self) -> dict:
        now = self._clock()
        if self._health is None or now - self._health[0] > 5.0:
            self._health = (now, read_pi_health(self._sys_root))
        return self._health[1]

    def _fps(self) -> float | None:
        # Live viewers ask for this every second; the status callable may read the event
        # database, so all viewers share one call per second.
        now = time.monotonic()
        cached = self._fps_cache
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        fps = self._safe_status().get("fps")
        try:
            fps = None if fps is None else float(fps)
        except (TypeError, ValueError):
            fps = None
        self._fps_cache = (now, fps)
        return fps

    def _encode_latest(self, fps: float | None) -> bytes | None:
        item = self._latest()
        if item is None:
            return None
        image, overlays = item
        return render_frame(image, overlays or (), self.cfg.live_width, fps, self.cfg.jpeg_quality)

    def _mjpeg(self, token: str) -> Iterator[bytes]:
        period = 1.0 / self.cfg.live_fps
        # Holding the last image (not its id) keeps one frame alive per viewer, and a new
        # array can never be mistaken for the last one because it reused its address.
        last_image: np.ndarray | None = None
        last_jpeg: bytes | None = None
        last_sent = 0.0
        fps: float | None = None
        fps_at = float("-inf")
        while not self._stop.is_set() and self._sessions.get(token) is not None:
            t0 = time.monotonic()
            if t0 - fps_at >= 1.0:
                fps, fps_at = self._fps(), t0
            item = self._latest()
            jpeg = None
            if item is not None and item[0] is not last_image:
                last_image = item[0]
                try:
                    jpeg = render_frame(item[0], item[1] or (), self.cfg.live_width, fps, self.cfg.jpeg_quality)
                    last_jpeg = jpeg
                except Exception as e:  # noqa: BLE001 - one bad frame must not end the view
                    log.warning("web: live frame not encoded: %s: %s", type(e).__name__, e)
            elif last_jpeg is not None and t0 - last_sent > 2.0:
                # No new frame (camera lost?): resend the last one now and then, which also
                # notices a viewer that went away (only a write fails on a closed socket).
                jpeg = last_jpeg
            if jpeg is not None:
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                last_sent = t0
                self.frames_sent += 1
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def _viewer_left(self) -> None:
        with self._viewers_lock:
            self._viewers -= 1

    def _log_limited(self, key: str, msg: str, *args: Any) -> None:
        """A warning at most once a minute per ``key``: refused floods must not flood journald too."""
        now = time.monotonic()
        if self._quiet_until.get(key, 0.0) > now:
            return
        if len(self._quiet_until) > 256:
            self._quiet_until = {k: t for k, t in self._quiet_until.items() if t > now}
        self._quiet_until[key] = now + 60.0
        log.warning(msg, *args)

    # -- the Flask app -----------------------------------------------------------------------------

    def _build_app(self):  # noqa: C901 - one closure per route reads best here
        from flask import Flask, Response, abort, g, jsonify, make_response, redirect, request, \
            render_template_string, url_for

        # No static folder: Flask's default /static/<file> route served the working directory's
        # static/ without a login.
        app = Flask("doorguard.web", static_folder=None)
        # Flask's own session is unused (sessions are server-side), but give it a per-process secret anyway.
        app.secret_key = secrets.token_bytes(32)
        app.config["MAX_CONTENT_LENGTH"] = 16 * 1024  # forms here are tiny; never buffer big bodies on a Pi
        public = {"login"}

        def client() -> str:
            return request.remote_addr or "?"

        def session_token() -> str | None:
            return request.cookies.get(SESSION_COOKIE)

        @app.before_request
        def _require_login():
            # DNS rebinding: evil.example resolving to this device makes the browser send
            # "Host: evil.example" (and a matching Origin). Only this device's names pass.
            if not host_allowed(request.host, self.allowed_hosts):
                self._log_limited("host", "web: refused a request for host %r from %s (not in [web] "
                                  "allowed_hosts)", request.host[:80], client())
                return Response("unknown host name for this device; add it to [web] allowed_hosts\n",
                                status=400, mimetype="text/plain")
            if request.method == "POST":
                # Browsers send Origin on POST: a form posted from another site is refused even
                # before the CSRF token is checked (the cookie is SameSite=Strict as well). The
                # Origin must be this page itself: an allowed host, and the Host it was sent to.
                # ("null": what a same-origin form sends under Referrer-Policy: no-referrer.)
                origin = request.headers.get("Origin")
                if origin and origin != "null":
                    netloc = urlsplit(origin).netloc
                    if netloc.lower() != request.host.lower() or not host_allowed(netloc, self.allowed_hosts):
                        abort(403)
            if request.endpoint in public:
                return None
            s = self._sessions.get(session_token())
            if s is None:
                if request.method == "GET" and request.endpoint in ("live", "status_page", "zones"):
                    return redirect(url_for("login", next=request.full_path.rstrip("?")))
                return Response("login required\n", status=401, mimetype="text/plain")
            g.session = s
            return None

        @app.after_request
        def _headers(resp):
            resp.headers["X-Frame-Options"] = "DENY"
            resp.headers["X-Content-Type-Options"] = "nosniff"
            resp.headers["Referrer-Policy"] = "no-referrer"
            resp.headers["Content-Security-Policy"] = (
                "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; form-action 'self'; "
                "frame-ancestors 'none'; base-uri 'none'"
                + ("; script-src 'self'" if request.endpoint == "zones" else ""))  # the zone editor's script
            resp.headers.setdefault("Cache-Control", "no-store")
            return resp

        def page(title: str, body: str, **kw: Any) -> str:
            csrf = g.session.csrf if hasattr(g, "session") else ""
            return render_template_string(_LAYOUT, title=title, logged_in=bool(csrf), csrf=csrf,
                                          zones=self._zone_editor is not None,
                                          body=render_template_string(body, csrf_token=csrf, **kw))

        @app.route("/login", methods=["GET", "POST"])
        def login():
            nxt = safe_next(request.values.get("next"))
            error = None
            status = 200
            if request.method == "POST":
                who = client()
                # The failure slot is taken before the password is checked, atomically: 40
                # concurrent wrong logins get `login_failures_per_minute` checks, not 40.
                wait = self._limiter.reserve(who)
                if wait > 0:
                    self._log_limited(f"429 {who}", "web: logins from %s refused: too many failures", who)
                    resp = make_response(page("Login", _LOGIN, error="Too many failed logins; wait a minute.",
                                              next=nxt, no_password=False), 429)
                    resp.headers["Retry-After"] = str(int(wait) + 1)
                    return resp
                # scrypt takes 32 MiB and ~0.1 s: only MAX_PASSWORD_CHECKS at once and
                # MAX_PASSWORD_CHECKS_PER_MINUTE a minute, from anyone. An attempt refused here keeps
                # its per-address slot: that limit counts attempts, checked or not.
                busy = self._all_checks.reserve("*") > 0
                if busy or not self._password_checks.acquire(blocking=False):
                    self._log_limited("503", "web: login from %s refused: %s", who,
                                      f"{MAX_PASSWORD_CHECKS_PER_MINUTE} password checks in the last minute"
                                      if busy else f"{MAX_PASSWORD_CHECKS} password checks running")
                    resp = make_response(page("Login", _LOGIN, error="Busy checking other logins; try again.",
                                              next=nxt, no_password=False), 503)
                    resp.headers["Retry-After"] = "1"
                    return resp
                try:
                    try:
                        stored = read_password_hash(self.password_file)
                    except ConfigError as e:
                        log.error("%s", e)
                        stored = None
                    ok = stored is not None and verify_password(request.form.get("password", ""), stored)
                finally:
                    self._password_checks.release()
                if ok:
                    self._limiter.succeeded(who)
                    token, _ = self._sessions.create()
                    log.info("web: login from %s", who)
                    resp = redirect(nxt)
                    resp.set_cookie(SESSION_COOKIE, token, max_age=int(self.cfg.session_minutes * 60) or 1,
                                    httponly=True, samesite="Strict", secure=request.is_secure, path="/")
                    return resp
                log.warning("web: failed login from %s", who)
                error, status = "Wrong password.", 401
            try:
                no_password = read_password_hash(self.password_file) is None
            except ConfigError:
                no_password = True
            return page("Login", _LOGIN, error=error, next=nxt, no_password=no_password,
                        password_file=str(self.password_file)), status

        @app.post("/logout")
        def logout():
            check_csrf()
            self._sessions.drop(session_token())
            resp = redirect(url_for("login"))
            resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
            return resp

        def check_csrf() -> None:
            sent = request.form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent, g.session.csrf):
                abort(403)

        @app.get("/")
        def live():
            return page("Live view", _LIVE, fps=self.cfg.live_fps, width=self.cfg.live_width)

        @app.get("/stream.mjpg")
        def stream():
            with self._viewers_lock:
                if self._viewers >= self.cfg.max_viewers:
                    return Response("too many live viewers\n", status=503, mimetype="text/plain",
                                    headers={"Retry-After": "10"})
                self._viewers += 1
            resp = Response(_Closing(self._mjpeg(session_token() or ""), self._viewer_left),
                            mimetype="multipart/x-mixed-replace; boundary=frame", direct_passthrough=True)
            resp.headers["Cache-Control"] = "no-store"
            return resp

        @app.get("/frame.jpg")
        def frame():
            try:
                got = self._encode_latest(self._fps())
            except Exception as e:  # noqa: BLE001
                log.warning("web: frame not encoded: %s: %s", type(e).__name__, e)
                got = None
            if got is None:
                return Response("no frame yet\n", status=503, mimetype="text/plain")
            return Response(got, mimetype="image/jpeg")

        def status_data() -> dict:
            st = self._safe_status()
            st.setdefault("uptime_s", self._clock() - self._started)
            st["pi"] = self._pi_health()
            st["web"] = {"viewers": self._viewers, "frames_sent": self.frames_sent}
            return st

        @app.get("/status")
        def status_page():
            st = status_data()
            for k in ("fps", "camera_ok", "frames", "dropped", "source", "models", "events", "snapshots"):
                st.setdefault(k, None)
            known = {"fps", "camera_ok", "frames", "dropped", "uptime_s", "source", "models", "snapshots",
                     "events", "pi", "web", "status_error", "arming", "door"}
            extra = {k: v for k, v in st.items() if k not in known and not isinstance(v, (dict, list))}
            events = [_event_row(e) for e in (st.get("events") or []) if isinstance(e, dict)]
            arming = st.get("arming") if isinstance(st.get("arming"), dict) else None
            return page("Status", _STATUS, st=st, uptime=_duration(st["uptime_s"]), extra=extra, events=events,
                        snapshots=bool(st.get("snapshots")), tested=request.args.get("test"),
                        arming=arming, arming_buttons=self._arming is not None,
                        arming_result=request.args.get("arming"),
                        door=st.get("door") if isinstance(st.get("door"), dict) else None)

        @app.get("/status.json")
        def status_json():
            st = status_data()
            # File paths stay on the device (copies: the dicts belong to the runner).
            st["events"] = [{k: v for k, v in e.items() if k != "snapshot"}
                            for e in st.get("events") or [] if isinstance(e, dict)]
            return jsonify(jsonable(st))

        @app.get("/thumb/<int:event_id>")
        def thumb(event_id: int):
            st = self._safe_status()
            if not st.get("snapshots"):
                abort(404)
            path = None
            for i, e in enumerate(st.get("events") or []):
                if isinstance(e, dict) and (e.get("id", i) == event_id):
                    path = e.get("snapshot")
                    break
            if not path:
                abort(404)
            try:
                import cv2

                img = cv2.imread(str(path), cv2.IMREAD_COLOR)
                if img is None:
                    abort(404)
                h, w = img.shape[:2]
                if w > 240:
                    img = cv2.resize(img, (240, max(1, round(h * 240 / w))), interpolation=cv2.INTER_AREA)
                ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            except OSError:
                abort(404)
            if not ok:
                abort(404)
            return Response(buf.tobytes(), mimetype="image/jpeg")

        @app.post("/test-outputs")
        def test_outputs():
            check_csrf()
            try:
                self._test_outputs()
                result = "ok"
                log.info("web: buzzer/LED test requested by %s", client())
            except Exception as e:  # noqa: BLE001 - report on the page, keep serving
                log.warning("web: buzzer/LED test failed: %s: %s", type(e).__name__, e)
                result = "failed"
            return redirect(url_for("status_page", test=result))

        @app.post("/arming")
        def arming():
            # Arm, disarm, back to the schedule, mute, unmute: logged in (before_request) + CSRF.
            check_csrf()
            action = request.form.get("action", "")
            if self._arming is None or action not in ARMING_ACTIONS:
                abort(400)
            try:
                self._arming(action, client())
                result = "ok"
            except ValueError as e:
                log.warning("web: arming %s refused: %s", action, e)
                result = "failed"
            return redirect(url_for("status_page", arming=result))

        if self._zone_editor is not None:
            self._zone_editor.register(app, page, check_csrf)
        return app


#: The status page's arming buttons (edge/arming.py ``Arming.command`` words).
ARMING_ACTIONS = ("arm", "disarm", "schedule", "mute", "unmute")


class _Closing:
    """A response body that calls ``on_close`` exactly once when the server closes it.

    A generator's ``finally`` never runs when the generator was not started
    (a viewer gone before the first frame); WSGI always calls ``close()``.
    """

    def __init__(self, it: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._it = it
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._it.close()  # type: ignore[attr-defined]
        finally:
            self._on_close()


def _duration(seconds: Any) -> str:
    try:
        s = int(float(seconds))
    except (TypeError, ValueError):
        return "?"
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{s:02d}"


def _event_row(e: dict) -> dict:
    t = e.get("time")
    try:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(t)))
    except (TypeError, ValueError, OverflowError, OSError):
        when = str(t or "")
    score = e.get("score")
    try:
        score = f"{float(score):.2f}"
    except (TypeError, ValueError):
        score = "" if score is None else str(score)
    return {"id": e.get("id"), "when": when, "track_id": e.get("track_id", ""), "verdict": e.get("verdict", ""),
            "label": e.get("label", ""), "score": score, "has_snapshot": bool(e.get("snapshot"))}


_LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>doorguard: {{ title }}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#111;color:#eee}
nav{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#222}
nav a{color:#9cf} nav form{margin-left:auto}
main{padding:1em} table{border-collapse:collapse} td,th{padding:.2em .6em;border-bottom:1px solid #333;text-align:left}
.bad{color:#f66} .ok{color:#6d6} .msg{padding:.5em;background:#333;display:inline-block}
img.live{max-width:100%;background:#000} button{font-size:1em;padding:.3em .8em}
</style></head><body>
<nav><b>doorguard</b>{% if logged_in %}<a href="/">Live</a><a href="/status">Status</a>
{% if zones %}<a href="/zones">Zones</a>{% endif %}
<form method="post" action="/logout"><input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">Log out</button></form>{% endif %}</nav>
<main><h1>{{ title }}</h1>{{ body|safe }}</main></body></html>
"""

_LOGIN = """{% if error %}<p class="bad" id="error">{{ error }}</p>{% endif %}
{% if no_password %}<p class="msg">No password is set yet. On the device run
<code>doorguard set-password</code> (writes {{ password_file }}), then log in.</p>{% endif %}
<form method="post" action="/login">
<input type="hidden" name="next" value="{{ next }}">
<label>Password <input type="password" name="password" id="password" autocomplete="current-password" autofocus></label>
<button type="submit" id="login">Log in</button></form>
"""

_LIVE = """<p>Annotated camera view at up to {{ fps }} fps, {{ width }} px wide.
Aim the camera so faces by the door come out large.</p>
<img class="live" id="live" src="/stream.mjpg" alt="live view">
"""

_STATUS = """{% if tested == "ok" %}<p class="msg ok" id="tested">Buzzer and LED test pattern started.</p>
{% elif tested %}<p class="msg bad" id="tested">Buzzer and LED test failed; see the log.</p>{% endif %}
{% if st.status_error %}<p class="bad">Status unavailable: {{ st.status_error }}</p>{% endif %}
<table id="status">
<tr><th>Uptime</th><td>{{ uptime }}</td></tr>
<tr><th>Frames per second</th><td>{{ "%.1f"|format(st.fps) if st.fps is number else "?" }}</td></tr>
<tr><th>Camera</th><td>{% if st.camera_ok %}<span class="ok">ok</span>{% elif st.camera_ok is none %}?
{% else %}<span class="bad">lost</span>{% endif %}{% if st.source %} ({{ st.source }}){% endif %}</td></tr>
{% if st.frames is not none %}<tr><th>Frames</th><td>{{ st.frames }}{% if st.dropped is not none %},
{{ st.dropped }} dropped{% endif %}</td></tr>{% endif %}
{% for m in st.models or [] %}<tr><th>Model</th><td>{{ m.name }} <code>{{ (m.sha256 or "")[:16] }}</code></td></tr>
{% endfor %}
{% for zone, c in st.pi.temperatures_c.items() %}<tr><th>Temperature ({{ zone }})</th>
<td class="{{ 'bad' if c >= 80 else '' }}">{{ "%.1f"|format(c) }} &deg;C</td></tr>{% endfor %}
{% if st.pi.throttled is not none %}<tr><th>Throttling</th><td class="{{ 'bad' if st.pi.throttled else 'ok' }}">
{{ "0x%x"|format(st.pi.throttled) }} {{ st.pi.throttled_flags|join(", ") or "none" }}</td></tr>{% endif %}
{% for k, v in extra.items() %}<tr><th>{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}
<tr><th>Live viewers</th><td>{{ st.web.viewers }}</td></tr>
</table>
{% if arming %}<h2>Alarm</h2>
{% if arming_result == "ok" %}<p class="msg ok" id="arming-done">Done.</p>
{% elif arming_result %}<p class="msg bad" id="arming-done">Not changed; see the log.</p>{% endif %}
<table id="arming"><tr><th>State</th><td id="arming-state"
class="{{ 'bad' if arming.state == 'disarmed' else 'ok' }}">{{ arming.state }}</td></tr>
<tr><th>Mode</th><td>{{ arming.mode }}{% if arming.override_until %} until {{ arming.override_until }}{% endif %}
</td></tr>
{% if arming.muted_until %}<tr><th>Muted until</th><td>{{ arming.muted_until }}</td></tr>{% endif %}
<tr><th>Schedule says</th><td>{{ arming.schedule_state }}{% if arming.next_schedule_change %}, next change
{{ arming.next_schedule_change }}{% endif %}</td></tr>
<tr><th>Last change</th><td>{{ arming.changed_at }} by {{ arming.changed_by }}</td></tr>
{% if door %}<tr><th>Door relay</th><td>GPIO{{ door.pin }} {{ "open" if door.open else "shut" }},
{{ door.openings }} opening(s), {{ door.refused }} refused</td></tr>{% endif %}
</table>
{% if arming_buttons %}<form method="post" action="/arming" id="arming-form">
<input type="hidden" name="csrf" value="{{ csrf_token }}">
{% for a in ["arm", "disarm", "schedule", "mute", "unmute"] %}<button type="submit" name="action" value="{{ a }}"
id="arming-{{ a }}">{{ a|capitalize }}</button> {% endfor %}</form>{% endif %}
{% if arming.history %}<table id="arming-history"><tr><th>Time</th><th>State</th><th>By</th><th>Detail</th></tr>
{% for h in arming.history %}<tr><td>{{ h.when }}</td><td>{{ h.previous }} &rarr; {{ h.state }}</td>
<td>{{ h.by }}</td><td>{{ h.detail or "" }}</td></tr>{% endfor %}</table>{% endif %}
{% endif %}
<h2>Installation check</h2>
<form method="post" action="/test-outputs"><input type="hidden" name="csrf" value="{{ csrf_token }}">
<button type="submit" id="test-outputs">Test buzzer and LEDs</button></form>
<h2>Last events</h2>
{% if events %}<table id="events"><tr><th>Time</th><th>Track</th><th>Verdict</th><th>Label</th><th>Score</th>
{% if snapshots %}<th>Snapshot</th>{% endif %}</tr>
{% for e in events %}<tr><td>{{ e.when }}</td><td>{{ e.track_id }}</td>
<td class="{{ 'bad' if e.verdict == 'violation' else 'ok' if e.verdict == 'compliant' else '' }}">{{ e.verdict }}</td>
<td>{{ e.label }}</td><td>{{ e.score }}</td>{% if snapshots %}<td>{% if e.has_snapshot %}
<img src="/thumb/{{ e.id if e.id is not none else loop.index0 }}" width="120" alt="snapshot">{% endif %}</td>{% endif %}
</tr>{% endfor %}</table>{% else %}<p>No events yet.</p>{% endif %}
"""


# ---- doorguard set-password ---------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard set-password``."""
    parser.add_argument("--config", metavar="PATH",
                        help="config TOML whose [web] password_file / state directory is used "
                             "(default: the embedded default config)")
    parser.add_argument("--password-file", metavar="PATH",
                        help="write the hash here (overrides the config)")


def _read_new_password(stdin=None) -> str:
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("New web page password: ")
        again = getpass.getpass("Repeat it: ")
        if first != again:
            raise UsageError("the two passwords differ; nothing changed")
        pw = first
    else:
        # Scripts: the first line of stdin is the password (no echo concerns, no repeat).
        pw = stdin.readline().rstrip("\r\n")
    if len(pw) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters; nothing changed")
    return pw


def main(args: argparse.Namespace) -> int:
    """Prompt for a password (twice; or read stdin's first line) and store its scrypt hash with mode 0600."""
    if args.password_file:
        path = Path(args.password_file).expanduser()
    else:
        from . import config as config_mod

        cfg = config_mod.load(args.config)
        web_cfg = getattr(cfg, "web", None) or WebConfig()
        path = password_path(web_cfg, cfg.state_dir())
    pw = _read_new_password()
    write_password_file(path, hash_password(pw))
    print(f"doorguard: web page password set in {path.resolve()} (scrypt, mode 0600); "
          "the page reads it at each login")
    return 0
