"""convert onnx: ONNX graph -> NHWC Keras rebuild (vs onnxruntime), full-int8 TFLite, manifest, the
framework comparison in report and gate, one-line errors.

The ONNX models are written here with onnx.helper in the shapes PyTorch's exporter gives
(N,C,H,W input, folded or standalone batch norm, Clip(0, 6), grouped depthwise Conv,
residual Add, padded MaxPool, GlobalAveragePool, Flatten or Shape/Gather/Concat/Reshape,
Gemm with transB): no torch needed, so they run wherever the test extra is installed.
tests/test_convert_torch.py does the same from real torchvision models where torch is.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
onnx = pytest.importorskip("onnx", reason="the onnx package (test extra) is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime (test extra) is not installed")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from edge.cli import main as cli  # noqa: E402
from edge.errors import ModelError, UsageError  # noqa: E402


def _one_error_line(err: str) -> bool:
    return "Traceback" not in err and sum(line.startswith("doorguard: error:") for line in err.splitlines()) == 1


class _Graph:
    """A tiny ONNX graph writer: nodes, random constant weights, one input, one output."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.n}"

    def const(self, arr: np.ndarray, prefix: str = "w") -> str:
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def op(self, op_type: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.name(op_type), **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, pad: int = 1, group: int = 1,
             bias: bool = True) -> str:
        w = self.rng.normal(0, (2.0 / (k * k * cin / group)) ** 0.5, (cout, cin // group, k, k)).astype(np.float32)
        ins = [x, self.const(w)] + ([self.const(self.rng.normal(0, 0.1, cout).astype(np.float32))] if bias else [])
        return self.op("Conv", ins, kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4, group=group)

    def bn(self, x: str, c: int) -> str:
        r = self.rng
        params = [r.uniform(0.5, 1.5, c), r.normal(0, 0.1, c), r.normal(0, 0.1, c), r.uniform(0.5, 1.5, c)]
        return self.op("BatchNormalization", [x] + [self.const(p.astype(np.float32)) for p in params],
                       epsilon=1e-5)

    def relu6(self, x: str) -> str:
        return self.op("Clip", [x, self.const(np.array(0.0, np.float32)), self.const(np.array(6.0, np.float32))])

    def gemm(self, x: str, fin: int, fout: int) -> str:
        w = self.rng.normal(0, 1.0 / fin ** 0.5 * 3, (fout, fin)).astype(np.float32)
        return self.op("Gemm", [x, self.const(w), self.const(self.rng.normal(0, 0.1, fout).astype(np.float32))],
                       transB=1)

    def save(self, path: Path, x_name: str, in_shape: list, out: str, out_shape: list, opset: int = 17) -> Path:
        graph = helper.make_graph(self.nodes, "g", [helper.make_tensor_value_info(x_name, TensorProto.FLOAT, in_shape)],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="test")
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, str(path))
        return path


def mobilenet_like(path: Path, classes: int = 2, size: int = 32, softmax: bool = False, flatten: str = "gap",
                   layout: str = "nchw", dynamic: bool = False, seed: int = 0) -> Path:
    """An ONNX classifier with the ops torchvision's MobileNetV2/ResNet exports hold (and a few more).

    flatten: "gap" (GlobalAveragePool + Flatten), "shape" (GlobalAveragePool + the
    Shape/Gather/Unsqueeze/Concat/Reshape chain of ``x.view(x.size(0), -1)``) or "spatial"
    (Flatten of a 4x4 map: PyTorch's C,H,W element order).
    """
    g = _Graph(seed)
    x = "input"
    t = x
    if layout == "nhwc":
        t = g.op("Transpose", [t], perm=[0, 3, 1, 2])
    t = g.relu6(g.bn(g.conv(t, 3, 8, stride=2), 8))                    # stride-2 conv, BN folded
    r = t
    t = g.relu6(g.bn(g.conv(t, 8, 8, group=8), 8))                     # depthwise
    t = g.bn(g.conv(t, 8, 8, k=1, pad=0, bias=False), 8)               # linear bottleneck
    t = g.op("Add", [r, t])                                            # residual
    t = g.op("MaxPool", [t], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # may be negative
    t = g.op("Relu", [g.conv(t, 8, 16, k=1, pad=0)])
    se = g.op("Sigmoid", [g.conv(g.op("GlobalAveragePool", [t]), 16, 16, k=1, pad=0)])
    t = g.op("Mul", [t, se])                                           # squeeze-excite
    t = g.op("HardSwish", [g.op("Mul", [t, g.const(np.full((16, 1, 1), 0.5, np.float32))])])
    t = g.bn(t, 16)                                                    # standalone batch norm
    t = g.op("Concat", [t, g.op("Relu", [t])], axis=1)                 # 32 channels
    if flatten == "spatial":
        t = g.op("AveragePool", [t], kernel_shape=[2, 2], strides=[2, 2])  # 8x8 -> 4x4
        t = g.op("Flatten", [t], axis=1)
        feat = 32 * (size // 8) * (size // 8)
    else:
        t = g.op("GlobalAveragePool", [t])
        if flatten == "shape":
            shape = g.op("Shape", [t])
            n = g.op("Gather", [shape, g.const(np.array(0, np.int64))], axis=0)
            cat = g.op("Concat", [g.op("Unsqueeze", [n, g.const(np.array([0], np.int64))]),
                                  g.const(np.array([-1], np.int64))], axis=0)
            t = g.op("Reshape", [t, cat])
        else:
            t = g.op("Flatten", [t], axis=1)
        feat = 32
    t = g.op("Dropout", [t])
    t = g.gemm(g.op("Relu", [g.gemm(t, feat, 24)]), 24, classes)
    if softmax:
        t = g.op("Softmax", [t], axis=1)
    hw: list = ["h", "w"] if dynamic else [size, size]
    in_shape = ["N", 3, *hw] if layout == "nchw" else ["N", *hw, 3]
    return g.save(path, x, in_shape, t, ["N", classes])


def _ort(path: Path, x_nhwc: np.ndarray, layout: str = "nchw") -> np.ndarray:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = x_nhwc.transpose(0, 3, 1, 2) if layout == "nchw" else x_nhwc
    return sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(feed)})[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """circle/ and square/ folders of 12 small generated images each."""
    import cv2

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for lab in ("circle", "square"):
        (root / lab).mkdir()
        for i in range(12):
            img = rng.integers(0, 60, (40, 36, 3), dtype=np.uint8)
            c = tuple(int(v) for v in rng.integers(150, 255, 3))
            if lab == "circle":
                cv2.circle(img, (18, 20), int(rng.integers(6, 12)), c, -1)
            else:
                cv2.rectangle(img, (6, 6), (28, 30), c, -1)
            cv2.imwrite(str(root / lab / f"{i}.png"), img)
    return root


# ---------------------------------------------------------------- the rebuild


@pytest.mark.parametrize("flatten,layout,softmax", [("gap", "nchw", False), ("shape", "nchw", True),
                                                    ("spatial", "nchw", False), ("gap", "nhwc", False)])
def test_rebuild_matches_onnxruntime(tmp_path, flatten, layout, softmax):
    from convert.parse.onnx_graph import build_keras, load_onnx

    p = mobilenet_like(tmp_path / "m.onnx", classes=3, flatten=flatten, layout=layout, softmax=softmax)
    g = build_keras(load_onnx(p), layout=layout)
    assert (g.width, g.height, g.classes) == (32, 32, 3)
    assert g.output_role == ("probabilities" if softmax else "logits")
    assert g.ops.get("BatchNormalization(folded)") == 3 and g.ops["BatchNormalization"] == 1
    # Only the spatial flatten needs PyTorch's C,H,W order back (inside the graph).
    assert g.inner_transposes == (1 if flatten == "spatial" else 0)
    x = np.random.default_rng(1).normal(size=(4, 1, 32, 32, 3)).astype(np.float32)
    for xi in x:
        ref = _ort(p, xi, layout)
        got = np.asarray(g.model(xi))
        assert np.abs(ref - got).max() < 1e-4 * max(1.0, np.abs(ref).max())


def test_dynamic_input_needs_a_size(tmp_path):
    from convert.parse.onnx_graph import build_keras, load_onnx

    m = load_onnx(mobilenet_like(tmp_path / "d.onnx", dynamic=True))
    with pytest.raises(UsageError, match="--input WxH"):
        build_keras(m)
    g = build_keras(m, size=(40, 32))
    assert (g.width, g.height) == (40, 32) and g.model.inputs[0].shape[1:] == (32, 40, 3)
    fixed = load_onnx(mobilenet_like(tmp_path / "f.onnx"))
    with pytest.raises(UsageError, match="does not match"):
        build_keras(fixed, size=(64, 64))


# ---------------------------------------------------------------- the command


def _convert(p: Path, images: Path, out: Path, *extra: str) -> int:
    return cli(["convert", "onnx", "--model", str(p), "--labels", "circle,square", "--calib", str(images),
                "--out", str(out), *extra])


def test_convert_onnx_writes_full_int8_with_framework_report(images, tmp_path, capsys):
    from convert.tflite import quantize
    from convert.data.images import list_images, read_rgb
    from edge.infer.models import Classifier

    p = mobilenet_like(tmp_path / "m.onnx", classes=2)
    out = tmp_path / "models" / "onnxnet"
    rc = _convert(p, images, out, "--val", str(images), "--min-accuracy-drop", "100", "--min-agreement", "0.5")
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "int8 vs onnxruntime" in captured.out
    mpath = tmp_path / "models" / "onnxnet.json"
    m = json.loads(mpath.read_text())
    # torchvision's preprocessing by default, the model's own size, an int8 input.
    assert m["input"]["width"] == 32 and m["input"]["height"] == 32 and m["input"]["color"] == "RGB"
    assert m["input"]["scale"] == pytest.approx(1 / 255) and m["input"]["mean"] == [0.485, 0.456, 0.406]
    assert m["input"]["dtype"] == "int8" and m["outputs"][0]["role"] == "logits"
    assert m["source"]["kind"] == "onnx" and len(m["source"]["files"]["model"]["sha256"]) == 64
    conv = m["metrics"]["conversion"]
    assert conv["rebuild_vs_framework"]["max_abs"] < 1e-3 and conv["layout"] == "nchw"
    fw = m["metrics"]["framework"]
    assert fw["framework"].startswith("onnxruntime") and fw["images"] == 24
    assert 0.5 <= fw["int8_top1_agreement"] <= 1.0 and fw["float32_max_prob_diff"] < 1e-3
    assert {"framework_accuracy", "int8_accuracy", "int8_max_prob_diff"} <= set(fw)
    assert fw["transposes"] == {"total": 0, "at_input_or_output": 0}
    checks = {c["metric"]: c for c in m["gate"]["checks"]}
    assert {"int8_framework_top1_agreement", "int8_framework_accuracy_drop_points", "transposes_at_io",
            "int8_float_top1_agreement"} <= set(checks)
    assert m["gate"]["passed"] is True
    report = (tmp_path / "models" / "onnxnet.report" / "report.md").read_text()
    assert "int8 vs the original framework (onnxruntime" in report
    # Every op int8 (the same check the converter makes), no transpose anywhere.
    data = (tmp_path / "models" / "onnxnet.tflite").read_bytes()
    quantize.check_full_int8(data)
    # The runtime's int8 probabilities follow onnxruntime's on the images.
    q = Classifier(mpath)
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    from edge.infer.preprocess import prepare

    for f in list_images(images / "circle")[:4]:
        img = read_rgb(f)
        x, _ = prepare(img, q.manifest.input, dtype="float32")
        z = sess.run(None, {"input": x.transpose(0, 3, 1, 2).copy()})[0].reshape(-1)
        ref = np.exp(z - z.max()) / np.exp(z - z.max()).sum()
        assert np.abs(q.probabilities(img) - ref).max() < 0.1


def test_below_the_gate_exits_9_and_records_it(images, tmp_path, capsys):
    p = mobilenet_like(tmp_path / "m.onnx", classes=2, softmax=True)
    out = tmp_path / "models" / "gated"
    # int8 can never lose "-100 points": the framework accuracy check must fail.
    rc = _convert(p, images, out, "--val", str(images), "--min-accuracy-drop", "-100", "--min-agreement", "0")
    err = capsys.readouterr().err
    assert rc == 9 and _one_error_line(err) and "gate failed" in err
    m = json.loads((tmp_path / "models" / "gated.json").read_text())
    assert m["gate"]["passed"] is False and m["outputs"][0]["role"] == "probabilities"
    failed = {c["metric"] for c in m["gate"]["checks"] if not c["passed"]}
    assert "int8_framework_accuracy_drop_points" in failed


def test_mean_std_on_0_255_pixels_and_bgr(images, tmp_path, capsys):
    p = mobilenet_like(tmp_path / "m.onnx", classes=2)
    rc = _convert(p, images, tmp_path / "models" / "bgr", "--mean", "123.675,116.28,103.53",
                  "--std", "58.395,57.12,57.375", "--color", "BGR", "--min-accuracy-drop", "100",
                  "--min-agreement", "0")
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "models" / "bgr.json").read_text())
    assert m["input"]["scale"] == 1.0 and m["input"]["mean"][0] == 123.675 and m["input"]["color"] == "BGR"
    # No --val: the framework comparison ran on the calibration images.
    assert m["metrics"]["framework"]["images"] == 24 and "framework_accuracy" not in m["metrics"]["framework"]


