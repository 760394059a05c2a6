"""``doorguard convert onnx``: an ONNX image classifier -> verified int8 TFLite + manifest.

The route (chosen by measurement, README "Importing PyTorch and ONNX
classifiers"): the ONNX graph is rebuilt as an NHWC Keras model
(``convert/parse/onnx_graph.py``), checked against the original framework on real
calibration crops, then finished exactly as ``convert keras`` and ``train
classifier`` are (``convert/pipeline/classifier.py``: float32 + full-int8 TFLite through
``TFLiteConverter.from_keras_model``, every op checked int8, the manifest,
float vs int8 report, accuracy gate).

On top of that report, the int8 model (run by ``edge.infer.models.Classifier``, the
Pi's code) is compared with the original framework itself: onnxruntime here,
torch for ``convert torch``. Top-1 agreement, the largest probability
difference and, with ``--val``, accuracy go into the manifest, the report and
the gate (exit 9 below it), with the count of TRANSPOSE ops at the int8 model's
input and output (must be 0).

The manifest carries the model's own preprocessing. ONNX files say nothing
about it: the default is torchvision's (RGB, x/255, ImageNet mean/std,
stretched crops), logged as an assumption; ``--preprocess``/``--mean``/``--std``
set it.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.errors import AccuracyGateError, DataError, ModelError, UsageError, first_line
from edge.manifest import Gate, InputSpec, ModelSource, SourceFile, gate_check, load_manifest, sha256_file, \
    write_manifest

from convert.pipeline.classifier import (
    CALIB_LIMIT,
    DEFAULT_MIN_AGREEMENT,
    LabeledFiles,
    calibration_files,
    calibration_images,
    finish_classifier,
    folder_set,
)
from convert.pipeline.classifier_args import PRESETS, add_classifier_arguments, classifier_kwargs, parse_labels, parse_size
from convert.parse.onnx_graph import KerasGraph, build_keras, load_onnx
from convert.report.outputs import Staging, output_name

log = logging.getLogger(__name__)

#: The Keras rebuild must reproduce the original framework to within this much on the
#: calibration inputs (times the largest output when above 1: logits).
REFERENCE_PARITY_IMAGES = 8
REFERENCE_PARITY_TOLERANCE = 1e-3


@dataclass
class Reference:
    """The original framework, as a function of one preprocessed NHWC float32 batch."""

    name: str  # e.g. "onnxruntime 1.31.1"
    run: Callable[[np.ndarray], np.ndarray]  # [1, H, W, 3] float32 -> [1, classes] raw output
    version: str = ""


@dataclass
class Preprocessing:
    """What the manifest's input block says, and where it came from."""

    scale: float
    mean: list[float]
    std: list[float]
    how: str


def choose_preprocessing(preprocess: str | None, scale: float | None, mean: list[float] | None,
                         std: list[float] | None, default: str = "imagenet",
                         default_how: str = "assumed torchvision's ImageNet normalization") -> Preprocessing:
    """The normalization to write into the manifest (flags over the preset over the default).

    A mean or std above 1 without ``--scale`` is taken as given on 0..255 pixels (as many
    ONNX model zoos write 123.675,116.28,103.53): the scale is then 1.

    Raises:
        UsageError: an unknown preset, or a mean/std that is not three values with std non-zero.
    """
    if preprocess and preprocess not in PRESETS:
        raise UsageError(f"--preprocess must be one of {', '.join(sorted(PRESETS))}")
    name = preprocess or default
    sc, mn, sd = PRESETS[name]
    how = f"--preprocess {preprocess}" if preprocess else default_how
    if not preprocess and mean is None and std is None and scale is None:
        log.warning("preprocessing not given: %s (RGB, pixel/255, mean %s, std %s); pass --preprocess or "
                    "--mean/--std if the model was trained otherwise", default_how, mn, sd)
    if mean is not None or std is not None:
        how = "flags"
        mn = mean if mean is not None else mn
        sd = std if std is not None else sd
        if scale is None and max(abs(v) for v in list(mn) + list(sd)) > 1.5:
            sc = 1.0
            log.info("--mean/--std are on 0..255 pixels: scale 1")
    if scale is not None:
        sc, how = scale, "flags"
    if len(mn) != 3 or len(sd) != 3 or any(v == 0 for v in sd):
        raise UsageError("--mean and --std need three values, std non-zero")
    return Preprocessing(float(sc), [float(v) for v in mn], [float(v) for v in sd], how)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    e = np.exp(z - z.max())
    return (e / e.sum()).astype(np.float32)


