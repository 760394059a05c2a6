"""``doorguard bench``: speed, size, memory and start-up, against a seed-style loop and peers.

    doorguard bench [--source SPEC] [--frames N] [--out DIR] [--repeats N] [--quick]

Writes ``DIR/bench.md`` (the report), ``DIR/bench.json`` (every figure) and
PNG plots. What it measures, each ``--repeats`` times (median and min..max
reported; every ratio is taken within one repeat, so load from other jobs on
the machine hits both sides alike):

1. doorguard end to end: the real runner (``edge.service.Runner``: capture
   thread, ``edge.pipeline.Pipeline``, rules, actuators on gpiozero mock pins,
   the SQLite event store) on a fixed image folder played as a stream
   (facemask853 val, in val.txt order, when ../shared is there; else the
   built-in demo). The runner's objects are wrapped with timers after it
   builds them (nothing re-implemented): per-stage latency percentiles and
   FPS, and the FPS against 1 / (detector invoke time) = the loop's overhead.
2. A seed-style loop on the same frames: OpenCV DNN running the float darknet
   yolov3-tiny per frame (blobFromImage 416, forward, decode, NMSBoxes) with a
   synchronous "beep" (``time.sleep``) on every frame where it finds a person,
   as the face-touch seed's blocking beep did.
3. Peers on the same frames: YuNet n (cv2.FaceDetectorYN), UltraFace RFB-320
   TFLite, AIZOO TFLite (and UltraFace RFB-640 ONNX), with doorguard's
   detector alone for comparison.
4. Float vs int8: file sizes and invoke latency with ai-edge-litert and, when
   a Python with tflite-runtime is given, tflite-runtime.
5. ``doorguard run`` as a subprocess: peak RSS and the time from start to
   the first processed frame.
6. MACs of every model (counted from the graphs) and a Pi 4 / Pi 5
   *projection* scaled from published yolov4-tiny figures: never a measurement.

x86 timings say nothing about a Raspberry Pi: different cores, caches, memory
and SIMD (and on x86 int8 is not faster than float with XNNPACK).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edge.errors import DataError, DoorguardError, UsageError
from edge.jsonable import jsonable

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
#: A typical beep of the seed projects (a buzzer/`playsound` call of ~0.2 s), blocking the loop.
BEEP_S = 0.2
#: COCO classes whose detection made the seed beep (the face-touch seed flagged people).
SEED_FLAG_CLASSES = ("person",)
SEED_SIZE = 416
SEED_CONF, SEED_NMS = 0.5, 0.4

#: Published reference for the Pi projection: yolov4-tiny at 416x416, int8.
REF_MODEL = "yolov4-tiny 416"
#: 21 convolutions of yolov4-tiny.cfg at 416x416 (AlexeyAB darknet; CSP route groups
#: halve the channels), summed here as H*W*Cout*k*k*Cin = 3.454e9; darknet itself
#: prints 6.91 BFLOPs (= 2 x MACs) for this network.
REF_MACS = 3.454e9
REF_PI5_MS = 28.2  # yolov4-tiny int8 416 on a Raspberry Pi 5 (arXiv 2506.09300)
REF_PI4_MS = 243.0  # yolov4-tiny int8 416 on a Raspberry Pi 4, 4 threads (PINTO model zoo issue 44)
#: A small-model check of the same scaling: UltraFace RFB-320 (320x240) on a Raspberry Pi 4B,
#: MNN int8, 4 cores: 11 ms (UltraFace README, as recorded in ../shared/models/SOURCES.md).
SMALL_REF_PI4_MS = 11.0
SMALL_REF_NAME = "UltraFace RFB-320 (TFLite float)"

#: Stages of the per-stage table, in loop order: (key, label, runs in the capture thread).
STAGES = [
    ("capture", "capture (read + decode, capture thread)", True),
    ("capture wait", "capture wait (loop blocked on the next frame)", False),
    ("preprocess", "preprocess (letterbox + quantize)", False),
    ("detector", "detector invoke", False),
    ("detector io", "detector tensor in/out + dequantize", False),
    ("decode+nms", "YOLO decode + NMS", False),
    ("crop", "crop with margin", False),
    ("classify", "classify (per face: prepare + invoke)", False),
    ("tracking", "tracking + votes", False),
    ("rules", "rules", False),
    ("actuation", "actuation (gpiozero mock pins)", False),
    ("event write", "event write (SQLite)", False),
    ("other", "rest of the loop (untimed bookkeeping, waits for a CPU)", False),
]


# ---- small statistics helpers --------------------------------------------------------------

def spread(values: list[float]) -> dict[str, float] | None:
    """Median, min and max of repeated figures (None when there are none)."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return None
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt(s: dict[str, float] | None, digits: int = 1, unit: str = "") -> str:
    """'12.3 (11.9-13.0)' for a spread; 'not measured' for None."""
    if not s:
        return "not measured"
    f = f"{{:.{digits}f}}"
    u = f" {unit}" if unit else ""
    if s.get("n", 1) == 1 or s["min"] == s["max"]:
        return f"{f.format(s['median'])}{u}"
    return f"{f.format(s['median'])}{u} ({f.format(s['min'])}-{f.format(s['max'])})"


def pct(samples: list[float], ps=(50, 90, 99)) -> dict[int, float]:
    if not samples:
        return {}
    arr = np.asarray(samples, np.float64)
    return {p: float(np.percentile(arr, p)) for p in ps}


# ---- MACs from model graphs ----------------------------------------------------------------

def tflite_macs(path: Path | str) -> int:
    """Multiply-accumulates of one invoke, from the TFLite graph's tensor shapes.

    CONV_2D: out elements x kh x kw x Cin; DEPTHWISE_CONV_2D: out elements x kh x kw;
    FULLY_CONNECTED: out elements x inputs; TRANSPOSE_CONV: input elements x kh x kw x Cout.
    Other ops (pooling, adds, activations) are not counted: they are a small
    share of the work and every reference figure counts the same way.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # No delegate: XNNPACK would fold ops into DELEGATE nodes.
    interp = Interpreter(model_path=str(path),
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    shapes = {t["index"]: [int(v) for v in t["shape"]] for t in interp.get_tensor_details()}
    total = 0
    for op in interp._get_ops_details():  # noqa: SLF001 - the only op-level view litert offers
        name = op["op_name"]
        ins, outs = list(op["inputs"]), list(op["outputs"])
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = shapes.get(ins[1])
            out = shapes.get(outs[0])
            if not w or not out:
                continue
            n_out = int(np.prod(out))
            if name == "CONV_2D":
                total += n_out * w[1] * w[2] * w[3]
            elif name == "DEPTHWISE_CONV_2D":
                total += n_out * w[1] * w[2]
            else:
                total += n_out * w[-1]
        elif name == "TRANSPOSE_CONV":
            w, x = shapes.get(ins[1]), shapes.get(ins[2])
            if w and x:
                total += int(np.prod(x)) * w[0] * w[1] * w[2]
    return int(total)


def cv2_macs(net: Any, input_shape: tuple[int, ...]) -> int:
    """MACs of an OpenCV DNN net (darknet/ONNX) from its layers' weight blobs and output shapes.

    Counted like :func:`tflite_macs` (``net.getFLOPS`` over-counts some ONNX graphs).
    """
    ids, _ins, outs = net.getLayersShapes(list(input_shape))
    out_of = {int(i): o for i, o in zip(np.asarray(ids).ravel(), outs)}
    total = 0
    for i in range(1, len(net.getLayerNames()) + 1):
        layer = net.getLayer(i)
        if layer.type not in ("Convolution", "InnerProduct") or not layer.blobs or i not in out_of:
            continue
        w = layer.blobs[0]
        if layer.type == "InnerProduct":
            total += int(w.shape[0]) * int(w.shape[1])
        else:  # weights Cout x Cin/groups x kh x kw: depthwise has Cin/groups = 1
            total += int(np.prod(out_of[i][0])) * int(np.prod(w.shape[1:]))
    return int(total)


# ---- the source ----------------------------------------------------------------------------

def facemask_val_folder(shared: Path, dest: Path, limit: int | None) -> Path:
    """A folder of links to facemask853 val images, named so that sorting keeps val.txt order."""
    data = shared / "data" / "facemask853"
    stems = (data / "val.txt").read_text().split()
    if limit:
        stems = stems[:limit]
    dest.mkdir(parents=True, exist_ok=True)
    for i, stem in enumerate(stems):
        src = next((data / "images").glob(f"{stem}.*"), None)
        if src is None:
            raise DataError(f"facemask853 val image {stem} missing under {data / 'images'}")
        os.symlink(src, dest / f"{i:04d}_{src.name}")
    return dest


def read_frames(spec: str, cfg: Any, limit: int) -> list[np.ndarray]:
    """The first ``limit`` RGB frames of a source, through the runner's own FrameSource."""
    from edge.sources import UnreadableFrame, make_source

    src = make_source(spec, cfg.source)
    src.open()
    frames: list[np.ndarray] = []
    try:
        while len(frames) < limit:
            try:
                f = src.read()
            except UnreadableFrame:
                continue
            if f is None:
                break
            frames.append(f)
    finally:
        src.close()
    if not frames:
        raise DataError(f"source {spec} gave no frames")
    return frames


# ---- 1. doorguard end to end, instrumented -------------------------------------------------

