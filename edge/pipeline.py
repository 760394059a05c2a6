"""Face detector -> tracker -> per face: classifiers and the hand stage, with per-stage latency.

Built once (interpreters, labels, tracker) and then called once per frame.
Each stage that judges a face votes in its own channel of the face's track
(``edge.track.tracking.Votes``): the main classifier (or the detector label), extra
classifiers, and the face-touch check (a hand detector on a region around the
face). New and unsettled channels vote every frame; settled ones only every
``tracking.reclassify_every`` frames (face-touch: ``facetouch.every_settled``),
which is what keeps a doorway with a few people in view cheap on a Pi.

:class:`FaceJudge` is the only code that decides what a stage's output means
for one face in one frame; ``doorguard eval`` (``convert.verify.evaluate.Pipeline``)
calls the same object, so its figures are the device's decisions.
"""

from __future__ import annotations

import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .config import Config
from .decide.facetouch import SOURCE as HAND_SOURCE
from .decide.facetouch import region_around, touch_score
from .infer.models import Classifier, Detector
from .infer.preprocess import crop_with_margin
from .decide.rules import Rules
from .decide.zones import MaskPainter, ZoneFilter
from .settings.facetouch import FACETOUCH, NO_FACETOUCH, FaceTouchConfig
from .track.tracking import MAIN, Tracker, Track
from .types import Box, Classification, Detection, Frame, Verdict

#: The track channel of the face-touch check.
FACETOUCH_CHANNEL = FACETOUCH


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


@dataclass(frozen=True)
class FaceVote:
    """What one stage makes of one face in one frame: a vote for one of the track's channels.

    Attributes:
        channel: the track's verdict channel (``MAIN``, an extra classifier's name, ``facetouch``).
        source: "classifier", "detector" or "hands": which rules judge the label.
        label: the vote; None is an uncertain vote (score below ``rules.min_score``).
        score: the classifier's probability, the detector's score, or the hand/face overlap.
        classification: the classifier's full output (classifier votes).
        hands: the hand boxes (frame pixels) the hand stage found near the face (face-touch votes).
    """

    channel: str
    source: str
    label: str | None
    score: float
    classification: Classification | None = None
    hands: tuple[Box, ...] = ()


@dataclass(frozen=True)
class FaceJudgement:
    """One face in one frame, judged by every stage without a tracker (``doorguard eval``)."""

    detection: Detection
    votes: dict[str, FaceVote]
    verdicts: dict[str, str]

    @property
    def main(self) -> FaceVote | None:
        return self.votes.get(MAIN)


@dataclass(frozen=True)
class ClassifierStage:
    """One classifier run on each face crop; its votes go to the track channel ``name``."""

    name: str
    classifier: Any
    margin: float
    timer: str


