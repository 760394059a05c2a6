"""Matching and metrics of the full-pipeline evaluation (pure: no I/O, no models).

One image gives ground-truth faces (box + true class, already mapped to the
classifier's labels) and the pipeline's predictions (box + predicted class +
flag decision + flag score). Matching is greedy by IoU: every (truth,
prediction) pair with IoU above the threshold is taken in order of decreasing
IoU, each face and each prediction at most once. A face left without a
prediction is ``missed``; a prediction left without a face is a false
detection.

The figures follow issue 5 (and the dataroots table they compete with):

- ``detector_recall`` = detected / faces, ``detector_precision`` = detected /
  (detected + false detections);
- ``classifier_accuracy`` = correctly classified / detected faces;
- ``tnr`` = violating faces that the pipeline flags / all violating faces
  (missed faces count as not flagged): the share of rule breakers caught;
- ``fnr`` = compliant faces that the pipeline flags / all compliant faces:
  the share of compliant people wrongly alarmed;
- ``confusion`` = true class -> predicted class -> count, ``missed`` being a
  predicted class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from edge.types import Box

MISSED = "missed"
#: Face size buckets (shorter box side, pixels) for recall by size.
SIZE_BUCKETS = ((0, 12), (12, 24), (24, 48), (48, float("inf")))
#: Buckets (shorter box side at the detector input, pixels after letterbox/resize) for
#: recall by input size: what the detector actually sees.
INPUT_SIZE_BUCKETS = ((0, 8), (8, 16), (16, 32), (32, 64), (64, float("inf")))
#: Label of a detected face the classifier could not judge (e.g. an empty crop).
UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class Truth:
    """One ground-truth face: box in image pixels and its class (classifier label)."""

    box: Box
    label: str


@dataclass(frozen=True)
class Prediction:
    """One pipeline output for a face.

    Attributes:
        box: detector box in image pixels.
        score: detector confidence.
        label: the classifier's (or a joint detector's) class for the face.
        flagged: whether the pipeline's rule alarms on this face.
        flag_score: how strongly it points to a violation (e.g. 1 - p(mask)),
            the score the ROC curve sweeps.
    """

    box: Box
    score: float
    label: str
    flagged: bool
    flag_score: float


@dataclass(frozen=True)
class ImageMatch:
    """Result of matching one image: (truth index, prediction index, IoU) pairs and leftovers."""

    pairs: list[tuple[int, int, float]]
    missed: list[int]
    false_detections: list[int]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of N x 4 and M x 4 boxes (x1, y1, x2, y2), as ``Box.iou`` computes it.

    The one IoU matrix of the toolchain: the evaluation's matching, the quantization
    report's VOC matching, the teacher's and copy-paste's overlap tests.

    Returns:
        N x M, in the boxes' float type (float32 at the least); 0 where a union is empty.
    """
    dtype = np.result_type(np.asarray(a).dtype, np.asarray(b).dtype, np.float32)
    a = np.asarray(a, dtype).reshape(-1, 4)
    b = np.asarray(b, dtype).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_array(boxes: Sequence[Box]) -> np.ndarray:
    """Boxes as an N x 4 float64 array (x1, y1, x2, y2)."""
    return np.asarray([b.as_list() for b in boxes], np.float64).reshape(-1, 4)


def match_greedy(truths: Sequence[Box], preds: Sequence[Box], iou_threshold: float = 0.5) -> ImageMatch:
    """Greedy one-to-one matching by decreasing IoU, keeping pairs with IoU > threshold.

    Ties are broken by truth index, then prediction index, so the result is
    deterministic. (The quantization report's mAP keeps VOC's protocol instead:
    ``convert.verify.detect_report._match``.)

    Args:
        truths: ground-truth boxes of one image.
        preds: predicted boxes of the same image.
        iou_threshold: a pair needs IoU strictly above this.

    Returns:
        The matched pairs (in the order taken), the unmatched truth indices
        (missed faces) and the unmatched prediction indices (false detections).
    """
    m = iou_matrix(box_array(truths), box_array(preds))
    candidates = [(-m[i, j], i, j) for i in range(len(truths)) for j in range(len(preds))
                  if m[i, j] > iou_threshold]
    candidates.sort()
    used_t: set[int] = set()
    used_p: set[int] = set()
    pairs: list[tuple[int, int, float]] = []
    for neg, i, j in candidates:
        if i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        pairs.append((i, j, -neg))
    missed = [i for i in range(len(truths)) if i not in used_t]
    false = [j for j in range(len(preds)) if j not in used_p]
    return ImageMatch(pairs, missed, false)


