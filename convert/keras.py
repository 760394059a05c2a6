"""``doorguard convert keras``: an existing Keras classifier -> verified int8 TFLite + manifest.

Accepts a Keras 3 ``.keras`` file, a legacy Keras-2 ``.h5`` full model (Keras 3
cannot deserialize those, e.g. DepthwiseConv2D's ``groups``: they are loaded
with ``tf_keras``), or a TensorFlow SavedModel folder.

Preprocessing is written to the manifest. It comes from the flags, else is
inferred: a leading ``Rescaling`` layer means the model takes raw 0..255
pixels (it normalizes itself); otherwise MobileNet's [-1, 1] is assumed and
said so in the log.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from edge.errors import ModelError, UsageError
from edge.manifest import InputSpec, ModelSource, SourceFile, sha256_file

from .classifier import calibration_files, finish_classifier, folder_set

log = logging.getLogger(__name__)

PRESETS: dict[str, tuple[float, list[float], list[float]]] = {
    # name: (scale, mean, std) with normalized = (pixel * scale - mean) / std
    "mobilenet": (1.0 / 127.5, [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),
    "unit": (1.0 / 255.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "raw": (1.0, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
    "imagenet": (1.0 / 255.0, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
}


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0][:200] if s else type(e).__name__


def load_keras_model(path: Path | str) -> Any:
    """Load a classifier from .keras, legacy .h5 or a SavedModel folder.

    Returns:
        A Keras 3 or tf_keras model (both convert with TFLiteConverter.from_keras_model).

    Raises:
        ModelError: not found or not loadable by any route.
    """
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    path = Path(path)
    if not path.exists():
        raise ModelError(f"Keras model not found: {path}")
    errors: list[str] = []
    if path.is_file() and path.suffix == ".keras":
        import keras

        try:
            return keras.saving.load_model(str(path), compile=False)
        except Exception as e:  # deserialization raises many kinds
            raise ModelError(f"cannot load Keras model {path}: {_first_line(e)}") from e
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5"):
        import keras

        try:
            return keras.saving.load_model(str(path), compile=False)
        except Exception as e:
            errors.append(f"keras 3: {_first_line(e)}")
        try:
            import tf_keras

            # Keras-2 files (DepthwiseConv2D 'groups' etc.) load with the Keras 2 code base.
            return tf_keras.models.load_model(str(path), compile=False)
        except ImportError:
            errors.append("tf_keras is not installed (pip install tf-keras --no-deps)")
        except Exception as e:
            errors.append(f"tf_keras: {_first_line(e)}")
        raise ModelError(f"cannot load {path} as a full Keras model ({'; '.join(errors)}); "
                         f"a weights-only .h5 needs its architecture: use train classifier --backbone-weights")
    if path.is_dir() and (path / "saved_model.pb").is_file():
        try:
            import tf_keras

            return tf_keras.models.load_model(str(path), compile=False)
        except Exception as e:
            errors.append(f"tf_keras: {_first_line(e)}")
        try:
            import tensorflow as tf
            import keras

            loaded = tf.saved_model.load(str(path))
            fn = loaded.signatures.get("serving_default")
            if fn is None:
                raise ModelError(f"SavedModel {path} has no serving_default signature")
            specs = list(fn.structured_input_signature[1].values())
            if len(specs) != 1:
                raise ModelError(f"SavedModel {path} has {len(specs)} inputs; a classifier takes one image")
            shape = tuple(specs[0].shape[1:])
            inp = keras.Input(shape, name="image")
            out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inp)
            if isinstance(out, dict):
                if len(out) != 1:
                    raise ModelError(f"SavedModel {path} has {len(out)} outputs; a classifier has one")
                out = next(iter(out.values()))
            return keras.Model(inp, out)
        except ModelError:
            raise
        except Exception as e:
            errors.append(f"saved_model: {_first_line(e)}")
        raise ModelError(f"cannot load SavedModel {path}: {'; '.join(errors)}")
    raise ModelError(f"{path}: not a .keras file, a Keras .h5 file or a SavedModel folder")


def image_input_shape(model: Any) -> tuple[int | None, int | None, int]:
    """(height, width, channels) of a model's single image input.

    Raises:
        ModelError: more than one input, or an input that is not H x W x 1/3.
    """
    inputs = model.inputs
    if len(inputs) != 1:
        raise ModelError(f"model has {len(inputs)} inputs; a classifier takes one image")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or shape[-1] not in (1, 3):
        raise ModelError(f"model input shape {list(shape)} is not an image (expected [batch, height, "
                         f"width, 3])")
    if shape[-1] != 3:
        raise ModelError(f"model input has {shape[-1]} channel(s); doorguard feeds RGB/BGR images (3)")
    return shape[1], shape[2], shape[3]


def infer_preprocessing(model: Any) -> tuple[str, float, list[float], list[float]] | None:
    """(how, scale, mean, std) when the model normalizes its own input, else None.

    A Rescaling/Normalization layer right after the input means the model
    expects raw 0..255 pixels.
    """
    for layer in model.layers[:4]:
        cls = type(layer).__name__
        if cls in ("InputLayer",):
            continue
        if cls in ("Rescaling", "Normalization"):
            return (f"model starts with a {cls} layer: it takes raw 0..255 pixels", 1.0,
                    [0.0, 0.0, 0.0], [1.0, 1.0, 1.0])
    return None


def is_softmax_output(model: Any) -> bool:
    """True when the last layer ends in a softmax (probabilities, not logits)."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    name = getattr(act, "__name__", str(act))
    return type(last).__name__ == "Softmax" or "softmax" in str(name).lower()


