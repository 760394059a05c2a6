"""Quantization report for YOLO detectors: int8 vs float, and both vs ground truth.

Pure numpy on top of edge's decode (no TensorFlow), so the report measures
exactly what the runtime computes:

- ``head_errors``: per-head output error int8 vs float (max/mean, in LSB of the
  int8 output scale and in float).
- ``agreement``: detection agreement int8 vs float (precision, recall, F1 at
  IoU 0.5, same class), the float detections playing ground truth.
- ``mean_average_precision``: VOC-style mAP@0.5 (all-point interpolation)
  against labelled boxes; labels read from VOC xml or YOLO txt
  (``find_label``, ``read_labels``).
- ``resolve_images``: an image folder or a list file (paths or stems), so
  darknet-style ``train.txt``/``val.txt`` splits work directly.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from edge.errors import DataError

from convert.verify.metrics import iou_matrix

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Boxes:
    """Boxes of one image in frame pixels: N x 4 (x1, y1, x2, y2), scores, class ids.

    ``difficult`` marks ground-truth boxes that VOC scoring ignores (no TP, no FP).
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    difficult: np.ndarray | None = None

    @staticmethod
    def empty() -> "Boxes":
        return Boxes(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0,), np.int64))

    def __len__(self) -> int:
        return len(self.boxes)


# ---------------------------------------------------------------------------
# Image lists and labels


def resolve_images(source: Path | str) -> list[Path]:
    """Image paths from a folder (or its ``images/`` subfolder) or a list file.

    A list file (``.txt``) holds one image path or stem per line; relative paths
    and stems are looked up next to the list file and in its ``images/`` folder.

    Raises:
        DataError: missing source, no images, or a listed image that does not exist.
    """
    src = Path(source)
    if src.is_file():
        if src.suffix.lower() in IMAGE_SUFFIXES:
            return [src]
        try:
            lines = [ln.strip() for ln in src.read_text().splitlines()]
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read image list {src}: {e}") from e
        out: list[Path] = []
        for n, ln in enumerate(lines, start=1):
            if not ln or ln.startswith("#"):
                continue
            out.append(_find_listed(src, ln, n))
        if not out:
            raise DataError(f"image list {src} is empty")
        return out
    if src.is_dir():
        from convert.data.images import list_images

        if (src / "images").is_dir() and not any(
            p.suffix.lower() in IMAGE_SUFFIXES for p in src.iterdir() if p.is_file()
        ):
            src = src / "images"
        return list_images(src)
    raise DataError(f"image folder or list not found: {src}")


def _find_listed(listfile: Path, entry: str, line: int) -> Path:
    p = Path(entry)
    bases = [Path()] if p.is_absolute() else [listfile.parent, listfile.parent / "images"]
    for base in bases:
        q = base / p
        if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file():
            return q
        for suf in IMAGE_SUFFIXES:
            r = q.with_name(q.name + suf)
            if r.is_file():
                return r
    raise DataError(f"{listfile}:{line}: image {entry!r} not found")


def find_label(image: Path) -> Path | None:
    """The label file of an image: same stem .xml/.txt beside it, or in the
    sibling ``annotations/`` (VOC) or ``labels/`` (YOLO) folder."""
    candidates = [image.with_suffix(".xml"), image.with_suffix(".txt")]
    parent = image.parent.parent
    candidates += [parent / "annotations" / f"{image.stem}.xml", parent / "labels" / f"{image.stem}.txt",
                   parent / "Annotations" / f"{image.stem}.xml"]
    return next((c for c in candidates if c.is_file()), None)


def read_labels(label: Path, labels: list[str], image_size: tuple[int, int]) -> tuple[Boxes, set[str]]:
    """Ground-truth boxes of one image, in pixels.

    Args:
        label: a VOC .xml or YOLO .txt file.
        labels: the model's class names. A one-class model counts every
            labelled object as its class (e.g. with_mask/without_mask -> face).
        image_size: (width, height), to scale YOLO's normalized boxes.

    Returns:
        (boxes, names in the file that match no model class: those boxes are dropped).

    Raises:
        DataError: an unreadable or malformed label file.
    """
    w_img, h_img = image_size
    lower = [lab.lower() for lab in labels]
    rows: list[tuple[float, float, float, float, int, bool]] = []
    unknown: set[str] = set()
    try:
        if label.suffix.lower() == ".xml":
            root = ET.parse(label).getroot()
            for obj in root.iter("object"):
                name = (obj.findtext("name") or "").strip()
                bb = obj.find("bndbox")
                if bb is None:
                    raise DataError(f"label {label}: object {name!r} has no bndbox")
                x1, y1, x2, y2 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
                difficult = (obj.findtext("difficult") or "0").strip() == "1"
                if len(labels) == 1:
                    cid = 0
                elif name.lower() in lower:
                    cid = lower.index(name.lower())
                else:
                    unknown.add(name)
                    continue
                rows.append((x1, y1, x2, y2, cid, difficult))
        else:
            for n, ln in enumerate(label.read_text().splitlines(), start=1):
                parts = ln.split()
                if not parts:
                    continue
                if len(parts) != 5:
                    raise DataError(f"label {label}:{n}: expected 'class cx cy w h', got {ln!r}")
                c = int(parts[0])
                cx, cy, bw, bh = (float(v) for v in parts[1:])
                if len(labels) == 1:
                    cid = 0
                elif 0 <= c < len(labels):
                    cid = c
                else:
                    unknown.add(str(c))
                    continue
                rows.append(((cx - bw / 2) * w_img, (cy - bh / 2) * h_img, (cx + bw / 2) * w_img,
                             (cy + bh / 2) * h_img, cid, False))
    except DataError:
        raise
    except (OSError, ET.ParseError, ValueError) as e:
        raise DataError(f"label file {label} is unreadable: {e}") from e
    if any(not np.isfinite(r[:4]).all() for r in rows):
        raise DataError(f"label file {label} has a box with missing coordinates")
    if not rows:
        return _empty_gt(), unknown
    arr = np.asarray([r[:4] for r in rows], np.float32)
    return Boxes(arr, np.ones(len(rows), np.float32), np.asarray([r[4] for r in rows], np.int64),
                 np.asarray([r[5] for r in rows], bool)), unknown


