"""``doorguard eval``: the full pipeline measured on a VOC-style set.

Detector -> crop with margin -> classifier -> rule, one decision per frame (no
tracker, no temporal vote), over every annotated image of a VOC folder. The
detector and classifier are the runtime's own ``edge.infer.models`` classes, so the
figures are those of the code the Pi runs. Matching and metrics live in
``convert.verify.metrics`` (pure, tested against hand-computed cases).

Any object with ``detect(rgb) -> list[Detection]`` can stand in for the
detector (peers in ``convert/verify/peers.py``), and any ``predict(rgb) ->
list[Prediction]`` for the whole pipeline (a joint face-mask detector).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np

from edge.errors import DataError, UsageError
from edge.types import Box, Detection

# VOC class names -> classifier labels (issue 5), shared with ``doorguard dataset crops``.
from convert.data.dataset import DEFAULT_LABEL_MAP, parse_label_map
from convert.verify.metrics import MISSED, UNCLASSIFIED, EvalAccumulator, Prediction, Truth, flag_roc

log = logging.getLogger(__name__)

#: Violating classes when no config says otherwise.
DEFAULT_VIOLATING = ("no_mask", "mask_incorrect")


class FaceDetector(Protocol):
    """What the eval loop needs from a detector (doorguard's Detector or a peer)."""

    def detect(self, image: np.ndarray) -> list[Detection]:
        """RGB uint8 frame -> detections in frame pixels."""


class FaceClassifier(Protocol):
    """What the eval loop needs from a classifier (doorguard's Classifier)."""

    def crop(self, image: np.ndarray, box: Box) -> np.ndarray: ...

    def probabilities(self, crop: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class Sample:
    """One evaluation image and its ground-truth faces (labels already mapped)."""

    path: Path
    truths: list[Truth]


def load_voc(directory: Path | str, split: Path | str | None = None,
             label_map: dict[str, str] | None = None) -> list[Sample]:
    """Every annotated image of a VOC folder, with boxes mapped to classifier labels.

    The folder holds ``annotations/*.xml`` + ``images/`` or both side by side
    (``convert.data.dataset.voc_items`` reads either). A class missing from the
    map keeps its own name: it is still a face for the detector figures.

    Raises:
        DataError: no folder, no annotations, bad xml, or a split naming unknown stems.
    """
    from convert.data.dataset import voc_items

    label_map = DEFAULT_LABEL_MAP if label_map is None else label_map
    classes = _yolo_classes(Path(directory))
    if classes is not None:
        return load_yolo(directory, classes, split, label_map)
    items = voc_items(directory, split)
    if not items:
        raise DataError(f"no annotated images found in {directory}")
    return [Sample(img, [Truth(lb.box, label_map.get(lb.name, lb.name)) for lb in boxes])
            for img, boxes in items]


def _yolo_classes(folder: Path) -> list[str] | None:
    """The class names of a YOLO-labelled folder (``classes.txt`` in it or its parent), or None
    when the folder holds VOC xml files."""
    if not folder.is_dir() or any(folder.glob("*.xml")) or (folder / "annotations").is_dir():
        return None
    for d in (folder, folder.parent):
        f = d / "classes.txt"
        if f.is_file() and any(folder.glob("*.txt")):
            return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]
    return None


def load_yolo(folder: Path | str, classes: list[str], split: Path | str | None = None,
              label_map: dict[str, str] | None = None) -> list[Sample]:
    """Every labelled image of a YOLO folder (same-stem ``class cx cy w h`` .txt per image).

    Raises:
        DataError: no folder, no labelled images, or an unreadable image.
    """
    from convert.data.dataset import yolo_items
    from convert.data.images import read_rgb

    label_map = DEFAULT_LABEL_MAP if label_map is None else label_map
    out = []
    for img, boxes in yolo_items(folder, classes, split):
        h, w = read_rgb(img).shape[:2]
        out.append(Sample(img, [Truth(Box(lb.box.x1 * w, lb.box.y1 * h, lb.box.x2 * w, lb.box.y2 * h),
                                      label_map.get(lb.name, lb.name)) for lb in boxes]))
    if not out:
        raise DataError(f"no labelled images found in {folder}")
    return out


class Pipeline:
    """doorguard's single-frame decisions as eval predictions: a thin adapter, no rules of its own.

    Every decision (which boxes are judged, which go to the classifier, what a label means,
    when it is certain enough) is ``edge.pipeline.FaceJudge``'s, the object the device loop
    votes with; this class only turns its judgements into ``Prediction`` rows. The device
    then needs N of M such frames for a verdict; eval scores each frame on its own.

    Args:
        detector: anything with ``detect(rgb)``.
        classifier: doorguard's Classifier (``classify`` or ``probabilities``, and ``margin``)
            or None (detector labels are then the predicted classes).
        labels: the classifier's labels, in output order (default: its manifest's).
        violating: classifier labels that break the rule (``rules.alert_on_classifier``).
        min_score: votes below this score are uncertain and flag nothing (``rules.min_score``).
        classify_labels: detector labels whose boxes go to the classifier (case-insensitive,
            as on the device); others are judged by their detector label.
        alert_on_detector: detector labels that flag by themselves (``rules.alert_on_detector``).
        min_face_px: boxes narrower or shorter than this are ignored, as on the device.
        hand_detector: a hand detector (``detect(rgb)``) for the face-touch check, with
            ``facetouch`` (the [facetouch] section); None: no face-touch check.
    """

    def __init__(self, detector: FaceDetector, classifier: FaceClassifier | None,
                 labels: Sequence[str] = (), violating: Iterable[str] = DEFAULT_VIOLATING,
                 min_score: float = 0.0, classify_labels: Iterable[str] = ("face",),
                 alert_on_detector: Iterable[str] = (), min_face_px: float = 0.0, *,
                 hand_detector: Any = None, facetouch: Any = None):
        from edge.config import RulesConfig
        from edge.pipeline import MAIN, ClassifierStage, FaceJudge, HandStage
        from edge.decide.rules import Rules

        self.detector = detector
        self.classifier = classifier
        if not labels and classifier is not None and hasattr(classifier, "manifest"):
            labels = classifier.manifest.labels
        self.labels = list(labels)
        self.violating = frozenset(violating)
        self.min_score = min_score
        self.classify_labels = set(classify_labels)
        self.alert_on_detector = frozenset(alert_on_detector)
        self.min_face_px = min_face_px
        rules = Rules(RulesConfig(alert_on_classifier=sorted(self.violating),
                                  alert_on_detector=sorted(self.alert_on_detector),
                                  compliant_on_classifier=[], min_score=min_score))
        stages = []
        if classifier is not None:
            stages.append(ClassifierStage(MAIN, _Labelled(classifier, self.labels),
                                          float(getattr(classifier, "margin", 0.0)), "classify"))
        hands = HandStage(hand_detector, facetouch) if hand_detector is not None else None
        self.judge = FaceJudge(stages, rules, self.classify_labels, min_score, min_face_px, hands)

    def judgements(self, image: np.ndarray) -> list:
        """The device's single-frame judgements of one RGB frame (``edge.pipeline.FaceJudgement``)."""
        return self.judge.judge(image, self.detector.detect(image))

    def predict(self, image: np.ndarray) -> list[Prediction]:
        """One RGB frame -> one Prediction per kept detection (the main channel's decision)."""
        from edge.types import Verdict

        out: list[Prediction] = []
        for j in self.judgements(image):
            d, v = j.detection, j.main
            if v is None:  # empty crop: the device casts no vote either
                out.append(Prediction(d.box, d.score, UNCLASSIFIED, False, 0.0))
                continue
            label = v.classification.label if v.classification is not None else d.label
            out.append(Prediction(d.box, d.score, label, j.verdicts[v.channel] == Verdict.VIOLATION,
                                  self.judge.violation_score(v)))
        return out


class _Labelled:
    """A classifier as the device's stages see it (``classify(crop) -> Classification``), from
    ``classify`` itself or from ``probabilities`` and the given labels."""

    def __init__(self, classifier: Any, labels: Sequence[str]):
        self._c = classifier
        self._labels = list(labels)

    def classify(self, crop: np.ndarray):
        from edge.types import Classification

        if hasattr(self._c, "classify") and (not self._labels or self._labels == list(self._c.manifest.labels)):
            return self._c.classify(crop)
        p = np.asarray(self._c.probabilities(crop), dtype=np.float64).reshape(-1)
        i = int(np.argmax(p))
        return Classification(self._labels[i], float(p[i]), {lab: float(x) for lab, x in zip(self._labels, p)})


def evaluate(samples: Sequence[Sample], predict: Callable[[np.ndarray], list[Prediction]],
             violating: Iterable[str], iou_threshold: float = 0.5, progress: bool = True,
             desc: str = "eval", input_size: Sequence[int] | None = None,
             resize: str = "letterbox", condition: str | None = None,
             mask_groups: bool = False) -> EvalAccumulator:
    """Run ``predict`` on every sample and match its output to the ground truth.

    Unreadable images are skipped and counted in the log (not in the figures).
    ``seconds`` covers predict only (not image decoding). With the detector's
    ``input_size`` (width, height) and ``resize`` mode, recall is also given by
    the size each face has at the detector input. ``condition`` (a name of
    ``convert.verify.conditions.CONDITIONS``) transforms every photo first (boxes follow);
    ``mask_groups`` groups masked faces by mask colour (on the clean photo).
    """
    from convert.verify.conditions import CONDITIONS, mask_colour

    if condition is not None and condition not in CONDITIONS:
        raise UsageError(f"unknown condition {condition!r}; choose from {', '.join(CONDITIONS)}")
    from tqdm import tqdm

    from convert.data.images import read_rgb

    acc = EvalAccumulator(violating=frozenset(violating), iou_threshold=iou_threshold,
                          input_size=tuple(input_size) if input_size else None, resize=resize)
    skipped = 0
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress):
        try:
            image = read_rgb(s.path)
        except DataError as e:
            skipped += 1
            log.warning("skipping %s", e)
            continue
        truths = s.truths
        groups = [mask_colour(image, t.box) if t.label == "mask" else None for t in truths] if mask_groups else None
        if condition is not None:
            fn, k = CONDITIONS[condition]
            image = fn(image, [t.box for t in truths], s.path.name)
            if k != 1.0:
                truths = [Truth(Box(t.box.x1 * k, t.box.y1 * k, t.box.x2 * k, t.box.y2 * k), t.label) for t in truths]
        t0 = time.perf_counter()
        preds = predict(image)
        dt = time.perf_counter() - t0
        acc.add(s.path.name, truths, preds, seconds=dt, image_size=(image.shape[1], image.shape[0]), groups=groups)
    if skipped:
        log.warning("%d unreadable images skipped", skipped)
    return acc


