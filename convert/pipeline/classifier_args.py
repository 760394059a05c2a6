"""The flags ``convert keras``, ``convert onnx`` and ``convert torch`` share, and their checks.

Each command adds its own model flags, then ``add_classifier_arguments``; its
``main`` passes ``classifier_kwargs(args)`` on to the converter.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edge.errors import UsageError

from convert.pipeline.classifier import DEFAULT_MIN_AGREEMENT

PRESETS: dict[str, tuple[float, list[float], list[float]]] = {
    # name: (scale, mean, std) with normalized = (pixel * scale - mean) / std
    "mobilenet": (1.0 / 127.5, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
    "unit": (1.0 / 255.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "raw": (1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "imagenet": (1.0 / 255.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def add_classifier_arguments(p: argparse.ArgumentParser, *, val_help: str, preprocess_help: str,
                             per_channel_help: str, against: str) -> None:
    """Labels, calibration, output, validation, normalization, crop margin and the gate.

    Args:
        p: the command's parser.
        val_help: what ``--val`` is measured on.
        preprocess_help: the ``--preprocess`` default of this command.
        per_channel_help: how ``--mean`` / ``--std`` values are read.
        against: what int8 is gated against, e.g. "float32" or "float32 or the framework".
    """
    p.add_argument("--labels", required=True, help="class labels in output order, comma-separated")
    p.add_argument("--calib", required=True, type=Path, help="calibration images (searched recursively)")
    p.add_argument("--out", required=True, type=Path, help="models/NAME")
    p.add_argument("--val", type=Path, help=val_help)
    p.add_argument("--preprocess", choices=sorted(PRESETS), help=preprocess_help)
    p.add_argument("--scale", type=float, help="normalized = (pixel * scale - mean) / std")
    p.add_argument("--mean", help=f"per-channel mean ({per_channel_help})")
    p.add_argument("--std", help=f"per-channel std ({per_channel_help})")
    p.add_argument("--color", choices=["RGB", "BGR"], default="RGB", help="channel order the model expects")
    p.add_argument("--resize", choices=["stretch", "letterbox"], default="stretch", help="how crops are resized")
    p.add_argument("--crop-margin", type=float, default=0.15, help="face crop margin for the runtime (default 0.15)")
    p.add_argument("--min-accuracy-drop", type=float, default=1.0,
                   help="fail (exit 9, report still written) if int8 loses more accuracy points than "
                        f"{against} (default 1)")
    p.add_argument("--min-agreement", type=float, default=DEFAULT_MIN_AGREEMENT,
                   help=f"fail (exit 9) if int8 agrees with {against} on fewer of the --val crops "
                        f"(calibration images without --val) than this share (default {DEFAULT_MIN_AGREEMENT})")


def classifier_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The converter's keyword arguments from ``add_classifier_arguments``' flags (labels apart).

    Raises:
        UsageError: --min-agreement outside 0..1, --mean/--std not numbers.
    """
    if not 0.0 <= args.min_agreement <= 1.0:
        raise UsageError(f"--min-agreement must be within 0..1, got {args.min_agreement}")
    return dict(val=args.val, preprocess=args.preprocess, scale=args.scale,
                mean=parse_floats(args.mean, "--mean"), std=parse_floats(args.std, "--std"), color=args.color,
                resize=args.resize, crop_margin=args.crop_margin, min_accuracy_drop=args.min_accuracy_drop,
                min_agreement=args.min_agreement)


def parse_floats(text: str | None, flag: str) -> list[float] | None:
    """Comma-separated numbers, one value repeated for three channels."""
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise UsageError(f"{flag} expects comma-separated numbers, got {text!r}") from e
    return vals * 3 if len(vals) == 1 else vals


def check_labels(labels: list[str]) -> list[str]:
    """Two or more distinct, non-empty label names.

    Raises:
        UsageError: fewer than two, duplicates or an empty name.
    """
    if len(labels) < 2 or len(set(labels)) != len(labels) or any(not lab for lab in labels):
        raise UsageError(f"--labels needs two or more distinct names, got {labels}")
    return labels


def parse_labels(text: str) -> list[str]:
    """``a,b,c`` -> labels (``check_labels``)."""
    return check_labels([s.strip() for s in text.split(",")])


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--input``: ``WxH`` (or one number for a square) -> (width, height).

    Raises:
        UsageError: not two positive integers.
    """
    if text is None:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals *= 2
    if len(vals) != 2 or min(vals) <= 0 or max(vals) > 8192:
        raise UsageError(f"--input must be WxH in pixels (e.g. 224x224), got {text!r}")
    return vals[0], vals[1]
