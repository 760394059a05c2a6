"""``doorguard convert torch``: a PyTorch state dict + architecture -> verified int8 TFLite + manifest.

The architecture is named, not unpickled: ``torchvision:NAME`` (any torchvision
classification model, built with ``num_classes`` = the label count; needs
torchvision) or ``MODULE:CALLABLE`` (your own ``nn.Module`` factory, called
with ``num_classes`` when it takes it). The state dict is read with
``torch.load(weights_only=True)``: a pickled whole model is refused rather than
executed.

The module is exported with ``torch.onnx.export`` (TorchScript exporter, batch
1, constant folding, so batch norm is folded into the convolutions) and then
takes the ``convert onnx`` route (``convert/pipeline/onnx_import.py``), with torch
itself as the reference the int8 model is compared with.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError, UsageError, first_line
from edge.manifest import ModelSource, SourceFile, sha256_file

from convert.parse.onnx_graph import build_keras, load_onnx
from convert.pipeline.classifier_args import classifier_kwargs, parse_labels, parse_size
from convert.pipeline.onnx_import import Reference, add_common_arguments, choose_preprocessing, import_graph
from convert.report.outputs import Staging, output_name

log = logging.getLogger(__name__)

ONNX_OPSET = 17
DEFAULT_SIZE = (224, 224)


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ModelError("convert torch needs PyTorch: pip install 'doorguard[torch]' (README: Importing "
                         "PyTorch and ONNX classifiers)") from e
    return torch


def build_arch(arch: str, num_classes: int) -> Any:
    """An untrained ``nn.Module`` of the named architecture with ``num_classes`` outputs.

    Raises:
        UsageError: a malformed or unknown architecture name.
        ModelError: torchvision (or the named module) cannot be imported.
    """
    kind, sep, name = arch.partition(":")
    if not sep or not kind or not name:
        raise UsageError(f"--arch must be torchvision:NAME (e.g. torchvision:mobilenet_v2) or MODULE:CALLABLE, "
                         f"got {arch!r}")
    _torch()
    if kind == "torchvision":
        try:
            import torchvision
        except Exception as e:  # ImportError, or RuntimeError from a torchvision built for another torch
            raise ModelError(f"--arch {arch} needs torchvision, which cannot be imported here "
                             f"({first_line(e, 240)}): install a torchvision matching torch (pip install "
                             f"'doorguard[torch]')") from e
        known = sorted(torchvision.models.list_models(module=torchvision.models))
        if name not in known:
            close = [k for k in known if name.split("_")[0] in k][:8]
            raise UsageError(f"torchvision has no classification model {name!r}"
                             f"{' (similar: ' + ', '.join(close) + ')' if close else ''}")
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    try:
        factory = getattr(importlib.import_module(kind), name)
    except (ImportError, AttributeError) as e:
        raise ModelError(f"--arch {arch}: cannot import {name} from {kind} ({first_line(e, 240)})") from e
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    try:
        return factory(num_classes=num_classes) if "num_classes" in params else factory()
    except Exception as e:
        raise ModelError(f"--arch {arch}: building the model failed ({first_line(e, 240)})") from e


def load_state_dict(path: Path | str) -> dict[str, Any]:
    """The tensors of a ``.pth``/``.pt`` state dict (also inside a checkpoint's "state_dict"/"model").

    A ``module.`` prefix (DataParallel) is removed.

    Raises:
        ModelError: missing, unreadable, a pickled whole model, or no tensors.
    """
    torch = _torch()
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"state dict not found: {path}")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        msg, full = first_line(e, 240), str(e)
        if any(k in full for k in ("Weights only load failed", "weights_only", "Unsupported global")):
            raise ModelError(f"{path} holds a pickled Python object (a whole model?), not a state dict: "
                             f"save model.state_dict() instead") from e
        raise ModelError(f"cannot read {path} as a PyTorch state dict: {msg}") from e
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(torch.is_tensor(v) for v in inner.values()):
                log.info("%s: using the checkpoint's %r entry", path.name, key)
                obj = inner
                break
    if not isinstance(obj, dict) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise ModelError(f"{path} is not a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def fit_state_dict(model: Any, state: dict[str, Any], arch: str, labels: list[str]) -> None:
    """Load ``state`` into ``model``, or say in one line why it does not fit.

    Raises:
        UsageError: only the last layer differs, in its class count (a label count mismatch).
        ModelError: missing/unexpected keys or other shape mismatches.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not missing and not unexpected and mismatched:
        head = list(own)[-2:]  # the last layer's weight and bias
        if set(mismatched) <= set(head):
            k = mismatched[0]
            n = int(state[k].shape[0])
            raise UsageError(f"{len(labels)} labels given ({', '.join(labels)}) but the state dict's last layer "
                             f"has {n} classes ({k} {list(state[k].shape)})")
    if missing or unexpected or mismatched:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {what} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})")
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} of another shape ({k} {list(state[k].shape)} vs "
                         f"{list(own[k].shape)}{', ...' if len(mismatched) > 1 else ''})")
        raise ModelError(f"the state dict does not fit {arch} with {len(labels)} classes: {'; '.join(parts)} "
                         f"keys")
    model.load_state_dict(state, strict=True)


