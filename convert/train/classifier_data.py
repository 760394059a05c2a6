"""What ``train classifier`` feeds the network: split, read, weighted, augmented, batched.

- ``stratified_split``: a seeded per-class validation split; ``grouped_split``: the same
  with each group (the crops of one photo, one person) kept on one side;
- ``load_resized``: every image read and resized as the runtime does (``resize_for``);
- ``class_weights``: balanced per-class weights, capped;
- ``augment``: flip, small affine, a down-then-up resize (the small faces a door
  camera sees), brightness/contrast, in numpy/OpenCV; optionally (``conditions``)
  one doorway condition per crop: IR-like grey, low light with sensor noise, motion
  blur, heavy JPEG (``condition_augment``, issue 21); ``photo_condition``: the same
  families (and a smaller photo) on a whole photo before its faces are cut;
- ``make_sequence``: batches normalized by ``edge.infer.preprocess.normalize``, whose
  order and augmentation depend only on (seed, epoch, batch), so a rerun gives the
  same weights.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edge.errors import DataError
from edge.manifest import InputSpec
from edge.infer.preprocess import normalize, resize_for

from convert.pipeline.classifier import LabeledFiles
from convert.verify.conditions import darken, jpeg_roundtrip, line_blur
from convert.data.images import Unreadable, read_rgb


def stratified_split(data: LabeledFiles, fraction: float, seed: int) -> tuple[LabeledFiles, LabeledFiles]:
    """Seeded per-class split: about ``fraction`` of each class goes to validation.

    A class with at least 2 images keeps at least one on each side.
    """
    rng = random.Random(seed)
    train, val = LabeledFiles(list(data.labels)), LabeledFiles(list(data.labels))
    by_class: dict[int, list[Path]] = {}
    for f, t in zip(data.files, data.targets):
        by_class.setdefault(t, []).append(f)
    for t in sorted(by_class):
        files = sorted(by_class[t])
        rng.shuffle(files)
        n_val = int(round(len(files) * fraction))
        if len(files) >= 2:
            n_val = min(max(n_val, 1), len(files) - 1)
        else:
            n_val = 0
        val.files += files[:n_val]
        val.targets += [t] * n_val
        train.files += files[n_val:]
        train.targets += [t] * (len(files) - n_val)
    return train, val


def grouped_split(data: LabeledFiles, fraction: float, seed: int,
                  groups: Sequence[str]) -> tuple[LabeledFiles, LabeledFiles]:
    """Seeded split that keeps each group (e.g. the crops of one photo) on one side.

    Groups are drawn in a seeded order and go to validation while that keeps every class they
    hold within its quota (``round(fraction * count)``, at least 1 for a class of 2 or more files,
    0 for a single file); the rest train. So validation holds about ``fraction`` of each class and
    never a file whose group also trains.

    Raises:
        ValueError: ``groups`` is not one entry per file.
    """
    if len(groups) != len(data.files):
        raise ValueError(f"{len(groups)} groups for {len(data.files)} files")
    rng = random.Random(seed)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    order = sorted(members)
    rng.shuffle(order)
    totals = Counter(data.targets)
    quota = {t: (max(1, round(n * fraction)) if n >= 2 else 0) for t, n in totals.items()}
    taken: Counter = Counter()
    held: set[int] = set()
    for g in order:
        need = Counter(data.targets[i] for i in members[g])
        if all(taken[t] + n <= quota[t] for t, n in need.items()):
            taken.update(need)
            held.update(members[g])
    train, val = LabeledFiles(list(data.labels)), LabeledFiles(list(data.labels))
    for i, (f, t) in enumerate(zip(data.files, data.targets)):
        side = val if i in held else train
        side.files.append(f)
        side.targets.append(t)
    return train, val


def load_resized(data: LabeledFiles, spec: InputSpec, desc: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Read and resize every image as the runtime does (``resize_for``); skip and count bad ones.

    Returns:
        (N x H x W x 3 uint8, N label indices, number skipped).
    """
    from tqdm import tqdm

    x = np.empty((len(data.files), spec.height, spec.width, 3), dtype=np.uint8)
    y = np.empty(len(data.files), dtype=np.int64)
    n = 0
    skipped = Unreadable(desc)
    for f, t in tqdm(list(zip(data.files, data.targets)), desc=desc, unit="img"):
        try:
            img = read_rgb(f)
        except DataError as e:
            skipped.add(e)
            continue
        x[n], _ = resize_for(img, spec)
        y[n] = t
        n += 1
    return x[:n], y[:n], skipped.summarize()


