"""``doorguard train detector``: fine-tune a darknet YOLO on labelled boxes, write darknet weights.

The network is the one ``doorguard convert darknet`` builds (``convert.parse.darknet``:
cfg parser, weights reader, Keras builder with the raw head outputs), trained
in float with a darknet-style YOLO loss:

- each ground-truth box goes to the one anchor (of all the cfg's anchors) whose
  shape fits it best (IoU of centred boxes), in the head that owns that anchor,
  at the grid cell holding its centre;
- x/y: binary cross-entropy of sigmoid(tx) against the centre's offset in the
  cell; w/h: squared error in log space (``log(w / anchor)``); both weighted
  by ``2 - w*h/(W*H)`` as darknet does, so small faces count more;
- objectness: binary cross-entropy, with negatives whose predicted box already
  overlaps a ground-truth box by more than ``--ignore-iou`` left out;
- class: binary cross-entropy per class on the assigned cells.

Every training image goes through ``edge.infer.preprocess.prepare`` (the letterbox
and normalization the Pi runs) after the augmentation (random crop/zoom-out,
horizontal flip, HSV jitter) on the full-size image, boxes moved alike.

BatchNorm is already folded into the convolutions by the builder, so the
output is a darknet ``.weights`` file for the same cfg whose BatchNorm layers
are identities (scale 1, mean 0, variance 1 - eps): ``doorguard convert
darknet --cfg CFG --weights OUT.weights`` converts it like any darknet model.

Labels: VOC ``.xml`` or YOLO ``.txt`` next to the images (or in ``annotations/``
/ ``labels/``); with a one-class ``--names`` every labelled object is that class.

More training signal than the labelled boxes (issue 15: fine-tuning on the
mask-heavy sets lost unmasked faces):

- ``--teacher-peers DIR``: strong peer detectors (``convert.train.teacher``) look at
  every photo; on labelled photos their boxes that match no label become
  ignore regions (faces the annotators left out are not taught as background);
- ``--unlabelled [KIND=]PATH``: photos without labels, labelled by the teacher
  (confident boxes are labels, the rest ignore regions);
- ``--paste KIND=DIR``: face crops pasted into the training photos at
  ``--paste-px`` pixels of the network input, with feathered edges and exact
  boxes (copy-paste), choosing the kind so that ``--min-unmasked`` of the boxes
  an epoch sees are unmasked;
- ``--mosaic P``: that share of the images is four augmented photos in the
  quarters of one input (``mosaic``): crowded scenes of real photos, faces
  about half the size, exact boxes.

Each box keeps its kind (``mask``, ``no_mask``, ``mask_incorrect`` or ``face``
from the label files' class names) for that balance and for the log.
Training writes a checkpoint after every epoch (``OUT.ckpt.npz``: weights,
optimizer state, random state) and ``--resume`` continues from it.
TensorFlow is imported inside the functions that need it.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge.errors import DataError, UsageError

from convert.verify.conditions import darken, line_blur

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 30
DEFAULT_BATCH = 16
DEFAULT_LR = 5e-4
# --ema: momentum of the weights' moving average (Keras' optimizer EMA, one update per batch).
DEFAULT_EMA = 0.999
DEFAULT_IGNORE_IOU = 0.5
# --assign-iou: darknet's [yolo] iou_thresh as YOLOv4's cfgs set it.
DEFAULT_ASSIGN_IOU = 0.213
# Images are kept in memory at most this many times the network input's size:
# enough for zoom-in crops, small enough for 1000+ images on a workstation.
KEEP_SCALE = 2.0
MIN_BOX_PX = 2.0


UNMASKED = "no_mask"
# Kinds of box, from the label files' class names (``convert.data.dataset.DEFAULT_LABEL_MAP``).
KIND_NAMES = {"with_mask": "mask", "without_mask": "no_mask", "mask_weared_incorrect": "mask_incorrect",
              "mask": "mask", "no_mask": "no_mask", "mask_incorrect": "mask_incorrect"}
DEFAULT_PASTE_PX = (12.0, 200.0)
# Smallest random crop window (share of each side); smaller zooms in further (larger faces).
DEFAULT_CROP_MIN = 0.55
# --oversample-unmasked repeats a photo with unmasked faces at most this many times as often as another.
MAX_OVERSAMPLE = 8.0
# Pasted crops are kept in memory at most this size (longer side, pixels).
PASTE_KEEP_PX = 160


@dataclass
class Example:
    """One training image (RGB uint8), its boxes (N x 4 x1,y1,x2,y2 pixels, N class ids),
    the kind of each box, and ignore regions (K x 4: no objectness penalty inside)."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    path: str = ""
    kinds: list[str] = field(default_factory=list)
    ignore: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))


@dataclass
class PastePool:
    """Face crops to paste, by kind (RGB uint8, each a tight face box)."""

    crops: dict[str, list[np.ndarray]]

    def kinds(self) -> list[str]:
        return [k for k, v in self.crops.items() if v]