def collect(samples: Sequence[Sample], predict: Callable[[np.ndarray], list[Prediction]],
            progress: bool = True, desc: str = "detect") -> list[tuple[list[Box], list[Box], list[float]]]:
    """Per image (truth boxes, predicted boxes, detector scores), for ``metrics.threshold_sweep``.

    Run ``predict`` with a detector threshold below every value to sweep.
    """
    from tqdm import tqdm

    from convert.data.images import read_rgb

    out = []
    for s in tqdm(samples, desc=desc, unit="img", disable=not progress):
        try:
            image = read_rgb(s.path)
        except DataError as e:
            log.warning("skipping %s", e)
            continue
        preds = predict(image)
        out.append(([t.box for t in s.truths], [p.box for p in preds], [p.score for p in preds]))
    return out


def standard_sets(shared: Path | str, work: Path | str) -> dict[str, tuple[Path, Path | None]]:
    """The measurement sets of issue 5 as (VOC folder, split file or None).

    ``facemask853-val`` and ``facemask853-train`` read ../shared/data/facemask853
    with its split files; ``dataroots-val`` is the dataroots validation CSV
    converted to VOC under ``work`` (``doorguard dataset voc``).
    ``facemask853-val-clean`` is facemask853 val without the photos that have a
    near-duplicate in adityap27 train (71 of 108): the honest val figure for a
    model trained on adityap27. ``adityap27-valid`` is adityap27's own
    validation folder (YOLO labels, never trained on); ``adityap27-valid-clean``
    leaves out its photos with a near-duplicate in adityap27 train.

    Raises:
        DataError: ../shared lacks the data.
    """
    from convert.data.dataset import near_duplicates, voc_items, yolo_items
    from convert.data.dataset_voc import convert

    shared, work = Path(shared), Path(work)
    fm = shared / "data" / "facemask853"
    dr = shared / "data" / "dataroots"
    ad = shared / "data" / "adityap27" / "train"
    for p in (fm / "val.txt", fm / "train.txt", dr / "validation_metadata.csv"):
        if not p.is_file():
            raise DataError(f"measurement data missing: {p}")
    dr_voc = work / "dataroots-val-voc"
    if not (dr_voc / "annotations").is_dir():
        convert(dr / "validation_metadata.csv", dr, dr_voc)
    sets: dict[str, tuple[Path, Path | None]] = {
        "facemask853-val": (fm, fm / "val.txt"),
        "dataroots-val": (dr_voc, None),
    }
    if ad.is_dir():
        val = [p for p, _ in voc_items(fm, fm / "val.txt")]
        dups = near_duplicates(val, [p for p, _ in yolo_items(ad, ["no_mask", "mask"])])
        clean = work / "facemask853-val-clean.txt"
        clean.write_text("".join(f"{p.stem}\n" for p in val if p not in dups))
        sets["facemask853-val-clean"] = (fm, clean)
    if (ad.parent / "valid").is_dir():
        valid = ad.parent / "valid"
        sets["adityap27-valid"] = (valid, None)
        if ad.is_dir():
            vals = [p for p, _ in yolo_items(valid, ["no_mask", "mask"])]
            dups = near_duplicates(vals, [p for p, _ in yolo_items(ad, ["no_mask", "mask"])])
            clean = work / "adityap27-valid-clean.txt"
            clean.write_text("".join(f"{p.stem}\n" for p in vals if p not in dups))
            sets["adityap27-valid-clean"] = (valid, clean)
    sets["facemask853-train"] = (fm, fm / "train.txt")
    return sets


