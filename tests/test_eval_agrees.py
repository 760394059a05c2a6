"""`doorguard eval` and the device decide the same on the same frames (one verdict code).

The eval adapter (``convert.verify.evaluate.Pipeline``) and the device loop
(``edge.pipeline.Pipeline`` with one vote settling a verdict) run on the same
frames with the same stubs; every face must get the same label, the same
verdict and the same face-touch vote from both.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convert.verify.evaluate import pipeline_for
from edge import config
from edge.fakes import (BLUE, DARK, GREEN, RED, BlobDetectorInterpreter, ColourClassifierInterpreter,
                        DarkBlobHandInterpreter, frame_with, write_classifier_manifest, write_detector_manifest,
                        write_hand_manifest)
from edge.infer.models import Classifier, Detector
from edge.pipeline import Pipeline
from edge.infer.ssd import SsdDetector
from edge.track.tracking import MAIN
from edge.types import Frame, Verdict

COLOURS = [RED, BLUE, GREEN]


def _cfg(tmp_path, rules: str, hands: bool) -> config.Config:
    text = "[tracking]\nvotes_needed = 1\nwindow = 1\n[rules]\n" + rules
    if hands:
        text += f'[facetouch]\nhand_detector = "{write_hand_manifest(tmp_path)}"\n'
    return config.parse(text)


def _both(tmp_path, cfg, det_labels=("face",), hands=False):
    det = Detector(write_detector_manifest(tmp_path, labels=det_labels), interpreter=BlobDetectorInterpreter())
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=ColourClassifierInterpreter())
    hand = SsdDetector(write_hand_manifest(tmp_path), interpreter=DarkBlobHandInterpreter()) if hands else None
    return det, clf, hand


def _device(det, clf, hand, cfg, image):
    """What the Pi decides for each face of one frame (one vote settles: per-image mode)."""
    p = Pipeline(det, clf, cfg, hand_detector=hand)
    r = p.process(Frame(image, 0.0, 0))
    out = {}
    for t in r.tracks:
        main = t.channels[MAIN]
        touch = t.channels.get("facetouch")
        key = tuple(round(v, 3) for v in t.box.as_list())
        out[key] = (main.label, p.judge.rules.verdict_of(main.label, main.source),
                    touch.label if touch else None)
    return out


def _eval(det, clf, hand, cfg, image):
    """What `doorguard eval` decides for the same frame."""
    pipe = pipeline_for(det, clf, cfg, hand_detector=hand)
    preds = pipe.predict(image)
    touches = {tuple(round(v, 3) for v in j.detection.box.as_list()): j.votes.get("facetouch")
               for j in pipe.judgements(image)}
    out = {}
    for pr in preds:
        key = tuple(round(v, 3) for v in pr.box.as_list())
        t = touches[key]
        out[key] = (pr.label, pr.flagged, t.label if t else None)
    return out


def _scene(faces, hands):
    img = frame_with(faces)
    for x, y, s in hands:
        img[y:y + s, x:x + s] = DARK
    return img


@pytest.mark.parametrize("det_labels,rules", [
    (("face",), ""),
    # The yoloface-500k label file says "Face": the device casefolds, and so must eval.
    (("Face",), ""),
    # Nothing certain enough: neither flags.
    (("face",), "min_score = 0.95\n"),
    # A detector-judged label: flags only through alert_on_detector (eval used to flag a detector
    # label that was in the classifier's violating list, which the device never does).
    (("no_mask",), 'alert_on_classifier = ["no_mask"]\nalert_on_detector = []\n'),
    (("facetouch",), 'alert_on_detector = ["facetouch"]\n'),
])
def test_eval_and_device_agree_on_fixed_frames(tmp_path, det_labels, rules):
    cfg = _cfg(tmp_path, rules, hands=True)
    det, clf, hand = _both(tmp_path, cfg, det_labels, hands=True)
    frames = [_scene([(10, 10, 30, RED), (70, 40, 24, BLUE)], [(15, 41, 12)]),
              _scene([(5, 5, 8, RED), (60, 20, 28, GREEN)], []),
              _scene([(40, 30, 30, BLUE)], [(72, 30, 14)])]
    for img in frames:
        dev, ev = _device(det, clf, hand, cfg, img), _eval(det, clf, hand, cfg, img)
        assert dev.keys() == ev.keys()
        for k in dev:
            label, verdict, touch = dev[k]
            e_label, e_flagged, e_touch = ev[k]
            if label is not None:
                assert label == e_label
            assert (verdict == Verdict.VIOLATION) == e_flagged, (k, dev[k], ev[k])
            assert touch == e_touch


def test_no_classifier_eval_flags_only_what_the_device_flags(tmp_path):
    """Old eval: a detector-only run flagged a detector label found in alert_on_classifier."""
    cfg = _cfg(tmp_path, 'alert_on_classifier = ["no_mask"]\nalert_on_detector = []\n', hands=False)
    det = Detector(write_detector_manifest(tmp_path, labels=("no_mask",)), interpreter=BlobDetectorInterpreter())
    preds = pipeline_for(det, None, cfg).predict(frame_with([(10, 10, 30, RED)]))
    assert [(p.label, p.flagged) for p in preds] == [("no_mask", False)]


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 70), st.integers(6, 26), st.integers(0, 2)),
                max_size=3),
       st.lists(st.tuples(st.integers(0, 110), st.integers(0, 80), st.integers(4, 16)), max_size=2))
def test_eval_and_device_agree_on_random_frames(tmp_path_factory, faces, hands):
    tmp = tmp_path_factory.mktemp("agree")
    cfg = _cfg(tmp, 'alert_on_detector = ["facetouch"]\n', hands=True)
    det, clf, hand = _both(tmp, cfg, hands=True)
    img = _scene([(x, y, s, COLOURS[c]) for x, y, s, c in faces], hands)
    dev, ev = _device(det, clf, hand, cfg, img), _eval(det, clf, hand, cfg, img)
    assert dev.keys() == ev.keys()
    for k in dev:
        assert (dev[k][1] == Verdict.VIOLATION) == ev[k][1]
        assert dev[k][2] == ev[k][2]
        if dev[k][0] is not None:
            assert dev[k][0] == ev[k][0]
    assert np.all([v[2] in ("facetouch", "no_facetouch") for v in dev.values()])