@dataclass
class TrainDetectorResult:
    """What ``train`` produced."""

    weights_path: Path
    log_path: Path
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard train detector``."""
    p.add_argument("--cfg", required=True, type=Path, help="darknet .cfg file (the architecture)")
    p.add_argument("--weights", required=True, type=Path, help="darknet .weights file to start from")
    p.add_argument("--names", required=True, type=Path, help="class names, one per line")
    p.add_argument("--train", required=True, type=Path, nargs="+", metavar="LIST",
                   help="training images: list files (paths or stems, e.g. train.txt) or folders, "
                        "with VOC xml or YOLO txt labels")
    p.add_argument("--out", required=True, type=Path, help="output darknet weights file (OUT.weights)")
    p.add_argument("--input", metavar="WxH", help="training input size (default: the cfg's)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, help=f"epochs (default {DEFAULT_EPOCHS})")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"batch size (default {DEFAULT_BATCH})")
    p.add_argument("--lr", type=float, default=DEFAULT_LR,
                   help=f"peak Adam learning rate, cosine decay after a one-epoch warm-up (default {DEFAULT_LR:g})")
    p.add_argument("--ema", type=float, nargs="?", const=DEFAULT_EMA, default=0.0, metavar="MOMENTUM",
                   help="write the exponential moving average of the weights (one update per batch, "
                        f"momentum {DEFAULT_EMA:g} when given without a value) instead of the last batch's "
                        "weights (default 0: off)")
    p.add_argument("--assign-iou", type=float, nargs="?", const=DEFAULT_ASSIGN_IOU, default=None, metavar="IOU",
                   help="also give each true box to every anchor whose shape fits it by more than this IoU "
                        f"(darknet's iou_thresh; {DEFAULT_ASSIGN_IOU:g} when given without a value, as in "
                        "YOLOv4; default: the best anchor only)")
    p.add_argument("--ignore-iou", type=float, default=DEFAULT_IGNORE_IOU,
                   help="no objectness penalty for predictions overlapping a true box by more than this "
                        f"(default {DEFAULT_IGNORE_IOU:g})")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles, augmentation and TF (default 0)")
    p.add_argument("--exclude", type=Path, nargs="+", default=[], metavar="LIST",
                   help="evaluation images (list files or folders): training images that are near-duplicates "
                        "of any of them (dHash, convert.data.dataset.near_duplicates) are left out")
    p.add_argument("--limit", type=int, help="use at most this many images per list (seeded draw)")
    p.add_argument("--max-minutes", type=float,
                   help="stop after the epoch that passes this wall time (the result then depends on speed)")
    p.add_argument("--threads", type=int, default=2, help="TensorFlow threads (default 2)")
    p.add_argument("--teacher-peers", type=Path, metavar="DIR",
                   help="folder of the peer detectors (../shared/models/peers): YuNet and UltraFace-masked "
                        "label faces the annotators left out (ignore regions) and the --unlabelled photos")
    p.add_argument("--teacher-cache", type=Path, metavar="FILE",
                   help="teacher boxes cache (default OUT.teacher.json)")
    p.add_argument("--teacher-label-score", type=float, default=0.8,
                   help="on --unlabelled photos, teacher boxes scoring at least this are labels, the "
                        "others ignore regions (default 0.8)")
    p.add_argument("--teacher-ignore-score", type=float, default=0.8,
                   help="on labelled photos, teacher boxes scoring at least this that match no label become "
                        "ignore regions (default 0.8: lower ones are too often not faces)")
    p.add_argument("--teacher-add-score", type=float, metavar="S",
                   help="teacher boxes scoring at least S that match no label become labels (faces the "
                        "annotators left out, e.g. in crowds); those between --teacher-ignore-score and S "
                        "stay ignore regions (default: none added)")
    p.add_argument("--unlabelled", nargs="+", default=[], metavar="[KIND=]LIST",
                   help="photos without labels (folders or list files), labelled by the teacher; KIND "
                        "(mask, no_mask, ...) is the kind of their faces, for --min-unmasked")
    p.add_argument("--unlabelled-limit", type=int, metavar="N",
                   help="use at most N photos of each --unlabelled source (seeded draw)")
    p.add_argument("--paste", nargs="+", default=[], metavar="KIND=DIR",
                   help="face crops (tight boxes) to paste into training photos, e.g. "
                        "no_mask=dataroots/train/not_masked")
    p.add_argument("--paste-prob", type=float, default=0.5,
                   help="share of training images that get pasted faces (default 0.5)")
    p.add_argument("--paste-max", type=int, default=4, help="at most this many faces pasted per image (default 4)")
    p.add_argument("--paste-px", default="12,200", metavar="MIN,MAX",
                   help="pasted face size at the network input, pixels (default 12,200)")
    p.add_argument("--min-unmasked", type=float, default=0.0, metavar="SHARE",
                   help="paste unmasked faces until at least this share of the boxes seen are unmasked "
                        "(default 0: kinds drawn evenly)")
    p.add_argument("--night-aug", type=float, default=0.0, metavar="P",
                   help="share of training images turned greyscale (IR camera), darkened with sensor noise "
                        "(dusk) or motion-blurred, P/3 each (default 0)")
    p.add_argument("--oversample-unmasked", type=float, default=0.0, metavar="SHARE",
                   help="draw photos holding an unmasked face more often, so that unmasked faces are about "
                        "SHARE of the labelled boxes an epoch sees (default 0: each photo once per epoch)")
    p.add_argument("--crop-min", type=float, default=DEFAULT_CROP_MIN, metavar="F",
                   help=f"smallest random crop, as a share of each side (default {DEFAULT_CROP_MIN}; "
                        "smaller zooms in: larger faces)")
    p.add_argument("--mosaic", type=float, default=0.0, metavar="P",
                   help="share of the images made of four photos in the quarters of one input (crowded scenes, "
                        "faces about half size; default 0)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT.ckpt.npz (written after every epoch) when it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# ---------------------------------------------------------------------------
# Data


def box_kinds(label: Path, n: int) -> list[str]:
    """The kind (``KIND_NAMES``, else ``face``) of each box of a label file, in file order.

    VOC files name their classes; YOLO files give class ids, named by a
    ``classes.txt`` beside the label file or one or two folders up.
    """
    import xml.etree.ElementTree as ET

    names: list[str] = []
    try:
        if label.suffix.lower() == ".xml":
            names = [(o.findtext("name") or "").strip() for o in ET.parse(label).getroot().iter("object")]
        else:
            table: list[str] = []
            for d in (label.parent, label.parent.parent, label.parent.parent.parent):
                if (d / "classes.txt").is_file():
                    table = [ln.strip() for ln in (d / "classes.txt").read_text().splitlines() if ln.strip()]
                    break
            for ln in label.read_text().splitlines():
                parts = ln.split()
                if len(parts) == 5:
                    c = int(parts[0])
                    names.append(table[c] if 0 <= c < len(table) else str(c))
    except (OSError, ET.ParseError, ValueError):
        names = []
    kinds = [KIND_NAMES.get(nm.lower(), "face") for nm in names]
    return kinds if len(kinds) == n else ["face"] * n


def _resize_keep(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    s = min(1.0, max_side / max(img.shape[:2]))
    if s < 1.0:
        img = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))),
                         interpolation=cv2.INTER_AREA)
    return img, s


def _split_kind(spec: str) -> tuple[str, Path]:
    """``KIND=PATH`` or ``PATH`` (kind ``face``)."""
    if "=" in spec and not Path(spec).exists():
        kind, path = spec.split("=", 1)
        return kind.strip(), Path(path)
    return "face", Path(spec)


def load_examples(sources: list[Path], labels: list[str], max_side: int, limit: int | None = None,
                  seed: int = 0, progress: bool = True,
                  exclude: list[Path] | None = None, teacher: Any = None,
                  ignore_score: float = 0.0, add_score: float | None = None) -> tuple[list[Example], dict[str, Any]]:
    """Read labelled images, downscaled so their longer side is at most ``max_side``.

    Images without a label file are skipped (and counted); so are boxes of
    classes the names do not know (a one-class model takes every box), and
    images that are near-duplicates of an ``exclude`` image (the data sets
    overlap: most facemask853 photos are also in adityap27). With a
    ``teacher`` (``convert.train.teacher.TeacherCache``), its boxes scoring at least
    ``ignore_score`` that match no label become the image's ignore regions; with
    ``add_score``, those scoring at least that become labels (kind ``face``) instead:
    the faces annotators of crowded photos left out are then faces, not background.

    Raises:
        DataError: a missing list/folder, a bad label file, or no usable image.
    """
    import random

    from convert.verify import detect_report
    from convert.data.images import read_rgb

    from convert.data.dataset import near_duplicates

    refs = [f for src in (exclude or []) for f in detect_report.resolve_images(src)]
    examples: list[Example] = []
    stats: dict[str, Any] = {"sources": {}, "skipped_unlabelled": 0, "skipped_unreadable": 0,
                             "excluded": [str(e) for e in exclude or []], "skipped_near_duplicates": 0,
                             "teacher_ignore_regions": 0}
    for src in sources:
        files = detect_report.resolve_images(src)
        if refs:
            dups = near_duplicates(files, refs)
            stats["skipped_near_duplicates"] += len(dups)
            files = [f for f in files if f not in dups]
        if limit is not None and limit < len(files):
            files = list(files)
            random.Random(seed).shuffle(files)
            files = sorted(files[:limit])
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc=f"reading {src}", unit="img")
        n0, boxes0 = len(examples), 0
        for path in it:
            label = detect_report.find_label(path)
            if label is None:
                stats["skipped_unlabelled"] += 1
                continue
            try:
                img = read_rgb(path)
            except DataError as e:
                log.warning("skipping %s", e)
                stats["skipped_unreadable"] += 1
                continue
            gt, _ = detect_report.read_labels(label, labels, (img.shape[1], img.shape[0]))
            boxes = gt.boxes.astype(np.float32)
            kinds = box_kinds(label, len(boxes)) if len(labels) == 1 else [labels[int(c)] for c in gt.class_ids]
            ids = gt.class_ids.astype(np.int64)
            ignore = np.zeros((0, 4), np.float32)
            if teacher is not None:
                from convert.train.teacher import unmatched

                found = teacher.get(path, img)
                if add_score is not None:
                    extra = unmatched(found.split(add_score)[0], boxes)
                    if len(extra):
                        boxes = np.concatenate([boxes, extra.astype(np.float32)])
                        kinds = list(kinds) + ["face"] * len(extra)
                        ids = np.concatenate([ids, np.zeros(len(extra), np.int64)])
                        stats["teacher_added_boxes"] = stats.get("teacher_added_boxes", 0) + len(extra)
                ignore = unmatched(found.split(ignore_score)[0], boxes)
                stats["teacher_ignore_regions"] += len(ignore)
            img, s = _resize_keep(img, max_side)
            examples.append(Example(img, boxes * s, ids, str(path), kinds,
                                    (ignore * s).astype(np.float32)))
            boxes0 += len(boxes)
        stats["sources"][str(src)] = {"images": len(examples) - n0, "boxes": boxes0}
        if teacher is not None:
            teacher.save()
    if not examples:
        raise DataError(f"no labelled images in {', '.join(map(str, sources))}")
    return examples, stats


def load_unlabelled(specs: list[str], teacher: Any, max_side: int, label_score: float, limit: int | None = None,
                    seed: int = 0, progress: bool = True, exclude: list[Path] | None = None,
                    ) -> tuple[list[Example], dict[str, Any]]:
    """Photos without labels, labelled by the teacher (``[KIND=]PATH`` sources).

    Teacher boxes scoring at least ``label_score`` are labels of the given kind
    (class 0), the others ignore regions; a photo with no confident box is
    skipped (it would only teach background where the teacher was unsure).

    Raises:
        DataError: a missing source, or no teacher.
    """
    import random

    from convert.verify import detect_report
    from convert.data.dataset import near_duplicates
    from convert.data.images import read_rgb

    if teacher is None:
        raise DataError("--unlabelled needs --teacher-peers (the teacher labels those photos)")
    refs = [f for src in (exclude or []) for f in detect_report.resolve_images(src)]
    examples: list[Example] = []
    stats: dict[str, Any] = {}
    for spec in specs:
        kind, src = _split_kind(spec)
        files = detect_report.resolve_images(src)
        if limit is not None and limit < len(files):
            files = list(files)
            random.Random(seed).shuffle(files)
            files = sorted(files[:limit])
        dups = near_duplicates(files, refs) if refs else set()
        files = [f for f in files if f not in dups]
        it = files
        if progress:
            from tqdm import tqdm

            it = tqdm(files, desc=f"teacher on {src}", unit="img")
        n0, nb, no_face = len(examples), 0, 0
        for path in it:
            try:
                img = read_rgb(path)
            except DataError as e:
                log.warning("skipping %s", e)
                continue
            sure, unsure = teacher.get(path, img).split(label_score)
            if not len(sure):
                no_face += 1
                continue
            img, s = _resize_keep(img, max_side)
            examples.append(Example(img, (sure * s).astype(np.float32), np.zeros(len(sure), np.int64), str(path),
                                    [kind] * len(sure), (unsure * s).astype(np.float32)))
            nb += len(sure)
        teacher.save()
        stats[str(src)] = {"kind": kind, "images": len(examples) - n0, "boxes": nb,
                           "skipped_no_confident_face": no_face, "skipped_near_duplicates": len(dups)}
    return examples, stats


def load_paste_pool(specs: list[str], limit: int | None = None, seed: int = 0) -> tuple[PastePool, dict[str, int]]:
    """Face crops by kind from ``KIND=DIR`` specs (each crop a tight face box).

    Raises:
        DataError: a spec without a kind, or a folder without images.
    """
    import random

    from convert.verify import detect_report
    from convert.data.images import read_rgb

    crops: dict[str, list[np.ndarray]] = {}
    for spec in specs:
        kind, src = _split_kind(spec)
        if kind == "face" and "=" not in spec:
            raise DataError(f"--paste {spec}: give the kind of its faces, e.g. no_mask={spec}")
        files = detect_report.resolve_images(src)
        if limit is not None and limit < len(files):
            files = list(files)
            random.Random(seed).shuffle(files)
            files = sorted(files[:limit])
        for f in files:
            try:
                img = read_rgb(f)
            except DataError:
                continue
            if min(img.shape[:2]) < 16:
                continue
            crops.setdefault(kind, []).append(_resize_keep(img, PASTE_KEEP_PX)[0])
    return PastePool(crops), {k: len(v) for k, v in crops.items()}


def _feather(h: int, w: int) -> np.ndarray:
    """Alpha (h x w x 1) that is 1 inside and falls to 0 at the edges (12% of each side)."""
    def ramp(n: int) -> np.ndarray:
        r = max(1.0, 0.12 * n)
        i = np.arange(n, dtype=np.float32)
        return np.clip(np.minimum(i + 0.5, n - i - 0.5) / r, 0.0, 1.0)

    return (ramp(h)[:, None] * ramp(w)[None, :])[..., None]


def paste_faces(img: np.ndarray, boxes: np.ndarray, classes: np.ndarray, kinds: list[str], pool: PastePool,
                rng: np.random.Generator, scale: float, px: tuple[float, float], count: int,
                want_unmasked: bool, avoid: np.ndarray | None = None,
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Paste up to ``count`` crops from ``pool`` into ``img`` (copy-paste augmentation).

    Args:
        scale: network input pixels per image pixel (the letterbox scale), so that
            pasted faces are ``px`` (min, max) pixels at the network input.
        want_unmasked: draw the kind ``no_mask`` when the pool has it; else any kind.
        avoid: boxes (besides ``boxes``) a pasted face must not overlap (ignore regions).

    Returns:
        (image with the faces, boxes + the pasted boxes, classes, kinds); a pasted box
        overlapping another box is not pasted.
    """
    from convert.verify.metrics import iou_matrix

    kinds_avail = pool.kinds()
    if not kinds_avail or count < 1:
        return img, boxes, classes, kinds
    img = img.copy()
    h, w = img.shape[:2]
    occupied = boxes if avoid is None or not len(avoid) else np.concatenate([boxes, avoid])
    new_boxes, new_kinds = [], []
    for _ in range(count):
        kind = UNMASKED if want_unmasked and UNMASKED in kinds_avail else kinds_avail[int(rng.integers(len(kinds_avail)))]
        crops = pool.crops[kind]
        crop = crops[int(rng.integers(len(crops)))]
        # log-uniform size at the network input -> image pixels
        side = float(np.exp(rng.uniform(np.log(px[0]), np.log(px[1])))) / max(scale, 1e-6)
        ch, cw = crop.shape[:2]
        bw = max(4, int(round(side * cw / max(ch, cw))))
        bh = max(4, int(round(side * ch / max(ch, cw))))
        if bw >= w or bh >= h:
            continue
        for _try in range(5):  # a few places; a crowded photo may have no free one
            x0, y0 = int(rng.integers(0, w - bw + 1)), int(rng.integers(0, h - bh + 1))
            b = np.array([[x0, y0, x0 + bw, y0 + bh]], np.float32)
            if not len(occupied) or iou_matrix(b, occupied).max() == 0.0:
                break
        else:
            continue
        patch = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA if bw < cw else cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        a = _feather(bh, bw)
        region = img[y0:y0 + bh, x0:x0 + bw].astype(np.float32)
        img[y0:y0 + bh, x0:x0 + bw] = (a * patch + (1 - a) * region).astype(np.uint8)
        occupied = np.concatenate([occupied, b]) if len(occupied) else b
        new_boxes.append(b[0])
        new_kinds.append(kind)
    if not new_boxes:
        return img, boxes, classes, kinds
    return (img, np.concatenate([boxes.reshape(-1, 4), np.asarray(new_boxes, np.float32)]),
            np.concatenate([classes, np.zeros(len(new_boxes), np.int64)]), list(kinds) + new_kinds)


