"""No lost events: kill -9 while writing, disk full, read-only database.

* A subprocess writes events through edge/act/events.py's EventStore as fast as it
  can and prints each row id after ``add`` returned (the commit is done: the
  event is acknowledged). The parent kills it with SIGKILL at a random moment,
  many times over the same database; every acknowledged id must be in the
  store afterwards, and the store must open cleanly (integrity_check ok).
  SIGKILL loses nothing that was committed in WAL mode whatever the
  ``synchronous`` setting (the WAL frames are in the OS page cache); power loss
  is what ``synchronous=FULL`` guards against, see edge/act/events.py.
* Disk full at the snapshot-write seam (ENOSPC): snapshots stop, events keep
  being recorded, the loop keeps alerting. A database that hits "disk full" or
  turns read-only: the failure is reported (log + write_errors) and the loop
  keeps alerting.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from edge import config, service
from edge.config import EventsConfig
from edge.act.events import EventStore
from edge.fakes import (RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators, FakeNotifier,
                        ListSource, frame_with, write_classifier_manifest, write_detector_manifest)
from edge.types import Box, Event

import faults

ROOT = Path(__file__).resolve().parents[1]
KILLS = 30

WRITER = textwrap.dedent("""
    import sys
    import time
    from edge.config import EventsConfig
    from edge.act.events import EventStore
    from edge.types import Box, Event

    store = EventStore(sys.argv[1], EventsConfig())
    print("open", flush=True)
    i = 0
    while True:
        i += 1
        ev = Event(float(i), i, "violation", "no_mask", 0.9, Box(1, 2, 3, 4), True)
        row = store.add(ev, wall_time=time.time())
        if row is None:
            print("failed", flush=True)
        else:
            # Printed only after add() returned: the transaction is committed.
            sys.stdout.write(f"{row}\\n")
            sys.stdout.flush()
