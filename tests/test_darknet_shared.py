"""The darknet converter on the real models in ../shared, against OpenCV's darknet importer.

Parity is measured on the raw head outputs (the conv feeding each yolo layer)
for real facemask853 val photos letterboxed by edge's own preprocessing, for
our graph in float32 (what ships) and in float64 (separates graph errors from
rounding).

Tolerances: the box channels (tx, ty, tw, th) within 1e-4 absolute; every
channel within 1e-4 + 1e-5 x |value|. The relative term is float32 rounding:
yoloface-500k-v2's objectness/class logits reach |37|, and OpenCV's own float32
result is up to 1.5e-4 (~80 ULP) away from our float64 graph there (its box
channels: 3e-5). Measured on 20 val images, max abs diff vs OpenCV 4.14
(Winograd off): yolov3-tiny 5.0e-5, yoloface-500k 9.0e-5, yoloface-500k-v2
2.4e-4 (float32 TFLite), 1.5e-4 (float64 graph).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert.parse import darknet
from convert.tflite import quantize
from convert.data.images import read_rgb
from edge import cli
from edge.manifest import InputSpec, load_manifest
from edge.infer.models import Detector
from edge.infer.preprocess import prepare

pytestmark = pytest.mark.shared

MODELS = {
    "yolov3-tiny": ("yolov3-tiny/yolov3-tiny.cfg", "yolov3-tiny/yolov3-tiny.weights", "yolov3-tiny/coco.names"),
    "yoloface-500k": ("yoloface-500k/v1/yoloface-500k.cfg", "yoloface-500k/v1/yoloface-500k.weights",
                      "yoloface-500k/label.names"),
    "yoloface-500k-v2": ("yoloface-500k/v2/yoloface-500k-v2.cfg", "yoloface-500k/v2/yoloface-500k-v2.weights",
                         "yoloface-500k/label.names"),
}


def _val_stems(shared, n):
    return (shared / "data/facemask853/val.txt").read_text().split()[:n]


@pytest.mark.parametrize("name", list(MODELS))
def test_raw_heads_match_opencv_darknet(shared, name):
    cfg, weights, _ = (shared / "models" / p for p in MODELS[name])
    net = darknet.load_network(cfg)
    header, w = darknet.read_weights(weights, net)
    assert (header.major, header.minor) == (0, 2)
    spec = InputSpec(width=net.width, height=net.height, resize="letterbox", scale=1 / 255, dtype="float32")
    x = np.concatenate([
        prepare(read_rgb(shared / f"data/facemask853/images/{s}.jpg"), spec)[0] for s in _val_stems(shared, 8)
    ])
    ref = darknet.opencv_heads(cfg, weights, net, x)
    ours64 = darknet.build_keras(net, w, dtype="float64").predict(x.astype(np.float64), verbose=0, batch_size=1)
    ours32 = darknet.build_keras(net, w).predict(x, verbose=0, batch_size=1)
    for head, r, o64, o32 in zip(net.heads, ref, ours64, ours32):
        assert o64.shape == r.shape == o32.shape
        assert np.abs(r).max() > 5  # real activations, not a degenerate map
        for o in (o64, o32):
            np.testing.assert_allclose(o, r, atol=1e-4, rtol=1e-5)
            a = len(head.mask)
            box = np.abs(o - r).reshape(*r.shape[:-1], a, -1)[..., :4]
            assert box.max() <= 1e-4


def test_convert_yoloface_v2_end_to_end(shared, tmp_path):
    cfg, weights, names = (shared / "models" / p for p in MODELS["yoloface-500k-v2"])
    data = shared / "data/facemask853"
    val = tmp_path / "val.txt"
    val.write_text("\n".join(str(data / "images" / f"{s}.jpg") for s in _val_stems(shared, 20)) + "\n")
    out = tmp_path / "face"
    code = cli.main(["convert", "darknet", "--cfg", str(cfg), "--weights", str(weights), "--names", str(names),
                     "--calib", str(data / "train.txt"), "--calib-limit", "30", "--out", str(out),
                     "--val", str(val), "--min-agreement", "0.5"])
    assert code == 0
    m = load_manifest(tmp_path / "face.json")
    quantize.check_full_int8((tmp_path / "face.tflite").read_bytes())
    assert (m.input.width, m.input.height) == (352, 288) and m.labels == ["Face"]
    assert [o.stride for o in m.outputs] == [32, 16, 8]
    r = json.loads((tmp_path / "face.json").read_text())["metrics"]
    assert r["calibration"]["images"] == 30
    assert r["reference"]["max_abs"] <= 3e-4
    assert r["agreement"]["f1"] >= 0.5
    assert r["map"]["gt_boxes"] > 50 and r["map"]["float"] > 0.2
    img = read_rgb(data / "images" / f"{_val_stems(shared, 1)[0]}.jpg")
    assert Detector(tmp_path / "face.json").detect(img)