@dataclass
class PasteConfig:
    """Copy-paste augmentation settings (``--paste*``, ``--min-unmasked``)."""

    pool: PastePool
    prob: float = 0.5
    max_count: int = 4
    px: tuple[float, float] = DEFAULT_PASTE_PX


def unmasked_weight(examples: list[Example], target: float) -> float:
    """How much more often to draw a photo holding an unmasked face than one without.

    The weight ``a`` that makes unmasked faces ``target`` of the labelled boxes
    drawn in expectation: ``a*U / (a*B_u + B_o) = target`` with ``U`` the
    unmasked boxes, ``B_u`` all boxes of the photos holding one and ``B_o`` the
    boxes of the other photos; at most ``MAX_OVERSAMPLE`` (a few photos must not
    dominate), 1 when the share is already reached or nothing is unmasked.
    """
    u = bu = bo = 0
    for e in examples:
        n_u = sum(1 for k in e.kinds if k == UNMASKED)
        if n_u:
            u, bu = u + n_u, bu + len(e.boxes)
        else:
            bo += len(e.boxes)
    if target <= 0 or not u or u >= target * (bu + bo):
        return 1.0
    if u <= target * bu:
        return MAX_OVERSAMPLE
    return float(min(MAX_OVERSAMPLE, max(1.0, target * bo / (u - target * bu))))