def onnxruntime_reference(model_bytes: bytes, input_name: str, layout: str) -> Reference:
    """onnxruntime (CPU) on the original ONNX model.

    Raises:
        ModelError: onnxruntime missing or refusing the model.
    """
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ModelError("convert onnx needs onnxruntime (the reference it checks against): "
                         "pip install 'doorguard[onnx]'") from e
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])
    except Exception as e:
        raise ModelError(f"onnxruntime cannot run the model: {first_line(e)}") from e

    def run(x: np.ndarray) -> np.ndarray:
        feed = np.ascontiguousarray(x.transpose(0, 3, 1, 2) if layout == "nchw" else x, dtype=np.float32)
        return np.asarray(sess.run(None, {input_name: feed})[0], dtype=np.float32)

    return Reference(f"onnxruntime {ort.__version__}", run, ort.__version__)


def check_reference_parity(graph: KerasGraph, reference: Reference, inputs: list[np.ndarray]) -> dict:
    """The Keras rebuild against the original framework on calibration inputs.

    Returns:
        {"images", "max_abs", "max_output"}.

    Raises:
        ModelError: they differ by more than REFERENCE_PARITY_TOLERANCE (a layout or op bug).
    """
    worst, scale = 0.0, 0.0
    for x in inputs:
        ref = reference.run(x).reshape(1, -1)
        got = np.asarray(graph.model(x, training=False), dtype=np.float32).reshape(1, -1)
        if ref.shape != got.shape:
            raise ModelError(f"the rebuilt model outputs {got.shape[1]} values, {reference.name} "
                             f"{ref.shape[1]}")
        if "LogSoftmax" in " ".join(graph.notes):  # the rebuild keeps logits; compare probabilities
            ref, got = _softmax(ref)[None], _softmax(got)[None]
        worst = max(worst, float(np.abs(ref - got).max()))
        scale = max(scale, float(np.abs(ref).max()))
    if worst > REFERENCE_PARITY_TOLERANCE * max(1.0, scale):
        raise ModelError(f"the TensorFlow rebuild differs from {reference.name} by {worst:.2e} (largest output "
                         f"{scale:.3g}) on {len(inputs)} calibration images: the import is not faithful")
    log.info("TensorFlow rebuild vs %s: max |diff| %.2e on %d calibration images", reference.name, worst,
             len(inputs))
    return {"images": len(inputs), "max_abs": round(worst, 8), "max_output": round(scale, 4)}