@dataclass
class FaceRecord:
    """One ground-truth face after matching (for metrics, ROC and the per-face dump)."""

    image: str
    truth: str
    predicted: str  # a class label, or MISSED
    flagged: bool
    flag_score: float | None  # None when missed
    iou: float | None
    box: list[float]
    input_px: float | None = None  # shorter side at the detector input (None: input size unknown)
    group: str | None = None  # e.g. the mask colour of a masked face (convert.verify.conditions.mask_colour)


@dataclass
class EvalAccumulator:
    """Collects per-image matches; ``summary`` turns them into the eval figures.

    Args:
        violating: true/predicted classes that break the rule (e.g. no_mask,
            mask_incorrect). Every other true class counts as compliant.
        iou_threshold: matching threshold (IoU strictly above it).
        input_size: the detector's input (width, height), for recall by the size a
            face has at the detector input; ``resize`` is how frames get there
            (``letterbox``: one scale for both axes; ``stretch``: one per axis).
    """

    violating: frozenset[str]
    iou_threshold: float = 0.5
    input_size: tuple[int, int] | None = None
    resize: str = "letterbox"
    images: int = 0
    faces: list[FaceRecord] = field(default_factory=list)
    false_detections: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def input_px(self, box: Box, image_size: tuple[int, int] | None) -> float | None:
        """Shorter side of ``box`` at the detector input (None when sizes are unknown)."""
        if self.input_size is None or image_size is None:
            return None
        sx, sy = self.input_size[0] / image_size[0], self.input_size[1] / image_size[1]
        if self.resize != "stretch":
            sx = sy = min(sx, sy)
        return min(box.width * sx, box.height * sy)

    def add(self, image: str, truths: Sequence[Truth], preds: Sequence[Prediction],
            seconds: float = 0.0, image_size: tuple[int, int] | None = None,
            groups: Sequence[str | None] | None = None) -> ImageMatch:
        """Match one image's predictions to its faces and record the outcome.

        Args:
            image_size: (width, height) of the frame, for recall by input size.
            groups: one group name (or None) per truth, for figures by group.
        """
        match = match_greedy([t.box for t in truths], [p.box for p in preds], self.iou_threshold)
        self.images += 1
        self.seconds += seconds
        by_truth = {i: (j, v) for i, j, v in match.pairs}
        for i, t in enumerate(truths):
            px = self.input_px(t.box, image_size)
            if i in by_truth:
                j, v = by_truth[i]
                p = preds[j]
                self.faces.append(FaceRecord(image, t.label, p.label, bool(p.flagged),
                                             float(p.flag_score), float(v), t.box.as_list(), px,
                                             groups[i] if groups else None))
            else:
                self.faces.append(FaceRecord(image, t.label, MISSED, False, None, None, t.box.as_list(), px,
                                             groups[i] if groups else None))
        for j in match.false_detections:
            p = preds[j]
            self.false_detections.append({
                "image": image, "box": [round(c, 1) for c in p.box.as_list()],
                "score": round(float(p.score), 4), "label": p.label, "flagged": bool(p.flagged),
            })
        return match

    def summary(self) -> dict:
        """The eval figures (see the module docstring); ratios are None when undefined."""
        return summarize(self.faces, len(self.false_detections), self.images, self.violating,
                         self.seconds, flagged_false=sum(f["flagged"] for f in self.false_detections))


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def summarize(faces: Sequence[FaceRecord], false_detections: int, images: int,
              violating: Iterable[str], seconds: float = 0.0, flagged_false: int = 0) -> dict:
    """Compute the eval figures from matched faces.

    Args:
        faces: one record per ground-truth face.
        false_detections: number of predictions matched to no face.
        images: number of images evaluated.
        violating: classes that break the rule.
        seconds: total pipeline time over the images.
        flagged_false: false detections that the rule flagged (false alarms on non-faces).

    Returns:
        A JSON-ready dict with the fields of issue 5 plus per-class figures.
    """
    violating = frozenset(violating)
    n = len(faces)
    detected = [f for f in faces if f.predicted != MISSED]
    correct = sum(f.predicted == f.truth for f in detected)
    viol = [f for f in faces if f.truth in violating]
    comp = [f for f in faces if f.truth not in violating]
    classes = sorted({f.truth for f in faces})
    predicted_classes = sorted({f.predicted for f in faces} - {MISSED}) + [MISSED]
    confusion = {t: {p: 0 for p in predicted_classes} for t in classes}
    for f in faces:
        confusion[f.truth][f.predicted] += 1
    per_class = {}
    for c in classes:
        fc = [f for f in faces if f.truth == c]
        dc = [f for f in fc if f.predicted != MISSED]
        per_class[c] = {
            "faces": len(fc),
            "detected": len(dc),
            "detector_recall": _ratio(len(dc), len(fc)),
            "classifier_recall": _ratio(sum(f.predicted == c for f in dc), len(dc)),
            "flagged": sum(f.flagged for f in fc),
            "flag_rate": _ratio(sum(f.flagged for f in fc), len(fc)),
        }
    by_size = {}
    for lo, hi in SIZE_BUCKETS:
        fs = [f for f in faces if lo <= min(f.box[2] - f.box[0], f.box[3] - f.box[1]) < hi]
        key = f"{lo}-{hi}px" if hi != float("inf") else f">={lo}px"
        by_size[key] = {"faces": len(fs), "detected": sum(f.predicted != MISSED for f in fs),
                        "detector_recall": _ratio(sum(f.predicted != MISSED for f in fs), len(fs))}
    by_input = {}
    if faces and all(f.input_px is not None for f in faces):
        for lo, hi in INPUT_SIZE_BUCKETS:
            fs = [f for f in faces if lo <= f.input_px < hi]
            key = f"{lo}-{hi}px" if hi != float("inf") else f">={lo}px"
            by_input[key] = {
                "faces": len(fs), "detected": sum(f.predicted != MISSED for f in fs),
                "detector_recall": _ratio(sum(f.predicted != MISSED for f in fs), len(fs)),
                "by_class": {c: _ratio(sum(f.predicted != MISSED for f in fs if f.truth == c),
                                       sum(f.truth == c for f in fs)) for c in classes},
            }
    by_group = {}
    for g in sorted({f.group for f in faces if f.group is not None}):
        fs = [f for f in faces if f.group == g]
        v = [f for f in fs if f.truth in violating]
        c = [f for f in fs if f.truth not in violating]
        by_group[g] = {"faces": len(fs), "detector_recall": _ratio(sum(f.predicted != MISSED for f in fs), len(fs)),
                       "tnr": _ratio(sum(f.flagged for f in v), len(v)), "fnr": _ratio(sum(f.flagged for f in c), len(c))}
    return {
        "images": images,
        "faces": n,
        "detected": len(detected),
        "missed": n - len(detected),
        "false_detections": false_detections,
        "detector_recall": _ratio(len(detected), n),
        "detector_precision": _ratio(len(detected), len(detected) + false_detections),
        "classifier_accuracy": _ratio(correct, len(detected)),
        "tnr": _ratio(sum(f.flagged for f in viol), len(viol)),
        "fnr": _ratio(sum(f.flagged for f in comp), len(comp)),
        "violating_faces": len(viol),
        "violating_flagged": sum(f.flagged for f in viol),
        "compliant_faces": len(comp),
        "compliant_flagged": sum(f.flagged for f in comp),
        "false_alarms_on_non_faces": flagged_false,
        "false_detections_per_135_images": (false_detections * 135 / images) if images else None,
        "confusion": confusion,
        "per_class": per_class,
        "recall_by_face_size": by_size,
        "recall_by_input_size": by_input or None,
        "detector_recall_by_class": {c: per_class[c]["detector_recall"] for c in classes},
        "by_group": by_group or None,
        "seconds_per_image": (seconds / images) if images else None,
    }


