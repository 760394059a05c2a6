"""Horizontal-flip test-time augmentation on a detector (issue 15): does running the same weights on
the frame and on its mirror image, and fusing the two passes, find more faces?

    .venv/bin/python benchmarks/flip_tta.py --detector default=models/yoloface-500k-v2-facemask.json \
        --mode mean --mode max --json build/flip.json

No training. Each pass keeps boxes down to ``FLOOR``; the mirror pass's boxes are mapped back and
matched to the first pass's (greedy, best score first, IoU > 0.5). A matched pair becomes one box
(the two boxes weighted by score) scored by ``mean`` (the mean of the two; a box only one pass found
keeps half its score) or ``max`` (the higher). Then the threshold and NMS. The threshold of each
mode is chosen on facemask853 train by the rule of ``convert.build_models.tune_threshold`` (best
detector F1 at IoU > 0.5, config ``min_face_px``), then the validation sets are measured with
doorguard's classifier as in `benchmarks/detector_recipes.py`. The cost is two detector invokes per
frame the motion gate lets through.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODES = ("mean", "max")
#: Lowest score each pass keeps before fusing.
FLOOR = 0.05
SETS = ("dataroots-val", "facemask853-val-clean", "adityap27-valid-clean")


def fuse(a: np.ndarray, sa: np.ndarray, b: np.ndarray, sb: np.ndarray, mode: str,
         match_iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Fuse two passes' boxes (N x 4 / M x 4, x1 y1 x2 y2, in the same frame) and scores -> (boxes,
    scores), one row per matched pair and per box only one pass found (before threshold and NMS)."""
    from convert.verify.metrics import iou_matrix

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    a, b = np.asarray(a, np.float32).reshape(-1, 4), np.asarray(b, np.float32).reshape(-1, 4)
    sa, sb = np.asarray(sa, np.float32), np.asarray(sb, np.float32)
    ious = iou_matrix(a, b)
    alone = 0.5 if mode == "mean" else 1.0
    free = np.ones(len(b), bool)
    boxes, scores = [], []
    for i in np.argsort(-sa, kind="stable"):
        cand = np.flatnonzero(free & (ious[i] > match_iou)) if len(b) else np.zeros(0, int)
        if len(cand):
            j = cand[np.argmax(ious[i, cand])]
            free[j] = False
            boxes.append((a[i] * sa[i] + b[j] * sb[j]) / max(sa[i] + sb[j], 1e-9))
            scores.append((sa[i] + sb[j]) / 2 if mode == "mean" else max(sa[i], sb[j]))
        else:
            boxes.append(a[i])
            scores.append(sa[i] * alone)
    for j in np.flatnonzero(free):
        boxes.append(b[j])
        scores.append(sb[j] * alone)
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32)


class FlipDetector:
    """``detect(rgb)`` of a manifest's detector run on the frame and its mirror image, fused."""

    def __init__(self, manifest: Path, mode: str, score_threshold: float = FLOOR):
        from edge.infer.models import Detector

        self.inner = Detector(manifest, score_threshold=FLOOR)
        self.manifest = self.inner.manifest
        self.mode, self.score_threshold = mode, score_threshold

    def detect(self, image: np.ndarray) -> list:
        from edge.infer.yolo import nms
        from edge.types import Box, Detection

        def boxes(dets):
            return (np.asarray([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in dets], np.float32).reshape(-1, 4),
                    np.asarray([d.score for d in dets], np.float32))

        w = image.shape[1]
        a, sa = boxes(self.inner.detect(image))
        b, sb = boxes(self.inner.detect(np.ascontiguousarray(image[:, ::-1])))
        b = np.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], axis=1)
        fused, scores = fuse(a, sa, b, sb, self.mode)
        keep = scores >= self.score_threshold
        fused, scores = fused[keep], scores[keep]
        label = self.manifest.labels[0]
        return [Detection(Box(*map(float, fused[i])), float(scores[i]), 0, label)
                for i in nms(fused, scores, self.inner.nms_iou)]


def measure(manifest: Path, modes: list[str], classifier: Path, shared: Path, progress: bool = True) -> dict:
    """mode -> {_threshold, _choice, set -> figures} (``benchmarks.detector_recipes.KEYS``)."""
    from convert.verify.evaluate import SWEEP, Pipeline, collect, evaluate, load_classifier, load_voc, pipeline_for
    from convert.verify.evaluate import standard_sets
    from convert.verify.metrics import pick_threshold, threshold_sweep
    from edge.config import load

    from benchmarks.detector_recipes import KEYS

    cfg = load(None)
    cls = load_classifier(classifier, cfg)
    fm = shared / "data" / "facemask853"
    train = load_voc(fm, fm / "train.txt")
    res: dict = {}
    with tempfile.TemporaryDirectory(prefix="doorguard-flip-") as tmp:
        found = standard_sets(shared, tmp)
        sets = {k: load_voc(*found[k]) for k in SETS if k in found}
        for mode in modes:
            det = FlipDetector(manifest, mode)
            sweep = threshold_sweep(collect(train, Pipeline(det, None, min_face_px=cfg.models.min_face_px).predict,
                                            progress, desc=f"{mode} threshold sweep (train)"), SWEEP)
            choice = pick_threshold(sweep)
            det.score_threshold = choice["threshold"]
            res[mode] = {"_threshold": choice["threshold"], "_choice": choice}
            pipe = pipeline_for(det, cls, cfg)
            size = [det.manifest.input.width, det.manifest.input.height]
            for name, smp in sets.items():
                r = evaluate(smp, pipe.predict, pipe.violating, progress=progress, desc=f"{mode} {name}",
                             input_size=size).summary()
                r["recall_no_mask"] = r["detector_recall_by_class"].get("no_mask")
                res[mode][name] = {k: r.get(k) for k in KEYS}
    return res


def main(argv: list[str] | None = None) -> int:
    from benchmarks.detector_recipes import arguments, detectors_of, report

    ap = arguments(__doc__)
    ap.add_argument("--mode", action="append", choices=MODES, help="fusion (repeat; default: both)")
    args = ap.parse_args(argv)
    dets = detectors_of(args.detector)
    if dets is None:
        return 2
    res = {}
    for name, path in dets.items():
        for mode, r in measure(path, args.mode or list(MODES), args.classifier, args.shared,
                               progress=not args.quiet).items():
            res[f"{name} flip-{mode}"] = r
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
