"""``doorguard bench-arm`` (``make bench-arm``): guest instructions per frame on an emulated Pi 4
(Cortex-A72) and Pi 5 (A76).

Runs on the host (root, x86_64) with the standard library only (guest.py, which needs numpy,
runs inside the guest):

1. ``scripts/arm64.sh setup``: the arm64 Bookworm rootfs with doorguard installed as on a Pi.
2. ``benchmarks/arm/build_plugin.sh``: the instruction-count QEMU plugin (cached).
3. ``scripts/arm64.sh count PROFILE ...`` runs benchmarks/arm/guest.py per profile; the
   plugin writes ``tag count`` per marked segment, the guest says what each tag was.
4. The same guest run again on the first profile: the run-to-run spread.
5. ``bench-out/arm/bench-arm.md`` and ``bench-arm.json``.

The figures are instruction counts of the emulated CPU, not time: QEMU models no
pipeline, caches or memory. Milliseconds appear only in one table, labelled as a
projection from an assumed IPC and clock (``PROJECTION``). See benchmarks/arm/README.md.

    sudo .venv/bin/doorguard bench-arm [--out bench-out/arm] [--no-setup]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterable

from benchmarks.markdown import table

ROOT = Path(__file__).resolve().parents[2]
GUEST = ROOT / "benchmarks" / "arm" / "guest.py"
ARM64 = ROOT / "scripts" / "arm64.sh"
BUILD_PLUGIN = ROOT / "benchmarks" / "arm" / "build_plugin.sh"
GUEST_PYTHON = "/opt/doorguard/venv/bin/python"
RESULT_PREFIX = "ARMBENCH-JSON "  # as guest.RESULT_PREFIX (guest.py is not imported here: no numpy on purpose)

PROFILES = {"pi4": "Pi 4, Cortex-A72", "pi5": "Pi 5, Cortex-A76"}
#: The only place milliseconds come from: assumed clock (GHz) and instructions per cycle.
#: Clocks are the boards' stock maximum; the IPC values are ASSUMPTIONS, not measurements
#: (A72: 3-wide, A76: 4-wide with more NEON throughput), for dense NEON inference code.
PROJECTION = {"pi4": {"ghz": 1.8, "ipc": 1.0}, "pi5": {"ghz": 2.4, "ipc": 1.5}}
FULL_PARTS = "empty,models,pipeline,stages,settled,tflite-pipeline,idle,baseline"
#: The second run repeats everything: a process doing other work first allocates differently.
REPEAT_PARTS = FULL_PARTS
BACKEND_NAMES = {"litert": "ai-edge-litert", "tflite_runtime": "tflite-runtime"}


# ---- parsing and joining (pure; tested in tests/test_bench_arm.py) ---------------------------

def parse_counts(text: str) -> tuple[dict[int, int], list[str]]:
    """The plugin's output file: ``tag count`` lines -> {tag: count}, plus its error lines."""
    counts: dict[int, int] = {}
    errors: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            counts[int(parts[0])] = int(parts[1])
        elif line.strip():
            errors.append(line.strip())
    return counts, errors


def parse_result(stdout: str) -> dict[str, Any]:
    """The guest's ``ARMBENCH-JSON {...}`` line (the last one wins).

    Raises:
        ValueError: no such line (the guest failed before the end).
    """
    found = None
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            found = line[len(RESULT_PREFIX):]
    if found is None:
        raise ValueError("the guest printed no result line")
    return json.loads(found)


def join(result: dict[str, Any], counts: dict[int, int]) -> list[dict[str, Any]]:
    """Each guest segment with its instruction count (None when the plugin wrote none)."""
    return [{**s, "count": counts.get(int(s["tag"]))} for s in result.get("segments", [])]


#: Frame rates at which the idle cost is also given with the periodic detector frame counted in.
IDLE_FPS = (5, 15)
KEY_FIELDS = ("group", "model", "precision", "backend", "faces", "kind", "face")


def seg_key(seg: dict[str, Any]) -> tuple:
    """What a segment measured, without the repeat number."""
    return tuple(seg.get(f) for f in KEY_FIELDS)


