"""``doorguard train classifier``: transfer learning of a MobileNet from an image folder, then int8.

``train_classifier`` checks every input first (images per label, enough readable
calibration images, --out writable, backbone weights present), trains
(``convert.train.mobilenet.fit_classifier`` on ``convert.train.classifier_data``'s batches) and
finishes like every classifier converter (``convert.pipeline.classifier.finish_classifier``:
int8 conversion, float vs int8 report, the gate). Augmentation and batches are seeded,
so a rerun gives the same weights on the same machine; class imbalance is handled with
capped balanced per-sample weights.

Every image goes through ``edge.infer.preprocess`` (resize as the manifest says, then the
same normalization) so the model learns from what the Pi feeds it. The default mask
classifier's data and recipe are ``convert.train.mask_recipe``.
"""

from __future__ import annotations

import argparse
import logging
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import DataError, ModelError, UsageError
from edge.manifest import ModelSource, SourceFile, load_manifest, sha256_file

from convert.pipeline.classifier import (DEFAULT_MIN_AGREEMENT, LabeledFiles, calibration_files, calibration_images,
                         finish_classifier, folder_set, label_folders)
from convert.train.classifier_data import TRAIN_CONDITIONS, load_resized, stratified_split
from convert.train.mobilenet import BACKBONES, check_backbone, fit_classifier, mobilenet_spec
from convert.report.outputs import Staging, output_name

log = logging.getLogger(__name__)

#: A label needs this many readable training images (refused below) ...
MIN_TRAIN_PER_CLASS = 5
#: ... and is warned about below this many.
WARN_TRAIN_PER_CLASS = 50


def check_class_counts(labels: list[str], y: np.ndarray, yv: np.ndarray) -> None:
    """Refuse, before training, labels with too few readable training or no validation images.

    Raises:
        DataError: naming each short label and its counts.
    """
    n_train = np.bincount(y, minlength=len(labels))
    n_val = np.bincount(yv, minlength=len(labels))
    counts = ", ".join(f"{lab} {int(t)}+{int(v)}" for lab, t, v in zip(labels, n_train, n_val))
    short = [lab for lab, t in zip(labels, n_train) if t < MIN_TRAIN_PER_CLASS]
    if short:
        raise DataError(f"too few readable training images of {', '.join(short)}: each label needs at least "
                        f"{MIN_TRAIN_PER_CLASS} (training+validation per label: {counts})")
    unseen = [lab for lab, v in zip(labels, n_val) if v == 0]
    if unseen:
        raise DataError(f"no readable validation image of {', '.join(unseen)}: its accuracy could not be "
                        f"measured (training+validation per label: {counts}); add images or give --val")
    few = [lab for lab, t in zip(labels, n_train) if t < WARN_TRAIN_PER_CLASS]
    if few:
        log.warning("few training images of %s (training+validation per label: %s): expect a weak classifier",
                    ", ".join(few), counts)


