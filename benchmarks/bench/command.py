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
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DoorguardError, UsageError
from edge.jsonable import jsonable

from .end_to_end import run_doorguard, summarize_doorguard
from .float_int8 import litert_latency, model_files, tflite_runtime_latency
from .macs import SMALL_REF_NAME, cv2_macs, project_ms, tflite_macs
from .peers import peer_detectors, time_detectors
from .plots import plot_faces, plot_peers, plot_stages
from .report import render
from .seed import BEEP_S, SEED_FLAG_CLASSES, SeedLoop
from .source import facemask_val_folder, read_frames
from .stats import fmt, spread
from .subprocess_run import run_subprocess

log = logging.getLogger(__name__)

#: The checkout (git commit, ../shared, benchmarks/web_viewer.py).
ROOT = Path(__file__).resolve().parents[2]


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
            r.update(project_ms(r["macs"], small))
        det = next((r for r in rows if r.get("role") == "detector"), None)
        clf = next((r for r in rows if r.get("role") == "classifier"), None)
        frames = []
        if det:
            for k in (0, 1, 3):
                macs = det["macs"] + (clf["macs"] * k if clf else 0)
                if k and not clf:
                    continue
                frames.append({"faces": k, "macs": macs, **project_ms(macs, small)})
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


def main(args: argparse.Namespace) -> int:
    """``doorguard bench``."""
    return Bench(args).run()
