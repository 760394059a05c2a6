"""`doorguard run` end to end: the loop with fakes at the seams, exit codes, signals, outputs off."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sqlite3
import threading

import cv2
import numpy as np
import pytest

from edge import cli, config, service
from edge.errors import ConfigError, ModelError, SourceError, StateError, UsageError
from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators,
                        FakeClock, FakeNotifier, ListSource, frame_with, write_classifier_manifest,
                        write_detector_manifest)
from edge.pipeline import Pipeline


def cfg_for(tmp_path, extra=""):
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    text = (f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
            f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
            "[rules]\nglobal_cooldown_s = 0.0\n" + extra)
    p = tmp_path / "doorguard.toml"
    p.write_text(text)
    return p


def doorway(n_each=12):
    """A red (unmasked) face walks in and stands, leaves, then a blue (masked) one."""
    frames = [frame_with([])] * 3
    frames += [frame_with([(20 + i, 30, 30, RED)]) for i in range(n_each)]
    frames += [frame_with([])] * 12
    frames += [frame_with([(60 - i, 30, 30, BLUE)]) for i in range(n_each)]
    return frames


def runner(tmp_path, frames, extra="", **kw):
    cfg = config.load(cfg_for(tmp_path, extra))
    act, note = FakeActuators(), FakeNotifier()
    r = service.Runner(cfg, source=kw.pop("source", ListSource(frames)), actuators=act, notifier=note,
                       detector_interpreter=kw.pop("detector_interpreter", BlobDetectorInterpreter()),
                       classifier_interpreter=ColourClassifierInterpreter(), **kw)
    return r, act, note


def test_violation_then_compliant(tmp_path, caplog):
    caplog.set_level("INFO")
    r, act, note = runner(tmp_path, doorway())
    assert r.run() == 0
    assert r.frames == len(doorway())
    assert act.names() == ["alert", "compliant", "close"]
    assert r.events_by_verdict == {"violation": 1, "compliant": 1}
    assert note.messages[0] == "READY" and note.messages[-1] == "STOPPING"
    assert note.messages.count("WATCHDOG") == r.frames
    log = caplog.text
    assert "event: violation no_mask" in log and "event: compliant mask" in log
    assert "summary: " in log and "FPS" in log and "dropped 0" in log
    for stage in ("detect", "classify", "track", "pipeline", "rules+io"):
        assert f"  {stage}" in "\n".join(r.summary_lines)
    rows = sqlite3.connect(tmp_path / "state" / "events.sqlite3").execute(
        "SELECT verdict, label, detector_sha256, classifier_sha256 FROM events ORDER BY id").fetchall()
    assert rows == [("violation", "no_mask", "0" * 64, "1" * 64), ("compliant", "mask", "0" * 64, "1" * 64)]


def test_max_frames(tmp_path):
    r, act, _ = runner(tmp_path, doorway(), max_frames=5)
    assert r.run() == 0 and r.frames == 5 and "max-frames" in r.stop_reason
    assert act.names() == ["close"]


def test_every_timing_of_the_loop_reads_the_runners_clock(tmp_path):
    """On a fake clock that only the detector moves (2 s per invoke), latencies, FPS, the
    status line's 10 s pacing and the rules' cooldown come out exact, on any machine."""
    clock = FakeClock()

    class TwoSecondDetector(BlobDetectorInterpreter):
        def invoke(self):
            clock.advance(2.0)
            super().invoke()

    frames = [frame_with([(20, 30, 30, RED)])] * 12
    r, act, note = runner(tmp_path, frames, "track_cooldown_s = 10.0\n[motion]\nenabled = false\n",
                          detector_interpreter=TwoSecondDetector(), clock=clock)
    assert r.run() == 0 and r.frames == 12 and clock() == 24.0
    latency = r._pipeline.latency
    for stage, ms in (("det_infer", 2000.0), ("detect", 2000.0), ("pipeline", 2000.0), ("det_pre", 0.0),
                      ("classify", 0.0), ("rules+io", 0.0)):
        assert latency.percentiles(stage) == {50: ms, 90: ms, 99: ms}, stage
    assert r.summary_lines[0].startswith("summary: 12 frames in 24.0 s = 0.5 FPS")
    # STATUS= every 10 s of the loop's clock: after frames 5 (10 s) and 10 (20 s).
    assert [m for m in note.messages if "fps" in m] == [
        "STATUS=5 frames, 0.5 fps, 1 alerts, dropped 0", "STATUS=10 frames, 0.5 fps, 2 alerts, dropped 0"]
    # The face settles at frame 3 (6 s) and alerts again once 10 s have passed (16 s), not at 24 s.
    assert act.names() == ["alert", "alert", "close"]


def test_annotate_writes_video(tmp_path):
    out = tmp_path / "out.mp4"
    r, _, _ = runner(tmp_path, doorway(), annotate=str(out))
    r.run()
    cap = cv2.VideoCapture(str(out))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, img = cap.read()
    cap.release()
    assert ok and n == r.frames and img.shape[:2] == (96, 128)


def test_camera_lost_shows_fault_and_recovers(tmp_path):
    # Long enough that a slow loop (frames dropped) never runs the live source dry; read and
    # give-up timeouts far beyond what a loaded or emulated CPU can stall (only the loss counts).
    frames = [frame_with([(20, 30, 30, RED)])] * 5000
    src = ListSource(frames, live=True, lose_at={10})
    extra = ("[source]\nreconnect_initial_s = 0.3\nreconnect_max_s = 0.3\nread_timeout_s = 120.0\n"
             "give_up_after_s = 120.0\n")
    r, act, _ = runner(tmp_path, frames, extra, source=src, max_frames=25)
    assert r.run() == 0
    faults = [c for c in act.calls if c[0] == "fault"]
    assert faults == [("fault", True), ("fault", False)]
    assert act.names()[-1] == "close"


def test_camera_gone_exits_with_source_error_and_outputs_off(tmp_path):
    src = ListSource([frame_with([])] * 3, live=True)
    src.fail_open = 0
    extra = "[source]\nreconnect_initial_s = 0.01\nreconnect_max_s = 0.02\ngive_up_after_s = 0.2\n"
    r, act, _ = runner(tmp_path, [], extra, source=src)
    orig = src.open

    def open_():
        if src.opens:
            raise SourceError("no camera")
        src.opens += 1
        orig()

    src.open = open_
    with pytest.raises(SourceError, match="giving up"):
        r.run()
    assert act.names()[-1] == "close" and ("fault", True) in act.calls


def test_model_failure_shows_fault_then_stops(tmp_path):
    r, act, _ = runner(tmp_path, [frame_with([])] * 40)
    r._interps[0].fail = True
    with pytest.raises(ModelError, match="failed on 25 frames"):
        r.run()
    assert ("fault", True) in act.calls and act.names()[-1] == "close"


def test_bad_max_frames(tmp_path):
    r, _, _ = runner(tmp_path, [], max_frames=0)
    with pytest.raises(UsageError):
        r.run()


def test_unwritable_state_dir(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a dir")
    r, _, _ = runner(tmp_path, [])
    r.cfg.events.state_dir = str(tmp_path / "blocker" / "state")
    with pytest.raises(StateError, match="not writable"):
        r.run()


class SignalAt(ListSource):
    """A source that sends this process ``sig`` when asked for frame ``at``: the signal comes
    while frames flow, however fast or slow the CPU (a timer could fire before the handler is
    installed on a slow one, and SIGTERM would kill the test run)."""

    def __init__(self, images, at, sig=signal.SIGTERM, **kw):
        super().__init__(images, **kw)
        self.at, self.sig = at, sig

    def read(self):
        if self.i == self.at:
            os.kill(os.getpid(), self.sig)
        return super().read()


def test_sigterm_stops_cleanly(tmp_path, monkeypatch, caplog):
    caplog.set_level("INFO")
    endless = SignalAt([frame_with([(20, 30, 30, RED)])] * 100000, at=20, live=False)
    act, note = FakeActuators(), FakeNotifier()
    monkeypatch.setattr(service, "Runner", functools.partial(
        service.Runner, source=endless, actuators=act, notifier=note,
        detector_interpreter=BlobDetectorInterpreter(), classifier_interpreter=ColourClassifierInterpreter()))
    args = argparse.Namespace(config=str(cfg_for(tmp_path)), source=None, max_frames=None, annotate=None)
    assert service.main(args) == 0
    assert "stop: SIGTERM" in caplog.text
    assert 20 <= endless.i < 100000
    assert act.names()[-1] == "close" and act.closed == 1
    assert note.messages[-1] == "STOPPING"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


# ---- exit codes through the command line (one line, never a traceback) -------------------

def run_cli(capsys, *argv):
    code = cli.main(["run", *argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def test_cli_bad_config(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text("[models]\nthreads = 2\n")
    code, err = run_cli(capsys, "--config", str(p))
    assert code == ConfigError.exit_code == 3 and "models.threads (line 2): unknown key" in err


def test_cli_unknown_source(tmp_path, capsys):
    code, err = run_cli(capsys, "--config", str(cfg_for(tmp_path)), "--source", "nowhere.mkv")
    assert code == UsageError.exit_code == 2 and "unknown source" in err


def test_cli_missing_model(tmp_path, capsys):
    p = tmp_path / "c.toml"
    p.write_text(f'[models]\ndetector = "{tmp_path}/gone.json"\n[events]\nstate_dir = "{tmp_path}/s"\n')
    code, err = run_cli(capsys, "--config", str(p), "--source", "demo")
    assert code == ModelError.exit_code == 4 and "gone.json" in err


def test_cli_corrupt_model(tmp_path, capsys):
    cfgp = cfg_for(tmp_path)
    (tmp_path / "stub-det.tflite").write_bytes(b"garbage")
    code, err = run_cli(capsys, "--config", str(cfgp), "--source", "demo")
    assert code == 4 and "does not match its manifest" in err


def test_cli_camera_never_opens(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Pipeline, "from_config", classmethod(
        lambda cls, cfg, *a, **kw: cls(*_stub_models(tmp_path), cfg)))
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    extra = "[source]\nopen_timeout_s = 0.3\nreconnect_initial_s = 0.05\n"
    code, err = run_cli(capsys, "--config", str(cfg_for(tmp_path, extra)), "--source", "/dev/video99")
    assert code == SourceError.exit_code == 5 and "cannot open camera /dev/video99" in err


def _stub_models(tmp_path):
    from edge.infer.models import Classifier, Detector

    return (Detector(tmp_path / "stub-det.json", interpreter=BlobDetectorInterpreter()),
            Classifier(tmp_path / "stub-clf.json", interpreter=ColourClassifierInterpreter()))


def test_real_actuators_on_mock_pins(tmp_path):
    """The loop drives gpiozero's MockFactory pins: red + buzzer on the violation, green on the
    compliant face, everything low after the run."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    try:
        cfg = config.load(cfg_for(tmp_path))
        r = service.Runner(cfg, source=ListSource(doorway()), pin_factory=factory, notifier=FakeNotifier(),
                           detector_interpreter=BlobDetectorInterpreter(),
                           classifier_interpreter=ColourClassifierInterpreter())
        assert r.run() == 0
        g = cfg.gpio
        red, green, buzzer = (factory.pin(p) for p in (g.red_led, g.green_led, g.buzzer))
        assert any(s.state for s in red.states) and any(s.state for s in buzzer.states)
        assert any(s.state for s in green.states)
        assert not red.state and not green.state and not buzzer.state
    finally:
        factory.close()


