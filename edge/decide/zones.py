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
editor writes) or pixels (``units = "pixels"``). The settings and their geometry checks (at
least three points, inside 0..1 or the frame, not self-intersecting, an area), which
``doorguard check-config`` and the web page's save both run, are in edge/settings/zones.py.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

# The settings and their geometry checks live in edge/settings/zones.py; imported here under the old path.
from ..settings.zones import (MAX_PIXEL, MAX_POINTS, MAX_POLYGONS, MaskConfig, Polygon, PrivacyConfig, ZoneConfig,
                             check_frame, known_frame_size, polygon_problem, segments_cross)  # noqa: F401
from ..types import Box, Detection

log = logging.getLogger("doorguard.zones")


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
