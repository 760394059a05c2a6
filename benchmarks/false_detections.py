"""What a detector's false detections on the validation sets are (issue 15): how many of them the
strong peers also call a face, i.e. how many are faces the annotators left out rather than errors.

    .venv/bin/python benchmarks/false_detections.py --detector default=models/yoloface-500k-v2-facemask.json \
        --json build/false.json [--montage build/false.png]

Each detector runs with doorguard's classifier at its own threshold, as in
`benchmarks/detector_recipes.py` (the same `convert.verify.evaluate` code as `doorguard eval`). A false
detection (matched to no labelled face at IoU > 0.5) is "near a label" when it overlaps one by IoU
> 0.2 (the same face boxed otherwise, or a face beside it), and counts as "a peer's face" when the teacher of
`doorguard train detector` (YuNet n 640 and UltraFace RFB-640-masked, merged, `convert.train.teacher`)
has a box scoring at least ``--peer-score`` overlapping it by IoU > ``--peer-iou``. The peers are
not ground truth: the figure bounds how much of the goal of 10 false detections per 135 images
is the labels' and how much the detector's. ``--montage`` writes the crops (PNG) for a look by eye.

It also lists every missed labelled face (matched by no kept detection) with the detection that
overlaps it most among all the detector's boxes down to a score of ``MISS_FLOOR``: a miss found at a
score under the threshold is a scoring problem, one found above it at IoU <= 0.5 a box drawn otherwise.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETS = ("dataroots-val", "facemask853-val-clean", "adityap27-valid-clean")
#: A false detection overlapping a labelled face by more than this (and at most the match's 0.5).
NEAR_IOU = 0.2
#: The lowest score looked at for a missed face's best detection.
MISS_FLOOR = 0.02


def explain(box: list[float], truths: np.ndarray, peers: np.ndarray, peer_iou: float = 0.5) -> tuple[bool, bool]:
    """(near a label: IoU > ``NEAR_IOU`` with a labelled face; a peer's face: IoU > ``peer_iou``
    with a confident peer box) of one false detection (x1, y1, x2, y2; N x 4 and M x 4 arrays)."""
    from convert.verify.metrics import iou_matrix

    b = np.asarray([box], np.float64)
    near = bool(len(truths) and iou_matrix(b, truths).max() > NEAR_IOU)
    return near, bool(len(peers) and iou_matrix(b, peers).max() > peer_iou)


def measure(detectors: dict[str, Path], classifier: Path, shared: Path, peer_score: float = 0.8,
            peer_iou: float = 0.5, progress: bool = True) -> tuple[dict, list[tuple[str, str, np.ndarray]]]:
    """name -> set -> counts, and (detector, set, crop) of every false detection."""
    from convert.data.images import read_rgb
    from convert.verify.metrics import MISSED, iou_matrix
    from convert.train.teacher import Teacher
    from edge.infer.models import Detector

    from benchmarks.detector_recipes import evaluations

    teacher = Teacher(shared / "models" / "peers")
    peer_boxes: dict[str, np.ndarray] = {}
    res: dict[str, dict] = {}
    crops = []
    for name, det, set_name, smp, acc in evaluations(detectors, classifier, shared, SETS, progress):
        res.setdefault(name, {"_threshold": det.score_threshold})
        low = Detector(detectors[name], score_threshold=MISS_FLOOR)
        peer, flagged_peer, near, either = 0, 0, 0, 0
        where = {x.path.name: x for x in smp}
        for fd in acc.false_detections:
            x = where[fd["image"]]
            img = str(x.path)
            if img not in peer_boxes:
                t = teacher(read_rgb(img))
                peer_boxes[img] = t.boxes[t.scores >= peer_score]
            truths = np.asarray([t.box.as_list() for t in x.truths]).reshape(-1, 4)
            close, hit = explain(fd["box"], truths, peer_boxes[img], peer_iou)
            near += close
            peer += hit
            either += hit or close
            flagged_peer += hit and fd["flagged"]
            x1, y1, x2, y2 = (int(round(v)) for v in fd["box"])
            crop = read_rgb(img)[max(0, y1):max(y1 + 1, y2), max(0, x1):max(x1 + 1, x2)]
            crops.append((name, set_name, crop))
        misses = []
        for f in acc.faces:
            if f.predicted != MISSED:
                continue
            ds = low.detect(read_rgb(str(where[f.image].path)))
            b = np.asarray([[d.box.x1, d.box.y1, d.box.x2, d.box.y2] for d in ds], np.float64).reshape(-1, 4)
            iou = iou_matrix(np.asarray([f.box], np.float64), b)[0]
            j = int(np.argmax(iou)) if len(iou) else None
            misses.append({"image": f.image, "truth": f.truth, "input_px": f.input_px,
                           "best_iou": round(float(iou[j]), 3) if j is not None else 0.0,
                           "best_score": round(float(ds[j].score), 4) if j is not None else None})
        n, images = len(acc.false_detections), acc.images
        res[name][set_name] = {
            "images": images, "false_detections": n, "peer_faces": peer, "near_a_label": near,
            "peer_face_or_near_a_label": either,
            "flagged": sum(f["flagged"] for f in acc.false_detections), "flagged_peer_faces": flagged_peer,
            "false_per_135": round(n * 135 / images, 1) if images else None,
            "not_peer_faces_per_135": round((n - peer) * 135 / images, 1) if images else None,
            "neither_per_135": round((n - either) * 135 / images, 1) if images else None,
            "misses": misses}
    return res, crops


def montage(crops: list[tuple[str, str, np.ndarray]], path: Path, cell: int = 64, cols: int = 16) -> Path:
    """The crops, each resized to ``cell`` pixels, in rows of ``cols`` (RGB in, PNG out)."""
    import cv2

    tiles = [cv2.resize(c, (cell, cell), interpolation=cv2.INTER_AREA) for _, _, c in crops if c.size]
    rows = -(-len(tiles) // cols) or 1
    sheet = np.zeros((rows * cell, cols * cell, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = t
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return path


def main(argv: list[str] | None = None) -> int:
    from benchmarks.detector_recipes import arguments, detectors_of

    p = arguments(__doc__)
    p.add_argument("--peer-score", type=float, default=0.8, help="a peer box counts from this score (0.8)")
    p.add_argument("--peer-iou", type=float, default=0.5, help="and overlapping by more than this IoU (0.5)")
    p.add_argument("--montage", type=Path, help="write the false detections' crops here (PNG)")
    args = p.parse_args(argv)
    dets = detectors_of(args.detector)
    if dets is None:
        return 2
    res, crops = measure(dets, args.classifier, args.shared, args.peer_score, args.peer_iou, not args.quiet)
    for name, r in res.items():
        for s in SETS:
            if s in r:
                c = r[s]
                print(f"{name} {s}: {c['false_detections']} false detections on {c['images']} images "
                      f"({c['false_per_135']} per 135), {c['peer_faces']} of them a peer's face; "
                      f"{c['not_peer_faces_per_135']} per 135 are not; {c['near_a_label']} overlap a label by IoU "
                      f"{NEAR_IOU}-0.5; {c['neither_per_135']} per 135 are neither; flagged {c['flagged']} "
                      f"({c['flagged_peer_faces']} peer faces)")
                m = c["misses"]
                kinds = ", ".join(f"{k} {v}" for k, v in sorted(Counter(x["truth"] for x in m).items()))
                under = sum(x["best_iou"] > 0.5 and (x["best_score"] or 0) < r["_threshold"] for x in m)
                shifted = sum(x["best_iou"] <= 0.5 and (x["best_score"] or 0) >= r["_threshold"] for x in m)
                print(f"  {len(m)} missed ({kinds}): {under} found under the threshold, {shifted} above it "
                      f"boxed otherwise (IoU <= 0.5)")
    if args.json:
        args.json.write_text(json.dumps({"peer_score": args.peer_score, "peer_iou": args.peer_iou,
                                         "results": res}, indent=2) + "\n")
    if args.montage:
        montage(crops, args.montage)
    return 0


if __name__ == "__main__":
    sys.exit(main())
