"""Frame -> model input tensor, and model coordinates -> frame coordinates.

This is the only preprocessing code in the project: the runtime, calibration,
evaluation and training all call it, so the int8 model is calibrated on exactly
what the Pi feeds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from ..manifest import InputSpec, QuantParams
from ..types import Box


@dataclass(frozen=True)
class Transform:
    """How a frame was mapped into the model input: x_in = x * sx + dx."""

    sx: float
    sy: float
    dx: float
    dy: float
    frame_width: int
    frame_height: int

    def to_frame(self, x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray):
        """Map input-pixel box corners back to frame pixels, clipped to the frame."""
        fx1 = np.clip((x1 - self.dx) / self.sx, 0, self.frame_width)
        fy1 = np.clip((y1 - self.dy) / self.sy, 0, self.frame_height)
        fx2 = np.clip((x2 - self.dx) / self.sx, 0, self.frame_width)
        fy2 = np.clip((y2 - self.dy) / self.sy, 0, self.frame_height)
        return fx1, fy1, fx2, fy2


def letterbox(image: np.ndarray, width: int, height: int, pad_value: float = 127.5):
    """Resize keeping the aspect ratio and pad the rest, centred (as darknet does).

    Args:
        image: H x W x 3 uint8.
        width, height: target size.
        pad_value: fill value 0..255.

    Returns:
        (resized uint8 image of height x width x 3, Transform).
    """
    h, w = image.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, int(round(w * s))), max(1, int(round(h * s)))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    out = np.full((height, width, image.shape[2]), int(round(pad_value)), dtype=np.uint8)
    dx, dy = (width - nw) // 2, (height - nh) // 2
    out[dy : dy + nh, dx : dx + nw] = resized
    return out, Transform(nw / w, nh / h, dx, dy, w, h)


def stretch(image: np.ndarray, width: int, height: int):
    """Resize to exactly width x height, ignoring the aspect ratio."""
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if (w > width and h > height) else cv2.INTER_LINEAR
    out = cv2.resize(image, (width, height), interpolation=interp)
    return out, Transform(width / w, height / h, 0.0, 0.0, w, h)


def resize_for(image: np.ndarray, spec: InputSpec):
    """Resize an RGB frame as the manifest says (letterbox or stretch) and reorder colours."""
    if spec.resize == "letterbox":
        out, tf = letterbox(image, spec.width, spec.height, spec.pad_value)
    else:
        out, tf = stretch(image, spec.width, spec.height)
    if spec.color == "BGR":
        out = out[..., ::-1]
    return out, tf


def normalize(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 pixels -> float32 model values: (pixel * scale - mean) / std."""
    x = image.astype(np.float32) * np.float32(spec.scale)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return (x - mean) / std


def quantize(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Float model values -> the input tensor's dtype (identity for float32 inputs)."""
    if spec.dtype == "float32" or spec.quant is None:
        return x.astype(np.float32)
    info = np.iinfo(np.int8 if spec.dtype == "int8" else np.uint8)
    q = np.round(x / spec.quant.scale + spec.quant.zero_point)
    return np.clip(q, info.min, info.max).astype(info.dtype)


def prepare(image: np.ndarray, spec: InputSpec, dtype: str | None = None):
    """Full preprocessing of one RGB frame into a batch of one.

    Args:
        image: H x W x 3 uint8 RGB.
        spec: the model's input spec from its manifest.
        dtype: override the tensor dtype ("float32" to feed the float reference).

    Returns:
        (1 x H x W x C tensor, Transform back to frame pixels).
    """
    resized, tf = resize_for(image, spec)
    if dtype is not None and dtype != spec.dtype:
        spec = spec.model_copy(update={"dtype": dtype})
    if spec.dtype != "float32" and spec.quant is not None and resized.dtype == np.uint8 \
            and resized.ndim == 3 and resized.shape[2] == 3:
        # Integer input: each output value depends only on the pixel value and its
        # channel, so a 256-entry table per channel built by normalize+quantize
        # themselves gives the same bytes ~10x faster than float arithmetic on
        # the whole frame (the biggest non-inference cost per frame).
        lut = _quant_lut(spec.scale, tuple(np.ravel(spec.mean).tolist()), tuple(np.ravel(spec.std).tolist()),
                         spec.dtype, spec.quant.scale, spec.quant.zero_point, resized.shape[2])
        q = cv2.LUT(np.ascontiguousarray(resized), lut)
        return q.view(np.int8 if spec.dtype == "int8" else np.uint8)[None], tf
    x = normalize(resized, spec)
    return quantize(x, spec)[None], tf


@functools.lru_cache(maxsize=64)
def _quant_lut(scale: float, mean: tuple, std: tuple, dtype: str, qscale: float, zero_point: int,
               channels: int) -> np.ndarray:
    """uint8 -> quantized tensor byte per channel (256 x 1 x C, as cv2.LUT wants), via normalize+quantize."""
    spec = InputSpec.model_construct(scale=scale, mean=list(mean), std=list(std), dtype=dtype,
                                     quant=QuantParams(scale=qscale, zero_point=zero_point))
    values = np.repeat(np.arange(256, dtype=np.uint8).reshape(256, 1, 1), channels, axis=2)
    return np.ascontiguousarray(quantize(normalize(values, spec), spec).view(np.uint8))


def crop_with_margin(image: np.ndarray, box: Box, margin: float) -> np.ndarray:
    """Cut a box out of a frame, grown by ``margin`` x its size on every side.

    The same crop feeds training (``doorguard dataset crops``) and the runtime
    classifier. Parts outside the frame are clipped, not padded.

    Raises:
        ValueError: the clipped crop is empty.
    """
    h, w = image.shape[:2]
    mx, my = box.width * margin, box.height * margin
    x1 = int(np.floor(max(0.0, box.x1 - mx)))
    y1 = int(np.floor(max(0.0, box.y1 - my)))
    x2 = int(np.ceil(min(float(w), box.x2 + mx)))
    y2 = int(np.ceil(min(float(h), box.y2 + my)))
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"empty crop for box {box.as_list()} in a {w}x{h} frame")
    return image[y1:y2, x1:x2]
