"""Typed values passed between pipeline stages."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Box:
    """Axis-aligned box in pixel coordinates of the original frame (x2/y2 exclusive)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return max(0.0, self.x2 - self.x1)

    @property
    def height(self) -> float:
        return max(0.0, self.y2 - self.y1)

    @property
    def area(self) -> float:
        return self.width * self.height

    def iou(self, other: "Box") -> float:
        """Intersection over union with another box (0 when disjoint)."""
        ix = max(0.0, min(self.x2, other.x2) - max(self.x1, other.x1))
        iy = max(0.0, min(self.y2, other.y2) - max(self.y1, other.y1))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


@dataclass(frozen=True)
class Frame:
    """One RGB frame (H, W, 3 uint8, R,G,B order) with its capture time.

    ``lores``: the same view at about the detector's input size (RGB), when the camera
    delivers one (picamera2's lores stream); the detector and the motion gate use it,
    faces are cropped from ``image``.
    """

    image: np.ndarray
    timestamp: float
    index: int = 0
    lores: np.ndarray | None = None


@dataclass(frozen=True)
class Detection:
    """One detector hit: box in frame pixels, class index/label, score in [0, 1]."""

    box: Box
    score: float
    class_id: int
    label: str


@dataclass(frozen=True)
class Classification:
    """Classifier output for one crop: best label and every class probability."""

    label: str
    score: float
    probabilities: dict[str, float] = field(default_factory=dict)


class Verdict:
    """What a settled track means for the doorway (plain strings, stored as such)."""

    VIOLATION = "violation"
    COMPLIANT = "compliant"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Event:
    """One verdict worth recording: a track settled on a label, or re-alerted.

    ``alerted`` is False when a cooldown suppressed the buzzer/LED but the
    event is still logged and stored.
    """

    time: float
    track_id: int
    verdict: str
    label: str
    score: float
    box: Box
    alerted: bool
    source: str = "classifier"
    frame_index: int = 0
