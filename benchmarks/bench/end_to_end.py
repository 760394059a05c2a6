"""Section 1 of ``doorguard bench``: the real runner end to end, with timers on its own objects.

``edge.service.Runner`` (capture thread, ``edge.pipeline.Pipeline``, rules, actuators on
gpiozero mock pins, the SQLite event store) plays a fixed set of frames as a stream. The
runner's objects are wrapped with timers after it builds them (nothing re-implemented):
per-stage latency percentiles and FPS, and the FPS against 1 / (detector invoke time) =
the loop's overhead.
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .stats import pct, spread

#: Stages of the per-stage table, in loop order: timer key -> label.
STAGES = {
    "capture": "capture (read + decode, capture thread)",
    "capture wait": "capture wait (loop blocked on the next frame)",
    "preprocess": "preprocess (letterbox + quantize)",
    "detector": "detector invoke",
    "detector io": "detector tensor in/out + dequantize",
    "decode+nms": "YOLO decode + NMS",
    "crop": "crop with margin",
    "classify": "classify (per face: prepare + invoke)",
    "tracking": "tracking + votes",
    "rules": "rules",
    "actuation": "actuation (gpiozero mock pins)",
    "event write": "event write (SQLite)",
    "other": "rest of the loop (untimed bookkeeping, waits for a CPU)",
}
#: The stages that run in the capture thread, beside the loop.
THREADED = {"capture"}


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
    from edge.act.actuators import Actuators
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
    for key, label in STAGES.items():
        s = pooled.get(key, [])
        p = pct(s)
        stages.append({"key": key, "label": label, "threaded": key in THREADED, "calls": len(s),
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