def train_classifier(data: Path | str | LabeledFiles, out: Path | str, *, val: Path | str | LabeledFiles | None = None,
                     backbone: str = "mobilenet_v1_0.25", backbone_weights: Path | str | None = None,
                     size: int = 96, epochs: int = 15, fine_tune_epochs: int = 10, batch: int = 32,
                     seed: int = 0, calib: Path | str | None = None, min_accuracy_drop: float = 1.0,
                     min_agreement: float = DEFAULT_MIN_AGREEMENT,
                     crop_margin: float | None = 0.15, val_fraction: float = 0.2,
                     extra_eval_sets: dict[str, LabeledFiles] | None = None,
                     data_notes: dict[str, Any] | None = None, max_class_weight: float = 10.0,
                     conditions_aug: float = 0.0, max_false_alarm: float | None = None,
                     alarm_labels: Sequence[str] | None = None):
    """Train, convert to int8, write manifest + report (the whole ``train classifier`` command).

    Every input is checked before training (images per label, enough readable
    calibration images, --out writable, backbone weights present), and nothing is
    left in --out's folder unless the model was written in full.

    Args:
        data: image folder (one subfolder per label) or a LabeledFiles.
        out: models/NAME.
        val: validation folder/set with the same labels; else a seeded stratified split of data.
        backbone, backbone_weights: see BACKBONES; no weights = train from scratch.
        size: square input size.
        epochs, fine_tune_epochs: maximum epochs of each phase (early stopping may end sooner).
        batch, seed: batch size and the seed of every random choice.
        calib: calibration image folder (default: the training images).
        min_accuracy_drop: int8 gate in accuracy points.
        min_agreement: int8 gate: smallest int8 vs float32 top-1 agreement on the validation set.
        crop_margin: margin the face crops were cut with (written to the manifest).
        val_fraction: validation share when splitting ``data``.
        extra_eval_sets: more labelled sets to report float vs int8 on (not used for training).
        data_notes: description of the training data, written to the manifest.
        max_class_weight: cap of the balanced class weights.
        conditions_aug: share of training crops that also get one doorway condition (IR-like
            grey, low light, motion blur, heavy JPEG; ``classifier_data.condition_augment``).
        max_false_alarm: choose the operating point on the validation set
            (``convert.train.operating_point``): the largest weight on ``alarm_labels`` that calls at
            most this share of the other labels' crops an alarm label; None: plain argmax.
        alarm_labels: the labels that alarm (default: the rules' default ``alert_on_classifier``
            labels the model has).

    Returns:
        The manifest written.

    Raises:
        UsageError: bad sizes/backbone, --out not writable.
        DataError: empty or single-class data, too few images of a label, labels of val
            differ from data, too few calibration images.
        ModelError: backbone weights that do not fit.
        AccuracyGateError: a gate check failed (everything written; the manifest records it).
    """
    check_backbone(backbone, size)
    if not 0.0 <= conditions_aug <= 1.0:
        raise UsageError(f"--conditions-aug must be within 0..1, got {conditions_aug}")
    if max_false_alarm is not None and not 0.0 <= max_false_alarm < 1.0:
        raise UsageError(f"--max-false-alarm must be within [0, 1), got {max_false_alarm}")
    out_dir, name = output_name(out)
    # Made first: it is the check that --out is writable, before any long work.
    with Staging(out_dir, name) as stage:
        if isinstance(data, LabeledFiles):
            full = data
        else:
            folders = label_folders(data)
            if len(folders) < 2:
                raise DataError(f"{data} has only one label folder ({', '.join(folders)}); a classifier "
                                f"needs at least two")
            full = folder_set(data)
        labels = full.labels
        if len(labels) < 2 or sum(1 for c in full.counts().values() if c) < 2:
            raise DataError(f"training data has images of fewer than two labels: {full.counts()}")
        alarm = operating_point_labels(labels, alarm_labels) if max_false_alarm is not None else []
        if val is None:
            train, valset = stratified_split(full, val_fraction, seed)
            val_note = f"seeded stratified split ({val_fraction:.0%} of each class, seed {seed})"
        else:
            train = full
            if isinstance(val, LabeledFiles):
                valset = val
            else:
                val_labels = sorted(label_folders(val))
                if val_labels != sorted(labels):
                    raise DataError(f"label mismatch: training folders {sorted(labels)} vs validation "
                                    f"folders {val_labels} in {val}")
                valset = folder_set(val, labels)
            val_note = (f"given set of {len(valset.files)} images" if isinstance(val, LabeledFiles)
                        else f"folder {val}")
        if not valset.files:
            raise DataError("validation set is empty: give --val or more images per class")

        spec = mobilenet_spec(size)
        x, y, skip_t = load_resized(train, spec, "reading training images")
        xv, yv, skip_v = load_resized(valset, spec, "reading validation images")
        check_class_counts(labels, y, yv)
        calib_files = list(train.files)
        if calib is not None:
            calib_files = calibration_files(calib)
        else:
            random.Random(seed).shuffle(calib_files)
        # Refuse too few calibration images now, not after the training.
        calib_inputs = calibration_images(calib_files, spec, seed=seed)
        weights = Path(backbone_weights) if backbone_weights else None
        if weights is not None and not weights.is_file():
            raise ModelError(f"backbone weights not found: {weights}")
        res = fit_classifier(x, y, xv, yv, labels=labels, spec=spec, backbone=backbone, weights=weights,
                             epochs=epochs, fine_tune_epochs=fine_tune_epochs, batch=batch, seed=seed,
                             max_class_weight=max_class_weight, conditions_aug=conditions_aug)
        files = {}
        if weights is not None:
            files["backbone"] = SourceFile(path=str(weights), sha256=sha256_file(weights))
        source = ModelSource(kind="trained", files=files)
        training = {
            "backbone": backbone, "backbone_init": res.history.pop("backbone_init"), "input_size": size,
            "train_images": {labels[i]: int(c) for i, c in enumerate(np.bincount(y, minlength=len(labels)))},
            "val_images": {labels[i]: int(c) for i, c in enumerate(np.bincount(yv, minlength=len(labels)))},
            "unreadable_skipped": {"train": skip_t, "val": skip_v},
            "validation": val_note, "seed": seed, "batch": batch,
            "max_epochs": {"head": epochs, "fine_tune": fine_tune_epochs}, **res.history,
        }
        if conditions_aug:
            training["conditions_augmentation"] = {"share": conditions_aug, "conditions": list(TRAIN_CONDITIONS)}
        if data_notes:
            training["data"] = data_notes
        eval_sets = {"val": valset, **(extra_eval_sets or {})}
        manifest = finish_classifier(res.model, labels=labels, spec=spec, out=out, calib_files=calib_files,
                                     calib=calib_inputs, staging=stage, eval_sets=eval_sets, source=source,
                                     crop_margin=crop_margin, min_accuracy_drop=min_accuracy_drop,
                                     min_agreement=min_agreement, extra_metrics={"training": training}, seed=seed)
    if max_false_alarm is None:
        return manifest
    from convert.train.operating_point import set_operating_point

    path = out_dir / f"{name}.json"
    set_operating_point(path, valset, alarm, max_false_alarm)
    return load_manifest(path)


