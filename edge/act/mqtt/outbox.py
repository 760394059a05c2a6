"""The outbox: events waiting for the broker, in a table beside the event store's ``events``.

One row per event, in publish order (``seq``): ``queued`` until the client takes it, ``sent``
once handed to paho, ``acked`` once the broker's PUBACK arrives. Rows still ``sent`` when a
process ends go out again at the next start (at least once). The table lives in the event
store's SQLite file (WAL), so events and their queue share one file and one backup.

Every method is safe to call from any thread (one lock around the connection). Enqueueing
runs on the frame loop, so that connection never checkpoints the WAL (a checkpoint fsyncs):
the sender thread does, through :meth:`Outbox.checkpoint` on a connection of its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Callable

from ...errors import StateError

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- publish order
    event_id TEXT NOT NULL UNIQUE,           -- the event store's row id (or a uuid): enqueue is idempotent
    payload TEXT NOT NULL,                   -- the JSON published on <prefix>/events
    verdict TEXT,
    created REAL NOT NULL,                   -- unix time the row was queued
    state TEXT NOT NULL DEFAULT 'queued',    -- queued | sent (handed to the client) | acked (PUBACK seen)
    sent_at REAL,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox(state, seq);
CREATE TABLE IF NOT EXISTS outbox_meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

#: Acknowledged rows are kept this long (they feed "violations today" after a
#: restart), then deleted; the event store keeps the events themselves.
ACKED_KEEP_S = 2 * 86400.0

#: Past outbox_cap the sender deletes the oldest unsent rows this many per transaction.
TRIM_BATCH = 200


class Outbox:
    """The ``outbox`` table of one SQLite file.

    Args:
        path: the event store's database file (created, with its folder, when absent).
        clock: wall clock (queue, send and acknowledgement times; pruning).
    """

    def __init__(self, path: str | Path, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        #: Rows not acknowledged yet (queued or sent).
        self.pending = 0

    @property
    def is_open(self) -> bool:
        """True between :meth:`open` and :meth:`close`."""
        return self._db is not None

    def open(self) -> int:
        """Create the table if needed and take up what a previous process left.

        Returns:
            Rows the previous process had handed to its client without a PUBACK: queued again.

        Raises:
            StateError: the database cannot be created or opened.
        """
        from ...atomic import private_file

        try:
            # The state directory exists when the event store is on; with [events]
            # off the outbox still needs it.
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private_file(self.path)  # 0600, like the event store's (the same file)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL: a commit survives a process crash (kill -9); only a
            # power cut can lose the last transactions, and never corrupts the file.
            db.execute("PRAGMA synchronous=NORMAL")
            # A WAL checkpoint fsyncs the database (tens of ms, more on an SD card);
            # enqueue runs on the frame loop, so this connection never checkpoints:
            # the sender thread does, on its own connection (checkpoint()).
            db.execute("PRAGMA wal_autocheckpoint=0")
            db.executescript(OUTBOX_SCHEMA)
            # Rows handed to the previous process's client may or may not have
            # reached the broker: send them again (at least once).
            again = db.execute("UPDATE outbox SET state='queued', sent_at=NULL WHERE state='sent'").rowcount
            self.pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state!='acked'").fetchone()[0]
            db.commit()
        except (sqlite3.Error, OSError) as e:
            raise StateError(f"MQTT outbox in {self.path} is unusable: {e}") from e
        self._db = db
        return again

    def violations_since(self, t: float) -> int:
        """Rows with verdict ``violation`` queued at unix time ``t`` or later (acknowledged ones too); after open().

        Raises:
            StateError: the table cannot be read.
        """
        try:
            with self._lock:
                return self._db.execute("SELECT COUNT(*) FROM outbox WHERE verdict='violation' AND created >= ?",
                                        (t,)).fetchone()[0]
        except sqlite3.Error as e:
            raise StateError(f"MQTT outbox in {self.path} is unusable: {e}") from e

    def add(self, key: str, payload: str, verdict: str | None, created: float) -> bool:
        """Queue one message; one small insert, on the caller's thread.

        Args:
            key: the event's key (its store id, or a uuid): a key queued before is not queued again.
            payload: the JSON published on ``<prefix>/events``.
            verdict: the event's verdict (``violations_since`` counts them).
            created: unix time it was queued.

        Returns:
            True when queued; False when the key was queued before or the outbox is closed.

        Raises:
            sqlite3.Error: the insert failed.
        """
        with self._lock:
            db = self._db
            if db is None:
                return False
            cur = db.execute("INSERT OR IGNORE INTO outbox (event_id, payload, verdict, created) VALUES (?,?,?,?)",
                             (key, payload, verdict, created))
            if cur.rowcount == 0:
                return False
            self.pending += 1
            db.commit()
        return True

    def drop_oldest(self, cap: int, batch: int = TRIM_BATCH) -> int:
        """Delete the oldest never-sent rows past ``cap`` pending, at most ``batch`` in one transaction.

        Rows already handed to the client stay: they go out, then count down. The number
        dropped is added to the ``dropped`` total kept in ``outbox_meta`` (across restarts).

        Returns:
            Rows deleted (0: nothing over the cap, or only rows in flight over it).
        """
        with self._lock:
            db = self._db
            excess = self.pending - cap
            if db is None or excess <= 0:
                return 0
            n = db.execute("DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE state='queued'"
                           " ORDER BY seq LIMIT ?)", (min(excess, batch),)).rowcount
            if n:
                self.pending -= n
                db.execute("INSERT INTO outbox_meta (key, value) VALUES ('dropped', ?) ON CONFLICT(key)"
                           " DO UPDATE SET value = value + excluded.value", (n,))
            db.commit()
        return n

    def prune_acked(self) -> None:
        """Delete acknowledged rows older than :data:`ACKED_KEEP_S`."""
        with self._lock:
            if self._db is not None:
                self._db.execute("DELETE FROM outbox WHERE state='acked' AND acked_at < ?",
                                 (self._clock() - ACKED_KEEP_S,))
                self._db.commit()

    def queued(self, limit: int) -> list[tuple[int, str]]:
        """The oldest ``limit`` queued rows as ``(seq, payload)``, in order; [] when closed."""
        with self._lock:
            if self._db is None:
                return []
            return self._db.execute("SELECT seq, payload FROM outbox WHERE state='queued' ORDER BY seq LIMIT ?",
                                    (limit,)).fetchall()

    def mark_sent(self, sent: list[tuple[float, int]]) -> None:
        """Rows handed to the client: ``(unix time, seq)`` each."""
        with self._lock:
            if self._db is not None:
                self._db.executemany("UPDATE outbox SET state='sent', sent_at=? WHERE seq=?", sent)
                self._db.commit()

    def mark_acked(self, seqs: list[int]) -> bool:
        """Rows whose PUBACK arrived; they no longer count as pending.

        Returns:
            False when the outbox is closed (nothing recorded).
        """
        now = self._clock()
        with self._lock:
            if self._db is None:
                return False
            self._db.executemany("UPDATE outbox SET state='acked', acked_at=? WHERE seq=? AND state='sent'",
                                 [(now, s) for s in seqs])
            self._db.commit()
            self.pending = max(0, self.pending - len(seqs))
        return True

    def meta(self, key: str) -> int:
        """A counter kept across restarts (``dropped``); 0 when unset or closed."""
        with self._lock:
            if self._db is None:
                return 0
            row = self._db.execute("SELECT value FROM outbox_meta WHERE key=?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def checkpoint(self) -> None:
        """Copy what it can of the WAL into the database file (the sender thread's job).

        PASSIVE: it neither waits for nor blocks writers, and keeps the WAL short so that no
        commit on the frame loop has to checkpoint. Uses a connection of the calling thread,
        opened on first use; :meth:`close_checkpoints` (same thread) closes it.
        """
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, timeout=5.0)
        self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close_checkpoints(self) -> None:
        """Close :meth:`checkpoint`'s connection (from the thread that checkpointed)."""
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
