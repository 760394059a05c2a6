"""The guest side of ``make bench-arm``: runs inside the emulated Pi (arm64 rootfs).

Started by benchmarks/arm/bench_arm.py as
``scripts/arm64.sh count PROFILE COUNTS /opt/doorguard/venv/bin/python guest.py ...``.
Every measured piece of work sits between two marker system calls (``segment``);
the TCG plugin benchmarks/arm/insn_count.c appends ``tag count`` to COUNTS for each
one. This script prints, as its last stdout line, ``ARMBENCH-JSON {...}``: what
each tag measured plus facts (versions, faces found). bench_arm.py joins the two.

Outside the emulator (or under ``arm64.sh exec``) the markers are harmless: the
kernel answers EBADF, which ``mark`` swallows, so the script also runs on x86.

What is measured, all with one interpreter thread (the plugin's counter is only
exact for a single-threaded guest; see README.md):

- ``model``: one ``invoke()`` of each shipped model, int8 and float32, under
  ai-edge-litert and tflite-runtime; load (constructor + allocate_tensors) and the
  first invoke (XNNPACK builds its packed weights there) are counted apart.
- ``pipeline``: doorguard's own ``Pipeline.process`` (edge/pipeline.py) with the
  default config's models on frames with 0, 1 and 3 faces: "new" = a fresh tracker
  so every face is classified (what a frame costs while people arrive), "settled" =
  the mean over 10 frames once the tracks have settled (classified every
  ``reclassify_every`` frames), plus the stages apart.
- ``idle``: an empty doorway (the 0-face frame with fresh sensor noise each frame) through
  ``Pipeline.process`` with the motion gate (edge/capture/motion.py) once its background is learnt,
  against the same frames without the gate (what every idle frame cost before).
- ``baseline``: the seed projects' loop body (benchmarks.bench.seed.SeedLoop.detect: OpenCV
  DNN float yolov3-tiny, blobFromImage 416, forward, decode, NMSBoxes) on the same frames.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import gc
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Iterator



#: lseek() "file descriptors" the plugin watches (never open: the kernel says EBADF).
MARK_START = 0x3D00D001
MARK_STOP = 0x3D00D002
#: Prefix of the result line on stdout.
RESULT_PREFIX = "ARMBENCH-JSON "

#: Camera-sized frames (the default source asks for 640 x 480).
FRAME_W, FRAME_H = 640, 480
#: facemask853 val images (../shared/data/facemask853/images), optional crop
#: (x1, y1, x2, y2) in source pixels, letterboxed into 640 x 480. The 0-face frame is the
#: part of a val photo below its only annotated face (torso and hands, no face).
FRAMES: dict[int, tuple[str, tuple[int, int, int, int] | None]] = {
    0: ("maksssksksss664", (0, 145, 259, 400)),
    1: ("maksssksksss456", None),
    3: ("maksssksksss452", None),
}
BACKENDS = ("litert", "tflite_runtime")
#: Frames averaged for the settled-track figure (two reclassify periods at the default 5).
SETTLED_FRAMES = 10
#: Idle frames counted with and without the motion gate (after 20 frames that learn the background).
IDLE_FRAMES = 5


def mark(fd: int, tag: int) -> None:
    """One marker system call; EBADF (the normal answer) is swallowed, anything else raised."""
    try:
        os.lseek(fd, tag, os.SEEK_SET)
    except OSError as e:
        if e.errno != errno.EBADF:
            raise


class Segments:
    """Numbered measurement segments: tag -> what was measured."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def segment(self, **meta: Any) -> Iterator[dict[str, Any]]:
        """Count the guest instructions of the ``with`` body under a fresh tag.

        The yielded dict is the segment's record: the body may add facts to it.
        """
        tag = len(self.items) + 1
        rec = {"tag": tag, **meta}
        self.items.append(rec)
        # A full collection first: otherwise where the cyclic GC happens to run depends on
        # everything the process did before, and a run of other parts counts differently.
        gc.collect()
        mark(MARK_START, tag)
        try:
            yield rec
        finally:
            mark(MARK_STOP, tag)


