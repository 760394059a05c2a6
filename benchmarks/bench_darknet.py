"""Converted darknet detector: size and host latency, int8 vs float32 vs OpenCV DNN darknet.

    .venv/bin/python benchmarks/bench_darknet.py --manifest models/yoloface-500k-v2.json \\
        --images ../shared/data/facemask853/val.txt [--frames 50] [--threads 2] [--json out.json]

Needs the float reference next to the manifest (``NAME.float32.tflite``, made by
``doorguard convert darknet``) and the darknet cfg/weights named in the
manifest's source files. All three run on the same frames in one process, so
the ratios are comparable; absolute milliseconds are this x86 host's only.
Timed: ``invoke`` only (set_tensor + invoke + get outputs), after 3 warm-up
runs, preprocessing excluded (it is shared by all three); the three runtimes
take turns frame by frame so a busy host slows them alike.

x86 latency says nothing about the Raspberry Pi. Measure on the Pi (or an ARM
profile) before making speed claims.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from edge.errors import DoorguardError, run_main  # noqa: E402

WARMUP = 3


def _time_interleaved(runs: dict[str, tuple]) -> dict[str, list[float]]:
    """Time each runtime on frame i in turn, so load from other processes hits all alike."""
    for fn, tensors in runs.values():
        for x in tensors[:WARMUP]:
            fn(x)
    out: dict[str, list[float]] = {k: [] for k in runs}
    n = min(len(t) for _, t in runs.values())
    for i in range(n):
        for k, (fn, tensors) in runs.items():
            t = time.perf_counter()
            fn(tensors[i])
            out[k].append((time.perf_counter() - t) * 1000)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    s = sorted(ms)
    return {"median_ms": round(statistics.median(s), 2), "p90_ms": round(s[int(0.9 * (len(s) - 1))], 2),
            "mean_ms": round(statistics.fmean(s), 2), "runs": len(s)}


def run(manifest: Path, images: Path, frames: int, threads: int) -> dict:
    """Measure sizes and latencies; returns the results as a dict."""
    import cv2

    from convert.verify.detect_report import resolve_images
    from convert.data.images import load_images
    from edge.manifest import load_manifest
    from edge.infer.preprocess import prepare
    from edge.infer.runtime import TfliteModel

    m = load_manifest(manifest)
    d = manifest.parent
    if not m.float_tflite or not (d / m.float_tflite).is_file():
        raise DoorguardError(f"no float reference next to {manifest}: re-run doorguard convert darknet")
    imgs, _, _ = load_images(resolve_images(images), limit=frames, seed=0)
    q = TfliteModel(d / m.tflite, threads, "litert")
    f = TfliteModel(d / m.float_tflite, threads, "litert")
    xq = [prepare(img, m.input)[0] for img in imgs]
    xf = [prepare(img, m.input, dtype="float32")[0] for img in imgs]
    res: dict = {"model": m.name, "frames": len(imgs), "threads": threads,
                 "input": f"{m.input.width}x{m.input.height}",
                 "sizes_bytes": {"int8_tflite": (d / m.tflite).stat().st_size,
                                 "float32_tflite": (d / m.float_tflite).stat().st_size}}
    runs: dict[str, tuple] = {"litert_int8": (q.run_raw, xq), "litert_float32": (f.run_raw, xf)}
    src = m.source.files
    if "cfg" in src and "weights" in src and Path(src["weights"].path).is_file():
        res["sizes_bytes"]["darknet_weights"] = Path(src["weights"].path).stat().st_size
        cv2.setNumThreads(threads)
        # OpenCV's defaults (Winograd on), as a seed project calling readNetFromDarknet would run it.
        net = cv2.dnn.readNetFromDarknet(src["cfg"].path, src["weights"].path)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
        names = net.getUnconnectedOutLayersNames()
        blobs = [np.ascontiguousarray(x.transpose(0, 3, 1, 2)) for x in xf]

        def cv_run(blob):
            net.setInput(blob)
            return net.forward(names)

        runs["opencv_dnn_float32"] = (cv_run, blobs)
    res["latency"] = {k: _stats(v) for k, v in _time_interleaved(runs).items()}
    base = res["latency"]["litert_float32"]["median_ms"]
    res["ratios_vs_litert_float32"] = {k: round(v["median_ms"] / base, 2) for k, v in res["latency"].items()}
    s = res["sizes_bytes"]
    res["size_ratio_int8_vs_float32"] = round(s["int8_tflite"] / s["float32_tflite"], 3)
    import platform

    res["host"] = f"{platform.machine()} {platform.processor() or ''}".strip()
    return res


def table(res: dict) -> str:
    s = res["sizes_bytes"]
    lines = [f"## {res['model']} ({res['input']}, {res['frames']} frames, {res['threads']} threads, {res['host']})",
             "", "| artifact | size |", "|---|---|"]
    lines += [f"| {k} | {v / 1024:.0f} KiB |" for k, v in s.items()]
    lines += [f"", f"int8 / float32 size: {res['size_ratio_int8_vs_float32']:.2f}x", "",
              "| runtime | median ms | p90 ms | vs litert float32 |", "|---|---|---|---|"]
    for k, v in res["latency"].items():
        lines.append(f"| {k} | {v['median_ms']:.2f} | {v['p90_ms']:.2f} | "
                     f"{res['ratios_vs_litert_float32'][k]:.2f}x |")
    lines += ["", "x86 latency says nothing about the Raspberry Pi (other cores, caches and kernels: "
              "int8 vs float on x86 does not predict int8 vs float on a Cortex-A76). Only ratios within "
              "this one run, on this host, are comparable; a p90 far above the median means the host "
              "was busy."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manifest", type=Path, required=True, action="append",
                    help="models/NAME.json (repeat for several models)")
    ap.add_argument("--images", type=Path, required=True, help="frames: image folder or list file")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results as JSON")
    args = ap.parse_args(argv)
    return run_main("bench_darknet", lambda: bench(args))


def bench(args: argparse.Namespace) -> None:
    """Benchmark the manifests ``main`` parsed; print (and write) the results."""
    results = [run(mp, args.images, args.frames, args.threads) for mp in args.manifest]
    for r in results:
        print(table(r) + "\n")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
