"""Mask and identity classifiers together in `doorguard run`: per-track votes, combined verdicts.

The runner reads a real image folder (FolderSource), the real preprocessing, YOLO decode,
cropping, per-image tracking, rules, SQLite events and actuators on gpiozero's MockFactory
run; only the three interpreters are stubs at the model seam (see edge/fakes.py).
"""

from __future__ import annotations

import json
import sqlite3

import cv2
import numpy as np
import pytest

from edge import config, service
from edge.fakes import (BLUE, CLF_SIZE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeNotifier,
                        StubInterpreter, frame_with, write_classifier_manifest, write_detector_manifest)
from edge.decide.rules import Rules
from edge.track.tracking import MAIN
from edge.types import Box, Verdict


class IdentityInterpreter(StubInterpreter):
    """"me" when the face crop has a white dot (the household member), else "not_me"."""

    def __init__(self):
        super().__init__([1, CLF_SIZE, CLF_SIZE, 3], [("identity_probs", [1, 2])])

    def compute(self, x):
        me = float(x.min(axis=-1).max()) > 0.9  # white: every channel high
        return [np.array([[0.92, 0.08] if me else [0.1, 0.9]], np.float32)]


def write_identity_manifest(folder):
    m = json.loads(write_classifier_manifest(folder).read_text())
    m.update(name="identity", tflite="identity.tflite", labels=["me", "not_me"])
    m["outputs"] = [{"name": "identity_probs", "shape": [1, 2], "role": "probabilities", "dtype": "float32"}]
    p = folder / "identity.json"
    p.write_text(json.dumps(m))
    return p


def face(colour, me):
    img = frame_with([(40, 30, 30, colour)])
    if me:
        img[42:47, 52:57] = 255
    return img


CASES = {  # file name (sorted = frame order) -> (face colour, is me)
    "1-me-mask.png": (BLUE, True),
    "2-me-no-mask.png": (RED, True),
    "3-stranger-mask.png": (BLUE, False),
    "4-stranger-no-mask.png": (RED, False),
}


def config_file(tmp_path, extra=""):
    det, clf = write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path)
    ident = write_identity_manifest(tmp_path)
    text = (f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\nextra_classifiers = ["{ident}"]\n'
            f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
            '[rules]\nalert_on_classifier = ["no_mask", "mask_incorrect", "not_me"]\n'
            'compliant_on_classifier = ["mask", "me"]\nglobal_cooldown_s = 0.0\n' + extra)
    p = tmp_path / "doorguard.toml"
    p.write_text(text)
    return p


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for name, (colour, me) in CASES.items():
        cv2.imwrite(str(d / name), cv2.cvtColor(face(colour, me), cv2.COLOR_RGB2BGR))
    return d


def test_mask_and_identity_in_run_on_a_folder_with_mock_gpio(tmp_path, photos):
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    factory = MockFactory(pin_class=MockPWMPin)
    try:
        cfg = config.load(config_file(tmp_path))
        assert config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect", "me", "not_me"]) == []
        r = service.Runner(cfg, source_spec=str(photos), pin_factory=factory, notifier=FakeNotifier(),
                           detector_interpreter=BlobDetectorInterpreter(),
                           classifier_interpreter=ColourClassifierInterpreter(),
                           extra_interpreters=[IdentityInterpreter()], drain_outputs=True)
        assert r.run() == 0 and r.frames == 4 and r.per_image
        rows = sqlite3.connect(tmp_path / "state" / "events.sqlite3").execute(
            "SELECT track, verdict, label FROM events ORDER BY id").fetchall()
        tracks = sorted({t for t, _, _ in rows})  # per image: one new track per photo, in file order
        assert len(tracks) == 4
        by_frame: dict[int, set] = {}
        for t, verdict, label in rows:
            by_frame.setdefault(tracks.index(t), set()).add((verdict, label))
        assert by_frame == {
            0: {("compliant", "mask")},                                  # me + mask: green, once
            1: {("violation", "no_mask")},                               # me + no_mask: alert
            2: {("violation", "not_me")},                                # stranger + mask: alert, never green
            3: {("violation", "no_mask"), ("violation", "not_me")},      # both say so
        }
        assert r.events_by_verdict == {"compliant": 1, "violation": 4}
        g = cfg.gpio
        red, green, buzzer = (factory.pin(p) for p in (g.red_led, g.green_led, g.buzzer))
        assert any(s.state for s in green.states) and any(s.state for s in red.states)
        assert any(s.state for s in buzzer.states)
        assert not red.state and not green.state and not buzzer.state
    finally:
        factory.close()


def test_without_the_combination_each_classifier_greens_alone(tmp_path, photos):
    cfg = config.load(config_file(tmp_path, "compliant_needs_all_classifiers = false\n"))
    from edge.fakes import FakeActuators

    r = service.Runner(cfg, source_spec=str(photos), actuators=FakeActuators(), notifier=FakeNotifier(),
                       detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter(),
                       extra_interpreters=[IdentityInterpreter()])
    assert r.run() == 0
    # me + mask: two greens; me + no_mask: "me" green beside the alert; stranger + mask: "mask" green.
    assert r.events_by_verdict == {"compliant": 4, "violation": 4}


def test_green_waits_for_the_identity_channel():
    from edge.track.tracking import Tracker
    from edge.types import Detection

    rules = Rules(config.RulesConfig(alert_on_classifier=["no_mask", "not_me"], compliant_on_classifier=["mask", "me"],
                                     global_cooldown_s=0.0))
    tr = Tracker(0.3, 3, 2, 3, 5)
    (t,) = tr.update([Detection(Box(0, 0, 20, 20), 0.9, 0, "face")], 0)
    for f in range(2):
        tr.vote(t, "mask", 0.9, f, MAIN, "classifier")
        tr.vote(t, None, 0.4, f, "identity", "classifier")  # identity unsure
    assert t.channels[MAIN].settled and not t.channels["identity"].settled
    assert rules.evaluate([t], 1.0) == []  # mask settled, identity not yet: no green
    tr.vote(t, "me", 0.9, 2, "identity", "classifier")
    tr.vote(t, "me", 0.9, 3, "identity", "classifier")
    events = rules.evaluate([t], 2.0)
    assert [(e.verdict, e.label) for e in events] == [(Verdict.COMPLIANT, "mask")]  # one green, not two
    tr.update([Detection(Box(0, 0, 20, 20), 0.9, 0, "face")], 4)
    assert rules.evaluate([t], 3.0) == []  # once per settle
