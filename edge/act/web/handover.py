"""The frame loop's side of the page: it hands over its newest frame and overlays, nothing more.

The loop never waits for the page and never encodes for it: :meth:`LiveFrame.put` stores
references, and the viewer's request thread draws and encodes (edge/act/web/render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


class LiveFrame:
    """Newest frame and overlays, handed from the frame loop to the web page.

    :meth:`put` stores references only (one attribute assignment, atomic under
    the GIL): no copy and no encode per frame. The array must not be written to
    by the loop after it is put (the web thread may be reading it); sources that
    return a new array per frame satisfy this.
    """

    def __init__(self) -> None:
        self._item: tuple[np.ndarray, Sequence[Any]] | None = None

    def put(self, image: np.ndarray, overlays: Sequence[Any] = ()) -> None:
        """Publish the newest RGB frame (H, W, 3 uint8) and its overlays (see :func:`overlay_fields`)."""
        self._item = (image, overlays)

    def get(self) -> tuple[np.ndarray, Sequence[Any]] | None:
        """The newest ``(image, overlays)``, or None before the first frame."""
        return self._item


@dataclass(frozen=True)
class Overlay:
    """One box to draw on the live view."""

    box: tuple[float, float, float, float]
    label: str = ""
    score: float | None = None
    verdict: str | None = None
    track_id: int | None = None


def overlay_fields(o: Any) -> Overlay:
    """Read one overlay item: an :class:`Overlay`, a dict, or any object with ``box``.

    ``box`` may be an ``edge.types.Box`` or ``[x1, y1, x2, y2]`` in frame pixels;
    optional ``label``, ``score``, ``verdict`` and ``track_id`` (or ``id``), so a
    ``Detection`` or a tracker's track can be passed as is.
    """
    if isinstance(o, Overlay):
        return o
    get = o.get if isinstance(o, dict) else (lambda k, d=None: getattr(o, k, d))
    box = get("box")
    if box is None:
        raise ValueError("overlay without a box")
    coords = box.as_list() if hasattr(box, "as_list") else list(box)
    tid = get("track_id")
    if tid is None:
        tid = get("id")
    score = get("score")
    return Overlay(
        box=tuple(float(c) for c in coords[:4]),  # type: ignore[arg-type]
        label=str(get("label") or ""),
        score=None if score is None else float(score),
        verdict=get("verdict"),
        track_id=None if tid is None else int(tid),
    )


def overlays_from_tracks(tracks: Sequence[Any], verdicts: dict[int, str] | None = None) -> list[Overlay]:
    """Immutable overlays of the tracker's visible tracks, for :meth:`LiveFrame.put`.

    Tracks are updated in place by the next frame, so the loop hands over this
    snapshot (a few small objects per frame, no pixel copy) rather than the tracks.

    Args:
        tracks: ``edge.track.tracking.Track`` objects (``id``, ``box``, ``label``, ``score``,
            ``detector_label``, ``votes``, ``window``, ``missed``).
        verdicts: track id -> verdict of its settled label.
    """
    verdicts = verdicts or {}
    out = []
    for t in tracks:
        if getattr(t, "missed", 0):
            continue
        if t.label:
            label, score = t.label, t.score
        else:
            label = f"{getattr(t, 'detector_label', '')} voting {len(getattr(t, 'votes', ()))}/{getattr(t, 'window', '?')}"
            score = None
        out.append(Overlay(tuple(t.box.as_list()), label.strip(), score, verdicts.get(t.id), t.id))
    return out
