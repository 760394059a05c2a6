"""The hand model: MediaPipe's palm detector from the mediapipe wheel -> int8 TFLite + manifest.

``doorguard models`` (``make models``) runs :func:`build` as its ``hands`` step:

1. :func:`palm_model` installs the pinned ``mediapipe`` wheel from PyPI with
   ``pip --no-deps --target`` into the work folder and takes
   ``mediapipe/modules/palm_detection/palm_detection_lite.tflite`` (Apache-2.0)
   from it. Only files are read from the wheel: its pins (numpy<2, protobuf<5,
   opencv-contrib-python) would downgrade the workstation venv and replace its
   OpenCV, and nothing imports mediapipe. Never downloaded at run time.
2. :func:`prepare_float`: the model has no SignatureDef and keeps its weights
   as float16 behind DEQUANTIZE ops, which ``ai-edge-quantizer`` refuses; add a
   ``serving_default`` signature and fold each DEQUANTIZE of a float16 constant
   into a float32 constant (``ai_edge_litert.tools.flatbuffer_utils``). The
   result computes the same function (checked: :func:`max_abs_diff`).
3. :func:`quantize`: ``ai-edge-quantizer`` static int8 (weights and activations)
   calibrated on face-centred regions of ../shared photos, each through edge's
   own preprocessing (``edge.infer.preprocess.prepare`` with the manifest's input).
4. :func:`agreement`: int8 vs float detections on other face regions, as
   ``convert darknet`` checks its int8 detectors.

Anchors and decoding options live in the manifest (:data:`PALM_LITE_SSD`) and
are decoded by ``edge.infer.ssd``.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge.errors import DataError, ModelError

log = logging.getLogger(__name__)

MEDIAPIPE = "mediapipe==0.10.21"
PALM_LITE = "mediapipe/modules/palm_detection/palm_detection_lite.tflite"
NAME = "palm-detection-lite"
INPUT_SIZE = 192

#: MediaPipe's palm_detection_cpu graph: SsdAnchorsCalculator and TensorsToDetections options
#: (2016 anchors at 192 x 192: 24x24x2 at stride 8 + 12x12x6 at stride 16).
PALM_LITE_SSD = {
    "num_layers": 4, "strides": [8, 16, 16, 16], "min_scale": 0.1484375, "max_scale": 0.75,
    "aspect_ratios": [1.0], "interpolated_scale_aspect_ratio": 1.0, "anchor_offset": 0.5,
    "fixed_anchor_size": True, "reduce_boxes_in_lowest_layer": False, "num_anchors": 2016,
    "box_scale": 192.0, "num_keypoints": 7, "score_clip": 100.0,
}
#: MediaPipe's ImageToTensor for the palm model: keep aspect ratio, zero border, values 0..1.
PALM_INPUT = {"name": "input_1", "width": INPUT_SIZE, "height": INPUT_SIZE, "channels": 3, "color": "RGB",
              "resize": "letterbox", "pad_value": 0.0, "scale": 1 / 255, "mean": [0.0, 0.0, 0.0],
              "std": [1.0, 1.0, 1.0]}
SCORE_THRESHOLD = 0.5
NMS_IOU = 0.3


def palm_model(work: Path) -> tuple[Path, dict]:
    """The float palm model inside the installed mediapipe wheel, and where it came from.

    Raises:
        DataError: pip could not install the wheel, or the wheel lacks the model.
    """
    target = Path(work) / "mediapipe-wheel"
    model = target / PALM_LITE
    if not model.is_file():
        log.info("installing %s (files only, --no-deps) into %s", MEDIAPIPE, target)
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade",
                            "--target", str(target), MEDIAPIPE], capture_output=True, text=True)
        if r.returncode != 0 or not model.is_file():
            raise DataError(f"cannot take {PALM_LITE} from the {MEDIAPIPE} wheel: "
                            f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or 'not in the wheel'}")
    dist = next(target.glob("mediapipe-*.dist-info"), None)
    licence = "Apache-2.0"
    if dist is not None and (dist / "METADATA").is_file():
        for line in (dist / "METADATA").read_text(errors="replace").splitlines():
            if line.startswith("License:"):
                licence = line.split(":", 1)[1].strip() or licence
                break
    return model, {"wheel": MEDIAPIPE, "path_in_wheel": PALM_LITE, "license": licence,
                   "dist_info": dist.name if dist else None}


def prepare_float(src: Path) -> bytes:
    """The palm model as ai-edge-quantizer takes it: float32 constants and a serving_default signature.

    Raises:
        ModelError: a DEQUANTIZE whose input is not a float16 constant (nothing to fold).
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(Path(src).read_bytes()))
    dequant = {i for i, oc in enumerate(model.operatorCodes)
               if fu.get_builtin_code_from_operator_code(oc) == fb.BuiltinOperator.DEQUANTIZE}
    folded = 0
    for sg in model.subgraphs:
        kept, dropped = [], []
        for op in sg.operators:
            if op.opcodeIndex not in dequant:
                kept.append(op)
                continue
            t_in, t_out = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            data = model.buffers[t_in.buffer].data if t_in.buffer else None
            if t_in.type != fb.TensorType.FLOAT16 or data is None or len(data) == 0:
                raise ModelError(f"{src}: a DEQUANTIZE of a non-constant or non-float16 tensor: cannot fold it")
            values = np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float16).astype(np.float32)
            buf = fb.BufferT()
            buf.data = np.frombuffer(values.tobytes(), np.uint8)
            model.buffers.append(buf)
            t_out.buffer = len(model.buffers) - 1
            folded += 1
            dropped.append(op.inputs[0])
        sg.operators = kept
        # The float16 copies nothing reads any more leave the graph (and their bytes the file).
        used = {i for op in kept for i in list(op.inputs) + list(op.outputs)} | set(sg.inputs) | set(sg.outputs)
        gone = {i for i in dropped if i not in used}
        remap, tensors = {}, []
        for i, t in enumerate(sg.tensors):
            if i in gone:
                model.buffers[t.buffer].data = None
                continue
            remap[i] = len(tensors)
            tensors.append(t)
        sg.tensors = tensors
        for op in kept:
            op.inputs = [remap[i] if i >= 0 else i for i in op.inputs]
            op.outputs = [remap[i] if i >= 0 else i for i in op.outputs]
        sg.inputs = [remap[i] for i in sg.inputs]
        sg.outputs = [remap[i] for i in sg.outputs]
    sg = model.subgraphs[0]

    def tmap(i: int):
        m = fb.TensorMapT()
        name = sg.tensors[i].name
        m.name = name.decode() if isinstance(name, bytes) else name
        m.tensorIndex = i
        return m

    sig = fb.SignatureDefT()
    sig.signatureKey = "serving_default"
    sig.subgraphIndex = 0
    sig.inputs = [tmap(i) for i in sg.inputs]
    sig.outputs = [tmap(i) for i in sg.outputs]
    model.signatureDefs = [sig]
    log.info("%s: %d float16 DEQUANTIZE constants folded, serving_default signature added", src.name, folded)
    return bytes(fu.convert_object_to_bytearray(model))


