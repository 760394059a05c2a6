"""``doorguard convert darknet``: darknet cfg+weights -> verified full-int8 TFLite + manifest + report.

Writes ``OUT.tflite`` (full-integer int8), ``OUT.float32.tflite`` (the float
reference), ``OUT.json`` (the manifest, with the report's figures) and prints
the quantization report. Exits non-zero (after writing the report) when int8
agrees with float less than ``--min-agreement`` (F1 at IoU 0.5).

The report runs both models through edge's own Detector (preprocess, invoke,
decode, NMS), so it measures exactly what the Pi computes.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import AccuracyGateError, DataError, ModelError, UsageError

log = logging.getLogger(__name__)

DEFAULT_MIN_AGREEMENT = 0.9
# Raw heads of the float TFLite vs OpenCV's darknet: float32 rounding alone gives
# ~1e-4 on yolov3-tiny-sized heads (see tests); a wrong layer gives >> 1e-2.
REFERENCE_TOLERANCE = 1e-3
MAP_SCORE_THRESHOLD = 0.005
# int8 heads are clamped to +-this before quantization (see darknet.build_keras).
DEFAULT_CLIP_LOGITS = 10.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard convert darknet``."""
    p.add_argument("--cfg", required=True, type=Path, help="darknet .cfg file")
    p.add_argument("--weights", required=True, type=Path, help="darknet .weights file")
    p.add_argument("--names", required=True, type=Path, help="class names, one per line")
    p.add_argument("--calib", required=True, type=Path,
                   help="calibration images: a folder, or a list file (paths or stems, e.g. train.txt)")
    p.add_argument("--out", required=True, type=Path, help="output prefix, e.g. models/NAME")
    p.add_argument("--input", metavar="WxH", help="input size (default: the cfg's width x height)")
    p.add_argument("--val", type=Path,
                   help="evaluation images (folder or list file); with VOC xml or YOLO txt labels "
                        "also mAP@0.5 float vs int8")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help=f"fail when int8 vs float detection F1 is below this (default {DEFAULT_MIN_AGREEMENT})")
    p.add_argument("--input-dtype", choices=("int8", "uint8"), default="int8",
                   help="int8 model input type (default int8)")
    p.add_argument("--calib-limit", type=int, default=500,
                   help="use at most this many calibration images (seeded draw; default 500)")
    p.add_argument("--report-limit", type=int, default=300,
                   help="evaluate on at most this many images (default 300)")
    p.add_argument("--score-threshold", type=float, default=0.25,
                   help="detection score threshold for the agreement and the manifest (default 0.25)")
    p.add_argument("--nms-iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--clip-logits", type=float, default=DEFAULT_CLIP_LOGITS,
                   help="clamp the int8 model's raw head outputs to +-this before quantization, for a "
                        f"finer output scale (default {DEFAULT_CLIP_LOGITS:g}; 0 keeps the raw range)")
    p.add_argument("--reference-images", type=int, default=8,
                   help="images for the float-vs-OpenCV parity check (0 skips it; default 8)")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'416x256' -> (416, 256)."""
    if text is None:
        return None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"--input must look like WIDTHxHEIGHT (e.g. 416x416), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise UsageError(f"--input must be positive, got {text!r}")
    return w, h


def read_names(path: Path) -> list[str]:
    """Class names, one per line (blank lines ignored)."""
    try:
        names = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DataError(f"names file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"names file {path} is unreadable: {e}") from e
    if not names:
        raise DataError(f"names file {path} is empty")
    return names


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
    """TFLite output details in head order, matched by shape (``edge.models.map_outputs``)."""
    from edge.models import map_outputs

    by_name = {d["name"]: d for d in details}
    return [by_name[n] for n in map_outputs(by_name, [(None, shape) for shape in shapes], what)]


def head_names(strides: list[int]) -> list[str]:
    """Output names by stride (``head_s8``, ``head_s16``, ``head_s32``); a repeated stride
    gets its head index too (``head_s16_1``)."""
    return [f"head_s{st}" if strides.count(st) == 1 else f"head_s{st}_{k}" for k, st in enumerate(strides)]


def name_heads(data: bytes, net: Any, shapes: list[list[int]], what: str) -> bytes:
    """The TFLite model with its YOLO head outputs renamed by stride (the converter names them
    ``StatefulPartitionedCall_1:0`` ..., in no fixed order)."""
    from . import quantize

    _, details = quantize.io_details(data)
    mapped = _head_details(details, shapes, what)
    names = head_names([h.stride for h in net.heads])
    return quantize.rename_outputs(data, {d["name"]: n for d, n in zip(mapped, names)})


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
    from edge.manifest import (FORMAT_VERSION, Gate, InputSpec, Manifest, ModelSource, OutputSpec,
                               SourceFile, gate_check, sha256_file, write_manifest)
    from edge.preprocess import prepare

    from . import darknet, detect_report, quantize
    from .images import load_images
    from .outputs import Staging, output_name

    t0 = time.monotonic()
    for label, path in (("cfg", cfg), ("weights", weights), ("names", names)):
        if not path.is_file():
            raise DataError(f"{label} file not found: {path}")
    out_dir, name = output_name(Path(str(out).removesuffix(".tflite").removesuffix(".json")))
    # Made first: it checks that --out is writable; everything is moved into place at the end.
    with Staging(out_dir, name) as stage:
        net = darknet.load_network(cfg, input_size)
        header, wts = darknet.read_weights(weights, net)
        labels = read_names(names)
        classes = net.heads[0].classes
        if len(labels) != classes:
            raise DataError(f"names file {names} has {len(labels)} names but the cfg's yolo layers have "
                            f"classes={classes}")
        _stage(f"{cfg.name}: {len(net.layers)} layers, {len(net.heads)} yolo heads, input "
               f"{net.width}x{net.height}, {classes} classes; weights v{header.major}.{header.minor}."
               f"{header.revision} (seen {header.seen})", t0)

        calib_files = detect_report.resolve_images(calib)
        images, _, skipped = load_images(calib_files, limit=calib_limit, seed=0, progress=progress,
                                         desc="reading calibration images")
        quantize.check_calib_count(len(images))

        spec = InputSpec(width=net.width, height=net.height, channels=net.channels, color="RGB",
                         resize="letterbox", pad_value=127.5, scale=1.0 / 255.0, dtype="float32")
        # Calibration sees exactly what the Pi feeds: edge's letterbox + normalization.
        representative = [prepare(img, spec, dtype="float32")[0] for img in images]

        tflite_path = stage.path(f"{name}.tflite")
        float_path = stage.path(f"{name}.float32.tflite")
        manifest_path = stage.path(f"{name}.json")

        _stage("building the Keras model", t0)
        model = darknet.build_keras(net, wts)
        shapes = [[1, h.grid[0], h.grid[1], len(h.mask) * (5 + classes)] for h in net.heads]
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

        in_detail, out_details = quantize.io_details(int8_bytes)
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
        manifest = Manifest(
            format_version=FORMAT_VERSION, name=name, task="detect", tflite=tflite_path.name,
            sha256=sha256_file(tflite_path), float_tflite=float_path.name, float_sha256=sha256_file(float_path),
            input=spec, outputs=outputs, labels=labels, score_threshold=score_threshold, nms_iou=nms_iou,
            source=ModelSource(kind="darknet", files={
                k: SourceFile(path=str(p), sha256=sha256_file(p))
                for k, p in (("cfg", cfg), ("weights", weights), ("names", names))
            }),
            versions=versions,
        )
        write_manifest(manifest, manifest_path)

        report = evaluate(manifest_path, net, cfg, weights, calib_files if val is None else None, val,
                          report_limit, reference_images, progress, t0, clip_logits)
        report["calibration"] = {"source": str(calib), "images": len(images), "skipped_unreadable": skipped}
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
        checks = [gate_check("int8_float_detection_f1", report["agreement"]["f1"], ">=", min_agreement,
                             f"int8 vs float32 detections (IoU 0.5, same class) on {report['evaluation']['source']}")]
        if parity and parity.get("max_abs") is not None:
            checks.append(gate_check("float_vs_opencv_max_abs", parity["max_abs"], "<=", REFERENCE_TOLERANCE,
                                     f"raw heads on {parity['images']} images"))
        manifest.gate = Gate.of(checks)
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


def evaluate(manifest_path: Path, net: Any, cfg: Path, weights: Path, calib_files: list[Path] | None,
             val: Path | None, limit: int, reference_images: int, progress: bool,
             t0: float, clip_logits: float | None = None) -> dict[str, Any]:
    """Run float and int8 through edge's Detector; head error, agreement, mAP, OpenCV parity."""
    from edge import yolo
    from edge.models import Detector

    from . import darknet, detect_report
    from .detect_report import Boxes
    from .images import load_images

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
    mp = r.get("map")
    if mp:
        if "skipped" in mp:
            lines.append(f"  mAP@0.5: skipped: {mp['skipped']}")
        else:
            note = " (every labelled object counts as the model's one class)" if mp["one_class_all_objects"] else ""
            lines.append(f"  mAP@0.5 vs ground truth ({mp['gt_boxes']} boxes, {mp['images']} images){note}: "
                         f"float {mp['float']:.4f}  int8 {mp['int8']:.4f}")
    ref = r.get("reference")
    if ref:
        if "skipped" in ref:
            lines.append(f"  float vs OpenCV darknet: skipped: {ref['skipped']}")
        else:
            lines.append(f"  float vs OpenCV {ref['opencv']} darknet, raw heads on {ref['images']} images: "
                         f"max abs diff {ref['max_abs']:.2e}")
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


def main(args: argparse.Namespace) -> int:
    """Entry point of ``doorguard convert darknet``."""
    if not 0.0 <= args.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be within 0..1, got {args.min_agreement}")
    if args.calib_limit < 1 or args.report_limit < 1:
        raise UsageError("--calib-limit and --report-limit must be positive")
    if args.clip_logits < 0:
        raise UsageError(f"--clip-logits must be 0 (off) or positive, got {args.clip_logits}")
    convert(args.cfg, args.weights, args.names, args.calib, args.out, parse_size(args.input), args.val,
            args.min_agreement, args.input_dtype, args.calib_limit, args.report_limit,
            args.score_threshold, args.nms_iou, args.reference_images, clip_logits=args.clip_logits)
    return 0
