"""Fakes at the hand stage's seam: an SSD interpreter stub and its manifest.

The stub finds dark blobs (a "hand": near-black pixels, which the face stub of
``doorway_fakes`` ignores because they are not saturated) and encodes each at
its nearest anchor exactly as MediaPipe's palm detector encodes a box, so the
real anchors, decode, NMS and region mapping of ``edge.ssd`` all run.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from doorway_fakes import _StubInterpreter

HAND_SIZE = 64
#: One layer of stride 8 on a 64 x 64 input: 8 x 8 cells x 2 anchors.
SSD = {"num_layers": 1, "strides": [8], "min_scale": 0.5, "max_scale": 0.5, "aspect_ratios": [1.0],
       "interpolated_scale_aspect_ratio": 1.0, "anchor_offset": 0.5, "fixed_anchor_size": True,
       "num_anchors": 128, "box_scale": float(HAND_SIZE), "num_keypoints": 1}
DARK = (8, 8, 8)


def write_hand_manifest(folder: Path) -> Path:
    n, k = SSD["num_anchors"], 4 + 2 * SSD["num_keypoints"]
    m = {
        "format_version": 1, "name": "stub-hands", "task": "detect", "tflite": "stub-hands.tflite",
        "sha256": "2" * 64,
        "input": {"name": "input", "width": HAND_SIZE, "height": HAND_SIZE, "resize": "stretch",
                  "scale": 1 / 255, "dtype": "float32"},
        "outputs": [{"name": "boxes", "shape": [1, n, k], "role": "ssd_boxes", "dtype": "float32"},
                    {"name": "scores", "shape": [1, n, 1], "role": "ssd_scores", "dtype": "float32"}],
        "labels": ["hand"], "score_threshold": 0.5, "nms_iou": 0.3, "ssd": SSD,
        "source": {"kind": "trained", "files": {}},
    }
    p = folder / "stub-hands.json"
    p.write_text(json.dumps(m))
    return p


class DarkBlobHandInterpreter(_StubInterpreter):
    """Boxes each dark blob (all channels < 0.15) at the anchor nearest its centre."""

    def __init__(self):
        n, k = SSD["num_anchors"], 4 + 2 * SSD["num_keypoints"]
        super().__init__([1, HAND_SIZE, HAND_SIZE, 3], [("boxes", [1, n, k]), ("scores", [1, n, 1])])
        from edge.manifest import SsdSpec
        from edge.ssd import anchors

        self.anchors = anchors(SsdSpec(**SSD), HAND_SIZE, HAND_SIZE)
        self.k = k

    def _compute(self):
        x = self._tensors[0][0]
        dark = (x.max(axis=2) < 0.15).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
        boxes = np.zeros((len(self.anchors), self.k), np.float32)
        scores = np.full((len(self.anchors), 1), -10.0, np.float32)
        s = float(HAND_SIZE)
        for i in range(1, n):
            bx, by, bw, bh, area = stats[i]
            if area < 4:
                continue
            cx, cy = (bx + bw / 2) / s, (by + bh / 2) / s
            a = int(np.argmin((self.anchors[:, 0] - cx) ** 2 + (self.anchors[:, 1] - cy) ** 2))
            ax, ay, aw, ah = self.anchors[a]
            boxes[a, :4] = [(cx - ax) / aw * s, (cy - ay) / ah * s, bw / s / aw * s, bh / s / ah * s]
            scores[a, 0] = 8.0
        self._tensors[1] = boxes[None]
        self._tensors[2] = scores[None]
