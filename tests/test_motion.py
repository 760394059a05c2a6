"""Motion gate (issue 21): idle frames skip the detector, motion and live tracks never do."""

from __future__ import annotations

import numpy as np
import pytest

from edge import config
from edge.fakes import (BLUE, BlobDetectorInterpreter, ColourClassifierInterpreter, frame_with,
                        write_classifier_manifest, write_detector_manifest)
from edge.infer.models import Classifier, Detector
from edge.capture.motion import MotionGate
from edge.pipeline import Pipeline
from edge.types import Frame


def noisy(img: np.ndarray, rng: np.random.Generator, sigma: float = 3.0) -> np.ndarray:
    return (img.astype(np.float32) + rng.normal(0, sigma, img.shape)).clip(0, 255).astype(np.uint8)


def test_a_still_noisy_scene_is_idle_and_a_moving_object_is_not():
    gate = MotionGate(config.MotionConfig(recheck_s=1e3))
    rng = np.random.default_rng(0)
    still = np.full((480, 640, 3), 100, np.uint8)
    assert gate.should_run(noisy(still, rng), 0.0)  # the first frame: no background yet
    assert not any(gate.should_run(noisy(still, rng), 0.1 * i) for i in range(1, 40))
    moved = still.copy()
    moved[200:260, 300:350] = 220  # a 50x60 px object appears
    assert gate.should_run(noisy(moved, rng), 4.0)  # that very frame runs the detector
    assert gate.stats.skipped == 39 and gate.stats.moving == 2  # the first frame and the object


