"""``doorguard dataset crops``: box-labelled images -> an image folder of face crops.

Crops are cut with ``edge.infer.preprocess.crop_with_margin``, the very function the
Pi runs between detector and classifier, so a classifier trained on these
crops sees faces framed exactly as at run time.

Readers for two box formats feed the same writer:
- Pascal VOC xml (facemask853: ``images/`` + ``annotations/`` or side by side),
- YOLO/darknet txt (adityap27: ``class cx cy w h`` normalised, next to the image).
"""

from __future__ import annotations

import argparse
import logging
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge.errors import DataError, UsageError
from edge.imagehash import dhash  # noqa: F401 - re-exported: convert.data.dataset.dhash is public
from edge.infer.preprocess import crop_with_margin
from edge.types import Box

from convert.data.images import IMAGE_SUFFIXES, read_rgb

log = logging.getLogger(__name__)

#: VOC class names of facemask853 (and the eval command) -> classifier labels.
DEFAULT_LABEL_MAP = {
    "with_mask": "mask",
    "without_mask": "no_mask",
    "mask_weared_incorrect": "mask_incorrect",
}


@dataclass(frozen=True)
class LabeledBox:
    """One ground-truth box of an image, in pixels, with its source class name."""

    box: Box
    name: str


@dataclass
class CropStats:
    """What ``write_crops`` did: crops per label and what it skipped, with reasons."""

    images: int = 0
    crops: Counter | None = None
    unreadable_images: int = 0
    unmapped_boxes: int = 0
    small_boxes: int = 0
    empty_boxes: int = 0

    def __post_init__(self) -> None:
        if self.crops is None:
            self.crops = Counter()

    def summary(self) -> str:
        per = ", ".join(f"{k} {v}" for k, v in sorted(self.crops.items()))
        return (f"{sum(self.crops.values())} crops from {self.images} images ({per}); skipped: "
                f"{self.unreadable_images} unreadable images, {self.unmapped_boxes} boxes of unmapped "
                f"classes, {self.small_boxes} boxes under the minimum size, "
                f"{self.empty_boxes} empty boxes")


def parse_pairs(text: str | None, flag: str, allow_empty: bool = False) -> dict[str, str]:
    """``"a=b,c=d"`` -> {"a": "b", "c": "d"}: the one parser of every NAME=VALUE map flag.

    Args:
        text: the flag's value (None/"" gives an empty dict).
        flag: the flag's name, for the error message.
        allow_empty: accept ``NAME=`` (an empty value).

    Raises:
        UsageError: an entry that is not NAME=VALUE.
    """
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise UsageError(f"{flag} entry {part!r} is not NAME=VALUE")
        k, v = (s.strip() for s in part.split("=", 1))
        if not k or (not v and not allow_empty):
            raise UsageError(f"{flag} entry {part!r} needs a name{'' if allow_empty else ' and a value'}")
        out[k] = v
    return out


def parse_label_map(text: str | None, allow_drop: bool = True) -> dict[str, str]:
    """The default map (``DEFAULT_LABEL_MAP``) updated by ``"a=b,c=d"`` entries.

    The one parser of every ``--label-map`` flag (``dataset crops``, ``eval``).

    Args:
        text: the flag's value; None/"" gives the default map.
        allow_drop: accept ``NAME=`` (maps the class to "", which ``write_crops``
            skips); the evaluation passes False, a ground-truth face cannot be dropped.

    Raises:
        UsageError: malformed entry.
    """
    return {**DEFAULT_LABEL_MAP, **parse_pairs(text, "--label-map", allow_empty=allow_drop)}


def parse_voc(xml_path: Path) -> tuple[str | None, list[LabeledBox]]:
    """Read one VOC annotation: (``<filename>`` or None, boxes).

    Raises:
        DataError: not parseable, or a box without numeric coordinates.
    """
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as e:
        raise DataError(f"cannot parse VOC annotation {xml_path}: {e}") from e
    filename = root.findtext("filename")
    boxes: list[LabeledBox] = []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        bb = obj.find("bndbox")
        if bb is None:
            continue
        try:
            x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        except (TypeError, ValueError) as e:
            raise DataError(f"{xml_path}: box of {name!r} has non-numeric coordinates") from e
        boxes.append(LabeledBox(Box(x1, y1, x2, y2), name))
    return (filename.strip() if filename else None), boxes


def _find_image(voc: Path, stem: str, filename: str | None) -> Path | None:
    dirs = [voc / "images", voc, voc / "JPEGImages"]
    names = [filename] if filename else []
    names += [stem + s for s in (".jpg", ".jpeg", ".png", ".JPG", ".PNG")]
    for d in dirs:
        for n in names:
            p = d / n
            try:
                if p.is_file():
                    return p
            except OSError:  # a <filename> too long for the file system: not this one
                continue
    return None