def class_weights(y: np.ndarray, n_classes: int, cap: float) -> np.ndarray:
    """Balanced class weights n / (k * n_c), capped so a tiny class cannot dominate."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return np.minimum(w, cap).astype(np.float32)


#: The doorway conditions ``condition_augment`` draws from (one per augmented crop, uniformly).
TRAIN_CONDITIONS = ("ir", "low-light", "motion-blur", "jpeg")


def condition_augment(img: np.ndarray, rng: np.random.Generator, kind: str | None = None,
                      blur: tuple[int, int] = (3, 10)) -> np.ndarray:
    """One doorway condition on a resized uint8 RGB crop, its strength drawn at random.

    Families, not the fixed settings of ``convert.verify.conditions`` (which measure them):
    IR-like grey with a random contrast stretch; low light (a random gain of 0.12-0.6 in
    linear light, then Gaussian sensor noise of sigma 3-12 and JPEG 50-90); motion blur
    along a random direction, ``blur`` (3-9) px long at the image's size; JPEG at quality 8-40.
    ``kind``: one of ``TRAIN_CONDITIONS`` (default: drawn uniformly).
    """
    if kind is None:
        kind = TRAIN_CONDITIONS[int(rng.integers(len(TRAIN_CONDITIONS)))]
    if kind == "ir":
        grey = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY).astype(np.float32)
        lo, hi = np.percentile(grey, (2, 98))
        span, base = rng.uniform(150, 240), rng.uniform(5, 50)
        g = np.clip((grey - lo) / max(hi - lo, 1.0) * span + base, 0, 255).astype(np.uint8)
        return np.stack([g, g, g], -1)
    if kind == "low-light":
        return jpeg_roundtrip(darken(img, rng, (0.12, 0.6), (3.0, 12.0)), int(rng.integers(50, 91)))
    if kind == "motion-blur":
        return line_blur(img, int(rng.integers(*blur)), rng.uniform(0, 180))
    return jpeg_roundtrip(img, int(rng.integers(8, 41)))


#: The conditions ``photo_condition`` draws from: the crop families and a smaller photo.
PHOTO_CONDITIONS = TRAIN_CONDITIONS + ("small",)


def photo_condition(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One doorway condition on a whole uint8 RGB photo, before its faces are cut (same size out).

    ``condition_augment`` acts on the 96 px crop; a doorway's faces are 15-40 px in the photo,
    where the same blur or JPEG wipes out far more of a face (issue 21: crop-level augmentation
    did not close the blur, JPEG and small-face gaps). Families: those of ``condition_augment``
    with motion blur 3-11 px at photo scale, and 'small': the photo scaled down by 0.35-0.7 and
    back up (INTER_AREA, then bilinear; box coordinates stay valid).
    """
    kind = PHOTO_CONDITIONS[int(rng.integers(len(PHOTO_CONDITIONS)))]
    if kind != "small":
        return condition_augment(rgb, rng, kind=kind, blur=(3, 12))
    h, w = rgb.shape[:2]
    f = rng.uniform(0.35, 0.7)
    lo = cv2.resize(np.ascontiguousarray(rgb), (max(1, round(w * f)), max(1, round(h * f))),
                    interpolation=cv2.INTER_AREA)
    return cv2.resize(lo, (w, h), interpolation=cv2.INTER_LINEAR)


def augment(img: np.ndarray, rng: np.random.Generator, conditions: float = 0.0) -> np.ndarray:
    """One random variation of a resized uint8 RGB crop (same size out).

    ``conditions``: the share of crops that also get one ``condition_augment`` (0: none).
    """
    h, w = img.shape[:2]
    out = img
    if rng.random() < 0.5:
        out = out[:, ::-1]
    # Small rotation/zoom/shift: detector boxes are never perfectly centred.
    angle = rng.uniform(-12, 12)
    scale = rng.uniform(0.9, 1.12)
    tx, ty = rng.uniform(-0.07, 0.07, 2) * (w, h)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    m[:, 2] += (tx, ty)
    out = cv2.warpAffine(np.ascontiguousarray(out), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT_101)
    # Door-camera faces are often 15-40 px: blur by a down-then-up resize as stretch() does.
    if rng.random() < 0.5:
        s = int(rng.integers(max(8, w // 8), max(9, w * 3 // 4)))
        small = cv2.resize(out, (s, s), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    f = out.astype(np.float32)
    if rng.random() < 0.8:
        contrast = rng.uniform(0.75, 1.25)
        bright = rng.uniform(-25, 25)
        gains = rng.uniform(0.93, 1.07, 3).astype(np.float32)
        mean = f.mean()
        f = (f - mean) * contrast + mean + bright
        f = f * gains
    if rng.random() < 0.05:
        f = np.repeat(f.mean(axis=2, keepdims=True), 3, axis=2)
    out = np.clip(f, 0, 255).astype(np.uint8)
    # Drawn after the others so conditions=0 leaves every other draw (and the weights) as before.
    if conditions > 0 and rng.random() < conditions:
        out = condition_augment(out, rng)
    return out


def make_sequence(keras: Any, x: np.ndarray, y: np.ndarray, weights: np.ndarray, spec: InputSpec,
                  batch: int, seed: int, n_classes: int, do_augment: bool = True, conditions: float = 0.0):
    """A ``keras.utils.PyDataset`` of (normalized images, one-hot labels, per-sample weights).

    ``set_epoch`` reshuffles; the order and each batch's augmentation are seeded by
    (seed, epoch) and (seed, epoch, batch index); ``conditions`` as in ``augment``.
    """
    class AugmentedSequence(keras.utils.PyDataset):
        """Batches of augmented, normalized crops; order and augmentation depend only on (seed, epoch)."""

        def __init__(self):
            super().__init__(workers=1, use_multiprocessing=False)
            self.epoch = 0
            self._order = self._shuffle()

        def _shuffle(self):
            return np.random.default_rng([seed, self.epoch, 7]).permutation(len(x))

        def set_epoch(self, epoch: int):
            self.epoch = epoch
            self._order = self._shuffle()

        def __len__(self):
            return math.ceil(len(x) / batch)

        def __getitem__(self, i):
            idx = self._order[i * batch:(i + 1) * batch]
            rng = np.random.default_rng([seed, self.epoch, i])
            imgs = [augment(x[j], rng, conditions) if do_augment else x[j] for j in idx]
            xb = np.stack([normalize(im, spec) for im in imgs]).astype(np.float32)
            yb = np.eye(n_classes, dtype=np.float32)[y[idx]]
            return xb, yb, weights[y[idx]]

    return AugmentedSequence()
