"""``doorguard enroll``: collect face crops on the device for an identity model.

    doorguard enroll --label me --count 60 --out ~/faces      # you, alone in front of the camera
    doorguard enroll --others --count 200 --out ~/faces       # everyone else who passes (not_me)
    doorguard enroll --delete ~/faces                          # remove the dataset (all labels)

The camera (or any source ``doorguard run`` takes) feeds the face detector the
config names; each face is cut by the runtime's own crop
(``edge.infer.preprocess.crop_with_margin``, with the classifier's margin), so the
model trains on what the Pi will feed it. A crop is skipped when the face is
tiny, blurred (variance of the Laplacian of the crop at a fixed size) or a
near-duplicate of a crop already in the folder (``edge.imagehash.dhash``).
With ``--label`` a frame with several faces is skipped (which one is you?);
``--others`` keeps every face.

The folder is laid out as ``doorguard train classifier --data DIR`` expects
(``DIR/<label>/*.jpg``). Face crops are biometric data: the folder is made
0700 and each file 0600, nothing is written anywhere else, and
``doorguard enroll --delete DIR`` removes it (only a folder this command made:
it carries a ``.doorguard-dataset.json`` marker).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import cv2
import numpy as np

from .errors import DataError, StateError, UsageError
from .imagehash import dhash, hamming
from .infer.preprocess import crop_with_margin
from .types import Detection

log = logging.getLogger(__name__)

#: Marks a folder as an enrollment dataset: ``--delete`` removes only such folders.
MARKER = ".doorguard-dataset.json"
#: The label ``--others`` collects, the one the rules alert on for a stranger.
OTHERS_LABEL = "not_me"
#: Crop margin when neither the config nor the classifier's manifest says (``train classifier``'s default).
DEFAULT_MARGIN = 0.15
#: Side of the grey image the blur measure is taken on: a fixed size makes the threshold
#: independent of how large the face is in the frame.
BLUR_SIZE = 96
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
DIR_MODE, FILE_MODE = 0o700, 0o600


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the crop as a BLUR_SIZE square grey image (low: blurred)."""
    g = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    g = cv2.resize(g, (BLUR_SIZE, BLUR_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


@dataclass(frozen=True)
class EnrollSettings:
    """What makes a crop worth keeping.

    Attributes:
        margin: crop margin around the face box (the classifier's).
        min_face_px: faces narrower or shorter than this are skipped as tiny.
        min_sharpness: crops with a lower variance of the Laplacian are skipped as blurred.
        max_hash_distance: crops within this many dHash bits of a kept crop are duplicates.
        all_faces: keep every face of a frame (``--others``); else skip frames with several.
        face_labels: detector labels that are faces (``models.classify_labels``).
    """

    margin: float = DEFAULT_MARGIN
    min_face_px: int = 48
    min_sharpness: float = 40.0
    max_hash_distance: int = 6
    all_faces: bool = False
    face_labels: tuple[str, ...] = ("face",)


@dataclass
class Tally:
    """Counts of what happened to the faces offered."""

    frames: int = 0
    saved: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {
        "no_face": 0, "several_faces": 0, "tiny": 0, "blurred": 0, "duplicate": 0})

    def line(self, label: str, count: int | None) -> str:
        s = self.skipped
        target = f"/{count}" if count else ""
        return (f"enroll {label}: {self.saved}{target} saved, frames {self.frames}; skipped: "
                f"{s['blurred']} blurred, {s['tiny']} tiny, {s['duplicate']} duplicate, "
                f"{s['several_faces']} several faces, {s['no_face']} without a face")


def _check_label(label: str) -> str:
    if not _LABEL.match(label) or label in (".", ".."):
        raise UsageError(f"--label {label!r}: use 1-40 letters, digits, '_', '-' or '.' (it is a folder name)")
    return label


def prepare_dataset(out: Path, label: str) -> Path:
    """Make (or reopen) the dataset folder and its label folder, both 0700; returns the label folder.

    A folder that exists must be empty or an earlier enrollment dataset: enrolling into
    an arbitrary folder would tighten its permissions and mix faces into unrelated files.

    Raises:
        StateError: the folder cannot be made, or exists and is not an enrollment dataset.
    """
    try:
        if out.exists():
            if not out.is_dir():
                raise StateError(f"--out {out} exists and is not a folder")
            if not (out / MARKER).is_file() and any(out.iterdir()):
                raise StateError(f"--out {out} is not empty and not a doorguard enroll dataset: give a new folder")
        else:
            out.mkdir(mode=DIR_MODE, parents=True)
        os.chmod(out, DIR_MODE)
        marker = out / MARKER
        meta = json.loads(marker.read_text()) if marker.is_file() else {"created_by": "doorguard enroll",
                                                                         "labels": []}
        if label not in meta["labels"]:
            meta["labels"] = sorted({*meta["labels"], label})
            _write_private(marker, (json.dumps(meta, indent=1) + "\n").encode(), replace=True)
        d = out / label
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)
        return d
    except (OSError, ValueError, KeyError, TypeError) as e:
        if isinstance(e, StateError):
            raise
        raise StateError(f"cannot prepare dataset folder {out}: {getattr(e, 'strerror', None) or e}") from e


