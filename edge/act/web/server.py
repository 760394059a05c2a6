"""The page's server: :class:`WebServer`, its Flask routes, served by waitress from a thread.

What the page shows and how it is defended: the package's docstring (edge/act/web/__init__.py)
and README "The web page's defences".
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from ...errors import ConfigError
from ...jsonable import jsonable
from ...settings.web import WebConfig
from . import templates
from .guards import default_host_names, host_allowed, is_loopback, safe_next
from .health import CachedPiHealth
from .passwords import password_path, read_password_hash
from .serving import BackgroundServer
from .sessions import SESSION_COOKIE, Logins
from .stream import LatestFrameFn, LiveView

log = logging.getLogger("doorguard.web")

StatusFn = Callable[[], dict]

#: The status page's arming buttons (edge/decide/arming.py ``Arming.command`` words).
ARMING_ACTIONS = ("arm", "disarm", "schedule", "mute", "unmute")


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
            (e.g. :meth:`LiveFrame.get`, edge/act/web/handover.py); overlays as in ``overlay_fields``.
        test_outputs: plays the buzzer/LED test pattern; must return at once.
        arming: ``arming(action, client_address)`` applies an arm/disarm/schedule/mute/unmute
            button of the status page (POST /arming with the CSRF token; edge/decide/arming.py) and
            raises ValueError for an unknown action; None: no such buttons. The status dict's
            ``arming`` (``Arming.snapshot()`` plus ``history``) is shown above them.
        state_dir: where a relative/default password file lives (``Config.state_dir()``).
        password_file: overrides the password file location entirely.
        sys_root: sysfs root for temperature/throttling (tests point it elsewhere).
        clock: monotonic clock in seconds (sessions, rate limit).
        zone_editor: an ``edge.act.web.zone_editor.ZoneEditor``: adds the ``/zones`` page (draw zones and
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
        self._clock = clock
        self._started = clock()
        # The runner's side: called from request threads, never by the frame loop.
        self._status, self._test_outputs, self._arming = status, test_outputs, arming
        self._zone_editor = zone_editor
        self.password_file = Path(password_file) if password_file is not None else password_path(cfg, state_dir)
        stored = read_password_hash(self.password_file)
        if stored is None and not is_loopback(cfg.bind):
            raise ConfigError(
                f"web: refusing to listen on {cfg.bind} (not loopback) without a password; "
                f"run `doorguard set-password` (writes {self.password_file}) or bind 127.0.0.1"
            )
        self._logins = Logins(self.password_file, cfg, clock)
        #: Host names the page answers to (IP addresses always; see :func:`host_allowed`).
        self.allowed_hosts = frozenset(default_host_names() | set(cfg.allowed_hosts))
        self._quiet_until: dict[str, float] = {}
        self._health = CachedPiHealth(sys_root, clock)
        self._fps_cache: tuple[float, float | None] | None = None
        self._live = LiveView(cfg, latest_frame, self._fps)
        self._server: BackgroundServer | None = None
        self.app = self._build_app()

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the real one when ``cfg.port`` is 0); 0 before start()."""
        return self._server.port if self._server is not None else 0

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
        return self._live.viewers

    @property
    def frames_sent(self) -> int:
        """JPEG frames sent to live viewers so far (all streams together)."""
        return self._live.frames_sent

    def start(self) -> "WebServer":
        """Listen and serve in a daemon thread (edge/act/web/serving.py); returns at once.

        Raises:
            ConfigError: the address/port cannot be bound (in use, not local).
        """
        if self._server is not None:
            return self
        server = BackgroundServer(self.app, self.cfg)
        server.start()
        self._server = server
        log.info("web: serving on %s (login required; live view %g fps, %d px wide)", self.url,
                 self.cfg.live_fps, self.cfg.live_width)
        return self

    def close(self) -> None:
        """Stop the streams and the server; idempotent."""
        self._live.stop()
        server, self._server = self._server, None
        if server is not None:
            server.close()

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
            s = self._logins.sessions.get(session_token())
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
            return render_template_string(templates.LAYOUT, title=title, logged_in=bool(csrf), csrf=csrf,
                                          zones=self._zone_editor is not None,
                                          body=render_template_string(body, csrf_token=csrf, **kw))

        @app.route("/login", methods=["GET", "POST"])
        def login():
            nxt = safe_next(request.values.get("next"))
            error = None
            status = 200
            if request.method == "POST":
                who = client()
                got = self._logins.attempt(who, request.form.get("password", ""))
                if got.outcome == "limited":
                    self._log_limited(f"429 {who}", "web: logins from %s refused: too many failures", who)
                    resp = make_response(page("Login", templates.LOGIN, next=nxt, no_password=False,
                                              error="Too many failed logins; wait a minute."), 429)
                    resp.headers["Retry-After"] = str(int(got.retry_after) + 1)
                    return resp
                if got.outcome == "busy":
                    self._log_limited("503", "web: login from %s refused: %s", who, got.why)
                    resp = make_response(page("Login", templates.LOGIN, next=nxt, no_password=False,
                                              error="Busy checking other logins; try again."), 503)
                    resp.headers["Retry-After"] = "1"
                    return resp
                if got.outcome == "ok":
                    log.info("web: login from %s", who)
                    resp = redirect(nxt)
                    resp.set_cookie(SESSION_COOKIE, got.token, max_age=int(self.cfg.session_minutes * 60) or 1,
                                    httponly=True, samesite="Strict", secure=request.is_secure, path="/")
                    return resp
                log.warning("web: failed login from %s", who)
                error, status = "Wrong password.", 401
            try:
                no_password = read_password_hash(self.password_file) is None
            except ConfigError:
                no_password = True
            return page("Login", templates.LOGIN, error=error, next=nxt, no_password=no_password,
                        password_file=str(self.password_file)), status

        @app.post("/logout")
        def logout():
            check_csrf()
            self._logins.sessions.drop(session_token())
            resp = redirect(url_for("login"))
            resp.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="Strict")
            return resp

        def check_csrf() -> None:
            sent = request.form.get("csrf", "")
            if not sent or not hmac.compare_digest(sent, g.session.csrf):
                abort(403)

        @app.get("/")
        def live():
            return page("Live view", templates.LIVE, fps=self.cfg.live_fps, width=self.cfg.live_width)

        @app.get("/stream.mjpg")
        def stream():
            token = session_token() or ""
            body = self._live.stream(lambda: self._logins.sessions.get(token) is not None)
            if body is None:
                return Response("too many live viewers\n", status=503, mimetype="text/plain",
                                headers={"Retry-After": "10"})
            resp = Response(body, mimetype="multipart/x-mixed-replace; boundary=frame", direct_passthrough=True)
            resp.headers["Cache-Control"] = "no-store"
            return resp

        @app.get("/frame.jpg")
        def frame():
            try:
                got = self._live.frame()
            except Exception as e:  # noqa: BLE001
                log.warning("web: frame not encoded: %s: %s", type(e).__name__, e)
                got = None
            if got is None:
                return Response("no frame yet\n", status=503, mimetype="text/plain")
            return Response(got, mimetype="image/jpeg")

        def status_data() -> dict:
            st = self._safe_status()
            st.setdefault("uptime_s", self._clock() - self._started)
            st["pi"] = self._health.get()
            st["web"] = {"viewers": self._live.viewers, "frames_sent": self._live.frames_sent}
            return st

        @app.get("/status")
        def status_page():
            st = status_data()
            for k in ("fps", "camera_ok", "frames", "dropped", "source", "models", "events", "snapshots"):
                st.setdefault(k, None)
            known = {"fps", "camera_ok", "frames", "dropped", "uptime_s", "source", "models", "snapshots",
                     "events", "pi", "web", "status_error", "arming", "door"}
            extra = {k: v for k, v in st.items() if k not in known and not isinstance(v, (dict, list))}
            events = [templates.event_row(e) for e in (st.get("events") or []) if isinstance(e, dict)]
            arming = st.get("arming") if isinstance(st.get("arming"), dict) else None
            return page("Status", templates.STATUS, st=st, uptime=templates.duration(st["uptime_s"]), extra=extra,
                        events=events, snapshots=bool(st.get("snapshots")), tested=request.args.get("test"),
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
