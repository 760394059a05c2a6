"""Face-touch check: a hand box that overlaps a face box makes that face vote ``facetouch``.

The hand stage (a palm detector, ``edge.infer.ssd``) runs on a square region centred
on each face (``region_scale`` x the face's larger side), not on the whole
frame: measured on held-back photos, MediaPipe's hand model found the touching
hand in 19 of 47 on the whole image and in 34 on an enlarged region around
each face. It runs only when a face is present, on every frame while a face's
face-touch channel is unsettled and every ``every_settled`` frames after.

Each face gets one vote per run: ``facetouch`` when some hand box, grown by
``hand_grow``, overlaps it by ``min_overlap`` or more (``overlap`` names the
measure), else ``no_facetouch``. Hand boxes that are the face itself (IoU above
``max_face_iou``) or tiny next to it (``min_hand_area``) do not count: the palm
detector fires on faces, eyes and nostrils. The defaults were chosen on half
of the labelled face-touch photos (benchmarks/facetouch/README.md)
(neutral: it lets a settled face-touch end, so the next touch is a new verdict).
Whether ``facetouch`` alerts is a rule like any detector label:
``rules.alert_on_detector = ["facetouch"]``.
"""

from __future__ import annotations

import numpy as np

from ..settings.facetouch import FaceTouchConfig
from ..types import Box

#: Event source (and ``Votes.source``) of face-touch votes.
SOURCE = "hands"


def overlap(face: Box, hand: Box, measure: str) -> float:
    """Overlap of a hand box with a face box by the named measure (0 when disjoint).

    Raises:
        ValueError: unknown measure.
    """
    ix = max(0.0, min(face.x2, hand.x2) - max(face.x1, hand.x1))
    iy = max(0.0, min(face.y2, hand.y2) - max(face.y1, hand.y1))
    inter = ix * iy
    if measure == "iou":
        return face.iou(hand)
    if measure == "face_fraction":
        return inter / face.area if face.area > 0 else 0.0
    if measure == "hand_fraction":
        return inter / hand.area if hand.area > 0 else 0.0
    raise ValueError(f"unknown overlap measure {measure!r}")


def grow(box: Box, fraction: float) -> Box:
    """A box grown by ``fraction`` of its width/height on every side."""
    dx, dy = box.width * fraction, box.height * fraction
    return Box(box.x1 - dx, box.y1 - dy, box.x2 + dx, box.y2 + dy)


def plausible(face: Box, hand: Box, cfg: FaceTouchConfig) -> bool:
    """Whether a hand box can be a hand near this face, not the face or a part of it."""
    return face.iou(hand) <= cfg.max_face_iou and hand.area >= cfg.min_hand_area * face.area


def touch_score(face: Box, hands: list[Box], cfg: FaceTouchConfig) -> float:
    """The largest overlap of any plausible (grown) hand box with the face box."""
    return max((overlap(face, grow(h, cfg.hand_grow), cfg.overlap) for h in hands if plausible(face, h, cfg)),
               default=0.0)


def region_around(face: Box, scale: float, width: int, height: int) -> tuple[int, int, int, int]:
    """The square (x1, y1, x2, y2) of side ``scale`` x the face's larger side, centred on it,
    clipped to the frame (integer pixels, never empty)."""
    side = scale * max(face.width, face.height, 1.0)
    cx, cy = (face.x1 + face.x2) / 2, (face.y1 + face.y2) / 2
    x1 = int(np.floor(max(0.0, cx - side / 2)))
    y1 = int(np.floor(max(0.0, cy - side / 2)))
    x2 = int(np.ceil(min(float(width), cx + side / 2)))
    y2 = int(np.ceil(min(float(height), cy + side / 2)))
    return x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)