def io_transposes(tflite_path: Path) -> dict[str, int]:
    """TRANSPOSE ops in a TFLite model: in all, reading the model input, writing the model output."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(tflite_path), experimental_op_resolver_type=tf.lite.experimental
                                 .OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)  # the model's own ops
    interp.allocate_tensors()
    ins = {d["index"] for d in interp.get_input_details()}
    outs = {d["index"] for d in interp.get_output_details()}
    total = at_io = 0
    for op in interp._get_ops_details():
        if op["op_name"] != "TRANSPOSE":
            continue
        total += 1
        if ins & set(op["inputs"]) or outs & set(op["outputs"]):
            at_io += 1
    return {"total": total, "at_input_or_output": at_io}


def compare_with_reference(manifest_path: Path, reference: Reference, data: LabeledFiles,
                           labelled: bool) -> dict[str, Any]:
    """int8 (and float32 TFLite) through the runtime vs the original framework, image by image.

    Returns:
        images, top-1 agreement, max/mean probability difference, and accuracies when labelled.
    """
    from tqdm import tqdm

    from edge.infer.models import Classifier
    from edge.infer.preprocess import prepare

    from convert.data.images import Unreadable, read_rgb

    q = Classifier(manifest_path)
    f = Classifier(manifest_path, use_float=True)
    spec = q.manifest.input
    role = q.output.role
    ref_p, q_p, f_p, y = [], [], [], []
    skipped = Unreadable(f"comparing with {reference.name}")
    for path, t in tqdm(list(zip(data.files, data.targets)), desc=f"int8 vs {reference.name}", unit="img",
                        leave=False):
        try:
            img = read_rgb(path)
        except DataError as e:
            skipped.add(e)
            continue
        x, _ = prepare(img, spec, dtype="float32")
        raw = reference.run(x.astype(np.float32))
        ref_p.append(_softmax(raw) if role == "logits" else raw.reshape(-1))
        q_p.append(q.probabilities(img))
        f_p.append(f.probabilities(img))
        y.append(t)
    skipped.summarize()
    if not y:
        raise DataError(f"no readable image to compare the int8 model with {reference.name}")
    r, qq, ff, yy = (np.asarray(v, dtype=np.float32) for v in (ref_p, q_p, f_p, y))
    out: dict[str, Any] = {
        "framework": reference.name,
        "images": int(len(yy)),
        "int8_top1_agreement": round(float((r.argmax(1) == qq.argmax(1)).mean()), 4),
        "int8_max_prob_diff": round(float(np.abs(r - qq).max()), 4),
        "int8_mean_prob_diff": round(float(np.abs(r - qq).mean()), 5),
        "float32_top1_agreement": round(float((r.argmax(1) == ff.argmax(1)).mean()), 4),
        "float32_max_prob_diff": round(float(np.abs(r - ff).max()), 6),
    }
    if labelled:
        out["framework_accuracy"] = round(float((r.argmax(1) == yy).mean()), 4)
        out["int8_accuracy"] = round(float((qq.argmax(1) == yy).mean()), 4)
    return out


def import_graph(graph: KerasGraph, reference: Reference, *, labels: list[str], calib: Path | str,
                 out: Path | str, stage: Staging, source: ModelSource, conversion: dict[str, Any],
                 val: Path | str | None, pre: Preprocessing, color: str, resize: str,
                 crop_margin: float | None, min_accuracy_drop: float, min_agreement: float):
    """Shared end of ``convert onnx`` and ``convert torch``: parity, finish, reference report, gate.

    Raises:
        UsageError: label count mismatch. ModelError: an unfaithful rebuild or conversion.
        DataError: calibration/validation images. AccuracyGateError: below the gate (files written).
    """
    if graph.classes != len(labels):
        raise UsageError(f"{len(labels)} labels given ({', '.join(labels)}) but the model outputs "
                         f"{graph.classes} classes")
    spec = InputSpec(width=graph.width, height=graph.height, color=color, resize=resize, scale=pre.scale,
                     mean=pre.mean, std=pre.std, dtype="int8")
    log.info("preprocessing: %dx%d %s %s, scale %.6g mean %s std %s (%s)", spec.width, spec.height, color,
             resize, spec.scale, spec.mean, spec.std, pre.how)
    eval_sets = {"val": folder_set(val, labels)} if val is not None else {}
    files = calibration_files(calib)
    calib_inputs = calibration_images(files, spec)
    parity = check_reference_parity(graph, reference, calib_inputs[:REFERENCE_PARITY_IMAGES])
    conv = {**conversion, "preprocessing": pre.how, "output": graph.output_role, "onnx_ops": graph.ops,
            "rebuild_vs_framework": parity, "route": "ONNX graph -> NHWC Keras (convert/parse/onnx_graph.py) -> "
            "TFLiteConverter full int8"}
    if graph.notes:
        conv["notes"] = graph.notes
    gate_error: AccuracyGateError | None = None
    try:
        finish_classifier(graph.model, labels=labels, spec=spec, out=out, calib_files=files, calib=calib_inputs,
                          staging=stage, eval_sets=eval_sets, source=source, crop_margin=crop_margin,
                          min_accuracy_drop=min_accuracy_drop, min_agreement=min_agreement,
                          extra_metrics={"conversion": conv}, output_role=graph.output_role)
    except AccuracyGateError as e:
        gate_error = e
    out_dir, name = output_name(out)
    manifest_path = out_dir / f"{name}.json"
    return _reference_report(manifest_path, reference, labels, eval_sets, files, min_accuracy_drop,
                             min_agreement, gate_error)


def _reference_report(manifest_path: Path, reference: Reference, labels: list[str],
                      eval_sets: dict[str, LabeledFiles], calib_files: list[Path], min_accuracy_drop: float,
                      min_agreement: float, gate_error: AccuracyGateError | None):
    """Compare int8 with the original framework; add it to the manifest, report and gate."""
    m = load_manifest(manifest_path)
    labelled = "val" in eval_sets
    data = eval_sets["val"] if labelled else LabeledFiles(list(labels), list(calib_files[:CALIB_LIMIT]),
                                                         [0] * min(len(calib_files), CALIB_LIMIT))
    basis = f"{'val' if labelled else 'calibration'} crops vs {reference.name}"
    cmp = compare_with_reference(manifest_path, reference, data, labelled)
    tr = io_transposes(manifest_path.parent / m.tflite)
    cmp["transposes"] = tr
    checks = list(m.gate.checks) if m.gate else []
    checks.append(gate_check("int8_framework_top1_agreement", cmp["int8_top1_agreement"], ">=", min_agreement,
                             basis))
    if labelled:
        drop = 100.0 * (cmp["framework_accuracy"] - cmp["int8_accuracy"])
        cmp["int8_accuracy_drop_points"] = round(drop, 3)
        checks.append(gate_check("int8_framework_accuracy_drop_points", drop, "<=", min_accuracy_drop, basis))
    checks.append(gate_check("transposes_at_io", tr["at_input_or_output"], "<=", 0, "int8 TFLite ops"))
    gate = Gate.of(checks)
    metrics = {**m.metrics, "framework": cmp}
    if isinstance(metrics.get("gate"), dict):
        metrics["gate"] = {**metrics["gate"], "passed": gate.passed}
    write_manifest(m.model_copy(update={"metrics": metrics, "gate": gate}), manifest_path)

    report = manifest_path.parent / str(m.metrics.get("report", f"{m.name}.report")) / "report.md"
    lines = ["", f"## int8 vs the original framework ({reference.name})", "",
             f"{cmp['images']} {'validation' if labelled else 'calibration'} crops, preprocessed by "
             f"edge.infer.preprocess and run through edge.infer.models.Classifier (int8, float32) and {reference.name}.", "",
             "| | top-1 agreement with the framework | max prob diff |", "|---|---|---|",
             f"| int8 | {cmp['int8_top1_agreement']:.4f} | {cmp['int8_max_prob_diff']:.4f} |",
             f"| float32 TFLite | {cmp['float32_top1_agreement']:.4f} | {cmp['float32_max_prob_diff']:.2e} |", ""]
    if labelled:
        lines += [f"Accuracy: {reference.name} {cmp['framework_accuracy']:.4f}, int8 {cmp['int8_accuracy']:.4f} "
                  f"({cmp['int8_accuracy_drop_points']:+.2f} points lost; allowed {min_accuracy_drop}).", ""]
    lines += [f"TRANSPOSE ops in the int8 model: {tr['total']} ({tr['at_input_or_output']} at its input or "
              f"output).", "",
              f"Gate with the framework checks: {'passed' if gate.passed else 'FAILED: ' + gate.failures()}.", ""]
    if report.is_file():
        with report.open("a") as fh:
            fh.write("\n".join(lines))
    acc = (f", accuracy {reference.name.split()[0]} {cmp['framework_accuracy']:.4f} int8 {cmp['int8_accuracy']:.4f}"
           if labelled else "")
    print(f"  int8 vs {reference.name} on {cmp['images']} {'val' if labelled else 'calibration'} crops: top-1 "
          f"agreement {cmp['int8_top1_agreement']:.4f}, max prob diff {cmp['int8_max_prob_diff']:.4f}{acc}; "
          f"{tr['at_input_or_output']} transposes at input/output")
    if not gate.passed:
        raise AccuracyGateError(
            f"gate failed: {gate.failures()}; report written to {report.parent}; the manifest records the "
            f"failure, so run and doctor refuse the model (--min-accuracy-drop and --min-agreement set the "
            f"limits)") from gate_error
    return load_manifest(manifest_path)


def convert_onnx(model_path: Path | str, labels: list[str], calib: Path | str, out: Path | str, *,
                 val: Path | str | None = None, size: tuple[int, int] | None = None, layout: str = "nchw",
                 preprocess: str | None = None, scale: float | None = None, mean: list[float] | None = None,
                 std: list[float] | None = None, color: str = "RGB", resize: str = "stretch",
                 crop_margin: float | None = 0.15, min_accuracy_drop: float = 1.0,
                 min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """The whole ``convert onnx`` command; returns the manifest written.

    Raises:
        ModelError, DataError, UsageError, AccuracyGateError.
    """
    labels = parse_labels(",".join(labels))
    pre = choose_preprocessing(preprocess, scale, mean, std)
    out_dir, name = output_name(out)
    with Staging(out_dir, name) as stage:
        model_path = Path(model_path)
        proto = load_onnx(model_path)
        graph = build_keras(proto, layout=layout, size=size)
        reference = onnxruntime_reference(proto.SerializeToString(), graph.input_name, layout)
        import onnx

        conversion = {"model": str(model_path), "format": "onnx", "layout": layout,
                      "opset": max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
                                   default=0),
                      "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
                      "onnx": onnx.__version__, "onnxruntime": reference.version}
        source = ModelSource(kind="onnx", files={"model": SourceFile(path=str(model_path),
                                                                     sha256=sha256_file(model_path))})
        return import_graph(graph, reference, labels=labels, calib=calib, out=out, stage=stage, source=source,
                            conversion=conversion, val=val, pre=pre, color=color, resize=resize,
                            crop_margin=crop_margin, min_accuracy_drop=min_accuracy_drop,
                            min_agreement=min_agreement)


# ---------------------------------------------------------------- command line


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``convert onnx`` and ``convert torch`` (``add_classifier_arguments``)."""
    add_classifier_arguments(
        p, val_help="labelled folder (DIR/<label>/*): float, int8 and framework accuracy",
        preprocess_help="normalization preset (default imagenet: RGB, pixel/255, ImageNet mean/std, as torchvision)",
        per_channel_help="one value or three; above 1: on 0..255 pixels", against="float32 or the framework")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help="the .onnx file")
    add_common_arguments(p)
    p.add_argument("--input", help="input size WxH when the model's is dynamic (must match a fixed one)")
    p.add_argument("--layout", choices=["nchw", "nhwc"], default="nchw",
                   help="the ONNX input's layout: nchw (PyTorch export, default) or nhwc (e.g. tf2onnx)")


def main(args: argparse.Namespace) -> int:
    convert_onnx(args.model, parse_labels(args.labels), args.calib, args.out, size=parse_size(args.input),
                 layout=args.layout, **classifier_kwargs(args))
    return 0