def voc_items(voc: Path | str, split: Path | str | None = None) -> list[tuple[Path, list[LabeledBox]]]:
    """(image path, boxes) for every annotated image of a VOC folder, sorted by stem.

    Args:
        voc: folder with ``annotations/*.xml`` + ``images/`` (or xml and images side by side).
        split: optional file of stems (one a line) to keep.

    Raises:
        DataError: no folder, no annotations, or a split naming unknown stems.
    """
    voc = Path(voc)
    if not voc.is_dir():
        raise DataError(f"VOC folder not found: {voc}")
    ann_dir = voc / "annotations" if (voc / "annotations").is_dir() else (
        voc / "Annotations" if (voc / "Annotations").is_dir() else voc)
    xmls = {p.stem: p for p in sorted(ann_dir.glob("*.xml"))}
    if not xmls:
        raise DataError(f"no VOC .xml annotations in {ann_dir}")
    stems = sorted(xmls)
    if split is not None:
        split = Path(split)
        if not split.is_file():
            raise DataError(f"split file not found: {split}")
        wanted = [s.strip() for s in split.read_text().splitlines() if s.strip()]
        missing = [s for s in wanted if s not in xmls]
        if missing:
            raise DataError(f"{split}: {len(missing)} stems have no annotation in {ann_dir} "
                            f"(first: {missing[0]})")
        stems = sorted(set(wanted))
    items = []
    for stem in stems:
        filename, boxes = parse_voc(xmls[stem])
        img = _find_image(voc, stem, filename)
        if img is None:
            log.warning("no image for annotation %s; skipped", xmls[stem])
            continue
        items.append((img, boxes))
    return items


