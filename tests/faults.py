"""Fault injection at the doorway runner's seams.

* :class:`FaultySource`: a live FrameSource (the FrameSource protocol of
  edge/capture/sources.py) that delivers good frames until a fault is injected for a
  while: the camera disappears (read raises SourceLost, reopening fails), read
  returns None, read raises a driver exception, read hangs, or read returns
  frames of the wrong shape/dtype. Each fault records when it started and when
  the camera came back, so a test can measure recovery.
* :class:`JumpyWallClock`: a wall clock that jumps backwards and forwards (NTP
  stepping the clock of a Pi without an RTC), for out-of-order frame
  timestamps; pass it to ``edge.capture.sources.Capture(wall=...)``.
* :class:`RecordingPin`: a gpiozero MockPWMPin that also keeps absolute
  (monotonic) times of its changes, so a pin history can be lined up with
  fault windows.
* :class:`NotifyListener`: systemd's side of sd_notify, a real AF_UNIX datagram
  socket that keeps every message with its arrival time.
* :func:`run_with_read_only`: a Python script with one directory read-only for it:
  a chmod for an ordinary user; for root (whom permissions do not bind) a
  read-only bind mount in a private mount namespace (``unshare --mount``), the
  read-only SD card itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from dataclasses import dataclass, field

import numpy as np

from edge.errors import SourceError
from edge.capture.sources import SourceLost

#: Every fault kind FaultySource can inject.
KINDS = ("disappear", "none", "raise", "hang", "bad_frame")

#: Invalid frames a broken driver could hand over (shape or dtype wrong, or empty).
BAD_FRAMES = (
    np.zeros((48, 64), np.uint8),                # grey, no channel axis
    np.zeros((48, 64, 4), np.uint8),             # RGBA / XRGB not converted
    np.zeros((48, 64, 3), np.float32),           # float frame
    np.zeros((48, 64, 3), np.uint16),            # 16-bit frame
    np.zeros((0, 0, 3), np.uint8),               # empty
    np.zeros((48 * 64 * 3,), np.uint8),          # flat buffer
    np.zeros((3, 48, 64), np.uint8),             # CHW
    np.zeros((48, 64, 1), np.uint8),             # one channel
)


@dataclass
class Fault:
    """One injected fault: its kind, when it started and when the camera came back."""

    kind: str
    start: float
    until: float
    back_at: float | None = None
    meta: dict = field(default_factory=dict)


class FaultySource:
    """A live camera with injectable faults.

    Args:
        image: the good frame (RGB uint8) it delivers.
        interval: seconds per read (a camera paces its frames).
        clock: monotonic clock.
    """

    live = True

    def __init__(self, image: np.ndarray, interval: float = 0.004, name: str = "faulty-camera",
                 clock=time.monotonic):
        self.image = image
        self.interval = interval
        self.name = name
        self.clock = clock
        self.lock = threading.Lock()
        self.fault: Fault | None = None
        self.history: list[Fault] = []
        self.opened = False
        self.opens = self.closes = self.reads = self.good = 0
        self._bad_i = 0
        self._wake = threading.Event()

    # -- injection -------------------------------------------------------------------------
    def inject(self, kind: str, duration: float) -> Fault:
        """Start a fault now that lasts ``duration`` seconds."""
        if kind not in KINDS:
            raise ValueError(kind)
        now = self.clock()
        f = Fault(kind, now, now + duration)
        with self.lock:
            self.fault = f
            self.history.append(f)
        return f

    def _active(self) -> Fault | None:
        with self.lock:
            f = self.fault
            if f is not None and self.clock() >= f.until:
                if f.back_at is None:
                    f.back_at = f.until
                self.fault = None
                return None
            return f

    # -- FrameSource ---------------------------------------------------------------------------
    def open(self) -> None:
        self.opens += 1
        f = self._active()
        if f is not None and f.kind == "disappear":
            raise SourceError(f"{self.name}: no camera found")
        self.opened = True

    def read(self):
        self.reads += 1
        time.sleep(self.interval)
        if not self.opened:
            raise SourceLost(f"{self.name} is not open")
        f = self._active()
        if f is None:
            self.good += 1
            return self.image
        if f.kind == "disappear":
            self.opened = False
            raise SourceLost(f"{self.name} unplugged")
        if f.kind == "none":
            return None
        if f.kind == "raise":
            errors = (RuntimeError("driver: DMA timeout"), OSError(5, "Input/output error"),
                      ValueError("bad buffer"), IndexError("list index out of range"))
            raise errors[self.reads % len(errors)]
        if f.kind == "hang":
            # Blocks inside the driver until the camera comes back.
            self._wake.wait(max(0.0, f.until - self.clock()))
            self._wake.clear()
            self._active()
            self.good += 1
            return self.image
        frame = BAD_FRAMES[self._bad_i % len(BAD_FRAMES)]
        self._bad_i += 1
        return frame

    def close(self) -> None:
        self.closes += 1
        self.opened = False


class JumpyWallClock:
    """time.time() that steps backwards and forwards every ``every`` calls (NTP on a Pi)."""

    def __init__(self, steps=(-3600.0, +7200.0, -86400.0, +86400.0 - 3600.0), every: int = 7):
        self.steps = steps
        self.every = every
        self.calls = 0
        self.offset = 0.0
        self.values: list[float] = []

    def __call__(self) -> float:
        self.calls += 1
        if self.calls % self.every == 0:
            self.offset += self.steps[(self.calls // self.every) % len(self.steps)]
        v = time.time() + self.offset
        self.values.append(v)
        return v


def recording_pin_class():
    """A MockPWMPin subclass keeping ``abs_states``: (monotonic time, state) of every change."""
    from gpiozero.pins.mock import MockPWMPin

    class RecordingPin(MockPWMPin):
        def __init__(self, *a, **kw):
            self.abs_states = []
            super().__init__(*a, **kw)

        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed:
                self.abs_states.append((time.monotonic(), value))
            return changed

    return RecordingPin


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd; (arrival time, message) pairs."""

    def __init__(self, path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notify-listener", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, OSError):
                continue
            self.messages.append((time.monotonic(), data.decode()))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def times(self, key: str) -> list[float]:
        return [t for t, m in list(self.messages) if key in m.split("\n")]


def open_fds() -> int:
    """Open file descriptors of this process."""
    import os

    return len(os.listdir("/proc/self/fd"))


def rss_kb() -> int:
    """Resident set size of this process in kB (VmRSS of /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def run_with_read_only(directory: Path, script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c script args`` with ``directory`` read-only for it; returns the finished process.

    Not root: the directory is chmod 0500 for the run (and given back 0700). Root: the
    directory is bind-mounted read-only in a private mount namespace, so writes fail with
    EROFS as on a read-only SD card (root ignores permissions, not a read-only mount).
    """
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-c", script, *args]
    if os.geteuid() != 0:
        directory.chmod(0o500)
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
        finally:
            directory.chmod(0o700)
    probe = ["unshare", "--mount", "--propagation", "private", "true"]
    if shutil.which("unshare") is None or subprocess.run(probe, capture_output=True, timeout=30).returncode:
        import pytest

        # e.g. inside an emulated arm64 chroot: no mount namespaces there.
        pytest.skip("as root this needs `unshare --mount` (util-linux, CAP_SYS_ADMIN) for a read-only mount")
    d = str(directory)
    shell = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
    return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell, "sh", d, *cmd],
                          capture_output=True, text=True, timeout=timeout, cwd=root, env=env)
