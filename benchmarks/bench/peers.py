"""Section 3 of ``doorguard bench``: peer face detectors timed on the same in-memory frames.

YuNet n (cv2.FaceDetectorYN), UltraFace RFB-320 TFLite, AIZOO TFLite and UltraFace RFB-640
ONNX, with doorguard's detector alone for comparison; the detectors take turns in blocks of
frames so that load from other jobs hits them alike.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np


def peer_detectors(shared: Path, cfg: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, note, factory) of every detector timed on the same in-memory frames."""
    from benchmarks.ultraface_tflite import UltraFaceTflite
    from convert.verify import peers
    from edge.infer.models import Detector

    d = shared / "models" / "peers"
    det_path = cfg.resolve(cfg.models.detector)
    threads = cfg.models.num_threads
    return [
        ("doorguard detector (int8 TFLite)", "edge.infer.models.Detector.detect: preprocess, invoke, decode, NMS",
         lambda: Detector(det_path, threads)),
        ("YuNet n 320", "cv2.FaceDetectorYN, ONNX, 320x320", lambda: peers.YuNet(d, size=320)),
        ("YuNet n 640", "cv2.FaceDetectorYN, ONNX, 640x640 (peers eval size)", lambda: peers.YuNet(d, size=640)),
        ("UltraFace RFB-320 TFLite", "float32 TFLite 320x240, priors + NMS in numpy",
         lambda: UltraFaceTflite(d, num_threads=threads)),
        ("UltraFace RFB-640 ONNX", "cv2.dnn, 640x480 (peers eval model)", lambda: peers.UltraFace(d)),
        ("AIZOO face-mask TFLite", "float32 TFLite 260x260, SSD decode + NMS in numpy",
         lambda: peers.Aizoo(d, num_threads=threads)),
    ]


def time_detectors(makers: dict[str, Callable[[], Any]], frames: list[np.ndarray], warmup: int = 2,
                   block: int = 12) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Median ms per frame of each detector's whole ``detect``, taking turns in blocks of frames.

    Turns let a burst of load from other jobs slow every detector alike, so
    their ratios hold even on a busy host. Blocks of ``block`` frames rather
    than single frames: OpenCV's worker threads keep spinning for a moment
    after a cv2.dnn call, which would tax whichever detector runs next. The
    first frame of each block is a warm-up and not counted.
    Returns (results by name, reasons for the ones that could not be built).
    """
    dets, failed = {}, {}
    for name, make in makers.items():
        try:
            det = make()
            for f in frames[:warmup]:
                det.detect(f)
            dets[name] = det
        except Exception as e:  # noqa: BLE001 - one peer missing must not hide the rest
            failed[name] = f"{type(e).__name__}: {e}"
    ms: dict[str, list[float]] = {n: [] for n in dets}
    faces: dict[str, int] = {n: 0 for n in dets}
    for start in range(0, len(frames), block):
        chunk = frames[start:start + block]
        for name, det in dets.items():
            det.detect(chunk[0])
            for f in chunk:
                t0 = time.perf_counter()
                out = det.detect(f)
                ms[name].append((time.perf_counter() - t0) * 1000.0)
                faces[name] += len(out)
    res = {}
    for name in dets:
        med = statistics.median(ms[name])
        res[name] = {"ms": med, "fps": 1000.0 / med if med else None, "faces": faces[name]}
    return res, failed