def test_slow_brightness_drift_does_not_count_as_motion():
    gate = MotionGate(config.MotionConfig(recheck_s=1e3))
    img = np.full((120, 160, 3), 90, np.uint8)
    gate.should_run(img, 0.0)
    runs = [gate.should_run(np.full_like(img, 90 + i // 4), 0.1 * i) for i in range(1, 100)]
    assert not any(runs)  # +25 grey levels over 10 s: the background follows


def test_the_detector_runs_at_least_every_recheck_s_without_motion():
    gate = MotionGate(config.MotionConfig(recheck_s=2.0))
    img = np.full((120, 160, 3), 90, np.uint8)
    runs = [t for t in np.arange(0.0, 6.05, 0.1) if gate.should_run(img, float(t))]
    assert runs[0] == 0.0 and len(runs) == 4  # t = 0, 2, 4, 6
    assert gate.stats.rechecks == 3


def test_a_small_face_far_away_is_motion():
    """A 24 px head moving in a 640x480 frame (someone far down the path) opens the gate."""
    cfg = config.MotionConfig(recheck_s=1e3)
    gate = MotionGate(cfg)
    rng = np.random.default_rng(1)
    bg = np.full((480, 640, 3), 110, np.uint8)
    gate.should_run(noisy(bg, rng), 0.0)
    for i in range(1, 10):
        gate.should_run(noisy(bg, rng), 0.1 * i)
    f = bg.copy()
    f[100:124, 400:424] = (200, 160, 140)
    assert gate.should_run(noisy(f, rng), 1.0)
    assert gate.last_changed >= cfg.min_changed


def make_pipeline(tmp_path, **motion):
    cfg = config.parse("[motion]\n" + "".join(f"{k} = {v}\n" for k, v in motion.items()))
    det_i, clf_i = BlobDetectorInterpreter(), ColourClassifierInterpreter()
    det = Detector(write_detector_manifest(tmp_path), interpreter=det_i)
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=clf_i)
    return Pipeline(det, clf, cfg, motion=MotionGate(cfg.motion) if cfg.motion.enabled else None), det_i


def test_pipeline_skips_the_detector_on_idle_frames_only(tmp_path):
    p, det_i = make_pipeline(tmp_path, recheck_s=100.0)
    empty = frame_with([])
    face = frame_with([(20, 10, 24, BLUE)])
    t = iter(np.arange(0.0, 100.0, 0.1))
    results = [p.process(Frame(empty, next(t), i)) for i in range(5)]
    assert [r.idle for r in results] == [False, True, True, True, True]
    assert det_i.invocations == 1
    r = p.process(Frame(face, next(t), 5))  # the face arrives: that frame is detected
    assert not r.idle and len(r.detections) == 1 and det_i.invocations == 2
    # The face stands still: no motion any more, but the track keeps the detector running.
    for i in range(6, 20):
        r = p.process(Frame(face, next(t), i))
        assert not r.idle and len(r.tracks) == 1
    assert det_i.invocations == 16
    # It leaves (motion), the track ages out, then the empty doorway is idle again.
    for i in range(20, 40):
        r = p.process(Frame(empty, next(t), i))
    assert r.idle and not r.tracks
    assert "motion" in r.timings and "det_infer" not in p.latency.summary()[-1]


def test_motion_gate_off_runs_the_detector_on_every_frame(tmp_path):
    p, det_i = make_pipeline(tmp_path, enabled="false")
    empty = frame_with([])
    for i in range(10):
        assert not p.process(Frame(empty, 0.1 * i, i)).idle
    assert det_i.invocations == 10


@pytest.mark.parametrize("key,value", [("threshold", "0"), ("min_changed", "0.9"), ("width", "8"),
                                       ("recheck_s", "-1")])
def test_absurd_motion_settings_are_config_errors(key, value):
    from edge.errors import ConfigError

    with pytest.raises(ConfigError, match=f"motion.{key}"):
        config.parse(f"[motion]\n{key} = {value}\n")


@pytest.mark.slow
def test_demo_clip_same_events_and_first_detection_with_the_gate(tmp_path, monkeypatch):
    """The built-in demo with the shipped models: the gate changes no event and delays no detection."""
    import sqlite3

    from edge import service
    from edge.pipeline import Pipeline as P

    from test_run_e2e import FakeActuators, FakeNotifier

    base = config.load()
    for m in (base.models.detector, base.models.classifier):
        if not base.resolve(m).is_file():
            pytest.skip(f"default model {m} not in models/ yet")
    first: dict[bool, int] = {}
    real = P.process

    def spy(self, frame):
        r = real(self, frame)
        if r.detections:
            first.setdefault(self.motion is not None, frame.index)
        return r

    monkeypatch.setattr(P, "process", spy)
    rows, gates = {}, {}
    for on in (False, True):
        cfg = base.model_copy(deep=True)
        cfg.motion.enabled = on
        cfg.events.state_dir = str(tmp_path / f"state{on}")
        r = service.Runner(cfg, "demo", actuators=FakeActuators(), notifier=FakeNotifier())
        assert r.run() == 0
        rows[on] = sqlite3.connect(tmp_path / f"state{on}" / "events.sqlite3").execute(
            "SELECT track, verdict, label, round(x1), round(y1), alerted FROM events ORDER BY id").fetchall()
        gates[on] = r._pipeline.motion
    assert rows[True] == rows[False] and [v for _, v, *_ in rows[True]] == ["violation", "compliant"]
    assert first[True] == first[False]
    assert gates[False] is None and gates[True].stats.skipped >= 3
    assert any("motion gate: detector skipped" in line for line in r.summary_lines)


def test_a_failing_detector_is_tried_on_every_frame_even_when_nothing_moves(tmp_path):
    p, det_i = make_pipeline(tmp_path, recheck_s=100.0)
    empty = frame_with([])
    p.process(Frame(empty, 0.0, 0))
    det_i.fail = True
    with pytest.raises(RuntimeError):  # something moves: the detector runs, and fails
        p.process(Frame(frame_with([(20, 10, 24, BLUE)]), 0.1, 1))
    for i in range(2, 6):  # nothing moves, but the fault must show on every frame
        with pytest.raises(RuntimeError):
            p.process(Frame(empty, 0.1 * i, i))
    det_i.fail = False
    assert not p.process(Frame(empty, 0.6, 6)).idle  # recovered: this frame ran the detector
    assert p.process(Frame(empty, 0.7, 7)).idle  # and the gate skips again
