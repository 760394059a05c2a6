"""Invoke latency of TFLite files under one interpreter backend (``doorguard bench``).

Needs only the standard library, numpy and the interpreter, so it also runs as
a plain script under another Python: tflite-runtime 2.14 needs numpy < 2 and
cannot be installed beside this venv's numpy 2, so the bench runs this file
with a separate interpreter (``--tflite-runtime-python``)::

    python benchmarks/bench/invoke.py tflite_runtime THREADS RUNS MODEL.tflite [...]

prints one JSON object: {"backend": ..., "numpy": ..., "results": {path: [ms, ...]}}.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def interpreter_class(backend: str):
    """The Interpreter class of ``litert`` or ``tflite_runtime`` (ImportError when absent)."""
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
    elif backend == "tflite_runtime":
        from tflite_runtime.interpreter import Interpreter  # type: ignore[import-not-found]
    else:
        raise ValueError(f"unknown backend {backend!r}")
    return Interpreter


def time_invoke(interpreter_cls, path: str, threads: int, runs: int, warmup: int = 3,
                seed: int = 0) -> list[float]:
    """Milliseconds of ``runs`` invokes on one random input of the model's shape and dtype.

    Conv nets' latency does not depend on pixel values, so a seeded random
    input is as good as a real frame and keeps this script free of images.
    """
    interp = interpreter_cls(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    d = interp.get_input_details()[0]
    rng = np.random.default_rng(seed)
    dtype = np.dtype(d["dtype"])
    shape = tuple(int(v) for v in d["shape"])
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)
    else:
        x = rng.random(shape, dtype=np.float32).astype(dtype)
    interp.set_tensor(d["index"], x)
    for _ in range(warmup):
        interp.invoke()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        interp.invoke()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    backend, threads, runs, paths = argv[0], int(argv[1]), int(argv[2]), argv[3:]
    cls = interpreter_class(backend)
    results = {p: time_invoke(cls, p, threads, runs) for p in paths}
    print(json.dumps({"backend": backend, "numpy": np.__version__, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
