"""The ``[tracking]`` section: IoU tracker and N-of-M voting."""

from __future__ import annotations

from pydantic import Field, model_validator

from .base import EveryFrames, _Section


class TrackingConfig(_Section):
    """IoU tracker and N-of-M voting."""

    # Near 1 no box of a moving face overlaps its last one enough: no track lives to N votes.
    iou_threshold: float = Field(0.3, ge=0.01, le=0.9, description="Minimum IoU to continue a track")
    max_missed: int = Field(8, ge=0, le=300, description="Frames a track survives without a matching box")
    # Small on purpose: N of M frames is a fraction of a second to a few seconds of video;
    # votes_needed = window = 1e9 passed before and no face ever settled (no alarm at all).
    votes_needed: int = Field(3, ge=1, le=50, description="N: a label needs N votes ...")
    window: int = Field(5, ge=1, le=50, description="... among the last M classifications to settle a verdict")
    reclassify_every: EveryFrames = Field(
        5, description="Settled tracks are classified every this many frames (new/unsettled: every frame)"
    )

    @model_validator(mode="after")
    def _n_le_m(self) -> "TrackingConfig":
        if self.votes_needed > self.window:
            raise ValueError(f"votes_needed ({self.votes_needed}) must be <= window ({self.window})")
        return self
