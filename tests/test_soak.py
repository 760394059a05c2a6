"""Soak: many frames through the real runner loop; memory, threads and fds stay flat.

* 100,000 frames with stub interpreters at the model seam (fast stubs: the
  detector stub looks at one pixel and returns a cached YOLO head, so the real
  preprocessing, YOLO decode, NMS, crops, classifier preprocessing, tracker,
  rules, SQLite event store and capture thread do the work). People come and go
  all the time, so tracks are created and removed and events are written.
* A shorter run with the shipped int8 models on the built-in demo (looped).

RSS is VmRSS of /proc/self/status after a warm-up and at the end; threads and
open fds are sampled at the same two moments (the capture thread is running at
both). CI runs this marker by default; the stub soak takes about 2-3 minutes.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge import config, service

from doorway_fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, frame_with,
                           write_classifier_manifest, write_detector_manifest)
from faults import open_fds, rss_kb

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[1]
STUB_FRAMES = int(os.environ.get("DOORGUARD_SOAK_FRAMES", "100000"))
STUB_WARMUP = 10_000
RSS_LIMIT_KB = 5 * 1024


class FastDetectorInterpreter(BlobDetectorInterpreter):
    """Blob detector stub with its answer cached by one probe pixel (face there or not)."""

    PROBE = (48, 64)  # centre of the 128 x 96 input, inside every face the soak draws

    def __init__(self):
        super().__init__()
        self._cache: dict[bool, np.ndarray] = {}

    def _compute(self):
        x = self._tensors[0][0]
        px = x[self.PROBE]
        key = bool(px.max() - px.min() > 0.35)
        head = self._cache.get(key)
        if head is None:
            super()._compute()
            head = self._cache[key] = self._tensors[1]
        self._tensors[1] = head


class CyclingSource:
    """Finite source of ``n`` frames: people walk in and out (red, then blue), forever."""

    live = False
    name = "soak"

    def __init__(self, n: int):
        self.n = n
        self.i = 0
        empty = frame_with([])
        self.cycle = ([empty] * 25 + [frame_with([(49, 33, 30, RED)])] * 15
                      + [empty] * 25 + [frame_with([(50, 34, 30, BLUE)])] * 15)

    def open(self):
        pass

    def read(self):
        if self.i >= self.n:
            return None
        img = self.cycle[self.i % len(self.cycle)]
        self.i += 1
        return img

    def close(self):
        pass


class CountingActuators:
    """Counts calls without keeping them (a list of calls would itself grow)."""

    def __init__(self):
        self.alerts = self.compliant_calls = self.faults = 0

    def alert(self):
        self.alerts += 1

    def compliant(self):
        self.compliant_calls += 1

    def set_fault(self, on):
        self.faults += 1

    def close(self):
        pass


class SamplingNotifier:
    """Called once per processed frame (watchdog): samples RSS, threads, fds at chosen frames."""

    def __init__(self, at: dict[int, str]):
        self.at = at
        self.frames = 0
        self.samples: dict[str, tuple[int, int, int, float]] = {}

    def ready(self, status=None):
        pass

    def status(self, text):
        pass

    def stopping(self, status=None):
        pass

    def watchdog(self):
        self.frames += 1
        name = self.at.get(self.frames)
        if name:
            self.samples[name] = (rss_kb(), threading.active_count(), open_fds(), time.monotonic())

    def close(self):
        pass


@pytest.fixture
def quiet_logs():
    """INFO per event over 100k frames is journald's job, not this test's memory."""
    logger = logging.getLogger()
    old = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(old)


def _report(name: str, notifier: SamplingNotifier, frames: int, before: tuple, after: tuple) -> tuple[int, int]:
    (rss0, th0, fd0, t0), (rss1, th1, fd1, t1) = notifier.samples["warm"], notifier.samples["end"]
    growth = rss1 - rss0
    span = [k for k, v in notifier.at.items() if v == "end"][0] - [k for k, v in notifier.at.items() if v == "warm"][0]
    print(f"\nsoak {name}: {frames} frames, {span / max(t1 - t0, 1e-9):.0f} fps after warm-up; "
          f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB (growth {growth / 1024:+.2f} MB after warm-up); "
          f"threads {th0} -> {th1}; fds {fd0} -> {fd1}; outside the run: threads {before[0]} -> {after[0]}, "
          f"fds {before[1]} -> {after[1]}")
    return growth, th1 - th0


def test_soak_100k_frames_stub_models(tmp_path, quiet_logs):
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[rules]\nglobal_cooldown_s = 0.0\n")
    cfg = config.load(p)
    # "end" a few frames before the last: a finite source's capture thread ends with its input.
    notifier = SamplingNotifier({STUB_WARMUP: "warm", STUB_FRAMES - 10: "end"})
    act = CountingActuators()
    before = (threading.active_count(), open_fds())
    r = service.Runner(cfg, source=CyclingSource(STUB_FRAMES), actuators=act, notifier=notifier,
                       detector_interpreter=FastDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0
    gc.collect()
    after = (threading.active_count(), open_fds())
    assert r.frames == STUB_FRAMES and r.stop_reason == "end of source"
    growth, dthreads = _report("stub models", notifier, r.frames, before, after)
    (_, th0, fd0, _), (_, th1, fd1, _) = notifier.samples["warm"], notifier.samples["end"]
    people = STUB_FRAMES // 80 * 2
    assert r.events_by_verdict["violation"] >= people // 2 - 2 and r.events_by_verdict["compliant"] >= people // 2 - 2
    assert act.alerts >= people // 2 - 2
    assert growth <= RSS_LIMIT_KB, f"RSS grew {growth} kB over {STUB_FRAMES - STUB_WARMUP} frames"
    # <=: a thread or fd left by an earlier test in the same session may go away meanwhile.
    assert th1 <= th0 and fd1 <= fd0
    assert after[0] <= before[0] and after[1] <= before[1], f"threads/fds before the run {before}, after {after}"


REAL = [ROOT / "models" / f"{n}{s}" for n in ("yoloface-500k-v2", "mask-classifier") for s in (".json", ".tflite")]


@pytest.mark.skipif(not all(p.is_file() for p in REAL),
                    reason="needs the shipped int8 models in models/ (yoloface-500k-v2, mask-classifier)")
def test_soak_real_models_on_demo(tmp_path, quiet_logs):
    frames, warm = 3000, 500
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{ROOT / "models" / "yoloface-500k-v2.json"}"\n'
                 f'classifier = "{ROOT / "models" / "mask-classifier.json"}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[source]\nspec = \"demo\"\nloop = true\n[rules]\nglobal_cooldown_s = 0.0\n")
    cfg = config.load(p)
    notifier = SamplingNotifier({warm: "warm", frames - 1: "end"})
    before = (threading.active_count(), open_fds())
    r = service.Runner(cfg, max_frames=frames, actuators=CountingActuators(), notifier=notifier)
    assert r.run() == 0
    assert r.frames == frames
    violations = r.events_by_verdict.get("violation", 0)
    # The interpreters keep their model files open (mmap) while the pipeline lives.
    del r
    gc.collect()
    after = (threading.active_count(), open_fds())
    growth, _ = _report("real models (demo, looped)", notifier, frames, before, after)
    (_, th0, fd0, _), (_, th1, fd1, _) = notifier.samples["warm"], notifier.samples["end"]
    assert violations >= 1
    assert growth <= RSS_LIMIT_KB, f"RSS grew {growth} kB over {frames - warm} frames"
    # <=: a thread or fd left by an earlier test in the same session may go away meanwhile.
    assert th1 <= th0 and fd1 <= fd0
    assert after[0] <= before[0] and after[1] <= before[1], f"threads/fds before the run {before}, after {after}"