def test_mqtt_outbox_and_web_page_wired(tmp_path):
    """With [mqtt] and [web] on, events queue in the outbox (broker down: never blocks the loop)
    and the status page reads the runner's state."""
    extra = ("[mqtt]\nenabled = true\nhost = \"127.0.0.1\"\nport = 9\nreconnect_min_s = 5.0\n"
             "[web]\nenabled = true\nport = 0\n")
    r, act, _ = runner(tmp_path, doorway(), extra)
    assert r.run() == 0
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    verdicts = [v for (v,) in db.execute("SELECT verdict FROM outbox ORDER BY seq")]
    assert verdicts == ["violation", "compliant"]
    st = r._status()
    assert st["frames"] == r.frames and st["models"][0]["sha256"] == "0" * 64
    assert st["camera_ok"] is False or st["camera_ok"] is True


# ---- the real default models (models/): demo and ../shared images ------------------------

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def default_models():
    cfg = config.load()
    for m in (cfg.models.detector, cfg.models.classifier):
        if not cfg.resolve(m).is_file():
            pytest.skip(f"default model {m} not in models/ yet")
    return cfg


def real_runner(cfg, tmp_path, spec, **kw):
    cfg = cfg.model_copy(deep=True)
    cfg.events.state_dir = str(tmp_path / "state")
    act, note = FakeActuators(), FakeNotifier()
    return service.Runner(cfg, spec, actuators=act, notifier=note, **kw), act