def report(acc: EvalAccumulator, meta: dict[str, Any] | None = None, records: bool = True) -> dict:
    """The eval JSON: figures first, then the ROC AUC, meta data and (optionally) per-face records."""
    out = acc.summary()
    roc = flag_roc(acc.faces, acc.violating)
    out["flag_roc_auc"] = roc["auc"]
    out["violating_classes"] = sorted(acc.violating)
    out["iou_threshold"] = acc.iou_threshold
    if meta:
        out.update(meta)
    if records:
        out["records"] = {
            "faces": [
                {"image": f.image, "truth": f.truth, "predicted": f.predicted, "flagged": f.flagged,
                 "flag_score": None if f.flag_score is None else round(f.flag_score, 4),
                 "iou": None if f.iou is None else round(f.iou, 3),
                 "box": [round(c, 1) for c in f.box]}
                for f in acc.faces
            ],
            "false_detections": acc.false_detections,
        }
    return out


def write_plots(acc: EvalAccumulator, out_dir: Path | str, title: str = "") -> list[Path]:
    """ROC of the flag score (detected faces) and the confusion matrix, as PNG files.

    Returns:
        The written files (roc.png, confusion.png).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    roc = flag_roc(acc.faces, acc.violating)
    fig, ax = plt.subplots(figsize=(5, 5))
    if roc["auc"] is not None:
        ax.plot(roc["fpr"], roc["tpr"], lw=2, label=f"flag score (AUC {roc['auc']:.3f})")
        # The operating point the pipeline actually used.
        det = [f for f in acc.faces if f.flag_score is not None]
        pos = [f for f in det if f.truth in acc.violating]
        neg = [f for f in det if f.truth not in acc.violating]
        if pos and neg:
            ax.plot([sum(f.flagged for f in neg) / len(neg)], [sum(f.flagged for f in pos) / len(pos)],
                    "o", color="C3", label="pipeline decision")
    else:
        ax.text(0.5, 0.5, "ROC undefined: one class only", ha="center")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1)
    ax.set_xlabel("compliant faces flagged (FPR)")
    ax.set_ylabel("violating faces flagged (TPR)")
    ax.set_title(f"ROC {title} ({roc['positives']} violating / {roc['negatives']} compliant detected)",
                 fontsize=9)
    ax.legend(loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    p = out_dir / "roc.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)

    conf = acc.summary()["confusion"]
    rows = list(conf)
    cols = list(next(iter(conf.values()))) if conf else [MISSED]
    m = np.array([[conf[r][c] for c in cols] for r in rows]) if rows else np.zeros((0, len(cols)))
    fig, ax = plt.subplots(figsize=(1.4 * len(cols) + 2, 1.0 * max(1, len(rows)) + 1.6))
    ax.imshow(m if m.size else np.zeros((1, 1)), cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion {title}", fontsize=9)
    fig.tight_layout()
    p = out_dir / "confusion.png"
    fig.savefig(p, dpi=100)
    plt.close(fig)
    written.append(p)
    return written


def _model_meta(m: Any, path: Path, use_float: bool) -> dict:
    man = m.manifest
    return {"manifest": str(path), "name": man.name,
            "file": man.float_tflite if use_float else man.tflite,
            "sha256": man.float_sha256 if use_float else man.sha256,
            "precision": "float32" if use_float else man.input.dtype,
            "input": [man.input.width, man.input.height], "resize": man.input.resize, "backend": m.model.backend}


def pipeline_for(detector: FaceDetector, classifier: Any, cfg: Any, min_face_px: float | None = None,
                 hand_detector: Any = None) -> Pipeline:
    """A Pipeline with the config's rules (violating labels, min score, classify labels, min face
    size) and, with a hand detector, its [facetouch] section."""
    return Pipeline(
        detector, classifier, classifier.manifest.labels if classifier is not None else (),
        set(cfg.rules.alert_on_classifier), cfg.rules.min_score, cfg.models.classify_labels,
        cfg.rules.alert_on_detector, cfg.models.min_face_px if min_face_px is None else min_face_px,
        hand_detector=hand_detector, facetouch=cfg.facetouch)


def load_classifier(path: Path, cfg: Any, threads: int = 2, use_float: bool = False):
    """doorguard's Classifier with the config's backend and crop margin override."""
    from edge.infer.models import Classifier

    backend = None if cfg.models.backend == "auto" else cfg.models.backend
    classifier = Classifier(path, num_threads=threads, use_float=use_float, backend=backend)
    if cfg.models.crop_margin is not None:
        classifier.margin = cfg.models.crop_margin
    return classifier


def build_pipeline(args: argparse.Namespace) -> tuple[Pipeline, dict]:
    """The Pipeline the CLI arguments and config describe, and its meta data for the JSON.

    Raises:
        ConfigError: bad config; ModelError: missing/corrupt models.
    """
    from edge.config import load
    from edge.infer.models import Detector

    cfg = load(args.config)
    det_path = Path(args.detector) if args.detector else cfg.resolve(cfg.models.detector)
    cls_arg = args.classifier if args.classifier is not None else cfg.models.classifier
    if args.no_classifier:
        cls_arg = None
    cls_path = (Path(cls_arg) if args.classifier else cfg.resolve(cls_arg)) if cls_arg else None
    threshold = args.score_threshold if args.score_threshold is not None else cfg.models.score_threshold
    backend = None if cfg.models.backend == "auto" else cfg.models.backend
    detector = Detector(det_path, num_threads=args.threads, score_threshold=threshold,
                        nms_iou=cfg.models.nms_iou, use_float=args.float, backend=backend)
    classifier = load_classifier(cls_path, cfg, args.threads, args.float) if cls_path is not None else None
    hands, hands_path = _hand_detector(args, cfg, backend)
    pipe = pipeline_for(detector, classifier, cfg, args.min_face_px, hand_detector=hands)
    meta = {
        "pipeline": "doorguard",
        "precision": "float32" if args.float else "int8",
        "detector": _model_meta(detector, det_path, args.float),
        "classifier": _model_meta(classifier, cls_path, args.float) if classifier else None,
        "thresholds": {
            "detector_score": detector.score_threshold,
            "nms_iou": detector.nms_iou,
            "classifier_min_score": cfg.rules.min_score,
            "min_face_px": pipe.min_face_px,
            "crop_margin": classifier.margin if classifier else None,
        },
        "config": str(args.config) if args.config else "default (edge/default.toml)",
    }
    if hands is not None:
        meta["hand_detector"] = _model_meta(hands, hands_path, args.float or getattr(args, "float_hands", False))
        meta["facetouch"] = cfg.facetouch.model_dump()
    return pipe, meta


def _hand_detector(args: argparse.Namespace, cfg: Any, backend: str | None) -> tuple[Any, Path | None]:
    """The hand detector of ``--hands`` or the config's [facetouch] (None when neither names one)."""
    from edge.infer.ssd import SsdDetector

    name = getattr(args, "hands", None)
    path = Path(name) if name else (cfg.resolve(cfg.facetouch.hand_detector) if cfg.facetouch.enabled else None)
    if path is None:
        return None, None
    if name:
        cfg.facetouch.hand_detector = str(path)
    use_float = args.float or getattr(args, "float_hands", False)
    return SsdDetector(path, num_threads=args.threads, score_threshold=cfg.facetouch.score_threshold,
                       use_float=use_float, backend=backend), path


