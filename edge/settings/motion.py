"""The ``[motion]`` section: the motion gate in front of the detector."""

from __future__ import annotations

from pydantic import Field

from .base import _Section


class MotionConfig(_Section):
    """Motion gate (edge/capture/motion.py): the detector runs only on frames with motion, or while a track lives."""

    enabled: bool = Field(
        True, description="Skip the detector on frames without motion while no track is alive (video "
        "sources; photos judged one by one always run it)")
    width: int = Field(160, ge=32, le=640, description="Width of the small greyscale frame compared (pixels)")
    threshold: float = Field(
        18.0, ge=2.0, le=128.0, description="A pixel has changed when it differs from the background by more "
        "than this many grey levels (0-255)")
    min_changed: float = Field(
        0.002, ge=0.0001, le=0.5, description="A frame has motion when at least this share of its small-frame "
        "pixels changed")
    learning_rate: float = Field(
        0.05, ge=0.001, le=0.5, description="How fast the background follows the scene (share of each frame "
        "blended in)")
    recheck_s: float = Field(
        5.0, ge=0.1, le=3600.0, description="The detector runs at least this often even without motion "
        "(seconds)")
