"""Face-touch evaluation: the labelled photo set, how it was found, and precision/recall on it.

The set (``benchmarks/facetouch/labels.csv``, labels only: the photos stay in
../shared) has one row per photo: ``path`` (relative to ../shared/data) and
``touch`` (1: a hand touches a face in it, 0: no hand touches any face).
:func:`candidates` found the photos to look at: every photo of the folders
below, doorguard's face detector, then MediaPipe's float palm model on the
region around each face (``edge.decide.facetouch.region_around``, scale 3), with a
lenient rule (a palm box grown by half its size overlapping the face box).
Each candidate and each sampled non-candidate was then confirmed by a person
looking at it (contact sheets from :func:`contact_sheet`); see the README
next to the labels.

:func:`evaluate` runs the device's own decisions (``convert.verify.evaluate.Pipeline``
over ``edge.pipeline.FaceJudge``: face detector, hand stage on face regions,
the [facetouch] overlap rule) on every labelled photo: a photo is predicted
positive when any face in it votes ``facetouch``.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge.errors import DataError

log = logging.getLogger(__name__)

#: Folders of ../shared/data searched for candidates.
FOLDERS = ("chandrikadeb7/with_mask", "chandrikadeb7/without_mask", "facemask853/images", "adityap27/train",
           "adityap27/valid")


def read_labels(path: Path | str) -> list[tuple[str, int]]:
    """(path relative to ../shared/data, touch 0/1) rows of a labels CSV.

    Raises:
        DataError: missing file or a row without path/touch.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"face-touch labels not found: {p}")
    out = []
    with p.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f), 2):
            try:
                out.append((row["path"], int(row["touch"])))
            except (KeyError, TypeError, ValueError):
                raise DataError(f"{p} line {i}: need columns path,touch (0 or 1)") from None
    return out


def candidates(shared: Path, faces: Any, hands: Any, folders: Iterable[str] = FOLDERS, region_scale: float = 3.0,
               grow_by: float = 0.5, limit: int | None = None) -> list[dict]:
    """Photos to look at: per photo, its faces and the palm boxes near each (frame pixels).

    Returns:
        One dict per photo with a face: ``path``, ``faces`` [[x1,y1,x2,y2]...], ``hands``
        (per face, the palm boxes found in its region), ``candidate`` (some grown palm box
        overlaps its face).
    """
    from edge.decide.facetouch import region_around, touch_score
    from edge.settings.facetouch import FaceTouchConfig
    from edge.types import Box

    from convert.data.images import read_rgb

    cfg = FaceTouchConfig(hand_grow=grow_by, overlap="face_fraction")
    data = Path(shared) / "data"
    out = []
    for folder in folders:
        for p in sorted((data / folder).glob("*.jpg")):
            try:
                img = read_rgb(p)
            except DataError:
                continue
            h, w = img.shape[:2]
            rec = {"path": str(p.relative_to(data)), "faces": [], "hands": [], "candidate": False}
            for d in faces.detect(img):
                x1, y1, x2, y2 = region_around(d.box, region_scale, w, h)
                found = [Box(b.box.x1 + x1, b.box.y1 + y1, b.box.x2 + x1, b.box.y2 + y1)
                         for b in hands.detect(img[y1:y2, x1:x2])]
                rec["faces"].append([round(v, 1) for v in d.box.as_list()])
                rec["hands"].append([[round(v, 1) for v in b.as_list()] for b in found])
                rec["candidate"] |= touch_score(d.box, found, cfg) > 0.0
            if rec["faces"]:
                out.append(rec)
            if limit and len(out) >= limit:
                return out
    return out


def contact_sheet(shared: Path, records: Sequence[dict], out: Path, cols: int = 6, tile: int = 200) -> Path:
    """A numbered grid of photos with face (green) and palm (red) boxes, for labelling by eye."""
    import cv2

    from convert.data.images import read_rgb

    tiles = []
    for n, rec in enumerate(records):
        img = read_rgb(Path(shared) / "data" / rec["path"])
        s = tile / max(img.shape[:2])
        img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))))
        canvas = np.zeros((tile, tile, 3), np.uint8)
        canvas[:img.shape[0], :img.shape[1]] = img
        for f in rec["faces"]:
            cv2.rectangle(canvas, (int(f[0] * s), int(f[1] * s)), (int(f[2] * s), int(f[3] * s)), (0, 255, 0), 1)
        for hs in rec["hands"]:
            for b in hs:
                cv2.rectangle(canvas, (int(b[0] * s), int(b[1] * s)), (int(b[2] * s), int(b[3] * s)), (255, 0, 0), 1)
        cv2.putText(canvas, str(n), (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 2)
        tiles.append(canvas)
    while len(tiles) % cols:
        tiles.append(np.zeros((tile, tile, 3), np.uint8))
    rows = [np.concatenate(tiles[i:i + cols], 1) for i in range(0, len(tiles), cols)]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR))
    return out


def evaluate(labels: Sequence[tuple[str, int]], shared: Path, pipe: Any, progress: bool = True) -> dict:
    """Face-touch precision and recall of a pipeline (``convert.verify.evaluate.Pipeline`` with a hand
    detector) on labelled photos.

    Returns:
        photos, positives, negatives, tp/fp/fn/tn, precision, recall, and the photos it got wrong.
    """
    from tqdm import tqdm

    from edge.settings.facetouch import FACETOUCH

    from convert.data.images import read_rgb

    counts = {half: [0, 0, 0, 0] for half in ("tune", "report")}  # tp, fp, fn, tn
    wrong: dict[str, list[str]] = {"missed": [], "false_alarm": []}
    for rel, truth in tqdm(labels, desc="facetouch", unit="img", disable=not progress):
        try:
            img = read_rgb(Path(shared) / "data" / rel)
        except DataError as e:
            log.warning("skipping %s", e)
            continue
        said = any((j.votes.get("facetouch") is not None and j.votes["facetouch"].label == FACETOUCH)
                   for j in pipe.judgements(img))
        c = counts[half_of(rel)]
        if truth and said:
            c[0] += 1
        elif truth:
            c[2] += 1
            wrong["missed"].append(rel)
        elif said:
            c[1] += 1
            wrong["false_alarm"].append(rel)
        else:
            c[3] += 1

    def figures(tp, fp, fn, tn):
        def ratio(a, b):
            return round(a / b, 4) if b else None

        return {"photos": tp + fp + fn + tn, "positives": tp + fn, "negatives": fp + tn, "tp": tp, "fp": fp,
                "fn": fn, "tn": tn, "precision": ratio(tp, tp + fp), "recall": ratio(tp, tp + fn),
                "false_alarm_rate": ratio(fp, fp + tn)}

    total = [a + b for a, b in zip(counts["tune"], counts["report"])]
    return {**figures(*total), "report_half": figures(*counts["report"]), "tune_half": figures(*counts["tune"]),
            "halves": "tune: sha1(path) even (the [facetouch] defaults were chosen on it); report: odd",
            "wrong": wrong}


def half_of(rel: str) -> str:
    """The half of the labelled set a photo is in: ``tune`` (the defaults were chosen on it) or
    ``report`` (never looked at for a setting), by the parity of sha1(path)."""
    import hashlib

    return "tune" if int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 2 == 0 else "report"
