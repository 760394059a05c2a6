"""Event store: WAL SQLite, model hashes, snapshot bounds, disk full, unwritable dir."""

from __future__ import annotations

import errno
import os
import sqlite3

import numpy as np
import pytest

from edge.config import EventsConfig, SnapshotConfig
from edge.errors import StateError
from edge.events import EventStore, prepare_state_dir
from edge.types import Box, Event


def ev(i=1, verdict="violation", label="no_mask", alerted=True):
    return Event(0.0, i, verdict, label, 0.87, Box(1, 2, 30, 40), alerted)


def frame():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)


def test_events_recorded_with_hashes_in_wal(tmp_path):
    s = EventStore(tmp_path, EventsConfig(), {"detector": "d" * 64, "classifier": "c" * 64},
                   clock=lambda: 1000.0)
    s.add(ev(1))
    s.add(ev(2, "compliant", "mask"))
    rows = s.recent()
    assert [r["label"] for r in rows] == ["mask", "no_mask"]
    r = rows[1]
    assert (r["time"], r["track"], r["verdict"], r["score"]) == (1000.0, 1, "violation", 0.87)
    assert (r["x1"], r["y1"], r["x2"], r["y2"]) == (1, 2, 30, 40)
    assert r["detector_sha256"] == "d" * 64 and r["classifier_sha256"] == "c" * 64
    assert r["snapshot"] is None  # snapshots off by default
    assert s.count_by_verdict() == {"violation": 1, "compliant": 1}
    mode = sqlite3.connect(tmp_path / "events.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    s.close()
    s.close()  # idempotent
    assert not (tmp_path / "snapshots").exists()


def test_old_events_pruned_at_start(tmp_path):
    s = EventStore(tmp_path, EventsConfig(keep_days=1), clock=lambda: 0.0)
    s.add(ev())
    s.close()
    s = EventStore(tmp_path, EventsConfig(keep_days=1), clock=lambda: 2 * 86400.0)
    assert s.recent() == []


def snapcfg(**kw):
    return EventsConfig(snapshots=SnapshotConfig(enabled=True, **kw))


def test_snapshots_bounded_by_count_oldest_first(tmp_path):
    t = [1000.0]
    s = EventStore(tmp_path, snapcfg(max_count=3), clock=lambda: t[0])
    names = []
    for i in range(5):
        t[0] += 1
        s.add(ev(i), frame())
        names.append(s.recent(1)[0]["snapshot"])
        os.utime(tmp_path / "snapshots" / names[-1], (t[0], t[0]))
    left = sorted(p.name for p in (tmp_path / "snapshots").iterdir())
    assert left == sorted(names[2:])


def test_snapshots_only_for_alerts(tmp_path):
    s = EventStore(tmp_path, snapcfg())
    s.add(ev(alerted=False), frame())
    assert s.recent(1)[0]["snapshot"] is None


def test_snapshots_bounded_by_bytes_and_age(tmp_path):
    now = [10 * 86400.0]
    s = EventStore(tmp_path, snapcfg(max_bytes=10_000, max_age_days=1), clock=lambda: now[0])
    d = tmp_path / "snapshots"
    old = d / "old.jpg"
    old.write_bytes(b"x" * 100)
    os.utime(old, (now[0] - 2 * 86400, now[0] - 2 * 86400))
    big = d / "big.jpg"
    big.write_bytes(b"x" * 9_000)
    os.utime(big, (now[0] - 10, now[0] - 10))
    assert s.prune_snapshots() == 1 and not old.exists() and big.exists()
    s.add(ev(), frame())  # a new snapshot does not fit next to big.jpg: big goes
    assert not big.exists()
    total = sum(p.stat().st_size for p in d.iterdir())
    assert 0 < total <= 10_000


def test_disk_full_stops_snapshots_keeps_events(tmp_path, monkeypatch, caplog):
    s = EventStore(tmp_path, snapcfg())
    import builtins

    real_open = builtins.open

    def full_open(path, mode="r", *a, **k):
        if str(path).endswith(".jpg") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, mode, *a, **k)

    monkeypatch.setattr(builtins, "open", full_open)
    s.add(ev(1), frame())
    s.add(ev(2), frame())
    assert s.snapshots_on is False
    assert [r["snapshot"] for r in s.recent()] == [None, None]
    assert len(s.recent()) == 2
    assert "snapshots stopped" in caplog.text
    assert list((tmp_path / "snapshots").iterdir()) == []


def test_event_write_failure_is_logged_not_raised(tmp_path, caplog):
    s = EventStore(tmp_path, EventsConfig())
    s.db.execute("DROP TABLE events")
    assert s.add(ev()) is None
    assert s.write_errors == 1 and "cannot record event" in caplog.text


def test_unwritable_state_dir(tmp_path):
    f = tmp_path / "file"
    f.write_text("not a dir")
    with pytest.raises(StateError, match="not writable"):
        prepare_state_dir(f / "state")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # running as root: permissions do not bind
            pytest.skip("root ignores directory permissions")
        with pytest.raises(StateError):
            EventStore(ro / "sub", EventsConfig())
    finally:
        ro.chmod(0o700)


def test_housekeeping_prunes_during_a_long_run(tmp_path):
    now = [0.0]
    s = EventStore(tmp_path, EventsConfig(keep_days=1), clock=lambda: now[0])
    s.add(ev(1))
    now[0] = 0.5 * 86400
    s.add(ev(2))
    now[0] = 1.2 * 86400
    s.housekeeping()
    assert [r["track"] for r in s.recent()] == [2]