def _fixed_batch(model: Any, h: int, w: int):
    """Wrap in a batch-1, fixed-size graph (TFLite wants static shapes)."""
    mod = type(model).__module__
    if mod.startswith("tf_keras"):
        import tf_keras as k
    else:
        import keras as k
    inp = k.Input((h, w, 3), batch_size=1, name="image")
    return k.Model(inp, model(inp, training=False))


def convert_keras(model_path: Path | str, labels: list[str], calib: Path | str, out: Path | str, *,
                  val: Path | str | None = None, size: int | None = None,
                  preprocess: str | None = None, scale: float | None = None,
                  mean: list[float] | None = None, std: list[float] | None = None, color: str = "RGB",
                  resize: str = "stretch", crop_margin: float | None = 0.15,
                  min_accuracy_drop: float = 1.0):
    """The whole ``convert keras`` command; returns the manifest written.

    Raises:
        ModelError, DataError, UsageError, AccuracyGateError.
    """
    if len(labels) < 2 or len(set(labels)) != len(labels) or any(not lab for lab in labels):
        raise UsageError(f"--labels needs two or more distinct names, got {labels}")
    model = load_keras_model(model_path)
    h, w, _ = image_input_shape(model)
    if h is None or w is None:
        if not size:
            raise UsageError("the model's input size is not fixed: give --size")
        h = w = size
    elif size and (size != h or size != w):
        raise UsageError(f"--size {size} does not match the model's input {w}x{h}")
    n_out = int(model.outputs[0].shape[-1]) if len(model.outputs) == 1 else -1
    if n_out != len(labels):
        raise UsageError(f"{len(labels)} labels given ({', '.join(labels)}) but the model outputs "
                         f"{n_out if n_out > 0 else len(model.outputs)} classes")

    inferred = infer_preprocessing(model)
    if preprocess:
        if preprocess not in PRESETS:
            raise UsageError(f"--preprocess must be one of {', '.join(PRESETS)}")
        how, (sc, mn, sd) = f"--preprocess {preprocess}", PRESETS[preprocess]
    elif inferred:
        how, sc, mn, sd = inferred
    else:
        how, (sc, mn, sd) = "assumed MobileNet [-1, 1] (no flag, no Rescaling layer)", PRESETS["mobilenet"]
        log.warning("preprocessing not given and not inferable: assuming MobileNet's [-1, 1]; "
                    "pass --preprocess/--scale/--mean/--std if the model was trained otherwise")
    if scale is not None:
        sc, how = scale, "flags"
    if mean is not None:
        mn, how = mean, "flags"
    if std is not None:
        sd, how = std, "flags"
    if len(mn) != 3 or len(sd) != 3 or any(v == 0 for v in sd):
        raise UsageError("--mean and --std need three values, std non-zero")
    log.info("preprocessing: scale %.6g mean %s std %s (%s)", sc, mn, sd, how)
    spec = InputSpec(width=int(w), height=int(h), color=color, resize=resize, scale=float(sc),
                     mean=[float(v) for v in mn], std=[float(v) for v in sd], dtype="int8")

    eval_sets = {}
    if val is not None:
        eval_sets["val"] = folder_set(val, labels)
    files = calibration_files(calib)
    p = Path(model_path)
    src_files = {}
    if p.is_file():
        src_files["model"] = SourceFile(path=str(p), sha256=sha256_file(p))
    elif (p / "saved_model.pb").is_file():
        src_files["saved_model.pb"] = SourceFile(path=str(p / "saved_model.pb"),
                                                 sha256=sha256_file(p / "saved_model.pb"))
    conv = {"model": str(model_path), "loader": type(model).__module__.split(".")[0],
            "preprocessing": how, "output": "softmax" if is_softmax_output(model) else "logits"}
    return finish_classifier(_fixed_batch(model, int(h), int(w)), labels=labels, spec=spec, out=out,
                             calib_files=files, eval_sets=eval_sets,
                             source=ModelSource(kind="keras", files=src_files), crop_margin=crop_margin,
                             min_accuracy_drop=min_accuracy_drop, extra_metrics={"conversion": conv},
                             output_role="probabilities" if is_softmax_output(model) else "logits")


