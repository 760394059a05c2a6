"""Same inputs, same int8 outputs? The x86 / arm64 comparison behind `make test-arm`.

Run by scripts/test-arm.sh, with the host's .venv python for ``inputs`` and
``compare`` and with the emulated Pi's venv python for ``run``:

    python benchmarks/arm/arm_check.py inputs  --out build/arm/inputs.npz
    python benchmarks/arm/arm_check.py run     --inputs build/arm/inputs.npz --backend litert --out OUT.npz
    python benchmarks/arm/arm_check.py compare --ref X86.npz --preferred A.npz [A.npz ...] --fallback B.npz [...]
    python benchmarks/arm/arm_check.py events  --ref X86_STATE_DIR STATE_DIR [...]
    python benchmarks/arm/arm_check.py junit   JUNIT.xml   (one line: counts and the failing tests' ids)

The input tensors are made once, on the host, by doorguard's own preprocessing
(edge.infer.preprocess through Detector/Classifier), and every platform runs those
exact tensors: a difference in the outputs is then the runtime's, not OpenCV's
resize. Whether ARM's preprocessing matches the host's is checked on its own
(``run`` also prepares the tensors itself and stores them).
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run as a script (by path, as test-arm.sh does, also in the guest)
    sys.path.insert(0, str(ROOT))

from edge.capture import demo  # noqa: E402
from edge.manifest import load_manifest, manifest_paths  # noqa: E402
from edge.infer.preprocess import prepare  # noqa: E402
from edge.types import Box  # noqa: E402


def shipped_manifests(models_dir: Path = ROOT / "models") -> list[Path]:
    """Every model manifest in models/ (what install.sh ships)."""
    return manifest_paths(models_dir)


def images(shared: Path | None, n_shared: int = 4) -> dict[str, np.ndarray]:
    """RGB test frames: the demo photo, it with a drawn mask, a few real val photos."""
    import cv2

    photo = demo.load_photo()
    frames = {"demo_photo": photo, "demo_masked": demo.draw_mask(photo),
              "demo_clip_40": _demo_frame(40)}
    val = shared / "data" / "facemask853" / "val.txt" if shared else None
    if val is not None and val.is_file():
        for stem in val.read_text().split()[:n_shared]:
            img = cv2.imread(str(val.parent / "images" / f"{stem}.jpg"))
            if img is not None:
                frames[f"facemask853_{stem}"] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return frames


def _demo_frame(i: int) -> np.ndarray:
    src = demo.DemoSource()
    src.open()
    return src.render(i)


def prepared(manifest: Path, frames: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Model input tensors for each frame, made by the runtime's own code path.

    A detector gets the whole frame; a classifier the frame's centre (the demo
    photo's face), so the tensors do not depend on any model's output.
    """
    m = load_manifest(manifest, verify_hash=False)
    out = {}
    for name, img in frames.items():
        if m.task == "detect":
            tensor, _ = prepare(img, m.input)
        else:
            h, w = img.shape[:2]
            crop = img[h // 4: 3 * h // 4, w // 4: 3 * w // 4]
            tensor, _ = prepare(crop, m.input)
        out[name] = tensor
    # Full-range random tensors reach saturation and every LUT entry the photos miss.
    rng = np.random.default_rng(1234)
    t = next(iter(out.values()))
    if t.dtype == np.int8:
        out["random"] = rng.integers(-128, 128, size=t.shape, dtype=np.int8)
    return out


def cmd_inputs(a) -> int:
    frames = images(Path(a.shared) if a.shared else None)
    data = {}
    for man in shipped_manifests():
        for name, tensor in prepared(man, frames).items():
            data[f"{man.stem}/{name}"] = tensor
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    np.savez(a.out, **data)
    print(f"arm_check: {len(data)} input tensors for {len(shipped_manifests())} models -> {a.out}")
    return 0


def output_producers(interpreter) -> dict[str, str]:
    """Output tensor name -> the op that writes it: "DELEGATE" (XNNPACK) or a builtin op name."""
    by_index = {}
    for op in interpreter._get_ops_details():  # the only API that tells delegated from builtin ops
        for t in op["outputs"]:
            by_index[int(t)] = op["op_name"]
    return {d["name"]: by_index.get(int(d["index"]), "?") for d in interpreter.get_output_details()}


def float_ops(interpreter) -> int:
    """Ops of an int8 model that compute in float between a DEQUANTIZE and a QUANTIZE (e.g. a
    PRELU: ai-edge-quantizer 0.10 does not quantize it; the shipped palm model has none left)."""
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    n = 0
    for op in interpreter._get_ops_details():
        if op["op_name"] in ("DEQUANTIZE", "QUANTIZE", "DELEGATE"):
            continue
        ins = [i for i in op["inputs"] if i >= 0 and i in tensors]
        if ins and np.dtype(tensors[ins[0]]["dtype"]) == np.float32:
            n += 1
    return n


def cmd_run(a) -> int:
    from edge.infer import runtime

    inputs = np.load(a.inputs)
    frames = images(Path(a.shared) if a.shared else None)
    out = {}
    for man in shipped_manifests():
        m = load_manifest(man, verify_hash=True)
        model = runtime.TfliteModel(man.parent / m.tflite, num_threads=a.threads, backend=a.backend)
        for key in inputs.files:
            if not key.startswith(man.stem + "/"):
                continue
            for name, v in model.run_raw(inputs[key]).items():
                out[f"out/{key}/{name}"] = v
        # This platform's own preprocessing of the same frames, for the separate check.
        for name, tensor in prepared(man, frames).items():
            out[f"prep/{man.stem}/{name}"] = tensor
        out[f"backend/{man.stem}"] = np.array(model.backend)
        for name, op in output_producers(model.interpreter).items():
            out[f"producer/{man.stem}/{name}"] = np.array(op)
        out[f"floatops/{man.stem}"] = np.array(float_ops(model.interpreter))
    out["platform"] = np.array(f"{platform.machine()} {a.label}")
    np.savez(a.out, **out)
    print(f"arm_check: {a.backend} on {platform.machine()} ({a.label}): "
          f"{sum(k.startswith('out/') for k in out)} outputs -> {a.out}")
    return 0


def diff_lsb(ref: np.lib.npyio.NpzFile, other: np.lib.npyio.NpzFile, prefix: str) -> dict[str, int]:
    """Largest absolute difference per tensor key, in units of the stored dtype (LSB for int8).

    Keys missing on either side count as a difference of -1 (reported, never equal).
    """
    keys = sorted(k for k in ref.files if k.startswith(prefix))
    res = {}
    for k in keys:
        if k not in other.files:
            res[k] = -1
            continue
        x, y = ref[k], other[k]
        if x.shape != y.shape or x.dtype != y.dtype:
            res[k] = -1
            continue
        res[k] = int(np.abs(x.astype(np.int64) - y.astype(np.int64)).max()) if x.size else 0
    return res


#: Models with float ops inside their int8 graph (``float_ops``): float rounding may differ
#: between ARM and x86 before the next QUANTIZE, so their outputs may differ by this much if
#: doorguard's decode keeps the same boxes (``same_decisions``).
FLOAT_ISLAND_TOLERANCE_LSB = 1
#: Builtin int8 kernels (not XNNPACK) whose ARM and x86 code paths round differently:
#: TFLite's int8 SOFTMAX (XNNPACK takes no int8 softmax) was measured 1 LSB apart on
#: one classifier output in 24. Their outputs may differ by this much if the decision
#: (argmax) is the same; everything else must be bit-identical.
BUILTIN_TOLERANCE_LSB = {"SOFTMAX": 1}


def judge(ref, other) -> tuple[bool, list[str], dict]:
    """Compare one platform's outputs with the x86 reference.

    Returns (within policy, report lines for differing tensors, summary).
    """
    d = diff_lsb(ref, other, "out/")
    lines, ok = [], bool(d)
    for k, v in d.items():
        if v == 0:
            continue
        _, model, _frame, tensor = k.split("/", 3)
        pk = f"producer/{model}/{tensor}"
        op = str(ref[pk]) if pk in ref.files else "?"
        allowed = BUILTIN_TOLERANCE_LSB.get(op, 0)
        fk = f"floatops/{model}"
        if fk in ref.files and int(ref[fk]) > 0:
            allowed = max(allowed, FLOAT_ISLAND_TOLERANCE_LSB)
        # A decision is a classifier's argmax (1 x classes); a YOLO head's argmax means nothing.
        same_decision = v >= 0 and (ref[k].ndim != 2 or int(np.argmax(ref[k])) == int(np.argmax(other[k])))
        fine = 0 <= v <= allowed and same_decision
        ok = ok and fine
        lines.append(f"  - {k[4:]} ({op}): {v if v >= 0 else 'missing/shape'} LSB"
                     f"{'' if ref[k].ndim != 2 else ', same argmax' if same_decision else ', argmax differs'}"
                     f"{'' if fine else '  <- outside policy'}")
    worst = max(d.values()) if d else -1
    return ok, lines, {"max_lsb": worst, "tensors_differing": sum(v != 0 for v in d.values()), "tensors": len(d)}


def same_decisions(ref, other) -> tuple[int, int]:
    """(inputs on which both give the same decisions, inputs compared).

    A classifier's decision is its argmax; a detector's, the boxes doorguard's own
    decode + NMS keeps at the manifest's threshold: same count, each matched at IoU >= 0.9.
    """
    from edge.infer import yolo

    same = total = 0
    for man in shipped_manifests():
        m = load_manifest(man, verify_hash=False)
        frames = sorted({k.split("/")[2] for k in ref.files if k.startswith(f"out/{man.stem}/")})
        for f in frames:
            keys = {o.name: f"out/{man.stem}/{f}/{o.name}" for o in m.outputs}
            if not all(k in ref.files and k in other.files for k in keys.values()):
                total += 1
                continue
            total += 1
            if m.task == "classify":
                k = next(iter(keys.values()))
                same += int(np.argmax(ref[k]) == np.argmax(other[k]))
                continue
            if m.ssd is not None:
                same += int(_same_ssd_boxes(m, keys, ref, other))
                continue
            heads = [o for o in m.outputs if o.role == "yolo_head"]
            found = []
            for side in (ref, other):
                deq = {o.name: (side[keys[o.name]].astype(np.float32) - o.quant.zero_point) * o.quant.scale
                       if o.quant else side[keys[o.name]].astype(np.float32) for o in heads}
                found.append(yolo.decode(deq, heads, len(m.labels), m.input.width, m.input.height, None,
                                         m.score_threshold or 0.3, m.nms_iou or 0.45).boxes)
            a, b = found
            same += int(len(a) == len(b) and all(max((Box(*x).iou(Box(*y)) for y in b), default=0) >= 0.9
                                                  for x in a))
    return same, total


def _same_ssd_boxes(m, keys: dict[str, str], ref, other) -> bool:
    """An SSD detector's (the palm model's) boxes after edge.infer.ssd's decode: same count, IoU >= 0.9."""
    from edge.infer import ssd

    anchors = ssd.anchors(m.ssd, m.input.width, m.input.height)
    found = []
    for side in (ref, other):
        deq = {o.role: (side[keys[o.name]].astype(np.float32) - o.quant.zero_point) * o.quant.scale
               if o.quant else side[keys[o.name]].astype(np.float32) for o in m.outputs}
        boxes, _ = ssd.decode(deq["ssd_boxes"][0], deq["ssd_scores"][0], anchors, m.ssd, m.input.width,
                              m.input.height, m.score_threshold or 0.5, m.nms_iou or 0.3)
        found.append(boxes)
    a, b = found
    return len(a) == len(b) and all(max((Box(*x).iou(Box(*y)) for y in b), default=0) >= 0.9 for x in a)


def cmd_compare(a) -> int:
    ref = np.load(a.ref)
    n = sum(k.startswith("out/") for k in ref.files)
    lines = [f"# int8 outputs on the emulated Pi vs {ref['platform']} "
             f"({n} output tensors of the shipped models)", ""]
    ok = True
    summary: dict = {"preferred": {}, "fallback": {}, "preprocessing": {}}
    for role, paths in (("preferred", a.preferred), ("fallback", a.fallback or [])):
        for p in paths:
            other = np.load(p)
            good, detail, summ = judge(ref, other)
            label = str(other["platform"])
            backend = str(other[next(k for k in other.files if k.startswith("backend/"))])
            summary[role][label] = {**summ, "backend": backend, "within_policy": good}
            worst = summ["max_lsb"]
            verdict = "bit-identical" if worst == 0 else ("MISSING outputs" if worst < 0 else f"max {worst} LSB")
            lines.append(f"- {role} runtime ({backend}) on {label}: {verdict}, "
                         f"{summ['tensors_differing']} of {summ['tensors']} tensors differ")
            if role == "preferred":
                ok = ok and good
                lines += detail
                p_d = diff_lsb(ref, other, "prep/")
                worst_p = max(p_d.values()) if p_d else -1
                differing = sum(v != 0 for v in p_d.values())
                summary["preprocessing"][label] = {"max_lsb": worst_p, "tensors_differing": differing}
                lines.append(f"  - (info) its own preprocessing of the same frames (OpenCV "
                             f"resize on ARM): {'identical' if worst_p == 0 else f'max {worst_p} LSB'}, "
                             f"{differing} of {len(p_d)} input tensors differ")
            n_same, n_all = same_decisions(ref, other)
            summary[role][label]["same_decisions"] = [n_same, n_all]
            lines.append(f"  - (info) same decisions as x86 (classifier argmax; detector boxes after "
                         f"decode + NMS, IoU >= 0.9) on {n_same} of {n_all} inputs")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if a.report:
        Path(a.report).write_text(text)
        Path(a.report).with_suffix(".json").write_text(json.dumps(summary, indent=2))
    if not ok:
        print("arm_check: FAIL: the preferred runtime's int8 outputs on ARM differ from x86 beyond "
              "the documented builtin-kernel tolerance", file=sys.stderr)
    return 0 if ok else 1


def read_events(state_dir: Path) -> list[tuple]:
    db = Path(state_dir) / "events.sqlite3"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        return con.execute("SELECT track, verdict, label, round(score, 2), x1, y1, x2, y2, alerted "
                           "FROM events ORDER BY id").fetchall()


def cmd_events(a) -> int:
    ref = read_events(Path(a.ref))
    ok = bool(ref)
    for d in a.state_dirs:
        ev = read_events(Path(d))
        same = len(ev) == len(ref) and all(
            e[:3] == r[:3] and e[8] == r[8] and max(abs(x - y) for x, y in zip(e[4:8], r[4:8])) <= a.box_px
            for e, r in zip(ev, ref))
        print(f"arm_check: events {d}: {len(ev)} ({', '.join(f'{e[1]} {e[2]}' for e in ev)}) "
              f"{'same as' if same else 'DIFFER from'} x86 ({len(ref)})")
        ok = ok and same
    if not ref:
        print("arm_check: FAIL: the x86 reference run recorded no events", file=sys.stderr)
    return 0 if ok else 1


def junit_summary(path: Path) -> tuple[dict[str, int], list[str]]:
    """Counts by outcome and the ids (file::[Class::]name) of failed or errored tests in a
    pytest JUnit XML file written with ``-o junit_family=xunit1`` (which records each file)."""
    import xml.etree.ElementTree as ET

    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    bad = []
    for case in ET.parse(path).getroot().iter("testcase"):
        file, cls, name = case.get("file", ""), case.get("classname", ""), case.get("name", "?")
        module = file[:-3].replace("/", ".") if file.endswith(".py") else ""
        inner = cls[len(module) + 1:] if module and cls.startswith(module + ".") else ("" if module else cls)
        tid = "::".join(x for x in (file or None, inner or None, name) if x)
        kinds = {child.tag for child in case}
        if "failure" in kinds:
            counts["failed"] += 1
            bad.append(tid)
        elif "error" in kinds:
            counts["errors"] += 1
            bad.append(f"{tid} (error)")
        elif "skipped" in kinds:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts, bad


def cmd_junit(a) -> int:
    import xml.etree.ElementTree as ET

    try:
        counts, bad = junit_summary(Path(a.file))
    except (OSError, ET.ParseError) as e:
        print(f"arm_check: cannot read the test results {a.file}: {e}", file=sys.stderr)
        return 2
    text = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no tests"
    print(text + (f"; failed: {', '.join(bad)}" if bad else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("inputs")
    p.add_argument("--out", required=True)
    p.add_argument("--shared", default=str(ROOT.parent / "shared"))
    p = sub.add_parser("run")
    p.add_argument("--inputs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--backend", default="litert", choices=["litert", "tflite_runtime"])
    p.add_argument("--threads", type=int, default=2, help="interpreter threads (doorguard's default: 2)")
    p.add_argument("--label", default="", help="what to call this platform in the report")
    p.add_argument("--shared", default=str(ROOT.parent / "shared"))
    p = sub.add_parser("compare")
    p.add_argument("--ref", required=True)
    p.add_argument("--preferred", nargs="+", required=True, help="must be bit-identical to --ref")
    p.add_argument("--fallback", nargs="*", help="LSB spread reported only")
    p.add_argument("--report")
    p = sub.add_parser("events")
    p.add_argument("--ref", required=True)
    p.add_argument("--box-px", type=float, default=2.0)
    p.add_argument("state_dirs", nargs="+")
    p = sub.add_parser("junit")
    p.add_argument("file")
    a = ap.parse_args(argv)
    return {"inputs": cmd_inputs, "run": cmd_run, "compare": cmd_compare, "events": cmd_events,
            "junit": cmd_junit}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
