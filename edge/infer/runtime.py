"""TFLite interpreter loading: ai-edge-litert, else tflite-runtime, else tf.lite.

ai-edge-litert is preferred: on ARM it runs int8 graphs through XNNPACK, while
tflite-runtime 2.14 uses its slower builtin kernels (see DESIGN.md).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import ModelError

log = logging.getLogger(__name__)

BACKENDS = ("litert", "tflite_runtime", "tensorflow")


def _interpreter_class(backend: str) -> Callable[..., Any]:
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
    elif backend == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]
    elif backend == "tensorflow":
        import tensorflow as tf  # noqa: F401  (workstation fallback only)

        Interpreter = tf.lite.Interpreter
    else:
        raise ModelError(f"unknown interpreter backend {backend!r}; choose from {', '.join(BACKENDS)}")
    return Interpreter


def available_backend(preferred: str | None = None) -> str:
    """Name of the first interpreter backend that imports (``preferred`` first).

    Raises:
        ModelError: no TFLite interpreter is installed.
    """
    order = [preferred] if preferred else list(BACKENDS)
    for name in order:
        try:
            _interpreter_class(name)
            return name
        except ImportError:
            continue
    raise ModelError(
        "no TFLite interpreter installed: pip install ai-edge-litert (or tflite-runtime)"
    )


def load_interpreter(path: Path | str, num_threads: int = 2, backend: str | None = None):
    """Create and allocate an interpreter for a .tflite file.

    Args:
        path: model file.
        num_threads: CPU threads for the interpreter.
        backend: force one of BACKENDS; default is the first available.

    Returns:
        (interpreter, backend name).

    Raises:
        ModelError: no interpreter, or the file is not a loadable model.
    """
    name = available_backend(backend)
    cls = _interpreter_class(name)
    try:
        interp = cls(model_path=str(path), num_threads=num_threads)
        interp.allocate_tensors()
    except (ValueError, RuntimeError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load model {path}: {first}") from e
    return interp, name


class TfliteModel:
    """A loaded TFLite model with tensors addressed by name.

    The interpreter is built once; ``run`` sets the single input and returns
    every output dequantized to float32, keyed by tensor name.
    """

    def __init__(self, path: Path | str, num_threads: int = 2, backend: str | None = None,
                 interpreter: Any = None):
        if interpreter is not None:
            self.interpreter, self.backend = interpreter, "stub"
        else:
            self.interpreter, self.backend = load_interpreter(path, num_threads, backend)
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1:
            raise ModelError(f"model {path} has {len(inputs)} inputs; doorguard expects one image input")
        self.input = inputs[0]
        self.outputs = {d["name"]: d for d in self.interpreter.get_output_details()}

    @staticmethod
    def dequantize(x: np.ndarray, detail: dict) -> np.ndarray:
        scale, zp = detail.get("quantization", (0.0, 0))
        if x.dtype in (np.int8, np.uint8, np.int16) and scale:
            return (x.astype(np.float32) - zp) * np.float32(scale)
        return x.astype(np.float32)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Invoke on one prepared input tensor; returns float32 outputs by name."""
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        return {
            name: self.dequantize(self.interpreter.get_tensor(d["index"]), d)
            for name, d in self.outputs.items()
        }

    def run_raw(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Invoke and return outputs in their stored dtype (int8 stays int8)."""
        self.interpreter.set_tensor(self.input["index"], tensor)
        self.interpreter.invoke()
        return {name: self.interpreter.get_tensor(d["index"]).copy() for name, d in self.outputs.items()}
