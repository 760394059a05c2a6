"""Matching and eval metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from convert.verify.metrics import (
    MISSED,
    EvalAccumulator,
    Prediction,
    Truth,
    auc,
    box_array,
    flag_roc,
    iou_matrix,
    match_greedy,
    roc_curve,
)
from edge.types import Box

VIOL = frozenset({"no_mask", "mask_incorrect"})


def B(x1, y1, x2, y2):
    return Box(float(x1), float(y1), float(x2), float(y2))


def P(box, label, flagged=None, flag_score=None, score=0.9):
    if flagged is None:
        flagged = label in VIOL
    if flag_score is None:
        flag_score = 0.9 if flagged else 0.1
    return Prediction(box, score, label, flagged, flag_score)


def test_iou_hand_computed():
    # 10x10 boxes shifted by 5 in x: inter 50, union 150.
    assert B(0, 0, 10, 10).iou(B(5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_greedy_takes_highest_iou_first():
    # Both truths overlap pred 0 (IoU 1.0 and 90/110 = 0.82); pred 1 overlaps nothing.
    # Greedy by IoU: (t0,p0) first, so t1 is missed and pred 1 is a false detection.
    t = [B(0, 0, 10, 10), B(1, 0, 11, 10)]
    p = [B(0, 0, 10, 10), B(30, 30, 40, 40)]
    m = match_greedy(t, p)
    assert m.pairs == [(0, 0, 1.0)]
    assert m.missed == [1]
    assert m.false_detections == [1]


def test_greedy_prefers_better_pair_not_first_truth():
    # t0 vs p0: overlap 8x10 -> IoU 80/120 = 0.667; t1 vs p0: identical -> 1.0.
    # Greedy by IoU gives p0 to t1 and leaves t0 missed even though t0 comes first.
    t = [B(2, 0, 12, 10), B(0, 0, 10, 10)]
    p = [B(0, 0, 10, 10)]
    m = match_greedy(t, p)
    assert m.pairs == [(1, 0, 1.0)]
    assert m.missed == [0]
    assert m.false_detections == []


def test_threshold_is_strict():
    # IoU exactly 0.5: 10x10 vs 10x20 containing it -> 100/200.
    t = [B(0, 0, 10, 10)]
    p = [B(0, 0, 10, 20)]
    assert match_greedy(t, p, 0.5).pairs == []
    assert len(match_greedy(t, p, 0.49).pairs) == 1


def test_empty_inputs():
    m = match_greedy([], [B(0, 0, 1, 1)])
    assert m.pairs == [] and m.missed == [] and m.false_detections == [0]
    m = match_greedy([B(0, 0, 1, 1)], [])
    assert m.missed == [0] and m.false_detections == []


def test_summary_hand_computed():
    acc = EvalAccumulator(violating=VIOL)
    # Image 1: three faces. mask -> mask (not flagged), no_mask -> no_mask (flagged),
    # mask_incorrect missed. Plus one false detection (flagged).
    t1 = [Truth(B(0, 0, 10, 10), "mask"), Truth(B(20, 0, 30, 10), "no_mask"),
          Truth(B(40, 0, 50, 10), "mask_incorrect")]
    p1 = [P(B(0, 0, 10, 10), "mask"), P(B(20, 0, 30, 10), "no_mask"),
          P(B(100, 100, 110, 110), "no_mask")]
    acc.add("a.jpg", t1, p1, seconds=0.2)
    # Image 2: two faces. mask -> no_mask (flagged: a false alarm), no_mask -> mask (not flagged).
    t2 = [Truth(B(0, 0, 10, 10), "mask"), Truth(B(20, 0, 30, 10), "no_mask")]
    p2 = [P(B(0, 0, 10, 10), "no_mask"), P(B(20, 0, 30, 10), "mask")]
    acc.add("b.jpg", t2, p2, seconds=0.4)
    s = acc.summary()
    assert s["images"] == 2
    assert s["faces"] == 5
    assert s["detected"] == 4
    assert s["missed"] == 1
    assert s["false_detections"] == 1
    assert s["detector_recall"] == pytest.approx(4 / 5)
    assert s["detector_precision"] == pytest.approx(4 / 5)
    # Correct among detected: mask->mask, no_mask->no_mask = 2 of 4.
    assert s["classifier_accuracy"] == pytest.approx(0.5)
    # Violating faces: no_mask (flagged), mask_incorrect (missed), no_mask (not flagged) -> 1/3.
    assert s["tnr"] == pytest.approx(1 / 3)
    # Compliant faces: mask (not flagged), mask (flagged) -> 1/2.
    assert s["fnr"] == pytest.approx(0.5)
    assert s["confusion"] == {
        "mask": {"mask": 1, "no_mask": 1, MISSED: 0},
        "mask_incorrect": {"mask": 0, "no_mask": 0, MISSED: 1},
        "no_mask": {"mask": 1, "no_mask": 1, MISSED: 0},
    }
    assert s["seconds_per_image"] == pytest.approx(0.3)
    assert s["false_alarms_on_non_faces"] == 1
    assert s["false_detections_per_135_images"] == pytest.approx(135 / 2)
    assert s["per_class"]["no_mask"] == {
        "faces": 2, "detected": 2, "detector_recall": 1.0, "classifier_recall": 0.5,
        "flagged": 1, "flag_rate": 0.5,
    }
    assert s["per_class"]["mask_incorrect"]["detector_recall"] == 0.0
    # All five faces are 10 px: the smallest size bucket holds them all.
    assert s["recall_by_face_size"]["0-12px"] == {"faces": 5, "detected": 4, "detector_recall": 0.8}
    assert s["recall_by_face_size"][">=48px"]["detector_recall"] is None
    assert s["per_class"]["mask_incorrect"]["classifier_recall"] is None


def test_flag_follows_decision_not_label():
    # A face classified no_mask but not flagged (e.g. below the rule's min score)
    # counts as correct for the classifier and as not flagged for tnr.
    acc = EvalAccumulator(violating=VIOL)
    acc.add("a", [Truth(B(0, 0, 10, 10), "no_mask")], [P(B(0, 0, 10, 10), "no_mask", flagged=False)])
    s = acc.summary()
    assert s["classifier_accuracy"] == 1.0
    assert s["tnr"] == 0.0
    assert s["fnr"] is None  # no compliant face: undefined, not 0


def test_empty_set_gives_none_ratios():
    s = EvalAccumulator(violating=VIOL).summary()
    assert s["faces"] == 0
    assert s["detector_recall"] is None and s["seconds_per_image"] is None


def test_iou_matrix_is_box_iou():
    # One IoU matrix for the evaluation (Box.iou per pair before) and the quantization
    # report (arrays, union floored at 1e-9 before): it keeps Box.iou's figures, 0 for an empty union.
    a = [B(0, 0, 10, 10), B(5, 5, 5, 5)]
    b = [B(5, 0, 15, 10), B(5, 5, 5, 5), B(20, 20, 30, 30)]
    m = iou_matrix(box_array(a), box_array(b))
    assert m.dtype == np.float64
    assert m.tolist() == [[x.iou(y) for y in b] for x in a]
    assert m[0, 0] == pytest.approx(1 / 3) and m[1, 1] == 0.0
    assert iou_matrix(np.zeros((0, 4), np.float32), box_array(b)).shape == (0, 3)
    assert iou_matrix(np.array([[0, 0, 2, 2]]), np.array([[1, 1, 3, 3]]))[0, 0] == pytest.approx(1 / 7)


def test_roc_hand_computed():
    # Scores 0.9(P) 0.8(N) 0.7(P) 0.7(N) 0.1(N): positives 2, negatives 3.
    fpr, tpr, thr = roc_curve([True, False, True, False, False], [0.9, 0.8, 0.7, 0.7, 0.1])
    np.testing.assert_allclose(fpr, [0, 0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    np.testing.assert_allclose(thr[1:], [0.9, 0.8, 0.7, 0.1])
    # Area: 1/3*0.5 + 1/3*0.75 + 1/3*1 = 0.75.
    assert auc(fpr, tpr) == pytest.approx(0.75)


def test_roc_one_class_is_undefined():
    fpr, tpr, _ = roc_curve([True, True], [0.2, 0.4])
    assert np.isnan(fpr).all()
    assert auc(fpr, tpr) is None


def test_flag_roc_leaves_out_missed_faces():
    acc = EvalAccumulator(violating=VIOL)
    acc.add("a", [Truth(B(0, 0, 10, 10), "no_mask"), Truth(B(20, 0, 30, 10), "mask"),
                  Truth(B(40, 0, 50, 10), "no_mask")],
            [P(B(0, 0, 10, 10), "no_mask", flag_score=0.8), P(B(20, 0, 30, 10), "mask", flag_score=0.3)])
    r = flag_roc(acc.faces, VIOL)
    assert r["positives"] == 1 and r["negatives"] == 1
    assert r["auc"] == pytest.approx(1.0)


def test_threshold_sweep_and_pick():
    from convert.verify.metrics import pick_threshold, threshold_sweep

    # Image 1: a face found at 0.9, a false box at 0.4. Image 2: a face found only at 0.3,
    # a false box at 0.2.
    images = [
        ([B(0, 0, 10, 10)], [B(0, 0, 10, 10), B(50, 50, 60, 60)], [0.9, 0.4]),
        ([B(0, 0, 10, 10)], [B(1, 0, 11, 10), B(50, 50, 60, 60)], [0.3, 0.2]),
    ]
    rows = threshold_sweep(images, [0.1, 0.35, 0.5])
    assert [(r["detected"], r["false_detections"]) for r in rows] == [(2, 2), (1, 1), (1, 0)]
    assert rows[0]["recall"] == 1.0 and rows[1]["precision"] == 0.5
    # Budget 0.5 false per image: 0.35 gives 1/2 = 0.5 -> chosen (lowest within budget).
    assert pick_threshold(rows, 0.5)["threshold"] == 0.35
    # Budget 0: only 0.5 qualifies.
    assert pick_threshold(rows, 0.0)["threshold"] == 0.5
    # No threshold within budget: the highest, flagged.
    p = pick_threshold(rows[:2], 0.0)
    assert p["threshold"] == 0.35 and p["within_budget"] is False
    # Max F1: 0.1 -> P 0.5 R 1 (F1 2/3); 0.35 -> P .5 R .5 (.5); 0.5 -> P 1 R .5 (2/3): tie -> lower.
    best = pick_threshold(rows)
    assert best["threshold"] == 0.1 and best["f1"] == pytest.approx(2 / 3)
