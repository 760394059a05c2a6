"""``doorguard convert darknet``: the flags; the work is ``convert.pipeline.darknet_import.convert``.

Writes ``OUT.tflite`` (full-integer int8), ``OUT.float32.tflite`` (the float
reference) and ``OUT.json`` (the manifest, with the report's figures), prints the
quantization report, and exits 9 (after writing the report) when int8 agrees with
float less than ``--min-agreement`` (F1 at IoU 0.5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.errors import UsageError

from convert.pipeline.darknet_import import DEFAULT_CLIP_LOGITS, DEFAULT_MIN_AGREEMENT, convert


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
