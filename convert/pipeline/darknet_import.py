"""Darknet cfg+weights -> verified full-int8 TFLite + manifest + report (``doorguard convert darknet``).

The steps, in the order ``convert`` runs them:

1. parse: ``darknet.load_network``, ``darknet.read_weights``, ``darknet.read_names``;
2. calibrate: ``calibration_inputs`` (images letterboxed and normalized by edge's
   own ``prepare``, so calibration sees exactly what the Pi feeds);
3. build and quantize: ``to_tflite`` (``darknet.build_keras``, then
   ``quantize.to_tflite_float`` / ``to_tflite_int8``, heads renamed by stride,
   ``quantize.check_full_int8``);
4. the manifest: ``detector_manifest``;
5. verify: ``evaluate`` (both models through edge's Detector: head error,
   int8 vs float agreement, mAP with labels, float vs OpenCV's darknet);
6. gate and report: ``gate_checks``, ``format_report``.

Writes ``OUT.tflite`` (full-integer int8), ``OUT.float32.tflite`` (the float
reference), ``OUT.json`` (the manifest, with the report's figures) and prints the
quantization report. Raises (after writing the report) when int8 agrees with
float less than ``min_agreement`` (F1 at IoU 0.5). The command's flags are in
``convert/pipeline/darknet_cli.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.errors import AccuracyGateError, DataError, ModelError
from edge.manifest import GateCheck, InputSpec, Manifest

DEFAULT_MIN_AGREEMENT = 0.9
# Raw heads of the float TFLite vs OpenCV's darknet: float32 rounding alone gives
# ~1e-4 on yolov3-tiny-sized heads (see tests); a wrong layer gives >> 1e-2.
REFERENCE_TOLERANCE = 1e-3
MAP_SCORE_THRESHOLD = 0.005
# int8 heads are clamped to +-this before quantization (see darknet.build_keras).
DEFAULT_CLIP_LOGITS = 10.0


@dataclass
class ConversionResult:
    """Paths written and the report (also stored in the manifest's metrics)."""

    manifest_path: Path
    tflite_path: Path
    float_path: Path
    report: dict[str, Any] = field(default_factory=dict)


def _stage(msg: str, t0: float) -> None:
    print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)


def _head_details(details: list[dict], shapes: list[list[int]], what: str) -> list[dict]:
    """TFLite output details in head order, matched by shape (``edge.infer.models.map_outputs``)."""
    from edge.infer.models import map_outputs

    by_name = {d["name"]: d for d in details}
    return [by_name[n] for n in map_outputs(by_name, [(None, shape) for shape in shapes], what)]


def head_names(strides: list[int]) -> list[str]:
    """Output names by stride (``head_s8``, ``head_s16``, ``head_s32``); a repeated stride
    gets its head index too (``head_s16_1``)."""
    return [f"head_s{st}" if strides.count(st) == 1 else f"head_s{st}_{k}" for k, st in enumerate(strides)]


def name_heads(data: bytes, net: Any, shapes: list[list[int]], what: str) -> bytes:
    """The TFLite model with its YOLO head outputs renamed by stride (the converter names them
    ``StatefulPartitionedCall_1:0`` ..., in no fixed order)."""
    from convert.tflite import quantize

    _, details = quantize.io_details(data)
    mapped = _head_details(details, shapes, what)
    names = head_names([h.stride for h in net.heads])
    return quantize.rename_outputs(data, {d["name"]: n for d, n in zip(mapped, names)})


def head_shapes(net: Any) -> list[list[int]]:
    """The raw output shape of each YOLO head: 1 x grid x (anchors * (5 + classes))."""
    return [[1, h.grid[0], h.grid[1], len(h.mask) * (5 + h.classes)] for h in net.heads]


def calibration_inputs(calib: Path, net: Any, limit: int, progress: bool
                       ) -> tuple[list[Path], InputSpec, list[np.ndarray], int]:
    """The calibration images, preprocessed as at run time (letterbox + normalization).

    Returns:
        (the image files found, the float input spec, one float tensor per readable
        image, the number of unreadable files skipped).

    Raises:
        DataError: no images, or fewer than ``quantize.check_calib_count`` accepts.
    """
    from edge.infer.preprocess import prepare

    from convert.verify import detect_report

    from convert.tflite import quantize
    from convert.data.images import load_images

    files = detect_report.resolve_images(calib)
    images, _, skipped = load_images(files, limit=limit, seed=0, progress=progress,
                                     desc="reading calibration images")
    quantize.check_calib_count(len(images))
    spec = InputSpec(width=net.width, height=net.height, channels=net.channels, color="RGB",
                     resize="letterbox", pad_value=127.5, scale=1.0 / 255.0, dtype="float32")
    return files, spec, [prepare(img, spec, dtype="float32")[0] for img in images], skipped


