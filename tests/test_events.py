"""Event store: WAL SQLite, model hashes, snapshot bounds, disk full, unwritable dir."""

from __future__ import annotations

import errno
import os
import sqlite3
import stat

import numpy as np
import pytest

import faults

from edge.settings.events import EventsConfig, SnapshotConfig
from edge.errors import StateError
from edge.act.events import EventStore, prepare_state_dir
from edge.types import Box, Event, Verdict


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
    # In a subprocess with the folder read-only: chmod for a user, a read-only mount for root.
    script = ("import sys\nfrom edge.config import EventsConfig\nfrom edge.errors import StateError\n"
              "from edge.act.events import EventStore\ntry:\n    EventStore(sys.argv[1], EventsConfig())\n"
              "except StateError as e:\n    print('StateError', e)\n")
    p = faults.run_with_read_only(ro, script, str(ro / "sub"))
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("StateError state directory") and "not writable" in p.stdout, p.stdout
    assert ("Read-only file system" if os.geteuid() == 0 else "Permission denied") in p.stdout


def test_housekeeping_prunes_during_a_long_run(tmp_path):
    now = [0.0]
    s = EventStore(tmp_path, EventsConfig(keep_days=1), clock=lambda: now[0])
    s.add(ev(1))
    now[0] = 0.5 * 86400
    s.add(ev(2))
    now[0] = 1.2 * 86400
    s.housekeeping()
    assert [r["track"] for r in s.recent()] == [2]


# ---- privacy and a full disk (issue 17) -----------------------------------------------------------

def _frame():
    return np.zeros((48, 64, 3), np.uint8)


def test_only_alerting_frames_are_snapshotted(tmp_path):
    """Compliant (masked) faces were snapshotted too, although snapshots are of alerting frames."""
    s = EventStore(tmp_path, EventsConfig(snapshots={"enabled": True}))
    compliant = Event(1.0, 1, Verdict.COMPLIANT, "mask", 0.9, Box(1, 2, 30, 40), True)
    held_back = Event(2.0, 2, Verdict.VIOLATION, "no_mask", 0.9, Box(1, 2, 30, 40), False)
    alert = Event(3.0, 3, Verdict.VIOLATION, "no_mask", 0.9, Box(1, 2, 30, 40), True)
    for e in (compliant, held_back, alert):
        assert s.add(e, _frame()) is not None
    rows = {r["track"]: r["snapshot"] for r in s.recent()}
    s.close()
    assert rows[1] is None and rows[2] is None and rows[3] is not None
    assert [p.name for p in (tmp_path / "snapshots").iterdir()] == [rows[3]]


def test_state_files_are_private_whatever_the_umask(tmp_path):
    """Outside systemd the state folder, database and snapshots were created 0755/0644."""
    old = os.umask(0o022)
    try:
        state = tmp_path / "state"
        s = EventStore(state, EventsConfig(snapshots={"enabled": True}))
        s.add(ev(1), _frame())
        s.close()
    finally:
        os.umask(old)

    def mode(p):
        return stat.S_IMODE(os.stat(p).st_mode)

    assert mode(state) == 0o700 and mode(state / "snapshots") == 0o700
    files = [state / "events.sqlite3", *(state / "snapshots").iterdir()]
    files += [p for p in state.glob("events.sqlite3-*")]
    assert len(files) >= 2 and {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}
    # A database an older doorguard left world-readable is made private on open.
    os.chmod(state / "events.sqlite3", 0o644)
    EventStore(state, EventsConfig()).close()
    assert mode(state / "events.sqlite3") == 0o600
    # An existing state folder keeps its mode (systemd's StateDirectoryMode=0750).
    other = tmp_path / "other"
    other.mkdir(mode=0o750)
    os.chmod(other, 0o750)
    EventStore(other, EventsConfig()).close()
    assert mode(other) == 0o750


class FillingDisk:
    """shutil.disk_usage of a disk that loses what the snapshots write (and gets it back on delete)."""

    def __init__(self, snap_dir, free: int):
        self.snap_dir, self.start = snap_dir, free

    def __call__(self, path):
        import collections

        used = sum(p.stat().st_size for p in self.snap_dir.glob("*.jpg")) if self.snap_dir.is_dir() else 0
        return collections.namedtuple("usage", "total used free")(10**9, used, self.start - used)


def test_snapshots_keep_a_free_space_floor_so_events_keep_going(tmp_path, caplog):
    """Snapshots filled the disk and event writes failed 46 ms later: below min_free_bytes no
    snapshot is written, every event still is, and snapshots resume once space is back."""
    import cv2

    frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)  # noise: big JPEGs
    size = len(cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1])
    floor = 1_000_000
    disk = FillingDisk(tmp_path / "snapshots", free=floor + 3 * size + size // 2)  # room for 3
    s = EventStore(tmp_path, EventsConfig(snapshots={"enabled": True, "min_free_bytes": floor,
                                                      "max_bytes": 10**9, "content": "frame"}),
                   disk_usage=disk)
    ids = [s.add(Event(float(i), i, Verdict.VIOLATION, "no_mask", 0.9, Box(1, 2, 30, 40), True), frame)
           for i in range(8)]
    assert None not in ids, "every event recorded"
    snaps = [r["snapshot"] for r in reversed(s.recent())]
    assert [x is not None for x in snaps] == [True] * 3 + [False] * 5
    assert s.snapshots_on and s.snapshots_skipped == 5
    assert disk(tmp_path).free >= floor
    assert "disk nearly full" in caplog.text and "events continue" in caplog.text
    for p in (tmp_path / "snapshots").glob("*.jpg"):  # space comes back (the user cleaned up)
        p.unlink()
    assert s.add(Event(9.0, 9, Verdict.VIOLATION, "no_mask", 0.9, Box(1, 2, 30, 40), True), frame) is not None
    assert s.recent(1)[0]["snapshot"] is not None
    s.close()
