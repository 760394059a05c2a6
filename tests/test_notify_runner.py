"""sd_notify through the real `doorguard run` loop, on a real unix datagram socket.

READY before the first WATCHDOG, WATCHDOG only while frames progress (a hung
camera stops the pings, so systemd's WatchdogSec= would fire), pings again when
frames come back, STOPPING on a real SIGTERM.
"""

from __future__ import annotations

import argparse
import functools
import os
import signal
import threading
import time

from edge import service
from edge.fakes import (RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators, frame_with,
                        write_classifier_manifest, write_detector_manifest)
from edge.notify import SystemdNotifier

from faults import NotifyListener

WATCHDOG_USEC = 100_000  # pings at most every 50 ms


class HangingCamera:
    """A live source that delivers frames, then hangs inside read() until released."""

    live = True
    name = "hanging-camera"

    def __init__(self, frames_before_hang: int) -> None:
        self.n = frames_before_hang
        self.i = 0
        self.hung = threading.Event()
        self.release = threading.Event()
        self.image = frame_with([(20, 30, 30, RED)])

    def open(self) -> None:
        pass

    def read(self):
        if self.i == self.n and not self.release.is_set():
            self.hung.set()
            self.release.wait(10)
        self.i += 1
        time.sleep(0.005)
        return self.image

    def close(self) -> None:
        self.release.set()


def test_ready_watchdog_stall_resume_stopping_on_sigterm(tmp_path, monkeypatch):
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    cfg = tmp_path / "doorguard.toml"
    cfg.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                   f'[events]\nstate_dir = "{tmp_path / "state"}"\n')
    listener = NotifyListener(tmp_path / "notify.sock")
    camera = HangingCamera(frames_before_hang=20)
    notifier = SystemdNotifier(str(tmp_path / "notify.sock"), watchdog_usec=WATCHDOG_USEC)
    monkeypatch.setattr(service, "Runner", functools.partial(
        service.Runner, source=camera, actuators=FakeActuators(), notifier=notifier,
        detector_interpreter=BlobDetectorInterpreter(), classifier_interpreter=ColourClassifierInterpreter()))
    marks: dict[str, float] = {}

    def systemd_and_camera():
        assert camera.hung.wait(20), "camera never reached the hang"
        marks["hung"] = time.monotonic()
        time.sleep(1.0)  # 20 watchdog intervals with no frame
        marks["release"] = time.monotonic()
        camera.release.set()
        time.sleep(0.5)
        marks["sigterm"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=systemd_and_camera, daemon=True)
    helper.start()
    try:
        args = argparse.Namespace(config=str(cfg), source=None, max_frames=None, annotate=None)
        assert service.main(args) == 0  # runs in the main thread, so SIGTERM reaches its handler
        helper.join(5)
        time.sleep(0.2)
    finally:
        listener.close()

    ready, pings, stopping = listener.times("READY=1"), listener.times("WATCHDOG=1"), listener.times("STOPPING=1")
    assert len(ready) == 1 and pings and len(stopping) == 1
    assert ready[0] < pings[0], "READY must come before the first WATCHDOG"
    before = [t for t in pings if t < marks["hung"]]
    during = [t for t in pings if marks["hung"] + 0.2 < t < marks["release"]]
    after = [t for t in pings if marks["release"] < t < marks["sigterm"]]
    assert before, "frames were flowing: pings expected"
    assert during == [], f"{len(during)} WATCHDOG pings while the camera hung"
    assert after, "frames came back: pings expected again"
    # Throttled to half of WATCHDOG_USEC, not one ping per frame (arrival times jitter, so count).
    flowing = (marks["hung"] - ready[0]) + (marks["sigterm"] - marks["release"])
    assert len(before) + len(after) <= flowing / (WATCHDOG_USEC / 2e6) + 2, (len(pings), flowing)
    assert stopping[0] > marks["sigterm"] and stopping[0] == max(t for t, _ in listener.messages)
    text = dict((m.split("\n")[0], m) for _, m in listener.messages)
    assert "STATUS=stopping: SIGTERM" in text["STOPPING=1"]
