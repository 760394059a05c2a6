"""YOLO (darknet yolo layer) head decoding and NMS, in float, on the host.

The int8 model keeps each head as its own raw conv output (boxes and scores
never share one quantization scale); this module turns the dequantized heads
into boxes. It is shared by the runtime, the conversion report and ``eval``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..manifest import OutputSpec
from .preprocess import Transform


@dataclass(frozen=True)
class RawDetections:
    """Decoded boxes before mapping to frame pixels: N x 4 (x1,y1,x2,y2), scores, class ids."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def decode_head(
    head: np.ndarray,
    spec: OutputSpec,
    num_classes: int,
    input_width: int,
    input_height: int,
    score_threshold: float,
) -> RawDetections:
    """Decode one YOLO head (1 x H x W x A*(5+C), raw logits) into input-pixel boxes.

    Follows darknet's yolo layer: x = (col + sigmoid(tx) * s - (s - 1) / 2) / W,
    w = exp(tw) * anchor_w / net_w, score = sigmoid(obj) * sigmoid(cls).
    """
    if spec.anchors is None:
        raise ValueError(f"output {spec.name} has no anchors")
    anchors = np.asarray(spec.anchors, dtype=np.float32)
    na = len(anchors)
    _, gh, gw, ch = head.shape
    if ch != na * (5 + num_classes):
        raise ValueError(
            f"head {spec.name} has {ch} channels, expected {na} anchors x (5 + {num_classes})"
        )
    t = head.reshape(gh, gw, na, 5 + num_classes).astype(np.float32)
    obj = _sigmoid(t[..., 4])
    cls = _sigmoid(t[..., 5:])
    scores = obj[..., None] * cls  # gh, gw, na, C
    keep = np.nonzero(scores.max(axis=-1) >= score_threshold)
    if keep[0].size == 0:
        empty = np.zeros((0,), np.float32)
        return RawDetections(np.zeros((0, 4), np.float32), empty, np.zeros((0,), np.int64))
    rows, cols, a = keep
    tk = t[rows, cols, a]
    s = spec.scale_x_y
    cx = (cols + _sigmoid(tk[:, 0]) * s - (s - 1) / 2) / gw * input_width
    cy = (rows + _sigmoid(tk[:, 1]) * s - (s - 1) / 2) / gh * input_height
    w = np.exp(np.clip(tk[:, 2], -20, 20)) * anchors[a, 0]
    h = np.exp(np.clip(tk[:, 3], -20, 20)) * anchors[a, 1]
    sc = scores[rows, cols, a]
    # One candidate per class above threshold (darknet keeps every class score).
    cand_idx, cand_cls = np.nonzero(sc >= score_threshold)
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)[cand_idx]
    return RawDetections(boxes.astype(np.float32), sc[cand_idx, cand_cls].astype(np.float32), cand_cls)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        ix = np.maximum(0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        iy = np.maximum(0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = ix * iy
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def decode(
    heads: dict[str, np.ndarray],
    specs: list[OutputSpec],
    num_classes: int,
    input_width: int,
    input_height: int,
    transform: Transform | None,
    score_threshold: float,
    nms_iou: float,
) -> RawDetections:
    """Decode every head, run per-class NMS, and map boxes to frame pixels.

    Args:
        heads: dequantized float head outputs keyed by output name.
        specs: the manifest's output specs (role yolo_head).
        transform: the preprocessing transform (None keeps input pixels).

    Returns:
        Detections in frame pixels, best score first.
    """
    parts = [
        decode_head(heads[s.name], s, num_classes, input_width, input_height, score_threshold)
        for s in specs
        if s.role == "yolo_head"
    ]
    boxes = np.concatenate([p.boxes for p in parts]) if parts else np.zeros((0, 4), np.float32)
    scores = np.concatenate([p.scores for p in parts]) if parts else np.zeros((0,), np.float32)
    cls = np.concatenate([p.class_ids for p in parts]) if parts else np.zeros((0,), np.int64)
    if transform is not None and len(boxes):
        boxes = np.stack(transform.to_frame(*boxes.T), axis=1).astype(np.float32)
    if len(boxes) == 0:
        return RawDetections(boxes, scores, cls)
    # Per-class NMS by offsetting each class into its own coordinate range.
    offset = cls[:, None].astype(np.float32) * (boxes.max() + 1.0)
    keep = nms(boxes + offset, scores, nms_iou)
    return RawDetections(boxes[keep], scores[keep], cls[keep])