def _write_private(path: Path, data: bytes, replace: bool = False) -> None:
    """Write a file readable by its owner only (0600), created with that mode (never wider, even briefly)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        os.write(fd, data)
    finally:
        os.close(fd)


class Enroller:
    """Turns frames into kept face crops in one label folder.

    Args:
        detector: anything with ``detect(rgb) -> list[Detection]`` (``edge.infer.models.Detector``).
        folder: the label folder (``prepare_dataset``); crops already there count as duplicates.
        label: the label (file name prefix).
        settings: what to keep.
        clock: wall clock for file names (injectable).
    """

    def __init__(self, detector: Any, folder: Path, label: str, settings: EnrollSettings,
                 clock: Callable[[], float] = time.time):
        self.detector = detector
        self.folder = folder
        self.label = label
        self.s = settings
        self.clock = clock
        self.tally = Tally()
        #: What became of each face of the last frame offered: (detection, "saved" or why not).
        self.last: list[tuple[Detection, str]] = []
        self._faces = {lab.casefold() for lab in settings.face_labels}
        self._hashes: list[int] = []
        for p in sorted(folder.glob("*.jpg")):
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                self._hashes.append(dhash(cv2.cvtColor(img, cv2.COLOR_BGR2RGB)))
        self._n = len(self._hashes)

    def faces(self, image: np.ndarray) -> list[Detection]:
        return [d for d in self.detector.detect(image) if d.label.casefold() in self._faces]

    def offer(self, image: np.ndarray, limit: int | None = None) -> list[Path]:
        """Detect faces in one RGB frame and keep the good crops; returns the files written."""
        self.tally.frames += 1
        faces = self.faces(image)
        skipped = self.tally.skipped
        self.last = []
        if not faces:
            skipped["no_face"] += 1
            return []
        if len(faces) > 1 and not self.s.all_faces:
            skipped["several_faces"] += 1
            self.last = [(d, "several faces") for d in faces]
            return []
        written = []
        for d in faces:
            if limit is not None and self.tally.saved >= limit:
                break
            why = self._judge(image, d)
            if isinstance(why, str):
                skipped[why] += 1
                self.last.append((d, why))
                continue
            written.append(self._save(*why))
            self.last.append((d, "saved"))
        return written

    def _judge(self, image: np.ndarray, d: Detection) -> str | tuple[np.ndarray, int]:
        if d.box.width < self.s.min_face_px or d.box.height < self.s.min_face_px:
            return "tiny"
        try:
            crop = crop_with_margin(image, d.box, self.s.margin)
        except ValueError:
            return "tiny"
        if sharpness(crop) < self.s.min_sharpness:
            return "blurred"
        h = dhash(crop)
        if any(hamming(h, k) <= self.s.max_hash_distance for k in self._hashes):
            return "duplicate"
        return crop, h

    def _save(self, crop: np.ndarray, h: int) -> Path:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise DataError(f"cannot encode a face crop of shape {crop.shape}")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.clock()))
        self._n += 1
        path = self.folder / f"{self.label}-{stamp}-{self._n:05d}.jpg"
        try:
            _write_private(path, buf.tobytes())
        except OSError as e:
            raise StateError(f"cannot write {path}: {e.strerror}") from e
        self._hashes.append(h)
        self.tally.saved += 1
        return path


def delete_dataset(out: Path, label: str | None = None) -> str:
    """Remove an enrollment dataset (or one label of it); returns what was removed.

    Raises:
        UsageError: the folder is missing or not made by ``doorguard enroll`` (no marker).
        StateError: it could not be removed.
    """
    if not out.is_dir():
        raise UsageError(f"--delete {out}: no such folder")
    if not (out / MARKER).is_file():
        raise UsageError(f"--delete {out}: not a doorguard enroll dataset (no {MARKER}); remove it by hand")
    target = out / _check_label(label) if label else out
    if label and not target.is_dir():
        raise UsageError(f"--delete {out} --label {label}: no such label folder")
    n = sum(1 for p in target.rglob("*") if p.is_file())
    try:
        shutil.rmtree(target)
    except OSError as e:
        raise StateError(f"cannot remove {target}: {e.strerror}") from e
    return f"removed {target} ({n} files)"


# ---- command line ---------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard enroll``."""
    who = p.add_mutually_exclusive_group()
    who.add_argument("--label", help="the class the crops are (e.g. me; a folder name)")
    who.add_argument("--others", action="store_true",
                     help=f"collect every passing face as {OTHERS_LABEL!r} (the strangers class)")
    p.add_argument("--out", type=Path, help="dataset folder (DIR/<label>/*.jpg, made 0700; files 0600)")
    p.add_argument("--count", type=int, default=50, help="stop after this many new crops (default 50)")
    p.add_argument("--delete", type=Path, metavar="DIR",
                   help="remove an enrollment dataset (with --label: only that label) and exit")
    p.add_argument("--config", type=Path, help="config file (detector, source, crop margin); default: embedded")
    p.add_argument("--source", help="frame source, as doorguard run takes (default: the config's)")
    p.add_argument("--min-face-px", type=int, default=EnrollSettings.min_face_px,
                   help=f"skip faces smaller than this (default {EnrollSettings.min_face_px})")
    p.add_argument("--min-sharpness", type=float, default=EnrollSettings.min_sharpness,
                   help="skip crops whose variance of the Laplacian (at 96 px) is lower "
                        f"(default {EnrollSettings.min_sharpness:g})")
    p.add_argument("--max-hash-distance", type=int, default=EnrollSettings.max_hash_distance,
                   help="skip crops within this many dHash bits of a kept one "
                        f"(default {EnrollSettings.max_hash_distance})")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between frames looked at (default 0.3 for cameras, 0 for files)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")