def frame_image(shared: Path, faces: int):
    """The RGB 640 x 480 frame with ``faces`` faces (see FRAMES)."""
    import cv2

    from edge.infer.preprocess import letterbox

    stem, crop = FRAMES[faces]
    path = shared / "data" / "facemask853" / "images" / f"{stem}.jpg"
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"guest: cannot read {path}")
    if crop is not None:
        x1, y1, x2, y2 = crop
        bgr = bgr[y1:y2, x1:x2]
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    out, _ = letterbox(rgb, FRAME_W, FRAME_H)
    return out


def shipped_models(repo: Path) -> list[Path]:
    """The model manifests in models/ (other JSON there, like eval.json, is skipped).

    The default config's detector and classifier come first, then the rest by name.
    """
    from edge import config
    from edge.manifest import manifest_paths

    cfg = config.load()
    default = [Path(p).stem for p in (cfg.models.detector, cfg.models.classifier) if p]
    # A broken manifest is listed too: loading it fails the run loudly.
    found = manifest_paths(repo / "models")
    rank = {n: i for i, n in enumerate(default)}
    return sorted(found, key=lambda p: (rank.get(p.stem, len(rank)), p.stem))


def bench_models(seg: Segments, repo: Path, image, backends: tuple[str, ...], reps: int) -> list[dict]:
    """Load, first invoke and ``reps`` further invokes of every model, precision and backend."""
    from edge.manifest import load_manifest
    from edge.infer.preprocess import prepare
    from edge.infer.runtime import load_interpreter

    notes = []
    for mpath in shipped_models(repo):
        name = mpath.stem
        m = load_manifest(mpath)
        files = {"int8": m.tflite_path(mpath)}
        if m.float_tflite:
            files["float32"] = mpath.parent / m.float_tflite
        for precision, path in files.items():
            if not path.is_file():
                notes.append({"model": name, "precision": precision, "missing": str(path)})
                continue
            tensor, _ = prepare(image, m.input, dtype="float32" if precision == "float32" else None)
            for backend in backends:
                key = {"group": "model", "model": name, "precision": precision, "backend": backend}
                with seg.segment(**key, kind="load"):
                    interp, _ = load_interpreter(path, 1, backend)
                index = interp.get_input_details()[0]["index"]
                interp.set_tensor(index, tensor)
                with seg.segment(**key, kind="first"):
                    interp.invoke()
                for rep in range(reps):
                    interp.set_tensor(index, tensor)
                    with seg.segment(**key, kind="invoke", rep=rep):
                        interp.invoke()
                del interp
    return notes


