"""Motion gate: the face detector runs only when something moves (issue 21).

A doorway is empty most of the day. On every frame the gate shrinks the image
to a small greyscale picture (``[motion] width`` pixels wide, blurred against
sensor noise) and compares it with a running-average background
(``cv2.accumulateWeighted``): when at least ``min_changed`` of its pixels
differ by more than ``threshold`` grey levels, the frame has motion and the
detector runs on **that same frame** (the first frame with motion is never
dropped). The pipeline skips the gate while any track is alive (a person
standing still in the doorway keeps being watched), and the gate lets a frame
through at least every ``recheck_s`` seconds (default 5: someone who arrived while the
background absorbed them, a missed start), and always on the first frame.

Cost: one ``cv2.resize`` (INTER_AREA), a colour conversion, a 5x5 blur and a
difference on e.g. 160x120 pixels, against the detector's letterbox and int8
inference; measured per idle frame on the emulated Pi 4/5 by ``make bench-arm``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..settings.motion import MotionConfig


@dataclass
class MotionStats:
    """What the gate did since the start: frames let through and frames skipped."""

    frames: int = 0
    moving: int = 0
    rechecks: int = 0
    skipped: int = 0


class MotionGate:
    """Frame differencing against a running-average background on a small greyscale frame."""

    def __init__(self, cfg: MotionConfig):
        self.cfg = cfg
        self._bg: np.ndarray | None = None
        self._last_run: float | None = None
        self.stats = MotionStats()
        self.last_changed = 0.0

    def small(self, image: np.ndarray) -> np.ndarray:
        """The gate's picture of a frame: ``width`` pixels wide, greyscale, blurred, float32."""
        h, w = image.shape[:2]
        width = min(self.cfg.width, w)
        height = max(1, round(h * width / w))
        img = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA) if width != w else image
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(img, (5, 5), 0).astype(np.float32)

    def changed_share(self, image: np.ndarray) -> float:
        """Share of the gate's pixels that differ from the background (then learns the frame).

        The first frame (or one of another size) becomes the background: share 1.0.
        """
        g = self.small(image)
        if self._bg is None or self._bg.shape != g.shape:
            self._bg = g
            return 1.0
        diff = cv2.absdiff(g, self._bg)
        share = float(np.count_nonzero(diff > self.cfg.threshold)) / diff.size
        cv2.accumulateWeighted(g, self._bg, self.cfg.learning_rate)
        return share

    def should_run(self, image: np.ndarray, now: float) -> bool:
        """Whether the detector runs on this frame (``now``: the frame's time, seconds)."""
        self.stats.frames += 1
        self.last_changed = self.changed_share(image)
        run = self.last_changed >= self.cfg.min_changed
        if run:
            self.stats.moving += 1
        elif self._last_run is None or now - self._last_run >= self.cfg.recheck_s or now < self._last_run:
            run = True
            self.stats.rechecks += 1
        if run:
            self._last_run = now
        else:
            self.stats.skipped += 1
        return run

    def tracking(self, image: np.ndarray, now: float) -> None:
        """A frame the detector ran on regardless (a track is alive): the background keeps learning."""
        self.changed_share(image)
        self._last_run = now
