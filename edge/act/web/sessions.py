"""Who is logged in, and how often anyone may try: sessions, the login rate limits, one login attempt.

A session lives on the server (the cookie holds a random token only). A login attempt
takes its slot in the per-address failure limit before its password is checked, and the
scrypt checks of all addresses together are capped, at once and per minute, so a login
flood cannot take the Pi's memory and CPU from the frame loop (README "The web page's
defences").
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ...errors import ConfigError
from ...settings.web import WebConfig
from .passwords import read_password_hash, verify_password

log = logging.getLogger("doorguard.web")

SESSION_COOKIE = "doorguard_session"
#: Password checks (scrypt, 32 MiB and ~0.1 s each) running at once, whatever the address;
#: a login beyond it is answered 503 at once. Bounds the memory and CPU a login flood can take
#: from the frame loop (README "The web page's defences").
MAX_PASSWORD_CHECKS = 2
#: Password checks per minute from all addresses together; beyond it logins answer 503. With
#: the per-address limit alone, a flood from many addresses could keep MAX_PASSWORD_CHECKS
#: scrypt runs going all the time (two cores of a Pi); this caps it at a few seconds a minute.
MAX_PASSWORD_CHECKS_PER_MINUTE = 30


@dataclass
class Session:
    """One login: when it ends (``clock`` seconds) and the token its forms must carry."""

    expires: float
    csrf: str


class Sessions:
    """Server-side sessions: the cookie holds a random token only (revocable, dies with the process)."""

    MAX = 64

    def __init__(self, minutes: float, clock: Callable[[], float]) -> None:
        self.ttl = minutes * 60.0
        self._clock = clock
        self._lock = threading.Lock()
        self._by_token: dict[str, Session] = {}

    def create(self) -> tuple[str, Session]:
        token = secrets.token_urlsafe(32)
        s = Session(expires=self._clock() + self.ttl, csrf=secrets.token_urlsafe(32))
        with self._lock:
            self._purge()
            while len(self._by_token) >= self.MAX:  # oldest login goes first
                self._by_token.pop(next(iter(self._by_token)))
            self._by_token[token] = s
        return token, s

    def get(self, token: str | None) -> Session | None:
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


class LoginLimiter:
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



@dataclass(frozen=True)
class LoginResult:
    """What one login attempt came to.

    ``outcome`` is ``"ok"`` (``token``: the new session's cookie value), ``"wrong"``
    (password wrong or none set), ``"limited"`` (too many failures from this address:
    answer 429, ``retry_after`` seconds) or ``"busy"`` (the password-check budget is in
    use: answer 503; ``why`` says which, for the log).
    """

    outcome: str
    token: str = ""
    retry_after: float = 0.0
    why: str = ""


class Logins:
    """Password logins: the sessions they open and the limits they pass first.

    Args:
        password_file: the hash file, read at every attempt (a new password needs no restart).
        cfg: the ``[web]`` section (``session_minutes``, ``login_failures_per_minute``).
        clock: monotonic clock in seconds.
    """

    def __init__(self, password_file: Path, cfg: WebConfig, clock: Callable[[], float]) -> None:
        self.password_file = password_file
        self.sessions = Sessions(cfg.session_minutes, clock)
        self._per_address = LoginLimiter(cfg.login_failures_per_minute, clock)
        self._running = threading.BoundedSemaphore(MAX_PASSWORD_CHECKS)
        self._per_minute = LoginLimiter(MAX_PASSWORD_CHECKS_PER_MINUTE, clock)

    def attempt(self, client: str, password: str) -> LoginResult:
        """Check one login from address ``client``; on success a new session is open."""
        # The failure slot is taken before the password is checked, atomically: 40
        # concurrent wrong logins get `login_failures_per_minute` checks, not 40.
        wait = self._per_address.reserve(client)
        if wait > 0:
            return LoginResult("limited", retry_after=wait)
        # scrypt takes 32 MiB and ~0.1 s: only MAX_PASSWORD_CHECKS at once and
        # MAX_PASSWORD_CHECKS_PER_MINUTE a minute, from anyone. An attempt refused here keeps
        # its per-address slot: that limit counts attempts, checked or not.
        busy = self._per_minute.reserve("*") > 0
        if busy or not self._running.acquire(blocking=False):
            return LoginResult("busy", why=f"{MAX_PASSWORD_CHECKS_PER_MINUTE} password checks in the last minute"
                               if busy else f"{MAX_PASSWORD_CHECKS} password checks running")
        try:
            try:
                stored = read_password_hash(self.password_file)
            except ConfigError as e:
                log.error("%s", e)
                stored = None
            ok = stored is not None and verify_password(password, stored)
        finally:
            self._running.release()
        if not ok:
            return LoginResult("wrong")
        self._per_address.succeeded(client)
        token, _ = self.sessions.create()
        return LoginResult("ok", token=token)