def _empty_gt() -> Boxes:
    b = Boxes.empty()
    return Boxes(b.boxes, b.scores, b.class_ids, np.zeros((0,), bool))


# ---------------------------------------------------------------------------
# Metrics


def _match(pred: Boxes, truth: Boxes, iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Greedy VOC matching, best score first, same class.

    VOC's own protocol, which mAP needs, and not ``convert.verify.metrics.match_greedy``
    (the evaluation's, by decreasing IoU): each prediction takes its best-IoU truth
    box, and one already taken makes it a false positive (a duplicate) instead of
    falling back to the next box.

    Returns:
        (per prediction: 1 TP, 0 FP, -1 ignored (matched a difficult box),
         per truth box: matched or not).
    """
    status = np.zeros(len(pred), np.int8)
    used = np.zeros(len(truth), bool)
    if len(pred) == 0:
        return status, used
    ious = iou_matrix(pred.boxes, truth.boxes)
    difficult = truth.difficult if truth.difficult is not None else np.zeros(len(truth), bool)
    for i in np.argsort(-pred.scores, kind="stable"):
        if len(truth) == 0:
            break
        cand = np.where(truth.class_ids == pred.class_ids[i], ious[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] < iou:
            continue
        if difficult[j]:
            status[i] = -1
        elif not used[j]:
            used[j] = True
            status[i] = 1
    return status, used


def agreement(preds: Iterable[Boxes], refs: Iterable[Boxes], iou: float = 0.5) -> dict[str, float | int]:
    """Precision/recall/F1 of ``preds`` against ``refs`` (e.g. int8 vs float detections).

    A prediction is a true positive when it overlaps an unmatched reference box of
    the same class with IoU >= ``iou``. With no detection on either side, F1 is 1.
    """
    tp = fp = fn = n = 0
    for p, r in zip(preds, refs):
        status, used = _match(p, r, iou)
        tp += int((status == 1).sum())
        fp += int((status == 0).sum())
        fn += int((~used).sum())
        n += 1
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
            "tp": tp, "fp": fp, "fn": fn, "images": n}


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope (VOC 2010+ all-point interpolation)."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[idx + 1] - r[idx]) * p[idx + 1]))


def mean_average_precision(preds: list[Boxes], truths: list[Boxes], labels: list[str],
                           iou: float = 0.5) -> dict:
    """VOC-style mAP@iou over the classes that have ground truth.

    Returns:
        {"map": float, "per_class": {label: AP}, "gt_boxes": int, "images": int}
    """
    per_class: dict[str, float] = {}
    total_gt = 0
    for c, name in enumerate(labels):
        scores: list[np.ndarray] = []
        status: list[np.ndarray] = []
        n_gt = 0
        for p, t in zip(preds, truths):
            pc = Boxes(p.boxes[p.class_ids == c], p.scores[p.class_ids == c], p.class_ids[p.class_ids == c])
            keep = t.class_ids == c
            tc = Boxes(t.boxes[keep], t.scores[keep], t.class_ids[keep],
                       None if t.difficult is None else t.difficult[keep])
            n_gt += int((~tc.difficult).sum()) if tc.difficult is not None else len(tc)
            st, _ = _match(pc, tc, iou)
            scores.append(pc.scores)
            status.append(st)
        total_gt += n_gt
        if n_gt == 0:
            continue
        s = np.concatenate(scores) if scores else np.zeros(0)
        st = np.concatenate(status) if status else np.zeros(0, np.int8)
        order = np.argsort(-s, kind="stable")
        st = st[order]
        st = st[st >= 0]  # drop detections matched to difficult boxes
        tp = np.cumsum(st == 1)
        fp = np.cumsum(st == 0)
        rec = tp / n_gt
        prec = tp / np.maximum(tp + fp, 1e-9)
        per_class[name] = round(voc_ap(rec, prec), 4)
    m = float(np.mean(list(per_class.values()))) if per_class else float("nan")
    return {"map": round(m, 4), "per_class": per_class, "gt_boxes": total_gt, "images": len(truths)}


def head_errors(float_heads: list[dict[str, np.ndarray]], int8_heads: list[dict[str, np.ndarray]],
                scales: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per-head error of the dequantized int8 outputs against the float outputs.

    Args:
        float_heads, int8_heads: per image, {output name: float array}.
        scales: output name -> int8 quantization scale (1 LSB in float).

    Returns:
        {name: {"max_abs", "mean_abs", "max_lsb", "mean_lsb", "float_range"}}
    """
    out: dict[str, dict[str, float]] = {}
    for name, scale in scales.items():
        diffs = [np.abs(i[name] - f[name]).reshape(-1) for f, i in zip(float_heads, int8_heads)]
        d = np.concatenate(diffs) if diffs else np.zeros(1)
        rng = max((float(np.abs(f[name]).max()) for f in float_heads), default=0.0)
        out[name] = {
            "max_abs": round(float(d.max()), 5), "mean_abs": round(float(d.mean()), 5),
            "max_lsb": round(float(d.max() / scale), 2), "mean_lsb": round(float(d.mean() / scale), 3),
            "float_range": round(rng, 3),
        }
    return out
