"""SSD detectors (MediaPipe's palm detector): anchors from the manifest, decode and NMS in float.

The model gives, per anchor, box regressions (``ssd_boxes``: x, y, w, h and
keypoints, in units of ``box_scale`` input pixels, relative to the anchor) and
one score logit (``ssd_scores``). The anchors are generated from the manifest's
``ssd`` options exactly as MediaPipe's SsdAnchorsCalculator does; nothing about
them is written anywhere else. As for YOLO, decoding runs on the host in float:
the int8 model keeps its raw outputs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..manifest import SsdSpec
from .models import DetectorStages, _check_outputs, _map_outputs, _open
from .preprocess import Transform
from ..types import Box, Detection
from .yolo import nms


def _scale(min_scale: float, max_scale: float, i: int, n: int) -> float:
    return (min_scale + max_scale) * 0.5 if n == 1 else min_scale + (max_scale - min_scale) * i / (n - 1)


def anchors(spec: SsdSpec, width: int, height: int) -> np.ndarray:
    """SSD anchors (N x 4: x_center, y_center, w, h; normalized to the input) for an input size.

    Follows MediaPipe's SsdAnchorsCalculator: layers with the same stride share
    one feature map, each layer adds one anchor per aspect ratio plus one
    between its scale and the next (``interpolated_scale_aspect_ratio``).
    """
    out: list[tuple[float, float, float, float]] = []
    n = len(spec.strides)
    layer = 0
    while layer < spec.num_layers:
        sizes: list[tuple[float, float]] = []  # (w, h) per anchor of a cell
        last = layer
        while last < n and spec.strides[last] == spec.strides[layer]:
            scale = _scale(spec.min_scale, spec.max_scale, last, n)
            if last == 0 and spec.reduce_boxes_in_lowest_layer:
                pairs = [(1.0, 0.1), (2.0, scale), (0.5, scale)]
            else:
                pairs = [(ar, scale) for ar in spec.aspect_ratios]
                if spec.interpolated_scale_aspect_ratio > 0:
                    nxt = 1.0 if last == n - 1 else _scale(spec.min_scale, spec.max_scale, last + 1, n)
                    pairs.append((spec.interpolated_scale_aspect_ratio, math.sqrt(scale * nxt)))
            sizes += [(s * math.sqrt(ar), s / math.sqrt(ar)) for ar, s in pairs]
            last += 1
        stride = spec.strides[layer]
        fh, fw = math.ceil(height / stride), math.ceil(width / stride)
        for y in range(fh):
            for x in range(fw):
                cx, cy = (x + spec.anchor_offset) / fw, (y + spec.anchor_offset) / fh
                for w, h in sizes:
                    out.append((cx, cy, 1.0, 1.0) if spec.fixed_anchor_size else (cx, cy, w, h))
        layer = last
    return np.asarray(out, dtype=np.float32)


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchor_boxes: np.ndarray, spec: SsdSpec,
           width: int, height: int, score_threshold: float,
           nms_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-anchor regressions and logits -> (boxes K x 4 in input pixels x1,y1,x2,y2, scores K), best first.

    Args:
        raw_boxes: N x (4 + 2 * keypoints) float regressions (x, y, w, h first).
        raw_scores: N float logits.
        anchor_boxes: N x 4 from :func:`anchors`.
    """
    raw_boxes = raw_boxes.reshape(len(anchor_boxes), -1)
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -spec.score_clip, spec.score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= score_threshold
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    r, a, s = raw_boxes[keep, :4] / spec.box_scale, anchor_boxes[keep], scores[keep]
    cx = r[:, 0] * a[:, 2] + a[:, 0]
    cy = r[:, 1] * a[:, 3] + a[:, 1]
    w, h = r[:, 2] * a[:, 2], r[:, 3] * a[:, 3]
    boxes = np.stack([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height], 1)
    order = nms(boxes, s, nms_iou)
    return boxes[order].astype(np.float32), s[order].astype(np.float32)


class SsdDetector(DetectorStages):
    """An SSD detector (the palm detector): image -> list of Detection in image pixels.

    Same interface as ``edge.infer.models.Detector`` (``preprocess`` / ``infer`` /
    ``postprocess`` / ``detect``), built from a manifest with ``ssd`` options and
    one ``ssd_boxes`` and one ``ssd_scores`` output. Its arguments are ``Detector``'s
    (manifest path, threads, threshold overrides, stub interpreter, float reference, backend).

    Raises:
        ModelError: not an SSD manifest, anchors that do not match the outputs, or what
            ``edge.infer.models`` refuses (hash, shapes, no interpreter).
    """

    def __init__(self, manifest_path: Path | str, num_threads: int = 2, score_threshold: float | None = None,
                 nms_iou: float | None = None, interpreter: Any = None, use_float: bool = False,
                 backend: str | None = None):
        path = Path(manifest_path)
        m, self.model, self.input_dtype = _open(path, "detect", num_threads, backend, interpreter, use_float)
        self.manifest = m
        roles = {o.role: o for o in m.outputs}
        if m.ssd is None or "ssd_boxes" not in roles or "ssd_scores" not in roles:
            raise ModelError(f"{path}: an SSD detector manifest needs 'ssd' options and ssd_boxes/ssd_scores outputs")
        self._boxes, self._scores = roles["ssd_boxes"], roles["ssd_scores"]
        self._names = _map_outputs(self.model, [self._boxes, self._scores], str(path))
        if not use_float:
            _check_outputs(self.model, [self._boxes, self._scores], self._names, str(path))
        self.anchors = anchors(m.ssd, m.input.width, m.input.height)
        n = {len(self.anchors), m.ssd.num_anchors, self._boxes.shape[-2], self._scores.shape[-2]}
        if len(n) != 1:
            raise ModelError(f"{path}: the ssd options give {len(self.anchors)} anchors, the manifest says "
                             f"{m.ssd.num_anchors}, the outputs have {self._boxes.shape[-2]} / "
                             f"{self._scores.shape[-2]}")
        self.score_threshold = score_threshold if score_threshold is not None else (m.score_threshold or 0.5)
        self.nms_iou = nms_iou if nms_iou is not None else (m.nms_iou or 0.3)

    def postprocess(self, outputs: dict[str, np.ndarray], transform: Transform | None) -> list[Detection]:
        m = self.manifest
        boxes, scores = decode(outputs[self._boxes.name], outputs[self._scores.name], self.anchors, m.ssd,
                               m.input.width, m.input.height, self.score_threshold, self.nms_iou)
        if transform is not None and len(boxes):
            boxes = np.stack(transform.to_frame(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]), 1)
        return [Detection(Box(*map(float, b)), float(s), 0, m.labels[0])
                for b, s in zip(boxes, scores) if b[2] > b[0] and b[3] > b[1]]


def build_detector(manifest_path: Path | str, **kwargs) -> Any:
    """The detector class a manifest asks for: SSD outputs -> SsdDetector, else the YOLO Detector."""
    from ..manifest import load_manifest
    from .models import Detector

    try:
        m = load_manifest(manifest_path, verify_hash=False)
    except ModelError:
        return Detector(manifest_path, **kwargs)  # let it raise its own one-line reason
    if m.ssd is not None:
        return SsdDetector(manifest_path, **kwargs)
    return Detector(manifest_path, **kwargs)