def decompose_prelu(model_bytes: bytes) -> bytes:
    """Each PRELU(x, alpha) rewritten as relu(x) - alpha * relu(-x), from ops that ai-edge-quantizer
    quantizes and XNNPACK runs in int8: three 1x1 depthwise convolutions (weights 1, -1, -alpha
    per channel; the first two with a fused RELU) and an ADD.

    ai-edge-quantizer 0.10 has no int8 PRELU and leaves each in float between a DEQUANTIZE and a
    QUANTIZE. A first rewrite with RELU, SUB and MUL quantized, but XNNPACK took none of its int8
    SUB (nor an ADD of a broadcast scalar) and the graph fell apart into 27 partitions, 8x
    slower. The float function is unchanged (checked: :func:`max_abs_diff` 0 here).
    """
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils as fu

    model = fu.read_model_from_bytearray(bytearray(model_bytes))

    def code(op: int) -> int:
        for i, oc in enumerate(model.operatorCodes):
            if fu.get_builtin_code_from_operator_code(oc) == op:
                return i
        oc = fb.OperatorCodeT()
        oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = op, min(op, 127), 1
        model.operatorCodes.append(oc)
        return len(model.operatorCodes) - 1

    prelu = code(fb.BuiltinOperator.PRELU)
    add, dwconv = code(fb.BuiltinOperator.ADD), code(fb.BuiltinOperator.DEPTHWISE_CONV_2D)

    def operator(opcode: int, inputs: list[int], outputs: list[int], options_type: int, options):
        o = fb.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = opcode, inputs, outputs
        o.builtinOptionsType, o.builtinOptions = options_type, options
        return o

    def depthwise(activation: int):
        o = fb.DepthwiseConv2DOptionsT()
        o.padding, o.strideW, o.strideH, o.depthMultiplier = fb.Padding.VALID, 1, 1, 1
        o.dilationWFactor = o.dilationHFactor = 1
        o.fusedActivationFunction = activation
        return fb.BuiltinOptions.DepthwiseConv2DOptions, o

    n = 0
    for sg in model.subgraphs:
        ops = []
        for op in sg.operators:
            if op.opcodeIndex != prelu:
                ops.append(op)
                continue
            (x, alpha), y = op.inputs[:2], op.outputs[0]
            name = sg.tensors[y].name
            name = name.decode() if isinstance(name, bytes) else name

            def tensor(shape: list[int], values: np.ndarray | None = None) -> int:
                t = fb.TensorT()
                t.shape, t.type, t.buffer = list(shape), fb.TensorType.FLOAT32, 0
                if values is not None:
                    buf = fb.BufferT()
                    buf.data = np.frombuffer(np.asarray(values, np.float32).tobytes(), np.uint8)
                    model.buffers.append(buf)
                    t.buffer = len(model.buffers) - 1
                t.name = f"{name}/prelu_{len(sg.tensors)}"
                sg.tensors.append(t)
                return len(sg.tensors) - 1

            shape = list(sg.tensors[x].shape)
            a = sg.tensors[alpha]
            alpha_values = np.frombuffer(np.asarray(model.buffers[a.buffer].data, np.uint8).tobytes(), np.float32)
            c = int(shape[-1])
            if alpha_values.size != c:
                raise ModelError(f"PRELU {name}: {alpha_values.size} alphas for {c} channels (only per-channel "
                                 "alphas are rewritten)")

            def weights(v: np.ndarray) -> int:
                return tensor([1, 1, 1, c], v)

            relu = fb.ActivationFunctionType.RELU
            pos, negpart, scaled = tensor(shape), tensor(shape), tensor(shape)
            add_options = fb.AddOptionsT()
            ops += [operator(dwconv, [x, weights(np.ones(c)), tensor([c], np.zeros(c))], [pos], *depthwise(relu)),
                    operator(dwconv, [x, weights(-np.ones(c)), tensor([c], np.zeros(c))], [negpart],
                             *depthwise(relu)),
                    operator(dwconv, [negpart, weights(-alpha_values), tensor([c], np.zeros(c))], [scaled],
                             *depthwise(fb.ActivationFunctionType.NONE)),
                    operator(add, [pos, scaled], [y], fb.BuiltinOptions.AddOptions, add_options)]
            n += 1
        sg.operators = ops
    log.info("%d PRELU ops rewritten as 1x1 depthwise convolutions and an ADD", n)
    return bytes(fu.convert_object_to_bytearray(model))


