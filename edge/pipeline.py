"""Detector -> crop with margin -> classifier -> tracker, with per-stage latency.

Built once (interpreters, labels, tracker) and then called once per frame.
New and unsettled tracks are classified every frame; settled tracks only every
``tracking.reclassify_every`` frames, which is what keeps a doorway with a few
people in view cheap on a Pi.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import Config
from .models import Classifier, Detector
from .preprocess import crop_with_margin
from .tracking import Tracker, Track
from .types import Classification, Detection, Frame


class LatencyStats:
    """Per-stage latency samples (milliseconds) with percentiles.

    Each stage keeps the newest ``max_samples`` in a fixed float32 ring buffer
    (32 KiB per stage by default), so a service running for months uses the
    same memory on day 90 as on day 1; ``count`` is the total ever recorded.
    """

    def __init__(self, max_samples: int = 8192):
        self._max = max_samples
        self._buf: dict[str, np.ndarray] = {}
        self._n: dict[str, int] = {}

    def add(self, stage: str, ms: float) -> None:
        buf = self._buf.get(stage)
        if buf is None:
            buf = self._buf[stage] = np.zeros(self._max, np.float32)
            self._n[stage] = 0
        buf[self._n[stage] % self._max] = ms
        self._n[stage] += 1

    def stages(self) -> list[str]:
        return list(self._buf)

    def count(self, stage: str) -> int:
        return self._n.get(stage, 0)

    def _data(self, stage: str) -> np.ndarray:
        n = self._n.get(stage, 0)
        return self._buf[stage][: min(n, self._max)].astype(np.float64) if n else np.zeros(0)

    def percentiles(self, stage: str, ps=(50, 90, 99)) -> dict[int, float]:
        data = self._data(stage)
        if not data.size:
            return {}
        return {p: float(np.percentile(data, p)) for p in ps}

    def mean(self, stage: str) -> float:
        data = self._data(stage)
        return float(data.mean()) if data.size else 0.0

    def summary(self) -> list[str]:
        """One line per stage: n, mean, p50/p90/p99 in ms (over the newest samples)."""
        lines = []
        for s in self._buf:
            p = self.percentiles(s)
            lines.append(f"{s:<9} n={self.count(s):<6d} mean={self.mean(s):7.2f} ms  "
                         f"p50={p[50]:7.2f}  p90={p[90]:7.2f}  p99={p[99]:7.2f}")
        return lines


@dataclass
class FrameResult:
    """What the pipeline made of one frame."""

    frame: Frame
    detections: list[Detection]
    tracks: list[Track]
    sources: dict[int, str]
    classified: dict[int, Classification] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """The per-frame vision stages.

    Args:
        detector: built Detector.
        classifier: built Classifier, or None to run the detector alone.
        cfg: the whole config (models, tracking, rules.min_score).
        clock: perf counter (seconds), injectable.
    """

    def __init__(self, detector: Detector, classifier: Classifier | None, cfg: Config,
                 clock: Callable[[], float] = time.perf_counter):
        self.detector = detector
        self.classifier = classifier
        self.cfg = cfg
        t = cfg.tracking
        self.tracker = Tracker(t.iou_threshold, t.max_missed, t.votes_needed, t.window, t.reclassify_every)
        self.latency = LatencyStats()
        self.clock = clock
        # Case-insensitive: the yoloface-500k label file says "Face".
        self.classify_labels = {lab.casefold() for lab in cfg.models.classify_labels}
        self.min_score = cfg.rules.min_score
        self.min_px = cfg.models.min_face_px
        if classifier is not None:
            self.margin = cfg.models.crop_margin if cfg.models.crop_margin is not None else classifier.margin

    @classmethod
    def from_config(cls, cfg: Config, detector_interpreter: Any = None,
                    classifier_interpreter: Any = None) -> "Pipeline":
        """Build detector and classifier from the manifests the config names (once).

        Raises:
            ModelError: missing/corrupt model or manifest, hash mismatch, no interpreter.
        """
        backend = None if cfg.models.backend == "auto" else cfg.models.backend
        det = Detector(cfg.resolve(cfg.models.detector), cfg.models.num_threads,
                       cfg.models.score_threshold, cfg.models.nms_iou,
                       interpreter=detector_interpreter, backend=backend)
        clf = None
        if cfg.models.classifier:
            clf = Classifier(cfg.resolve(cfg.models.classifier), cfg.models.num_threads,
                             interpreter=classifier_interpreter, backend=backend)
        return cls(det, clf, cfg)

    def model_hashes(self) -> dict[str, str]:
        out = {"detector": self.detector.manifest.sha256}
        if self.classifier is not None:
            out["classifier"] = self.classifier.manifest.sha256
        return out

    def model_paths(self) -> dict[str, Path]:
        out = {"detector": self.cfg.resolve(self.cfg.models.detector)}
        if self.cfg.models.classifier:
            out["classifier"] = self.cfg.resolve(self.cfg.models.classifier)
        return out

    def source_of(self, detector_label: str) -> str:
        """Classifier-judged (face) or detector-judged (facetouch, person ...) track."""
        return "classifier" if detector_label.casefold() in self.classify_labels else "detector"

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on one frame and update the tracks' votes."""
        clock = self.clock
        t0 = clock()
        # The detector's three named stages, timed apart: on a Pi the resize and
        # the decode are not free next to the int8 inference.
        tensor, transform = self.detector.preprocess(frame.image)
        ta = clock()
        heads = self.detector.infer(tensor)
        tb = clock()
        dets = [d for d in self.detector.postprocess(heads, transform)
                if d.box.width >= self.min_px and d.box.height >= self.min_px]
        t1 = clock()
        tracks = self.tracker.update(dets, frame.index)
        t2 = clock()
        sources = {t.id: self.source_of(t.detector_label) for t in tracks}
        classified: dict[int, Classification] = {}
        classify_ms = 0.0
        for tr in tracks:
            if not self.tracker.needs_vote(tr, frame.index):
                continue
            if sources[tr.id] == "detector":
                label = tr.detector_label if tr.detector_score >= self.min_score else None
                self.tracker.vote(tr, label, tr.detector_score, frame.index)
                continue
            if self.classifier is None:
                continue
            try:
                crop = crop_with_margin(frame.image, tr.box, self.margin)
            except ValueError:
                continue
            c0 = clock()
            c = self.classifier.classify(crop)
            ms = (clock() - c0) * 1000.0
            classify_ms += ms
            self.latency.add("classify", ms)
            classified[tr.id] = c
            self.tracker.vote(tr, c.label if c.score >= self.min_score else None, c.score, frame.index)
        t3 = clock()
        timings = {"detect": (t1 - t0) * 1000.0, "det_pre": (ta - t0) * 1000.0, "det_infer": (tb - ta) * 1000.0,
                   "det_post": (t1 - tb) * 1000.0,
                   "track": (t2 - t1) * 1000.0 + (t3 - t2) * 1000.0 - classify_ms,
                   "classify": classify_ms, "pipeline": (t3 - t0) * 1000.0}
        for stage in ("det_pre", "det_infer", "det_post", "detect", "track", "pipeline"):
            self.latency.add(stage, timings[stage])
        return FrameResult(frame, dets, tracks, sources, classified, timings)
