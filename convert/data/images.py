"""Reading image folders for calibration, training and evaluation.

Unreadable files are skipped and counted, never fatal (one summary line per set,
each file at DEBUG); an empty or missing folder is a one-line DataError.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import cv2
import numpy as np

from edge.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def list_images(directory: Path | str, recursive: bool = False) -> list[Path]:
    """Image files in a folder (by suffix), sorted.

    Raises:
        DataError: the folder is missing or holds no image file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"image folder not found: {d}")
    it = d.rglob("*") if recursive else d.iterdir()
    files = sorted(p for p in it if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"no images (.jpg/.png/...) in {d}")
    return files


def read_rgb(path: Path | str) -> np.ndarray:
    """Decode an image file to H x W x 3 uint8 RGB.

    Raises:
        DataError: the file is missing, not an image, or corrupt.
    """
    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    if data is None:
        raise DataError(f"image not found: {path}")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error as e:  # e.g. a header claiming more than CV_IO_MAX_IMAGE_HEIGHT rows
        raise DataError(f"cannot decode image {path}: {str(e).strip().splitlines()[-1]}") from e
    if img is None:
        raise DataError(f"cannot decode image {path}")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class Unreadable:
    """Unreadable files met while reading a set: each logged at DEBUG, then one summary line.

    A folder of 30 broken files gives one WARNING with the count and the first reason,
    not 30 lines before the error that matters.
    """

    def __init__(self, what: str = "reading images"):
        self.what = what
        self.count = 0
        self.first: str | None = None

    def add(self, error: Exception) -> None:
        self.count += 1
        if self.first is None:
            self.first = str(error)
        log.debug("skipping %s", error)

    def summarize(self) -> int:
        """Log the one summary line (if any file was skipped); returns the count."""
        if self.count:
            more = f", and {self.count - 1} more (--log-level DEBUG lists them)" if self.count > 1 else ""
            log.warning("%s: skipped %d unreadable file(s): %s%s", self.what, self.count, self.first, more)
        return self.count


def load_images(files: list[Path], limit: int | None = None, seed: int = 0,
                progress: bool = False, desc: str = "reading images") -> tuple[list[np.ndarray], list[Path], int]:
    """Read images, skipping (and counting) unreadable ones.

    Args:
        files: candidate files (e.g. from list_images).
        limit: keep at most this many readable images, drawn with a seeded shuffle.
        seed: shuffle seed, so the same folder gives the same selection.
        progress: show a tqdm bar.

    Returns:
        (images as RGB uint8, their paths, number skipped as unreadable).
    """
    order = list(files)
    if limit is not None and limit < len(order):
        random.Random(seed).shuffle(order)
    images: list[np.ndarray] = []
    paths: list[Path] = []
    skipped = Unreadable(desc)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=min(limit or len(order), len(order)), desc=desc, unit="img")
    for p in order:
        if limit is not None and len(images) >= limit:
            break
        try:
            images.append(read_rgb(p))
            paths.append(p)
            if bar is not None:
                bar.update(1)
        except DataError as e:
            skipped.add(e)
    if bar is not None:
        bar.close()
    return images, paths, skipped.summarize()