def epoch_order(examples: list[Example], rng: np.random.Generator, weight: float = 1.0) -> np.ndarray:
    """The photos of one epoch: a permutation, or with ``weight`` > 1 a weighted draw with
    replacement (same length) in which photos holding an unmasked face are ``weight`` times as likely."""
    n = len(examples)
    if weight <= 1.0:
        return rng.permutation(n)
    w = np.array([weight if any(k == UNMASKED for k in e.kinds) else 1.0 for e in examples])
    return rng.choice(n, size=n, replace=True, p=w / w.sum())


@dataclass
class KindBalance:
    """Counts the kinds of the boxes the network sees; says when to paste unmasked faces."""

    target: float = 0.0
    seen: dict[str, int] = field(default_factory=dict)

    def want_unmasked(self) -> bool:
        total = sum(self.seen.values())
        return self.target > 0 and self.seen.get(UNMASKED, 0) < self.target * max(total, 1)

    def add(self, kinds: list[str]) -> None:
        for k in kinds:
            self.seen[k] = self.seen.get(k, 0) + 1

    def share(self, kind: str = UNMASKED) -> float:
        total = sum(self.seen.values())
        return self.seen.get(kind, 0) / total if total else 0.0


@dataclass
class Augmented:
    """One augmented training image: boxes (N x 4), classes, kinds, ignore regions (K x 4)."""

    image: np.ndarray
    boxes: np.ndarray
    classes: np.ndarray
    kinds: list[str]
    ignore: np.ndarray