class StageTimer:
    """Timers wrapped around the runner's own objects; per call and per frame."""

    def __init__(self) -> None:
        self.calls: dict[str, list[float]] = defaultdict(list)
        self.frames: list[dict[str, Any]] = []
        self._current: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self.calls[stage].append(ms)
            if self._current is not None and stage != "capture":
                self._current[stage] = self._current.get(stage, 0.0) + ms

    def wrap(self, fn: Callable, stage: str) -> Callable:
        def timed(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                self.add(stage, (time.perf_counter() - t0) * 1000.0)
        timed.__wrapped__ = fn  # type: ignore[attr-defined]
        return timed

    def wrap_process(self, process: Callable) -> Callable:
        """Pipeline.process: opens a new per-frame record (faces, the pipeline's own timings)."""
        def timed(frame):
            t0 = time.perf_counter()
            with self._lock:
                self._current = {"start": t0}
                self.frames.append(self._current)
            result = process(frame)
            rec = self._current
            rec["faces"] = len(result.detections)
            rec["pipeline_track"] = result.timings.get("track", 0.0)
            rec["vision"] = result.timings.get("pipeline", (time.perf_counter() - t0) * 1000.0)
            return result
        return timed

    def finish(self) -> None:
        """Frame processing time = from one frame's start to the next one's (the loop period)."""
        for a, b in zip(self.frames, self.frames[1:]):
            a["loop"] = (b["start"] - a["start"]) * 1000.0
        for rec in self.frames:
            # The pipeline's "track" stage holds the tracker, the crops and the votes.
            rec["tracking"] = max(0.0, rec.get("pipeline_track", 0.0) - rec.get("crop", 0.0))
            rec["detector io"] = max(0.0, rec.get("infer", 0.0) - rec.get("detector", 0.0))
            rec["busy"] = sum(rec.get(k, 0.0) for k in
                              ("preprocess", "infer", "decode+nms", "crop", "classify", "tracking",
                               "rules", "actuation", "event write"))
        for rec in self.frames:
            if "loop" in rec:
                rec["other"] = max(0.0, rec["loop"] - rec["busy"] - rec.get("capture wait", 0.0))
        self.calls["other"] = [r["other"] for r in self.frames if "other" in r]
        self.calls["tracking"] = [r["tracking"] for r in self.frames]
        self.calls["detector io"] = [r["detector io"] for r in self.frames]

    def fps(self) -> float | None:
        starts = [r["start"] for r in self.frames]
        if len(starts) < 2 or starts[-1] <= starts[0]:
            return None
        return (len(starts) - 1) / (starts[-1] - starts[0])


def run_doorguard(cfg: Any, spec: str, frames: int, state_dir: Path, passes: int = 1) -> dict[str, Any]:
    """One instrumented run of the real runner; returns FPS, stage samples and per-frame records.

    ``passes`` > 1 plays the ``frames`` frames that many times in a row (the
    source's ``loop``), so the run lasts long enough to average out bursts of
    load from other jobs.
    """
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    import edge.pipeline as pipeline_mod
    from edge.actuators import Actuators
    from edge.service import Runner

    timer = StageTimer()
    cfg = cfg.model_copy(deep=True)
    cfg.events.state_dir = str(state_dir)
    cfg.source.fps = 0.0  # a file/folder plays as fast as the loop takes frames
    cfg.source.loop = passes > 1
    cfg.mqtt.enabled = False
    cfg.web.enabled = False
    # Every frame through every stage: what a frame with something in view costs. The motion
    # gate's idle frames (no detector) are counted by `make bench-arm` (its idle segment).
    cfg.motion.enabled = False

    class BenchRunner(Runner):
        """The runner, with timers wrapped around the objects it built (the code is its own)."""

        def _build(self):
            source, pipeline, rules, store, writer, capture_cls, sdir = super()._build()
            source.read = timer.wrap(source.read, "capture")
            det = pipeline.detector
            det.preprocess = timer.wrap(det.preprocess, "preprocess")
            det.infer = timer.wrap(det.infer, "infer")
            det.postprocess = timer.wrap(det.postprocess, "decode+nms")
            interp = det.model.interpreter
            interp.invoke = timer.wrap(interp.invoke, "detector")
            if pipeline.classifier is not None:
                pipeline.classifier.classify = timer.wrap(pipeline.classifier.classify, "classify")
            pipeline.process = timer.wrap_process(pipeline.process)
            rules.evaluate = timer.wrap(rules.evaluate, "rules")
            if store is not None:
                store.add = timer.wrap(store.add, "event write")

            class TimedCapture(capture_cls):
                def get(self, *a, **kw):
                    t0 = time.perf_counter()
                    try:
                        return super().get(*a, **kw)
                    finally:
                        timer.add("capture wait", (time.perf_counter() - t0) * 1000.0)

            self._bench_pipeline = pipeline
            return source, pipeline, rules, store, writer, TimedCapture, sdir

    factory = MockFactory(pin_class=MockPWMPin)
    actuators = Actuators(cfg.gpio, pin_factory=factory)
    for name in ("alert", "compliant", "set_fault"):
        setattr(actuators, name, timer.wrap(getattr(actuators, name), "actuation"))
    real_crop = pipeline_mod.crop_with_margin
    pipeline_mod.crop_with_margin = timer.wrap(real_crop, "crop")
    run_log = logging.getLogger("doorguard.run")
    level = run_log.level
    run_log.setLevel(logging.WARNING)  # one line per event would flood the bench's output
    try:
        runner = BenchRunner(cfg, spec, frames * passes, actuators=actuators)
        t0 = time.perf_counter()
        runner.run()
        wall = time.perf_counter() - t0
    finally:
        pipeline_mod.crop_with_margin = real_crop
        run_log.setLevel(level)
        factory.close()
    timer.finish()
    pipe = runner._bench_pipeline
    invoke = timer.calls.get("detector", [])
    fps = timer.fps()
    loops = [f for f in timer.frames if "loop" in f]
    # The loop without the per-face classifier work: what the detector path alone costs.
    det_loop = [f["loop"] - f.get("classify", 0.0) - f.get("crop", 0.0) for f in loops]
    inv_ms = statistics.median(invoke) if invoke else None
    return {
        "frames": runner.frames, "fps": fps, "wall_s": wall,
        "invoke_ms": inv_ms,
        "overhead_ratio": (fps / (1000.0 / inv_ms)) if fps and inv_ms else None,
        "overhead_ratio_no_classifier": (inv_ms / statistics.mean(det_loop)) if det_loop and inv_ms else None,
        "overhead_ratio_no_faces": (inv_ms / statistics.median([f["loop"] for f in loops if not f.get("faces")]))
        if inv_ms and any(not f.get("faces") for f in loops) else None,
        "calls": {k: list(v) for k, v in timer.calls.items()},
        "per_frame": timer.frames,
        "runner_latency": {s: pipe.latency.percentiles(s) for s in pipe.latency.stages()},
        "events": dict(runner.events_by_verdict), "alerts": runner.alerts,
        "backend": pipe.detector.model.backend, "threads": cfg.models.num_threads,
    }


# ---- 2. the seed-style loop ----------------------------------------------------------------

class SeedLoop:
    """What the seed projects wrote: OpenCV DNN float yolov3-tiny per frame, then a blocking beep.

    Args:
        shared: ../shared (yolov3-tiny cfg, weights and coco.names).
        beep_s: how long the synchronous beep blocks the loop.
    """

    def __init__(self, shared: Path, beep_s: float = BEEP_S):
        import cv2

        d = shared / "models" / "yolov3-tiny"
        self.cfg_path, self.weights_path = d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights"
        for p in (self.cfg_path, self.weights_path):
            if not p.is_file():
                raise DataError(f"seed model missing: {p}")
        self.net = cv2.dnn.readNetFromDarknet(str(self.cfg_path), str(self.weights_path))
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.names = (d / "coco.names").read_text().split("\n")
        self.flag = {i for i, n in enumerate(self.names) if n.strip() in SEED_FLAG_CLASSES}
        self.beep_s = beep_s

    def detect(self, bgr: np.ndarray) -> list[tuple[int, float, list[int]]]:
        """One seed-style inference: (class id, confidence, [x, y, w, h]) after NMSBoxes."""
        import cv2

        h, w = bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(bgr, 1 / 255.0, (SEED_SIZE, SEED_SIZE), swapRB=True, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.out_names)
        boxes, confs, ids = [], [], []
        for out in outs:
            for row in out:
                scores = row[5:]
                c = int(np.argmax(scores))
                conf = float(scores[c])
                if conf > SEED_CONF:
                    cx, cy, bw, bh = row[0] * w, row[1] * h, row[2] * w, row[3] * h
                    boxes.append([int(cx - bw / 2), int(cy - bh / 2), int(bw), int(bh)])
                    confs.append(conf)
                    ids.append(c)
        keep = cv2.dnn.NMSBoxes(boxes, confs, SEED_CONF, SEED_NMS) if boxes else []
        return [(ids[i], confs[i], boxes[i]) for i in np.asarray(keep).ravel()]

    def run(self, spec: str, cfg: Any, frames: int) -> dict[str, Any]:
        """Read, infer, beep, per frame, synchronously (as the seeds' while-loops did)."""
        from edge.sources import UnreadableFrame, make_source

        src = make_source(spec, cfg.source)
        src.open()
        n = beeps = 0
        infer_ms: list[float] = []
        slept = 0.0
        t0 = time.perf_counter()
        try:
            while n < frames:
                try:
                    rgb = src.read()
                except UnreadableFrame:
                    continue
                if rgb is None:
                    break
                bgr = rgb[..., ::-1]  # the seeds read BGR from cv2.VideoCapture
                a = time.perf_counter()
                found = self.detect(bgr)
                infer_ms.append((time.perf_counter() - a) * 1000.0)
                if any(c in self.flag for c, _, _ in found):
                    b = time.perf_counter()
                    time.sleep(self.beep_s)  # the blocking beep
                    slept += time.perf_counter() - b
                    beeps += 1
                n += 1
        finally:
            src.close()
        wall = time.perf_counter() - t0
        return {"frames": n, "beeps": beeps, "fps": n / wall if wall else None,
                "fps_no_beep": n / (wall - slept) if wall > slept else None,
                "infer_ms": statistics.median(infer_ms) if infer_ms else None}


# ---- 3. peers ------------------------------------------------------------------------------

def peer_detectors(shared: Path, cfg: Any) -> list[tuple[str, str, Callable[[], Any]]]:
    """(name, note, factory) of every detector timed on the same in-memory frames."""
    _benchmarks_on_path()
    from convert import peers
    from benchmarks.ultraface_tflite import UltraFaceTflite

    from edge.models import Detector

    d = shared / "models" / "peers"
    det_path = cfg.resolve(cfg.models.detector)
    threads = cfg.models.num_threads
    return [
        ("doorguard detector (int8 TFLite)", "edge.models.Detector.detect: preprocess, invoke, decode, NMS",
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


# ---- 4. float vs int8 ----------------------------------------------------------------------

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
    from convert.bench_invoke import interpreter_class, time_invoke

    cls = interpreter_class("litert")
    return {str(p): time_invoke(cls, str(p), threads, runs) for p in paths}


def tflite_runtime_latency(python: str | None, paths: list[Path], threads: int,
                           runs: int) -> tuple[dict[str, list[float]] | None, str]:
    """Invoke times under tflite-runtime, in-process if it imports, else in ``python``."""
    try:
        from convert.bench_invoke import interpreter_class, time_invoke

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
    cmd = [python, str(Path(__file__).with_name("bench_invoke.py")), "tflite_runtime", str(threads), str(runs),
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


# ---- 5. doorguard run as a subprocess ------------------------------------------------------

def _vm_hwm_kib(pid: int) -> int | None:
    """Peak resident set (VmHWM) of a live process, from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def run_subprocess(spec: str, frames: int, config: str | None, state_dir: Path,
                   timeout: float = 300.0) -> dict[str, Any]:
    """``doorguard run`` in a child: peak RSS and start -> first processed frame.

    Peak RSS is the child's VmHWM, polled every 10 ms until it exits (VmHWM
    only grows). Not ``wait4``'s ru_maxrss: Linux folds the forking parent's
    high-water mark into the child's at exec, so it would report the bench's
    own size.
    """
    exe = Path(sys.executable).with_name("doorguard")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "edge.cli"]
    cmd += ["--log-level", "INFO", "run", "--source", spec, "--max-frames", str(frames)]
    if config:
        cmd += ["--config", config]
    env = dict(os.environ, GPIOZERO_PIN_FACTORY="mock", STATE_DIRECTORY=str(state_dir), PYTHONUNBUFFERED="1")
    env.pop("NOTIFY_SOCKET", None)
    lines: list[tuple[float, str]] = []
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)

    def reader():
        for line in p.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip("\n")))

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    peak = 0
    deadline = time.monotonic() + timeout
    while p.poll() is None:
        hwm = _vm_hwm_kib(p.pid)
        if hwm:
            peak = max(peak, hwm)
        if time.monotonic() > deadline:
            p.kill()
            p.wait()
            break
        time.sleep(0.01)
    th.join(timeout=5)
    first = next((t for t, ln in lines if "first frame processed" in ln), None)
    summary = next((ln for _, ln in lines if "summary:" in ln and "FPS" in ln), "")
    return {"rc": p.returncode, "max_rss_mib": peak / 1024.0 if peak else None, "first_frame_s": first,
            "wall_s": time.perf_counter() - t0, "summary": summary.split("summary:", 1)[-1].strip(),
            "tail": [ln for _, ln in lines[-3:]], "cmd": " ".join(cmd)}


# ---- plots ---------------------------------------------------------------------------------

def plot_stages(stage_rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in stage_rows if r["p50"] is not None]
    labels = [r["label"] for r in rows][::-1]
    p50 = np.maximum(np.array([r["p50"] for r in rows][::-1]), 6e-4)
    p90 = np.array([r["p90"] for r in rows][::-1])
    p99 = np.array([r["p99"] for r in rows][::-1])
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.4), dpi=90)
    y = np.arange(len(rows))
    ax.barh(y, p50, color="#4878a8", label="p50")
    ax.errorbar(p50, y, xerr=[np.zeros_like(p50), p90 - p50], fmt="none", ecolor="black", capsize=3,
                label="to p90")
    ax.plot(p99, y, "r|", markersize=10, label="p99")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(left=5e-4)
    ax.set_xlabel("ms per call (log scale)")
    ax.set_title(title, fontsize=9, pad=22)
    ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.06), ncol=3, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def face_buckets(per_frame: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames grouped by detected faces (0, 1, 2, 3, 4-5, 6-9, 10+): median busy ms -> FPS."""
    edges = [(0, 0), (1, 1), (2, 2), (3, 3), (4, 5), (6, 9), (10, 10**6)]
    out = []
    for lo, hi in edges:
        ms = [r["busy"] for r in per_frame if lo <= r.get("faces", -1) <= hi and "busy" in r]
        det = [r.get("infer", 0.0) + r.get("preprocess", 0.0) + r.get("decode+nms", 0.0)
               for r in per_frame if lo <= r.get("faces", -1) <= hi]
        if not ms:
            continue
        label = str(lo) if lo == hi else (f"{lo}+" if hi > 1000 else f"{lo}-{hi}")
        med = statistics.median(ms)
        out.append({"faces": label, "frames": len(ms), "busy_ms": med, "fps": 1000.0 / med if med else None,
                    "q1": float(np.percentile(ms, 25)), "q3": float(np.percentile(ms, 75)),
                    "detect_ms": statistics.median(det) if det else None})
    return out


def plot_faces(buckets: list[dict[str, Any]], per_frame: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=90)
    labels = [b["faces"] for b in buckets]

    def slot(k: int) -> int | None:
        for i, lab in enumerate(labels):
            lo, _, hi = lab.rstrip("+").partition("-")
            top = 10**6 if lab.endswith("+") else int(hi or lo)
            if int(lo) <= k <= top:
                return i
        return None

    rng = np.random.default_rng(0)
    pts = [(slot(r["faces"]), 1000.0 / r["busy"]) for r in per_frame if r.get("busy")]
    pts = [(i + rng.uniform(-0.15, 0.15), v) for i, v in pts if i is not None]
    if pts:
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=8, alpha=0.25, color="#888888",
                   label="single frames")
    xs = list(range(len(buckets)))
    if buckets:
        ax.plot(xs, [b["fps"] for b in buckets], "o-", color="#c0392b", label="median per bucket")
        det = [1000.0 / b["detect_ms"] if b["detect_ms"] else np.nan for b in buckets]
        ax.plot(xs, det, "s--", color="#4878a8", label="detector stages alone (preprocess+invoke+decode)")
        ax.set_xticks(xs, [f"{lab}\n({b['frames']} fr.)" for lab, b in zip(labels, buckets)])
    ax.set_xlabel("faces detected in the frame")
    ax.set_ylabel("FPS (1000 / processing ms)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_peers(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("fps")]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.4), dpi=90)
    y = np.arange(len(rows))
    med = [r["fps"]["median"] for r in rows]
    lo = [r["fps"]["median"] - r["fps"]["min"] for r in rows]
    hi = [r["fps"]["max"] - r["fps"]["median"] for r in rows]
    ax.barh(y, med, xerr=[lo, hi], color="#6a9f58", capsize=3)
    ax.set_yticks(y, [r["name"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("FPS (median of repeats, whiskers min-max)")
    ax.set_title(title, fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ---- the command ---------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard bench``."""
    p.add_argument("--source", metavar="SPEC",
                   help="frames to play as a stream (any `doorguard run` source); default: facemask853 "
                        "val images (val.txt order) when ../shared is there, else the built-in demo")
    p.add_argument("--frames", type=int, metavar="N", help="frames per run (default: the whole source; "
                   "--quick: 8)")
    p.add_argument("--out", default="bench-out", type=Path, help="output folder (default bench-out)")
    p.add_argument("--repeats", type=int, metavar="N", help="repeats of every figure (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true",
                   help="a fast smoke run: few frames, one repeat, short latency loops, no web-viewer run")
    p.add_argument("--config", metavar="PATH", help="doorguard config (models, threads); default: embedded")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("DOORGUARD_SHARED", ROOT.parent / "shared")),
                   help="../shared (seed model, peers, data); default %(default)s")
    p.add_argument("--beep-s", type=float, default=BEEP_S,
                   help=f"length of the seed loop's blocking beep in seconds (default {BEEP_S})")
    p.add_argument("--tflite-runtime-python", metavar="PY",
                   default=os.environ.get("DOORGUARD_TFLITE_RUNTIME_PYTHON"),
                   help="a Python with tflite-runtime==2.14 and numpy<2, to time tflite-runtime "
                        "(default $DOORGUARD_TFLITE_RUNTIME_PYTHON)")
    p.add_argument("--passes", type=int, metavar="K",
                   help="doorguard plays the frames K times per repeat (default 3; --quick: 1)")
    env_dk = [Path(v) for v in os.environ.get("DOORGUARD_BENCH_DARKNET", "").split(os.pathsep) if v.strip()]
    p.add_argument("--darknet-manifest", type=Path, action="append", default=env_dk, metavar="JSON",
                   help="also run benchmarks/bench_darknet.py on this converted darknet model (repeatable; "
                        "the default detector always runs), e.g. a yolov3-tiny made by doorguard convert darknet "
                        "(default: $DOORGUARD_BENCH_DARKNET, paths separated by ':')")
    p.add_argument("--no-web-viewer", action="store_true", help="skip benchmarks/web_viewer.py")


def _benchmarks_on_path() -> None:
    # benchmarks/ lives in the checkout, not in the installed distribution.
    if (ROOT / "benchmarks").is_dir() and str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        commit = ""
    import cv2

    try:
        from importlib.metadata import version

        litert = version("ai-edge-litert")
    except Exception:  # noqa: BLE001
        litert = "?"
    return {"date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "host": platform.node(), "cpu": cpu or platform.processor(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "opencv": cv2.__version__,
            "ai_edge_litert": litert, "commit": commit, "load_start": os.getloadavg()}


class Bench:
    """Runs every section, keeps going when one cannot run (its reason goes in the report)."""

    def __init__(self, args: argparse.Namespace):
        from edge import config as config_mod

        self.args = args
        self.quick = args.quick
        self.repeats = args.repeats or (1 if args.quick else 3)
        self.passes = args.passes or (1 if args.quick else 3)
        if self.repeats < 1:
            raise UsageError(f"--repeats must be at least 1, not {self.repeats}")
        if args.frames is not None and args.frames < 2:
            raise UsageError(f"--frames must be at least 2, not {args.frames}")
        self.cfg = config_mod.load(args.config)
        self.shared = Path(args.shared)
        self.has_shared = (self.shared / "models").is_dir()
        self.out = Path(args.out)
        self.tmp = Path(tempfile.mkdtemp(prefix="doorguard-bench-"))
        self.r: dict[str, Any] = {"machine": _machine(), "repeats": self.repeats, "passes": self.passes,
                                  "quick": self.quick,
                                  "skipped": {}}

    def skip(self, section: str, why: str) -> None:
        log.warning("bench: %s not measured: %s", section, why)
        self.r["skipped"][section] = why

    def step(self, msg: str) -> None:
        print(f"[bench {time.monotonic() - self.t0:6.0f}s] {msg}", flush=True)

    # -- source --
    def choose_source(self) -> None:
        a = self.args
        limit = a.frames or (8 if self.quick else None)
        val = self.shared / "data" / "facemask853" / "val.txt"
        if a.source:
            spec, desc = a.source, f"`{a.source}`"
        elif val.is_file():
            spec = str(facemask_val_folder(self.shared, self.tmp / "frames", limit))
            desc = "facemask853 val images (val.txt order) played as a folder stream"
        else:
            spec, desc = "demo", "the built-in demo clip (../shared not found)"
        frames = read_frames(spec, self.cfg, limit or 10**6)
        self.spec, self.frames = spec, frames
        self.n = len(frames)
        sizes = sorted({f"{f.shape[1]}x{f.shape[0]}" for f in frames})
        self.r["source"] = {"spec": a.source or ("facemask853-val" if spec != "demo" else "demo"),
                            "description": desc, "frames": self.n,
                            "sizes": sizes[:6] + (["..."] if len(sizes) > 6 else [])}

    def run(self) -> int:
        self.t0 = time.monotonic()
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            self.choose_source()
            self.step(f"source: {self.r['source']['description']}, {self.n} frames; {self.repeats} repeat(s)")
            for name, section in (("doorguard", self.loop_sections), ("float vs int8", self.size_latency),
                                  ("darknet", self.darknet), ("doorguard run subprocess", self.subprocess_run),
                                  ("projection", self.projection), ("web viewer", self.web_viewer)):
                try:
                    section()
                except DoorguardError:
                    raise
                except Exception as e:  # noqa: BLE001 - one broken section must not lose the others
                    log.exception("bench section %s failed", name)
                    self.skip(name, f"bench error: {type(e).__name__}: {e}")
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.r["machine"]["load_end"] = os.getloadavg()
        self.r["elapsed_s"] = time.monotonic() - self.t0
        self.plots()
        (self.out / "bench.json").write_text(json.dumps(jsonable(self.r), indent=1))
        (self.out / "bench.md").write_text(render(self.r))
        self.step(f"wrote {self.out / 'bench.md'}")
        return 0

    # -- 1-3: loops on the same frames, interleaved per repeat --
    def loop_sections(self) -> None:
        dg_runs, seed_runs, peer_runs = [], [], defaultdict(list)
        seed = peers = None
        if self.has_shared:
            try:
                seed = SeedLoop(self.shared, self.args.beep_s)
            except Exception as e:  # noqa: BLE001
                self.skip("seed", f"{type(e).__name__}: {e}")
            try:
                peers = peer_detectors(self.shared, self.cfg)
            except Exception as e:  # noqa: BLE001
                self.skip("peers", f"{type(e).__name__}: {e}")
        else:
            self.skip("seed", f"needs ../shared (yolov3-tiny), not found at {self.shared}")
            self.skip("peers", f"needs ../shared/models/peers, not found at {self.shared}")
        dg_ok = True
        for rep in range(self.repeats):
            d = None
            if dg_ok:
                try:
                    d = run_doorguard(self.cfg, self.spec, self.n, self.tmp / f"state{rep}", self.passes)
                    dg_runs.append(d)
                    self.step(f"repeat {rep + 1}: doorguard {d['fps']:.1f} FPS, detector invoke "
                              f"{d['invoke_ms']:.2f} ms, {d['frames']} frames")
                except Exception as e:  # noqa: BLE001 - models missing etc.: report it, keep going
                    self.skip("doorguard", f"{type(e).__name__}: {e}")
                    dg_ok = False
            if seed is not None:
                s = seed.run(self.spec, self.cfg, self.n)
                fps = d["fps"] if d else None
                s["ratio"] = fps / s["fps"] if fps and s["fps"] else None
                s["ratio_no_beep"] = fps / s["fps_no_beep"] if fps and s["fps_no_beep"] else None
                seed_runs.append(s)
                self.step(f"repeat {rep + 1}: seed loop {s['fps']:.2f} FPS ({s['beeps']} beeps), "
                          f"without beeps {s['fps_no_beep']:.2f}")
            if peers is not None:
                res, failed = time_detectors({name: make for name, _, make in peers}, self.frames)
                for name, v in res.items():
                    peer_runs[name].append(v)
                for name, why in failed.items():
                    self.r["skipped"][f"peer {name}"] = why
                self.step(f"repeat {rep + 1}: peers timed")
        self.r["doorguard"] = summarize_doorguard(dg_runs) if dg_runs else None
        if seed_runs:
            self.r["seed"] = {
                "beep_s": self.args.beep_s, "flag": list(SEED_FLAG_CLASSES),
                "fps": spread([s["fps"] for s in seed_runs]),
                "fps_no_beep": spread([s["fps_no_beep"] for s in seed_runs]),
                "infer_ms": spread([s["infer_ms"] for s in seed_runs]),
                "beeps": [s["beeps"] for s in seed_runs], "frames": seed_runs[0]["frames"],
                "ratio": spread([s["ratio"] for s in seed_runs]),
                "ratio_no_beep": spread([s["ratio_no_beep"] for s in seed_runs]),
                "doorguard_fps": spread([d["fps"] for d in dg_runs]),
            }
        if peer_runs:
            notes = {n: note for n, note, _ in peers or []}
            self.r["peers"] = [{"name": n, "note": notes.get(n, ""), "ms": spread([x["ms"] for x in v]),
                                "fps": spread([x["fps"] for x in v]), "faces": v[0]["faces"]}
                               for n, v in peer_runs.items()]

    # -- 4 --
    def size_latency(self) -> None:
        try:
            files = model_files(self.cfg)
        except Exception as e:  # noqa: BLE001
            self.skip("float vs int8", f"{type(e).__name__}: {e}")
            return
        runs = 5 if self.quick else 40
        trt_runs = 3 if self.quick else 15  # its int8 kernels take ~100x longer here
        threads = self.cfg.models.num_threads
        thread_counts = sorted({1, threads})
        paths = [p for f in files for p in (f["int8"], f["float"]) if p is not None and p.is_file()]
        lit: dict[tuple[str, int], list[float]] = defaultdict(list)
        trt: dict[tuple[str, int], list[float]] = defaultdict(list)
        trt_note = ""
        for rep in range(self.repeats):
            for th in thread_counts:
                for p, ms in litert_latency(paths, th, runs).items():
                    lit[(p, th)].append(statistics.median(ms))
                res, trt_note = tflite_runtime_latency(self.args.tflite_runtime_python, paths, th, trt_runs)
                if res is None:
                    continue
                for p, ms in res.items():
                    trt[(p, th)].append(statistics.median(ms))
        rows = []
        for f in files:
            row = {"role": f["role"], "name": f["name"], "input": f["input"]}
            for kind in ("int8", "float"):
                p = f[kind]
                row[f"{kind}_bytes"] = p.stat().st_size if p is not None and p.is_file() else None
                for th in thread_counts:
                    row[f"{kind}_litert_ms_{th}"] = spread(lit.get((str(p), th), [])) if p else None
                    row[f"{kind}_trt_ms_{th}"] = spread(trt.get((str(p), th), [])) if p else None
                row[f"{kind}_litert_ms"] = row[f"{kind}_litert_ms_{threads}"]
            if row["int8_bytes"] and row["float_bytes"]:
                row["size_ratio"] = row["int8_bytes"] / row["float_bytes"]
            if not f["float"]:
                row["float_missing"] = f"{f['float_named'] or 'no float file named in the manifest'} not found " \
                                       f"(*.float32.tflite is not committed; `make models` writes it)"
            rows.append(row)
        self.r["models"] = {"rows": rows, "threads": threads, "thread_counts": thread_counts, "runs": runs,
                            "trt_runs": trt_runs, "tflite_runtime": trt_note,
                            "tflite_runtime_ok": bool(trt)}
        self.step("float vs int8 timed")

    def darknet(self) -> None:
        """benchmarks/bench_darknet.py (the converter's bench): int8 vs float vs OpenCV DNN darknet."""
        _benchmarks_on_path()
        try:
            from benchmarks import bench_darknet
        except ImportError as e:
            self.skip("darknet", f"benchmarks/bench_darknet.py not importable: {e}")
            return
        manifests = [self.cfg.resolve(self.cfg.models.detector), *self.args.darknet_manifest]
        if Path(self.spec).is_dir():
            images = Path(self.spec)
        else:
            import cv2

            images = self.tmp / "darknet-frames"
            images.mkdir(exist_ok=True)
            for i, f in enumerate(self.frames):
                cv2.imwrite(str(images / f"{i:04d}.png"), f[..., ::-1])
        n = min(self.n, 5 if self.quick else 40)
        runs: dict[str, list[dict]] = defaultdict(list)
        for _ in range(self.repeats):
            for m in manifests:
                try:
                    res = bench_darknet.run(Path(m), images, n, self.cfg.models.num_threads)
                    runs[str(m)].append(res)
                except Exception as e:  # noqa: BLE001 - e.g. no float reference next to a manifest
                    self.r["skipped"][f"darknet {Path(m).name}"] = f"{type(e).__name__}: {e}"
        rows = []
        for m, res in runs.items():
            first = res[0]
            row = {"model": first["model"], "input": first["input"], "frames": first["frames"],
                   "sizes": first["sizes_bytes"], "size_ratio": first["size_ratio_int8_vs_float32"], "ms": {}}
            for k in first["latency"]:
                row["ms"][k] = spread([r["latency"][k]["median_ms"] for r in res])
            rows.append(row)
        if rows:
            self.r["darknet"] = {"rows": rows, "threads": self.cfg.models.num_threads}
        self.step("bench_darknet done")

    # -- 5 --
    def subprocess_run(self) -> None:
        n = min(self.n, 8) if self.quick else self.n
        runs = []
        for rep in range(self.repeats):
            try:
                r = run_subprocess(self.spec, n, self.args.config, self.tmp / f"sub{rep}")
            except Exception as e:  # noqa: BLE001
                self.skip("doorguard run subprocess", f"{type(e).__name__}: {e}")
                return
            runs.append(r)
            if r["rc"] != 0:
                self.skip("doorguard run subprocess", f"exit {r['rc']}: {' | '.join(r['tail'])[:200]}")
                return
        self.r["subprocess"] = {
            "frames": n, "cmd": runs[0]["cmd"], "max_rss_mib": spread([r["max_rss_mib"] for r in runs]),
            "first_frame_s": spread([r["first_frame_s"] for r in runs]),
            "wall_s": spread([r["wall_s"] for r in runs]), "summary": runs[-1]["summary"],
            "first_line_found": all(r["first_frame_s"] is not None for r in runs),
        }
        self.step(f"doorguard run: peak RSS {fmt(self.r['subprocess']['max_rss_mib'])} MiB, first frame "
                  f"{fmt(self.r['subprocess']['first_frame_s'], 2)} s")
        if self.spec != "demo":
            # `make run` plays the demo, which imports matplotlib for its photo: its own figure.
            demo = []
            for rep in range(self.repeats):
                try:
                    r = run_subprocess("demo", min(n, 30), self.args.config, self.tmp / f"demo{rep}")
                except Exception as e:  # noqa: BLE001
                    self.r["skipped"]["doorguard run --source demo"] = f"{type(e).__name__}: {e}"
                    return
                if r["rc"] != 0:
                    self.r["skipped"]["doorguard run --source demo"] = f"exit {r['rc']}"
                    return
                demo.append(r)
            self.r["subprocess"]["demo"] = {"frames": min(n, 30),
                                            "max_rss_mib": spread([r["max_rss_mib"] for r in demo]),
                                            "first_frame_s": spread([r["first_frame_s"] for r in demo])}

    # -- 6 --
    def projection(self) -> None:
        import cv2

        rows = []
        models = (self.r.get("models") or {}).get("rows", [])
        host = {}
        for m in models:
            host[m["role"]] = (m.get("int8_litert_ms") or {}).get("median")
        try:
            for f in model_files(self.cfg):
                rows.append({"name": f"doorguard {f['role']} {f['name']} (int8 TFLite, {f['input']})",
                             "macs": tflite_macs(f["int8"]), "host_ms": host.get(f["role"]), "role": f["role"]})
        except Exception as e:  # noqa: BLE001
            self.skip("MACs of doorguard models", f"{type(e).__name__}: {e}")
        peers_ms = {p["name"]: (p["ms"] or {}).get("median") for p in self.r.get("peers") or []}
        if self.has_shared:
            d = self.shared / "models"
            cands = [
                ("seed yolov3-tiny 416 (darknet float, OpenCV DNN)",
                 lambda: cv2_macs(cv2.dnn.readNetFromDarknet(str(d / "yolov3-tiny/yolov3-tiny.cfg"),
                                                            str(d / "yolov3-tiny/yolov3-tiny.weights")),
                                  (1, 3, 416, 416)),
                 (self.r.get("seed") or {}).get("infer_ms", {}) or {}),
                ("YuNet n 320 (ONNX)", lambda: cv2_macs(cv2.dnn.readNetFromONNX(
                    str(d / "peers/yunet_n_320_320.onnx")), (1, 3, 320, 320)), peers_ms.get("YuNet n 320")),
                ("YuNet n 640 (ONNX)", lambda: cv2_macs(cv2.dnn.readNetFromONNX(
                    str(d / "peers/yunet_n_640_640.onnx")), (1, 3, 640, 640)), peers_ms.get("YuNet n 640")),
                ("UltraFace RFB-320 (TFLite float)", lambda: tflite_macs(
                    d / "peers/version-RFB-320_without_postprocessing.tflite"),
                 peers_ms.get("UltraFace RFB-320 TFLite")),
                ("AIZOO face-mask 260 (TFLite float)", lambda: tflite_macs(d / "peers/face_mask_detection.tflite"),
                 peers_ms.get("AIZOO face-mask TFLite")),
            ]
            for name, count, ms in cands:
                try:
                    host_ms = ms.get("median") if isinstance(ms, dict) else ms
                    rows.append({"name": name, "macs": count(), "host_ms": host_ms})
                except Exception as e:  # noqa: BLE001
                    self.r["skipped"][f"MACs {name}"] = f"{type(e).__name__}: {e}"
        dk_ms = {row["model"]: (row["ms"].get("litert_int8") or {}).get("median")
                 for row in (self.r.get("darknet") or {}).get("rows", [])}
        for m in self.args.darknet_manifest:
            try:
                from edge.manifest import load_manifest

                man = load_manifest(Path(m), verify_hash=False)
                rows.append({"name": f"{man.name} (converted darknet, int8 TFLite, "
                                     f"{man.input.width}x{man.input.height})",
                             "macs": tflite_macs(man.tflite_path(Path(m))), "host_ms": dk_ms.get(man.name)})
            except Exception as e:  # noqa: BLE001
                self.r["skipped"][f"MACs {Path(m).name}"] = f"{type(e).__name__}: {e}"
        small = next((r["macs"] for r in rows if r["name"] == SMALL_REF_NAME), None)
        for r in rows:
            r["pi5_ms"] = REF_PI5_MS * r["macs"] / REF_MACS
            r["pi4_ms"] = REF_PI4_MS * r["macs"] / REF_MACS
            r["pi4_small_ms"] = SMALL_REF_PI4_MS * r["macs"] / small if small else None
        det = next((r for r in rows if r.get("role") == "detector"), None)
        clf = next((r for r in rows if r.get("role") == "classifier"), None)
        frames = []
        if det:
            for k in (0, 1, 3):
                macs = det["macs"] + (clf["macs"] * k if clf else 0)
                if k and not clf:
                    continue
                frames.append({"faces": k, "macs": macs, "pi5_ms": REF_PI5_MS * macs / REF_MACS,
                               "pi4_ms": REF_PI4_MS * macs / REF_MACS,
                               "pi4_small_ms": SMALL_REF_PI4_MS * macs / small if small else None})
        self.r["projection"] = {"rows": rows, "frames": frames, "small_ref_macs": small}
        self.step("MACs counted")

    def web_viewer(self) -> None:
        if self.quick or self.args.no_web_viewer:
            self.skip("web viewer", "--quick" if self.quick else "--no-web-viewer")
            return
        if not (ROOT / "benchmarks" / "web_viewer.py").is_file():
            self.skip("web viewer", "benchmarks/web_viewer.py not in this checkout")
            return
        out = self.out / "web_viewer.md"
        cmd = [sys.executable, "-m", "benchmarks.web_viewer", "--segments", "6", "--seconds", "4",
               "--out", str(out)]
        cfg_env = dict(os.environ)
        try:
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=cfg_env)
        except subprocess.TimeoutExpired:
            self.skip("web viewer", "benchmarks/web_viewer.py ran past 300 s")
            return
        if r.returncode != 0 or not out.is_file():
            tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
            self.skip("web viewer", f"benchmarks/web_viewer.py exit {r.returncode}: {tail[:200]}")
            return
        self.r["web_viewer"] = {"table": out.read_text(), "cmd": " ".join(cmd[1:])}
        self.step("web viewer measured")

    def plots(self) -> None:
        d = self.r.get("doorguard")
        self.r["plots"] = []
        if d:
            plot_stages(d["stages"], self.out / "stage_latency.png",
                        f"doorguard per-stage latency ({self.r['source']['frames']} frames x "
                        f"{self.repeats}, {self.r['machine']['cpu'][:40]})")
            self.r["plots"].append("stage_latency.png")
            plot_faces(d["face_buckets"], d["per_frame_all"], self.out / "fps_vs_faces.png",
                       "doorguard frame processing vs faces in the frame (every face classified)")
            self.r["plots"].append("fps_vs_faces.png")
            d.pop("per_frame_all", None)
        if self.r.get("peers"):
            rows = list(self.r["peers"])
            if d:
                rows.insert(0, {"name": "doorguard end to end (runner, sect. 1)", "fps": d["fps"]})
            if self.r.get("seed"):
                rows.append({"name": f"seed loop (yolov3-tiny + {self.args.beep_s:g} s beep, sect. 2)",
                             "fps": self.r["seed"]["fps"]})
            plot_peers(rows, self.out / "peers_fps.png", "FPS on the same frames (this machine)")
            self.r["plots"].append("peers_fps.png")
        else:
            for f in ("peers_fps.png",):
                (self.out / f).unlink(missing_ok=True)


def summarize_doorguard(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-stage percentiles over all repeats' samples, FPS and overhead spread over repeats."""
    pooled: dict[str, list[float]] = defaultdict(list)
    per_rep_p50: dict[str, list[float]] = defaultdict(list)
    for r in runs:
        for k, v in r["calls"].items():
            pooled[k].extend(v)
            if v:
                per_rep_p50[k].append(statistics.median(v))
    frames_total = sum(len(r["per_frame"]) for r in runs)
    stages = []
    for key, label, threaded in STAGES:
        s = pooled.get(key, [])
        p = pct(s)
        stages.append({"key": key, "label": label, "threaded": threaded, "calls": len(s),
                       "p50": p.get(50), "p90": p.get(90), "p99": p.get(99),
                       "per_frame_ms": sum(s) / frames_total if frames_total and s else 0.0,
                       "p50_spread": spread(per_rep_p50.get(key, []))})
    loop = [f["loop"] for r in runs for f in r["per_frame"] if "loop" in f]
    busy = [f["busy"] for r in runs for f in r["per_frame"] if "busy" in f]
    lp = pct(loop)
    stages.append({"key": "loop", "label": "whole loop, frame to frame", "threaded": False, "calls": len(loop),
                   "p50": lp.get(50), "p90": lp.get(90), "p99": lp.get(99),
                   "per_frame_ms": statistics.mean(loop) if loop else 0.0,
                   "p50_spread": spread([statistics.median([f["loop"] for f in r["per_frame"] if "loop" in f])
                                         for r in runs if len(r["per_frame"]) > 1])})
    per_frame_all = [f for r in runs for f in r["per_frame"]]
    faces = [f.get("faces", 0) for f in per_frame_all]
    return {
        "frames": runs[0]["frames"], "fps": spread([r["fps"] for r in runs]),
        "invoke_ms": spread([r["invoke_ms"] for r in runs]),
        "invoke_fps": spread([1000.0 / r["invoke_ms"] for r in runs if r["invoke_ms"]]),
        "overhead_ratio": spread([r["overhead_ratio"] for r in runs]),
        "overhead_ratio_no_classifier": spread([r["overhead_ratio_no_classifier"] for r in runs]),
        "overhead_ratio_no_faces": spread([r["overhead_ratio_no_faces"] for r in runs]),
        "busy_ms": statistics.median(busy) if busy else None,
        "stages": stages, "face_buckets": face_buckets(per_frame_all), "per_frame_all": per_frame_all,
        "faces_mean": float(np.mean(faces)) if faces else 0.0, "faces_max": int(max(faces)) if faces else 0,
        "events": runs[-1]["events"], "backend": runs[0]["backend"], "threads": runs[0]["threads"],
        "runner_latency_last": runs[-1]["runner_latency"],
    }


# ---- the report ----------------------------------------------------------------------------

def _goal(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**not met**")


def _times(s: dict[str, float] | None) -> str:
    return f"{fmt(s, 1)}x" if s else "not measured"


def _mb(n: int | None) -> str:
    return f"{n / 1e6:.3f} MB" if n else "-"


def render(r: dict[str, Any]) -> str:
    """bench.md from the results dict (every section present, measured or with its reason)."""
    m = r["machine"]
    sk = r.get("skipped", {})
    L: list[str] = []
    add = L.append
    add("# doorguard bench")
    add("")
    add(f"Machine: {m['cpu']} ({m['cores']} cores, shared with other jobs; load average "
        f"{', '.join(f'{v:.2f}' for v in m['load_start'])} at start, "
        f"{', '.join(f'{v:.2f}' for v in m.get('load_end', m['load_start']))} at end). "
        f"{m['date_utc']}, commit {m['commit'] or '?'}; Python {m['python']}, numpy {m['numpy']}, "
        f"OpenCV {m['opencv']}, ai-edge-litert {m['ai_edge_litert']}.")
    add("")
    src = r.get("source", {})
    add(f"Frames: {src.get('description', '?')}, {src.get('frames', '?')} frames "
        f"(sizes {', '.join(src.get('sizes', []))}). Every figure was measured {r['repeats']} time(s): "
        f"**median (min-max)** over the repeats; ratios are taken within one repeat."
        + (" **--quick run: a smoke test, not a measurement.**" if r.get("quick") else ""))
    add("")
    add("x86 timings say nothing about a Raspberry Pi (other cores, caches, memory bandwidth, SIMD; "
        "with XNNPACK on x86 int8 is not faster than float). The Pi figures below are a "
        "**projection**, never a measurement.")
    add("")
    d, s, sub, mo = r.get("doorguard"), r.get("seed"), r.get("subprocess"), r.get("models")

    # -- summary table --
    add("## Summary")
    add("")
    add("| figure | value | goal | |")
    add("|---|---|---|---|")
    if d:
        ov = d["overhead_ratio"]
        add(f"| doorguard end-to-end FPS (runner, {d['frames']} frames per repeat) | {fmt(d['fps'])} | | |")
        add(f"| 1 / detector invoke (median invoke {fmt(d['invoke_ms'], 2, 'ms')}) | {fmt(d['invoke_fps'])} FPS | | |")
        add(f"| end-to-end FPS / (1 / invoke) | {fmt(ov, 2)} | >= 0.90 | {_goal(ov['median'] >= 0.9 if ov else None)} |")
        add(f"| same, classifier time taken out (invoke / mean loop minus crops and classifier) | "
            f"{fmt(d.get('overhead_ratio_no_classifier'), 2)} | | |")
        add(f"| same, frames with no face (invoke / median loop) | {fmt(d.get('overhead_ratio_no_faces'), 2)} | | |")
    else:
        add(f"| doorguard end-to-end FPS | not measured: {sk.get('doorguard', '?')} | | |")
    if s:
        add(f"| seed loop FPS (yolov3-tiny float, {s['beep_s']:g} s beep per flagged frame) | {fmt(s['fps'], 2)} | | |")
        add(f"| doorguard / seed FPS | {_times(s['ratio'])} | >= 2x | "
            f"{_goal(s['ratio']['median'] >= 2 if s['ratio'] else None)} |")
        add(f"| doorguard / seed FPS without the beeps (inference only) | {_times(s['ratio_no_beep'])} | | |")
    else:
        add(f"| seed loop | not measured: {sk.get('seed', '?')} | | |")
    if mo:
        for row in mo["rows"]:
            if row.get("size_ratio"):
                add(f"| {row['role']} int8 / float file size | {row['size_ratio']:.3f} "
                    f"({_mb(row['int8_bytes'])} / {_mb(row['float_bytes'])}) | <= 0.27 | "
                    f"{_goal(row['size_ratio'] <= 0.27)} |")
            else:
                add(f"| {row['role']} int8 / float file size | not measured: {row.get('float_missing', '?')} | <= 0.27 | n/a |")
    else:
        add(f"| int8 / float size | not measured: {sk.get('float vs int8', '?')} | <= 0.27 | n/a |")
    for row in (r.get("darknet") or {}).get("rows", [])[1:]:
        add(f"| {row['model']} (converted darknet) int8 / float file size | {row['size_ratio']:.3f} "
            f"({_mb(row['sizes'].get('int8_tflite'))} / {_mb(row['sizes'].get('float32_tflite'))}) | <= 0.27 | "
            f"{_goal(row['size_ratio'] <= 0.27)} |")
    if sub:
        rss, first = sub["max_rss_mib"], sub["first_frame_s"]
        add(f"| `doorguard run` peak RSS | {fmt(rss)} MiB | <= 150 MB (143 MiB) | "
            f"{_goal(rss['median'] * 1.048576 <= 150 if rss else None)} |")
        add(f"| `doorguard run` start to first processed frame | {fmt(first, 2, 's')} | <= 3 s | "
            f"{_goal(first['median'] <= 3 if first else None)} |")
        if sub.get("demo"):
            drss = sub["demo"]["max_rss_mib"]
            add(f"| `doorguard run --source demo` peak RSS (what `make run` plays) | {fmt(drss)} MiB | "
                f"<= 150 MB (143 MiB) | {_goal(drss['median'] * 1.048576 <= 150 if drss else None)} |")
    else:
        add(f"| `doorguard run` RSS / start-up | not measured: {sk.get('doorguard run subprocess', '?')} | | |")
    add("")

    # -- 1 --
    add("## 1. End to end: the runner on the frames")
    add("")
    if d:
        add(f"`edge.service.Runner` as `doorguard run` wires it (capture thread, `edge.pipeline.Pipeline`, "
            f"rules, actuators on gpiozero mock pins, SQLite events; MQTT and web off), "
            f"{d['threads']} interpreter thread(s), backend {d['backend']}; each repeat plays the frames "
            f"{r.get('passes', 1)} time(s) in a row ({d['frames']} frames). Timers are wrapped around the "
            f"objects the runner built; nothing is re-implemented. Event log lines were muted during these "
            f"runs. Faces detected per frame: mean {d['faces_mean']:.1f}, max {d['faces_max']}. Frames "
            f"are unrelated photos, so the tracker rarely settles and nearly every face is classified on "
            f"every frame (worse than a doorway, where settled tracks are re-classified every "
            f"`tracking.reclassify_every` frames). Events in the last repeat: "
            f"{', '.join(f'{k} {v}' for k, v in sorted(d['events'].items())) or 'none'}.")
        add("")
        add("| stage | calls | p50 ms | p90 ms | p99 ms | p50 over repeats | ms per frame (mean) |")
        add("|---|---|---|---|---|---|---|")
        for st in d["stages"]:
            if st["p50"] is None:
                add(f"| {st['label']} | 0 | - | - | - | - | - |")
                continue
            add(f"| {st['label']} | {st['calls']} | {st['p50']:.3f} | {st['p90']:.3f} | {st['p99']:.3f} | "
                f"{fmt(st['p50_spread'], 3)} | {st['per_frame_ms']:.3f}"
                f"{' (in parallel)' if st['threaded'] else ''} |")
        add("")
        add("The detector row is `Interpreter.invoke` alone; \"tensor in/out + dequantize\" is the rest of "
            "`Detector.infer`. Capture runs in its own thread (decoding the next JPEG while the loop works); "
            "\"capture wait\" is what the loop lost waiting for it.")
        add("")
        add("![per-stage latency](stage_latency.png)")
        add("")
        own = d.get("runner_latency_last") or {}
        if own:
            add("The runner's own stage timers (`Pipeline.latency`, what `doorguard run` prints in its "
                "summary), last repeat, for comparison:")
            add("")
            add("| runner stage | p50 ms | p90 ms | p99 ms |")
            add("|---|---|---|---|")
            for stage, p in own.items():
                if p:
                    add(f"| {stage} | {p['50']:.3f} | {p['90']:.3f} | {p['99']:.3f} |"
                        if "50" in p else f"| {stage} | {p[50]:.3f} | {p[90]:.3f} | {p[99]:.3f} |")
            add("")
        add("### FPS vs faces in the frame")
        add("")
        add("| faces | frames | processing ms (median, IQR) | FPS | detector stage ms |")
        add("|---|---|---|---|---|")
        for b in d["face_buckets"]:
            add(f"| {b['faces']} | {b['frames']} | {b['busy_ms']:.2f} ({b['q1']:.2f}-{b['q3']:.2f}) | "
                f"{b['fps']:.1f} | {b['detect_ms']:.2f} |")
        add("")
        add("Processing = preprocess + detector + decode + crops + classifier + tracking + rules + "
            "actuation + event write of that frame (capture excluded). The motion gate is off here "
            "(every frame runs the detector); what it saves on an idle doorway: `make bench-arm`.")
        add("")
        add("![FPS vs faces](fps_vs_faces.png)")
    else:
        add(f"Not measured: {sk.get('doorguard', '?')}")
    add("")

    # -- 2 --
    add("## 2. Seed-style loop on the same frames")
    add("")
    if s:
        add(f"The loop the seed projects wrote: read a frame, `cv2.dnn.readNetFromDarknet` yolov3-tiny "
            f"(float, ../shared), `blobFromImage` {SEED_SIZE}x{SEED_SIZE}, `forward`, decode (confidence > "
            f"{SEED_CONF}, `NMSBoxes` {SEED_NMS}), and when a {'/'.join(s['flag'])} is found a synchronous "
            f"beep: `time.sleep({s['beep_s']:g})`. **Assumption:** a typical beep (buzzer pulse or sound "
            f"clip) blocks for {s['beep_s']:g} s; the face-touch seed's beep blocked its loop the same way. "
            f"Beeping frames per repeat: {s['beeps']} of {s['frames']}.")
        add("")
        add("| | FPS | ms per frame |")
        add("|---|---|---|")
        add(f"| doorguard end to end (same repeats) | {fmt(s['doorguard_fps'])} | |")
        add(f"| seed loop with the blocking beep | {fmt(s['fps'], 2)} | |")
        add(f"| seed loop, beeps subtracted (inference only) | {fmt(s['fps_no_beep'], 2)} | "
            f"{fmt(s['infer_ms'], 1)} (forward + decode) |")
        add(f"| **doorguard / seed** | **{_times(s['ratio'])}** | goal >= 2x: {_goal(s['ratio']['median'] >= 2 if s['ratio'] else None)} |")
        add(f"| doorguard / seed without beeps | {_times(s['ratio_no_beep'])} | |")
    else:
        add(f"Not measured: {sk.get('seed', '?')}")
    add("")

    # -- 3 --
    add("## 3. Peers on the same frames")
    add("")
    if r.get("peers"):
        add("Each detector's whole `detect(rgb)` (its own preprocessing, inference, decoding, NMS) on the "
            "frames held in memory, the detectors taking turns in blocks of 12 frames (so load from other "
            "jobs hits all alike; each block starts with one uncounted warm-up call); median ms per frame. These ran at other moments than "
            "section 1, so compare the doorguard detector row with the peers, not with section 1. "
            "Runners from `convert/peers.py` (YuNet, UltraFace ONNX, AIZOO) and "
            "`benchmarks/ultraface_tflite.py`.")
        add("")
        add("| detector | how | ms per frame | FPS | faces found (one repeat) |")
        add("|---|---|---|---|---|")
        for p in r["peers"]:
            add(f"| {p['name']} | {p['note']} | {fmt(p['ms'], 2)} | {fmt(p['fps'])} | {p['faces']} |")
        for k, v in sk.items():
            if k.startswith("peer "):
                add(f"| {k[5:]} | not measured: {v} | | | |")
        add("")
        add("![peers](peers_fps.png)")
    else:
        add(f"Not measured: {sk.get('peers', '?')}")
    add("")

    # -- 4 --
    add("## 4. Float vs int8: size and host latency")
    add("")
    if mo:
        add("| model | input | int8 size | float size | int8 / float | goal <= 0.27 |")
        add("|---|---|---|---|---|---|")
        for row in mo["rows"]:
            ratio = f"{row['size_ratio']:.3f}" if row.get("size_ratio") else "-"
            add(f"| {row['role']} {row['name']} | {row['input']} | {_mb(row['int8_bytes'])} | "
                f"{_mb(row['float_bytes'])} | {ratio} | "
                f"{_goal(row['size_ratio'] <= 0.27 if row.get('size_ratio') else None)} |")
        add("")
        add(f"Host latency: invoke only, random input of the model's shape, after 3 warm-ups; "
            f"{mo['runs']} invokes with ai-edge-litert, {mo.get('trt_runs', mo['runs'])} with tflite-runtime; "
            f"median per repeat, then median (min-max) over repeats. The runner uses "
            f"{mo['threads']} thread(s).")
        add("")
        add("| model | threads | int8 litert ms | float litert ms | int8 tflite-runtime ms | "
            "float tflite-runtime ms |")
        add("|---|---|---|---|---|---|")
        for row in mo["rows"]:
            for th in mo.get("thread_counts", [mo["threads"]]):
                add(f"| {row['role']} {row['name']} | {th} | {fmt(row.get(f'int8_litert_ms_{th}'), 2)} | "
                    f"{fmt(row.get(f'float_litert_ms_{th}'), 2)} | {fmt(row.get(f'int8_trt_ms_{th}'), 2)} | "
                    f"{fmt(row.get(f'float_trt_ms_{th}'), 2)} |")
        add("")
        for row in mo["rows"]:
            if row.get("float_missing"):
                add(f"- {row['role']}: float model {row['float_missing']}.")
        if mo["tflite_runtime_ok"]:
            add(f"- tflite-runtime measured with {mo['tflite_runtime']}. On x86 it runs int8 graphs on its "
                f"builtin kernels, not XNNPACK (DESIGN.md), so its int8 column is no guide to a Pi either; "
                f"with 2 threads on this shared 2-core host its kernels also lose much time to thread "
                f"contention (compare the 1-thread rows).")
        else:
            add(f"- tflite-runtime: not measured: {mo['tflite_runtime']}.")
        add("- Small models carry a fixed overhead (flatbuffer, int32 biases, per-channel quantization "
            "parameters, per-op metadata), so their int8/float size ratio sits above the 0.25 that 8 of "
            "32 bits would give; a large model (yolov3-tiny below) reaches it.")
    else:
        add(f"Not measured: {sk.get('float vs int8', '?')}")
    add("")
    dk = r.get("darknet")
    add("### Converted darknet detectors (benchmarks/bench_darknet.py)")
    add("")
    if dk:
        add("The converter's own bench, called once per repeat: real frames preprocessed once, then "
            "`invoke` only, the three runtimes taking turns frame by frame; median ms per repeat, then "
            "median (min-max) over repeats.")
        add("")
        add("| model | input | frames | darknet weights | int8 | float32 | int8 / float | litert int8 ms | "
            "litert float32 ms | OpenCV DNN darknet float32 ms |")
        add("|---|---|---|---|---|---|---|---|---|---|")
        for row in dk["rows"]:
            sz = row["sizes"]
            add(f"| {row['model']} | {row['input']} | {row['frames']} | {_mb(sz.get('darknet_weights'))} | "
                f"{_mb(sz.get('int8_tflite'))} | {_mb(sz.get('float32_tflite'))} | {row['size_ratio']:.3f} | "
                f"{fmt(row['ms'].get('litert_int8'), 2)} | {fmt(row['ms'].get('litert_float32'), 2)} | "
                f"{fmt(row['ms'].get('opencv_dnn_float32'), 2)} |")
    else:
        add(f"Not measured: {sk.get('darknet', 'no result')}")
    for k, v in sk.items():
        if k.startswith("darknet "):
            add(f"- {k[8:]}: not measured: {v}")
    add("")

    # -- 5 --
    add("## 5. `doorguard run`: memory and start-up")
    add("")
    if sub:
        add(f"`{sub['cmd']}` (GPIOZERO_PIN_FACTORY=mock, a fresh state directory), {sub['frames']} frames, "
            f"{r['repeats']} run(s). Peak RSS = the child's VmHWM from /proc, polled every 10 ms; start-up = from "
            f"spawning the process to its log line \"first frame processed\" (interpreter start, imports, "
            f"models loaded, source opened, first frame through detector + classifier).")
        add("")
        add("| figure | value |")
        add("|---|---|")
        add(f"| peak RSS | {fmt(sub['max_rss_mib'])} MiB |")
        add(f"| start to first processed frame | {fmt(sub['first_frame_s'], 2, 's')} |")
        add(f"| whole run wall time | {fmt(sub['wall_s'], 1, 's')} |")
        if sub.get("demo"):
            dm = sub["demo"]
            add(f"| peak RSS with `--source demo` ({dm['frames']} frames; the demo imports matplotlib for its "
                f"photo) | {fmt(dm['max_rss_mib'])} MiB |")
            add(f"| start to first processed frame with `--source demo` | {fmt(dm['first_frame_s'], 2, 's')} |")
        add(f"| its own summary (last run) | {sub['summary']} |")
        if not sub["first_line_found"]:
            add("| note | the \"first frame processed\" line was missing from some runs |")
    else:
        add(f"Not measured: {sk.get('doorguard run subprocess', '?')}")
    add("")

    # -- 6 --
    add("## 6. Pi projection (a projection, not a measurement)")
    add("")
    pr = r.get("projection") or {}
    if pr.get("rows"):
        add(f"MACs counted from each graph (convolutions, depthwise convolutions, fully connected layers: "
            f"output elements x kernel size x input channels, from the tensor shapes; TFLite graphs "
            f"through ai-edge-litert, ONNX/darknet through OpenCV DNN's layer shapes). Reference: "
            f"{REF_MODEL} int8 = {REF_MACS / 1e9:.3f} GMACs (counted from its darknet cfg's 21 "
            f"convolutions at 416x416; darknet prints 6.91 BFLOPs), {REF_PI5_MS} ms on a Raspberry Pi 5 "
            f"(arXiv 2506.09300) and {REF_PI4_MS:.0f} ms on a Raspberry Pi 4 with 4 threads (PINTO model "
            f"zoo issue 44). Projected latency = reference latency x model MACs / reference MACs. "
            f"A second Pi 4 column scales from a small model instead: UltraFace RFB-320 at "
            f"{SMALL_REF_PI4_MS:g} ms on a Pi 4B (MNN int8, 4 cores; UltraFace README via "
            f"../shared/models/SOURCES.md), another runtime, so the two Pi 4 columns give a range rather "
            f"than a figure. The references are int8: float rows (seed, peers) assume they too were "
            f"converted to int8.")
        add("")

        def sm(v):
            return f"{v:.1f}" if v else "-"

        add("| model | MACs | host x86 ms (measured here) | projected Pi 5 ms | projected Pi 4 ms | "
            "projected Pi 4 ms (small-model ref) |")
        add("|---|---|---|---|---|---|")
        for row in pr["rows"]:
            hm = f"{row['host_ms']:.2f}" if row.get("host_ms") else "-"
            add(f"| {row['name']} | {row['macs'] / 1e6:.1f} M | {hm} | {row['pi5_ms']:.2f} | {row['pi4_ms']:.1f} | "
                f"{sm(row.get('pi4_small_ms'))} |")
        if pr.get("frames"):
            add("")
            add("| doorguard frame (detector + one classifier run per face) | MACs | projected Pi 5 ms | "
                "projected Pi 4 ms | projected Pi 4 ms (small-model ref) |")
            add("|---|---|---|---|---|")
            for f in pr["frames"]:
                add(f"| {f['faces']} face(s) | {f['macs'] / 1e6:.1f} M | {f['pi5_ms']:.2f} | {f['pi4_ms']:.1f} | "
                    f"{sm(f.get('pi4_small_ms'))} |")
        add("")
        add("Why this is only a projection: it assumes the same runtime efficiency per MAC as the "
            "reference. Small models are dominated by fixed per-invoke and per-op costs, depthwise "
            "convolutions reach fewer MACs per cycle than dense ones, and float models (the seed, YuNet, "
            "UltraFace, AIZOO) run slower per MAC than int8 on the Pi's NEON kernels; so the small models' "
            "real Pi latency will be higher than projected. The host column is x86 and says nothing about "
            "the Pi. Host ms for the doorguard rows is the int8 invoke alone (section 4), for converted "
            "darknet rows the litert int8 invoke (section 4), for the others the whole detect() per frame "
            "(sections 2-3).")
    else:
        add("Not computed.")
    add("")

    # -- web viewer --
    add("## 7. One viewer of the live web page")
    add("")
    if r.get("web_viewer"):
        add(f"From `{r['web_viewer']['cmd']}` (its own method: alternating segments with and without a viewer):")
        add("")
        add(r["web_viewer"]["table"].rstrip())
    else:
        add(f"Not measured: {sk.get('web viewer', '?')}")
    add("")
    other = {k: v for k, v in sk.items()
             if k not in ("doorguard", "seed", "peers", "float vs int8", "doorguard run subprocess", "web viewer")
             and not k.startswith("peer ")}
    other = {k: v for k, v in other.items() if not k.startswith("darknet")}
    if other:
        add("## Not measured")
        add("")
        for k, v in other.items():
            add(f"- {k}: {v}")
        add("")
    add("## Reproduce")
    add("")
    add("    make bench                                   # = .venv/bin/doorguard bench --out bench-out")
    add("    .venv/bin/doorguard bench --repeats 5 --out bench-out   # more repeats")
    add("    .venv/bin/doorguard bench --quick --source demo --frames 8 --out /tmp/b   # smoke run")
    add("    # tflite-runtime columns (it needs numpy<2, so its own venv) and a converted yolov3-tiny:")
    add("    python3 -m venv /tmp/trt && /tmp/trt/bin/pip install 'numpy<2' tflite-runtime==2.14.0")
    add("    .venv/bin/doorguard convert darknet --cfg ../shared/models/yolov3-tiny/yolov3-tiny.cfg \\")
    add("        --weights ../shared/models/yolov3-tiny/yolov3-tiny.weights \\")
    add("        --names ../shared/models/yolov3-tiny/coco.names --calib ../shared/data/facemask853/train.txt \\")
    add("        --out /tmp/yolov3-tiny")
    add("    DOORGUARD_TFLITE_RUNTIME_PYTHON=/tmp/trt/bin/python DOORGUARD_BENCH_DARKNET=/tmp/yolov3-tiny.json \\")
    add("        make bench")
    add("")
    add(f"Bench wall time: {r.get('elapsed_s', 0):.0f} s. All figures: bench.json.")
    add("")
    return "\n".join(L)


def main(args: argparse.Namespace) -> int:
    """``doorguard bench``."""
    return Bench(args).run()
