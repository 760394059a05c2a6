"""Zones and privacy masks: which part of the frame doorguard may look at, and what it may keep.

A camera by a door also sees the pavement, a neighbour's window, the street. Two kinds of
polygon limit what doorguard does with that:

* **privacy masks** (``[[privacy.masks]]``) are blacked out on every frame before anything
  else sees it: the detector, the classifier crops, snapshots, the live view and the
  annotated video (:class:`MaskPainter`, ``cv2.fillPoly``);
* **zones** (``[[zones]]``) are where a face counts: a face whose box (its centre, or a
  share of its area) is in no zone is never classified, tracked, stored or published, and is
  pixelated wherever a picture is shown or kept (:class:`ZoneFilter`). No zone configured:
  the whole frame is one zone (doorguard's behaviour before zones).

``privacy.blur_other_faces`` also pixelates every face that is not the alerting one in
snapshots and the live view (:func:`pixelate`).

Coordinates are relative (0..1 of the frame's width and height, what the web page's zone
editor writes) or pixels (``units = "pixels"``). The geometry checks here (at least three
points, inside 0..1 or the frame, not self-intersecting, an area) are the ones
``doorguard check-config`` and the web page's save both run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from .types import Box, Detection

log = logging.getLogger("doorguard.zones")

#: Most points one polygon may have (the web editor's clicks; a check-config bound too).
MAX_POINTS = 64
#: Most zones, and most masks (each costs a point test or a fill per frame).
MAX_POLYGONS = 32
#: Largest pixel coordinate accepted (the largest capture size a source accepts is 4096).
MAX_PIXEL = 8192.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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


class Polygon(_Model):
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
    min_overlap: float = Field(
        0.5, gt=0.0, le=1.0, description="inside = \"overlap\": share of the face box that must be in the zone")
    min_face_px: int | None = Field(
        None, ge=1, le=4096, description="Faces in this zone narrower or shorter than this are ignored; absent: "
        "models.min_face_px")


class MaskConfig(Polygon):
    """One ``[[privacy.masks]]`` entry: an area blacked out before anything sees the frame."""


class PrivacyConfig(_Model):
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


# ---- run time ----------------------------------------------------------------------------------------

class _PerSize:
    """Pixel contours (and raster masks) of polygons, built once per frame size."""

    def __init__(self, polygons: Sequence[Polygon], what: str):
        self.polygons = list(polygons)
        self.what = what
        self._cache: dict[tuple[int, int], list[np.ndarray]] = {}
        self._rasters: dict[tuple[int, int, int], np.ndarray] = {}

    def contours(self, width: int, height: int) -> list[np.ndarray]:
        got = self._cache.get((width, height))
        if got is None:
            got = [p.pixels(width, height).reshape(-1, 1, 2) for p in self.polygons]
            for n, p in enumerate(self.polygons):
                if p.outside_frame(width, height):
                    log.warning("%s %d (%s) has pixel corners outside the %dx%d frame: only its part inside "
                                "counts", self.what, n, p.name or "unnamed", width, height)
            if len(self._cache) > 16:  # an image folder of many sizes
                self._cache.clear()
                self._rasters.clear()
            self._cache[(width, height)] = got
        return got

    def raster(self, i: int, width: int, height: int) -> np.ndarray:
        """Polygon ``i`` filled (1) on a height x width uint8 mask."""
        import cv2

        key = (i, width, height)
        got = self._rasters.get(key)
        if got is None:
            got = np.zeros((height, width), np.uint8)
            cv2.fillPoly(got, [np.round(self.contours(width, height)[i]).astype(np.int32)], 1)
            self._rasters[key] = got
        return got


class MaskPainter:
    """Blacks out the privacy masks on a frame (a new array; the source's is left alone)."""

    def __init__(self, masks: Sequence[MaskConfig]):
        self._polys = _PerSize(masks, "privacy mask")

    def __bool__(self) -> bool:
        return bool(self._polys.polygons)

    def apply(self, image: np.ndarray, frame_size: tuple[int, int] | None = None) -> np.ndarray:
        """``image`` with every mask filled black; the same array when there are no masks.

        ``frame_size``: (width, height) of the frame the corners refer to when ``image`` is a
        scaled view of it (the camera's lores stream): the polygons are scaled to ``image``.
        """
        if not self._polys.polygons:
            return image
        import cv2

        h, w = image.shape[:2]
        fw, fh = frame_size or (w, h)
        contours = self._polys.contours(fw, fh)
        if (fw, fh) != (w, h):
            contours = [c * np.array([w / fw, h / fh]) for c in contours]
        out = image.copy()
        cv2.fillPoly(out, [np.round(c).astype(np.int32) for c in contours], (0, 0, 0))
        return out


class ZoneFilter:
    """Splits detections into those that count (in a zone, big enough) and the rest.

    Args:
        zones: the ``[[zones]]`` entries; empty: the whole frame counts.
    """

    def __init__(self, zones: Sequence[ZoneConfig]):
        self.zones = list(zones)
        self._polys = _PerSize(self.zones, "zone")

    def __bool__(self) -> bool:
        return bool(self.zones)

    @staticmethod
    def _big(box: Box, px: float) -> bool:
        return box.width >= px and box.height >= px

    def zone_of(self, box: Box, width: int, height: int) -> int | None:
        """Index of the first zone the box counts in (None: in none). No zones: 0 (the frame)."""
        import cv2

        if not self.zones:
            return 0
        contours = self._polys.contours(width, height)
        cx, cy = (box.x1 + box.x2) / 2.0, (box.y1 + box.y2) / 2.0
        for i, z in enumerate(self.zones):
            if z.inside == "center":
                if cv2.pointPolygonTest(contours[i], (float(cx), float(cy)), False) >= 0:
                    return i
                continue
            x1, y1 = max(0, int(np.floor(box.x1))), max(0, int(np.floor(box.y1)))
            x2, y2 = min(width, int(np.ceil(box.x2))), min(height, int(np.ceil(box.y2)))
            if x2 <= x1 or y2 <= y1:
                continue
            share = float(self._polys.raster(i, width, height)[y1:y2, x1:x2].mean())
            if share >= z.min_overlap:
                return i
        return None

    def split(self, detections: Iterable[Detection], width: int, height: int, min_face_px: float
              ) -> tuple[list[Detection], list[Detection]]:
        """``(kept, outside)``: detections that count, and those in no zone (too-small faces are in neither).

        Args:
            detections: the detector's boxes in a width x height frame.
            min_face_px: ``models.min_face_px``, for the whole frame and zones without their own.

        A face in a zone is kept when it is at least that zone's ``min_face_px`` (else the
        global one) wide and high.
        """
        kept, outside = [], []
        for d in detections:
            if not self.zones:
                if self._big(d.box, min_face_px):
                    kept.append(d)
                continue
            i = self.zone_of(d.box, width, height)
            if i is None:
                outside.append(d)
            elif self._big(d.box, min_face_px if self.zones[i].min_face_px is None else self.zones[i].min_face_px):
                kept.append(d)
        return kept, outside


def pixelate(image: np.ndarray, boxes: Iterable[Box], cells: int = 8, margin: float = 0.15) -> np.ndarray:
    """A copy of ``image`` with each box (grown by ``margin``) pixelated to ``cells`` blocks across.

    Pixelation to a handful of blocks keeps no face detail a deblurring could bring back (a
    Gaussian blur of a small kernel can be partly undone). Returns ``image`` itself when
    there are no boxes.
    """
    import cv2

    boxes = list(boxes)
    if not boxes:
        return image
    out = image.copy()
    h, w = out.shape[:2]
    for b in boxes:
        mx, my = b.width * margin, b.height * margin
        x1, y1 = max(0, int(b.x1 - mx)), max(0, int(b.y1 - my))
        x2, y2 = min(w, int(np.ceil(b.x2 + mx))), min(h, int(np.ceil(b.y2 + my)))
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        cw = max(1, min(cells, x2 - x1))
        ch = max(1, min(cells, round(cells * (y2 - y1) / (x2 - x1)) or 1, y2 - y1))
        small = cv2.resize(region, (cw, ch), interpolation=cv2.INTER_AREA)
        out[y1:y2, x1:x2] = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    return out


@dataclass
class Privacy:
    """What a picture leaving the loop (live view, annotated video, snapshot) may show.

    Args:
        cfg: the ``[privacy]`` section.
        zones_on: zones are configured (faces outside them are always pixelated).
    """

    cfg: PrivacyConfig
    zones_on: bool

    @property
    def active(self) -> bool:
        return self.zones_on or self.cfg.blur_other_faces

    def _hidden(self, result, keep: set[int]) -> list[Box]:
        boxes = [d.box for d in getattr(result, "outside", ())] if self.zones_on else []
        if self.cfg.blur_other_faces:
            boxes += [t.box for t in result.tracks if t.id not in keep and not t.missed]
        return boxes

    def shown(self, result, verdicts: dict[int, str]) -> np.ndarray:
        """The frame for the live view and the annotated video: faces outside the zones pixelated,
        and with ``blur_other_faces`` every face but those in violation."""
        image = result.frame.image
        if not self.active:
            return image
        alerting = {tid for tid, v in verdicts.items() if v == "violation"}
        return pixelate(image, self._hidden(result, alerting), self.cfg.blur_cells)

    def for_snapshot(self, result, track_id: int) -> np.ndarray:
        """The frame a snapshot of ``track_id``'s violation is cut from: every other face hidden
        as :meth:`shown` hides it (``blur_other_faces``: every face but this track's)."""
        image = result.frame.image
        if not self.active:
            return image
        return pixelate(image, self._hidden(result, {track_id}), self.cfg.blur_cells)

    def describe(self, zones: Sequence[ZoneConfig]) -> str:
        """One line for the status page and the log."""
        z = f"{len(zones)} zone(s)" if zones else "no zones (whole frame)"
        m = len(self.cfg.masks)
        return (f"{z}, {m} privacy mask(s), other faces "
                f"{'pixelated' if self.cfg.blur_other_faces else 'shown'}")