@pytest.mark.slow
def test_demo_with_default_models(default_models, tmp_path, caplog, monkeypatch):
    """`make run`'s path: real detections on the demo clip, a violation and a compliant verdict."""
    from edge.infer import runtime

    built = []
    real_load = runtime.load_interpreter
    monkeypatch.setattr(runtime, "load_interpreter", lambda *a, **k: built.append(a) or real_load(*a, **k))
    caplog.set_level("INFO")
    r, act = real_runner(default_models, tmp_path, "demo")
    assert r.run() == 0
    assert len(built) == 2  # one interpreter per model, built once for the whole run
    assert all(a[1] == default_models.models.num_threads for a in built)
    assert r.stop_reason == "end of source"
    assert r.events_by_verdict["violation"] >= 1, caplog.text
    assert r.events_by_verdict["compliant"] >= 1, caplog.text
    assert "alert" in act.names() and "compliant" in act.names()
    rows = sqlite3.connect(tmp_path / "state" / "events.sqlite3").execute(
        "SELECT verdict, label FROM events ORDER BY id").fetchall()
    # The unmasked visit comes first, the masked one second.
    assert rows[0] == ("violation", "no_mask") and ("compliant", "mask") in rows


@pytest.mark.shared
@pytest.mark.slow
def test_real_images_from_shared(default_models, shared, tmp_path):
    """facemask853 val images as a folder source: faces found and classified on real photos."""
    stems = (shared / "data/facemask853/val.txt").read_text().split()[:12]
    folder = tmp_path / "imgs"
    folder.mkdir()
    for s in stems:
        src = next((shared / "data/facemask853/images").glob(f"{s}.*"))
        os.symlink(src, folder / src.name)
    cfg = default_models.model_copy(deep=True)
    # Single photos: one vote settles a track (no temporal voting on unrelated images).
    cfg.tracking.votes_needed = 1
    cfg.tracking.window = 1
    cfg.tracking.max_missed = 0
    r, _ = real_runner(cfg, tmp_path, str(folder))
    assert r.run() == 0 and r.frames == len(stems)
    lat = r._pipeline.latency
    assert lat.count("detect") == len(stems) and lat.count("classify") >= len(stems)
    assert sum(r.events_by_verdict.values()) >= len(stems) // 2


