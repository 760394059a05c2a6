"""The ``[[zones]]`` tables and the ``[privacy]`` section: polygons in frame coordinates.

The geometry checks (at least three points, inside 0..1 or the frame, not self-intersecting,
an area) are here because validation runs them; ``doorguard check-config`` and the web page's
save both do. What the polygons do to frames at run time is edge/decide/zones.py.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from .base import Overlap, _Section

#: Most points one polygon may have (the web editor's clicks; a check-config bound too).
MAX_POINTS = 64
#: Most zones, and most masks (each costs a point test or a fill per frame).
MAX_POLYGONS = 32
#: Largest pixel coordinate accepted (the largest capture size a source accepts is 4096).
MAX_PIXEL = 8192.0


def segments_cross(a, b, c, d) -> bool:
    """Whether segment a-b and segment c-d share a point (touching counts)."""
    def orient(p, q, r) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    def on(p, q, r) -> bool:  # r on segment p-q, given the three are collinear
        return min(p[0], q[0]) <= r[0] <= max(p[0], q[0]) and min(p[1], q[1]) <= r[1] <= max(p[1], q[1])

    d1, d2, d3, d4 = orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True
    return ((d1 == 0 and on(c, d, a)) or (d2 == 0 and on(c, d, b)) or (d3 == 0 and on(a, b, c))
            or (d4 == 0 and on(a, b, d)))


def polygon_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why a closed polygon is unusable (fewer than 3 points, self-intersecting, no area), or None."""
    import cv2

    if len(points) < 3:
        return f"a polygon needs at least 3 points, not {len(points)}"
    pts = [tuple(map(float, p)) for p in points]
    n = len(pts)
    for i in range(n):
        if pts[i] == pts[(i + 1) % n]:
            return f"points {i} and {(i + 1) % n} are the same point"
    # Edges i and j cross: only edges that share no corner can (neighbours share one).
    for i in range(n):
        a, b = pts[i], pts[(i + 1) % n]
        for j in range(i + 2, n):
            if i == 0 and j == n - 1:
                continue
            if segments_cross(a, b, pts[j], pts[(j + 1) % n]):
                return (f"self-intersecting: edge {i}-{(i + 1) % n} crosses edge {j}-{(j + 1) % n} "
                        "(list the corners in order around the area)")
    if cv2.contourArea(np.asarray(pts, np.float32)) <= 0.0:
        return "the polygon has no area (all points on one line)"
    return None


class Polygon(_Section):
    """A closed polygon in frame coordinates (a zone or a privacy mask)."""

    name: str = Field("", max_length=64, description="A name for the page and the log (optional)")
    units: Literal["relative", "pixels"] = Field(
        "relative", description="relative: x, y in 0..1 of the frame's width and height (what the web page "
        "writes); pixels: frame pixels (checked against [source] width/height for cameras)")
    points: list[tuple[float, float]] = Field(
        ..., min_length=3, max_length=MAX_POINTS,
        description="Corners [[x, y], ...] in order around the area (at least 3; the last joins the first)")

    @field_validator("points")
    @classmethod
    def _geometry(cls, points: list[tuple[float, float]], info: ValidationInfo) -> list[tuple[float, float]]:
        relative = info.data.get("units", "relative") == "relative"
        top = 1.0 if relative else MAX_PIXEL
        for i, (x, y) in enumerate(points):
            if not (0.0 <= x <= top and 0.0 <= y <= top):
                where = "0..1 (units = \"relative\")" if relative else f"0..{MAX_PIXEL:g} pixels"
                raise ValueError(f"point {i} ({x:g}, {y:g}) is outside {where}")
        problem = polygon_problem(points)
        if problem:
            raise ValueError(problem)
        return points

    def pixels(self, width: int, height: int) -> np.ndarray:
        """The corners in frame pixels, float32 (N, 2)."""
        pts = np.asarray(self.points, np.float32)
        if self.units == "relative":
            pts = pts * np.array([width, height], np.float32)
        return pts

    def outside_frame(self, width: int, height: int) -> list[int]:
        """Indices of pixel corners outside a width x height frame (relative: never)."""
        if self.units == "relative":
            return []
        return [i for i, (x, y) in enumerate(self.points) if x > width or y > height]


class ZoneConfig(Polygon):
    """One ``[[zones]]`` entry: an area where faces count."""

    inside: Literal["center", "overlap"] = Field(
        "center", description="center: a face counts when its box centre is in the zone; overlap: when at "
        "least min_overlap of its box area is")
    min_overlap: Overlap = Field(
        0.5, description="inside = \"overlap\": share of the face box that must be in the zone")
    min_face_px: int | None = Field(
        None, ge=1, le=4096, description="Faces in this zone narrower or shorter than this are ignored; absent: "
        "models.min_face_px")


class MaskConfig(Polygon):
    """One ``[[privacy.masks]]`` entry: an area blacked out before anything sees the frame."""


class PrivacyConfig(_Section):
    """The ``[privacy]`` section: privacy masks and blurring of faces that are not the alerting one."""

    masks: list[MaskConfig] = Field(
        default_factory=list, max_length=MAX_POLYGONS,
        description="Polygons blacked out on every frame before the detector, snapshots, the live view and "
        "the annotated video see it ([[privacy.masks]] tables)")
    blur_other_faces: bool = Field(
        False, description="Pixelate every face but the alerting one in snapshots and the live view (faces "
        "outside every zone are pixelated whatever this says)")
    blur_cells: int = Field(
        8, ge=2, le=64, description="A pixelated face is shown as this many blocks across (fewer: less detail)")


def check_frame(zones: Sequence[Polygon], masks: Sequence[Polygon], width: int, height: int) -> list[str]:
    """Pixel corners outside a frame of known size, one line per polygon with its key path.

    Args:
        zones: ``cfg.zones``; masks: ``cfg.privacy.masks``.
        width, height: the frame size.
    """
    out = []
    for key, polys in (("zones", zones), ("privacy.masks", masks)):
        for n, p in enumerate(polys):
            bad = p.outside_frame(width, height)
            if bad:
                x, y = p.points[bad[0]]
                out.append(f"{key}.{n}.points: point {bad[0]} ({x:g}, {y:g}) is outside the {width}x{height} "
                           f"frame{f' (+{len(bad) - 1} more)' if len(bad) > 1 else ''}")
    return out


def known_frame_size(source) -> tuple[int, int] | None:
    """The frame size check-config can know from ``[source]``: a camera's requested size, else None.

    Files, folders and the demo have the size of what they read; a camera delivers what
    ``width`` x ``height`` asks for.
    """
    s = source.spec.strip()
    camera = s in ("auto", "picamera", "picamera2", "picam") or s.isdigit() or s.startswith("/dev/video") \
        or "://" in s
    return (source.width, source.height) if camera else None