def yolo_items(folder: Path | str, class_names: list[str],
               split: Path | str | None = None) -> list[tuple[Path, list[LabeledBox]]]:
    """(image path, boxes) from darknet/YOLO labels (``class cx cy w h``, normalised).

    Box pixels need the image size, so boxes are returned normalised (0..1) and
    scaled in ``write_crops`` once the image is read.

    Args:
        folder: folder of images with a same-stem .txt each.
        class_names: index -> class name (e.g. ``["no_mask", "mask"]`` for adityap27).
        split: optional list file of image paths (relative to its own folder) or stems.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"YOLO folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if split is not None:
        keep = {Path(s.strip()).stem for s in Path(split).read_text().splitlines() if s.strip()}
        images = [p for p in images if p.stem in keep]
    items = []
    for img in images:
        txt = img.with_suffix(".txt")
        if not txt.is_file():
            continue
        boxes = []
        for line in txt.read_text().splitlines():
            parts = line.split()
            if len(parts) < 5:
                continue
            try:
                c = int(float(parts[0]))
                cx, cy, w, h = (float(v) for v in parts[1:5])
            except ValueError:
                continue
            if not 0 <= c < len(class_names):
                continue
            # Normalised corners; write_crops scales them by the image size.
            boxes.append(LabeledBox(Box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), class_names[c]))
        items.append((img, boxes))
    return items


def write_crops(items: list[tuple[Path, list[LabeledBox]]], out: Path | str, margin: float,
                label_map: dict[str, str], min_size: float = 1.0, normalized: bool = False,
                prefix: str = "", progress: bool = True, quality: int = 95,
                transform: Callable[[np.ndarray, Path], np.ndarray] | None = None) -> CropStats:
    """Cut every mapped box with ``crop_with_margin`` and save it as out/LABEL/STEM_I.jpg.

    Args:
        items: (image, boxes) pairs from ``voc_items``/``yolo_items``.
        out: output folder (one subfolder per label is created).
        margin: crop margin as a fraction of the box size (the classifier manifest's crop_margin).
        label_map: source class name -> label; unmapped or empty-mapped boxes are skipped and counted.
        min_size: skip boxes whose shorter side (pixels) is below this.
        normalized: boxes are 0..1 (YOLO) and are scaled by the image size.
        prefix: prepended to file names (keeps sources apart in one folder).
        quality: JPEG quality of the written crops.
        transform: applied to each photo (RGB, its path) before the boxes are cut; it must keep
            the photo's size.

    Returns:
        CropStats.
    """
    from convert.data.images import Unreadable

    out = Path(out)
    stats = CropStats()
    from tqdm import tqdm

    unreadable = Unreadable(f"cropping into {out}")
    for img_path, boxes in tqdm(items, desc="cropping", unit="img", disable=not progress):
        try:
            image = read_rgb(img_path)
        except DataError as e:
            stats.unreadable_images += 1
            unreadable.add(e)
            continue
        stats.images += 1
        if transform is not None:
            image = transform(image, img_path)
        h, w = image.shape[:2]
        for i, lb in enumerate(boxes):
            label = label_map.get(lb.name)
            if not label:
                stats.unmapped_boxes += 1
                continue
            box = lb.box
            if normalized:
                box = Box(box.x1 * w, box.y1 * h, box.x2 * w, box.y2 * h)
            if min(box.width, box.height) < min_size:
                stats.small_boxes += 1
                continue
            try:
                crop = crop_with_margin(image, box, margin)
            except ValueError:
                stats.empty_boxes += 1
                continue
            d = out / label
            d.mkdir(parents=True, exist_ok=True)
            name = f"{prefix}{img_path.stem}_{i}.jpg"
            ok = cv2.imwrite(str(d / name), cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
                             [cv2.IMWRITE_JPEG_QUALITY, quality])
            if not ok:
                raise DataError(f"cannot write {d / name}")
            stats.crops[label] += 1
    unreadable.summarize()
    return stats


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voc", required=True, type=Path,
                   help="VOC folder: annotations/*.xml + images/ (or side by side)")
    p.add_argument("--out", required=True, type=Path, help="output image folder (one subfolder per label)")
    p.add_argument("--margin", type=float, default=0.15,
                   help="crop margin as a fraction of the box size, as the classifier's crop_margin "
                        "(default 0.15)")
    p.add_argument("--split", type=Path, help="file of image stems to use (e.g. train.txt)")
    p.add_argument("--label-map", default=None,
                   help="NAME=LABEL,... on top of with_mask=mask,without_mask=no_mask,"
                        "mask_weared_incorrect=mask_incorrect; NAME= drops a class")
    p.add_argument("--min-size", type=float, default=1.0,
                   help="skip boxes whose shorter side is below this many pixels (default 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    if not 0.0 <= args.margin <= 2.0:
        raise UsageError(f"--margin must be between 0 and 2, not {args.margin}")
    label_map = parse_label_map(args.label_map)
    items = voc_items(args.voc, args.split)
    stats = write_crops(items, args.out, args.margin, label_map, min_size=args.min_size,
                        progress=not args.no_progress)
    if not stats.crops:
        raise DataError(f"no crops written from {args.voc}: {stats.summary()}")
    print(stats.summary())
    return 0


def dataroots_items(csv_path: Path | str, root: Path | str | None = None,
                    label_names: dict[str, str] | None = None) -> list[tuple[Path, list[LabeledBox]]]:
    """(raw photo, boxes) from a dataroots metadata CSV (``class,x,y,w,h,...,raw_img_dir,...``).

    Args:
        csv_path: e.g. ../shared/data/dataroots/validation_metadata.csv.
        root: folder the ``raw_img_dir`` paths are relative to once their ``data/``
            prefix is stripped (default: the CSV's folder).
        label_names: CSV class -> box name (default masked -> with_mask,
            not_masked -> without_mask, so DEFAULT_LABEL_MAP applies).
    """
    import csv

    csv_path = Path(csv_path)
    root = Path(root) if root else csv_path.parent
    names = label_names or {"masked": "with_mask", "not_masked": "without_mask"}
    per_image: dict[Path, list[LabeledBox]] = {}
    try:
        rows = list(csv.DictReader(csv_path.open(newline="")))
    except OSError as e:
        raise DataError(f"cannot read dataroots CSV {csv_path}: {e}") from e
    for row in rows:
        try:
            x, y, w, h = (float(row[k]) for k in ("x", "y", "w", "h"))
            rel = row["raw_img_dir"].removeprefix("data/")
            cls = row["class"]
        except (KeyError, ValueError) as e:
            raise DataError(f"{csv_path}: malformed row {row}") from e
        per_image.setdefault(root / rel, []).append(LabeledBox(Box(x, y, x + w, y + h), names.get(cls, cls)))
    return sorted(per_image.items(), key=lambda kv: kv[0].name)


def near_duplicates(candidates: list[Path], references: list[Path], max_distance: int = 10) -> set[Path]:
    """Candidates whose dHash is within ``max_distance`` bits of any reference image.

    Used to keep copies of validation photos out of training (adityap27 holds
    most facemask853 photos, see ../shared/data/README.md).
    """
    return set(near_duplicate_pairs(candidates, references, max_distance))


def near_duplicate_pairs(candidates: list[Path], references: list[Path], max_distance: int = 10) -> dict[Path, Path]:
    """Each candidate whose dHash is within ``max_distance`` bits of a reference image -> the
    closest such reference (unreadable images are neither)."""
    def hashes(files):
        out = {}
        for f in files:
            try:
                out[f] = dhash(read_rgb(f))
            except DataError:
                continue
        return out

    refs = hashes(references)
    ref_paths, ref = list(refs), np.array(list(refs.values()), dtype=np.uint64)
    dup = {}
    for f, h in hashes(candidates).items():
        x = np.bitwise_xor(ref, np.uint64(h))
        dist = np.array([bin(int(v)).count("1") for v in x])
        if len(dist) and dist.min() <= max_distance:
            dup[f] = ref_paths[int(np.argmin(dist))]
    return dup