def index(segments: Iterable[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    out: dict[tuple, list[dict[str, Any]]] = {}
    for s in segments:
        out.setdefault(seg_key(s), []).append(s)
    return out


def spread_ppm(values: list[int]) -> float | None:
    """(max - min) / median in parts per million; None for fewer than two values."""
    vals = [v for v in values if v is not None]
    if len(vals) < 2:
        return None
    med = statistics.median(vals)
    return (max(vals) - min(vals)) / med * 1e6 if med else None


class Profile:
    """The joined segments of one guest run, looked up by what they measured."""

    def __init__(self, segments: list[dict[str, Any]]):
        self.segments = segments
        self.by_key = index(segments)

    def get(self, **want: Any) -> dict[str, Any] | None:
        """The first segment (rep 0) measuring ``want`` (missing fields must be absent)."""
        key = tuple(want.get(f) for f in KEY_FIELDS)
        hits = self.by_key.get(key)
        return hits[0] if hits else None

    def count(self, **want: Any) -> int | None:
        s = self.get(**want)
        return None if s is None else s.get("count")

    def per_frame(self, faces: int, kind: str, backend: str = "litert") -> float | None:
        s = self.get(group="pipeline", backend=backend, faces=faces, kind=kind)
        if s is None or s.get("count") is None:
            return None
        return s["count"] / s.get("frames", 1)


def _m(n: float | None, digits: int = 1) -> str:
    return "-" if n is None else f"{n / 1e6:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def project_ms(count: float | None, profile: str) -> str:
    if count is None:
        return "-"
    p = PROJECTION[profile]
    return f"{count / (p['ipc'] * p['ghz'] * 1e6):.1f}"


def summarize(runs: dict[str, dict[str, Any]], repeat: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tables' numbers from the joined runs ({profile: {"segments", "facts", ...}})."""
    profs = {name: Profile(run["segments"]) for name, run in runs.items()}
    frames = sorted({s["faces"] for run in runs.values() for s in run["segments"]
                     if s.get("group") == "pipeline"})
    pipeline = []
    for name, p in profs.items():
        for faces in frames:
            new = p.per_frame(faces, "new")
            settled = p.per_frame(faces, "settled")
            base = p.get(group="baseline", faces=faces, kind="detect")
            pseg = p.get(group="pipeline", backend="litert", faces=faces, kind="new") or {}
            sseg = p.get(group="pipeline", backend="litert", faces=faces, kind="settled") or {}
            pipeline.append({
                "profile": name, "faces": faces, "found": pseg.get("found"),
                "classified_new": pseg.get("classified"), "labels": pseg.get("labels"),
                "classified_settled": sseg.get("classified"), "settled_frames": sseg.get("frames"),
                "new": new, "settled": settled,
                "tflite_runtime_new": p.per_frame(faces, "new", "tflite_runtime"),
                "baseline": None if base is None else base.get("count"),
                "baseline_found": None if base is None else base.get("found"),
                "baseline_persons": None if base is None else base.get("persons"),
                "stages": {k: p.count(group="pipeline", backend="litert", faces=faces, kind=k)
                           for k in ("det_pre", "det_pre_lores", "det_infer", "det_post")},
                "classify_per_face": _mean([s["count"] for s in p.segments
                                            if s.get("group") == "pipeline" and s.get("faces") == faces
                                            and s.get("kind") == "crop_classify" and s.get("count")]),
            })
    models = []
    missing = {(m["model"], m["precision"]) for run in runs.values() for m in run.get("missing") or []}
    # In the order the guest measured them (default models first), then models only missing.
    names = list(dict.fromkeys([s["model"] for run in runs.values() for s in run["segments"]
                                if s.get("group") == "model"] + [m for m, _ in sorted(missing)]))
    for model in names:
        for precision in ("int8", "float32"):
            if (model, precision) in missing and not any(
                    p.get(group="model", model=model, precision=precision, backend="litert", kind="invoke")
                    for p in profs.values()):
                models.append({"model": model, "precision": precision, "backend": None, "missing": True})
                continue
            for backend in ("litert", "tflite_runtime"):
                row: dict[str, Any] = {"model": model, "precision": precision, "backend": backend}
                for name, p in profs.items():
                    for kind in ("invoke", "first", "load"):
                        row[f"{kind}_{name}"] = p.count(group="model", model=model, precision=precision,
                                                        backend=backend, kind=kind)
                if any(row.get(f"invoke_{n}") is not None for n in profs):
                    models.append(row)
    within = {}
    for name, p in profs.items():
        spreads = [spread_ppm([s.get("count") for s in segs]) for segs in p.by_key.values()
                   if len(segs) > 1 and segs[0].get("group") != "empty"]
        spreads = [s for s in spreads if s is not None]
        within[name] = {"segments": len(spreads), "max_ppm": max(spreads) if spreads else None}
    across = None
    if repeat is not None and repeat.get("profile") in profs:
        first = profs[repeat["profile"]]
        second = Profile(repeat["segments"])
        rows = []
        for key, segs in second.by_key.items():
            if key[0] == "empty":  # 10 k instructions: a few dozen apart is not a spread worth a line
                continue
            a = first.by_key.get(key)
            if not a or a[0].get("count") is None or segs[0].get("count") is None:
                continue
            rows.append({"key": dict(zip(KEY_FIELDS, key)), "first": a[0]["count"], "second": segs[0]["count"],
                         "ppm": spread_ppm([a[0]["count"], segs[0]["count"]])})
        by_kind: dict[str, float] = {}
        for r in rows:
            kind = f"{r['key']['group']} {r['key']['kind']}"
            by_kind[kind] = max(by_kind.get(kind, 0.0), r["ppm"])
        across = {"profile": repeat["profile"], "parts": repeat.get("parts"), "segments": len(rows),
                  "max_ppm": max((r["ppm"] for r in rows), default=None), "max_ppm_by_kind": by_kind,
                  "rows": rows}
    marker = {name: p.count(group="empty", kind="empty") for name, p in profs.items()}
    idle = []
    for name, p in profs.items():
        g = p.get(group="idle", backend="litert", faces=0, kind="gated")
        u = p.get(group="idle", backend="litert", faces=0, kind="ungated")
        if not g or not u or g.get("count") is None or u.get("count") is None:
            continue
        gated, ungated = g["count"] / g.get("frames", 1), u["count"] / u.get("frames", 1)
        row = {"profile": name, "gated": gated, "ungated": ungated, "ratio": gated / ungated if ungated else None,
               "skipped": g.get("skipped"), "frames": g.get("frames"), "recheck_s": g.get("recheck_s")}
        for fps in IDLE_FPS:
            # One detector frame every recheck_s seconds, the rest gated.
            n = max(1.0, fps * (g.get("recheck_s") or 1.0))
            row[f"amortized_{fps}fps"] = ((n - 1) * gated + ungated) / n
        idle.append(row)
    return {"pipeline": pipeline, "models": models, "within_run": within, "across_runs": across,
            "marker_overhead": marker, "frames": frames, "idle": idle}


def _mean(vals: list[float]) -> float | None:
    return statistics.fmean(vals) if vals else None


def render_markdown(summary: dict[str, Any], runs: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    """bench-arm.md: the tables, their caveats and how the numbers were made."""
    profs = list(runs)
    L: list[str] = []
    add = L.append
    add("# doorguard on an emulated Raspberry Pi CPU: guest instructions per frame")
    add("")
    add(f"Made by `make bench-arm` on {meta.get('date', '?')} ({meta.get('host', '?')}). "
        "Counts are **guest instructions** executed by QEMU user mode on the "
        + " and ".join(f"{p} profile ({PROFILES.get(p, p)})" for p in profs)
        + ", one interpreter thread, in millions (M). They are not time: see the caveats below. "
          "Emulated wall time is not speed and is not reported as such.")
    add("")
    facts = {p: runs[p].get("facts", {}) for p in profs}
    f0 = next(iter(facts.values()), {})
    add(f"Guest stack: Debian Bookworm arm64, Python {f0.get('python')}, numpy {f0.get('numpy')}, "
        f"ai-edge-litert {f0.get('ai-edge-litert')}, tflite-runtime {f0.get('tflite-runtime')}, "
        f"OpenCV {f0.get('opencv')} (cv2.setNumThreads(1)), doorguard {f0.get('doorguard')}; "
        + ", ".join(f"{p}: /proc/cpuinfo CPU part {facts[p].get('cpu_part')}" for p in profs) + ".")
    add("")

    add("## 1. Per frame: doorguard's pipeline vs the seed-style baseline")
    add("")
    add("doorguard = `Pipeline.process` (edge/pipeline.py) with the default config's models "
        "(yoloface-500k-v2-facemask int8 detector, mask-classifier int8), ai-edge-litert, 1 thread: "
        "preprocess, invoke, decode + NMS, tracker, crop + classifier per face. "
        "*new*: a fresh tracker, so every face is classified (a frame while people arrive). "
        "*settled*: mean over 10 frames after the tracks settled (each face classified every "
        "`reclassify_every` = 5 frames). Baseline = the seed projects' loop body "
        "(`benchmarks.bench.seed.SeedLoop.detect`: OpenCV DNN float32 darknet yolov3-tiny, blobFromImage 416x416, "
        "forward, decode, NMSBoxes) on the same frames, same emulated CPU.")
    add("")
    L += table(("profile", "faces in frame", "doorguard found", "doorguard, new (M)", "doorguard, settled (M/frame)",
                "baseline (M)", "baseline / doorguard new", "baseline / doorguard settled",
                "baseline detections (persons)"),
               [(r["profile"], r["faces"], r["found"], _m(r["new"]), _m(r["settled"]), _m(r["baseline"]),
                 _ratio(r["baseline"], r["new"]), _ratio(r["baseline"], r["settled"]),
                 f"{r['baseline_found']} ({r['baseline_persons']})") for r in summary["pipeline"]])
    add("")
    add("Frames (640x480, letterboxed from facemask853 val photos): "
        + "; ".join(f"{k} faces: {v['image']}" + (f" cropped to {tuple(v['crop'])}" if v.get("crop") else "")
                    for k, v in runs[profs[0]].get("frames", {}).items()) + ".")
    add("")

    add("### Stages (M instructions, new tracks)")
    add("")
    add("*detector preprocess*: letterbox + quantize of the 640x480 RGB frame; *from lores*: the same "
        "from picamera2's lores stream (YUV420 at `edge.capture.sources.lores_size`, converted to RGB first; the "
        "camera's ISP does the scaling).")
    add("")
    L += table(("profile", "faces", "detector preprocess", "detector preprocess from lores", "detector invoke",
                "decode + NMS", "crop + classify, per face", "pipeline, new", "pipeline with tflite-runtime, new",
                "tflite-runtime / litert"),
               [(r["profile"], r["faces"], *(_m(r["stages"].get(k)) for k in ("det_pre", "det_pre_lores", "det_infer")),
                 _m(r["stages"].get("det_post"), 2), _m(r["classify_per_face"]), _m(r["new"]),
                 _m(r["tflite_runtime_new"]), _ratio(r["tflite_runtime_new"], r["new"])) for r in summary["pipeline"]])
    add("")

    if summary.get("idle"):
        add("### Idle doorway: the motion gate (edge/capture/motion.py)")
        add("")
        add("`Pipeline.process` on an empty doorway (the 0-face frame, fresh sensor noise each frame, nothing "
            "moves, no track), once the gate's background is learnt, against the same frames without the gate "
            "(what each idle frame cost before). The gate lets a frame through to the detector at least every "
            "`recheck_s` seconds: *amortized* counts that frame in, at the frame rates given.")
        add("")
        L += table(("profile", "idle frame, gated (M)", "idle frame, no gate (M)", "gated / no gate", "skipped",
                    *(f"amortized at {f} fps (M) / ratio" for f in IDLE_FPS)),
                   [(r["profile"], _m(r["gated"], 2), _m(r["ungated"]), _ratio(r["gated"], r["ungated"]),
                     f"{r['skipped']} of {r['frames']}",
                     *(f"{_m(r[f'amortized_{f}fps'], 2)} / {_ratio(r[f'amortized_{f}fps'], r['ungated'])}"
                       for f in IDLE_FPS)) for r in summary["idle"]])
        add("")

    add("## 2. Each shipped model: one invoke() (M instructions)")
    add("")
    add("*invoke*: one `invoke()` after a warm-up one; *first*: the first `invoke()` after loading; *load*: "
        "constructor + `allocate_tensors()` (where ai-edge-litert applies XNNPACK and packs the weights, so its "
        "first invoke costs no more than the next). 1 thread. Input: the 1-face frame, preprocessed as the "
        "manifest says.")
    add("")
    two = len(profs) == 2
    head = ["model", "precision", "runtime", *(f"invoke {p}" for p in profs),
            *([f"A72 / A76 ({profs[0]} / {profs[1]})"] if two else []),
            *(f"first {p}" for p in profs), *(f"load {p}" for p in profs)]

    def model_row(r: dict[str, Any]) -> list[str]:
        if r.get("missing"):
            return [r["model"], r["precision"], "-", "not built (make models)", *[""] * (len(head) - 4)]
        return [r["model"], r["precision"], BACKEND_NAMES[r["backend"]], *(_m(r.get(f"invoke_{p}")) for p in profs),
                *([_ratio(r.get(f"invoke_{profs[0]}"), r.get(f"invoke_{profs[1]}"))] if two else []),
                *(_m(r.get(f"first_{p}")) for p in profs), *(_m(r.get(f"load_{p}")) for p in profs)]

    L += table(head, map(model_row, summary["models"]))
    add("")

    add("### Ratios of one invoke")
    add("")
    rows = {(r["model"], r["precision"], r["backend"]): r for r in summary["models"] if not r.get("missing")}

    def ratio(model: str, p: str, a: tuple[str, str], b: tuple[str, str]) -> str:
        """invoke count of (precision, backend) a over that of b, on profile p."""
        return _ratio(*((rows.get((model, *k)) or {}).get(f"invoke_{p}") for k in (a, b)))

    L += table(("model", "profile", "int8 / float32, litert", "int8 / float32, tflite-runtime",
                "tflite-runtime / litert, int8", "tflite-runtime / litert, float32"),
               [(model, p, ratio(model, p, ("int8", "litert"), ("float32", "litert")),
                 ratio(model, p, ("int8", "tflite_runtime"), ("float32", "tflite_runtime")),
                 ratio(model, p, ("int8", "tflite_runtime"), ("int8", "litert")),
                 ratio(model, p, ("float32", "tflite_runtime"), ("float32", "litert")))
                for model in dict.fromkeys(r["model"] for r in summary["models"]) for p in profs])
    add("")

    add("## 3. Projection to milliseconds (an estimate, not a measurement)")
    add("")
    add("ms = instructions / (IPC x clock). **Assumed**: "
        + "; ".join(f"{p} ({PROFILES.get(p, p)}) at {PROJECTION[p]['ghz']} GHz with IPC {PROJECTION[p]['ipc']}"
                    for p in profs if p in PROJECTION)
        + ". The IPC values are assumptions for dense NEON code, not measured; cache misses, memory "
          "bandwidth, thermal throttling and the second interpreter thread of the default config "
          "(`num_threads = 2`) are not in it. Only the ratios in sections 1-2 are measured.")
    add("")
    L += table(("profile", "faces", "doorguard new (ms)", "doorguard settled (ms/frame)", "baseline (ms)"),
               [(r["profile"], r["faces"], *(project_ms(r[k], r["profile"]) for k in ("new", "settled", "baseline")))
                for r in summary["pipeline"] if r["profile"] in PROJECTION])
    add("")

    add("## 4. Repeatability")
    add("")
    for p, w in summary["within_run"].items():
        mx = w["max_ppm"]
        add(f"- Within the {p} run: {w['segments']} segments counted twice or more (model invokes, baseline "
            f"frames); largest spread {'-' if mx is None else f'{mx:.0f}'} ppm.")
    a = summary.get("across_runs")
    if a:
        mx = a["max_ppm"]
        add(f"- Across two runs ({a['profile']}, second run of parts `{a['parts']}`): {a['segments']} segments "
            f"matched; largest difference {'-' if mx is None else f'{mx:.0f}'} ppm. By kind (largest, ppm): "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(a.get("max_ppm_by_kind", {}).items())) + ".")
    mk = summary.get("marker_overhead") or {}
    if any(v is not None for v in mk.values()):
        add("- An empty segment (the markers' own cost) counts "
            + ", ".join(f"{v} ({p})" for p, v in mk.items()) + " instructions: negligible.")
    add("")

    add("## 5. Run")
    add("")
    for p in profs:
        w = runs[p].get("wall_s")
        add(f"- {p}: guest run {w:.0f} s of emulated wall time (QEMU translating with the plugin; not the Pi's "
            "speed)." if w is not None else f"- {p}: -")
    if meta.get("total_s") is not None:
        add(f"- Whole `make bench-arm`: {meta['total_s']:.0f} s (setup {meta.get('setup_s', 0):.0f} s, "
            f"plugin {meta.get('plugin_s', 0):.0f} s).")
    add("")
    add("## Caveats")
    add("")
    add("- QEMU counts instructions, not cycles: no pipeline, no caches, no memory stalls. Two programs with "
        "the same count can differ in time (a memory-bound float32 model, a cache-friendly int8 one).")
    add("- XNNPACK and OpenCV choose kernels from the CPU's features (/proc/cpuinfo and the ID registers QEMU "
        "presents), so the profile changes the code that runs: the A76 profile has the int8 dot-product "
        "instructions (SDOT), the A72 does not.")
    add("- One interpreter thread; the default config runs two. The total instruction count of two threads "
        "is about the same plus synchronisation; the time is lower.")
    add("")
    return "\n".join(L)


# ---- running (needs root, qemu, the rootfs) --------------------------------------------------

def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    return subprocess.run(["nice", "-n", "10", *cmd], **kw)


def run_guest(profile: str, out_dir: Path, parts: str, label: str) -> dict[str, Any]:
    """One guest run under the counting plugin: its result joined with the counts."""
    counts_file = out_dir / f"counts-{label}.txt"
    log_file = out_dir / f"guest-{label}.log"
    cmd = [str(ARM64), "count", profile, str(counts_file), GUEST_PYTHON, str(GUEST),
           "--repo", str(ROOT), "--parts", parts]
    print(f"bench-arm: {profile}: counting guest instructions ({parts}) ...", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    proc = _run(cmd, capture_output=True, text=True)
    wall = time.monotonic() - t0
    log_file.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-8:])
        raise SystemExit(f"bench-arm: guest run {label} failed (exit {proc.returncode}; log {log_file}):\n{tail}")
    result = parse_result(proc.stdout)
    counts, errors = parse_counts(counts_file.read_text())
    segments = join(result, counts)
    lost = [s["tag"] for s in segments if s["count"] is None]
    if errors or lost:
        raise SystemExit(f"bench-arm: plugin output of {label} is incomplete: errors {errors[:3]}, "
                         f"segments without a count {lost[:5]}")
    print(f"bench-arm: {profile}: {len(segments)} segments in {wall:.0f} s", file=sys.stderr, flush=True)
    return {**result, "segments": segments, "wall_s": wall, "parts": parts, "profile": profile}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard bench-arm``."""
    p.add_argument("--out", type=Path, default=ROOT / "bench-out" / "arm", help="output folder")
    p.add_argument("--profiles", default="pi4,pi5", help="comma list of pi4, pi5")
    p.add_argument("--parts", default=FULL_PARTS, help="what the guest measures (guest.py --parts)")
    p.add_argument("--repeat-parts", default=REPEAT_PARTS,
                   help="parts counted a second time on the first profile for the run-to-run spread ('' = none)")
    p.add_argument("--no-setup", action="store_true", help="skip scripts/arm64.sh setup (rootfs already current)")


def main(args: argparse.Namespace) -> int:
    """``doorguard bench-arm``."""
    if os.geteuid() != 0:
        print("bench-arm: needs root (chroot, mounts, debootstrap): run it with sudo", file=sys.stderr)
        return 2
    profiles = [x for x in args.profiles.split(",") if x]
    bad = [x for x in profiles if x not in PROFILES]
    if bad:
        print(f"bench-arm: unknown profile {bad[0]!r} (pi4 or pi5)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    meta: dict[str, Any] = {"date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                            "host": f"{os.uname().machine}, {os.cpu_count()} CPUs"}
    if not args.no_setup:
        if _run([str(ARM64), "setup"]).returncode != 0:
            print("bench-arm: scripts/arm64.sh setup failed", file=sys.stderr)
            return 1
    meta["setup_s"] = time.monotonic() - t0
    t1 = time.monotonic()
    if _run([str(BUILD_PLUGIN)]).returncode != 0:
        print("bench-arm: building the instruction-count plugin failed", file=sys.stderr)
        return 1
    meta["plugin_s"] = time.monotonic() - t1
    runs = {prof: run_guest(prof, args.out, args.parts, prof) for prof in profiles}
    repeat = None
    if args.repeat_parts:
        repeat = run_guest(profiles[0], args.out, args.repeat_parts, f"{profiles[0]}-repeat")
    meta["total_s"] = time.monotonic() - t0
    summary = summarize(runs, repeat)
    (args.out / "bench-arm.json").write_text(json.dumps(
        {"meta": meta, "projection": PROJECTION, "summary": summary, "runs": runs, "repeat": repeat},
        indent=1) + "\n")
    md = render_markdown(summary, runs, meta)
    (args.out / "bench-arm.md").write_text(md)
    print(f"bench-arm: wrote {args.out / 'bench-arm.md'} and bench-arm.json in {meta['total_s']:.0f} s",
          file=sys.stderr)
    return 0


if __name__ == "__main__":  # the old way in: python benchmarks/arm/bench_arm.py
    from edge.cli import main as doorguard

    sys.exit(doorguard(["bench-arm", *sys.argv[1:]]))
