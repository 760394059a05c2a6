"""``bench.md``: the report of ``doorguard bench``, rendered from its results dict."""

from __future__ import annotations

from typing import Any

from ..markdown import table
from .macs import REF_MACS, REF_MODEL, REF_PI4_MS, REF_PI5_MS, SMALL_REF_PI4_MS
from .seed import SEED_CONF, SEED_NMS, SEED_SIZE
from .stats import fmt


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
        L += table(("stage", "calls", "p50 ms", "p90 ms", "p99 ms", "p50 over repeats", "ms per frame (mean)"),
                   [(st["label"], 0, "-", "-", "-", "-", "-") if st["p50"] is None else
                    (st["label"], st["calls"], f"{st['p50']:.3f}", f"{st['p90']:.3f}", f"{st['p99']:.3f}",
                     fmt(st["p50_spread"], 3),
                     f"{st['per_frame_ms']:.3f}{' (in parallel)' if st['threaded'] else ''}")
                    for st in d["stages"]])
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
            # Percentile keys are ints in the run, strings once read back from bench.json.
            L += table(("runner stage", "p50 ms", "p90 ms", "p99 ms"),
                       [(stage, *(f"{p[str(q) if '50' in p else q]:.3f}" for q in (50, 90, 99)))
                        for stage, p in own.items() if p])
            add("")
        add("### FPS vs faces in the frame")
        add("")
        L += table(("faces", "frames", "processing ms (median, IQR)", "FPS", "detector stage ms"),
                   [(b["faces"], b["frames"], f"{b['busy_ms']:.2f} ({b['q1']:.2f}-{b['q3']:.2f})", f"{b['fps']:.1f}",
                     f"{b['detect_ms']:.2f}") for b in d["face_buckets"]])
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
            "Runners from `convert/verify/peers.py` (YuNet, UltraFace ONNX, AIZOO) and "
            "`benchmarks/ultraface_tflite.py`.")
        add("")
        L += table(("detector", "how", "ms per frame", "FPS", "faces found (one repeat)"),
                   [(p["name"], p["note"], fmt(p["ms"], 2), fmt(p["fps"]), p["faces"]) for p in r["peers"]]
                   + [(k[5:], f"not measured: {v}", "", "", "") for k, v in sk.items() if k.startswith("peer ")])
        add("")
        add("![peers](peers_fps.png)")
    else:
        add(f"Not measured: {sk.get('peers', '?')}")
    add("")

    # -- 4 --
    add("## 4. Float vs int8: size and host latency")
    add("")
    if mo:
        L += table(("model", "input", "int8 size", "float size", "int8 / float", "goal <= 0.27"),
                   [(f"{row['role']} {row['name']}", row["input"], _mb(row["int8_bytes"]), _mb(row["float_bytes"]),
                     f"{row['size_ratio']:.3f}" if row.get("size_ratio") else "-",
                     _goal(row["size_ratio"] <= 0.27 if row.get("size_ratio") else None)) for row in mo["rows"]])
        add("")
        add(f"Host latency: invoke only, random input of the model's shape, after 3 warm-ups; "
            f"{mo['runs']} invokes with ai-edge-litert, {mo.get('trt_runs', mo['runs'])} with tflite-runtime; "
            f"median per repeat, then median (min-max) over repeats. The runner uses "
            f"{mo['threads']} thread(s).")
        add("")
        L += table(("model", "threads", "int8 litert ms", "float litert ms", "int8 tflite-runtime ms",
                    "float tflite-runtime ms"),
                   [(f"{row['role']} {row['name']}", th,
                     *(fmt(row.get(f"{kind}_ms_{th}"), 2) for kind in ("int8_litert", "float_litert", "int8_trt",
                                                                       "float_trt")))
                    for row in mo["rows"] for th in mo.get("thread_counts", [mo["threads"]])])
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
        L += table(("model", "input", "frames", "darknet weights", "int8", "float32", "int8 / float", "litert int8 ms",
                    "litert float32 ms", "OpenCV DNN darknet float32 ms"),
                   [(row["model"], row["input"], row["frames"],
                     *(_mb(row["sizes"].get(k)) for k in ("darknet_weights", "int8_tflite", "float32_tflite")),
                     f"{row['size_ratio']:.3f}",
                     *(fmt(row["ms"].get(k), 2) for k in ("litert_int8", "litert_float32", "opencv_dnn_float32")))
                    for row in dk["rows"]])
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

        def projected(row):
            return f"{row['pi5_ms']:.2f}", f"{row['pi4_ms']:.1f}", sm(row.get("pi4_small_ms"))

        L += table(("model", "MACs", "host x86 ms (measured here)", "projected Pi 5 ms", "projected Pi 4 ms",
                    "projected Pi 4 ms (small-model ref)"),
                   [(row["name"], f"{row['macs'] / 1e6:.1f} M", f"{row['host_ms']:.2f}" if row.get("host_ms") else "-",
                     *projected(row)) for row in pr["rows"]])
        if pr.get("frames"):
            add("")
            L += table(("doorguard frame (detector + one classifier run per face)", "MACs", "projected Pi 5 ms",
                        "projected Pi 4 ms", "projected Pi 4 ms (small-model ref)"),
                       [(f"{f['faces']} face(s)", f"{f['macs'] / 1e6:.1f} M", *projected(f)) for f in pr["frames"]])
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
