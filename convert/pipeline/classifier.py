"""Finish a Keras classifier: float + int8 TFLite, manifest, report, accuracy gate.

Shared by ``doorguard train classifier`` and ``doorguard convert keras``. The
report is measured through ``edge.infer.models.Classifier`` built from the manifest
just written, i.e. the exact code (preprocessing, interpreter, dequantization)
the Pi runs; calibration goes through ``edge.infer.preprocess.prepare`` too.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import AccuracyGateError, DataError, ModelError, UsageError
from edge.manifest import (
    FORMAT_VERSION,
    Gate,
    InputSpec,
    Manifest,
    ModelSource,
    OutputSpec,
    gate_check,
    sha256_file,
    write_manifest,
)
from edge.infer.preprocess import prepare

from convert.tflite import quantize
from convert.data.images import IMAGE_SUFFIXES, Unreadable, list_images, load_images
from convert.verify.metrics import auc, roc_curve
from convert.report.outputs import Staging, output_name

log = logging.getLogger(__name__)

CALIB_LIMIT = 300
#: Default smallest int8 vs float32 top-1 agreement on the validation crops.
DEFAULT_MIN_AGREEMENT = 0.98
#: The float32 TFLite is checked against the Keras model on this many calibration images,
#: to within this much (times the largest output when above 1: logits).
PARITY_IMAGES = 8
PARITY_TOLERANCE = 1e-3
#: What the report prints for a figure that is undefined (never "None").
UNDEFINED = "n/a"


@dataclass
class LabeledFiles:
    """Image files with a label index each (an evaluation or training set)."""

    labels: list[str]
    files: list[Path] = field(default_factory=list)
    targets: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = np.bincount(np.asarray(self.targets, dtype=int), minlength=len(self.labels))
        return {lab: int(n) for lab, n in zip(self.labels, c)}

    def extend(self, other: "LabeledFiles") -> None:
        """Append another set; its label names are mapped onto this set's indices."""
        for f, t in zip(other.files, other.targets):
            self.files.append(f)
            self.targets.append(self.labels.index(other.labels[t]))


