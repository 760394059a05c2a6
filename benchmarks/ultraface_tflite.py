"""UltraFace version-RFB-320 as TFLite without post-processing: a peer for ``doorguard bench``.

The model (../shared/models/peers/version-RFB-320_without_postprocessing.tflite,
Linzaer's Ultra-Light-Fast-Generic-Face-Detector-1MB, MIT) gives raw SSD box
regressions and per-prior (background, face) probabilities; the caller makes
the priors and decodes, as its own ``vision/ssd`` code does: input 320x240
RGB, (x - 127) / 128; priors from strides 8/16/32/64 with min boxes
[10,16,24], [32,48], [64,96], [128,192,256] (4420 in all); centre variance 0.1,
size variance 0.2; threshold 0.7 and hard NMS 0.3 (its demo's defaults). NMS
is ``edge.infer.yolo.nms``, the same greedy NMS the other peers use.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from edge.errors import ModelError
from edge.types import Box, Detection
from edge.infer.yolo import nms

FILE = "version-RFB-320_without_postprocessing.tflite"
SIZE = (320, 240)  # width, height
MIN_BOXES = ([10, 16, 24], [32, 48], [64, 96], [128, 192, 256])
STRIDES = (8, 16, 32, 64)
CENTER_VARIANCE, SIZE_VARIANCE = 0.1, 0.2


def priors(size: tuple[int, int] = SIZE) -> np.ndarray:
    """SSD priors (cx, cy, w, h) in 0..1, in the model's output order (stride, row, col, box)."""
    w, h = size
    out = []
    for stride, boxes in zip(STRIDES, MIN_BOXES):
        fw, fh = math.ceil(w / stride), math.ceil(h / stride)
        scale_w, scale_h = w / stride, h / stride
        for j in range(fh):
            for i in range(fw):
                cx, cy = (i + 0.5) / scale_w, (j + 0.5) / scale_h
                for m in boxes:
                    out.append((cx, cy, m / w, m / h))
    return np.clip(np.asarray(out, np.float32), 0.0, 1.0)


class UltraFaceTflite:
    """``detect(rgb) -> list[Detection]`` with the RFB-320 TFLite model (float32)."""

    name = "ultraface-rfb-320-tflite"

    def __init__(self, peers_dir: Path, score_threshold: float = 0.7, nms_iou: float = 0.3,
                 num_threads: int = 2):
        from edge.infer.runtime import TfliteModel

        path = Path(peers_dir) / FILE
        if not path.is_file():
            raise ModelError(f"peer model not found: {path}")
        self.model = TfliteModel(path, num_threads)
        self.priors = priors()
        self.score_threshold, self.nms_iou = score_threshold, nms_iou

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        x = (cv2.resize(image, SIZE).astype(np.float32) - 127.0) / 128.0
        out = self.model.run(x[None])
        loc = next(v for v in out.values() if v.shape[-1] == 4).reshape(-1, 4)
        scores = next(v for v in out.values() if v.shape[-1] == 2).reshape(-1, 2)
        if len(loc) != len(self.priors):
            raise ModelError(f"{FILE}: {len(loc)} box outputs, {len(self.priors)} priors")
        p = self.priors
        cxcy = p[:, :2] + loc[:, :2] * CENTER_VARIANCE * p[:, 2:]
        wh = p[:, 2:] * np.exp(loc[:, 2:] * SIZE_VARIANCE)
        boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], 1) * np.array([w, h, w, h], np.float32)
        face = scores[:, 1]
        keep = np.nonzero(face >= self.score_threshold)[0]
        if keep.size:
            keep = keep[nms(boxes[keep], face[keep], self.nms_iou)]
        dets = []
        for b, s in zip(boxes[keep], face[keep]):
            x1, y1 = float(np.clip(b[0], 0, w)), float(np.clip(b[1], 0, h))
            x2, y2 = float(np.clip(b[2], 0, w)), float(np.clip(b[3], 0, h))
            if x2 > x1 and y2 > y1:
                dets.append(Detection(Box(x1, y1, x2, y2), float(s), 0, "face"))
        return dets