def bench_pipeline(seg: Segments, repo: Path, frames: dict, backend: str, settled: bool,
                   stages: bool) -> None:
    """doorguard's Pipeline.process with the default config's models, 1 thread."""
    from edge import config
    from edge.pipeline import Pipeline
    from edge.infer.preprocess import crop_with_margin
    from edge.capture.sources import yuv420_to_rgb
    from edge.types import Frame

    cfg = config.load()
    cfg.base_dir = repo  # the installed package's PROJECT_ROOT has no models/
    cfg.models.num_threads = 1
    cfg.models.backend = backend
    base = Pipeline.from_config(cfg)
    common = {"group": "pipeline", "backend": backend,
              "detector": cfg.models.detector, "classifier": cfg.models.classifier}
    for faces, image in frames.items():
        # Warm-up: first invokes, numpy/OpenCV code paths, on this frame.
        Pipeline(base.detector, base.classifier, cfg).process(Frame(image, 0.0, 0))
        pipe = Pipeline(base.detector, base.classifier, cfg)  # fresh tracker: every face is new
        with seg.segment(**common, faces=faces, kind="new") as rec:
            res = pipe.process(Frame(image, 0.0, 0))
        rec["found"] = len(res.detections)
        rec["classified"] = len(res.classified)
        rec["labels"] = sorted(c.label for c in res.classified.values())
        if settled:
            pipe = Pipeline(base.detector, base.classifier, cfg)
            for i in range(5):  # votes_needed of window: the tracks settle here
                pipe.process(Frame(image, i * 0.1, i))
            before = pipe.latency.count("classify")
            with seg.segment(**common, faces=faces, kind="settled", frames=SETTLED_FRAMES) as rec:
                for i in range(5, 5 + SETTLED_FRAMES):
                    pipe.process(Frame(image, i * 0.1, i))
            rec["classified"] = pipe.latency.count("classify") - before
        if stages:
            det, clf = base.detector, base.classifier
            with seg.segment(**common, faces=faces, kind="det_pre"):
                tensor, tf = det.preprocess(image)
            # The lores path (picamera2's ISP scales; here made before counting): YUV420 -> RGB
            # at the lores size, then the same letterbox and quantization (edge/capture/sources.py).
            yuv = lores_yuv(image, det.manifest.input)
            lw, lh = yuv.shape[1], yuv.shape[0] * 2 // 3
            with seg.segment(**common, faces=faces, kind="det_pre_lores", size=f"{lw}x{lh}"):
                det.preprocess(yuv420_to_rgb(yuv, lw, lh))
            with seg.segment(**common, faces=faces, kind="det_infer"):
                heads = det.infer(tensor)
            with seg.segment(**common, faces=faces, kind="det_post"):
                dets = det.postprocess(heads, tf)
            for k, d in enumerate(dets[:faces]):
                with seg.segment(**common, faces=faces, kind="crop_classify", face=k):
                    clf.classify(crop_with_margin(image, d.box, pipe.margin))


def lores_yuv(image, spec):
    """The frame as picamera2's lores stream would deliver it: YUV420 at ``lores_size``."""
    import cv2

    from edge.capture.sources import lores_size

    lw, lh = lores_size(spec.width, spec.height, image.shape[1], image.shape[0])
    small = cv2.resize(image, (lw, lh), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2YUV_I420)


def bench_idle(seg: Segments, repo: Path, image, backend: str) -> None:
    """Idle frames (nothing moves, no track) with and without the motion gate, 1 thread."""
    import numpy as np

    from edge import config
    from edge.capture.motion import MotionGate
    from edge.pipeline import Pipeline
    from edge.types import Frame

    cfg = config.load()
    cfg.base_dir = repo
    cfg.models.num_threads = 1
    cfg.models.backend = backend
    base = Pipeline.from_config(cfg)
    rng = np.random.default_rng(0)
    # Sensor noise (sigma 2 grey levels) made before counting: a camera delivers it for free.
    frames = [(image.astype(np.float32) + rng.normal(0, 2.0, image.shape)).clip(0, 255).astype(np.uint8)
              for _ in range(20 + IDLE_FRAMES)]
    common = {"group": "idle", "backend": backend, "faces": 0}
    dt = min(0.1, cfg.motion.recheck_s / (2 * len(frames)))  # no periodic check inside the run
    gated = Pipeline(base.detector, base.classifier, cfg, motion=MotionGate(cfg.motion))
    for i in range(20):
        gated.process(Frame(frames[i], i * dt, i))
    with seg.segment(**common, kind="gated", frames=IDLE_FRAMES) as rec:
        res = [gated.process(Frame(frames[i], i * dt, i)) for i in range(20, 20 + IDLE_FRAMES)]
    rec["skipped"] = sum(r.idle for r in res)
    rec["recheck_s"] = cfg.motion.recheck_s
    plain = Pipeline(base.detector, base.classifier, cfg)
    plain.process(Frame(frames[0], 0.0, 0))  # warm-up
    with seg.segment(**common, kind="ungated", frames=IDLE_FRAMES) as rec:
        res = [plain.process(Frame(frames[i], i * dt, i)) for i in range(20, 20 + IDLE_FRAMES)]
    rec["found"] = sum(len(r.detections) for r in res)