def facetouch_main(args: argparse.Namespace) -> int:
    """``doorguard eval --facetouch LABELS.csv``: face-touch precision and recall on labelled photos."""
    from convert.verify.facetouch_eval import evaluate as evaluate_touch, read_labels

    labels = read_labels(args.facetouch)
    pipe, meta = build_pipeline(args)
    if pipe.judge.hands is None:
        raise UsageError("--facetouch needs a hand detector: --hands M.json or [facetouch] hand_detector")
    shared = Path(args.shared)
    # The models' precision (int8/float32) moves aside: "precision" is the face-touch figure here.
    meta["model_precision"] = meta.pop("precision")
    result = {**evaluate_touch(labels, shared, pipe, progress=not args.quiet), **meta,
              "labels": str(args.facetouch), "shared": str(shared)}
    out = write_json(args.json, result)
    half = result["report_half"]
    print(f"face-touch: {result['photos']} photos ({result['positives']} touching): precision "
          f"{_fmt(result['precision'])}, recall {_fmt(result['recall'])}, false alarms "
          f"{result['fp']} of {result['negatives']}; report half ({half['photos']} photos, settings never "
          f"tuned on it): precision {_fmt(half['precision'])}, recall {_fmt(half['recall'])}")
    print(f"wrote {out}")
    return 0