def export_onnx(model: Any, width: int, height: int, path: Path) -> None:
    """Export an eval-mode module to ONNX (batch 1, NCHW float input named "image").

    Raises:
        ModelError: the export failed (one line).
    """
    torch = _torch()
    x = torch.zeros(1, 3, height, width)
    kwargs = dict(opset_version=ONNX_OPSET, input_names=["image"], output_names=["output"],
                  do_constant_folding=True)
    try:
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=False, **kwargs)
        except TypeError:  # torch before 2.5 has no dynamo flag
            torch.onnx.export(model, (x,), str(path), **kwargs)
    except Exception as e:
        raise ModelError(f"torch.onnx.export failed: {first_line(e, 240)}") from e


def torch_reference(model: Any) -> Reference:
    """torch itself, on one thread: batch-1 inference with torch's OpenMP pool beside TensorFlow's
    and the interpreter's threads ran 25x slower here (1.9 s vs 76 ms a 96x96 MobileNetV2 on 2 busy
    cores)."""
    torch = _torch()
    torch.set_num_threads(1)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))
            return model(t).detach().cpu().numpy().astype(np.float32)

    return Reference(f"torch {torch.__version__}", run, torch.__version__)


def convert_torch(arch: str, state_dict: Path | str, labels: list[str], calib: Path | str, out: Path | str, *,
                  size: tuple[int, int] | None = None, val: Path | str | None = None,
                  preprocess: str | None = None, scale: float | None = None, mean: list[float] | None = None,
                  std: list[float] | None = None, color: str = "RGB", resize: str = "stretch",
                  crop_margin: float | None = 0.15, min_accuracy_drop: float = 1.0,
                  min_agreement: float | None = None):
    """The whole ``convert torch`` command; returns the manifest written.

    Raises:
        ModelError, DataError, UsageError, AccuracyGateError.
    """
    from convert.pipeline.classifier import DEFAULT_MIN_AGREEMENT

    labels = parse_labels(",".join(labels))
    pre = choose_preprocessing(preprocess, scale, mean, std)
    width, height = size or DEFAULT_SIZE
    out_dir, name = output_name(out)
    with Staging(out_dir, name) as stage:
        torch = _torch()
        model = build_arch(arch, len(labels))
        fit_state_dict(model, load_state_dict(state_dict), arch, labels)
        model.eval()
        with tempfile.TemporaryDirectory(prefix="doorguard-torch-") as tmp:
            onnx_path = Path(tmp) / f"{name}.onnx"
            export_onnx(model, width, height, onnx_path)
            proto = load_onnx(onnx_path)
        graph = build_keras(proto, layout="nchw")
        conversion: dict[str, Any] = {
            "arch": arch, "state_dict": str(state_dict), "format": "torch state dict",
            "exporter": f"torch.onnx.export (TorchScript), opset {ONNX_OPSET}", "torch": torch.__version__}
        try:
            import torchvision

            conversion["torchvision"] = torchvision.__version__
        except Exception:  # noqa: BLE001 - only recorded
            pass
        source = ModelSource(kind="torch", files={"state_dict": SourceFile(path=str(state_dict),
                                                                           sha256=sha256_file(state_dict))})
        return import_graph(graph, torch_reference(model), labels=labels, calib=calib, out=out, stage=stage,
                            source=source, conversion=conversion, val=val, pre=pre, color=color, resize=resize,
                            crop_margin=crop_margin, min_accuracy_drop=min_accuracy_drop,
                            min_agreement=DEFAULT_MIN_AGREEMENT if min_agreement is None else min_agreement)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--arch", required=True,
                   help="torchvision:NAME (e.g. torchvision:mobilenet_v2, torchvision:resnet18) or MODULE:CALLABLE")
    p.add_argument("--state-dict", required=True, type=Path, help="the .pth/.pt state dict")
    add_common_arguments(p)
    p.add_argument("--input", help=f"input size WxH the model was trained at (default "
                                   f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]})")


def main(args: argparse.Namespace) -> int:
    convert_torch(args.arch, args.state_dict, parse_labels(args.labels), args.calib, args.out,
                  size=parse_size(args.input), **classifier_kwargs(args))
    return 0