def roc_curve(labels: Sequence[bool], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of a score that should be high for positives.

    Args:
        labels: True for positives (violating faces).
        scores: one score per item.

    Returns:
        (false positive rates, true positive rates, thresholds): a point per
        distinct score, from (0, 0) at threshold +inf to (1, 1). A point means
        "flag when score >= threshold". Rates are nan when a class is empty.
    """
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    y, s = y[order], s[order]
    pos, neg = int(y.sum()), int((~y).sum())
    # Last index of each run of equal scores: every tie is crossed at once.
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.zeros(0, int)
    tp = np.cumsum(y)[last] if len(s) else np.zeros(0)
    fp = np.cumsum(~y)[last] if len(s) else np.zeros(0)
    tpr = np.r_[0.0, tp / pos] if pos else np.full(len(last) + 1, np.nan)
    fpr = np.r_[0.0, fp / neg] if neg else np.full(len(last) + 1, np.nan)
    thr = np.r_[np.inf, s[last]]
    return fpr, tpr, thr


def auc(fpr: np.ndarray, tpr: np.ndarray) -> float | None:
    """Area under a ROC curve by the trapezoid rule (None when undefined)."""
    if len(fpr) < 2 or np.isnan(fpr).any() or np.isnan(tpr).any():
        return None
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def flag_roc(faces: Sequence[FaceRecord], violating: Iterable[str]) -> dict:
    """ROC of the flag score over the detected faces (violating = positive).

    Missed faces have no score and are left out: this curve is about the
    classifier's decision, while ``tnr`` already charges misses to the pipeline.
    """
    violating = frozenset(violating)
    det = [f for f in faces if f.flag_score is not None]
    fpr, tpr, thr = roc_curve([f.truth in violating for f in det], [f.flag_score for f in det])
    return {"fpr": fpr, "tpr": tpr, "thresholds": thr, "auc": auc(fpr, tpr),
            "positives": sum(f.truth in violating for f in det),
            "negatives": sum(f.truth not in violating for f in det)}


def threshold_sweep(images: Sequence[tuple[Sequence[Box], Sequence[Box], Sequence[float]]],
                    thresholds: Iterable[float], iou_threshold: float = 0.5) -> list[dict]:
    """Detector recall and false detections at each score threshold.

    Keeping the boxes with score >= t of a low-threshold run equals running at
    t: greedy NMS only lets a box be suppressed by a higher-scoring one, which
    survives any threshold the lower one does.

    Args:
        images: per image (truth boxes, predicted boxes, their scores), from a
            run at a threshold below every value swept.
        thresholds: score thresholds to evaluate.
        iou_threshold: matching threshold.

    Returns:
        One row per threshold: threshold, detected, faces, recall, false_detections,
        precision, false_per_image.
    """
    faces = sum(len(t) for t, _, _ in images)
    rows = []
    for thr in thresholds:
        detected = false = 0
        for truths, boxes, scores in images:
            keep = [b for b, s in zip(boxes, scores) if s >= thr]
            m = match_greedy(truths, keep, iou_threshold)
            detected += len(m.pairs)
            false += len(m.false_detections)
        rows.append({
            "threshold": float(thr), "detected": detected, "faces": faces,
            "recall": _ratio(detected, faces), "false_detections": false,
            "precision": _ratio(detected, detected + false),
            "false_per_image": false / len(images) if images else None,
        })
    return rows


def pick_threshold(sweep: Sequence[dict], max_false_per_image: float | None = None) -> dict:
    """Choose a detector threshold from a sweep on a training set.

    With ``max_false_per_image``: the lowest threshold (highest recall) whose
    false detections stay within that budget; when none does, the highest one
    swept, marked ``within_budget`` False. Without it: the threshold of the
    best F1 (recall and precision weighted alike; ties go to the lower
    threshold), marked with its ``f1``.
    """
    rows = sorted(sweep, key=lambda r: r["threshold"])
    if max_false_per_image is None:
        def f1(r):
            p, q = r["precision"] or 0.0, r["recall"] or 0.0
            return 2 * p * q / (p + q) if p + q else 0.0

        best = max(rows, key=lambda r: (round(f1(r), 9), -r["threshold"]))
        return {**best, "f1": f1(best), "rule": "max_f1"}
    for r in rows:
        if r["false_per_image"] is not None and r["false_per_image"] <= max_false_per_image:
            return {**r, "within_budget": True}
    return {**rows[-1], "within_budget": False}
