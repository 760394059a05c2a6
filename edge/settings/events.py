"""The ``[events]`` section (the SQLite event store) and ``[events.snapshots]``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import _Section


class SnapshotConfig(_Section):
    """Optional JPEG snapshots of alerting frames. Faces are personal data: off by default."""

    enabled: bool = Field(False, description="Save a JPEG for each alert (a violation that sounded the alarm)")
    content: Literal["face", "frame"] = Field(
        "face", description="face: only the violating face, cut out with face_margin around it; frame: the "
        "whole frame (other faces pixelated with privacy.blur_other_faces; faces outside the zones always)")
    face_margin: float = Field(
        0.5, ge=0.0, le=2.0, description="content = \"face\": margin around the face box, as a share of its "
        "width and height on every side")
    max_count: int = Field(
        200, ge=1, le=1_000_000, description="Keep at most this many snapshots (oldest deleted first)")
    max_age_days: float = Field(7.0, gt=0.0, le=3650.0, description="Delete snapshots older than this")
    max_bytes: int = Field(
        100_000_000, ge=10_000, le=10**12, description="Keep snapshots under this many bytes in total")
    min_free_bytes: int = Field(
        100_000_000, ge=0, le=10**12,
        description="No snapshot is written while the disk has less than this free (after the write): "
        "events keep being recorded on a nearly full disk; 0 turns the floor off",
    )
    jpeg_quality: int = Field(85, ge=10, le=100, description="JPEG quality of snapshots")



class EventsConfig(_Section):
    """The SQLite event store."""

    enabled: bool = Field(True, description="Record events in SQLite under the state directory")
    state_dir: str | None = Field(
        None, description="State directory; absent: $STATE_DIRECTORY (systemd), else ./state"
    )
    database: str = Field("events.sqlite3", description="Database file name inside the state directory")
    keep_days: float = Field(
        90.0, gt=0.0, le=36500.0, description="Events older than this are deleted at start-up and hourly")
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig, description="Snapshot settings")