@dataclass
class System:
    """A pipeline to compare: ``make(threshold)`` builds its predict function.

    Attributes:
        name: short name used in tables and file names.
        make: detector score threshold -> ``predict(rgb) -> list[Prediction]``.
        default_threshold: the threshold its authors' demo uses (or the manifest's).
        meta: what to record about it (models, hashes, input size).
        make_detector: the same without the classifier, for threshold sweeps (the
            classifier changes no box; skipping it saves classifying every
            low-score box); None uses ``make``.
    """

    name: str
    make: Callable[[float], Callable[[np.ndarray], list[Prediction]]]
    default_threshold: float
    meta: dict
    make_detector: Callable[[float], Callable[[np.ndarray], list[Prediction]]] | None = None


def _has_float_reference(manifest_path: Path) -> bool:
    """The float32 model a manifest names is there (``make models`` writes it; git does not keep it)."""
    from edge.manifest import load_manifest

    man = load_manifest(manifest_path, verify_hash=False)
    return bool(man.float_tflite) and (Path(manifest_path).parent / man.float_tflite).is_file()


def doorguard_systems(cfg: Any, detector: Path, classifier: Path | None, precisions: Sequence[str] = ("int8", "float32"),
                      suffix: str = "") -> list[System]:
    """doorguard's own pipeline (int8 and/or float32 reference) as compare() systems named
    ``doorguard-<precision><suffix>``."""
    from edge.manifest import load_manifest
    from edge.infer.models import Detector

    out = []
    man = load_manifest(detector)
    for prec in precisions:
        use_float = prec == "float32"
        missing = [p for p in ((detector, classifier) if classifier else (detector,))
                   if use_float and not _has_float_reference(p)]
        if missing:
            log.warning("no float reference model next to %s: float32 row skipped", ", ".join(map(str, missing)))
            continue
        cls = load_classifier(classifier, cfg, use_float=use_float) if classifier else None
        meta = {"detector": {"name": man.name, "sha256": man.float_sha256 if use_float else man.sha256},
                "classifier": ({"name": cls.manifest.name,
                                "sha256": cls.manifest.float_sha256 if use_float else cls.manifest.sha256}
                               if cls else None),
                "precision": prec, "input": [man.input.width, man.input.height], "resize": man.input.resize}
        out.append(System(
            f"doorguard-{prec}{suffix}",
            lambda t, f=use_float, c=cls: pipeline_for(Detector(detector, score_threshold=t, use_float=f), c, cfg).predict,
            man.score_threshold or 0.3, meta,
            lambda t, f=use_float: pipeline_for(Detector(detector, score_threshold=t, use_float=f), None, cfg).predict))
    return out


