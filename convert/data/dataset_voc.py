"""``doorguard dataset voc``: the dataroots face CSV -> a VOC folder for ``doorguard eval``.

The dataroots metadata CSV has one row per face
(``class,x,y,w,h,image_urls,raw_img_dir,cropped_img_dir``; ``x,y,w,h`` integer
pixels, top-left corner and size; ``raw_img_dir`` with the origin's ``data/``
prefix). This writes ``OUT/images/<stem>.jpg`` (a copy of each photo) and
``OUT/annotations/<stem>.xml`` with one object per face, so the dataroots
photos go through the same eval command as facemask853.
"""

from __future__ import annotations

import argparse
import csv
import logging
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from xml.sax.saxutils import escape

from edge.errors import DataError, UsageError

from convert.data.dataset import parse_pairs
from convert.data.images import read_rgb

log = logging.getLogger(__name__)

#: dataroots classes -> the VOC names facemask853 uses (and eval maps to classifier labels).
DEFAULT_CLASS_MAP = {"masked": "with_mask", "not_masked": "without_mask"}
REQUIRED = ("class", "x", "y", "w", "h", "raw_img_dir")


def parse_class_map(text: str | None) -> dict[str, str]:
    """The default dataroots -> VOC class map updated by ``a=b,...`` entries.

    Raises:
        UsageError: an entry that is not NAME=VOCNAME.
    """
    return {**DEFAULT_CLASS_MAP, **parse_pairs(text, "--class-map")}


def _image_path(images: Path, raw: str) -> Path | None:
    rel = raw[len("data/"):] if raw.startswith("data/") else raw
    for cand in (images / rel, images / Path(rel).name):
        if cand.is_file():
            return cand
    return None


def read_rows(csv_path: Path, class_map: dict[str, str]) -> dict[str, list[tuple[str, int, int, int, int]]]:
    """raw_img_dir -> [(voc class, x, y, w, h)] from the dataroots CSV.

    Raises:
        DataError: missing/unreadable CSV, missing columns, non-numeric box, unknown class.
    """
    try:
        f = csv_path.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"dataroots CSV not found: {csv_path}") from None
    except OSError as e:
        raise DataError(f"cannot read {csv_path}: {e.strerror or e}") from e
    faces: dict[str, list[tuple[str, int, int, int, int]]] = defaultdict(list)
    with f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"{csv_path}: missing column(s) {', '.join(missing)} (need {', '.join(REQUIRED)})")
        for line, row in enumerate(reader, start=2):
            cls = row["class"].strip()
            if cls not in class_map:
                raise DataError(f"{csv_path} line {line}: class {cls!r} is not in the class map "
                                f"({', '.join(sorted(class_map))}); add it with --class-map")
            try:
                x, y, w, h = (int(round(float(row[k]))) for k in ("x", "y", "w", "h"))
            except (TypeError, ValueError) as e:
                raise DataError(f"{csv_path} line {line}: non-numeric box") from e
            faces[row["raw_img_dir"].strip()].append((class_map[cls], x, y, w, h))
    if not faces:
        raise DataError(f"{csv_path}: no rows")
    return faces


def voc_xml(filename: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> str:
    """One Pascal VOC annotation; boxes clipped to the image (xmax = x + w)."""
    parts = [
        "<annotation>", "  <folder>images</folder>", f"  <filename>{escape(filename)}</filename>",
        f"  <size><width>{width}</width><height>{height}</height><depth>3</depth></size>",
    ]
    for name, x, y, w, h in objects:
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width, x + w), min(height, y + h)
        parts += [
            "  <object>", f"    <name>{escape(name)}</name>", "    <difficult>0</difficult>",
            f"    <bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>",
            "  </object>",
        ]
    parts.append("</annotation>")
    return "\n".join(parts) + "\n"


def convert(csv_path: Path | str, images: Path | str, out: Path | str,
            class_map: dict[str, str] | None = None) -> Counter:
    """Write OUT/images + OUT/annotations from the dataroots CSV.

    Args:
        csv_path: validation_metadata.csv (or any CSV with the same columns).
        images: the folder ``raw_img_dir`` is relative to once ``data/`` is stripped
            (the dataroots folder), or the raw_images folder itself.
        out: output VOC folder (created).
        class_map: dataroots class -> VOC name.

    Returns:
        Counts: images, faces, per VOC class, and photos skipped (missing/unreadable).

    Raises:
        DataError: bad CSV, or no photo of it found.
    """
    csv_path, images, out = Path(csv_path), Path(images), Path(out)
    if not images.is_dir():
        raise DataError(f"image folder not found: {images}")
    faces = read_rows(csv_path, class_map or DEFAULT_CLASS_MAP)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    from convert.data.images import Unreadable

    counts: Counter = Counter()
    unreadable = Unreadable(f"reading the photos of {csv_path}")
    for raw, objects in sorted(faces.items()):
        src = _image_path(images, raw)
        if src is None:
            counts["skipped_missing"] += 1
            log.warning("photo %s of the CSV not found under %s; skipped", raw, images)
            continue
        try:
            h, w = read_rgb(src).shape[:2]
        except DataError as e:
            counts["skipped_unreadable"] += 1
            unreadable.add(e)
            continue
        shutil.copyfile(src, out / "images" / src.name)
        (out / "annotations" / f"{src.stem}.xml").write_text(voc_xml(src.name, w, h, objects))
        counts["images"] += 1
        counts["faces"] += len(objects)
        counts.update(name for name, *_ in objects)
    unreadable.summarize()
    if not counts["images"]:
        raise DataError(f"none of the {len(faces)} photos named in {csv_path} was found under {images}")
    return counts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard dataset voc``."""
    parser.add_argument("--dataroots-csv", required=True, metavar="CSV",
                        help="dataroots metadata CSV (class,x,y,w,h,...,raw_img_dir,...)")
    parser.add_argument("--images", required=True, metavar="DIR",
                        help="folder raw_img_dir is relative to after stripping 'data/' (the dataroots folder)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output VOC folder (images/ + annotations/)")
    parser.add_argument("--class-map", metavar="a=b,...",
                        help="CSV class -> VOC name, on top of masked=with_mask,not_masked=without_mask")


def main(args: argparse.Namespace) -> int:
    """Convert and print one summary line."""
    counts = convert(args.dataroots_csv, args.images, args.out, parse_class_map(args.class_map))
    per = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())
                    if k not in ("images", "faces") and not k.startswith("skipped"))
    skipped = counts["skipped_missing"] + counts["skipped_unreadable"]
    print(f"wrote {counts['images']} images with {counts['faces']} faces ({per}) to {args.out}"
          + (f"; {skipped} photos skipped" if skipped else ""))
    return 0