def preview_overlays(faces: list[tuple[Detection, str]]) -> list:
    """Live-view boxes for the faces of one frame: green when its crop was saved, else neutral
    with the reason it was skipped (blurred, tiny, duplicate, several faces)."""
    from .act.web.handover import Overlay

    return [Overlay((d.box.x1, d.box.y1, d.box.x2, d.box.y2), what, d.score,
                    "compliant" if what == "saved" else None) for d, what in faces]


def _margin(cfg) -> float:
    """The crop margin ``doorguard run`` uses: config, else the classifier manifest's, else 0.15."""
    if cfg.models.crop_margin is not None:
        return cfg.models.crop_margin
    if cfg.models.classifier:
        from .manifest import load_manifest

        try:
            m = load_manifest(cfg.resolve(cfg.models.classifier), verify_hash=False)
            if m.crop_margin is not None:
                return m.crop_margin
        except Exception:  # noqa: BLE001 - a missing mask model must not stop enrollment
            log.info("classifier manifest unreadable; crop margin %.2f", DEFAULT_MARGIN)
    return DEFAULT_MARGIN


def _frames(source, interval: float, max_frames: int | None, clock=time.monotonic) -> Iterable[np.ndarray]:
    from .capture.sources import UnreadableFrame

    n, last = 0, None
    while max_frames is None or n < max_frames:
        try:
            image = source.read()
        except UnreadableFrame as e:
            log.warning("%s", e)
            continue
        if image is None:
            return
        now = clock()
        if last is not None and now - last < interval:
            continue
        last = now
        n += 1
        yield image