def to_tflite(net: Any, wts: Any, representative: list[np.ndarray], float_path: Path, tflite_path: Path, *,
              input_dtype: str, clip_logits: float, progress: bool, t0: float) -> tuple[bytes, bytes]:
    """Build the Keras model, write it as float32 and as full-integer int8 TFLite, heads named by stride.

    Returns:
        (float32 flatbuffer, int8 flatbuffer), as written to ``float_path`` and ``tflite_path``.

    Raises:
        ModelError: a conversion failed or the int8 model is not full-integer.
    """
    from convert.parse import darknet
    from convert.tflite import quantize

    shapes = head_shapes(net)
    _stage("building the Keras model", t0)
    model = darknet.build_keras(net, wts)
    _stage("converting to float32 TFLite", t0)
    float_bytes = name_heads(quantize.to_tflite_float(model), net, shapes, "the float32 model")
    float_path.write_bytes(float_bytes)
    _stage(f"converting to full-integer int8 TFLite ({len(representative)} calibration images"
           + (f", heads clamped to +-{clip_logits:g}" if clip_logits else "") + ")", t0)
    if clip_logits:
        model = darknet.build_keras(net, wts, clip_heads=clip_logits)
    int8_bytes = quantize.to_tflite_int8(model, representative, input_dtype=input_dtype,
                                         count=len(representative), progress=progress)
    int8_bytes = name_heads(int8_bytes, net, shapes, "the int8 model")
    tflite_path.write_bytes(int8_bytes)
    _stage(f"verified full-integer: every op and tensor between input and outputs is int8 "
           f"({len(int8_bytes) / 1024:.0f} KiB int8 vs {len(float_bytes) / 1024:.0f} KiB float32)", t0)
    return float_bytes, int8_bytes


def detector_manifest(name: str, net: Any, spec: InputSpec, labels: list[str], tflite_path: Path,
                      float_path: Path, sources: dict[str, Path], *, score_threshold: float,
                      nms_iou: float) -> Manifest:
    """The manifest of the written int8 model: input and head tensors read off the model itself."""
    from edge.manifest import FORMAT_VERSION, ModelSource, OutputSpec, SourceFile, sha256_file

    from convert.tflite import quantize

    in_detail, out_details = quantize.io_details(tflite_path.read_bytes())
    shapes = head_shapes(net)
    heads_detail = _head_details(out_details, shapes, str(tflite_path))
    spec = spec.model_copy(update={"name": in_detail["name"], "dtype": quantize.dtype_name(in_detail),
                                   "quant": quantize.quant_params(in_detail)})
    outputs = [
        OutputSpec(name=d["name"], shape=shapes[k], role="yolo_head", dtype=quantize.dtype_name(d),
                   quant=quantize.quant_params(d), stride=h.stride, anchors=h.anchors, mask=h.mask,
                   scale_x_y=h.scale_x_y)
        for k, (h, d) in enumerate(zip(net.heads, heads_detail))
    ]
    versions = quantize.tool_versions()
    try:
        import cv2

        versions["opencv"] = cv2.__version__
    except ImportError:  # pragma: no cover - opencv is a core dependency
        pass
    return Manifest(
        format_version=FORMAT_VERSION, name=name, task="detect", tflite=tflite_path.name,
        sha256=sha256_file(tflite_path), float_tflite=float_path.name, float_sha256=sha256_file(float_path),
        input=spec, outputs=outputs, labels=labels, score_threshold=score_threshold, nms_iou=nms_iou,
        source=ModelSource(kind="darknet", files={k: SourceFile(path=str(p), sha256=sha256_file(p))
                                                  for k, p in sources.items()}),
        versions=versions,
    )


