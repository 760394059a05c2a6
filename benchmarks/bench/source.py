"""The frames ``doorguard bench`` plays: facemask853 val as a folder stream, read once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DataError


def facemask_val_folder(shared: Path, dest: Path, limit: int | None) -> Path:
    """A folder of links to facemask853 val images, named so that sorting keeps val.txt order."""
    data = shared / "data" / "facemask853"
    stems = (data / "val.txt").read_text().split()
    if limit:
        stems = stems[:limit]
    dest.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        src = next((data / "images").glob(f"{stem}.*"), None)
        if src is None:
            raise DataError(f"facemask853 val image {stem} missing under {data / 'images'}")
        os.symlink(src, dest / f"{i:04d}_{src.name}")
    return dest


def read_frames(spec: str, cfg: Any, limit: int) -> list[np.ndarray]:
    """The first ``limit`` RGB frames of a source, through the runner's own FrameSource."""
    from edge.capture.sources import UnreadableFrame, make_source

    src = make_source(spec, cfg.source)
    src.open()
    frames: list[np.ndarray] = []
    try:
        while len(frames) < limit:
            try:
                f = src.read()
            except UnreadableFrame:
                continue
            if f is None:
                break
            frames.append(f)
    finally:
        src.close()
    if not frames:
        raise DataError(f"source {spec} gave no frames")
    return frames