def _crop_boxes(boxes: np.ndarray, x0: int, y0: int, w: int, h: int, min_keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes moved into a crop window and clipped; mask of those keeping ``min_keep`` of their area."""
    if not len(boxes):
        return boxes.reshape(-1, 4), np.zeros((0,), bool)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    b = boxes - np.array([x0, y0, x0, y0], np.float32)
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, w)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, h)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    keep = (bw * bh >= min_keep * np.maximum(area, 1e-6)) & (bw >= MIN_BOX_PX) & (bh >= MIN_BOX_PX)
    return b, keep


def night(img: np.ndarray, rng: np.random.Generator, p: float) -> np.ndarray:
    """With probability ``p``: greyscale (NoIR camera under IR light), dusk (gamma-darkened to
    1/5-1/2 with sensor noise) or a horizontal motion blur, one of the three at random."""
    if p <= 0 or rng.random() >= p:
        return img
    kind = int(rng.integers(3))
    if kind == 0:
        g = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return np.stack([g, g, g], -1)
    if kind == 1:
        return darken(img, rng, (0.2, 0.5), (3, 10))
    return line_blur(img, int(rng.integers(5, 12)))


def augment(ex: Example, rng: np.random.Generator, out_size: tuple[int, int], paste: PasteConfig | None = None,
            balance: KindBalance | None = None, night_p: float = 0.0, crop_min: float = DEFAULT_CROP_MIN) -> Augmented:
    """Random crop or zoom-out, pasted faces, horizontal flip and HSV jitter; boxes follow.

    Args:
        out_size: (width, height) of the network input, for the crop's aspect ratio
            and the pasted faces' size.
        paste: copy-paste settings, or None.
        balance: kinds seen so far (asks for unmasked pasted faces when short of them).
        crop_min: the smallest crop window, as a share of each side (zoom-in: larger faces).

    Returns:
        The image and its boxes; boxes cut below 40% of their area or under 2 px
        are dropped (ignore regions are kept while any part is left).
    """
    img, boxes, classes = ex.image, ex.boxes.copy(), ex.classes.copy()
    kinds = list(ex.kinds) if len(ex.kinds) == len(boxes) else ["face"] * len(boxes)
    ignore = ex.ignore.copy().reshape(-1, 4)
    h, w = img.shape[:2]
    if rng.random() < 0.25:
        # zoom out: the picture smaller inside a grey canvas (more small faces)
        z = rng.uniform(1.0, 1.6)
        cw, ch = int(w * z), int(h * z)
        ox, oy = int(rng.integers(0, cw - w + 1)), int(rng.integers(0, ch - h + 1))
        canvas = np.full((ch, cw, 3), 127, np.uint8)
        canvas[oy:oy + h, ox:ox + w] = img
        shift = np.array([ox, oy, ox, oy], np.float32)
        img, boxes, ignore = canvas, boxes + shift, ignore + shift
    else:
        # crop: a window of crop_min-100% of each side, aspect ratio jittered around the input's
        s = rng.uniform(crop_min, 1.0)
        ar = out_size[0] / out_size[1] * rng.uniform(0.8, 1.25)
        cw = min(w, w * s)
        ch = min(h, cw / ar)
        cw = min(w, ch * ar)
        x0, y0 = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        x0i, y0i, x1i, y1i = int(x0), int(y0), int(np.ceil(x0 + cw)), int(np.ceil(y0 + ch))
        img = img[y0i:y1i, x0i:x1i]
        boxes, keep = _crop_boxes(boxes, x0i, y0i, img.shape[1], img.shape[0], 0.4)
        boxes, classes = boxes[keep], classes[keep]
        kinds = [k for k, on in zip(kinds, keep) if on]
        ignore, keep_i = _crop_boxes(ignore, x0i, y0i, img.shape[1], img.shape[0], 0.0)
        ignore = ignore[keep_i]
    img = np.ascontiguousarray(img)
    if paste is not None and rng.random() < paste.prob:
        scale = min(out_size[0] / img.shape[1], out_size[1] / img.shape[0])
        n = int(rng.integers(1, paste.max_count + 1))
        want = balance.want_unmasked() if balance is not None else False
        img, boxes, classes, kinds = paste_faces(img, boxes, classes, kinds, paste.pool, rng, scale, paste.px, n,
                                                 want, ignore)
    if rng.random() < 0.5:
        img = np.ascontiguousarray(img[:, ::-1])
        iw = img.shape[1]
        if len(boxes):
            boxes = np.stack([iw - boxes[:, 2], boxes[:, 1], iw - boxes[:, 0], boxes[:, 3]], 1)
        if len(ignore):
            ignore = np.stack([iw - ignore[:, 2], ignore[:, 1], iw - ignore[:, 0], ignore[:, 3]], 1)
    # darknet's hue .1, saturation/exposure 1.5
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-0.1, 0.1) * 180) % 180
    hsv[..., 1] *= np.exp(rng.uniform(-np.log(1.5), np.log(1.5)))
    hsv[..., 2] *= np.exp(rng.uniform(-np.log(1.5), np.log(1.5)))
    img = cv2.cvtColor(hsv.clip(0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    img = night(img, rng, night_p)
    if balance is not None:
        balance.add(kinds)
    return Augmented(img, boxes.astype(np.float32).reshape(-1, 4), classes, kinds,
                     ignore.astype(np.float32).reshape(-1, 4))


# Mosaic tiles: boxes smaller than this (either side, input pixels) become ignore regions.
MOSAIC_MIN_BOX_PX = 4.0


def mosaic(ex: Example, others: list[Example], rng: np.random.Generator, out_size: tuple[int, int],
           paste: PasteConfig | None = None, balance: KindBalance | None = None, night_p: float = 0.0,
           crop_min: float = DEFAULT_CROP_MIN) -> Augmented:
    """Four augmented photos (``ex`` and three ``others``) in the four quarters of one input-sized
    canvas, split at a random centre (25-75% of each side): a crowded scene whose faces are
    about half the size they have alone, with exact boxes (YOLOv4's mosaic, at the input's scale).

    Each tile is ``augment``ed at its quarter's aspect, scaled to cover the quarter and cut to
    it. Faces cut below 40% of their area, and faces under ``MOSAIC_MIN_BOX_PX`` a side,
    become ignore regions (seen, but neither face nor background). ``balance`` counts the
    kinds of the boxes kept (and asks the tiles' pasting for unmasked faces as ``augment`` does).
    """
    w, h = out_size
    cx, cy = int(round(rng.uniform(0.25, 0.75) * w)), int(round(rng.uniform(0.25, 0.75) * h))
    canvas = np.full((h, w, 3), 127, np.uint8)
    boxes, classes, kinds, ignore = [], [], [], []
    tile_balance = KindBalance(balance.target, dict(balance.seen)) if balance is not None else None
    for src, (x0, y0, x1, y1) in zip([ex, *others], ((0, 0, cx, cy), (cx, 0, w, cy), (0, cy, cx, h), (cx, cy, w, h))):
        qw, qh = x1 - x0, y1 - y0
        a = augment(src, rng, (qw, qh), paste, tile_balance, night_p, crop_min)
        ih, iw = a.image.shape[:2]
        s = max(qw / iw, qh / ih)
        rw, rh = max(qw, int(np.ceil(iw * s))), max(qh, int(np.ceil(ih * s)))
        img = cv2.resize(a.image, (rw, rh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        ox, oy = int(rng.integers(0, rw - qw + 1)), int(rng.integers(0, rh - qh + 1))
        canvas[y0:y1, x0:x1] = img[oy:oy + qh, ox:ox + qw]
        shift = np.array([x0, y0, x0, y0], np.float32)
        b, keep = _crop_boxes(a.boxes * np.float32(s), ox, oy, qw, qh, 0.4)
        small = (b[:, 2] - b[:, 0] < MOSAIC_MIN_BOX_PX) | (b[:, 3] - b[:, 1] < MOSAIC_MIN_BOX_PX)
        face = keep & ~small
        boxes.append(b[face] + shift)
        classes.append(a.classes[face])
        kinds += [k for k, on in zip(a.kinds, face) if on]
        ig, keep_i = _crop_boxes(a.ignore.reshape(-1, 4) * np.float32(s), ox, oy, qw, qh, 0.0)
        visible = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        ignore += [ig[keep_i] + shift, b[~face & visible] + shift]
    if balance is not None:
        balance.add(kinds)
    return Augmented(canvas, np.concatenate(boxes).astype(np.float32).reshape(-1, 4),
                     np.concatenate(classes),
                     kinds, np.concatenate(ignore).astype(np.float32).reshape(-1, 4))


@dataclass(frozen=True)
class HeadMeta:
    """What the loss needs of one yolo head."""

    grid: tuple[int, int]  # H, W
    anchors: np.ndarray  # A x 2, input pixels
    mask: list[int]
    classes: int


def head_meta(net: Any) -> list[HeadMeta]:
    """One HeadMeta per yolo head of a ``convert.parse.darknet.Network``."""
    return [HeadMeta(h.grid, np.asarray(h.anchors, np.float32), list(h.mask), h.classes) for h in net.heads]


def build_targets(boxes: np.ndarray, classes: np.ndarray, heads: list[HeadMeta], width: int, height: int,
                  max_boxes: int, assign_iou: float | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Darknet-style targets of one image (boxes in input pixels).

    Each box goes to its best-fitting anchor; with ``assign_iou`` (darknet's ``iou_thresh``,
    0.213 in YOLOv4) also to every other anchor whose centred IoU with it exceeds that, in
    whichever head owns it, unless that cell's anchor already holds a box: more positives
    per face, so that a face between two anchor sizes is learnt by both.

    Returns:
        (per head an array H x W x A x (6 + C): tx, ty (offset in the cell),
        tw, th (log of size / anchor), objectness, box weight, one-hot classes;
        the image's boxes padded to max_boxes x 4 with zeros, for the ignore mask).
    """
    all_anchors: dict[int, tuple[int, int, np.ndarray]] = {}
    for k, hm in enumerate(heads):
        for a, m in enumerate(hm.mask):
            all_anchors[m] = (k, a, hm.anchors[a])
    ids = sorted(all_anchors)
    anchor_wh = np.stack([all_anchors[i][2] for i in ids])
    targets = [np.zeros((hm.grid[0], hm.grid[1], len(hm.mask), 6 + hm.classes), np.float32) for hm in heads]
    padded = np.zeros((max_boxes, 4), np.float32)
    boxes = boxes[:max_boxes]
    padded[: len(boxes)] = boxes
    for (x1, y1, x2, y2), c in zip(boxes, classes[: len(boxes)]):
        bw, bh = x2 - x1, y2 - y1
        if bw < 1 or bh < 1:
            continue
        inter = np.minimum(bw, anchor_wh[:, 0]) * np.minimum(bh, anchor_wh[:, 1])
        iou = inter / (bw * bh + anchor_wh[:, 0] * anchor_wh[:, 1] - inter)
        best = int(np.argmax(iou))
        extra = [] if assign_iou is None else [j for j in np.flatnonzero(iou > assign_iou) if j != best]
        for rank, j in enumerate([best, *extra]):
            k, a, anchor = all_anchors[ids[int(j)]]
            gh, gw = heads[k].grid
            cx, cy = (x1 + x2) / 2 / width * gw, (y1 + y2) / 2 / height * gh
            col, row = min(int(cx), gw - 1), min(int(cy), gh - 1)
            t = targets[k][row, col, a]
            if rank and t[4]:  # an extra anchor never takes a cell another box holds
                continue
            t[0], t[1] = np.clip(cx - col, 0.0, 1.0), np.clip(cy - row, 0.0, 1.0)
            t[2], t[3] = np.log(bw / anchor[0]), np.log(bh / anchor[1])
            t[4] = 1.0
            t[5] = 2.0 - (bw * bh) / (width * height)
            t[6:] = 0.0
            if 0 <= c < heads[k].classes:
                t[6 + int(c)] = 1.0
    return targets, padded


def make_batch(examples: list[Example], spec: Any, heads: list[HeadMeta], rng: np.random.Generator,
               max_boxes: int, train: bool = True, paste: PasteConfig | None = None,
               balance: KindBalance | None = None, night_p: float = 0.0,
               crop_min: float = DEFAULT_CROP_MIN, mosaic_p: float = 0.0,
               pool: list[Example] | None = None,
               assign_iou: float | None = None) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Augment (when ``train``), preprocess with ``edge.infer.preprocess.prepare`` and build targets.

    With ``mosaic_p`` > 0 that share of the images is a ``mosaic`` of the example and three
    photos drawn from ``pool`` (default: the batch). ``assign_iou``: see ``build_targets``.

    Returns:
        (inputs, per-head targets, B x max_boxes x 4 boxes for the ignore mask: the true
        boxes, then the ignore regions, padded with zeros).
    """
    from edge.infer.preprocess import prepare

    xs, tg, gts = [], [[] for _ in heads], []
    for ex in examples:
        if train and mosaic_p > 0 and rng.random() < mosaic_p:
            src = pool or examples
            others = [src[int(i)] for i in rng.integers(0, len(src), 3)]
            a = mosaic(ex, others, rng, (spec.width, spec.height), paste, balance, night_p, crop_min)
            img, boxes, classes, ignore = a.image, a.boxes, a.classes, a.ignore
        elif train:
            a = augment(ex, rng, (spec.width, spec.height), paste, balance, night_p, crop_min)
            img, boxes, classes, ignore = a.image, a.boxes, a.classes, a.ignore
        else:
            img, boxes, classes, ignore = ex.image, ex.boxes, ex.classes, ex.ignore
        x, tf = prepare(img, spec, dtype="float32")
        m = np.array([tf.sx, tf.sy, tf.sx, tf.sy], np.float32)
        d = np.array([tf.dx, tf.dy, tf.dx, tf.dy], np.float32)
        if len(boxes):
            boxes = boxes * m + d
        t, padded = build_targets(boxes, classes, heads, spec.width, spec.height, max_boxes, assign_iou)
        if len(ignore):
            # Ignore regions only join the ignore mask's boxes (no target is built for them).
            ign = (ignore.reshape(-1, 4) * m + d)[: max(0, max_boxes - min(len(boxes), max_boxes))]
            padded[min(len(boxes), max_boxes):min(len(boxes), max_boxes) + len(ign)] = ign
        xs.append(x[0])
        for k, tk in enumerate(t):
            tg[k].append(tk)
        gts.append(padded)
    return np.stack(xs), [np.stack(t) for t in tg], np.stack(gts)


# ---------------------------------------------------------------------------
# Loss


def yolo_loss(outputs: list[Any], targets: list[Any], gt_boxes: Any, heads: list[HeadMeta], width: int,
              height: int, ignore_iou: float = DEFAULT_IGNORE_IOU) -> tuple[Any, dict[str, Any]]:
    """The darknet-style loss of a batch (see the module docstring), summed, divided by the batch size.

    Args:
        outputs: raw head outputs, B x H x W x A*(5+C) each.
        targets: from ``build_targets``, B x H x W x A x (6+C) each.
        gt_boxes: B x M x 4 true boxes in input pixels (zero rows are padding).

    Returns:
        (total loss, {"xy", "wh", "obj", "cls"} parts).
    """
    import tensorflow as tf

    bce = tf.nn.sigmoid_cross_entropy_with_logits
    batch = tf.cast(tf.shape(outputs[0])[0], tf.float32)
    parts = {"xy": 0.0, "wh": 0.0, "obj": 0.0, "cls": 0.0}
    gt = gt_boxes[:, None, None, None, :, :]  # B,1,1,1,M,4
    gt_valid = tf.cast((gt_boxes[..., 2] - gt_boxes[..., 0]) > 0, tf.float32)[:, None, None, None, :]
    gt_area = (gt[..., 2] - gt[..., 0]) * (gt[..., 3] - gt[..., 1])
    for out, t, hm in zip(outputs, targets, heads):
        gh, gw = hm.grid
        na, nc = len(hm.mask), hm.classes
        p = tf.reshape(out, (-1, gh, gw, na, 5 + nc))
        obj, wgt = t[..., 4], t[..., 5]
        pos = obj * wgt
        parts["xy"] += tf.reduce_sum(pos[..., None] * bce(labels=t[..., 0:2], logits=p[..., 0:2]))
        parts["wh"] += tf.reduce_sum(pos[..., None] * 0.5 * tf.square(t[..., 2:4] - p[..., 2:4]))
        parts["cls"] += tf.reduce_sum(obj[..., None] * bce(labels=t[..., 6:], logits=p[..., 5:]))
        # predicted boxes (as edge/infer/yolo.py decodes them) for the ignore mask
        col = tf.reshape(tf.range(gw, dtype=tf.float32), (1, 1, gw, 1))
        row = tf.reshape(tf.range(gh, dtype=tf.float32), (1, gh, 1, 1))
        anchors = tf.constant(hm.anchors, tf.float32)
        cx = (col + tf.sigmoid(p[..., 0])) / gw * width
        cy = (row + tf.sigmoid(p[..., 1])) / gh * height
        w = tf.exp(tf.clip_by_value(p[..., 2], -10.0, 10.0)) * anchors[:, 0]
        h = tf.exp(tf.clip_by_value(p[..., 3], -10.0, 10.0)) * anchors[:, 1]
        pb = tf.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)[..., None, :]  # B,H,W,A,1,4
        iw = tf.maximum(0.0, tf.minimum(pb[..., 2], gt[..., 2]) - tf.maximum(pb[..., 0], gt[..., 0]))
        ih = tf.maximum(0.0, tf.minimum(pb[..., 3], gt[..., 3]) - tf.maximum(pb[..., 1], gt[..., 1]))
        inter = iw * ih
        iou = inter / tf.maximum((w * h)[..., None] + gt_area - inter, 1e-9) * gt_valid
        ignore = tf.cast(tf.reduce_max(iou, axis=-1) > ignore_iou, tf.float32)
        ignore = tf.stop_gradient(ignore)
        obj_w = obj + (1.0 - obj) * (1.0 - ignore)
        parts["obj"] += tf.reduce_sum(obj_w * bce(labels=obj, logits=p[..., 4]))
    parts = {k: v / batch for k, v in parts.items()}
    return parts["xy"] + parts["wh"] + parts["obj"] + parts["cls"], parts


# ---------------------------------------------------------------------------
# Keras <-> darknet weights


def extract_weights(model: Any, net: Any) -> dict[int, dict[str, np.ndarray]]:
    """Darknet weights of a model built by ``convert.parse.darknet.build_keras`` (inverse of its set_weights).

    BatchNorm stays folded: layers with ``batch_normalize`` get scale 1, mean 0
    and variance 1 - eps, so darknet (and our converter) compute exactly the conv + bias.
    """
    from convert.parse import darknet

    names = dict(zip((hd.conv_index for hd in net.heads), darknet.head_names(net)))
    out: dict[int, dict[str, np.ndarray]] = {}
    for layer in net.conv_layers:
        i, p = layer.index, layer.params
        n, k, g = p["filters"], p["size"], p["groups"]
        in_c = net.layers[layer.inputs[0]].out_shape[2] if layer.inputs[0] >= 0 else net.channels
        name = names.get(i, f"conv_{i}")
        if g == 1:
            kernel, bias = model.get_layer(name).get_weights()
            dk = kernel.transpose(3, 2, 0, 1)
        elif g == in_c:
            kernel, bias = model.get_layer(name).get_weights()  # k,k,g,mult
            dk = kernel.transpose(2, 3, 0, 1).reshape(n, 1, k, k)
        else:
            ks, bs = [], []
            for gi in range(g):
                kg, bg = model.get_layer(f"conv_{i}_g{gi}").get_weights()
                ks.append(kg.transpose(3, 2, 0, 1))
                bs.append(bg)
            dk, bias = np.concatenate(ks), np.concatenate(bs)
        d = {"biases": np.asarray(bias, np.float32), "weights": np.ascontiguousarray(dk, np.float32)}
        if p["batch_normalize"]:
            d["scales"] = np.ones(n, np.float32)
            d["mean"] = np.zeros(n, np.float32)
            d["variance"] = np.full(n, 1.0 - darknet.BN_EPSILON, np.float32)
        out[i] = d
    return out


# ---------------------------------------------------------------------------
# Training


@dataclass
class Extras:
    """Training signal beyond the labelled boxes (see the module docstring)."""

    teacher_peers: Path | None = None
    teacher_cache: Path | None = None
    teacher_label_score: float = 0.8
    teacher_ignore_score: float = 0.8
    teacher_add_score: float | None = None
    unlabelled: list[str] = field(default_factory=list)
    unlabelled_limit: int | None = None
    paste: list[str] = field(default_factory=list)
    paste_prob: float = 0.5
    paste_max: int = 4
    paste_px: tuple[float, float] = DEFAULT_PASTE_PX
    min_unmasked: float = 0.0
    night: float = 0.0
    oversample_unmasked: float = 0.0
    crop_min: float = DEFAULT_CROP_MIN
    mosaic: float = 0.0
    assign_iou: float | None = None


def _ckpt_path(out: Path) -> Path:
    return Path(str(out) + ".ckpt.npz")


def _save_checkpoint(path: Path, model: Any, opt: Any, epoch: int, step: int, rng: np.random.Generator,
                     history: list[dict], signature: dict) -> None:
    """Weights, optimizer state, random state and history after ``epoch`` (atomic replace)."""
    arrays = {f"w{i}": v.numpy() for i, v in enumerate(model.weights)}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(opt.variables)})
    meta = {"epoch": epoch, "step": step, "rng": rng.bit_generator.state, "history": history,
            "signature": signature}
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
    tmp.replace(path)


def _load_checkpoint(path: Path, model: Any, opt: Any, signature: dict) -> dict | None:
    """Restore a checkpoint written for the same settings; None when there is none or it does not fit."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            if meta.get("signature") != signature:
                log.warning("%s was written for other settings: starting from the start", path)
                return None
            for i, v in enumerate(model.weights):
                v.assign(z[f"w{i}"])
            for i, v in enumerate(opt.variables):
                v.assign(z[f"o{i}"])
    except (OSError, ValueError, KeyError) as e:
        log.warning("cannot resume from %s (%s): starting from the start", path, e)
        return None
    return meta


def _fmt_time(seconds: float) -> str:
    m = int(seconds // 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{int(seconds % 60):02d}s"


def train(cfg: Path, weights: Path, names: Path, sources: list[Path], out: Path,
          input_size: tuple[int, int] | None = None, epochs: int = DEFAULT_EPOCHS, batch: int = DEFAULT_BATCH,
          lr: float = DEFAULT_LR, ignore_iou: float = DEFAULT_IGNORE_IOU, seed: int = 0,
          limit: int | None = None, max_minutes: float | None = None, threads: int = 2,
          progress: bool = True, max_boxes: int = 150, exclude: list[Path] | None = None,
          extras: Extras | None = None, resume: bool = False, ema: float = 0.0) -> TrainDetectorResult:
    """Fine-tune, then write ``out`` (darknet weights) and ``out.json`` (the training log).

    With ``ema`` (a momentum in (0, 1)) the weights written are the exponential moving
    average of the weights after each batch (the optimizer keeps it, so checkpoints carry it),
    not the last batch's: less noise from the last batches of a small, noisy dataset.

    A checkpoint (``OUT.ckpt.npz``) is written after every epoch; with ``resume``
    training continues from it (same settings only) instead of starting again.

    Raises:
        DataError: bad cfg/weights/names/images.
    """
    import tensorflow as tf

    from edge.manifest import InputSpec

    from convert.parse import darknet

    extras = extras or Extras()
    out = Path(out)
    t0 = time.monotonic()
    tf.keras.utils.set_random_seed(seed)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # already initialised in this process (tests)
        pass
    net = darknet.load_network(cfg, input_size)
    header, wts = darknet.read_weights(weights, net)
    labels = darknet.read_names(names, net.heads[0].classes)
    heads = head_meta(net)
    spec = InputSpec(width=net.width, height=net.height, channels=net.channels, color="RGB",
                     resize="letterbox", pad_value=127.5, scale=1.0 / 255.0, dtype="float32")
    keep_side = int(KEEP_SCALE * max(net.width, net.height))
    teacher = None
    if extras.teacher_peers is not None:
        from convert.train.teacher import TeacherCache

        teacher = TeacherCache(extras.teacher_cache or Path(str(out) + ".teacher.json"), extras.teacher_peers)
    elif extras.unlabelled:
        raise UsageError("--unlabelled needs --teacher-peers (the teacher labels those photos)")
    examples, stats = load_examples(sources, labels, keep_side, limit, seed, progress, exclude, teacher,
                                    extras.teacher_ignore_score, extras.teacher_add_score)
    if extras.unlabelled:
        if len(labels) != 1:
            raise UsageError("--unlabelled needs a one-class detector (teacher boxes are faces)")
        more, stats["unlabelled"] = load_unlabelled(extras.unlabelled, teacher, keep_side,
                                                    extras.teacher_label_score, extras.unlabelled_limit, seed,
                                                    progress, exclude)
        examples += more
    paste = None
    if extras.paste:
        if len(labels) != 1:
            raise UsageError("--paste needs a one-class detector (pasted crops are faces)")
        pool, stats["paste_pool"] = load_paste_pool(extras.paste, seed=seed)
        paste = PasteConfig(pool, extras.paste_prob, extras.paste_max, extras.paste_px)
    n_boxes = sum(len(e.boxes) for e in examples)
    n_ignore = sum(len(e.ignore) for e in examples)
    weight = unmasked_weight(examples, extras.oversample_unmasked)
    if extras.oversample_unmasked:
        print(f"--oversample-unmasked {extras.oversample_unmasked:.2f}: photos with an unmasked face drawn "
              f"{weight:.2f}x as often", flush=True)
    print(f"{len(examples)} images ({stats['skipped_near_duplicates']} near-duplicates of --exclude left out), "
          f"{n_boxes} boxes, {n_ignore} teacher ignore regions; input {net.width}x{net.height}; {epochs} epochs "
          f"of {-(-len(examples) // batch)} batches of {batch}"
          + (f"; pasting {', '.join(f'{k} {v}' for k, v in stats['paste_pool'].items())} crops" if paste else ""),
          flush=True)

    model = darknet.build_keras(net, wts)
    steps_per_epoch = -(-len(examples) // batch)
    total = max(1, epochs * steps_per_epoch)
    warm = min(steps_per_epoch, total // 4 + 1)

    def lr_at(step: int) -> float:
        if step < warm:
            return lr * (step + 1) / warm
        return 0.5 * lr * (1 + np.cos(np.pi * (step - warm) / max(1, total - warm)))

    opt = (tf.keras.optimizers.Adam(learning_rate=lr, use_ema=True, ema_momentum=ema) if ema
           else tf.keras.optimizers.Adam(learning_rate=lr))
    variables = model.trainable_variables
    opt.build(variables)  # variables created outside the tf.function

    @tf.function(reduce_retracing=True)
    def step_fn(x, t, g, rate):
        opt.learning_rate.assign(rate)
        with tf.GradientTape() as tape:
            outs = model(x, training=True)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            loss, parts = yolo_loss(list(outs), t, g, heads, net.width, net.height, ignore_iou)
        grads = tape.gradient(loss, variables)
        grads, _ = tf.clip_by_global_norm(grads, 10.0)
        opt.apply_gradients(zip(grads, variables))
        return loss, parts

    rng = np.random.default_rng(seed)
    losses: list[float] = []
    history: list[dict[str, Any]] = []
    step, first_epoch = 0, 0
    ckpt = _ckpt_path(out)
    signature = {"cfg": str(cfg), "weights": str(weights), "input": [net.width, net.height], "epochs": epochs,
                 "batch": batch, "lr": lr, "seed": seed, "images": len(examples), "boxes": n_boxes,
                 "paste": list(extras.paste), "min_unmasked": extras.min_unmasked, "night": extras.night,
                 "teacher_ignore_score": extras.teacher_ignore_score, "unlabelled": list(extras.unlabelled),
                 "oversample_unmasked": extras.oversample_unmasked, "crop_min": extras.crop_min,
                 "teacher_add_score": extras.teacher_add_score, "mosaic": extras.mosaic}
    if ema:  # only then, so that checkpoints written before --ema existed still resume
        signature["ema"] = ema
    if extras.assign_iou is not None:  # likewise
        signature["assign_iou"] = extras.assign_iou
    if resume:
        meta = _load_checkpoint(ckpt, model, opt, signature)
        if meta is not None:
            first_epoch, step, history = meta["epoch"], meta["step"], meta["history"]
            rng.bit_generator.state = meta["rng"]
            losses = [h["loss"] for h in history]
            print(f"resuming from {ckpt} after epoch {first_epoch}", flush=True)
    stopped_early = False
    out.parent.mkdir(parents=True, exist_ok=True)
    t_train = time.monotonic()
    for epoch in range(first_epoch, epochs):
        order = epoch_order(examples, rng, weight)
        balance = KindBalance(extras.min_unmasked)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs}", unit="batch")
        sums = {"loss": 0.0, "xy": 0.0, "wh": 0.0, "obj": 0.0, "cls": 0.0}
        for b in range(steps_per_epoch):
            idx = order[b * batch:(b + 1) * batch]
            x, t, g = make_batch([examples[i] for i in idx], spec, heads, rng, max_boxes, True, paste, balance,
                                 extras.night, extras.crop_min, extras.mosaic, examples, extras.assign_iou)
            loss, parts = step_fn(tf.constant(x), [tf.constant(v) for v in t], tf.constant(g),
                                  tf.constant(lr_at(step), tf.float32))
            step += 1
            sums["loss"] += float(loss)
            for k, v in parts.items():
                sums[k] += float(v)
            if bar is not None:
                bar.set_postfix(loss=f"{sums['loss'] / (b + 1):.3f}", lr=f"{lr_at(step):.1e}",
                                unmasked=f"{balance.share():.2f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        mean = {k: round(v / steps_per_epoch, 5) for k, v in sums.items()}
        done = epoch + 1 - first_epoch
        per_epoch = (time.monotonic() - t_train) / done
        history.append({"epoch": epoch + 1, **mean, "seconds": round(time.monotonic() - t0, 1),
                        "boxes_seen": dict(balance.seen), "unmasked_share": round(balance.share(), 4)})
        losses.append(mean["loss"])
        _save_checkpoint(ckpt, model, opt, epoch + 1, step, rng, history, signature)
        print(f"epoch {epoch + 1}/{epochs}: loss {mean['loss']:.4f} (xy {mean['xy']:.3f} wh {mean['wh']:.3f} "
              f"obj {mean['obj']:.3f}), unmasked {balance.share():.0%} of {sum(balance.seen.values())} boxes, "
              f"{per_epoch:.0f} s/epoch, about {_fmt_time(per_epoch * (epochs - epoch - 1))} left", flush=True)
        if max_minutes is not None and time.monotonic() - t0 > 60 * max_minutes and epoch + 1 < epochs:
            log.warning("stopping after epoch %d: --max-minutes %.1f reached (resume with --resume)",
                        epoch + 1, max_minutes)
            stopped_early = True
            break

    if ema:
        opt.finalize_variable_values(variables)  # the moving average replaces the last batch's weights
    darknet.write_weights(out, net, extract_weights(model, net), (header.major, header.minor, header.revision),
                          header.seen + step * batch)
    # The file must read back for the cfg (same check convert darknet does).
    darknet.read_weights(out, net)
    seconds = round(time.monotonic() - t0, 1)
    log_path = out.with_suffix(".json")
    log_path.write_text(json.dumps({
        "cfg": str(cfg), "start_weights": str(weights), "names": labels, "train": [str(s) for s in sources],
        "data": {**stats, "images": len(examples), "boxes": n_boxes, "teacher_ignore_regions": n_ignore},
        "extras": {"teacher_peers": str(extras.teacher_peers) if extras.teacher_peers else None,
                   "teacher_label_score": extras.teacher_label_score,
                   "teacher_ignore_score": extras.teacher_ignore_score,
                   "teacher_add_score": extras.teacher_add_score, "unlabelled": extras.unlabelled,
                   "paste": extras.paste, "paste_prob": extras.paste_prob, "paste_max": extras.paste_max,
                   "paste_px": list(extras.paste_px), "min_unmasked": extras.min_unmasked,
                   "night_aug": extras.night, "oversample_unmasked": extras.oversample_unmasked,
                   "unmasked_photo_weight": round(weight, 4), "crop_min": extras.crop_min,
                   "mosaic": extras.mosaic, "assign_iou": extras.assign_iou},
        "input": [net.width, net.height], "epochs": epochs, "epochs_run": len(history), "batch": batch,
        "lr": lr, "ema": ema or None, "ignore_iou": ignore_iou, "seed": seed, "stopped_early": stopped_early,
        "resumed_after_epoch": first_epoch or None, "history": history, "seconds": seconds,
    }, indent=2) + "\n")
    print(f"wrote {out} and {log_path} in {seconds:.0f}s (final loss {losses[-1]:.4f})", flush=True)
    return TrainDetectorResult(out, log_path, losses, seconds)


def main(args: argparse.Namespace) -> int:
    """Entry point of ``doorguard train detector``."""
    from convert.pipeline.darknet_cli import parse_size

    if args.epochs < 1 or args.batch < 1:
        raise UsageError("--epochs and --batch must be positive")
    if not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if not 0.0 <= args.ema < 1.0:
        raise UsageError(f"--ema must be within [0, 1) (0: off), got {args.ema}")
    if not 0.0 < args.ignore_iou <= 1.0:
        raise UsageError(f"--ignore-iou must be within (0, 1], got {args.ignore_iou}")
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be positive")
    if args.unlabelled_limit is not None and args.unlabelled_limit < 1:
        raise UsageError("--unlabelled-limit must be positive")
    if not 0.0 <= args.paste_prob <= 1.0 or args.paste_max < 1:
        raise UsageError("--paste-prob must be within [0, 1] and --paste-max positive")
    if not 0.0 <= args.night_aug <= 1.0:
        raise UsageError(f"--night-aug must be within [0, 1], got {args.night_aug}")
    if not 0.0 <= args.min_unmasked < 1.0:
        raise UsageError(f"--min-unmasked must be within [0, 1), got {args.min_unmasked}")
    if not 0.0 <= args.oversample_unmasked < 1.0:
        raise UsageError(f"--oversample-unmasked must be within [0, 1), got {args.oversample_unmasked}")
    if not 0.0 <= args.mosaic <= 1.0:
        raise UsageError(f"--mosaic must be within [0, 1], got {args.mosaic}")
    if not 0.1 <= args.crop_min <= 1.0:
        raise UsageError(f"--crop-min must be within [0.1, 1], got {args.crop_min}")
    if args.assign_iou is not None and not 0.0 < args.assign_iou < 1.0:
        raise UsageError(f"--assign-iou must be within (0, 1), got {args.assign_iou}")
    if args.teacher_add_score is not None:
        if args.teacher_peers is None:
            raise UsageError("--teacher-add-score needs --teacher-peers")
        if not args.teacher_ignore_score <= args.teacher_add_score <= 1.0:
            raise UsageError(f"--teacher-add-score must be within [--teacher-ignore-score, 1], "
                             f"got {args.teacher_add_score}")
    if not 0.0 <= args.teacher_ignore_score <= 1.0:
        raise UsageError(f"--teacher-ignore-score must be within [0, 1], got {args.teacher_ignore_score}")
    if not 0.0 < args.teacher_label_score <= 1.0:
        raise UsageError(f"--teacher-label-score must be within (0, 1], got {args.teacher_label_score}")
    try:
        lo, hi = (float(v) for v in args.paste_px.split(","))
    except ValueError:
        raise UsageError(f"--paste-px must be MIN,MAX pixels, got {args.paste_px!r}") from None
    if not 2 <= lo <= hi:
        raise UsageError(f"--paste-px needs 2 <= MIN <= MAX, got {args.paste_px!r}")
    for label, path in (("cfg", args.cfg), ("weights", args.weights), ("names", args.names)):
        if not path.is_file():
            raise DataError(f"{label} file not found: {path}")
    if args.teacher_peers is not None and not args.teacher_peers.is_dir():
        raise DataError(f"--teacher-peers folder not found: {args.teacher_peers}")
    extras = Extras(teacher_peers=args.teacher_peers, teacher_cache=args.teacher_cache,
                    teacher_label_score=args.teacher_label_score, teacher_ignore_score=args.teacher_ignore_score,
                    teacher_add_score=args.teacher_add_score, unlabelled=list(args.unlabelled),
                    unlabelled_limit=args.unlabelled_limit, paste=list(args.paste), paste_prob=args.paste_prob,
                    paste_max=args.paste_max, paste_px=(lo, hi), min_unmasked=args.min_unmasked,
                    night=args.night_aug, oversample_unmasked=args.oversample_unmasked, crop_min=args.crop_min,
                    mosaic=args.mosaic, assign_iou=args.assign_iou)
    train(args.cfg, args.weights, args.names, list(args.train), args.out, parse_size(args.input), args.epochs,
          args.batch, args.lr, args.ignore_iou, args.seed, args.limit, args.max_minutes, args.threads,
          progress=not args.quiet, exclude=list(args.exclude), extras=extras, resume=args.resume, ema=args.ema)
    return 0
