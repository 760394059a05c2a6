"""``doorguard convert keras``: an existing Keras classifier -> verified int8 TFLite + manifest.

Accepts a ``.keras`` file saved by Keras 3 or by tf_keras, a legacy Keras-2
``.h5`` full model (Keras 3 cannot deserialize those, e.g. DepthwiseConv2D's
``groups``: they are loaded with ``tf_keras``), or a SavedModel folder (tf_keras
``model.save``, or Keras 3 ``model.export()`` / ``tf.saved_model.save`` with one
image in and one tensor out, wrapped in a ``TFSMLayer``). Whatever the format,
the float32 TFLite is checked against the loaded model on calibration images.

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

from edge.errors import ModelError, UsageError, first_line
from edge.manifest import InputSpec, ModelSource, SourceFile, sha256_file

from convert.pipeline.classifier import (
    DEFAULT_MIN_AGREEMENT,
    calibration_files,
    calibration_images,
    finish_classifier,
    folder_set,
)
from convert.pipeline.classifier_args import PRESETS, add_classifier_arguments, check_labels, classifier_kwargs
from convert.report.outputs import Staging, output_name

log = logging.getLogger(__name__)


def _is_model(obj: Any) -> bool:
    """A Keras 3 or tf_keras model (tf_keras returns a bare ``_UserObject`` for a SavedModel
    it did not write, e.g. Keras 3's ``model.export()``)."""
    return all(hasattr(obj, a) for a in ("inputs", "outputs", "layers"))


def _keras_archive_version(path: Path) -> str | None:
    """keras_version in a .keras archive's metadata.json (None when absent or unreadable)."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return str(json.loads(z.read("metadata.json")).get("keras_version") or "") or None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile):
        return None


def _load_keras_file(path: Path) -> Any:
    """A .keras archive, saved by Keras 3 or by tf_keras (Keras 2.13+ writes the same format)."""
    import zipfile

    if not zipfile.is_zipfile(path):
        raise ModelError(f"{path} is not a .keras archive (a .keras file is a zip): corrupt, truncated "
                         f"or renamed; save the model again")
    errors: list[str] = []
    version = _keras_archive_version(path)
    loaders = ["keras", "tf_keras"]
    if version and version.startswith("2."):
        loaders.reverse()  # saved by tf_keras: its classes ('Functional' ...) are tf_keras's
    for loader in loaders:
        try:
            if loader == "keras":
                import keras

                return keras.saving.load_model(str(path), compile=False)
            import tf_keras

            return tf_keras.models.load_model(str(path), compile=False)
        except ImportError:
            errors.append("tf_keras is not installed (pip install tf-keras --no-deps)")
        except Exception as e:  # deserialization raises many kinds
            errors.append(f"{loader}: {first_line(e)}")
    saved_by = f" (saved by Keras {version})" if version else ""
    raise ModelError(f"cannot load Keras model {path}{saved_by}: {'; '.join(errors)}")


def _load_h5(path: Path) -> Any:
    """A full-model .h5 (Keras 3, or Keras 2 through tf_keras); a precise reason otherwise."""
    import h5py

    if not h5py.is_hdf5(str(path)):
        raise ModelError(f"{path} is not an HDF5 file: corrupt, truncated or not a Keras model; "
                         f"download or save it again")
    try:
        with h5py.File(str(path), "r") as f:
            has_config = "model_config" in f.attrs
            weights_only = not has_config and ("layer_names" in f.attrs or "model_weights" not in f)
    except Exception as e:  # noqa: BLE001 - h5py raises OSError/KeyError/RuntimeError on damage
        raise ModelError(f"{path} is a damaged HDF5 file ({first_line(e)}): download or save it again") from e
    if weights_only:
        raise ModelError(f"{path} holds no model architecture (a weights-only file?): convert keras needs "
                         f"a full model (model.save); MobileNet ImageNet weights go to train classifier "
                         f"--backbone-weights")
    errors: list[str] = []
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as e:
        errors.append(f"keras 3: {first_line(e)}")
    try:
        import tf_keras

        # Keras-2 files (DepthwiseConv2D 'groups' etc.) load with the Keras 2 code base.
        return tf_keras.models.load_model(str(path), compile=False)
    except ImportError:
        errors.append("tf_keras is not installed (pip install tf-keras --no-deps)")
    except Exception as e:
        errors.append(f"tf_keras: {first_line(e)}")
    raise ModelError(f"cannot load the full Keras model in {path} ({'; '.join(errors)})")


def _load_saved_model(path: Path) -> Any:
    """A tf_keras SavedModel (``keras_metadata.pb``), or any SavedModel with one image in and one
    tensor out (Keras 3 ``model.export()``, ``tf.saved_model.save``) wrapped as a Keras model."""
    errors: list[str] = []
    if (path / "keras_metadata.pb").is_file():
        try:
            import tf_keras

            model = tf_keras.models.load_model(str(path), compile=False)
            if _is_model(model):
                return model
            errors.append("tf_keras: not a Keras model")
        except ImportError:
            errors.append("tf_keras is not installed (pip install tf-keras --no-deps)")
        except Exception as e:
            errors.append(f"tf_keras: {first_line(e)}")
    try:
        import keras
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        fn = loaded.signatures.get("serving_default")
        if fn is None:
            raise ModelError(f"SavedModel {path} has no serving_default signature (signatures: "
                             f"{', '.join(loaded.signatures) or 'none'})")
        specs = list(fn.structured_input_signature[1].values())
        if len(specs) != 1:
            raise ModelError(f"SavedModel {path} has {len(specs)} inputs; a classifier takes one image")
        if len(fn.structured_outputs) != 1:
            raise ModelError(f"SavedModel {path} has {len(fn.structured_outputs)} outputs; a classifier has one")
        shape = tuple(specs[0].shape[1:])
        inp = keras.Input(shape, name="image")
        out = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")(inp)
        if isinstance(out, dict):
            out = next(iter(out.values()))
        return keras.Model(inp, out)
    except ModelError:
        raise
    except Exception as e:
        errors.append(f"saved_model: {first_line(e)}")
    raise ModelError(f"cannot load SavedModel {path}: {'; '.join(errors)}")


def load_keras_model(path: Path | str) -> Any:
    """Load a classifier from .keras (Keras 3 or tf_keras), legacy .h5 or a SavedModel folder
    (tf_keras ``model.save``, Keras 3 ``model.export()``).

    Returns:
        A Keras 3 or tf_keras model (both convert with TFLiteConverter.from_keras_model).

    Raises:
        ModelError: not found or not loadable by any route, with the reason.
    """
    path = Path(path)
    if not path.exists():
        raise ModelError(f"Keras model not found: {path}")
    if path.is_file() and path.suffix == ".keras":
        return _load_keras_file(path)
    if path.is_file() and path.suffix.lower() in (".h5", ".hdf5"):
        return _load_h5(path)
    if path.is_dir() and (path / "saved_model.pb").is_file():
        return _load_saved_model(path)
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
                  min_accuracy_drop: float = 1.0, min_agreement: float = DEFAULT_MIN_AGREEMENT):
    """The whole ``convert keras`` command; returns the manifest written.

    Inputs are checked before any conversion: labels, output folder writable, the
    model loads and fits the labels, the validation folder, enough readable
    calibration images. Nothing is left behind when a step fails.

    Raises:
        ModelError, DataError, UsageError, AccuracyGateError.
    """
    check_labels(labels)
    if preprocess and preprocess not in PRESETS:
        raise UsageError(f"--preprocess must be one of {', '.join(PRESETS)}")
    out_dir, name = output_name(out)
    with Staging(out_dir, name) as stage:
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
        calib_inputs = calibration_images(files, spec)
        p = Path(model_path)
        src_files = {}
        if p.is_file():
            src_files["model"] = SourceFile(path=str(p), sha256=sha256_file(p))
        elif (p / "saved_model.pb").is_file():
            src_files["saved_model.pb"] = SourceFile(path=str(p / "saved_model.pb"),
                                                     sha256=sha256_file(p / "saved_model.pb"))
        fixed = _fixed_batch(model, int(h), int(w))
        role, role_how = output_role(model, fixed, calib_inputs)
        conv = {"model": str(model_path), "loader": type(model).__module__.split(".")[0],
                "format": _format_of(p), "preprocessing": how,
                "output": f"{'softmax' if role == 'probabilities' else 'logits'} ({role_how})"}
        return finish_classifier(fixed, labels=labels, spec=spec, out=out,
                                 calib_files=files, calib=calib_inputs, staging=stage, eval_sets=eval_sets,
                                 source=ModelSource(kind="keras", files=src_files), crop_margin=crop_margin,
                                 min_accuracy_drop=min_accuracy_drop, min_agreement=min_agreement,
                                 extra_metrics={"conversion": conv}, output_role=role)


def output_role(model: Any, fixed: Any, inputs: list) -> tuple[str, str]:
    """("probabilities" | "logits", how it was decided).

    A last Softmax layer (or softmax activation) says probabilities. A SavedModel hides its
    layers, so there the outputs on calibration inputs decide: every row non-negative and
    summing to 1 is a softmax output (the runtime must not apply softmax a second time).
    """
    if is_softmax_output(model):
        return "probabilities", "last layer is a softmax"
    import numpy as np

    rows = [np.asarray(fixed(x, training=False), dtype=np.float64).reshape(-1) for x in inputs[:16]]
    if rows and all(r.min() >= -1e-6 and abs(r.sum() - 1.0) < 1e-3 for r in rows):
        return "probabilities", f"outputs on {len(rows)} calibration images are non-negative and sum to 1"
    return "logits", "no softmax layer, outputs do not sum to 1"


def _format_of(path: Path) -> str:
    if path.is_dir():
        return "tf_keras SavedModel" if (path / "keras_metadata.pb").is_file() else "SavedModel"
    if path.suffix == ".keras":
        version = _keras_archive_version(path)
        return f".keras (Keras {version})" if version else ".keras"
    return path.suffix


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, type=Path, help=".keras, legacy Keras-2 .h5, or SavedModel folder")
    p.add_argument("--size", type=int, help="input size when the model's is not fixed")
    add_classifier_arguments(
        p, val_help="labelled folder (DIR/<label>/*) to report float vs int8 accuracy on",
        preprocess_help="normalization preset (default: inferred from a Rescaling layer, else mobilenet)",
        per_channel_help="one value or three, comma-separated", against="float32")


def main(args: argparse.Namespace) -> int:
    kwargs = classifier_kwargs(args)
    labels = [s.strip() for s in args.labels.split(",")]
    convert_keras(args.model, labels, args.calib, args.out, size=args.size, **kwargs)
    return 0
