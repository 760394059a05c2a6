"""Section 4 of ``doorguard bench``: float vs int8 file sizes and invoke latency.

ai-edge-litert in this process; tflite-runtime in this process where it imports, else in
another Python (``--tflite-runtime-python``) running ``invoke.py`` as a script.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .invoke import interpreter_class, time_invoke


def model_files(cfg: Any) -> list[dict[str, Any]]:
    """The default detector and classifier: int8 and float files named by their manifests."""
    from edge.manifest import load_manifest

    out = []
    for role, rel in (("detector", cfg.models.detector), ("classifier", cfg.models.classifier)):
        if not rel:
            continue
        mpath = cfg.resolve(rel)
        m = load_manifest(mpath, verify_hash=False)
        int8 = m.tflite_path(mpath)
        flt = (mpath.parent / m.float_tflite) if m.float_tflite else None
        out.append({"role": role, "name": m.name, "int8": int8,
                    "float": flt if flt is not None and flt.is_file() else None,
                    "float_named": m.float_tflite,
                    "input": f"{m.input.width}x{m.input.height}"})
    return out


def litert_latency(paths: list[Path], threads: int, runs: int) -> dict[str, list[float]]:
    cls = interpreter_class("litert")
    return {str(p): time_invoke(cls, str(p), threads, runs) for p in paths}


def tflite_runtime_latency(python: str | None, paths: list[Path], threads: int,
                           runs: int) -> tuple[dict[str, list[float]] | None, str]:
    """Invoke times under tflite-runtime, in-process if it imports, else in ``python``."""
    try:
        cls = interpreter_class("tflite_runtime")
        return {str(p): time_invoke(cls, str(p), threads, runs) for p in paths}, "in-process"
    except ImportError:
        pass
    except Exception as e:  # noqa: BLE001 - e.g. compiled against numpy 1.x: "not measured", with why
        return None, f"tflite-runtime imports here but fails: {type(e).__name__}: {str(e)[:120]}"
    import numpy as _np

    if not python:
        return None, (f"tflite-runtime 2.14 (its last release) needs numpy < 2 and this venv has numpy "
                      f"{_np.__version__}; pass --tflite-runtime-python PY (a Python with "
                      f"tflite-runtime==2.14.0 and numpy<2) to measure it")
    cmd = [python, str(Path(__file__).with_name("invoke.py")), "tflite_runtime", str(threads), str(runs),
           *map(str, paths)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{python}: {type(e).__name__}: {e}"
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{python} failed: {tail[:160]}"
    data = json.loads(r.stdout.strip().splitlines()[-1])
    return data["results"], f"{python} (numpy {data['numpy']})"