def bench_baseline(seg: Segments, shared: Path, frames: dict, reps: int) -> None:
    """The seed-style detector (benchmarks.bench.seed.SeedLoop.detect) on the same frames."""
    import cv2

    from benchmarks.bench.seed import SeedLoop

    cv2.setNumThreads(1)
    seed = SeedLoop(shared)
    for faces, image in frames.items():
        bgr = image[..., ::-1]  # the seeds read BGR from cv2.VideoCapture
        seed.detect(bgr)  # warm-up (OpenCV DNN sets its layers up on the first forward)
        for rep in range(reps):
            with seg.segment(group="baseline", faces=faces, kind="detect", rep=rep) as rec:
                found = seed.detect(bgr)
            rec["found"] = len(found)
            rec["persons"] = sum(1 for c, _, _ in found if c in seed.flag)


def facts() -> dict[str, Any]:
    """Versions and CPU the guest saw."""
    import cv2
    import numpy as np

    out: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version(),
                           "numpy": np.__version__, "opencv": cv2.__version__,
                           "opencv_threads": cv2.getNumThreads(),
                           "profile": os.environ.get("DOORGUARD_ARM_PROFILE")}
    from importlib import metadata

    for dist in ("ai-edge-litert", "tflite-runtime", "doorguard"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    try:
        with open("/proc/cpuinfo", encoding="ascii") as f:
            parts = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("CPU part")]
        out["cpu_part"] = parts[0] if parts else None
    except OSError:
        out["cpu_part"] = None
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    here = Path(__file__).resolve().parents[2]
    p.add_argument("--repo", type=Path, default=here, help="repository root (models/)")
    p.add_argument("--shared", type=Path, default=Path(os.environ.get("DOORGUARD_SHARED", here.parent / "shared")),
                   help="../shared (frames, yolov3-tiny)")
    p.add_argument("--parts", default="empty,models,pipeline,idle,baseline",
                   help="comma list of: empty, models, pipeline, stages, settled, tflite-pipeline, idle, "
                        "baseline")
    p.add_argument("--reps", type=int, default=2, help="counted invokes per model / baseline frame")
    args = p.parse_args(argv)
    parts = set(args.parts.split(","))
    if platform.machine() == "aarch64":  # in the emulated Pi (not when a host test calls main)
        # One thread everywhere, set before numpy/OpenCV load their thread pools: other
        # threads would race the plugin's counter and add spin-wait instructions.
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # resize/letterbox and OpenCV DNN on the calling thread only
    try:
        return _run(args, parts)
    finally:
        cv2.setNumThreads(threads)


def _run(args: argparse.Namespace, parts: set[str]) -> int:
    # The repository's own packages (benchmarks.bench.seed for the seed loop), after the venv's.
    if str(args.repo) not in sys.path:
        sys.path.append(str(args.repo))

    seg = Segments()
    result: dict[str, Any] = {"facts": facts(), "frames": {str(k): {"image": v[0], "crop": v[1]}
                                                          for k, v in FRAMES.items()}}
    if "empty" in parts:  # what the markers themselves cost
        for rep in range(2):
            with seg.segment(group="empty", kind="empty", rep=rep):
                pass
    frames = {n: frame_image(args.shared, n) for n in FRAMES} if parts - {"empty"} else {}
    if "models" in parts:
        result["missing"] = bench_models(seg, args.repo, frames[1], BACKENDS, args.reps)
    if "pipeline" in parts or "stages" in parts or "settled" in parts:
        bench_pipeline(seg, args.repo, frames, "litert", settled="settled" in parts,
                       stages="stages" in parts)
    if "idle" in parts:
        bench_idle(seg, args.repo, frames[0], "litert")
    if "tflite-pipeline" in parts:
        bench_pipeline(seg, args.repo, frames, "tflite_runtime", settled=False, stages=False)
    if "baseline" in parts:
        bench_baseline(seg, args.shared, frames, args.reps)
    result["segments"] = seg.items
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
