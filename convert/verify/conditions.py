"""Doorway conditions, reproduced on validation photos (issue 21): night, dusk, backlight, blur.

A door is watched at dusk, at night under IR light, against the light; each
transform here turns a clean validation photo into what a camera would give
under one such condition, reproducibly (the random parts are seeded by the
image name), so ``doorguard eval --condition NAME`` measures the same pipeline
on the same faces under that condition:

- ``ir``: near-greyscale with a flat, contrast-stretched response (NoIR camera
  under an IR illuminator: one channel, skin and masks of similar brightness);
- ``low-light``: gamma 2.2 darkening to a quarter of the light, plus sensor
  noise (Gaussian, sigma 8 levels) and the camera's re-encoding;
- ``backlight``: the background blown out (bright) and the faces darkened: an
  exposure set by a bright doorway behind the person (uses the true boxes,
  since that is what the condition is about: the face, not the scene, is dark);
- ``motion-blur``: a horizontal 9-px motion blur (someone walking past);
- ``jpeg``: heavy JPEG (quality 15), as a low-bitrate stream;
- ``small``: the photo downscaled to half its size (faces farther away).

``mask_colour`` groups masked faces by a stated colour rule (dark / light /
colourful) on the mask region of the face box, for recall and fnr per group.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import cv2
import numpy as np

from edge.types import Box


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def ir(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    lo, hi = np.percentile(grey, (2, 98))
    grey = np.clip((grey - lo) / max(hi - lo, 1.0) * 200 + 30, 0, 255)
    g = grey.astype(np.uint8)
    return np.stack([g, g, g], -1)


def low_light(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    x = (rgb.astype(np.float32) / 255.0) ** 2.2 * 0.25
    x = x ** (1 / 2.2) * 255.0
    x += _rng(name).normal(0.0, 8.0, x.shape)
    return jpeg_roundtrip(np.clip(x, 0, 255).astype(np.uint8), 75)


def backlight(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    face = np.zeros((h, w), np.float32)
    for b in boxes:
        cx, cy = (b.x1 + b.x2) / 2, (b.y1 + b.y2) / 2
        cv2.ellipse(face, (int(cx), int(cy)), (max(1, int(b.width * 0.8)), max(1, int(b.height * 0.9))),
                    0, 0, 360, 1.0, -1)
    sigma = max(3.0, 0.02 * max(h, w))
    face = cv2.GaussianBlur(face, (0, 0), sigma)[..., None]
    x = rgb.astype(np.float32)
    bright = np.clip(x * 1.6 + 70, 0, 255)   # blown-out background
    dark = x * 0.35                           # underexposed faces
    return np.clip(face * dark + (1 - face) * bright, 0, 255).astype(np.uint8)


def darken(rgb: np.ndarray, rng: np.random.Generator, gain: tuple[float, float],
           noise: tuple[float, float]) -> np.ndarray:
    """Dusk, as training augmentation: a random gain in linear light (gamma 2.2) drawn from
    ``gain``, then Gaussian sensor noise of a sigma drawn from ``noise`` (grey levels)."""
    x = (rgb.astype(np.float32) / 255.0) ** 2.2 * rng.uniform(*gain)
    x = x ** (1 / 2.2) * 255.0 + rng.normal(0.0, rng.uniform(*noise), rgb.shape)
    return np.clip(x, 0, 255).astype(np.uint8)


def line_blur(rgb: np.ndarray, n: int, angle: float = 0.0) -> np.ndarray:
    """Motion blur: the mean along a line of ``n`` pixels at ``angle`` degrees (0: horizontal)."""
    k = np.zeros((n, n), np.float32)
    k[n // 2, :] = 1.0 / n
    if angle:
        m = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), angle, 1.0)
        k = cv2.warpAffine(k, m, (n, n))
        k /= max(float(k.sum()), 1e-6)
    return cv2.filter2D(np.ascontiguousarray(rgb), -1, k, borderType=cv2.BORDER_REFLECT)


def motion_blur(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    k = np.zeros((9, 9), np.float32)
    k[4, :] = 1.0 / 9
    return cv2.filter2D(rgb, -1, k, borderType=cv2.BORDER_REFLECT)


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """``rgb`` encoded as JPEG at ``quality`` and decoded again (unchanged if encoding fails)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1].copy() if ok else rgb


def jpeg(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    return jpeg_roundtrip(rgb, 15)


def small(rgb: np.ndarray, boxes: Sequence[Box], name: str) -> np.ndarray:
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)


#: name -> (transform(rgb, true boxes, image name) -> rgb, scale of the boxes afterwards)
CONDITIONS: dict[str, tuple[Callable[[np.ndarray, Sequence[Box], str], np.ndarray], float]] = {
    "ir": (ir, 1.0), "low-light": (low_light, 1.0), "backlight": (backlight, 1.0),
    "motion-blur": (motion_blur, 1.0), "jpeg": (jpeg, 1.0), "small": (small, 0.5),
}


def mask_colour(rgb: np.ndarray, box: Box) -> str:
    """``dark``, ``light`` or ``colourful``: the colour of a masked face's mask.

    Rule (stated, not learned): over the mask region (the central 70% of the box's
    width, from 55% to 95% of its height, in HSV): ``dark`` when the median value is
    below 80 (black, navy, dark patterned fabric); else ``colourful`` when the median
    saturation is at least 100 (red, yellow, pink, printed fabric); else ``light``
    (white, light blue and grey surgical and FFP masks). Chosen by looking at the
    facemask853 val masked faces sorted by these figures.
    """
    h, w = rgb.shape[:2]
    x1, x2 = int(max(0, box.x1 + 0.15 * box.width)), int(min(w, box.x2 - 0.15 * box.width))
    y1, y2 = int(max(0, box.y1 + 0.55 * box.height)), int(min(h, box.y1 + 0.95 * box.height))
    if x2 - x1 < 2 or y2 - y1 < 2:
        return "light"
    hsv = cv2.cvtColor(np.ascontiguousarray(rgb[y1:y2, x1:x2]), cv2.COLOR_RGB2HSV).reshape(-1, 3)
    if float(np.median(hsv[:, 2])) < 80:
        return "dark"
    return "colourful" if float(np.median(hsv[:, 1])) >= 100 else "light"