def _floats(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError as e:
        raise UsageError(f"expected comma-separated numbers, got {text!r}") from e
    return vals * 3 if len(vals) == 1 else vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help=".keras, legacy Keras-2 .h5, or SavedModel folder")
    p.add_argument("--labels", required=True, help="class labels in output order, comma-separated")
    p.add_argument("--calib", required=True, type=Path, help="calibration images (searched recursively)")
    p.add_argument("--out", required=True, type=Path, help="models/NAME")
    p.add_argument("--val", type=Path, help="labelled folder (DIR/<label>/*) to report float vs int8 accuracy on")
    p.add_argument("--size", type=int, help="input size when the model's is not fixed")
    p.add_argument("--preprocess", choices=sorted(PRESETS),
                   help="normalization preset (default: inferred from a Rescaling layer, else mobilenet)")
    p.add_argument("--scale", type=float, help="normalized = (pixel * scale - mean) / std")
    p.add_argument("--mean", help="per-channel mean (one value or three, comma-separated)")
    p.add_argument("--std", help="per-channel std (one value or three, comma-separated)")
    p.add_argument("--color", choices=["RGB", "BGR"], default="RGB", help="channel order the model expects")
    p.add_argument("--resize", choices=["stretch", "letterbox"], default="stretch", help="how crops are resized")
    p.add_argument("--crop-margin", type=float, default=0.15, help="face crop margin for the runtime (default 0.15)")
    p.add_argument("--min-accuracy-drop", type=float, default=1.0,
                   help="fail (exit 9, report still written) if int8 loses more accuracy points (default 1)")


def main(args: argparse.Namespace) -> int:
    labels = [s.strip() for s in args.labels.split(",")]
    convert_keras(args.model, labels, args.calib, args.out, val=args.val, size=args.size,
                  preprocess=args.preprocess, scale=args.scale, mean=_floats(args.mean),
                  std=_floats(args.std), color=args.color, resize=args.resize,
                  crop_margin=args.crop_margin, min_accuracy_drop=args.min_accuracy_drop)
    return 0