""")


def _read_acked(proc: subprocess.Popen, stop_after: float) -> tuple[list[int], bool]:
    """Row ids the writer acknowledged until ``stop_after`` seconds from now (complete lines only)."""
    acked: list[int] = []
    opened = False
    buf = b""
    deadline = time.monotonic() + stop_after
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.002)
            continue
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if line == b"open":
                opened = True
            elif line.isdigit():
                acked.append(int(line))
    return acked, opened


def test_kill_9_while_writing_keeps_every_acknowledged_event(tmp_path):
    state = tmp_path / "state"
    rng = random.Random(9)
    acked_all: list[int] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for it in range(KILLS):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(state)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=ROOT, env=env)
        try:
            # Until the store is open, then a random time into the writing.
            acked: list[int] = []
            opened = False
            t_open = time.monotonic() + 15
            while not opened and time.monotonic() < t_open:
                a, opened = _read_acked(proc, 0.05)
                acked += a
            assert opened, f"iteration {it}: the writer did not open the store: {proc.stderr.read()!r}"
            # At least one acknowledged write (a loaded machine may take longer than the random
            # wait below for the first), then a random time further into the writing.
            t_first = time.monotonic() + 15
            while not acked and time.monotonic() < t_first:
                a, _ = _read_acked(proc, 0.05)
                acked += a
            a, _ = _read_acked(proc, rng.uniform(0.05, 0.25))
            acked += a
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        assert acked, f"iteration {it}: nothing acknowledged"
        acked_all += acked
        # The store opens cleanly after every kill and holds every acknowledged row.
        store = EventStore(state, EventsConfig())
        try:
            ids = {r for (r,) in store.db.execute("SELECT id FROM events")}
            assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        finally:
            store.close()
        missing = sorted(set(acked_all) - ids)
        assert missing == [], f"iteration {it}: {len(missing)} acknowledged events lost: {missing[:10]}"
    db = sqlite3.connect(state / "events.sqlite3")
    total = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    db.close()
    print(f"\nevents: {KILLS} kill -9, {len(acked_all)} acknowledged, {len(acked_all)} kept "
          f"({total} rows in the store: committed rows whose id was not printed before the kill are extra)")


def test_synchronous_setting_is_deliberate(tmp_path):
    """WAL + synchronous=FULL: a commit is fsynced before add() returns (power cuts on a Pi)."""
    store = EventStore(tmp_path, EventsConfig())
    try:
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()


# ---- disk full / read-only through the runner's loop ---------------------------------------

def _cfg(tmp_path, snapshots: bool) -> config.Config:
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 f"[events.snapshots]\nenabled = {'true' if snapshots else 'false'}\n"
                 "[rules]\nglobal_cooldown_s = 0.0\n")
    return config.load(p)


def _people(n: int) -> list:
    """n unmasked faces, one after the other (each a new track: one alert each)."""
    frames = []
    for k in range(n):
        frames += [frame_with([])] * 10 + [frame_with([(20 + 3 * (k % 10), 30, 30, RED)])] * 8
    return frames + [frame_with([])] * 3


class _StoreSpy:
    """Wraps EventStore so the test can reach the instance the runner built."""

    instances: list[EventStore] = []

    def __init__(self, monkeypatch, after_open=None):
        from edge.act import events

        real = events.EventStore
        spy = self

        class Spied(real):
            def __init__(self, *a, **kw):
                super().__init__(*a, **kw)
                spy.instances.append(self)
                if after_open is not None:
                    after_open(self)

        self.instances = []
        monkeypatch.setattr(events, "EventStore", Spied)


def test_disk_full_on_snapshot_stops_snapshots_events_and_alerts_go_on(tmp_path, monkeypatch, caplog):
    from edge.act import events

    caplog.set_level(logging.INFO)
    spy = _StoreSpy(monkeypatch)
    real_open = open
    writes = {"snap": 0}

    def full_disk_open(path, mode="r", *a, **kw):
        # The snapshot-write seam: the 3rd snapshot and every later one hit a full disk.
        if "w" in mode and str(path).endswith(".jpg"):
            writes["snap"] += 1
            if writes["snap"] >= 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr(events, "open", full_disk_open, raising=False)
    act = FakeActuators()
    n = 8
    r = service.Runner(_cfg(tmp_path, snapshots=True), source=ListSource(_people(n)), actuators=act,
                       notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0
    store = spy.instances[0]
    assert act.names().count("alert") == n, "the loop must keep alerting"
    assert not store.snapshots_on, "snapshots must stop on a full disk"
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    rows = db.execute("SELECT snapshot FROM events ORDER BY id").fetchall()
    db.close()
    assert len(rows) == n, "every event recorded"
    assert [s is not None for (s,) in rows] == [True, True] + [False] * (n - 2)
    assert writes["snap"] == 3, "no snapshot attempts after the disk filled"
    snaps = sorted((tmp_path / "state" / "snapshots").glob("*.jpg"))
    assert len(snaps) == 2, "the failed snapshot left no partial file"
    assert "disk full writing snapshot" in caplog.text


@pytest.mark.parametrize("how", ["full", "readonly"])
def test_database_full_or_read_only_is_reported_and_alerts_go_on(tmp_path, monkeypatch, caplog, how):
    """Real SQLite errors: max_page_count reached (SQLITE_FULL) or query_only (SQLITE_READONLY)."""

    def after_open(store):
        if how == "full":
            # Fill the database up to a page limit: the next insert gets SQLITE_FULL.
            pages = store.db.execute("PRAGMA page_count").fetchone()[0]
            store.db.execute(f"PRAGMA max_page_count = {pages + 4}")
            with pytest.raises(sqlite3.OperationalError, match="full"):
                for _ in range(1000):
                    store.db.execute("INSERT INTO events (time, track, verdict, label, score, alerted, source)"
                                     " VALUES (?, 0, 'filler', ?, 0, 0, 'test')", (time.time(), "x" * 300))
                    store.db.commit()
            store.db.rollback()
        else:
            store.db.execute("PRAGMA query_only = ON")

    caplog.set_level(logging.INFO)
    spy = _StoreSpy(monkeypatch, after_open)
    act = FakeActuators()
    n = 5
    r = service.Runner(_cfg(tmp_path, snapshots=False), source=ListSource(_people(n)), actuators=act,
                       notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0
    assert act.names().count("alert") == n, "the loop must keep alerting"
    store = spy.instances[0]
    assert store.write_errors >= 1
    assert "cannot record event" in caplog.text
    assert ("full" if how == "full" else "readonly") in caplog.text


READ_ONLY_SNAPSHOTS = textwrap.dedent("""
    import sys
    import numpy as np
    from edge.config import EventsConfig
    from edge.act.events import EventStore
    from edge.types import Box, Event

    store = EventStore(sys.argv[1], EventsConfig(snapshots={"enabled": True}))
    ev = Event(1.0, 1, "violation", "no_mask", 0.9, Box(1, 2, 30, 40), True)
    row = store.add(ev, np.zeros((48, 64, 3), np.uint8))
    print("row", row, "snapshot", store.recent(1)[0]["snapshot"], "errors", store.write_errors)
    store.close()