def test_camera_slow_to_open_shows_fault_until_frames_flow(tmp_path):
    # 5000 frames (10 s of a live camera), not 5: a slow CPU (the emulated Pi of make test-arm,
    # a loaded CI box) must still get 3 frames processed before this camera runs dry.
    src = ListSource([frame_with([])] * 5000, live=True, fail_open=2)
    extra = "[source]\nreconnect_initial_s = 0.01\ngive_up_after_s = 0.3\n"
    r, act, _ = runner(tmp_path, [], extra, source=src, max_frames=3)
    assert r.run() == 0
    assert [c for c in act.calls if c[0] == "fault"] == [("fault", True), ("fault", False)]


def test_missing_video_device_is_named():
    from edge.capture.sources import OpenCVSource

    with pytest.raises(SourceError, match="/dev/video97: no such device"):
        OpenCVSource("/dev/video97", True).open()


def test_end_of_clip_lets_the_last_pattern_finish(tmp_path):
    """The command line waits for a started pattern at the end of a clip; FPS excludes the wait."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    try:
        extra = ("[gpio]\nalert_on_seconds = 0.05\nalert_off_seconds = 0.05\nalert_repeats = 3\n"
                 "compliant_seconds = 0.3\n")
        cfg = config.load(cfg_for(tmp_path, extra))
        r = service.Runner(cfg, source=ListSource(doorway()), pin_factory=factory, notifier=FakeNotifier(),
                           detector_interpreter=BlobDetectorInterpreter(),
                           classifier_interpreter=ColourClassifierInterpreter(), drain_outputs=True)
        assert r.run() == 0
        green = factory.pin(cfg.gpio.green_led)
        on = [s for s in green.states[1:]]
        # Went on, and went off by itself after ~compliant_seconds (not cut short by close()).
        assert [s.state for s in on] == [True, False] and on[1].timestamp >= 0.25
    finally:
        factory.close()


def test_signal_while_camera_is_opening_stops_cleanly(tmp_path):
    import time as _t

    # The first retry waits 30 s: a stop that did not cut that wait short would take that long.
    src = ListSource([], live=True, fail_open=10**6)
    extra = "[source]\nopen_timeout_s = 120.0\nreconnect_initial_s = 30.0\nreconnect_max_s = 30.0\n"
    r, act, _ = runner(tmp_path, [], extra, source=src)
    asked = []

    def stop_once_opening():  # after the first failed open, while the runner waits to retry
        while src.opens == 0:
            _t.sleep(0.01)
        _t.sleep(0.2)
        asked.append(_t.monotonic())
        r.request_stop("SIGTERM")

    threading.Thread(target=stop_once_opening, daemon=True).start()
    assert r.run() == 0
    took = _t.monotonic() - asked[0]
    assert took < 15.0, f"stopped {took:.1f} s after the request: the retry wait was not cut short"
    assert r.stop_reason == "SIGTERM" and src.opens == 1
    assert act.names()[-1] == "close"


def test_ready_only_after_a_frame_went_through_the_models(tmp_path):
    """systemd READY means camera frames flow and the models ran: a source that opens
    but never yields a frame must never report READY."""
    r, _, note = runner(tmp_path, [])
    assert r.run() == 0 and r.frames == 0
    assert "READY" not in note.messages and note.messages[-1] == "STOPPING"
    r, _, note = runner(tmp_path, doorway(2))
    assert r.run() == 0
    assert note.messages.index("READY") < note.messages.index("WATCHDOG")