def main(args: argparse.Namespace) -> int:
    """Collect crops (or delete a dataset); 0 when at least one crop was kept (or deleted)."""
    if args.delete is not None:
        print(delete_dataset(args.delete.expanduser(), args.label))
        return 0
    if args.out is None:
        raise UsageError("--out DIR is required: face crops are written only where you say")
    if not args.label and not args.others:
        raise UsageError("give --label NAME (e.g. me) or --others")
    for flag, value, low in (("--count", args.count, 1), ("--min-face-px", args.min_face_px, 1),
                             ("--max-hash-distance", args.max_hash_distance, 0)):
        if value < low:
            raise UsageError(f"{flag} must be at least {low}, not {value}")
    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, not {args.max_frames}")
    if args.min_sharpness < 0 or (args.interval is not None and args.interval < 0):
        raise UsageError("--min-sharpness and --interval cannot be negative")
    label = _check_label(args.label or OTHERS_LABEL)

    from . import config as config_mod
    from .infer.models import Detector
    from .capture.sources import make_source

    cfg = config_mod.load(args.config)
    m = cfg.models
    detector = Detector(cfg.resolve(m.detector), m.num_threads, m.score_threshold, m.nms_iou,
                        backend=None if m.backend == "auto" else m.backend)
    source = make_source(args.source or cfg.source.spec, cfg.source)
    settings = EnrollSettings(margin=_margin(cfg), min_face_px=args.min_face_px, min_sharpness=args.min_sharpness,
                              max_hash_distance=args.max_hash_distance, all_faces=bool(args.others),
                              face_labels=tuple(m.classify_labels))
    folder = prepare_dataset(args.out.expanduser(), label)
    enroller = Enroller(detector, folder, label, settings)
    interval = args.interval if args.interval is not None else (0.3 if getattr(source, "live", False) else 0.0)
    tty = sys.stderr.isatty()
    log.info("enroll %s into %s (crop margin %.2f): %s", label, folder, settings.margin,
             "everyone who passes" if args.others else "one face per frame; stand alone in front of the camera")
    web = live = None
    if cfg.web.enabled:
        # The live view while enrolling: each face boxed with what became of it (the page's
        # login, CSRF and rate limits as for doorguard run).
        from .act.web.handover import LiveFrame
        from .act.web.server import WebServer

        live = LiveFrame()
        web = WebServer(cfg.web, lambda: {"source": getattr(source, "name", ""), "frames": enroller.tally.frames,
                                          "enroll": enroller.tally.line(label, args.count)},
                        live.get, lambda: None, state_dir=cfg.state_dir()).start()
        log.info("enroll: live preview on %s", web.url)
    source.open()
    interrupted = False
    try:
        for image in _frames(source, interval, args.max_frames):
            before = enroller.tally.saved
            enroller.offer(image, args.count)
            if live is not None:
                live.put(image, preview_overlays(enroller.last))
            t = enroller.tally
            if tty:
                print("\r" + t.line(label, args.count), end="", file=sys.stderr, flush=True)
            elif t.saved != before and t.saved % 10 == 0:
                log.info("%s", t.line(label, args.count))
            if t.saved >= args.count:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        source.close()
        if web is not None:
            web.close()
        if tty:
            print(file=sys.stderr)
    t = enroller.tally
    print(t.line(label, args.count) + (" (interrupted)" if interrupted else ""))
    if not t.saved:
        raise DataError(f"no face crop kept from {t.frames} frames: " +
                        ("no face found (is the camera pointing at you?)" if t.skipped["no_face"] == t.frames
                         else "see the skip counts above"))
    total = len(list(folder.glob("*.jpg")))
    print(f"{folder}: {total} crops; train with: doorguard train classifier --data {folder.parent}")
    return 0