SWEEP = [round(float(t), 3) for t in np.arange(0.05, 0.951, 0.025)]


def compare(systems: Sequence[System], sets: dict[str, list[Sample]], violating: Iterable[str],
            tune_on: list[Sample] | None = None, max_false_per_image: float | None = None,
            progress: bool = True, known: dict[str, dict] | None = None) -> dict[str, dict[str, dict]]:
    """Evaluate every system on every set with the same code.

    With ``tune_on`` (a training set: never a set being reported), each
    system's detector threshold is chosen on it by one rule for doorguard and
    every peer (``metrics.pick_threshold``: best detector F1, or with
    ``max_false_per_image`` the lowest threshold within that false-detection
    budget); otherwise each keeps its default. ``known`` maps a system name to
    a ``threshold_choice`` made earlier on the same tuning set (its sweep is
    then skipped: a peer's detector never changes between runs).

    Returns:
        system name -> set name -> eval report (without per-face records), each
        with ``system``, ``threshold`` and, when tuned, ``threshold_choice``.
    """
    from convert.verify.metrics import pick_threshold, threshold_sweep

    violating = frozenset(violating)
    out: dict[str, dict[str, dict]] = {}
    for sys_ in systems:
        choice = None
        thr = sys_.default_threshold
        if known and sys_.name in known:
            choice = dict(known[sys_.name])
            thr = choice["threshold"]
        elif tune_on is not None:
            make = sys_.make_detector or sys_.make
            cache = collect(tune_on, make(min(SWEEP)), progress, desc=f"{sys_.name} sweep")
            choice = pick_threshold(threshold_sweep(cache, SWEEP), max_false_per_image)
            thr = choice["threshold"]
            log.info("%s: threshold %.3f chosen on the tuning set (recall %.3f, %.3f false/image)",
                     sys_.name, thr, choice["recall"] or 0, choice["false_per_image"] or 0)
        predict = sys_.make(thr)
        out[sys_.name] = {}
        for set_name, samples in sets.items():
            acc = evaluate(samples, predict, violating, progress=progress, desc=f"{sys_.name} {set_name}",
                           input_size=sys_.meta.get("input"), resize=sys_.meta.get("resize", "letterbox"))
            r = report(acc, {"system": sys_.name, "threshold": thr, "default_threshold": sys_.default_threshold,
                             **sys_.meta}, records=False)
            if choice is not None and "rule" in choice and sys_.name in (known or {}):
                r["threshold_choice"] = choice
            elif choice is not None:
                rule = ("best detector F1 on the tuning set" if max_false_per_image is None else
                        f"lowest threshold with <= {max_false_per_image:.4f} false detections per image "
                        "on the tuning set")
                r["threshold_choice"] = {**choice, "rule": rule}
            out[sys_.name][set_name] = r
    return out


