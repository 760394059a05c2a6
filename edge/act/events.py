"""SQLite event store (WAL) under the state directory, with optional snapshots.

Events are small rows and are always kept (until ``keep_days``). Snapshots are
JPEGs for alerts only (a violation that sounded the alarm; never a compliant
face), and by default only of the violating face, cut out with a margin
(``snapshots.content = "face"``; ``"frame"`` keeps the whole frame): faces are
personal data, so they are off by default, and when
on they are bounded by count, age and bytes, oldest deleted first, and never
written while the disk has less than ``min_free_bytes`` free, so events keep
being written on a nearly full disk (an event that cannot be written is logged,
not fatal). The state directory doorguard creates is 0700, the database and
snapshots 0600, whatever the umask (systemd's ``UMask=0077`` does the same).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..settings.events import EventsConfig, SnapshotConfig
from ..atomic import private_file
from ..errors import StateError
from ..types import Event, Verdict

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,             -- unix time (seconds)
    track INTEGER NOT NULL,
    verdict TEXT NOT NULL,          -- violation | compliant | neutral
    label TEXT NOT NULL,
    score REAL NOT NULL,
    x1 REAL, y1 REAL, x2 REAL, y2 REAL,
    alerted INTEGER NOT NULL,       -- 0 when a cooldown held the buzzer back
    source TEXT NOT NULL,           -- classifier | detector
    detector_sha256 TEXT,
    classifier_sha256 TEXT,
    snapshot TEXT                   -- file name under snapshots/, or NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time);
"""


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory and prove it is writable.

    Raises:
        StateError: it cannot be created or written.
    """
    try:
        # Only the leaf is ours to make private; an existing directory keeps its mode
        # (systemd's StateDirectoryMode=0750, or what its owner chose).
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise StateError(f"state directory {path} is not writable: {e.strerror or e}") from e
    return path


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)


class EventStore:
    """Append-only event table plus a bounded snapshot folder.

    Args:
        state_dir: writable directory (see ``prepare_state_dir``).
        cfg: the [events] config section.
        model_hashes: {"detector": sha256, "classifier": sha256} stored with each event.
        clock: wall clock (injectable for retention tests).
        disk_usage: ``shutil.disk_usage`` (tests pass a fake disk that fills up).
    """

    def __init__(self, state_dir: Path, cfg: EventsConfig, model_hashes: dict[str, str] | None = None,
                 clock=time.time, disk_usage: Callable[[Path], Any] = shutil.disk_usage):
        self.dir = prepare_state_dir(Path(state_dir))
        self.cfg = cfg
        self.snap_cfg: SnapshotConfig = cfg.snapshots
        self.snapshots_on = cfg.snapshots.enabled
        self.hashes = model_hashes or {}
        self.clock = clock
        self.snap_dir = self.dir / "snapshots"
        self.write_errors = 0
        #: Snapshots not written because the disk was below ``min_free_bytes``.
        self.snapshots_skipped = 0
        self._disk_usage = disk_usage
        self.path = self.dir / cfg.database
        self._lock = threading.Lock()
        try:
            private_file(self.path)
        except OSError as e:
            raise StateError(f"event database {self.path} cannot be created: {e.strerror or e}") from e
        try:
            # check_same_thread=False: the loop writes, the web page's thread reads;
            # self._lock serializes them on this one connection.
            self.db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + FULL: a commit is fsynced before add() returns. NORMAL in WAL mode keeps
            # committed events across a crash or kill -9 (the WAL is in the page cache) but can
            # lose the last transactions on a power cut, the common failure of a Pi by a door.
            # Events are rare (cooldowns), so one fsync per event costs nothing that matters.
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self.db.commit()
        except sqlite3.Error as e:
            raise StateError(f"event database {self.path} is unusable: {e}") from e
        self.prune_events()
        if self.snapshots_on:
            try:
                self.snap_dir.mkdir(exist_ok=True, mode=0o700)
            except OSError as e:
                raise StateError(f"snapshot directory {self.snap_dir} is not writable: {e.strerror}") from e
            self.prune_snapshots()

    # ---- events ---------------------------------------------------------------------
    def add(self, event: Event, frame: np.ndarray | None = None, wall_time: float | None = None) -> int | None:
        """Store one event (and its snapshot when enabled and ``frame`` is given).

        Returns:
            The row id, or None when the write failed (logged, the run goes on).
        """
        snap = None
        if frame is not None and self.wants_snapshot(event):
            try:
                snap = self._snapshot(frame, event)
            except Exception as e:  # noqa: BLE001 - a snapshot must never cost the event (or the alert)
                log.error("snapshot failed, event recorded without it: %s: %s", type(e).__name__, e)
        b = event.box
        try:
            with self._lock:
                cur = self.db.execute(
                    "INSERT INTO events (time, track, verdict, label, score, x1, y1, x2, y2, alerted, source,"
                    " detector_sha256, classifier_sha256, snapshot) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (wall_time if wall_time is not None else self.clock(), event.track_id, event.verdict,
                     event.label, float(event.score), b.x1, b.y1, b.x2, b.y2, int(event.alerted),
                     event.source, self.hashes.get("detector"), self.hashes.get("classifier"), snap),
                )
                self.db.commit()
            return cur.lastrowid
        except sqlite3.Error as e:
            self.write_errors += 1
            if self.write_errors == 1 or self.write_errors % 100 == 0:
                log.error("cannot record event (%d failed so far): %s", self.write_errors, e)
            return None

    def wants_snapshot(self, event: Event) -> bool:
        """Whether :meth:`add` keeps a picture of this event: snapshots on, and an alert.

        Alerts only: a compliant (masked) face is personal data with no alarm to explain.
        """
        return self.snapshots_on and event.alerted and event.verdict == Verdict.VIOLATION

    def prune_events(self) -> int:
        """Delete events older than ``keep_days`` (at start-up and hourly from the loop).

        Returns:
            Rows deleted (0 when the database refused; logged).
        """
        try:
            with self._lock:
                n = self.db.execute("DELETE FROM events WHERE time < ?",
                                    (self.clock() - self.cfg.keep_days * 86400,)).rowcount
                self.db.commit()
            return n
        except sqlite3.Error as e:
            log.error("cannot prune old events: %s", e)
            return 0

    def housekeeping(self) -> None:
        """Retention for a long run: old events and snapshots go (call it now and then)."""
        self.prune_events()
        if self.snapshots_on:
            self.prune_snapshots()

    def recent(self, limit: int = 100) -> list[dict]:
        """Newest events first, as dicts (for tests, doctor and the status page; any thread)."""
        with self._lock:
            cur = self.db.execute("SELECT * FROM events ORDER BY id DESC LIMIT ?", (limit,))
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]

    def count_by_verdict(self) -> dict[str, int]:
        with self._lock:
            return dict(self.db.execute("SELECT verdict, COUNT(*) FROM events GROUP BY verdict").fetchall())

    # ---- snapshots ------------------------------------------------------------------
    def _snapshot(self, frame: np.ndarray, event: Event) -> str | None:
        import cv2  # lazy: only needed with snapshots on

        name = f"{int(self.clock() * 1000):d}-t{event.track_id}-{event.label}.jpg"
        if self.snap_cfg.content == "face":
            from ..infer.preprocess import crop_with_margin

            # No more than the alarm needs: the face and a margin around it, not the room.
            frame = crop_with_margin(frame, event.box, self.snap_cfg.face_margin)
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[..., ::-1]),
                               [cv2.IMWRITE_JPEG_QUALITY, self.snap_cfg.jpeg_quality])
        if not ok:
            return None
        # Make room first so the byte bound holds after the write too.
        self.prune_snapshots(extra_bytes=len(buf), extra_count=1)
        floor = self.snap_cfg.min_free_bytes
        if floor:
            free = self._disk_usage(self.snap_dir).free
            if free - len(buf) < floor:
                # The event (a few hundred bytes) still goes in; snapshots resume once space is back.
                self.snapshots_skipped += 1
                if self.snapshots_skipped == 1 or self.snapshots_skipped % 100 == 0:
                    log.warning("disk nearly full (%d MB free, events.snapshots.min_free_bytes = %d MB): "
                                "snapshot skipped, events continue (%d skipped so far)", free // 10**6,
                                floor // 10**6, self.snapshots_skipped)
                return None
        path = self.snap_dir / name
        try:
            with open(path, "wb", opener=_private_opener) as f:
                f.write(buf.tobytes())
        except OSError as e:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                self.snapshots_on = False
                log.error("disk full writing snapshot %s: snapshots stopped, events continue", path)
            else:
                log.error("cannot write snapshot %s: %s", path, e.strerror or e)
            return None
        return name

    def _snapshot_files(self) -> list[tuple[float, int, Path]]:
        out = []
        try:
            entries = list(os.scandir(self.snap_dir))
        except OSError:
            return out
        for entry in entries:
            if entry.name.endswith(".jpg") and entry.is_file():
                st = entry.stat()
                out.append((st.st_mtime, st.st_size, Path(entry.path)))
        out.sort(key=lambda x: (x[0], x[2].name))
        return out

    def prune_snapshots(self, extra_bytes: int = 0, extra_count: int = 0) -> int:
        """Delete snapshots, oldest first, until count/age/bytes bounds hold.

        ``extra_*`` reserve room for a snapshot about to be written.

        Returns:
            How many files were deleted.
        """
        files = self._snapshot_files()
        cutoff = self.clock() - self.snap_cfg.max_age_days * 86400
        total = sum(s for _, s, _ in files) + extra_bytes
        count = len(files) + extra_count
        deleted = 0
        for mtime, size, path in files:
            if mtime >= cutoff and count <= self.snap_cfg.max_count and total <= self.snap_cfg.max_bytes:
                break
            try:
                path.unlink()
            except OSError as e:
                log.warning("cannot delete old snapshot %s: %s", path, e.strerror)
                continue
            total -= size
            count -= 1
            deleted += 1
        return deleted

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            db, self.db = getattr(self, "db", None), None
        if db is not None:
            try:
                db.close()
            except sqlite3.Error:
                pass
