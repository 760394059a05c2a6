"""Face-touch check: SSD anchors/decode, overlap, the hand stage at the interpreter seam, N-of-M
votes in their own channel, own cooldown, and events from `doorguard run`."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge import config, service
from edge.errors import ModelError
from edge.decide.facetouch import grow, overlap, region_around, touch_score
from edge.settings.facetouch import FaceTouchConfig
from edge.fakes import (BLUE, DARK, RED, BlobDetectorInterpreter, ColourClassifierInterpreter,
                        DarkBlobHandInterpreter, FakeActuators, FakeNotifier, ListSource, frame_with,
                        write_classifier_manifest, write_detector_manifest, write_hand_manifest)
from edge.manifest import SsdSpec
from edge.infer.models import Classifier, Detector
from edge.pipeline import Pipeline, make_rules
from edge.infer.ssd import SsdDetector, anchors, decode
from edge.types import Box, Frame

#: MediaPipe's palm_detection_lite options (palm_detection_cpu graph).
PALM_LITE = SsdSpec(num_layers=4, strides=[8, 16, 16, 16], min_scale=0.1484375, max_scale=0.75,
                    num_anchors=2016, box_scale=192.0, num_keypoints=7)


def test_palm_lite_anchors():
    a = anchors(PALM_LITE, 192, 192)
    # 24x24 cells x 2 anchors (stride 8) + 12x12 x 6 (three stride-16 layers): not 2944
    # (that is the older 256x256 palm model).
    assert a.shape == (2016, 4)
    assert np.allclose(a[0], [0.5 / 24, 0.5 / 24, 1, 1]) and np.allclose(a[1], a[0])
    assert np.allclose(a[1152], [0.5 / 12, 0.5 / 12, 1, 1])
    assert np.allclose(a[-1], [11.5 / 12, 11.5 / 12, 1, 1])


def test_decode_inverts_the_encoding_and_suppresses_duplicates():
    a = anchors(PALM_LITE, 192, 192)
    raw = np.zeros((2016, 18), np.float32)
    logits = np.full(2016, -20.0, np.float32)
    # A 48x64 box centred at (100, 60) on anchor 300, and a near copy on its twin 301.
    for i, score in ((300, 5.0), (301, 3.0)):
        ax, ay = a[i, 0] * 192, a[i, 1] * 192
        raw[i, :4] = [100 - ax, 60 - ay, 48, 64]
        logits[i] = score
    boxes, scores = decode(raw, logits, a, PALM_LITE, 192, 192, 0.5, 0.3)
    assert len(boxes) == 1
    assert np.allclose(boxes[0], [76, 28, 124, 92], atol=1e-3)
    assert scores[0] == pytest.approx(1 / (1 + np.exp(-5.0)))


def test_overlap_measures():
    face, hand = Box(0, 0, 10, 10), Box(5, 5, 25, 15)
    assert overlap(face, hand, "face_fraction") == pytest.approx(25 / 100)
    assert overlap(face, hand, "hand_fraction") == pytest.approx(25 / 200)
    assert overlap(face, hand, "iou") == pytest.approx(25 / 275)
    assert overlap(face, Box(20, 20, 30, 30), "iou") == 0.0
    with pytest.raises(ValueError):
        overlap(face, hand, "area")
    assert grow(Box(10, 10, 20, 30), 0.5) == Box(5, 0, 25, 40)
    # A palm just below the chin touches once grown by hand_grow.
    cfg = FaceTouchConfig(hand_grow=0.5, overlap="hand_fraction")
    assert touch_score(face, [Box(2, 10, 8, 16)], FaceTouchConfig(hand_grow=0.0)) == 0.0
    assert touch_score(face, [Box(2, 10, 8, 16)], cfg) > 0.2
    assert touch_score(face, [], cfg) == 0.0


def test_region_around_is_centred_and_clipped():
    assert region_around(Box(40, 40, 60, 60), 3.0, 200, 200) == (20, 20, 80, 80)
    assert region_around(Box(0, 0, 20, 10), 3.0, 50, 50) == (0, 0, 40, 35)


def test_ssd_detector_at_the_interpreter_seam(tmp_path):
    hands = SsdDetector(write_hand_manifest(tmp_path), interpreter=DarkBlobHandInterpreter())
    img = np.full((128, 128, 3), 128, np.uint8)
    img[40:72, 20:52] = DARK
    (d,) = hands.detect(img)
    assert d.label == "hand" and d.score > 0.99
    assert np.allclose([d.box.x1, d.box.y1, d.box.x2, d.box.y2], [20, 40, 52, 72], atol=1.0)


def test_ssd_manifest_checks(tmp_path):
    p = write_hand_manifest(tmp_path)
    text = p.read_text().replace('"num_anchors": 128', '"num_anchors": 127')
    p.write_text(text)
    with pytest.raises(ModelError, match="anchors"):
        SsdDetector(p, interpreter=DarkBlobHandInterpreter())


FACE = (20, 30, 30)
HAND_BELOW = (30, 61, 14)  # a dark palm just under the chin: touching once grown


def face_frame(colour=RED, hand=True):
    img = frame_with([(*FACE, colour)])
    if hand:
        x, y, s = HAND_BELOW
        img[y:y + s, x:x + s] = DARK
    return img


def make(tmp_path, extra=""):
    cfg = config.parse(f'[facetouch]\nhand_detector = "{write_hand_manifest(tmp_path)}"\nevery_settled = 3\n'
                       "[tracking]\nvotes_needed = 2\nwindow = 3\nreclassify_every = 5\n"
                       '[rules]\nalert_on_detector = ["facetouch"]\nglobal_cooldown_s = 0.0\n' + extra)
    det = Detector(write_detector_manifest(tmp_path), interpreter=BlobDetectorInterpreter())
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=ColourClassifierInterpreter())
    hand_i = DarkBlobHandInterpreter()
    hands = SsdDetector(write_hand_manifest(tmp_path), interpreter=hand_i)
    return Pipeline(det, clf, cfg, hand_detector=hands), hand_i, cfg


def test_touch_settles_by_n_of_m_in_its_own_channel_and_alerts(tmp_path):
    p, hand_i, cfg = make(tmp_path)
    rules = make_rules(cfg)
    events = []
    for i in range(2):
        r = p.process(Frame(face_frame(), float(i), i))
        events += rules.evaluate(r.tracks, float(i), r.sources, i)
    (t,) = p.tracker.tracks
    assert t.channels["facetouch"].label == "facetouch" and t.label == "no_mask"
    assert sorted((e.label, e.source, e.verdict) for e in events) == [
        ("facetouch", "hands", "violation"), ("no_mask", "classifier", "violation")]
    assert r.hands[t.id] and "hands" in r.timings and p.latency.count("hands") == 2
    assert rules.track_verdict(t) == "violation"


def test_one_touch_frame_is_not_a_verdict(tmp_path):
    p, _, _ = make(tmp_path)
    p.process(Frame(face_frame(), 0.0, 0))
    p.process(Frame(face_frame(hand=False), 0.0, 1))
    (t,) = p.tracker.tracks
    assert t.channels["facetouch"].label is None  # 1 facetouch + 1 no_facetouch of 3


def test_hand_stage_only_with_a_face_and_every_k_once_settled(tmp_path):
    p, hand_i, _ = make(tmp_path)
    empty = frame_with([])
    x, y, s = HAND_BELOW
    empty[y:y + s, x:x + s] = DARK
    for i in range(3):
        p.process(Frame(empty, 0.0, i))
    assert hand_i.invocations == 0  # a hand alone: no face, no hand stage
    for i in range(3, 13):
        p.process(Frame(face_frame(), 0.0, i))
    # unsettled at 3, settled at 4; then every 3rd frame: 7, 10
    assert hand_i.invocations == 4


def test_touch_ends_and_a_new_touch_alerts_again_with_its_own_cooldown(tmp_path):
    p, _, cfg = make(tmp_path, "track_cooldown_s = 1000.0\n")
    cfg.facetouch.cooldown_s = 5.0
    rules = make_rules(cfg)
    touch = []

    def step(i, img, now):
        r = p.process(Frame(img, now, i))
        touch.extend((now, e.alerted) for e in rules.evaluate(r.tracks, now, r.sources, i) if e.label == "facetouch")

    for i in range(2):
        step(i, face_frame(BLUE), 0.0)  # masked face touched
    for i in range(2, 6):
        step(i, face_frame(BLUE), 2.0)  # still touched: within facetouch cooldown (5 s)
    for i in range(6, 9):
        step(i, face_frame(BLUE), 6.0)  # still touched, cooldown over: alerts again
    assert touch == [(0.0, True), (6.0, True)]
    for i in range(9, 18):
        step(i, face_frame(BLUE, hand=False), 7.0)  # hand gone: no_facetouch settles (neutral)
    assert p.tracker.tracks[0].channels["facetouch"].label == "no_facetouch"
    for i in range(18, 27):
        step(i, face_frame(BLUE), 8.0)  # a new touch: a new verdict, alerts at once
    assert touch[-1] == (8.0, True) and len(touch) == 3


def test_config_rule_labels_with_the_hand_stage():
    cfg = config.parse('[facetouch]\nhand_detector = "x.json"\n[rules]\nalert_on_detector = ["facetouch"]\n')
    assert config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect"]) == []
    cfg = config.parse('[rules]\nalert_on_detector = ["facetouch"]\n')
    (p,) = config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect"])
    assert p.startswith("rules.alert_on_detector: 'facetouch' is not a label of the detector")
    cfg = config.parse('[facetouch]\nhand_detector = "x.json"\n')
    (p,) = config.rule_label_problems(cfg, ["face"], ["mask", "no_mask", "mask_incorrect"])
    assert "never alerts" in p


def test_run_gives_facetouch_and_no_mask_events(tmp_path):
    """`doorguard run` with the mask classifier and the hand stage: both verdicts are events
    (SQLite), and both alert."""
    det, clf, hands = (write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path),
                       write_hand_manifest(tmp_path))
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[facetouch]\nhand_detector = "{hands}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 '[rules]\nglobal_cooldown_s = 0.0\nalert_on_detector = ["facetouch"]\n')
    assert config.all_errors(p.read_text()) == []
    frames = [frame_with([])] * 2 + [face_frame()] * 8
    act = FakeActuators()
    r = service.Runner(config.load(p), source=ListSource(frames), actuators=act, notifier=FakeNotifier(),
                       detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter(),
                       hand_interpreter=DarkBlobHandInterpreter())
    assert r.run() == 0
    rows = sqlite3.connect(tmp_path / "state" / "events.sqlite3").execute(
        "SELECT verdict, label, source, alerted FROM events ORDER BY id").fetchall()
    assert sorted(rows) == [("violation", "facetouch", "hands", 1), ("violation", "no_mask", "classifier", 1)]
    assert act.names().count("alert") == 2
    assert any(line.strip().startswith("hands") for line in r.summary_lines)


def _stub_files(folder, manifest):
    """Write a stub .tflite for a fake manifest and record its real sha256 (the CLI verifies it)."""
    import json

    from edge.manifest import sha256_file

    m = json.loads(manifest.read_text())
    (folder / m["tflite"]).write_bytes(f"stub {m['name']}".encode())
    m["sha256"] = sha256_file(folder / m["tflite"])
    manifest.write_text(json.dumps(m))
    return manifest


def test_eval_facetouch_cli(tmp_path, monkeypatch, capsys):
    """`doorguard eval --facetouch`: precision/recall from the device's own decisions."""
    import json

    import cv2

    from edge import cli


    from edge.infer import runtime
    det = _stub_files(tmp_path, write_detector_manifest(tmp_path))
    clf = _stub_files(tmp_path, write_classifier_manifest(tmp_path))
    hands = _stub_files(tmp_path, write_hand_manifest(tmp_path))

    def fake_load(path, num_threads=2, backend=None):
        name = str(path)
        if "hands" in name:
            return DarkBlobHandInterpreter(), "stub"
        if "det" in name:
            return BlobDetectorInterpreter(), "stub"
        return ColourClassifierInterpreter(), "stub"

    monkeypatch.setattr(runtime, "load_interpreter", fake_load)
    photos = tmp_path / "shared" / "data" / "set"
    photos.mkdir(parents=True)
    scenes = {"touch1": face_frame(), "touch2": face_frame(BLUE), "clear1": face_frame(hand=False),
              "clear2": face_frame(BLUE, hand=False), "missed": frame_with([(*FACE, RED)])}
    scenes["missed"][5:15, 100:110] = DARK  # a hand far from the face: not a touch, labelled as one
    for stem, img in scenes.items():
        cv2.imwrite(str(photos / f"{stem}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    labels = tmp_path / "labels.csv"
    labels.write_text("path,touch,found_by\n" + "".join(
        f"set/{s}.png,{int(s != 'clear1' and s != 'clear2')},sampled\n" for s in scenes))
    out = tmp_path / "ft.json"
    rc = cli.main(["eval", "--facetouch", str(labels), "--detector", str(det), "--classifier", str(clf),
                   "--hands", str(hands), "--shared", str(tmp_path / "shared"), "--json", str(out), "--quiet"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 0, 1, 2)
    assert r["precision"] == 1.0 and r["recall"] == pytest.approx(2 / 3, abs=1e-3)
    assert r["wrong"]["missed"] == ["set/missed.png"]
    assert r["report_half"]["photos"] + r["tune_half"]["photos"] == 5
    assert r["hand_detector"]["name"] == "stub-hands" and r["model_precision"] == "int8"
    assert "face-touch: 5 photos (3 touching): precision 1.000" in capsys.readouterr().out