""")


def test_read_only_snapshot_folder(tmp_path):
    """The snapshot folder turns read-only (as root too: a read-only bind mount, not a skip):
    the snapshot is lost, the event is not."""
    state = tmp_path / "state"
    EventStore(state, EventsConfig(snapshots={"enabled": True})).close()  # creates snapshots/
    p = faults.run_with_read_only(state / "snapshots", READ_ONLY_SNAPSHOTS, str(state))
    assert p.returncode == 0, p.stderr
    assert "row 1 snapshot None errors 0" in p.stdout, p.stdout
    assert "cannot write snapshot" in p.stdout + p.stderr
    assert ("Read-only file system" if os.geteuid() == 0 else "Permission denied") in p.stdout + p.stderr
    assert list((state / "snapshots").iterdir()) == []


def test_store_reopens_after_kill_mid_run_with_stale_wal(tmp_path):
    """A WAL and shm left behind by a killed run are recovered by the next open (threads too)."""
    state = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(state)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, cwd=ROOT, env=env)
    acked, opened = [], False
    deadline = time.monotonic() + 15
    while len(acked) < 50 and time.monotonic() < deadline:
        a, o = _read_acked(proc, 0.05)
        acked += a
        opened = opened or o
    proc.kill()
    proc.wait(10)
    proc.stdout.close()
    assert (state / "events.sqlite3-wal").exists(), "expected a WAL left behind"
    store = EventStore(state, EventsConfig())
    seen = []
    t = threading.Thread(target=lambda: seen.append(len(store.recent(10_000_000))))
    t.start()
    t.join(5)
    store.close()
    assert seen and seen[0] >= len(acked)


@pytest.mark.parametrize("where", ["prune", "encode"])
def test_any_snapshot_failure_keeps_the_event_and_the_alert(tmp_path, monkeypatch, where):
    """An I/O error while pruning old snapshots (EIO, a file deleted under us) or an encoder
    error: the event is still recorded and the loop still alerts."""
    import cv2

    from edge.act import events

    if where == "prune":
        real_prune = events.EventStore.prune_snapshots

        def broken(self, *a, **kw):
            if kw.get("extra_count"):  # before each snapshot write, not the one at start-up
                raise OSError(errno.EIO, "Input/output error")
            return real_prune(self, *a, **kw)
        monkeypatch.setattr(events.EventStore, "prune_snapshots", broken)
    else:
        def broken(*a, **kw):
            raise cv2.error("imencode: out of memory")
        monkeypatch.setattr(cv2, "imencode", broken)
    spy = _StoreSpy(monkeypatch)
    act = FakeActuators()
    n = 3
    r = service.Runner(_cfg(tmp_path, snapshots=True), source=ListSource(_people(n)), actuators=act,
                       notifier=FakeNotifier(), detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0
    assert act.names().count("alert") == n
    assert spy.instances[0].write_errors == 0
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    assert db.execute("SELECT COUNT(*) FROM events WHERE snapshot IS NULL").fetchone()[0] == n
    db.close()