def convert(cfg: Path, weights: Path, names: Path, calib: Path, out: Path,
            input_size: tuple[int, int] | None = None, val: Path | None = None,
            min_agreement: float = DEFAULT_MIN_AGREEMENT, input_dtype: str = "int8",
            calib_limit: int = 500, report_limit: int = 300, score_threshold: float = 0.25,
            nms_iou: float = 0.45, reference_images: int = 8, progress: bool = True,
            clip_logits: float = DEFAULT_CLIP_LOGITS) -> ConversionResult:
    """Convert, verify, report. See the module docstring.

    Raises:
        DataError: bad cfg/weights/names/images.
        ModelError: conversion failed, the model is not full-int8, or the float
            model disagrees with OpenCV's darknet.
        AccuracyGateError: int8 vs float F1 below ``min_agreement`` (files and
            report are written first).
    """
    from edge.manifest import Gate, write_manifest

    from convert.parse import darknet
    from convert.report.outputs import Staging, output_name

    t0 = time.monotonic()
    sources = {"cfg": cfg, "weights": weights, "names": names}
    for label, path in sources.items():
        if not path.is_file():
            raise DataError(f"{label} file not found: {path}")
    out_dir, name = output_name(Path(str(out).removesuffix(".tflite").removesuffix(".json")))
    # Made first: it checks that --out is writable; everything is moved into place at the end.
    with Staging(out_dir, name) as stage:
        net = darknet.load_network(cfg, input_size)
        header, wts = darknet.read_weights(weights, net)
        classes = net.heads[0].classes
        labels = darknet.read_names(names, classes)
        _stage(f"{cfg.name}: {len(net.layers)} layers, {len(net.heads)} yolo heads, input "
               f"{net.width}x{net.height}, {classes} classes; weights v{header.major}.{header.minor}."
               f"{header.revision} (seen {header.seen})", t0)

        calib_files, spec, representative, skipped = calibration_inputs(calib, net, calib_limit, progress)
        tflite_path = stage.path(f"{name}.tflite")
        float_path = stage.path(f"{name}.float32.tflite")
        manifest_path = stage.path(f"{name}.json")

        float_bytes, int8_bytes = to_tflite(net, wts, representative, float_path, tflite_path,
                                            input_dtype=input_dtype, clip_logits=clip_logits,
                                            progress=progress, t0=t0)
        manifest = detector_manifest(name, net, spec, labels, tflite_path, float_path, sources,
                                     score_threshold=score_threshold, nms_iou=nms_iou)
        write_manifest(manifest, manifest_path)

        report = evaluate(manifest_path, net, cfg, weights, calib_files if val is None else None, val,
                          report_limit, reference_images, progress, t0, clip_logits)
        report["calibration"] = {"source": str(calib), "images": len(representative),
                                 "skipped_unreadable": skipped}
        report["sizes_bytes"] = {"int8": len(int8_bytes), "float32": len(float_bytes)}
        report["min_agreement"] = min_agreement
        report["seconds"] = round(time.monotonic() - t0, 1)
        manifest.metrics = report
        parity = report.get("reference")
        if parity and parity.get("max_abs") is not None and parity["max_abs"] > REFERENCE_TOLERANCE:
            print(format_report(report, name))
            raise ModelError(
                f"float model differs from OpenCV's darknet by {parity['max_abs']:.2e} (> "
                f"{REFERENCE_TOLERANCE:g}) on the raw heads: the conversion is not faithful; nothing written"
            )
        manifest.gate = Gate.of(gate_checks(report, min_agreement))
        report["gate"] = manifest.gate.model_dump(mode="json")
        write_manifest(manifest, manifest_path)
        print(format_report(report, name))
        final = {k: stage.final(p.name) for k, p in (("int8", tflite_path), ("float", float_path),
                                                     ("manifest", manifest_path))}
        print(f"wrote {final['int8']}, {final['float']}, {final['manifest']} in {report['seconds']:.1f}s", flush=True)
        if not manifest.gate.passed:
            f1 = report["agreement"]["f1"]
            raise AccuracyGateError(
                f"int8 vs float detection F1 {f1:.3f} is below --min-agreement {min_agreement:g} (report "
                f"written to {final['manifest']}, which records the failed gate: run and doctor refuse "
                f"the model)"
            )
        return ConversionResult(final["manifest"], final["int8"], final["float"], report)


def gate_checks(report: dict[str, Any], min_agreement: float) -> list[GateCheck]:
    """The gate: int8 vs float32 detection F1, and float vs OpenCV's darknet where it was measured."""
    from edge.manifest import gate_check

    checks = [gate_check("int8_float_detection_f1", report["agreement"]["f1"], ">=", min_agreement,
                         f"int8 vs float32 detections (IoU 0.5, same class) on {report['evaluation']['source']}")]
    parity = report.get("reference")
    if parity and parity.get("max_abs") is not None:
        checks.append(gate_check("float_vs_opencv_max_abs", parity["max_abs"], "<=", REFERENCE_TOLERANCE,
                                 f"raw heads on {parity['images']} images"))
    return checks