def _interp(model: bytes | Path):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model) if isinstance(model, (bytes, bytearray)) else Interpreter(str(model))
    it.allocate_tensors()
    return it


def _run(it, x: np.ndarray) -> dict[str, np.ndarray]:
    d = it.get_input_details()[0]
    if d["dtype"] != np.float32:
        s, z = d["quantization"]
        x = np.clip(np.round(x / s + z), -128, 127).astype(d["dtype"])
    it.set_tensor(d["index"], x)
    it.invoke()
    out = {}
    for o in it.get_output_details():
        v = it.get_tensor(o["index"])
        if o["dtype"] != np.float32:
            s, z = o["quantization"]
            v = (v.astype(np.float32) - z) * s
        out[o["name"]] = v
    return out


def max_abs_diff(a: bytes | Path, b: bytes | Path, tensors: Sequence[np.ndarray]) -> float:
    """Largest output difference of two float models on the same inputs."""
    ia, ib = _interp(a), _interp(b)
    worst = 0.0
    for x in tensors:
        oa, ob = _run(ia, x), _run(ib, x)
        for k in oa:
            worst = max(worst, float(np.abs(oa[k] - ob[k]).max()))
    return worst


def face_regions(images: Iterable[Path], face_detector: Any, region_scale: float, limit: int,
                 min_face_px: float = 24.0) -> list[np.ndarray]:
    """Face-centred regions (RGB crops) as the device's hand stage sees them, from photos.

    Faces come from doorguard's face detector; each region is ``edge.decide.facetouch.region_around``.
    """
    from edge.decide.facetouch import region_around

    from convert.data.images import read_rgb

    out = []
    for p in images:
        try:
            img = read_rgb(p)
        except DataError:
            continue
        h, w = img.shape[:2]
        for d in face_detector.detect(img):
            if min(d.box.width, d.box.height) < min_face_px:
                continue
            x1, y1, x2, y2 = region_around(d.box, region_scale, w, h)
            out.append(img[y1:y2, x1:x2])
            if len(out) >= limit:
                return out
    return out