COLUMNS = ["detector_recall", "detector_precision", "false_detections_per_135_images",
           "classifier_accuracy", "tnr", "fnr", "seconds_per_image"]


#: Detector recall per true class, as table columns (``detector_recall_by_class``).
CLASS_COLUMNS = {"recall_mask": "mask", "recall_no_mask": "no_mask", "recall_mask_incorrect": "mask_incorrect"}


def table(results: dict[str, dict[str, dict]]) -> str:
    """A markdown table of ``compare`` results: one row per system and set."""
    head = ["system", "set", "threshold", "images", "faces"] + COLUMNS + list(CLASS_COLUMNS)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, per_set in results.items():
        for set_name, r in per_set.items():
            by_class = r.get("detector_recall_by_class") or {
                c: v.get("detector_recall") for c, v in (r.get("per_class") or {}).items()}
            r = {**r, **{col: by_class.get(c) for col, c in CLASS_COLUMNS.items()}}
            cells = [name, set_name, f"{r['threshold']:.3f}", str(r["images"]), str(r["faces"])]
            for c in COLUMNS + list(CLASS_COLUMNS):
                v = r.get(c)
                if v is None:
                    cells.append("n/a")
                elif c == "seconds_per_image":
                    cells.append(f"{1000 * v:.0f} ms")
                elif c == "false_detections_per_135_images":
                    cells.append(f"{v:.1f}")
                else:
                    cells.append(f"{v:.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---- doorguard eval ----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard eval``."""
    parser.add_argument("--facetouch", metavar="LABELS.csv",
                        help="instead of --voc: face-touch precision/recall on labelled photos "
                             "(benchmarks/facetouch/labels.csv; paths relative to --shared/data)")
    parser.add_argument("--hands", metavar="M.json",
                        help="hand detector manifest (overrides the config's facetouch.hand_detector)")
    parser.add_argument("--float-hands", action="store_true",
                        help="run the hand detector's float32 reference (the other models stay int8)")
    parser.add_argument("--shared", default="../shared", metavar="DIR",
                        help="the shared data folder the --facetouch labels point into (default ../shared)")
    parser.add_argument("--voc", metavar="DIR",
                        help="VOC set: images + same-stem .xml side by side, or images/ + annotations/")
    parser.add_argument("--split", metavar="FILE", help="file of image stems (one a line) to evaluate")
    parser.add_argument("--config", metavar="PATH",
                        help="config TOML (models, thresholds, rules); default: the embedded default")
    parser.add_argument("--detector", metavar="M.json", help="detector manifest (overrides the config)")
    parser.add_argument("--classifier", metavar="M.json", help="classifier manifest (overrides the config)")
    parser.add_argument("--no-classifier", action="store_true",
                        help="detector only: detector labels are the predicted classes")
    parser.add_argument("--float", action="store_true",
                        help="run the float32 reference models named in the manifests instead of int8")
    parser.add_argument("--score-threshold", type=float, metavar="T",
                        help="detector score threshold (overrides config and manifest)")
    parser.add_argument("--min-face-px", type=float, metavar="PX",
                        help="ignore boxes smaller than this (default: the config's models.min_face_px)")
    parser.add_argument("--label-map", metavar="a=b,...",
                        help="VOC class -> classifier label, on top of with_mask=mask,"
                             "without_mask=no_mask,mask_weared_incorrect=mask_incorrect")
    parser.add_argument("--iou", type=float, default=0.5, help="matching IoU threshold (default 0.5)")
    parser.add_argument("--condition", metavar="NAME",
                        help="evaluate under a reproduced doorway condition: ir, low-light, backlight, "
                             "motion-blur, jpeg, small (convert/verify/conditions.py)")
    parser.add_argument("--mask-colour", action="store_true",
                        help="also report masked faces by mask colour (dark / light / patterned)")
    parser.add_argument("--threads", type=int, default=2, help="interpreter threads (default 2)")
    parser.add_argument("--json", required=True, metavar="OUT.json", help="write the figures here")
    parser.add_argument("--plots", metavar="DIR", help="write roc.png and confusion.png here")
    parser.add_argument("--no-records", action="store_true", help="leave per-face records out of the JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def write_json(path: Path | str, result: dict) -> Path:
    """Write an eval result as indented JSON (parent folders made).

    Raises:
        DataError: the file cannot be written.
    """
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    except OSError as e:
        raise DataError(f"cannot write {out}: {e.strerror or e}") from e
    return out


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summary_line(r: dict) -> str:
    """One human line of the main figures."""
    return (f"{r['images']} images, {r['faces']} faces: recall {_fmt(r['detector_recall'])}, "
            f"precision {_fmt(r['detector_precision'])}, {r['false_detections']} false detections, "
            f"classifier accuracy {_fmt(r['classifier_accuracy'])}, tnr {_fmt(r['tnr'])}, "
            f"fnr {_fmt(r['fnr'])}, {1000 * (r['seconds_per_image'] or 0):.1f} ms/image")


def main(args: argparse.Namespace) -> int:
    """Evaluate, write the JSON (and plots), print one summary line."""
    if not 0.0 < args.iou < 1.0:
        raise UsageError(f"--iou must be between 0 and 1, not {args.iou}")
    if getattr(args, "facetouch", None):
        return facetouch_main(args)
    if not args.voc:
        raise UsageError("doorguard eval needs --voc DIR (or --facetouch LABELS.csv)")
    label_map = parse_label_map(args.label_map, allow_drop=False)
    samples = load_voc(args.voc, args.split, label_map)
    pipe, meta = build_pipeline(args)
    det = meta["detector"]
    acc = evaluate(samples, pipe.predict, pipe.violating, args.iou, progress=not args.quiet,
                   input_size=det["input"], resize=det.get("resize", "letterbox"), condition=args.condition,
                   mask_groups=args.mask_colour)
    meta.update({"dataset": {"voc": str(args.voc), "split": str(args.split) if args.split else None},
                 "label_map": label_map, "condition": args.condition})
    result = report(acc, meta, records=not args.no_records)
    out = write_json(args.json, result)
    if args.plots:
        write_plots(acc, args.plots, Path(args.voc).name)
    print(summary_line(result))
    print(f"wrote {out}" + (f" and plots in {args.plots}" if args.plots else ""))
    return 0