class HandStage:
    """The hand detector, run on a square region centred on a face (``edge.decide.facetouch``).

    Args:
        detector: anything with ``detect(rgb) -> list[Detection]`` (``edge.infer.ssd.SsdDetector``).
        cfg: the [facetouch] section.
    """

    def __init__(self, detector: Any, cfg: FaceTouchConfig):
        self.detector = detector
        self.cfg = cfg

    def hands_near(self, image: np.ndarray, face: Box) -> list[Box]:
        """Hand boxes (frame pixels) found in the region around one face."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = region_around(face, self.cfg.region_scale, w, h)
        return [Box(d.box.x1 + x1, d.box.y1 + y1, d.box.x2 + x1, d.box.y2 + y1)
                for d in self.detector.detect(image[y1:y2, x1:x2])]


class FaceJudge:
    """The one place that decides, for a face in a single frame, what each stage votes and
    what that vote means. The device loop feeds these votes to the tracker (a verdict then
    needs N of M); ``doorguard eval`` reads them per frame. Nothing else decides.

    Args:
        classifiers: the classifier stages, the first one voting in the ``MAIN`` channel.
        rules: maps a label and its source to a verdict (``Rules.verdict_of``).
        classify_labels: detector labels whose boxes the classifiers judge (case-insensitive;
            the yoloface-500k label file says "Face"); boxes with other labels are judged by
            their detector label (``rules.alert_on_detector``).
        min_score: votes below this score are uncertain (``rules.min_score``).
        min_face_px: boxes narrower or shorter than this are ignored.
        hands: the hand stage, or None (no face-touch check).
        clock: perf counter (seconds) that times each model call (``vote``'s ``timer``).
    """

    def __init__(self, classifiers: Sequence[ClassifierStage], rules: Rules, classify_labels: Iterable[str],
                 min_score: float, min_face_px: float, hands: HandStage | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.classifiers = list(classifiers)
        self.rules = rules
        self.classify_labels = {lab.casefold() for lab in classify_labels}
        self.min_score = min_score
        self.min_face_px = min_face_px
        self.hands = hands

    def keep(self, d: Detection) -> bool:
        """Whether a detection is big enough to be judged at all."""
        return d.box.width >= self.min_face_px and d.box.height >= self.min_face_px

    def source_of(self, detector_label: str) -> str:
        """Classifier-judged (face) or detector-judged (facetouch, person ...) box.

        A box is classifier-judged only when a classifier runs: without one, its detector
        label is the finding (``doorguard eval --no-classifier`` and a detector-only run agree).
        """
        if self.classifiers and detector_label.casefold() in self.classify_labels:
            return "classifier"
        return "detector"

    def channels(self, detector_label: str) -> list[str]:
        """The channels a face with this detector label votes in."""
        out = [MAIN]
        if self.source_of(detector_label) == "classifier":
            out += [s.name for s in self.classifiers[1:]]
        if self.hands is not None and detector_label.casefold() in self.classify_labels:
            out.append(FACETOUCH_CHANNEL)  # faces only: a hand on a "person" box means nothing
        return out

    def _certain(self, label: str, score: float) -> str | None:
        return label if score >= self.min_score else None

    def detector_vote(self, label: str, score: float) -> FaceVote:
        return FaceVote(MAIN, "detector", self._certain(label, score), float(score))

    def classifier_vote(self, stage: ClassifierStage, image: np.ndarray, box: Box) -> FaceVote | None:
        """The stage's vote on a face crop; None when the crop is empty (no vote at all)."""
        try:
            crop = crop_with_margin(image, box, stage.margin)
        except ValueError:
            return None
        c = stage.classifier.classify(crop)
        return FaceVote(stage.name, "classifier", self._certain(c.label, c.score), c.score, c)

    def touch_vote(self, face: Box, hands: list[Box]) -> FaceVote:
        """``facetouch`` when a hand overlaps the face enough, else ``no_facetouch``."""
        cfg = self.hands.cfg
        s = touch_score(face, hands, cfg)
        return FaceVote(FACETOUCH_CHANNEL, HAND_SOURCE, FACETOUCH if s >= cfg.min_overlap else NO_FACETOUCH, s,
                        hands=tuple(hands))

    def vote(self, channel: str, image: np.ndarray, d_box: Box, d_label: str, d_score: float,
             timer: Callable[[str, float], None] | None = None) -> FaceVote | None:
        """One channel's vote for one face (``timer(stage, ms)`` gets each model call's time)."""
        clock = self.clock
        if channel == FACETOUCH_CHANNEL:
            t0 = clock()
            hands = self.hands.hands_near(image, d_box)
            if timer:
                timer("hands", (clock() - t0) * 1000.0)
            return self.touch_vote(d_box, hands)
        if channel == MAIN and self.source_of(d_label) == "detector":
            return self.detector_vote(d_label, d_score)
        stage = next(s for s in self.classifiers if s.name == channel)
        t0 = clock()
        v = self.classifier_vote(stage, image, d_box)
        if timer:
            timer(stage.timer, (clock() - t0) * 1000.0)
        return v

    def verdict(self, vote: FaceVote) -> str:
        """What a vote would mean once settled (``Rules.verdict_of``)."""
        return self.rules.verdict_of(vote.label, vote.source)

    def violation_score(self, vote: FaceVote) -> float:
        """A continuous flag score for ROC curves: classifier votes give the probability mass on
        the labels the rules call a violation; others their score when they flag, else 0."""
        if vote.classification is not None:
            return float(sum(p for lab, p in vote.classification.probabilities.items()
                             if self.rules.verdict_of(lab, vote.source) == Verdict.VIOLATION))
        return vote.score if self.verdict(vote) == Verdict.VIOLATION else 0.0

    def judge(self, image: np.ndarray, detections: Iterable[Detection]) -> list[FaceJudgement]:
        """Every kept detection judged by every stage, single frame, no tracker."""
        out = []
        for d in detections:
            if not self.keep(d):
                continue
            votes = {}
            for ch in self.channels(d.label):
                v = self.vote(ch, image, d.box, d.label, d.score)
                if v is not None:
                    votes[ch] = v
            out.append(FaceJudgement(d, votes, {ch: self.verdict(v) for ch, v in votes.items()}))
        return out


@dataclass
class FrameResult:
    """What the pipeline made of one frame.

    ``sources`` is each track's main-channel source, ``classified`` the main classifier's
    output per track id, ``votes`` every vote cast this frame per track id, ``hands`` the
    hand boxes the hand stage found near each face it ran for. ``frame`` is the frame with the
    privacy masks blacked out; ``outside`` the detections in no zone (never judged: pixelate
    them wherever the picture goes, ``edge.decide.zones.Privacy``). ``idle``: the motion gate skipped
    the detector (no motion, no track alive).
    """

    frame: Frame
    detections: list[Detection]
    tracks: list[Track]
    sources: dict[int, str]
    classified: dict[int, Classification] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    votes: dict[int, list[FaceVote]] = field(default_factory=dict)
    hands: dict[int, list[Box]] = field(default_factory=dict)
    outside: list[Detection] = field(default_factory=list)
    idle: bool = False


def to_frame(dets: list[Detection], view_shape: tuple[int, ...], frame_shape: tuple[int, ...]) -> list[Detection]:
    """Detections on a scaled view of the frame (the lores stream) in frame pixels."""
    sx, sy = frame_shape[1] / view_shape[1], frame_shape[0] / view_shape[0]
    return [dataclasses.replace(d, box=Box(d.box.x1 * sx, d.box.y1 * sy, d.box.x2 * sx, d.box.y2 * sy))
            for d in dets]


def make_rules(cfg: Config) -> Rules:
    """The run's Rules: [rules], with the face-touch check's own per-track cooldown."""
    return Rules(cfg.rules, cooldowns={HAND_SOURCE: cfg.facetouch.cooldown_s})


class Pipeline:
    """The per-frame vision stages: face detector -> tracker -> per face: classifiers and the
    hand stage, each voting in its own channel of the face's track.

    Args:
        detector: built face Detector.
        classifier: built Classifier (its votes are each track's main channel), or None to
            run the detector alone.
        cfg: the whole config (models, tracking, rules, facetouch).
        clock: perf counter (seconds) of every stage timing (the runner passes its own clock).
        extra_classifiers: more built Classifiers run on every face crop, each voting in a
            channel named after its manifest (``models.extra_classifiers``).
        hand_detector: built hand detector (``edge.infer.ssd.SsdDetector``) for the face-touch
            check, or None.
    """

    def __init__(self, detector: Detector, classifier: Classifier | None, cfg: Config,
                 clock: Callable[[], float] = time.perf_counter, *, extra_classifiers: Sequence[Any] = (),
                 hand_detector: Any = None, motion: Any = None):
        self.detector = detector
        # edge.capture.motion.MotionGate or None: with a gate, idle frames (no motion, no track) skip the detector.
        self.motion = motion
        self._detector_ok = True
        self.classifier = classifier
        self.cfg = cfg
        t = cfg.tracking
        self.tracker = Tracker(t.iou_threshold, t.max_missed, t.votes_needed, t.window, t.reclassify_every)
        self.latency = LatencyStats()
        self.clock = clock
        self.hand_detector = hand_detector
        stages = []
        if classifier is not None:
            stages.append(ClassifierStage(MAIN, classifier, self._margin(classifier), "classify"))
            for c in extra_classifiers:
                stages.append(ClassifierStage(c.manifest.name, c, self._margin(c), f"classify:{c.manifest.name}"))
        self.extra_classifiers = [s.classifier for s in stages[1:]]
        hands = HandStage(hand_detector, cfg.facetouch) if hand_detector is not None else None
        self.judge = FaceJudge(stages, make_rules(cfg), cfg.models.classify_labels, cfg.rules.min_score,
                               cfg.models.min_face_px, hands, clock=clock)
        self._every = {FACETOUCH_CHANNEL: cfg.facetouch.every_settled}
        self.set_polygons(cfg.zones, cfg.privacy.masks)

    def set_polygons(self, zones: Sequence[Any], masks: Sequence[Any]) -> None:
        """Use these zones and privacy masks from the next frame on (the web page's zone editor
        calls this from its thread: two reference assignments, no lock needed)."""
        self.zones = ZoneFilter(zones)
        self.masks = MaskPainter(masks)

    def _margin(self, classifier: Classifier) -> float:
        m = self.cfg.models.crop_margin
        return m if m is not None else classifier.margin

    @property
    def margin(self) -> float:
        """The main classifier's crop margin."""
        return self.judge.classifiers[0].margin

    @property
    def min_px(self) -> float:
        return self.judge.min_face_px

    @min_px.setter
    def min_px(self, value: float) -> None:
        self.judge.min_face_px = value

    @classmethod
    def from_config(cls, cfg: Config, detector_interpreter: Any = None, classifier_interpreter: Any = None,
                    hand_interpreter: Any = None, extra_interpreters: Sequence[Any] = (),
                    clock: Callable[[], float] = time.perf_counter) -> "Pipeline":
        """Build every stage from the manifests the config names (once).

        ``extra_interpreters`` are stubs for ``models.extra_classifiers``, in order (tests);
        ``clock`` times the stages (as in the constructor).

        Raises:
            ModelError: missing/corrupt model or manifest, hash mismatch, no interpreter.
        """
        from .infer.ssd import SsdDetector

        m = cfg.models
        backend = None if m.backend == "auto" else m.backend
        det = Detector(cfg.resolve(m.detector), m.num_threads, m.score_threshold, m.nms_iou,
                       interpreter=detector_interpreter, backend=backend)
        clf = None
        extra = []
        if m.classifier:
            clf = Classifier(cfg.resolve(m.classifier), m.num_threads, interpreter=classifier_interpreter,
                             backend=backend)
            stubs = list(extra_interpreters) + [None] * len(m.extra_classifiers)
            extra = [Classifier(cfg.resolve(p), m.num_threads, interpreter=stubs[i], backend=backend)
                     for i, p in enumerate(m.extra_classifiers)]
        hands = None
        if cfg.facetouch.enabled:
            hands = SsdDetector(cfg.resolve(cfg.facetouch.hand_detector), m.num_threads,
                                cfg.facetouch.score_threshold, interpreter=hand_interpreter, backend=backend)
        motion = None
        if cfg.motion.enabled:
            from .capture.motion import MotionGate

            motion = MotionGate(cfg.motion)
        return cls(det, clf, cfg, clock, extra_classifiers=extra, hand_detector=hands, motion=motion)

    def _models(self) -> list[tuple[str, Any, str | None]]:
        m = self.cfg.models
        out = [("detector", self.detector, m.detector)]
        if self.classifier is not None:
            out.append(("classifier", self.classifier, m.classifier))
            for i, c in enumerate(self.extra_classifiers):
                out.append((f"classifier:{c.manifest.name}", c,
                            m.extra_classifiers[i] if i < len(m.extra_classifiers) else None))
        if self.hand_detector is not None:
            out.append(("hands", self.hand_detector, self.cfg.facetouch.hand_detector))
        return out

    def model_hashes(self) -> dict[str, str]:
        return {k: obj.manifest.sha256 for k, obj, _ in self._models()}

    def model_paths(self) -> dict[str, Path]:
        return {k: self.cfg.resolve(p) for k, _, p in self._models() if p}

    def source_of(self, detector_label: str) -> str:
        """Classifier-judged (face) or detector-judged (facetouch, person ...) track."""
        return self.judge.source_of(detector_label)

    def judge_frame(self, image: np.ndarray) -> list[FaceJudgement]:
        """Single-frame decisions (no tracker, every stage on every face): what eval measures."""
        return self.judge.judge(image, self.detector.detect(image))

    def process(self, frame: Frame) -> FrameResult:
        """Run every stage on one frame and update the tracks' votes.

        The privacy masks are blacked out first, on the lores view too (timed with the motion
        gate in ``motion``, and in ``pipeline``): no stage, and
        nothing the caller does with ``FrameResult.frame``, sees what is under them. Only
        detections that count in a zone (``edge.decide.zones.ZoneFilter``) reach the tracker.
        """
        clock = self.clock
        judge = self.judge
        zones, masks = self.zones, self.masks
        t0 = clock()
        if masks:
            # The lores view too (pixel corners are in main-stream pixels: scaled to it).
            h0, w0 = frame.image.shape[:2]
            lores = masks.apply(frame.lores, (w0, h0)) if frame.lores is not None else None
            frame = Frame(masks.apply(frame.image), frame.timestamp, frame.index, lores)
        gate = self.motion
        idle = False
        # The camera's lores stream when it has one (same view, already small), else the frame.
        view = frame.lores if frame.lores is not None else frame.image
        if gate is not None:
            if self.tracker.tracks or not self._detector_ok:
                # A live track, or the detector failed last time (a model fault must show
                # on the next frame, not at the next periodic check).
                gate.tracking(view, frame.timestamp)
            else:
                idle = not gate.should_run(view, frame.timestamp)
        tg = clock()
        if idle:
            # Nothing moves and nobody is tracked: no detector on this frame.
            ta = tb = t1 = tg
            dets, outside = [], []
        else:
            # The detector's three named stages, timed apart: on a Pi the resize and
            # the decode are not free next to the int8 inference.
            self._detector_ok = False
            tensor, transform = self.detector.preprocess(view)
            ta = clock()
            heads = self.detector.infer(tensor)
            tb = clock()
            found = self.detector.postprocess(heads, transform)
            self._detector_ok = True
            if view is not frame.image:
                found = to_frame(found, view.shape, frame.image.shape)
            h, w = frame.image.shape[:2]
            dets, outside = zones.split(found, w, h, judge.min_face_px)
            t1 = clock()
        tracks = self.tracker.update(dets, frame.index)
        sources = {t.id: judge.source_of(t.detector_label) for t in tracks}
        classified: dict[int, Classification] = {}
        votes: dict[int, list[FaceVote]] = {}
        hands: dict[int, list[Box]] = {}
        stage_ms: dict[str, float] = {}

        def timer(stage: str, ms: float) -> None:
            stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
            self.latency.add(stage, ms)

        for tr in tracks:
            for ch in judge.channels(tr.detector_label):
                if not self.tracker.needs_vote(tr, frame.index, ch, self._every.get(ch)):
                    continue
                v = judge.vote(ch, frame.image, tr.box, tr.detector_label, tr.detector_score, timer)
                if v is None:
                    continue
                self.tracker.vote(tr, v.label, v.score, frame.index, ch, v.source)
                votes.setdefault(tr.id, []).append(v)
                if ch == MAIN and v.classification is not None:
                    classified[tr.id] = v.classification
                if ch == FACETOUCH_CHANNEL:
                    hands[tr.id] = list(v.hands)
        t3 = clock()
        staged = sum(stage_ms.values())
        timings = {"detect": (t1 - tg) * 1000.0, "det_pre": (ta - tg) * 1000.0, "det_infer": (tb - ta) * 1000.0,
                   "det_post": (t1 - tb) * 1000.0, "track": (t3 - t1) * 1000.0 - staged,
                   "classify": stage_ms.get("classify", 0.0), "pipeline": (t3 - t0) * 1000.0}
        if gate is not None:
            timings["motion"] = (tg - t0) * 1000.0
            self.latency.add("motion", timings["motion"])
        for stage, ms in stage_ms.items():
            timings.setdefault(stage, ms)
        for stage in ("det_pre", "det_infer", "det_post", "detect", "track", "pipeline") if not idle else \
                ("track", "pipeline"):
            self.latency.add(stage, timings[stage])
        return FrameResult(frame, dets, tracks, sources, classified, timings, votes, hands, outside, idle)
