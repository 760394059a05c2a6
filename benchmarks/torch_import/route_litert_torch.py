"""The route not taken, measured: torch -> litert-torch -> ai-edge-quantizer (issue 22).

Converts a torchvision MobileNetV2 with litert-torch (NHWC I/O through
``to_channel_last_io``), quantizes it with ai-edge-quantizer's static int8
recipe on the same calibration crops, and reports what doorguard's checks see:
TRANSPOSE ops (at input/output), float tensors left (``check_full_int8``), op
counts, time, and top-1 agreement / max probability difference with torch on
real crops. ``--doorguard MANIFEST`` adds the same figures for a model made by
``doorguard convert torch`` from the same state dict.

Needs litert-torch (not a doorguard dependency): pip install litert-torch.

    python benchmarks/torch_import/route_litert_torch.py --state-dict WORK/mobilenet_v2_mask.pth \
        --calib WORK/calib --val WORK/facemask853_val --size 96 --doorguard WORK/models/mnv2-torch.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def _ops(path: Path) -> tuple[Counter, dict]:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path), experimental_op_resolver_type=tf.lite.experimental
                                 .OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    ins = {d["index"] for d in interp.get_input_details()}
    outs = {d["index"] for d in interp.get_output_details()}
    ops = Counter()
    at_io = 0
    for op in interp._get_ops_details():
        ops[op["op_name"]] += 1
        if op["op_name"] == "TRANSPOSE" and (ins & set(op["inputs"]) or outs & set(op["outputs"])):
            at_io += 1
    io = {"input": [str(np.dtype(d["dtype"])) for d in interp.get_input_details()],
          "output": [str(np.dtype(d["dtype"])) for d in interp.get_output_details()],
          "transposes_at_io": at_io}
    return ops, io


def _runner(path: Path):
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    interp.allocate_tensors()
    i, o = interp.get_input_details()[0], interp.get_output_details()[0]

    def run(x: np.ndarray) -> np.ndarray:
        if np.dtype(i["dtype"]).kind != "f":
            s, z = i["quantization"]
            x = np.clip(np.round(x / s + z), -128, 127).astype(i["dtype"])
        interp.set_tensor(i["index"], x)
        interp.invoke()
        y = interp.get_tensor(o["index"])
        if np.dtype(o["dtype"]).kind != "f":
            s, z = o["quantization"]
            y = (y.astype(np.float32) - z) * s
        return y.astype(np.float32).reshape(-1)

    return run


def _softmax(z):
    z = np.asarray(z, np.float64).reshape(-1)
    e = np.exp(z - z.max())
    return e / e.sum()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state-dict", type=Path, help="torchvision mobilenet_v2 state dict (default: random weights)")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--preprocess", choices=["mobilenet", "imagenet"], default="mobilenet",
                    help="the normalization the model was trained with (finetune.py: mobilenet)")
    ap.add_argument("--calib", type=Path, required=True)
    ap.add_argument("--val", type=Path, required=True)
    ap.add_argument("--doorguard", type=Path, help="a doorguard manifest of the same model, for comparison")
    ap.add_argument("--out", type=Path, default=Path("bench-out/torch_import/route_litert_torch.json"))
    args = ap.parse_args()

    import torch
    import torchvision

    import litert_torch
    from ai_edge_quantizer import quantizer, recipe

    from convert.tflite import quantize as dq
    from convert.pipeline.classifier import calibration_files
    from convert.data.images import list_images, read_rgb
    from edge.manifest import InputSpec
    from edge.infer.preprocess import prepare

    torch.set_num_threads(1)  # batch-1 reference; torch's pool beside TF's threads crawls (torch_import.py)
    model = torchvision.models.mobilenet_v2(num_classes=args.classes)
    if args.state_dict:
        model.load_state_dict(torch.load(args.state_dict, map_location="cpu", weights_only=True))
    model.eval()
    from convert.pipeline.classifier_args import PRESETS

    sc, mn, sd = PRESETS[args.preprocess]
    spec = InputSpec(width=args.size, height=args.size, color="RGB", resize="stretch", scale=sc, mean=mn, std=sd,
                     dtype="float32")
    calib = [prepare(read_rgb(f), spec, dtype="float32")[0] for f in calibration_files(args.calib)[:300]]
    val = sorted(list_images(args.val, recursive=True))
    result: dict = {"model": str(args.state_dict or "random weights"), "size": args.size}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        nhwc = litert_torch.to_channel_last_io(model, args=[0]).eval()
        sample = torch.from_numpy(calib[0])
        edge = litert_torch.convert(nhwc, (sample,))
        float_path = Path(tmp) / "float.tflite"
        edge.export(str(float_path))
        t_float = time.time() - t0
        ops, io = _ops(float_path)
        result["float"] = {"seconds": round(t_float, 1), "ops": dict(ops), "io": io}

        t0 = time.time()
        qt = quantizer.Quantizer(str(float_path))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        import tensorflow as tf

        sig = tf.lite.Interpreter(model_path=str(float_path)).get_signature_list()
        key = next(iter(sig))
        in_name = sig[key]["inputs"][0]
        cal = qt.calibrate({key: [{in_name: x} for x in calib]})
        q = qt.quantize(cal)
        int8_path = Path(tmp) / "int8.tflite"
        int8_path.write_bytes(q.quantized_model)
        result["int8"] = {"seconds": round(time.time() - t0, 1)}
        ops, io = _ops(int8_path)
        result["int8"].update({"ops": dict(ops), "io": io, "size_bytes": int8_path.stat().st_size})
        try:
            dq.check_full_int8(int8_path.read_bytes())
            result["int8"]["full_int8"] = "yes"
        except Exception as e:  # noqa: BLE001 - the reason is the measurement
            result["int8"]["full_int8"] = f"no: {e}"
        run_q = _runner(int8_path)
        ref, got = [], []
        for f in val:
            x = prepare(read_rgb(f), spec, dtype="float32")[0]
            with torch.no_grad():
                ref.append(_softmax(model(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()))
            got.append(_softmax(run_q(x)))
        ref, got = np.asarray(ref), np.asarray(got)
        result["int8"]["vs_torch"] = {"images": len(val),
                                      "top1_agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 4),
                                      "max_prob_diff": round(float(np.abs(ref - got).max()), 4)}
    if args.doorguard:
        m = json.loads(args.doorguard.read_text())
        ops, io = _ops(args.doorguard.parent / m["tflite"])
        result["doorguard"] = {"ops": dict(ops), "io": io, "framework": m["metrics"].get("framework"),
                               "size_bytes": (args.doorguard.parent / m["tflite"]).stat().st_size}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
