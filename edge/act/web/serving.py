"""A WSGI app served by waitress from a daemon thread, and taken down again cleanly.

waitress, not werkzeug's development server: a request is handed to one of a fixed pool
of worker threads only once it has fully arrived, connections are capped, and an idle
connection (a half-sent request included) is closed. werkzeug had none of these: 300
half-sent requests held 309 threads.
"""

from __future__ import annotations

import errno
import logging
import threading
from typing import Any

from ...errors import ConfigError
from ...settings.web import WebConfig

log = logging.getLogger("doorguard.web")


class BackgroundServer:
    """waitress serving ``app`` on ``cfg.bind``:``cfg.port`` from a daemon thread.

    Args:
        app: the WSGI app.
        cfg: the ``[web]`` section (bind, port, max_viewers, max_connections, idle_timeout_s).
    """

    def __init__(self, app: Any, cfg: WebConfig) -> None:
        self.app = app
        self.cfg = cfg
        self._server = None
        self._serving = False
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port listened on (the real one when ``cfg.port`` is 0); 0 before start() and after close()."""
        return int(self._server.effective_port) if self._server is not None else 0

    def start(self) -> None:
        """Listen, and serve in a daemon thread; returns at once.

        ``max_viewers + 3`` worker threads, at most ``max_connections`` connections open at
        once, and a connection idle for ``idle_timeout_s`` is closed.

        Raises:
            ConfigError: the address/port cannot be bound (in use, not local).
        """
        from waitress.server import create_server

        # waitress warns per queued request while the workers are busy ("Task queue depth is 13")
        # and at every crossing of the connection limit: a flood of requests would become a
        # journald flood. Its errors still show; the page logs refusals once a minute.
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

    def _serve(self, server: Any) -> None:
        from waitress import wasyncore

        # waitress's own run() only ends once every socket is closed; one poll at a time lets
        # close() stop the loop first and then take the server apart from its own thread.
        while self._serving:
            wasyncore.loop(timeout=1.0, map=server._map, use_poll=True, count=1)

    def close(self) -> None:
        """Stop serving and close every connection; idempotent."""
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
