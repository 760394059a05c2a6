"""The ``[facetouch]`` section: the hand stage and when a hand counts as touching a face."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Cooldown, EveryFrames, Overlap, _Section

FACETOUCH = "facetouch"
NO_FACETOUCH = "no_facetouch"


class FaceTouchConfig(_Section):
    """[facetouch] section: the hand stage and when a hand counts as touching a face."""

    hand_detector: str | None = Field(
        None, description="Manifest of the hand (palm) detector; empty or absent turns the face-touch check off")
    score_threshold: float | None = Field(
        None, ge=0.0, le=1.0, description="Hand detector score threshold; absent uses the manifest's")
    overlap: Literal["face_fraction", "hand_fraction", "iou"] = Field(
        "hand_fraction",
        description="Overlap measure of a hand box and a face box: face_fraction = intersection / face area, "
        "hand_fraction = intersection / hand area, iou = intersection / union",
    )
    min_overlap: Overlap = Field(0.05, description="A hand touches a face when their overlap reaches this")
    hand_grow: float = Field(
        0.5, ge=0.0, le=2.0,
        description="Grow each hand box by this fraction of its size on every side before measuring: a palm "
        "detector boxes the palm, and the fingers that touch reach past it",
    )
    max_face_iou: Overlap = Field(
        0.2, description="A hand box whose IoU with the face box is above this is taken for the face itself "
        "(the palm detector fires on faces) and ignored")
    min_hand_area: float = Field(
        0.1, ge=0.0, le=10.0,
        description="Hand boxes smaller than this fraction of the face box's area are ignored (eyes and "
        "nostrils taken for palms)")
    region_scale: float = Field(
        3.0, ge=1.0, le=10.0,
        description="The hand stage looks at a square centred on each face, this many times the face's larger side")
    every_settled: EveryFrames = Field(
        3, description="K: once a face's face-touch verdict settled, the hand stage runs for it every K frames "
        "(unsettled: every frame)")
    cooldown_s: Cooldown = Field(
        10.0, description="A face still touched alerts again at most this often (its own cooldown, not "
        "rules.track_cooldown_s)")

    @property
    def enabled(self) -> bool:
        return bool(self.hand_detector and self.hand_detector.strip())
