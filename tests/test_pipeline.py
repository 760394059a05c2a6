"""Pipeline: detector -> crop with margin -> classifier -> tracker, with interpreter stubs."""

from __future__ import annotations

import pytest

from edge import config
from edge.errors import ModelError
from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, frame_with,
                        write_classifier_manifest, write_detector_manifest)
from edge.infer.models import Classifier, Detector
from edge.pipeline import LatencyStats, Pipeline
from edge.types import Frame


def make(tmp_path, **tracking):
    cfg = config.parse("[tracking]\n" + "".join(f"{k} = {v}\n" for k, v in tracking.items()))
    det_i, clf_i = BlobDetectorInterpreter(), ColourClassifierInterpreter()
    det = Detector(write_detector_manifest(tmp_path), interpreter=det_i)
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=clf_i)
    return Pipeline(det, clf, cfg), det_i, clf_i


def test_detects_crops_and_classifies(tmp_path):
    p, det_i, clf_i = make(tmp_path)
    r = p.process(Frame(frame_with([(10, 10, 30, BLUE), (70, 40, 24, RED)]), 0.0, 0))
    boxes = sorted((round(d.box.x1), round(d.box.y1), round(d.box.x2), round(d.box.y2)) for d in r.detections)
    assert boxes == [(10, 10, 40, 40), (70, 40, 94, 64)]
    labels = sorted(c.label for c in r.classified.values())
    assert labels == ["mask", "no_mask"]
    assert set(r.timings) == {"det_pre", "det_infer", "det_post", "detect", "track", "classify", "pipeline"}
    assert p.model_hashes() == {"detector": "0" * 64, "classifier": "1" * 64}


def test_settled_tracks_are_classified_less_often(tmp_path):
    p, det_i, clf_i = make(tmp_path, votes_needed=2, window=3, reclassify_every=4)
    img = frame_with([(10, 10, 30, BLUE)])
    for i in range(10):
        p.process(Frame(img, 0.0, i))
    # frames 0,1 vote (unsettled); settled at 1; then every 4th frame: 5, 9
    assert clf_i.invocations == 4
    assert det_i.invocations == 10
    (t,) = p.tracker.tracks
    assert t.label == "mask"


def test_unsettled_tracks_are_classified_every_frame(tmp_path):
    p, _, clf_i = make(tmp_path, votes_needed=3, window=3)
    for i in range(5):
        colour = BLUE if i % 2 else RED  # flip-flopping: never 3 of 3
        p.process(Frame(frame_with([(10, 10, 30, colour)]), 0.0, i))
    assert clf_i.invocations == 5
    assert p.tracker.tracks[0].label is None


def test_small_boxes_ignored(tmp_path):
    p, _, clf_i = make(tmp_path)
    p.min_px = 20
    r = p.process(Frame(frame_with([(10, 10, 12, BLUE)]), 0.0, 0))
    assert r.detections == [] and clf_i.invocations == 0


def test_detector_label_tracks_vote_without_classifier(tmp_path):
    cfg = config.parse('[models]\nclassify_labels = []\n[tracking]\nvotes_needed = 2\nwindow = 2\n')
    det = Detector(write_detector_manifest(tmp_path, labels=("facetouch",)), interpreter=BlobDetectorInterpreter())
    clf_i = ColourClassifierInterpreter()
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=clf_i)
    p = Pipeline(det, clf, cfg)
    for i in range(2):
        r = p.process(Frame(frame_with([(10, 10, 30, RED)]), 0.0, i))
    assert r.sources == {1: "detector"}
    assert p.tracker.tracks[0].label == "facetouch"
    assert clf_i.invocations == 0


def test_crop_margin_override(tmp_path):
    p, _, _ = make(tmp_path)
    assert p.margin == 0.1  # from the manifest
    cfg = config.parse("[models]\ncrop_margin = 0.3\n")
    p2 = Pipeline(p.detector, p.classifier, cfg)
    assert p2.margin == 0.3


def test_from_config_missing_model_is_model_error(tmp_path):
    cfg = config.parse(f'[models]\ndetector = "{tmp_path}/nope.json"\n')
    with pytest.raises(ModelError, match="not found"):
        Pipeline.from_config(cfg)


def test_from_config_hash_mismatch(tmp_path):
    m = write_detector_manifest(tmp_path)
    (tmp_path / "stub-det.tflite").write_bytes(b"not the model")
    cfg = config.parse(f'[models]\ndetector = "{m}"\n')
    with pytest.raises(ModelError, match="does not match its manifest"):
        Pipeline.from_config(cfg)