def operating_point_labels(labels: Sequence[str], alarm_labels: Sequence[str] | None) -> list[str]:
    """The alarm labels an operating point weighs: those given, or the rules' default
    ``alert_on_classifier`` labels among the model's (checked before training)."""
    from edge.settings.rules import RulesConfig

    given = list(alarm_labels) if alarm_labels else [lab for lab in RulesConfig().alert_on_classifier
                                                      if lab in labels]
    unknown = [lab for lab in given if lab not in labels]
    if unknown or not given or len(given) >= len(labels):
        raise UsageError(f"--alarm-labels must name some but not all of the labels ({', '.join(labels)}), "
                         f"got {', '.join(given) or 'none'}")
    return given


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, type=Path, help="image folder, one subfolder per label")
    p.add_argument("--out", required=True, type=Path, help="models/NAME (writes NAME.tflite, .json, .report/)")
    p.add_argument("--val", type=Path, help="validation folder (same labels); default: seeded split of --data")
    p.add_argument("--backbone", default="mobilenet_v1_0.25", choices=sorted(BACKBONES),
                   help="MobileNet variant (default mobilenet_v1_0.25)")
    p.add_argument("--backbone-weights", type=Path,
                   help="ImageNet weights for the backbone: a Keras no-top .h5 (e.g. "
                        "mobilenet_2_5_224_tf_no_top.h5 for mobilenet_v1_0.25) or a quantized TF-slim "
                        "MobileNet v1 .tflite (Coral, dequantized; mobilenet_v1_1.0); without it: from scratch")
    p.add_argument("--size", type=int, default=96, help="square input size in pixels (default 96)")
    p.add_argument("--epochs", type=int, default=15, help="max epochs with the backbone frozen (default 15)")
    p.add_argument("--fine-tune-epochs", type=int, default=10,
                   help="max epochs fine-tuning the last blocks at a low learning rate (default 10)")
    p.add_argument("--batch", type=int, default=32, help="batch size (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--calib", type=Path, help="calibration image folder (default: training images)")
    p.add_argument("--min-accuracy-drop", type=float, default=1.0,
                   help="fail (exit 9, report still written) if int8 loses more accuracy points (default 1)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help="fail (exit 9, report still written) if int8 and float32 agree on fewer validation "
                        f"crops than this share (default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("--crop-margin", type=float, default=0.15,
                   help="margin the face crops were cut with, written to the manifest (default 0.15)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="validation share when splitting (default 0.2)")
    p.add_argument("--max-class-weight", type=float, default=10.0,
                   help="cap of the balanced class weights for rare classes (default 10)")
    p.add_argument("--max-false-alarm", type=float, metavar="SHARE",
                   help="choose the operating point on the validation set: the largest weight on the alarm "
                        "labels that calls at most SHARE of the other labels' crops an alarm label (written to "
                        "the manifest's label_weights; default: plain argmax)")
    p.add_argument("--alarm-labels", metavar="LABEL,...",
                   help="labels that alarm, for --max-false-alarm (default: the rules' default "
                        "alert_on_classifier labels the model has, e.g. no_mask,mask_incorrect)")
    p.add_argument("--conditions-aug", type=float, default=0.0, metavar="SHARE",
                   help="share of training crops that also get one doorway condition: IR-like grey, low "
                        "light with noise, motion blur or heavy JPEG (default 0: none)")


def main(args: argparse.Namespace) -> int:
    if args.epochs < 0 or args.fine_tune_epochs < 0 or args.epochs + args.fine_tune_epochs == 0:
        raise UsageError("--epochs and --fine-tune-epochs must be >= 0 and not both 0")
    if args.batch < 1:
        raise UsageError("--batch must be >= 1")
    if not 0.0 < args.val_fraction < 1.0:
        raise UsageError("--val-fraction must be between 0 and 1")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be within 0..1, got {args.min_agreement}")
    train_classifier(args.data, args.out, val=args.val, backbone=args.backbone,
                     backbone_weights=args.backbone_weights, size=args.size, epochs=args.epochs,
                     fine_tune_epochs=args.fine_tune_epochs, batch=args.batch, seed=args.seed,
                     calib=args.calib, min_accuracy_drop=args.min_accuracy_drop,
                     min_agreement=args.min_agreement, crop_margin=args.crop_margin, val_fraction=args.val_fraction,
                     max_class_weight=args.max_class_weight, conditions_aug=args.conditions_aug,
                     max_false_alarm=args.max_false_alarm,
                     alarm_labels=args.alarm_labels.split(",") if args.alarm_labels else None)
    return 0
