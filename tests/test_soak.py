"""Soak: many frames through the real runner loop; memory, threads and fds stay flat.

* 100,000 frames with stub interpreters at the model seam (fast stubs: the
  detector stub looks at one pixel and returns a cached YOLO head, so the real
  preprocessing, YOLO decode, NMS, crops, classifier preprocessing, tracker,
  rules, SQLite event store and capture thread do the work). People come and go
  all the time, so tracks are created and removed and events are written.
* A shorter run with the shipped int8 models on the built-in demo (looped).

Each soak runs in a fresh Python process (``python -c``, this module's ``soak_*``
functions), so what earlier tests in the session loaded, left running or fragmented
cannot show up as the runner's growth: in one CI run in a full `make test` session
under load the stub soak's RSS grew 19 MB while the same test alone grew 0.5 MB
(issue 16). RSS is VmRSS of /proc/self/status after a warm-up and at the end;
threads and open fds are sampled at the same two moments (the capture thread is
running at both). That the measurement still catches a leak is checked too: a
notifier that keeps 1 kB per frame must fail the same limit. CI runs this marker
by default; the three soaks take about 2-3 minutes.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edge import config, service
from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, frame_with,
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
        self._cache: dict[bool, list[np.ndarray]] = {}

    def compute(self, x):
        px = x[0][self.PROBE]
        key = bool(px.max() - px.min() > 0.35)
        heads = self._cache.get(key)
        if heads is None:
            heads = self._cache[key] = super().compute(x)
        return heads


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
    """Called once per processed frame (watchdog): samples RSS, threads, fds at chosen frames.

    ``leak_bytes``: keep that many bytes per frame (the leak the measurement must catch).
    """

    def __init__(self, at: dict[int, str], leak_bytes: int = 0):
        self.at = at
        self.frames = 0
        self.samples: dict[str, tuple[int, int, int, float]] = {}
        self.leak_bytes = leak_bytes
        self.kept: list[bytes] = []

    def ready(self, status=None):
        pass

    def status(self, text):
        pass

    def stopping(self, status=None):
        pass

    def watchdog(self):
        self.frames += 1
        if self.leak_bytes:
            self.kept.append(bytes(self.leak_bytes))
        name = self.at.get(self.frames)
        if name:
            self.samples[name] = (rss_kb(), threading.active_count(), open_fds(), time.monotonic())

    def close(self):
        pass


def _quiet_logs() -> None:
    """INFO per event over 100k frames is journald's job, not this test's memory."""
    logging.getLogger().setLevel(logging.WARNING)


def _result(name: str, r, notifier: SamplingNotifier, before: tuple, after: tuple) -> dict:
    (rss0, th0, fd0, t0), (rss1, th1, fd1, t1) = notifier.samples["warm"], notifier.samples["end"]
    span = [k for k, v in notifier.at.items() if v == "end"][0] - [k for k, v in notifier.at.items() if v == "warm"][0]
    print(f"soak {name}: {r.frames} frames, {span / max(t1 - t0, 1e-9):.0f} fps after warm-up; "
          f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB (growth {(rss1 - rss0) / 1024:+.2f} MB after warm-up); "
          f"threads {th0} -> {th1}; fds {fd0} -> {fd1}; outside the run: threads {before[0]} -> {after[0]}, "
          f"fds {before[1]} -> {after[1]}", file=sys.stderr)
    return {"frames": r.frames, "stop_reason": r.stop_reason, "events": dict(r.events_by_verdict),
            "span": span, "growth_kb": rss1 - rss0, "threads": [th0, th1], "fds": [fd0, fd1],
            "outside": {"before": list(before), "after": list(after)}}


def soak_stub(tmp: str, frames: int = STUB_FRAMES, warm: int = STUB_WARMUP, leak_bytes: int = 0) -> dict:
    """The stub-model soak (in a fresh process: see in_fresh_process)."""
    _quiet_logs()
    tmp_path = Path(tmp)
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[rules]\nglobal_cooldown_s = 0.0\n")
    cfg = config.load(p)
    # "end" a few frames before the last: a finite source's capture thread ends with its input.
    notifier = SamplingNotifier({warm: "warm", frames - 10: "end"}, leak_bytes=leak_bytes)
    act = CountingActuators()
    before = (threading.active_count(), open_fds())
    r = service.Runner(cfg, source=CyclingSource(frames), actuators=act, notifier=notifier,
                       detector_interpreter=FastDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    rc = r.run()
    gc.collect()
    after = (threading.active_count(), open_fds())
    return {**_result("stub models" + (f" (leaking {leak_bytes} B/frame)" if leak_bytes else ""),
                      r, notifier, before, after), "rc": rc, "alerts": act.alerts}


REAL = [ROOT / "models" / f"{n}{s}" for n in ("yoloface-500k-v2", "mask-classifier") for s in (".json", ".tflite")]


def soak_real(tmp: str, frames: int = 3000, warm: int = 500) -> dict:
    """The shipped int8 models on the demo clip, looped (in a fresh process)."""
    _quiet_logs()
    tmp_path = Path(tmp)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{ROOT / "models" / "yoloface-500k-v2.json"}"\n'
                 f'classifier = "{ROOT / "models" / "mask-classifier.json"}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[source]\nspec = \"demo\"\nloop = true\n[rules]\nglobal_cooldown_s = 0.0\n")
    cfg = config.load(p)
    notifier = SamplingNotifier({warm: "warm", frames - 1: "end"})
    before = (threading.active_count(), open_fds())
    r = service.Runner(cfg, max_frames=frames, actuators=CountingActuators(), notifier=notifier)
    rc = r.run()
    # The interpreters keep their model files open (mmap) while the pipeline lives.
    summary = SimpleNamespace(frames=r.frames, stop_reason=r.stop_reason, events_by_verdict=r.events_by_verdict)
    del r
    gc.collect()
    after = (threading.active_count(), open_fds())
    return {**_result("real models (demo, looped)", summary, notifier, before, after), "rc": rc}


def in_fresh_process(func: str, tmp_path: Path, **kw) -> dict:
    """Run ``func`` of this module in a new interpreter; its result dict comes back as JSON."""
    code = ("import json, sys\n"
            f"sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(ROOT)!r}]\n"
            "import test_soak\n"
            f"res = test_soak.{func}({str(tmp_path)!r}, **json.loads(sys.argv[1]))\n"
            "print('SOAK-RESULT ' + json.dumps(res))\n")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(kw)], capture_output=True, text=True,
                       timeout=1800, cwd=ROOT)
    sys.stderr.write(r.stderr[-2000:])
    lines = [line for line in r.stdout.splitlines() if line.startswith("SOAK-RESULT ")]
    assert r.returncode == 0 and lines, f"soak process failed (rc {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return json.loads(lines[-1][len("SOAK-RESULT "):])


def check_flat(res: dict, frames_measured: int) -> None:
    """RSS, threads and fds flat after the warm-up; the run left nothing behind."""
    assert res["growth_kb"] <= RSS_LIMIT_KB, f"RSS grew {res['growth_kb']} kB over {frames_measured} frames"
    (th0, th1), (fd0, fd1) = res["threads"], res["fds"]
    assert th1 <= th0 and fd1 <= fd0, res
    before, after = res["outside"]["before"], res["outside"]["after"]
    assert after[0] <= before[0] and after[1] <= before[1], f"threads/fds before the run {before}, after {after}"


def test_soak_100k_frames_stub_models(tmp_path):
    res = in_fresh_process("soak_stub", tmp_path)
    assert res["rc"] == 0 and res["frames"] == STUB_FRAMES and res["stop_reason"] == "end of source", res
    people = STUB_FRAMES // 80 * 2
    assert res["events"]["violation"] >= people // 2 - 2 and res["events"]["compliant"] >= people // 2 - 2
    assert res["alerts"] >= people // 2 - 2
    check_flat(res, STUB_FRAMES - STUB_WARMUP)


def test_soak_measurement_catches_a_leak(tmp_path):
    """1 kB kept per frame: the same measurement and limit must see it (about 15 MB here)."""
    frames, warm, leak = 20_000, 5_000, 1024
    res = in_fresh_process("soak_stub", tmp_path, frames=frames, warm=warm, leak_bytes=leak)
    assert res["rc"] == 0 and res["frames"] == frames
    expected_kb = res["span"] * leak // 1024
    assert res["growth_kb"] > RSS_LIMIT_KB and res["growth_kb"] >= 0.8 * expected_kb, res
    with pytest.raises(AssertionError, match="RSS grew"):
        check_flat(res, frames - warm)


@pytest.mark.skipif(not all(p.is_file() for p in REAL),
                    reason="needs the shipped int8 models in models/ (yoloface-500k-v2, mask-classifier)")
def test_soak_real_models_on_demo(tmp_path):
    res = in_fresh_process("soak_real", tmp_path, frames=3000, warm=500)
    assert res["rc"] == 0 and res["frames"] == 3000
    assert res["events"].get("violation", 0) >= 1
    check_flat(res, 3000 - 500)