def evaluate(manifest_path: Path, net: Any, cfg: Path, weights: Path, calib_files: list[Path] | None,
             val: Path | None, limit: int, reference_images: int, progress: bool,
             t0: float, clip_logits: float | None = None) -> dict[str, Any]:
    """Run float and int8 through edge's Detector; head error, agreement, mAP, OpenCV parity."""
    from edge.infer import yolo
    from edge.infer.models import Detector

    from convert.parse import darknet

    from convert.verify import detect_report
    from convert.verify.detect_report import Boxes
    from convert.data.images import load_images

    files = detect_report.resolve_images(val) if val is not None else list(calib_files or [])
    images, paths, skipped = load_images(files, limit=limit, seed=1, progress=progress,
                                         desc="reading evaluation images")
    if not images:
        raise DataError(f"no readable evaluation images in {val}")
    where = f"{val}" if val is not None else "the calibration images (no --val given)"
    _stage(f"evaluating int8 vs float on {len(images)} images from {where}", t0)
    det_q = Detector(manifest_path, num_threads=2)
    det_f = Detector(manifest_path, num_threads=2, use_float=True)
    m = det_q.manifest
    scales = {o.name: o.quant.scale for o in det_q.heads if o.quant}

    def decode(det: Any, heads: dict[str, np.ndarray], tf: Any, thr: float) -> Boxes:
        raw = yolo.decode(heads, det.heads, len(m.labels), m.input.width, m.input.height, tf, thr,
                          det.nms_iou)
        return Boxes(raw.boxes, raw.scores, raw.class_ids)

    float_heads, int8_heads = [], []
    dets_f, dets_q, low_f, low_q = [], [], [], []
    ref_inputs: list[np.ndarray] = []
    ref_float: list[dict[str, np.ndarray]] = []  # unclamped float heads of ref_inputs
    from tqdm import tqdm

    for img in tqdm(images, desc="float vs int8", unit="img", disable=not progress):
        xf, tf = det_f.preprocess(img)
        xq, _ = det_q.preprocess(img)
        hf, hq = det_f.infer(xf), det_q.infer(xq)
        # head error is measured against the float model clamped like the int8 one
        float_heads.append({k: np.clip(v, -clip_logits, clip_logits) for k, v in hf.items()}
                           if clip_logits else hf)
        int8_heads.append(hq)
        dets_f.append(decode(det_f, hf, tf, det_f.score_threshold))
        dets_q.append(decode(det_q, hq, tf, det_q.score_threshold))
        low_f.append(decode(det_f, hf, tf, MAP_SCORE_THRESHOLD))
        low_q.append(decode(det_q, hq, tf, MAP_SCORE_THRESHOLD))
        if len(ref_inputs) < reference_images:
            ref_inputs.append(xf[0])
            ref_float.append(hf)

    report: dict[str, Any] = {
        "evaluation": {"source": where, "images": len(images), "skipped_unreadable": skipped,
                       "score_threshold": det_q.score_threshold, "nms_iou": det_q.nms_iou},
        "head_error": detect_report.head_errors(float_heads, int8_heads, scales),
        "int8_head_clip": clip_logits or None,
        "agreement": detect_report.agreement(dets_q, dets_f, iou=0.5),
        "detections": {"float": int(sum(len(d) for d in dets_f)), "int8": int(sum(len(d) for d in dets_q))},
    }
    if val is not None:
        truths, unknown, missing = [], set(), 0
        for img, path in zip(images, paths):
            label = detect_report.find_label(path)
            if label is None:
                missing += 1
                truths.append(None)
                continue
            gt, unk = detect_report.read_labels(label, m.labels, (img.shape[1], img.shape[0]))
            unknown |= unk
            truths.append(gt)
        have = [i for i, t in enumerate(truths) if t is not None]
        if not have:
            report["map"] = {"skipped": f"no VOC xml / YOLO txt labels found for the images in {val}"}
        elif unknown and all(len(truths[i]) == 0 for i in have):
            report["map"] = {"skipped": f"label classes {sorted(unknown)[:5]} do not match the model's labels"}
        else:
            tr = [truths[i] for i in have]
            mf = detect_report.mean_average_precision([low_f[i] for i in have], tr, m.labels)
            mq = detect_report.mean_average_precision([low_q[i] for i in have], tr, m.labels)
            report["map"] = {"iou": 0.5, "float": mf["map"], "int8": mq["map"],
                             "per_class_float": mf["per_class"], "per_class_int8": mq["per_class"],
                             "gt_boxes": mf["gt_boxes"], "images": len(have),
                             "images_without_labels": missing,
                             "one_class_all_objects": len(m.labels) == 1,
                             "ignored_label_classes": sorted(unknown)}
    if ref_inputs:
        _stage(f"checking the float model against OpenCV's darknet on {len(ref_inputs)} images", t0)
        try:
            ref = darknet.opencv_heads(cfg, weights, net, np.stack(ref_inputs))
        except DataError as e:
            report["reference"] = {"skipped": str(e)}
        else:
            diffs = [float(np.abs(r - np.concatenate([h[o.name] for h in ref_float])).max())
                     for r, o in zip(ref, det_f.heads)]
            import cv2

            report["reference"] = {"opencv": cv2.__version__, "images": len(ref_inputs),
                                   "max_abs": round(max(diffs), 7),
                                   "per_head_max_abs": {o.name: round(d, 7) for o, d in zip(det_f.heads, diffs)}}
    return report


