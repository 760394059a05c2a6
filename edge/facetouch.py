"""Face-touch check: a hand box that overlaps a face box makes that face vote ``facetouch``.

The hand stage (a palm detector, ``edge.ssd``) runs on a square region centred
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

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .types import Box

FACETOUCH = "facetouch"
NO_FACETOUCH = "no_facetouch"

#: Event source (and ``Votes.source``) of face-touch votes.
SOURCE = "hands"


class FaceTouchConfig(BaseModel):
    """[facetouch] section: the hand stage and when a hand counts as touching a face."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    hand_detector: str | None = Field(
        None, description="Manifest of the hand (palm) detector; empty or absent turns the face-touch check off")
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Hand detector score threshold; absent uses the manifest's")
    overlap: Literal["face_fraction", "hand_fraction", "iou"] = Field(
        "hand_fraction",
        description="Overlap measure of a hand box and a face box: face_fraction = intersection / face area, "
        "hand_fraction = intersection / hand area, iou = intersection / union",
    )
    min_overlap: float = Field(
        0.05, gt=0.0, le=1.0, description="A hand touches a face when their overlap reaches this")
    hand_grow: float = Field(
        0.5, ge=0.0, le=2.0,
        description="Grow each hand box by this fraction of its size on every side before measuring: a palm "
        "detector boxes the palm, and the fingers that touch reach past it",
    )
    max_face_iou: float = Field(
        0.2, gt=0.0, le=1.0,
        description="A hand box whose IoU with the face box is above this is taken for the face itself (the "
        "palm detector fires on faces) and ignored")
    min_hand_area: float = Field(
        0.1, ge=0.0, le=10.0,
        description="Hand boxes smaller than this fraction of the face box's area are ignored (eyes and "
        "nostrils taken for palms)")
    region_scale: float = Field(
        3.0, ge=1.0, le=10.0,
        description="The hand stage looks at a square centred on each face, this many times the face's larger side")
    every_settled: int = Field(
        3, ge=1, le=300,
        description="K: once a face's face-touch verdict settled, the hand stage runs for it every K frames "
        "(unsettled: every frame)")
    cooldown_s: float = Field(
        10.0, ge=0.0, le=86400.0,
        description="A face still touched alerts again at most this often (its own cooldown, not "
        "rules.track_cooldown_s)")

    @property
    def enabled(self) -> bool:
        return bool(self.hand_detector and self.hand_detector.strip())


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