def label_folders(directory: Path | str) -> dict[str, list[Path]]:
    """label -> image files of an image folder (one subfolder per label), sorted.

    Subfolders without images are ignored (and logged).

    Raises:
        DataError: the folder is missing or has no subfolder with images.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"image folder not found: {d}")
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in d.iterdir() if p.is_dir()):
        files = sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[sub.name] = files
        else:
            log.warning("label folder %s holds no images; ignored", sub)
    if not out:
        raise DataError(f"{d} has no label subfolders with images (expected DIR/<label>/*.jpg)")
    return out


def folder_set(directory: Path | str, labels: list[str] | None = None) -> LabeledFiles:
    """A LabeledFiles from a label folder.

    Args:
        directory: DIR/<label>/*.jpg
        labels: the model's labels; the folder's labels must be a subset of them.

    Raises:
        DataError: missing folder, or a label the model does not know.
    """
    folders = label_folders(directory)
    labels = list(labels) if labels is not None else sorted(folders)
    unknown = sorted(set(folders) - set(labels))
    if unknown:
        raise DataError(f"{directory}: label folders {unknown} are not among the model's labels {labels}")
    out = LabeledFiles(labels)
    for lab, files in folders.items():
        out.files += files
        out.targets += [labels.index(lab)] * len(files)
    return out


def calibration_images(files: list[Path], spec: InputSpec, limit: int = CALIB_LIMIT,
                       seed: int = 0) -> list[np.ndarray]:
    """Read up to ``limit`` images and preprocess them exactly as the runtime does.

    Raises:
        DataError: fewer readable images than quantize.MIN_CALIB.
    """
    images, _, _ = load_images(files, limit=limit, seed=seed, progress=True, desc="reading calibration images")
    quantize.check_calib_count(len(images))
    return [prepare(img, spec, dtype="float32")[0] for img in images]


def calibration_files(calib: Path | str) -> list[Path]:
    """Image files of a calibration folder (searched recursively, so label folders work)."""
    return list_images(calib, recursive=True)


# ---------------------------------------------------------------- metrics


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    """n x n counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n, n), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def class_metrics(cm: np.ndarray, labels: list[str]) -> dict[str, dict[str, float | int | None]]:
    """Per-class precision, recall and support from a confusion matrix (None where undefined)."""
    out = {}
    for i, lab in enumerate(labels):
        tp = int(cm[i, i])
        pred = int(cm[:, i].sum())
        sup = int(cm[i].sum())
        out[lab] = {
            "precision": round(tp / pred, 4) if pred else None,
            "recall": round(tp / sup, 4) if sup else None,
            "support": sup,
        }
    return out


@dataclass
class Evaluation:
    """Predictions of one model (float or int8) on one labelled set."""

    labels: list[str]
    y_true: np.ndarray
    probs: np.ndarray
    skipped: int

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.y_pred == self.y_true).mean()) if len(self.y_true) else float("nan")

    def summary(self) -> dict[str, Any]:
        n = len(self.labels)
        cm = confusion_matrix(self.y_true, self.y_pred, n)
        out: dict[str, Any] = {
            "images": int(len(self.y_true)),
            "unreadable_skipped": int(self.skipped),
            "accuracy": round(self.accuracy, 4),
            "confusion": {self.labels[i]: {self.labels[j]: int(cm[i, j]) for j in range(n)} for i in range(n)},
            "per_class": class_metrics(cm, self.labels),
            "roc_auc": {},
        }
        for i, lab in enumerate(self.labels):
            fpr, tpr, _ = roc_curve(self.y_true == i, self.probs[:, i])
            area = auc(fpr, tpr)
            out["roc_auc"][lab] = None if area is None else round(area, 4)
        return out


def evaluate_runtime(manifest_path: Path, data: LabeledFiles, use_float: bool) -> Evaluation:
    """Run the runtime Classifier (int8, or its float32 reference) over a labelled set."""
    from tqdm import tqdm

    from edge.infer.models import Classifier

    from convert.data.images import read_rgb

    clf = Classifier(manifest_path, use_float=use_float)
    probs, y = [], []
    desc = "evaluating " + ("float32" if use_float else "int8")
    # Both passes meet the same files: the int8 pass alone reports them.
    skipped = Unreadable(f"{desc} on {len(data.files)} images")
    for f, t in tqdm(list(zip(data.files, data.targets)), desc=desc, unit="img", leave=False):
        try:
            img = read_rgb(f)
        except DataError as e:
            skipped.add(e)
            continue
        probs.append(clf.probabilities(img))
        y.append(t)
    p = np.asarray(probs, dtype=np.float32).reshape(-1, len(data.labels))
    n_skipped = skipped.summarize() if not use_float else skipped.count
    return Evaluation(list(data.labels), np.asarray(y, dtype=int), p, n_skipped)


def _plot_roc(ev_float: Evaluation, ev_int8: Evaluation, title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = ev_int8.labels
    # Two classes: one curve of the second class; more: one-vs-rest per class.
    classes = [1] if len(labels) == 2 else list(range(len(labels)))
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=80)
    for i in classes:
        for ev, style, kind in ((ev_float, "--", "float"), (ev_int8, "-", "int8")):
            yi = ev.y_true == i
            if yi.all() or not yi.any():
                continue
            fpr, tpr, _ = roc_curve(yi, ev.probs[:, i])
            ax.plot(fpr, tpr, style, lw=1.2, label=f"{labels[i]} {kind} AUC {auc(fpr, tpr):.3f}")
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _md_table(summary: dict[str, Any], labels: list[str]) -> list[str]:
    lines = ["| true \\ predicted | " + " | ".join(labels) + " |",
             "|---|" + "---|" * len(labels)]
    for t in labels:
        lines.append(f"| {t} | " + " | ".join(str(summary["confusion"][t][p]) for p in labels) + " |")
    lines += ["", "| class | precision | recall | support | ROC AUC |", "|---|---|---|---|---|"]
    for lab in labels:
        pc = summary["per_class"][lab]
        lines.append(f"| {lab} | {_figure(pc['precision'])} | {_figure(pc['recall'])} | {pc['support']} | "
                     f"{_figure(summary['roc_auc'][lab])} |")
    return lines


def _figure(v: float | None) -> str:
    return UNDEFINED if v is None else f"{v:.4g}"


# ---------------------------------------------------------------- finishing


def finish_classifier(model: Any, *, labels: list[str], spec: InputSpec, out: Path | str,
                      calib_files: list[Path], eval_sets: dict[str, LabeledFiles],
                      source: ModelSource, crop_margin: float | None,
                      min_accuracy_drop: float = 1.0, min_agreement: float = DEFAULT_MIN_AGREEMENT,
                      extra_metrics: dict[str, Any] | None = None,
                      output_role: str = "probabilities", seed: int = 0,
                      calib: list[np.ndarray] | None = None, staging: Staging | None = None) -> Manifest:
    """Convert, write models/NAME.{tflite,float32.tflite,json}, report, and gate.

    Everything is written into a temporary folder beside the output and moved into
    place at the end (see convert/report/outputs.py): a failure leaves no partial files.

    Args:
        model: a Keras model (Keras 3 or tf_keras) taking ``spec``-normalized float input.
        labels: class labels in output order.
        spec: the input spec (dtype/quant are filled from the converted model).
        out: models/NAME (suffix ignored).
        calib_files: calibration images (a seeded CALIB_LIMIT of them are used).
        eval_sets: name -> labelled files measured float vs int8 (may be empty).
        source: what the model was made from.
        crop_margin: margin the training crops were cut with.
        min_accuracy_drop: largest allowed accuracy loss int8 vs float, in points,
            over all eval sets pooled (top-1 disagreement on the calibration
            images when there is no eval set).
        min_agreement: smallest allowed int8 vs float32 top-1 agreement on the
            validation crops (the ``val`` set; all eval sets pooled without one;
            the calibration images without any).
        extra_metrics: merged into the manifest's metrics (e.g. training history).
        output_role: "probabilities" (softmax output) or "logits".
        calib: the calibration inputs already read and preprocessed (``calibration_images``),
            so a caller can refuse too few before its own long work.
        staging: the temporary output folder, when the caller made it before its work.

    Returns:
        The manifest written.

    Raises:
        ModelError: conversion failed or is not full-integer.
        DataError: too few calibration images.
        AccuracyGateError: a gate check failed (after writing everything; the manifest's
            ``gate`` records it, so the runtime refuses the model).
    """
    out_dir, name = output_name(out)
    if calib is None:
        calib = calibration_images(calib_files, spec, seed=seed)
    with staging or Staging(out_dir, name) as stage:
        return _finish(model, stage, name, labels=labels, spec=spec, calib=calib, calib_files=calib_files,
                       eval_sets=eval_sets, source=source, crop_margin=crop_margin,
                       min_accuracy_drop=min_accuracy_drop, min_agreement=min_agreement,
                       extra_metrics=extra_metrics, output_role=output_role)


def _finish(model: Any, stage: Staging, name: str, *, labels, spec, calib, calib_files, eval_sets, source,
            crop_margin, min_accuracy_drop, min_agreement, extra_metrics, output_role) -> Manifest:
    int8_path = stage.path(f"{name}.tflite")
    float_path = stage.path(f"{name}.float32.tflite")
    manifest_path = stage.path(f"{name}.json")
    report_dir = stage.path(f"{name}.report")
    report_dir.mkdir()

    log.info("converting to float32 TFLite")
    float_bytes = quantize.to_tflite_float(model)
    ref_inputs = calib[:PARITY_IMAGES]
    diff, ref_scale = quantize.float_parity(model, float_bytes, ref_inputs)
    if diff > PARITY_TOLERANCE * max(1.0, ref_scale):
        raise ModelError(f"the float32 TFLite differs from the Keras model by {diff:.2e} on "
                         f"{len(ref_inputs)} calibration images: the conversion is not faithful")
    float_path.write_bytes(float_bytes)
    log.info("converting to full-integer int8 with %d calibration images", len(calib))
    data = quantize.to_tflite_int8(model, calib, count=len(calib))
    int8_path.write_bytes(data)

    inp, outs = quantize.io_details(data)
    if len(outs) != 1:
        raise UsageError(f"a classifier must have one output, the model has {len(outs)}")
    o = outs[0]
    if int(o["shape"][-1]) != len(labels):
        raise UsageError(f"{len(labels)} labels given but the model outputs {int(o['shape'][-1])} classes")
    spec = spec.model_copy(update={"name": inp["name"], "dtype": quantize.dtype_name(inp),
                                   "quant": quantize.quant_params(inp)})
    manifest = Manifest(
        format_version=FORMAT_VERSION, name=name, task="classify",
        tflite=int8_path.name, sha256=sha256_file(int8_path),
        float_tflite=float_path.name, float_sha256=sha256_file(float_path),
        input=spec,
        outputs=[OutputSpec(name=o["name"], shape=[int(v) for v in o["shape"]], role=output_role,
                            dtype=quantize.dtype_name(o), quant=quantize.quant_params(o))],
        labels=list(labels), crop_margin=crop_margin, source=source,
        metrics=dict(extra_metrics or {}), versions=quantize.tool_versions(),
    )
    write_manifest(manifest, manifest_path)

    # Measure through the runtime, from the manifest just written.
    metrics: dict[str, Any] = {"report": report_dir.name, "size_bytes": int8_path.stat().st_size,
                               "float_size_bytes": float_path.stat().st_size,
                               "calibration_images": len(calib),
                               "float_vs_keras": {"images": len(ref_inputs), "max_abs": round(diff, 7)},
                               "eval": {}}
    md = [f"# {name}: float32 vs int8", "",
          f"Input {spec.width}x{spec.height} {spec.color} {spec.resize}, scale {spec.scale:.6g}, "
          f"mean {spec.mean}, std {spec.std}; labels {', '.join(labels)}; crop margin {crop_margin}.",
          f"int8 model {int8_path.stat().st_size / 1024:.1f} KB, float32 "
          f"{float_path.stat().st_size / 1024:.1f} KB; {len(calib)} calibration images.",
          "Measured with edge.infer.models.Classifier (the runtime code) from the manifest.", ""]
    pooled_f, pooled_q, pooled_same, n_all = 0, 0, 0, 0
    agreement_by_set: dict[str, tuple[int, int]] = {}
    for set_name, ds in eval_sets.items():
        ev_f = evaluate_runtime(manifest_path, ds, use_float=True)
        ev_q = evaluate_runtime(manifest_path, ds, use_float=False)
        sf, sq = ev_f.summary(), ev_q.summary()
        roc_png = report_dir / f"roc_{set_name}.png"
        _plot_roc(ev_f, ev_q, f"{name} on {set_name} (n={len(ev_q.y_true)})", roc_png)
        same = int((ev_f.y_pred == ev_q.y_pred).sum())
        agree = same / len(ev_q.y_true) if len(ev_q.y_true) else float("nan")
        agreement_by_set[set_name] = (same, len(ev_q.y_true))
        metrics["eval"][set_name] = {
            "images": sq["images"], "unreadable_skipped": sq["unreadable_skipped"],
            "float_accuracy": sf["accuracy"], "int8_accuracy": sq["accuracy"],
            "int8_float_agreement": round(agree, 4),
            "per_class_int8": sq["per_class"], "confusion_int8": sq["confusion"],
            "roc_auc_int8": sq["roc_auc"], "roc_png": f"{report_dir.name}/{roc_png.name}",
        }
        (report_dir / f"{set_name}.json").write_text(json.dumps({"float32": sf, "int8": sq}, indent=2) + "\n")
        md += [f"## {set_name} ({sq['images']} images, {sq['unreadable_skipped']} unreadable skipped)", "",
               f"accuracy float32 {sf['accuracy']:.4f}, int8 {sq['accuracy']:.4f} "
               f"(top-1 agreement {agree:.4f})", "", "int8 confusion and per-class figures:", ""]
        md += _md_table(sq, labels)
        md += ["", f"![ROC]({roc_png.name})", ""]
        pooled_f += int((ev_f.y_pred == ev_f.y_true).sum())
        pooled_q += int((ev_q.y_pred == ev_q.y_true).sum())
        pooled_same += same
        n_all += len(ev_q.y_true)

    if n_all:
        drop = 100.0 * (pooled_f - pooled_q) / n_all
        gate_basis = "accuracy over all eval sets"
        if "val" in agreement_by_set:
            same, n = agreement_by_set["val"]
            agree_basis = f"val ({n} validation crops)"
        else:
            same, n = pooled_same, n_all
            agree_basis = f"all eval sets ({n} crops)"
        agreement = same / n if n else float("nan")
    else:
        # No labels: top-1 disagreement bounds the accuracy an int8 model can lose.
        cal_set = LabeledFiles(list(labels), list(calib_files[:CALIB_LIMIT]), [0] * min(len(calib_files), CALIB_LIMIT))
        ev_f = evaluate_runtime(manifest_path, cal_set, use_float=True)
        ev_q = evaluate_runtime(manifest_path, cal_set, use_float=False)
        agreement = float((ev_f.y_pred == ev_q.y_pred).mean()) if len(ev_q.y_true) else float("nan")
        drop = 100.0 * (1.0 - agreement)
        gate_basis = "top-1 disagreement on calibration images (no labelled eval set)"
        agree_basis = f"calibration images ({len(ev_q.y_true)}, no labelled eval set)"
        metrics["calibration_agreement"] = round(agreement, 4)
        md += [f"No labelled evaluation set: int8 vs float32 top-1 agreement on "
               f"{len(ev_q.y_true)} calibration images {agreement:.4f}.", ""]
    gate = Gate.of([
        gate_check("int8_accuracy_drop_points", drop, "<=", min_accuracy_drop, gate_basis),
        gate_check("int8_float_top1_agreement", agreement, ">=", min_agreement, agree_basis),
    ])
    metrics["int8_accuracy_drop_points"] = round(drop, 3)
    metrics["int8_float_top1_agreement"] = None if agreement != agreement else round(agreement, 4)
    metrics["gate"] = {"max_drop_points": min_accuracy_drop, "basis": gate_basis,
                       "min_agreement": min_agreement, "agreement_basis": agree_basis, "passed": gate.passed}
    md += [f"Gate: int8 loses {drop:.2f} accuracy points ({gate_basis}; allowed {min_accuracy_drop}); "
           f"int8 vs float32 top-1 agreement {agreement:.4f} on {agree_basis} (at least {min_agreement}): "
           f"{'passed' if gate.passed else 'FAILED: ' + gate.failures()}.", ""]
    if any(pc["precision"] is None or pc["recall"] is None for ev in metrics["eval"].values()
           for pc in ev["per_class_int8"].values()):
        md += [f"{UNDEFINED}: undefined (precision: the model never predicted that class; recall and ROC "
               "AUC: the set has no image of it).", ""]
    if extra_metrics:
        md += ["## How it was made", "", "```json", json.dumps(extra_metrics, indent=2), "```", ""]
    (report_dir / "report.md").write_text("\n".join(md))

    manifest = manifest.model_copy(update={"metrics": {**manifest.metrics, **metrics}, "gate": gate})
    write_manifest(manifest, manifest_path)
    final_report = stage.final(report_dir.name)
    print(f"wrote {stage.final(int8_path.name)} ({int8_path.stat().st_size / 1024:.1f} KB), "
          f"{float_path.name}, {manifest_path.name}, report in {final_report}")
    for set_name, m in metrics["eval"].items():
        print(f"  {set_name}: {m['images']} images, accuracy float32 {m['float_accuracy']:.4f} "
              f"int8 {m['int8_accuracy']:.4f}, top-1 agreement {m['int8_float_agreement']:.4f}")
    print(f"  gate: {'passed' if gate.passed else 'FAILED'}: int8 loses {drop:.2f} points (max "
          f"{min_accuracy_drop:g}), agreement {agreement:.4f} on {agree_basis} (min {min_agreement:g})")
    if not gate.passed:
        raise AccuracyGateError(
            f"int8 vs float32 gate failed: {gate.failures()}; report written to {final_report}; the "
            f"manifest records the failure, so run and doctor refuse the model (--min-accuracy-drop and "
            f"--min-agreement set the limits)")
    return manifest