def _measured_or_skipped(part: dict[str, Any], what: str, measured: Callable[[dict[str, Any]], str]) -> str:
    """One report line: ``WHAT: skipped: WHY`` when the measurement was skipped, else ``measured(part)``."""
    return f"  {what}: skipped: {part['skipped']}" if "skipped" in part else measured(part)


def _map_line(mp: dict[str, Any]) -> str:
    note = " (every labelled object counts as the model's one class)" if mp["one_class_all_objects"] else ""
    return (f"  mAP@0.5 vs ground truth ({mp['gt_boxes']} boxes, {mp['images']} images){note}: "
            f"float {mp['float']:.4f}  int8 {mp['int8']:.4f}")


def _reference_line(ref: dict[str, Any]) -> str:
    return (f"  float vs OpenCV {ref['opencv']} darknet, raw heads on {ref['images']} images: "
            f"max abs diff {ref['max_abs']:.2e}")


def format_report(r: dict[str, Any], name: str) -> str:
    """The report as plain text."""
    lines = [f"", f"Quantization report: {name}"]
    ev = r["evaluation"]
    lines.append(f"  evaluated on {ev['images']} images from {ev['source']} (score >= {ev['score_threshold']},"
                 f" NMS IoU {ev['nms_iou']})")
    clip = r.get("int8_head_clip")
    lines.append("  per-head output error, int8 vs float" + (f" (int8 heads clamped to +-{clip:g}; float "
                                                             f"clamped alike for this table)" if clip else "") + ":")
    lines.append(f"    {'output':32s} {'max LSB':>8s} {'mean LSB':>9s} {'max abs':>9s} {'mean abs':>9s} {'|float| max':>11s}")
    for k, e in r["head_error"].items():
        lines.append(f"    {k:32s} {e['max_lsb']:8.1f} {e['mean_lsb']:9.3f} {e['max_abs']:9.4f} "
                     f"{e['mean_abs']:9.4f} {e['float_range']:11.2f}")
    a = r["agreement"]
    lines.append(f"  detection agreement int8 vs float (IoU 0.5, same class): precision {a['precision']:.3f} "
                 f"recall {a['recall']:.3f} F1 {a['f1']:.3f}  (tp {a['tp']}, fp {a['fp']}, fn {a['fn']}; "
                 f"float found {r['detections']['float']} boxes)")
    if r.get("map"):
        lines.append(_measured_or_skipped(r["map"], "mAP@0.5", _map_line))
    if r.get("reference"):
        lines.append(_measured_or_skipped(r["reference"], "float vs OpenCV darknet", _reference_line))
    if "sizes_bytes" in r:
        s = r["sizes_bytes"]
        lines.append(f"  size: int8 {s['int8'] / 1024:.0f} KiB, float32 {s['float32'] / 1024:.0f} KiB "
                     f"({s['int8'] / s['float32']:.2f}x)")
    gate = r.get("gate")
    if gate:
        lines.append("  gate: " + ("passed" if gate["passed"] else "FAILED") + ": " + "; ".join(
            f"{c['metric']} {'unmeasured' if c['value'] is None else format(c['value'], '.4g')} "
            f"(must be {c['op']} {c['threshold']:g})" for c in gate["checks"]))
    if "calibration" in r:
        c = r["calibration"]
        lines.append(f"  calibrated on {c['images']} images from {c['source']}"
                     + (f" ({c['skipped_unreadable']} unreadable skipped)" if c["skipped_unreadable"] else ""))
    return "\n".join(lines)