def input_spec(quant: tuple[float, int] | None) -> dict:
    spec = dict(PALM_INPUT, dtype="int8" if quant else "float32")
    if quant:
        spec["quant"] = {"scale": float(quant[0]), "zero_point": int(quant[1])}
    return spec


def tensors_for(crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Float model inputs of crops, through edge's own preprocessing (letterbox, 0..1)."""
    from edge.manifest import InputSpec
    from edge.infer.preprocess import prepare

    spec = InputSpec(**input_spec(None))
    return [prepare(c, spec)[0].astype(np.float32) for c in crops]


def quantize(float_model: bytes, calibration: Sequence[np.ndarray]) -> bytes:
    """ai-edge-quantizer static int8 (weights and activations), calibrated on ``calibration``.

    Raises:
        DataError: fewer than 50 calibration inputs (warns below 300).
    """
    from ai_edge_quantizer import quantizer, recipe

    if len(calibration) < 50:
        raise DataError(f"only {len(calibration)} calibration regions: need at least 50 (a few hundred is right)")
    if len(calibration) < 300:
        log.warning("only %d calibration regions (a few hundred is right)", len(calibration))
    it = _interp(float_model)
    in_name = it.get_signature_list()["serving_default"]["inputs"][0]
    qt = quantizer.Quantizer(float_model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    calib = qt.calibrate({"serving_default": [{in_name: x} for x in calibration]})
    result = qt.quantize(calib, enable_progress_report=False)
    return bytes(result.quantized_model)


def _detect(it, x: np.ndarray, anchors: np.ndarray, ssd, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    from edge.infer.ssd import decode

    out = _run(it, x)
    boxes = next(v for v in out.values() if v.shape[-1] == 4 + 2 * ssd.num_keypoints)
    scores = next(v for v in out.values() if v.shape[-1] == 1)
    return decode(boxes[0], scores[0], anchors, ssd, INPUT_SIZE, INPUT_SIZE, threshold, NMS_IOU)


def agreement(float_model: bytes | Path, int8_model: bytes | Path, tensors: Sequence[np.ndarray],
              threshold: float = SCORE_THRESHOLD, margin: float = 0.1) -> dict:
    """int8 vs float detections on the same inputs.

    Strict: a float box (score >= ``threshold``) is found by int8 when an int8 box of score
    >= ``threshold`` overlaps it with IoU >= 0.5 (and the other way round for precision).
    Tolerant: the other model's boxes count down to ``threshold - margin`` (a box whose score
    only moved across the threshold is not a lost box).

    Returns:
        box counts, recall/precision/F1 of int8 against float (strict and tolerant), mean IoU
        of matched boxes, and the score threshold.
    """
    from edge.manifest import SsdSpec
    from edge.infer.ssd import anchors as make_anchors
    from edge.types import Box

    ssd = SsdSpec(**PALM_LITE_SSD)
    anchors = make_anchors(ssd, INPUT_SIZE, INPUT_SIZE)
    fi, qi = _interp(float_model), _interp(int8_model)

    def found(ref: np.ndarray, other: np.ndarray) -> list[float]:
        ious, used = [], set()
        for b in ref:
            best, bi = 0.0, -1
            for j, c in enumerate(other):
                if j not in used:
                    iou = Box(*b).iou(Box(*c))
                    if iou > best:
                        best, bi = iou, j
            if best >= 0.5:
                used.add(bi)
                ious.append(best)
        return ious

    n = {"float": 0, "int8": 0, "recall": 0, "precision": 0, "recall_tol": 0, "precision_tol": 0}
    ious: list[float] = []
    low = threshold - margin
    for x in tensors:
        fb, fs = _detect(fi, x, anchors, ssd, low)
        qb, qs = _detect(qi, x, anchors, ssd, low)
        f_hi, q_hi = fb[fs >= threshold], qb[qs >= threshold]
        n["float"] += len(f_hi)
        n["int8"] += len(q_hi)
        m = found(f_hi, q_hi)
        ious += m
        n["recall"] += len(m)
        n["precision"] += len(found(q_hi, f_hi))
        n["recall_tol"] += len(found(f_hi, qb))
        n["precision_tol"] += len(found(q_hi, fb))

    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    def f1(r, p):
        return round(2 * r * p / (r + p), 4) if r and p else None

    r, p = ratio(n["recall"], n["float"]), ratio(n["precision"], n["int8"])
    rt, pt = ratio(n["recall_tol"], n["float"]), ratio(n["precision_tol"], n["int8"])
    return {"regions": len(tensors), "float_boxes": n["float"], "int8_boxes": n["int8"],
            "int8_recall_vs_float": r, "int8_precision_vs_float": p, "f1": f1(r, p),
            "tolerant_recall": rt, "tolerant_precision": pt, "tolerant_f1": f1(rt, pt), "tolerance": margin,
            "mean_iou_matched": round(float(np.mean(ious)), 4) if ious else None, "score_threshold": threshold}


def count_float_ops(model: bytes | Path) -> int:
    """Ops of the int8 model that compute in float (between a DEQUANTIZE and a QUANTIZE)."""
    it = _interp(model)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    n = 0
    for op in it._get_ops_details():
        ins = [i for i in op["inputs"] if i >= 0 and i in tensors]
        if op["op_name"] not in ("DEQUANTIZE", "QUANTIZE", "DELEGATE") and ins \
                and np.dtype(tensors[ins[0]]["dtype"]) == np.float32:
            n += 1
    return n


def output_specs(model: bytes | Path) -> list[dict]:
    """The manifest's outputs (name, shape, role, dtype, quant) read off the model."""
    it = _interp(model)
    out = []
    for o in it.get_output_details():
        shape = [int(v) for v in o["shape"]]
        role = "ssd_scores" if shape[-1] == 1 else "ssd_boxes"
        dtype = np.dtype(o["dtype"]).name
        spec = {"name": o["name"], "shape": shape, "role": role, "dtype": dtype}
        if dtype != "float32":
            s, z = o["quantization"]
            spec["quant"] = {"scale": float(s), "zero_point": int(z)}
        out.append(spec)
    return out


def input_quant(model: bytes | Path) -> tuple[float, int] | None:
    d = _interp(model).get_input_details()[0]
    if np.dtype(d["dtype"]).kind == "f":
        return None
    return float(d["quantization"][0]), int(d["quantization"][1])


def write(out_dir: Path, float_model: bytes, int8_model: bytes | None, source: Path, origin: dict,
          metrics: dict) -> Path:
    """Write the model files and the manifest; int8 None ships the float model alone.

    Returns:
        The manifest path.
    """
    from edge.manifest import sha256_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    f_path = out_dir / f"{NAME}.float32.tflite"
    f_path.write_bytes(float_model)
    main = f_path
    if int8_model is not None:
        main = out_dir / f"{NAME}_int8.tflite"
        main.write_bytes(int8_model)
    q = input_quant(main)
    versions = {}
    for pkg in ("ai-edge-quantizer", "ai-edge-litert", "numpy"):
        try:
            from importlib.metadata import version

            versions[pkg] = version(pkg)
        except Exception:  # noqa: BLE001 - a version we cannot read is left out
            pass
    manifest = {
        "format_version": 1, "name": NAME, "task": "detect", "tflite": main.name, "sha256": sha256_file(main),
        "float_tflite": f_path.name, "float_sha256": sha256_file(f_path),
        "input": input_spec(q), "outputs": output_specs(main), "labels": ["hand"],
        "score_threshold": SCORE_THRESHOLD, "nms_iou": NMS_IOU, "ssd": PALM_LITE_SSD,
        "source": {"kind": "tflite", "files": {"palm_detection_lite.tflite": {
            "path": f"{origin['wheel']}:{origin['path_in_wheel']}", "sha256": sha256_file(source)}}},
        "metrics": {**metrics, "origin": origin},
        "versions": versions,
    }
    from edge.manifest import Manifest, write_manifest

    path = out_dir / f"{NAME}.json"
    write_manifest(Manifest.model_validate(manifest), path)
    return path


def _photos(shared: Path, which: str) -> list[Path]:
    """Photo lists of ../shared: ``calibration`` (facemask853 train, adityap27 train) and
    ``verification`` (facemask853 val, adityap27 valid), disjoint by origin split."""
    data = Path(shared) / "data"
    fm = data / "facemask853"
    out: list[Path] = []
    split = "train.txt" if which == "calibration" else "val.txt"
    if (fm / split).is_file():
        out += [fm / "images" / f"{s.strip()}.jpg" for s in (fm / split).read_text().split() if s.strip()]
    ad = data / "adityap27" / ("train" if which == "calibration" else "valid")
    out += sorted(ad.glob("*.jpg"))
    return [p for p in out if p.is_file()]


def _clamp_outputs(qsvs: dict, float_model: bytes, calibration: Sequence[np.ndarray], score_floor: float) -> dict:
    """Output ranges from every calibration input, not the moving average of per-input ranges.

    ai-edge-quantizer keeps a moving average (0.95) of each tensor's per-input min/max; for
    the score logits that is about the typical per-region maximum (~0.1), so every logit
    above it saturated and int8 scores stuck at 0.52. The outputs get their true range
    over the calibration set instead, the score logits floored at ``score_floor`` (below
    that a sigmoid is 0 anyway: finer steps where the threshold is).
    """
    it = _interp(float_model)
    runs = [_run(it, x) for x in calibration]
    out = dict(qsvs)
    d = it.get_input_details()[0]
    if d["name"] in out:
        # The input's range is known by construction (pixels / 255): all of it, no clipped whites.
        shape = np.shape(out[d["name"]]["min"])
        out[d["name"]] = {**out[d["name"]], "min": np.zeros(shape, np.float32), "max": np.ones(shape, np.float32)}
    for name in runs[0]:
        v = np.stack([r[name] for r in runs])
        lo, hi = float(v.min()), float(v.max())
        if v.shape[-1] == 1:
            lo = max(lo, -score_floor)
        if name in out:
            shape = np.shape(out[name]["min"])
            out[name] = {**out[name], "min": np.full(shape, lo, np.float32), "max": np.full(shape, hi, np.float32)}
    return out


def quantize_clamped(float_model: bytes, calibration: Sequence[np.ndarray], score_floor: float = 16.0) -> bytes:
    """:func:`quantize` with the outputs' ranges from :func:`_clamp_outputs`."""
    from ai_edge_quantizer import quantizer, recipe

    if len(calibration) < 50:
        raise DataError(f"only {len(calibration)} calibration regions: need at least 50 (a few hundred is right)")
    it = _interp(float_model)
    in_name = it.get_signature_list()["serving_default"]["inputs"][0]
    qt = quantizer.Quantizer(float_model)
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    qsvs = qt.calibrate({"serving_default": [{in_name: x} for x in calibration]}, num_threads=2)
    qsvs = _clamp_outputs(qsvs, float_model, calibration, score_floor)
    return bytes(qt.quantize(qsvs, enable_progress_report=False).quantized_model)


CARD = """# {name}: MediaPipe palm detector (hand boxes for the face-touch check)

- **Source:** `{path}` inside the `{wheel}` wheel on PyPI (sha256 of the float16 model
  `{src_sha}`). Taken from the installed wheel by `make models` (`doorguard models --steps hands`);
  never downloaded at run time.
- **Licence:** {license} (MediaPipe, Copyright Google LLC). doorguard's conversion changes
  only the number format: float16 constants folded to float32, then int8.
- **What it does:** one SSD pass over a 192 x 192 letterboxed region (values 0..1, zero
  border), {anchors} anchors (`ssd` in the manifest; decoded by `edge/infer/ssd.py`), one score
  and one palm box with 7 keypoints per anchor. doorguard runs it on a square of
  `facetouch.region_scale` x the face's size around each face (`edge/decide/facetouch.py`).
- **Files:** `{int8}` (int8 weights, activations, input and outputs; {float_ops} ops left in
  float. ai-edge-quantizer {aeq} has no int8 PRELU, so each of the 26 PReLUs is first
  rewritten as relu(x) - alpha x relu(-x) with 1x1 depthwise convolutions, same float
  function, all of it run by XNNPACK in one partition. Static int8, calibrated on {n_cal}
  face-centred regions of facemask853 train and adityap27 train photos through
  `edge.infer.preprocess.prepare`; output ranges from the whole calibration set, score
  logits floored at -16), `{float}` (float32 reference, made by `make models`, not
  kept in git: same function as the wheel's model, max output difference {fold_diff:g}).

## int8 vs float32 on {n_ver} other face regions (facemask853 val, adityap27 valid)

Face regions and face-touch figures with the default face detector (tflite sha256 {face_sha}).

Boxes at score >= {thr}: float {fb}, int8 {qb}. int8 finds {r} of the float boxes (IoU >= 0.5)
and {p} of its boxes are float boxes (F1 {f1}); counting the other model's boxes down to
score {low} (a box whose score only crossed the threshold): {rt} / {pt} (F1 {ft}). Mean IoU
of matched boxes {iou}.

{facetouch}
"""


def card(manifest: dict) -> str:
    m = manifest["metrics"]
    a, o = m["int8_vs_float"], m["origin"]
    ft = m.get("facetouch")
    ft_text = "## Face-touch figures\n\nNot measured (benchmarks/facetouch/labels.csv missing)."
    if ft:
        lines = ["## Face-touch figures (benchmarks/facetouch/labels.csv, `doorguard eval --facetouch`)", "",
                 f"Default [facetouch] settings ({', '.join(f'{k} {v}' for k, v in ft['settings'].items())}), "
                 "default face detector; a photo counts as touching when any face in it votes facetouch. "
                 "The settings were chosen on the tune half; the report half was never used for a choice.",
                 "", "| hand model | photos | touching | precision | recall | false alarms | "
                 "report half: precision | recall |", "|---|---|---|---|---|---|---|---|"]
        for prec in ("int8", "float32"):
            r = ft[prec]
            h = r["report_half"]
            lines.append(f"| {prec} | {r['photos']} | {r['positives']} | {r['precision']} | {r['recall']} | "
                         f"{r['fp']} of {r['negatives']} | {h['precision']} | {h['recall']} |")
        ft_text = "\n".join(lines)
    src = next(iter(manifest["source"]["files"].values()))
    return CARD.format(
        name=manifest["name"], path=o["path_in_wheel"], wheel=o["wheel"], src_sha=src["sha256"],
        license=o["license"], anchors=manifest["ssd"]["num_anchors"], int8=manifest["tflite"],
        float=manifest["float_tflite"], aeq=manifest["versions"].get("ai-edge-quantizer", "?"),
        n_cal=m["calibration_regions"], fold_diff=m["fold_max_abs_diff"], n_ver=a["regions"],
        float_ops=m.get("float_ops_in_int8_graph", "?"), face_sha=m.get("face_detector_sha256", "?")[:12] + "...",
        thr=a["score_threshold"], fb=a["float_boxes"], qb=a["int8_boxes"], r=a["int8_recall_vs_float"],
        p=a["int8_precision_vs_float"], f1=a["f1"], low=round(a["score_threshold"] - a["tolerance"], 3),
        rt=a["tolerant_recall"], pt=a["tolerant_precision"], ft=a["tolerant_f1"], iou=a["mean_iou_matched"],
        facetouch=ft_text)


def build(shared: Path, out_dir: Path, work: Path, region_scale: float = 3.0, n_cal: int = 320,
          n_ver: int = 300) -> Path:
    """Make models/palm-detection-lite{_int8,.float32}.tflite, its manifest and model card.

    Raises:
        DataError: no photos in ../shared or the wheel cannot be had; ModelError: an
            unfoldable model.
    """
    from edge.config import load
    from edge.infer.models import Detector

    work, out_dir = Path(work), Path(out_dir)
    work.mkdir(parents=True, exist_ok=True)
    src, origin = palm_model(work)
    float_model = prepare_float(src)
    cfg = load(None)
    faces = Detector(cfg.resolve(cfg.models.detector))
    cal_photos, ver_photos = _photos(shared, "calibration"), _photos(shared, "verification")
    if not cal_photos or not ver_photos:
        raise DataError(f"no calibration/verification photos under {shared}/data")
    cal = tensors_for(face_regions(cal_photos, faces, region_scale, n_cal))
    ver = tensors_for(face_regions(ver_photos, faces, region_scale, n_ver))
    log.info("%d calibration and %d verification face regions", len(cal), len(ver))
    fold_diff = max_abs_diff(src, float_model, ver[:16])
    int8_model = quantize_clamped(decompose_prelu(float_model), cal)
    agree = agreement(float_model, int8_model, ver)
    float_ops = count_float_ops(int8_model)
    log.info("int8 vs float: %s", agree)
    path = write(out_dir, float_model, int8_model, src, origin,
                 {"calibration_regions": len(cal), "region_scale": region_scale,
                  "fold_max_abs_diff": fold_diff, "int8_vs_float": agree, "float_ops_in_int8_graph": float_ops,
                  "face_detector_sha256": faces.manifest.sha256})
    labels = Path(__file__).resolve().parents[2] / "benchmarks" / "facetouch" / "labels.csv"
    if labels.is_file():
        from edge.manifest import Manifest, write_manifest

        m = Manifest.model_validate(json.loads(path.read_text()))
        m.metrics["facetouch"] = facetouch_figures(labels, Path(shared), path, cfg, faces)
        write_manifest(m, path)
    manifest = json.loads(path.read_text())
    (out_dir / f"{NAME}.md").write_text(card(manifest))
    return path


def facetouch_figures(labels: Path, shared: Path, manifest: Path, cfg: Any, faces: Any) -> dict:
    """Face-touch precision/recall on the labelled photos with the default [facetouch] settings,
    the int8 hand model and its float32 reference (the face detector is the default int8 one)."""
    from edge.infer.ssd import SsdDetector

    from convert.verify.evaluate import pipeline_for
    from convert.verify.facetouch_eval import evaluate, read_labels

    rows = read_labels(labels)
    out = {"labels": "benchmarks/facetouch/labels.csv", "settings": cfg.facetouch.model_dump(exclude={"hand_detector"})}
    for prec, use_float in (("int8", False), ("float32", True)):
        hands = SsdDetector(manifest, score_threshold=cfg.facetouch.score_threshold, use_float=use_float)
        r = evaluate(rows, shared, pipeline_for(faces, None, cfg, hand_detector=hands), progress=False)
        r.pop("wrong")
        out[prec] = r
    return out
