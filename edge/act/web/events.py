"""The event store (edge/act/events.py) read for the status page, without touching the loop's connection."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("doorguard.web")


def read_recent_events(db_path: str | os.PathLike, snapshot_dir: str | os.PathLike | None = None,
                       limit: int = 20) -> list[dict]:
    """Newest events of the event store (edge/act/events.py), in the shape the status page reads.

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