def test_latency_percentiles():
    s = LatencyStats()
    for v in range(1, 101):
        s.add("detect", float(v))
    p = s.percentiles("detect")
    assert p[50] == pytest.approx(50.5) and p[99] == pytest.approx(99.01)
    assert s.mean("detect") == pytest.approx(50.5)
    assert s.summary()[0].startswith("detect")


def test_latency_memory_is_bounded():
    s = LatencyStats(max_samples=10)
    for v in range(25):
        s.add("x", float(v))
    assert s.count("x") == 25
    assert s.percentiles("x", (0, 100)) == {0: 15.0, 100: 24.0}  # the newest 10


def test_which_boxes_the_classifier_judges_is_decided_once(tmp_path):
    """FaceJudge.source_of is the only such decision (rules and eval ask it)."""
    p, _, _ = make(tmp_path)
    assert p.source_of("Face") == "classifier"  # yoloface-500k's label file says "Face"
    assert p.source_of("person") == "detector"
    alone = Pipeline(p.detector, None, p.cfg)
    assert alone.source_of("face") == "detector"  # no classifier: the detector label is the finding


def test_extra_classifier_votes_in_its_own_channel(tmp_path):
    cfg = config.parse("[tracking]\nvotes_needed = 1\nwindow = 1\n")
    det = Detector(write_detector_manifest(tmp_path), interpreter=BlobDetectorInterpreter())
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=ColourClassifierInterpreter())
    other_i = ColourClassifierInterpreter()
    other = Classifier(write_classifier_manifest(tmp_path), interpreter=other_i)
    other.manifest = other.manifest.model_copy(update={"name": "identity"})
    p = Pipeline(det, clf, cfg, extra_classifiers=[other])
    r = p.process(Frame(frame_with([(10, 10, 30, RED)]), 0.0, 0))
    (t,) = r.tracks
    assert t.label == "no_mask" and t.channels["identity"].label == "no_mask"
    assert other_i.invocations == 1 and p.latency.count("classify:identity") == 1
    assert set(p.model_hashes()) == {"detector", "classifier", "classifier:identity"}


def test_detector_runs_on_the_lores_view_and_boxes_come_back_in_frame_pixels(tmp_path):
    import cv2

    p, det_i, clf_i = make(tmp_path)
    # A 2x main frame and its half-size lores view (what picamera2's ISP would deliver).
    small = frame_with([(20, 10, 24, BLUE)])
    main = cv2.resize(small, (small.shape[1] * 2, small.shape[0] * 2), interpolation=cv2.INTER_NEAREST)
    seen = []
    real = p.detector.preprocess
    p.detector.preprocess = lambda img: seen.append(img.shape) or real(img)
    r = p.process(Frame(main, 0.0, 0, lores=small))
    assert seen == [small.shape]
    assert len(r.detections) == 1
    b = r.detections[0].box
    assert (round(b.x1), round(b.y1), round(b.x2), round(b.y2)) == (40, 20, 88, 68)
    assert [c.label for c in r.classified.values()] == ["mask"]  # crop from the main frame


def test_pixel_privacy_masks_black_out_the_lores_view_at_its_scale(tmp_path):
    import cv2

    cfg = config.parse("[[privacy.masks]]\nunits = 'pixels'\npoints = [[0, 0], [128, 0], [128, 192], [0, 192]]\n")
    det = Detector(write_detector_manifest(tmp_path), interpreter=BlobDetectorInterpreter())
    clf = Classifier(write_classifier_manifest(tmp_path), interpreter=ColourClassifierInterpreter())
    p = Pipeline(det, clf, cfg)
    # Two faces in a 256x192 main frame: one under the mask (left half), one right of it.
    small = frame_with([(10, 30, 24, BLUE), (90, 30, 24, RED)])
    main = cv2.resize(small, (256, 192), interpolation=cv2.INTER_NEAREST)
    seen = []
    real = p.detector.preprocess
    p.detector.preprocess = lambda img: seen.append(img.copy()) or real(img)
    r = p.process(Frame(main, 0.0, 0, lores=small))
    assert seen[0].shape == small.shape and not seen[0][:, :64].any() and seen[0][:, 64:].any()
    assert not r.frame.image[:, :128].any()
    assert [round(d.box.x1) for d in r.detections] == [180]  # only the unmasked face, in main pixels
