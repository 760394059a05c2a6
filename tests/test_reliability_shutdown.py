"""SIGTERM (systemctl stop) while the alert pattern runs: every GPIO output off within 1 s,
events flushed, exit code 0. Through ``edge.service.main`` in the main thread, so the real
signal handler runs; pins are gpiozero MockFactory pins with absolute change times."""

from __future__ import annotations

import argparse
import functools
import os
import signal
import sqlite3
import threading
import time

import pytest

from edge import service
from edge.fakes import (RED, BlobDetectorInterpreter, ColourClassifierInterpreter, frame_with,
                        write_classifier_manifest, write_detector_manifest)
from edge.notify import SystemdNotifier

from faults import FaultySource, NotifyListener, recording_pin_class

PINS = {"red": 17, "green": 27, "buzzer": 22}
OFF_WITHIN_S = 1.0


def _cfg(tmp_path):
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    # A long alert pattern (50 beeps, 20 s): it is surely running when SIGTERM comes.
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[source]\nread_timeout_s = 0.3\n"
                 f"[gpio]\nred_led = {PINS['red']}\ngreen_led = {PINS['green']}\nbuzzer = {PINS['buzzer']}\n"
                 "alert_on_seconds = 0.2\nalert_off_seconds = 0.2\nalert_repeats = 50\n")
    return p


@pytest.mark.parametrize("camera", ["delivering", "hung"])
def test_sigterm_during_alert_all_outputs_off_within_1s(tmp_path, monkeypatch, camera):
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory(pin_class=recording_pin_class())
    source = FaultySource(frame_with([(20, 30, 30, RED)]))
    listener = NotifyListener(tmp_path / "notify.sock")
    notifier = SystemdNotifier(str(tmp_path / "notify.sock"), watchdog_usec=0)
    monkeypatch.setattr(service, "Runner", functools.partial(
        service.Runner, source=source, pin_factory=factory, notifier=notifier,
        detector_interpreter=BlobDetectorInterpreter(), classifier_interpreter=ColourClassifierInterpreter()))
    marks: dict[str, float] = {}

    def systemd():
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            pins = {k: factory.pin(v) for k, v in PINS.items()} if len(factory.pins) >= 3 else None
            if pins and any(s for _, s in pins["buzzer"].abs_states) and pins["red"].state:
                break
            time.sleep(0.01)
        time.sleep(0.3)  # in the middle of the pattern
        if camera == "hung":
            source.inject("hang", 30.0)
            time.sleep(0.2)
        buzzer = factory.pin(PINS["buzzer"])
        deadline = time.monotonic() + 2
        while not buzzer.state and time.monotonic() < deadline:  # SIGTERM while it sounds
            time.sleep(0.001)
        marks["sigterm"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)

    helper = threading.Thread(target=systemd, daemon=True)
    helper.start()
    args = argparse.Namespace(config=str(_cfg(tmp_path)), source=None, max_frames=None, annotate=None)
    try:
        code = service.main(args)
        marks["exit"] = time.monotonic()
    finally:
        source._wake.set()  # release a hung read so the capture thread ends
        helper.join(5)
        notifier.close()
        listener.close()
    assert code == 0
    assert "sigterm" in marks, "the alert pattern never started"
    pins = {k: factory.pin(v) for k, v in PINS.items()}
    on_at_sigterm = [k for k, p in pins.items()
                     if [s for t, s in p.abs_states if t < marks["sigterm"]][-1:] in ([1.0], [True])]
    assert "buzzer" in on_at_sigterm, f"the buzzer was not sounding at SIGTERM ({on_at_sigterm})"
    off_at = {}
    for name, pin in pins.items():
        assert not pin.state, f"{name} still on after exit"
        changes = [(t, s) for t, s in pin.abs_states if t >= marks["sigterm"]]
        # The loop notices the signal at its next turn (<= 0.5 s frame wait), so a running
        # pattern may still blink once before everything goes off.
        off_at[name] = max([t for t, _ in changes], default=marks["sigterm"]) - marks["sigterm"]
    slow = {k: round(v, 3) for k, v in off_at.items() if v > OFF_WITHIN_S}
    assert slow == {}, f"outputs still on more than {OFF_WITHIN_S} s after SIGTERM: {slow}"
    # Events flushed: a fresh connection sees every event the run logged.
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    rows = db.execute("SELECT verdict FROM events").fetchall()
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    db.close()
    assert rows and all(v == "violation" for (v,) in rows)
    assert any("STOPPING=1" in m for _, m in listener.messages)
    factory.close()
    print(f"\nshutdown ({camera} camera): outputs off {max(off_at.values()) * 1000:.0f} ms after SIGTERM "
          f"({', '.join(f'{k} {v * 1000:.0f} ms' for k, v in off_at.items())}); exit 0 after "
          f"{(marks['exit'] - marks['sigterm']) * 1000:.0f} ms; {len(rows)} event(s) in the store")


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
REAL = [ROOT / "models" / f"{n}.{s}" for n in ("yoloface-500k-v2", "mask-classifier") for s in ("json", "tflite")]


@pytest.mark.skipif(not all(p.is_file() for p in REAL), reason="needs the shipped int8 models in models/")
def test_sigterm_to_the_doorguard_process(tmp_path):
    """The real command (subprocess, shipped models, looping demo): SIGTERM after the first
    alert -> exit 0, no traceback, and every event it logged is in the store."""
    import subprocess
    import sys

    cfg = tmp_path / "doorguard.toml"
    cfg.write_text(f'[models]\ndetector = "{REAL[0]}"\nclassifier = "{REAL[2]}"\n'
                   f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                   '[source]\nspec = "demo"\nloop = true\n[rules]\nglobal_cooldown_s = 0.0\n')
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "PYTHONUNBUFFERED": "1"}
    env.pop("NOTIFY_SOCKET", None)
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            lines.append(line)
            if "gpio: alert" in line or time.monotonic() > deadline:
                break
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines += out.splitlines(keepends=True)
    text = "".join(lines)
    assert any("gpio: alert" in line for line in lines), "no alert before SIGTERM"
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "stop: SIGTERM" in text
    assert "gpio: closed, all outputs off" in text
    logged = sum(1 for line in lines if " event: " in line)
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    db.close()
    assert logged >= 1 and stored == logged, (logged, stored)
    print(f"\nshutdown (doorguard process): exit 0 {took * 1000:.0f} ms after SIGTERM, {stored} event(s) stored")
