"""Keras -> TFLite (float32 reference and full-integer int8) and int8 verification.

Shared by the darknet and Keras converters. Conversion goes through
``TFLiteConverter.from_keras_model``: ``model.export()`` + ``from_saved_model``
produced a wrong model here with BatchNorm after a Resizing layer (DESIGN.md).
"""

from __future__ import annotations

import logging
import platform
from typing import Any, Callable, Iterable

import numpy as np

from edge import __version__
from edge.errors import DataError, ModelError
from edge.manifest import QuantParams
from edge.infer.models import tensor_quant

log = logging.getLogger(__name__)

MIN_CALIB = 20
WARN_CALIB = 200


def check_calib_count(n: int) -> None:
    """Refuse fewer than MIN_CALIB calibration images; warn below WARN_CALIB.

    Raises:
        DataError: too few images.
    """
    if n < MIN_CALIB:
        raise DataError(
            f"only {n} readable calibration images; int8 calibration needs at least {MIN_CALIB} "
            f"(a few hundred recommended)"
        )
    if n < WARN_CALIB:
        log.warning("only %d calibration images; %d or more give more reliable int8 ranges", n, WARN_CALIB)


def _tf():
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def to_tflite_float(model: Any) -> bytes:
    """Convert a Keras model to a float32 TFLite flatbuffer (the reference)."""
    from convert.tflite.tflog import no_stdout

    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    with no_stdout():  # the converter prints the SavedModel signature it exported
        return conv.convert()


def float_parity(model: Any, float_model: bytes, inputs: Iterable[np.ndarray]) -> tuple[float, float]:
    """Largest |float TFLite - Keras model| over ``inputs`` and the largest |Keras output|.

    The float32 TFLite must reproduce the model it came from; a SavedModel exported
    with BatchNorm in the wrong mode, say, would not (DESIGN.md).
    """
    interp = _interpreter(float_model)
    i_det, o_det = interp.get_input_details()[0], interp.get_output_details()[0]
    worst, scale = 0.0, 0.0
    for x in inputs:
        x = np.asarray(x, dtype=np.float32)
        ref = np.asarray(model(x, training=False), dtype=np.float32)
        interp.set_tensor(i_det["index"], x)
        interp.invoke()
        got = interp.get_tensor(o_det["index"]).astype(np.float32)
        worst = max(worst, float(np.abs(got.reshape(ref.shape) - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    return worst, scale


def to_tflite_int8(model: Any, representative: Iterable[np.ndarray] | Callable[[], Iterable[np.ndarray]],
                   input_dtype: str = "int8", count: int | None = None, progress: bool = True) -> bytes:
    """Full-integer int8 conversion: int8 (or uint8) input, int8 ops and outputs.

    Args:
        model: a Keras model with one image input.
        representative: float32 input batches (1 x H x W x C), preprocessed
            exactly as at run time; or a callable returning such an iterable.
        input_dtype: "int8" or "uint8".
        count: number of batches, for the progress bar.
        progress: show a tqdm bar while calibrating.

    Returns:
        The TFLite flatbuffer; verified by ``check_full_int8``.

    Raises:
        ModelError: the converter failed or left a float op/tensor.
    """
    tf = _tf()
    if input_dtype not in ("int8", "uint8"):
        raise ModelError(f"input dtype must be int8 or uint8, not {input_dtype}")

    def gen():
        from tqdm import tqdm

        batches = representative() if callable(representative) else representative
        for x in tqdm(batches, total=count, desc="calibrating", unit="img", disable=not progress):
            yield [np.asarray(x, dtype=np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = gen
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8 if input_dtype == "int8" else tf.uint8
    conv.inference_output_type = tf.int8
    from convert.tflite.tflog import no_stdout

    try:
        with no_stdout():
            data = conv.convert()
    except Exception as e:  # converter errors are long MLIR dumps: keep the first line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"int8 conversion failed: {first}") from e
    check_full_int8(data)
    return data


def _interpreter(data: bytes):
    tf = _tf()
    interp = tf.lite.Interpreter(model_content=data)
    interp.allocate_tensors()
    return interp


def check_full_int8(data: bytes) -> None:
    """Inspect a converted model: no float op or float tensor between input and outputs.

    int32 tensors (biases, shapes) are allowed; any float32/float16 tensor used by
    an op, or a DEQUANTIZE op, is a failure.

    Raises:
        ModelError: naming the offending ops/tensors.
    """
    interp = _interpreter(data)
    tensors = {t["index"]: t for t in interp.get_tensor_details()}
    bad: list[str] = []
    for op in interp._get_ops_details():
        if op["op_name"] == "DEQUANTIZE":
            bad.append(f"op {op['index']} DEQUANTIZE")
            continue
        for idx in list(op["inputs"]) + list(op["outputs"]):
            if idx < 0 or idx not in tensors:
                continue
            t = tensors[idx]
            if np.dtype(t["dtype"]).kind == "f":
                bad.append(f"op {op['index']} {op['op_name']} tensor '{t['name']}' ({np.dtype(t['dtype']).name})")
    for d in interp.get_input_details() + interp.get_output_details():
        if np.dtype(d["dtype"]).kind == "f":
            bad.append(f"model io tensor '{d['name']}' is {np.dtype(d['dtype']).name}")
    if bad:
        more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
        raise ModelError(f"converted model is not full-integer: {'; '.join(bad[:3])}{more}")


def rename_outputs(data: bytes, names: dict[str, str]) -> bytes:
    """A TFLite flatbuffer with output tensors renamed (old name -> new), signature keys too.

    Only names change: the ops, tensors and buffers are written back as they were.

    Raises:
        ModelError: a name to rename is not an output of the model.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    sg = model.subgraphs[0]
    by_name = {sg.tensors[i].name.decode(): i for i in sg.outputs}
    missing = sorted(set(names) - set(by_name))
    if missing:
        raise ModelError(f"cannot rename outputs {missing}: the model's outputs are {sorted(by_name)}")
    for old, new in names.items():
        sg.tensors[by_name[old]].name = new.encode()
    index_to_new = {by_name[old]: new for old, new in names.items()}
    for sig in model.signatureDefs or []:
        for t in sig.outputs or []:
            if t.tensorIndex in index_to_new:
                t.name = index_to_new[t.tensorIndex].encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def io_details(data: bytes) -> tuple[dict, list[dict]]:
    """Input detail and output details of a TFLite flatbuffer (name, shape, dtype, quant)."""
    interp = _interpreter(data)
    return interp.get_input_details()[0], interp.get_output_details()


def quant_params(detail: dict) -> QuantParams | None:
    """QuantParams of an interpreter tensor detail (None for float tensors), as ``edge.infer.models`` reads them."""
    q = tensor_quant(detail)
    return None if q is None else QuantParams(scale=q[0], zero_point=q[1])


def dtype_name(detail: dict) -> str:
    return np.dtype(detail["dtype"]).name


def tool_versions() -> dict[str, str]:
    """Versions recorded in every manifest: doorguard, TensorFlow, Keras, numpy, Python."""
    tf = _tf()
    import keras

    return {
        "doorguard": __version__,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
