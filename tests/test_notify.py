"""sd_notify client against a real AF_UNIX datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from edge.notify import SystemdNotifier


@pytest.fixture
def listener(tmp_path, monkeypatch):
    """A bound datagram socket in tmp_path standing in for systemd; NOTIFY_SOCKET points at it."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def recv_all(sock: socket.socket) -> list[str]:
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
        sock.settimeout(2)
    return out


class Clock:
    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def test_ready_status_stopping(listener):
    n = SystemdNotifier()
    assert n.enabled
    assert n.ready("2 models loaded, camera 30 fps")
    assert listener.recv(4096) == b"READY=1\nSTATUS=2 models loaded, camera 30 fps"
    assert n.status("12.5 fps\nlast event: no_mask")  # a newline would start a new assignment
    assert listener.recv(4096) == b"STATUS=12.5 fps last event: no_mask"
    assert n.stopping()
    assert listener.recv(4096) == b"STOPPING=1"
    n.close()
    n.close()


def test_abstract_socket(monkeypatch):
    name = f"doorguard-test-{os.getpid()}-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(2)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        with SystemdNotifier() as n:
            assert n.ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_throttled_to_half_the_interval(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")  # WatchdogSec=2 -> ping at most every 1 s
    clock = Clock()
    n = SystemdNotifier(clock=clock)
    assert n.watchdog_interval == pytest.approx(1.0)
    sent = []
    for _ in range(30):  # 30 frames at 10 fps = 3 s of frames
        sent.append(n.watchdog())
        clock.t += 0.1
    assert recv_all(listener) == ["WATCHDOG=1"] * 3
    assert sent.count(True) == 3


def test_watchdog_stops_when_frames_stop(listener, monkeypatch):
    """The runner pings per processed frame: a stalled source means no pings at all."""
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    clock = Clock()
    n = SystemdNotifier(clock=clock)
    for _ in range(10):  # frames flowing for 1 s
        n.watchdog()
        clock.t += 0.1
    assert len(recv_all(listener)) == 2
    clock.t += 30  # the source hangs: no frames, so the runner never calls watchdog()
    assert recv_all(listener) == []
    n.watchdog()  # frames resume -> ping at once
    assert recv_all(listener) == ["WATCHDOG=1"]


def test_watchdog_for_another_pid_is_ignored(listener, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    n = SystemdNotifier()
    assert n.watchdog_interval is None
    assert not n.watchdog()
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SystemdNotifier().watchdog()


def test_no_watchdog_configured(listener):
    n = SystemdNotifier()
    assert not n.watchdog()
    assert recv_all(listener) == []


def test_disabled_without_notify_socket(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    n = SystemdNotifier()
    assert not n.enabled
    assert not n.ready() and not n.status("x") and not n.watchdog() and not n.stopping()


def test_explicit_socket_path_and_gone_listener(tmp_path, caplog):
    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    n = SystemdNotifier(str(path), watchdog_usec=0)
    assert n.ready()
    sock.close()
    path.unlink()
    # systemd gone: no exception, one warning
    assert not n.status("a")
    assert not n.status("b")
    assert sum("sd_notify" in r.message for r in caplog.records) == 1