def test_unsupported_op_is_one_line(images, tmp_path, capsys):
    g = _Graph()
    t = g.conv("input", 3, 4)
    t = g.op("Resize", [t, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="nearest")
    t = g.op("Flatten", [g.op("GlobalAveragePool", [t])])
    p = g.save(tmp_path / "resize.onnx", "input", [1, 3, 32, 32], g.gemm(t, 4, 2), [1, 2])
    out = tmp_path / "models" / "bad"
    rc = _convert(p, images, out)
    err = capsys.readouterr().err
    assert rc == ModelError.exit_code and _one_error_line(err)
    assert "(Resize) is not supported" in err and "supported: " in err
    assert not list((tmp_path / "models").glob("bad*"))  # nothing half-written


def test_label_count_mismatch_is_one_line(images, tmp_path, capsys):
    p = mobilenet_like(tmp_path / "m.onnx", classes=3)
    rc = _convert(p, images, tmp_path / "models" / "x")
    err = capsys.readouterr().err
    assert rc == UsageError.exit_code and _one_error_line(err)
    assert "2 labels given (circle, square) but the model outputs 3 classes" in err


@pytest.mark.parametrize("case,want", [
    ("missing", "ONNX model not found"),
    ("garbage", "not a readable ONNX model"),
    ("wrong-layout", "--layout nhwc"),
])
def test_bad_files_are_one_line(images, tmp_path, capsys, case, want):
    p = tmp_path / "m.onnx"
    extra: list[str] = []
    if case == "garbage":
        p.write_bytes(b"\x00not onnx at all" * 10)
    elif case == "wrong-layout":
        mobilenet_like(p, layout="nhwc")
    rc = _convert(p, images, tmp_path / "models" / "x", *extra)
    err = capsys.readouterr().err
    assert rc in (ModelError.exit_code, UsageError.exit_code) and _one_error_line(err) and want in err, err
