"""sd_notify: tell systemd that doorguard is ready, alive, and stopping.

The protocol is one datagram per message on the AF_UNIX socket named by
``$NOTIFY_SOCKET`` (a path, or an abstract name written with a leading ``@``
that stands for a NUL byte). A handful of lines, so no dependency.

The runner calls :meth:`SystemdNotifier.watchdog` after every processed frame;
the pings are throttled to half of ``$WATCHDOG_USEC``, so they only reach
systemd while frames actually progress. A stuck camera or interpreter stops the
pings, and systemd's ``WatchdogSec=`` kills and restarts the service.

Outside systemd (``NOTIFY_SOCKET`` unset) every method is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from typing import Callable

log = logging.getLogger("doorguard.notify")


def _address(path: str) -> str | bytes:
    # "@name" is the text form of an abstract socket: the kernel name starts with NUL.
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


class SystemdNotifier:
    """Sends READY/STATUS/WATCHDOG/STOPPING to systemd.

    Args:
        socket_path: the notify socket; None reads ``$NOTIFY_SOCKET``.
        watchdog_usec: the watchdog interval in microseconds; None reads
            ``$WATCHDOG_USEC`` (ignored when ``$WATCHDOG_PID`` names another process).
        clock: monotonic clock in seconds (tests pass a fake one).
    """

    def __init__(
        self,
        socket_path: str | None = None,
        watchdog_usec: int | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET") or None
        self._clock = clock
        if watchdog_usec is None:
            watchdog_usec = _env_watchdog_usec()
        # Ping at half the interval, as sd_watchdog_enabled(3) recommends.
        self._interval = watchdog_usec / 2e6 if watchdog_usec else None
        self._last_ping = float("-inf")
        self._sock: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._path is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC), or None without a watchdog."""
        return self._interval

    def notify(self, message: str) -> bool:
        """Send one raw notify message (e.g. ``"READY=1\\nSTATUS=ok"``). Returns True if sent."""
        if self._path is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(message.encode(), _address(self._path))
            return True
        except OSError as e:
            # systemd going away must never crash the watcher; say it once.
            if not self._warned:
                log.warning("sd_notify to %s failed: %s", self._path, e)
                self._warned = True
            return False

    def ready(self, status: str | None = None) -> bool:
        """READY=1: camera delivers frames and models are loaded."""
        return self.notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def status(self, text: str) -> bool:
        """STATUS=: one line shown by ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """WATCHDOG=1, at most once per half watchdog interval. Returns True if a ping was sent."""
        if self._path is None or self._interval is None:
            return False
        now = self._clock()
        if now - self._last_ping < self._interval:
            return False
        if self.notify("WATCHDOG=1"):
            self._last_ping = now
            return True
        return False

    def stopping(self, status: str | None = None) -> bool:
        """STOPPING=1: shutting down on purpose."""
        return self.notify("STOPPING=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))

    def close(self) -> None:
        """Close the socket (idempotent)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "SystemdNotifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _env_watchdog_usec() -> int | None:
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None  # the watchdog belongs to another process (e.g. a wrapper)
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(str(text).split())
