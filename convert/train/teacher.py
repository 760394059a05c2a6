"""Teacher boxes: strong peer face detectors label what the annotators left out.

The mask data sets doorguard trains on were annotated for masks: faces in the
background, turned away or partly hidden are often not boxed, and a detector
trained on them learns that those faces are background. A teacher (YuNet n
640 for bare faces and UltraFace RFB-640-masked for masked ones, both from
../shared/models/peers, run by ``convert.verify.peers``) looks at every training
photo; its boxes are then used two ways by ``doorguard train detector``:

- on labelled photos, a teacher box that overlaps no labelled box is an
  *ignore region*: no objectness penalty there, neither positive nor negative;
- on photos without labels (VGGFace2 source photos, chandrikadeb7's photos),
  confident teacher boxes become the labels and the unsure ones ignore regions.

Results are cached in a JSON file (per image path, size and modification
time), so a second training run does not run the teachers again.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from edge.errors import DataError
from edge.infer.yolo import nms

log = logging.getLogger(__name__)

#: Teacher name -> (peer factory name, score threshold it runs at). Low thresholds: the
#: split into labels / ignore regions is made later by ``TeacherBoxes.split``.
TEACHERS = {"yunet": 0.5, "ultraface-masked": 0.5}
CACHE_VERSION = 1


@dataclass(frozen=True)
class TeacherBoxes:
    """One image's teacher boxes (N x 4 pixels of the full-size image) and scores (N)."""

    boxes: np.ndarray
    scores: np.ndarray

    def split(self, label_score: float) -> tuple[np.ndarray, np.ndarray]:
        """(boxes scoring at least ``label_score``, the others)."""
        keep = self.scores >= label_score
        return self.boxes[keep], self.boxes[~keep]


class Teacher:
    """The union of the teacher detectors, merged by NMS.

    Args:
        peers_dir: ../shared/models/peers.
        names: teachers to run (keys of ``TEACHERS``).
        nms_iou: boxes of different teachers overlapping more than this are one face.
    """

    def __init__(self, peers_dir: Path | str, names: Iterable[str] = tuple(TEACHERS), nms_iou: float = 0.4):
        from convert.verify.peers import UltraFace, YuNet

        peers_dir = Path(peers_dir)
        self.names = list(names)
        unknown = [n for n in self.names if n not in TEACHERS]
        if unknown:
            raise DataError(f"unknown teacher(s) {', '.join(unknown)}; choose from {', '.join(TEACHERS)}")
        self.detectors = []
        for n in self.names:
            if n == "yunet":
                self.detectors.append(YuNet(peers_dir, score_threshold=TEACHERS[n]))
            else:
                self.detectors.append(UltraFace(peers_dir, masked=True, score_threshold=TEACHERS[n]))
        self.nms_iou = nms_iou

    def __call__(self, rgb: np.ndarray) -> TeacherBoxes:
        """Teacher boxes of one RGB frame."""
        boxes, scores = [], []
        for det in self.detectors:
            for d in det.detect(rgb):
                boxes.append([d.box.x1, d.box.y1, d.box.x2, d.box.y2])
                scores.append(d.score)
        if not boxes:
            return TeacherBoxes(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
        b, s = np.asarray(boxes, np.float32), np.asarray(scores, np.float32)
        keep = nms(b, s, self.nms_iou)
        return TeacherBoxes(b[keep], s[keep])


class TeacherCache:
    """Teacher boxes per image file, computed once and kept in a JSON file.

    Args:
        path: the cache file (created when missing; rewritten by ``save``).
        teacher: built lazily on the first image that is not cached.
    """

    def __init__(self, path: Path | str, peers_dir: Path | str, names: Iterable[str] = tuple(TEACHERS)):
        self.path = Path(path)
        self.peers_dir = Path(peers_dir)
        self.names = list(names)
        self._teacher: Teacher | None = None
        self.entries: dict[str, dict] = {}
        self.dirty = False
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                if data.get("version") == CACHE_VERSION and data.get("teachers") == self.names:
                    self.entries = data.get("images", {})
            except (OSError, ValueError) as e:
                log.warning("teacher cache %s unreadable (%s): starting a new one", self.path, e)

    @staticmethod
    def _key(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{int(st.st_mtime)}"

    def get(self, path: Path, rgb: np.ndarray) -> TeacherBoxes:
        """Teacher boxes of ``rgb`` (the full-size image read from ``path``)."""
        key = self._key(path)
        e = self.entries.get(key)
        if e is None:
            if self._teacher is None:
                self._teacher = Teacher(self.peers_dir, self.names)
            tb = self._teacher(rgb)
            e = self.entries[key] = {"boxes": np.round(tb.boxes, 1).tolist(),
                                     "scores": np.round(tb.scores, 4).tolist()}
            self.dirty = True
        # Always the cached (rounded) values: a run that fills the cache trains on the same
        # boxes as every run that reads it (it used the unrounded ones, and trained otherwise).
        return TeacherBoxes(np.asarray(e["boxes"], np.float32).reshape(-1, 4),
                            np.asarray(e["scores"], np.float32).reshape(-1))

    def save(self) -> None:
        """Write the cache file when something was added."""
        if not self.dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "teachers": self.names, "images": self.entries}))
        tmp.replace(self.path)
        self.dirty = False


def unmatched(teacher: np.ndarray, truth: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Teacher boxes that overlap no true box by ``iou`` or more (faces the annotators left out)."""
    if len(teacher) == 0 or len(truth) == 0:
        return teacher
    from convert.verify.metrics import iou_matrix

    m = iou_matrix(teacher, truth)
    return teacher[m.max(axis=1) < iou]
