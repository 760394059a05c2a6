"""Arm, disarm, mute and schedules: whether the doorway alarm acts at all.

The alarm is in one of three states:

* ``armed``: violations sound the buzzer, light the LEDs and are recorded;
* ``muted`` (until a time): armed, but the buzzer and sound stay silent; the LEDs
  still show and every event is recorded;
* ``disarmed``: nothing sounds or lights and nothing is recorded (unless
  ``[arming] record_when_disarmed``, which stores and publishes the events with
  ``alerted`` false); the door relay never opens.

What decides it: the ``[[arming.schedule]]`` windows (e.g. disarmed 22:00-07:00, or
armed on weekdays only), ``default`` outside every window, and changes by hand
(MQTT command topic, the web page, the GPIO mute button). A change by hand holds
until the schedule's next change (the way a thermostat's manual setting does);
``schedule`` (the select's option, the page's button) goes back to the schedule at
once. Without a schedule a change by hand holds until the next one.

The state survives a restart: it is written atomically to ``arming.json`` in the
state directory (temp file, fsync, rename), mode 0600. Every change (who or what
made it: ``mqtt``, ``web (127.0.0.1)``, ``button``, ``schedule``, ``mute expired``)
is logged, kept in the ``arming_changes`` table of the event database (when events
are on) and handed to the listeners (MQTT's retained ``<prefix>/arming``, outputs).

Time is a wall clock passed in (``clock``, unix seconds) with an optional time zone
(``tz``; None: the system's local time, as the schedule's wall-clock times are).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, Callable

from ..atomic import write_atomic
from ..settings.arming import WEEK_MINUTES, ArmingConfig

log = logging.getLogger("doorguard.arming")

ARMED, DISARMED, MUTED = "armed", "disarmed", "muted"
#: The modes: follow the schedule, or a state set by hand.
SCHEDULE = "schedule"

HISTORY_SCHEMA = """
CREATE TABLE IF NOT EXISTS arming_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,          -- unix time
    state TEXT NOT NULL,         -- armed | muted | disarmed: the state after the change
    previous TEXT,               -- the state before it
    mode TEXT NOT NULL,          -- schedule | armed | disarmed (set by hand)
    by TEXT NOT NULL,            -- who or what: mqtt, web (address), button, schedule, mute expired, start
    detail TEXT                  -- e.g. "mute 10 min", "until 2025-01-02 07:00"
);
"""


class Arming:
    """The alarm's armed/disarmed/muted state: schedule, changes by hand, persistence, history.

    Thread-safe: MQTT commands arrive on paho's thread, the page's on a waitress worker,
    the button's on gpiozero's, the schedule is ticked by the frame loop.

    Args:
        cfg: the ``[arming]`` section.
        state_dir: where ``cfg.state_file`` lives; None keeps the state in memory only.
        db_path: the event database, for the ``arming_changes`` history; None: log only.
        mute_minutes: how long a mute without a duration lasts (``[gpio] mute_minutes``).
        clock: wall clock in unix seconds (tests pass a fake one).
        tz: time zone of the schedule's wall-clock times; None: the system's local time.
    """

    def __init__(self, cfg: ArmingConfig, state_dir: str | os.PathLike | None = None, *,
                 db_path: str | os.PathLike | None = None, mute_minutes: float = 10.0,
                 clock: Callable[[], float] = time.time, tz: tzinfo | None = None) -> None:
        self.cfg = cfg
        self.mute_minutes = float(mute_minutes)
        self._clock = clock
        self._tz = tz
        self._week = cfg.week()
        self._lock = threading.RLock()
        self._listeners: list[Listener] = []
        self.path = Path(state_dir) / cfg.state_file if state_dir is not None else None
        # A state set by hand: {"state", "until" (unix time or None), "by", "at"}; None: the schedule.
        self._override: dict[str, Any] | None = None
        self._muted_until: float | None = None
        self._changed_by = "start"
        self._changed_at = clock()
        self._db: sqlite3.Connection | None = None
        if db_path is not None:
            self._open_db(Path(db_path))
        restored = self._load()
        self._last_state = self._state(clock())
        log.info("arming: %s (%s)%s", self._last_state, self._mode_text(),
                 " restored from " + str(self.path) if restored else "")
        self.tick()

    # -- reading ---------------------------------------------------------------------------
    @property
    def state(self) -> str:
        """``armed``, ``muted`` or ``disarmed`` now."""
        with self._lock:
            return self._state(self._clock())

    @property
    def armed(self) -> bool:
        """True when the alarm acts (armed or muted)."""
        return self.state != DISARMED

    def schedule_state(self, t: float | None = None) -> str:
        """What the schedule alone says at unix time ``t`` (default now)."""
        return self._week[self._minute_of_week(self._clock() if t is None else t)]

    def next_schedule_change(self, t: float | None = None) -> float | None:
        """Unix time of the schedule's next change after ``t``, None when it never changes."""
        t = self._clock() if t is None else t
        local = self._local(t).replace(second=0, microsecond=0)
        m0 = self._index(local)
        now_state = self._week[m0]
        for k in range(1, WEEK_MINUTES + 1):
            if self._week[(m0 + k) % WEEK_MINUTES] != now_state:
                naive = local.replace(tzinfo=None) + timedelta(minutes=k)
                return naive.replace(tzinfo=self._tz).timestamp() if self._tz else naive.timestamp()
        return None

    def snapshot(self) -> dict[str, Any]:
        """The state as a JSON-able dict (MQTT's retained ``<prefix>/arming``, the status page)."""
        with self._lock:
            now = self._clock()
            state = self._state(now)
            ov = self._active_override(now)
            muted_until = self._muted_until if self._muted_until and self._muted_until > now else None
            return {
                "state": state,
                "armed": state != DISARMED,
                "muted": state == MUTED,
                "mode": ov["state"] if ov else SCHEDULE,
                "muted_until": _iso(muted_until),
                "mute_remaining_s": round(muted_until - now, 1) if muted_until else 0.0,
                "override_until": _iso(ov["until"]) if ov else None,
                "schedule_state": self.schedule_state(now),
                "next_schedule_change": _iso(self.next_schedule_change(now)) if self.cfg.schedule else None,
                "changed_by": self._changed_by,
                "changed_at": _iso(self._changed_at),
            }

    def history(self, limit: int = 10) -> list[dict]:
        """Newest changes first (empty without the event database)."""
        with self._lock:
            if self._db is None:
                return []
            try:
                cur = self._db.execute("SELECT id, time, state, previous, mode, by, detail FROM arming_changes "
                                       "ORDER BY id DESC LIMIT ?", (int(limit),))
                names = [d[0] for d in cur.description]
                rows = [dict(zip(names, row)) for row in cur.fetchall()]
            except sqlite3.Error as e:
                log.debug("arming: history unreadable: %s", e)
                return []
        for r in rows:
            r["when"] = _local_text(r["time"], self._tz)
        return rows

    def add_listener(self, fn: Listener) -> None:
        """Call ``fn(snapshot)`` after every change (on the thread that made it)."""
        self._listeners.append(fn)

    # -- changing --------------------------------------------------------------------------
    def arm(self, by: str) -> dict:
        """Arm now; holds until the schedule's next change."""
        return self._set_override(ARMED, by)

    def disarm(self, by: str) -> dict:
        """Disarm now; holds until the schedule's next change."""
        return self._set_override(DISARMED, by)

    def follow_schedule(self, by: str) -> dict:
        """Drop a change by hand: the schedule (or ``default``) decides again."""
        with self._lock:
            before = self._state(self._clock())
            self._override = None
            return self._changed(before, by, "back to the schedule")

    def mute(self, by: str, minutes: float | None = None) -> dict:
        """Silence buzzer and sound for ``minutes`` (default ``mute_minutes``); events are still recorded."""
        minutes = self.mute_minutes if minutes is None else float(minutes)
        if not 0 < minutes <= 24 * 60:
            raise ValueError(f"mute for {minutes:g} min: give 0-1440 minutes")
        with self._lock:
            now = self._clock()
            before = self._state(now)
            self._muted_until = now + minutes * 60.0
            return self._changed(before, by, f"mute {minutes:g} min")

    def unmute(self, by: str) -> dict:
        """End a mute now."""
        with self._lock:
            before = self._state(self._clock())
            self._muted_until = None
            return self._changed(before, by, "unmute")

    def command(self, text: str, by: str) -> dict:
        """Apply a command word: ``arm``/``armed``/``on``, ``disarm``/``disarmed``/``off``,
        ``schedule``, ``mute [minutes]``, ``unmute`` (case-insensitive).

        Raises:
            ValueError: not a command.
        """
        words = text.strip().lower().split()
        if not words:
            raise ValueError("empty command")
        verb, rest = words[0], words[1:]
        if verb in ("arm", "armed", "on") and not rest:
            return self.arm(by)
        if verb in ("disarm", "disarmed", "off") and not rest:
            return self.disarm(by)
        if verb in ("schedule", "auto") and not rest:
            return self.follow_schedule(by)
        if verb == "mute" and len(rest) <= 1:
            try:
                minutes = float(rest[0]) if rest else None
            except ValueError:
                raise ValueError(f"mute {rest[0]!r}: minutes must be a number") from None
            return self.mute(by, minutes)
        if verb == "unmute" and not rest:
            return self.unmute(by)
        raise ValueError(f"{text[:40]!r} is not a command (arm, disarm, schedule, mute [minutes], unmute)")

    def tick(self) -> bool:
        """Apply what time did (the schedule changed, a mute or a change by hand ran out).

        Called by the frame loop every turn; cheap (one lookup) when nothing happened.

        Returns:
            True when the state changed (recorded and handed to the listeners).
        """
        with self._lock:
            now = self._clock()
            why = None
            if self._override is not None and self._override["until"] is not None \
                    and now >= self._override["until"]:
                self._override = None
                why = "schedule"
            if self._muted_until is not None and now >= self._muted_until:
                self._muted_until = None
                why = why or "mute expired"
            state = self._state(now)
            if why is None and state == self._last_state:
                return False
            self._changed(self._last_state, why or "schedule", None)
            return True

    def close(self) -> None:
        """Close the history database (idempotent)."""
        with self._lock:
            db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass

    # -- internals -------------------------------------------------------------------------
    def _local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self._tz) if self._tz else datetime.fromtimestamp(t).astimezone()

    @staticmethod
    def _index(local: datetime) -> int:
        return local.weekday() * 1440 + local.hour * 60 + local.minute

    def _minute_of_week(self, t: float) -> int:
        return self._index(self._local(t))

    def _active_override(self, now: float) -> dict | None:
        ov = self._override
        if ov is None or (ov["until"] is not None and now >= ov["until"]):
            return None
        return ov

    def _state(self, now: float) -> str:
        ov = self._active_override(now)
        base = ov["state"] if ov else self._week[self._minute_of_week(now)]
        if base == ARMED and self._muted_until is not None and now < self._muted_until:
            return MUTED
        return base

    def _mode_text(self) -> str:
        ov = self._active_override(self._clock())
        if ov is None:
            return "schedule" if self.cfg.schedule else f"default {self.cfg.default}"
        return f"set by {ov['by']}" + (f" until {_local_text(ov['until'], self._tz)}" if ov["until"] else "")

    def _set_override(self, state: str, by: str) -> dict:
        with self._lock:
            now = self._clock()
            before = self._state(now)
            until = self.next_schedule_change(now) if self.cfg.schedule else None
            self._override = {"state": state, "until": until, "by": by, "at": now}
            return self._changed(before, by, f"until {_local_text(until, self._tz)}" if until else None)

    def _changed(self, before: str, by: str, detail: str | None) -> dict:
        # Caller holds the lock. Persist first: a change the file does not keep is lost on a restart.
        now = self._clock()
        self._changed_by, self._changed_at = by, now
        self._save()
        snap = self.snapshot()
        self._last_state = snap["state"]
        what = snap["state"] if before == snap["state"] else f"{before} -> {snap['state']}"
        log.info("arming: %s by %s%s", what, by, f" ({detail})" if detail else "")
        if self._db is not None:
            try:
                self._db.execute("INSERT INTO arming_changes (time, state, previous, mode, by, detail) "
                                 "VALUES (?,?,?,?,?,?)", (now, snap["state"], before, snap["mode"], by, detail))
                self._db.commit()
            except sqlite3.Error as e:
                log.error("arming: change not recorded in %s: %s", self._db_path, e)
        for fn in list(self._listeners):
            try:
                fn(snap)
            except Exception as e:  # noqa: BLE001 - one broken listener must not stop the others
                log.error("arming: listener failed: %s: %s", type(e).__name__, e)
        return snap

    def _open_db(self, path: Path) -> None:
        self._db_path = path
        try:
            from ..atomic import private_file

            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_file(path)
            db = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(HISTORY_SCHEMA)
            db.commit()
            self._db = db
        except (sqlite3.Error, OSError) as e:
            log.error("arming: no change history in %s: %s", path, e)

    def _save(self) -> None:
        if self.path is None:
            return
        data = {"version": 1, "override": self._override, "muted_until": self._muted_until,
                "changed_by": self._changed_by, "changed_at": self._changed_at}
        try:
            write_atomic(self.path, (json.dumps(data, indent=1) + "\n").encode())
        except OSError as e:
            log.error("arming: cannot keep the state in %s (%s): it is lost on a restart",
                      self.path, e.strerror or e)

    def _load(self) -> bool:
        if self.path is None:
            return False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return False
        except (OSError, ValueError) as e:
            log.warning("arming: %s unreadable (%s): starting from the schedule", self.path, e)
            return False
        try:
            ov = data.get("override")
            if ov is not None:
                if ov.get("state") not in (ARMED, DISARMED):
                    raise ValueError(f"override state {ov.get('state')!r}")
                until = ov.get("until")
                self._override = {"state": ov["state"], "until": None if until is None else float(until),
                                  "by": str(ov.get("by", "?")), "at": float(ov.get("at", 0.0))}
            mu = data.get("muted_until")
            self._muted_until = None if mu is None else float(mu)
            self._changed_by = str(data.get("changed_by", "start"))
            self._changed_at = float(data.get("changed_at", self._changed_at))
        except (AttributeError, TypeError, ValueError) as e:
            log.warning("arming: %s is not a state doorguard wrote (%s): starting from the schedule", self.path, e)
            self._override, self._muted_until = None, None
            return False
        return True


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(float(t)).astimezone().isoformat(timespec="seconds")


def _local_text(t: float | None, tz: tzinfo | None) -> str:
    if t is None:
        return "-"
    d = datetime.fromtimestamp(t, tz) if tz else datetime.fromtimestamp(t)
    return d.strftime("%a %Y-%m-%d %H:%M")
