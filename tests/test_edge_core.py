"""edge core: manifest validation and hashing, preprocessing, YOLO decode and NMS, Detector/Classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge import fakes

from edge.infer import yolo
from edge.errors import ModelError
from edge.manifest import (FORMAT_VERSION, InputSpec, Manifest, OutputSpec, load_manifest, manifest_paths,
                           sha256_file, write_manifest)
from edge.infer.models import Classifier, Detector, map_outputs
from edge.infer.preprocess import crop_with_margin, letterbox, prepare
from edge.types import Box


def _input(**kw):
    base = dict(width=64, height=32, resize="letterbox", scale=1 / 255, dtype="int8",
                quant={"scale": 1 / 255, "zero_point": -128})
    base.update(kw)
    return InputSpec(**base)


def _det_manifest(tmp_path, anchors=((8.0, 8.0),), labels=("face",), name="det"):
    (tmp_path / f"{name}.tflite").write_bytes(b"fake model bytes")
    nc = len(labels)
    m = Manifest(
        format_version=FORMAT_VERSION, name=name, task="detect", tflite=f"{name}.tflite",
        sha256=sha256_file(tmp_path / f"{name}.tflite"), input=_input(),
        outputs=[OutputSpec(name="head0", shape=[1, 4, 8, len(anchors) * (5 + nc)], role="yolo_head",
                            dtype="int8", quant={"scale": 0.1, "zero_point": 0}, stride=8,
                            anchors=[list(a) for a in anchors], mask=[0])],
        labels=list(labels), score_threshold=0.5, nms_iou=0.45, source={"kind": "darknet"},
    )
    path = tmp_path / f"{name}.json"
    write_manifest(m, path)
    return path


def _stub(in_shape, in_dtype, outputs):
    """Fixed output tensors ``{name: (array, quant)}``, an input quantized (1/255, -128)."""
    return fakes.StubInterpreter.returning(in_shape, outputs, dtype=in_dtype, quantization=(1 / 255, -128))


def test_manifest_hash_mismatch_is_refused(tmp_path):
    path = _det_manifest(tmp_path)
    assert load_manifest(path).task == "detect"
    (tmp_path / "det.tflite").write_bytes(b"corrupted")
    with pytest.raises(ModelError, match="does not match its manifest"):
        load_manifest(path)


def test_manifest_paths_skip_other_json_but_list_broken_manifests(tmp_path):
    good = _det_manifest(tmp_path)
    (tmp_path / "eval.json").write_text(json.dumps({"doorguard-int8": {"recall": 0.9}}))
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text('{"tflite": "x.tflite", "tru')
    (tmp_path / "notes.txt").write_text("not json at all")
    assert [p.name for p in manifest_paths(tmp_path)] == ["broken.json", good.name]
    assert load_manifest(good).task == "detect"
    with pytest.raises(ModelError, match="unreadable"):
        load_manifest(tmp_path / "broken.json")
    assert manifest_paths(tmp_path / "missing") == []


def test_manifest_newer_version_and_invalid_fields(tmp_path):
    path = _det_manifest(tmp_path)
    raw = json.loads(path.read_text())
    raw["format_version"] = FORMAT_VERSION + 1
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="upgrade doorguard"):
        load_manifest(path)
    raw["format_version"] = FORMAT_VERSION
    raw["input"]["resize"] = "crop"
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="input.resize"):
        load_manifest(path)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_manifest(path)
    with pytest.raises(ModelError, match="not found"):
        load_manifest(tmp_path / "missing.json")


def test_letterbox_centres_and_maps_back():
    img = np.full((100, 200, 3), 255, np.uint8)
    out, tf = letterbox(img, 64, 64, pad_value=127.5)
    assert out.shape == (64, 64, 3)
    # 200x100 -> 64x32, centred vertically: rows 0..15 and 48..63 are padding.
    assert (out[:16] == 128).all() and (out[48:] == 128).all() and (out[16:48] == 255).all()
    x1, y1, x2, y2 = tf.to_frame(np.array([0.0]), np.array([16.0]), np.array([64.0]), np.array([48.0]))
    assert np.allclose([x1[0], y1[0], x2[0], y2[0]], [0, 0, 200, 100])


def test_prepare_quantizes_darknet_input_exactly():
    img = np.arange(32 * 64 * 3, dtype=np.uint32).reshape(32, 64, 3).astype(np.uint8)
    t, _ = prepare(img, _input())
    assert t.dtype == np.int8 and t.shape == (1, 32, 64, 3)
    # scale 1/255, zero point -128: q = pixel - 128 exactly.
    assert np.array_equal(t[0].astype(np.int16), img.astype(np.int16) - 128)
    f, _ = prepare(img, _input(), dtype="float32")
    assert f.dtype == np.float32 and np.allclose(f[0], img / 255.0)


def test_prepare_bgr_and_stretch():
    img = np.zeros((10, 20, 3), np.uint8)
    img[..., 0] = 200  # red
    t, tf = prepare(img, _input(resize="stretch", color="BGR", dtype="float32", quant=None, scale=1.0))
    assert t.shape == (1, 32, 64, 3) and (t[0, ..., 2] == 200).all() and (t[0, ..., 0] == 0).all()
    assert tf.sx == pytest.approx(64 / 20) and tf.sy == pytest.approx(32 / 10)


def test_crop_with_margin_clips_to_frame():
    img = np.zeros((100, 100, 3), np.uint8)
    assert crop_with_margin(img, Box(10, 10, 30, 50), 0.5).shape == (70, 40, 3)  # y: -10..70 -> 0..70
    assert crop_with_margin(img, Box(90, 90, 110, 110), 0.0).shape == (10, 10, 3)
    with pytest.raises(ValueError):
        crop_with_margin(img, Box(150, 150, 160, 160), 0.0)


def _head_with_one_box(gh=4, gw=8, row=1, col=2, tx=0.0, ty=0.0, tw=0.0, th=0.0, obj=5.0, cls=(5.0,)):
    head = np.full((1, gh, gw, 5 + len(cls)), -10.0, np.float32)
    head[0, row, col] = [tx, ty, tw, th, obj, *cls]
    return head


def test_decode_head_matches_darknet_formula():
    spec = OutputSpec(name="h", shape=[1, 4, 8, 6], role="yolo_head", dtype="float32",
                      anchors=[[8.0, 16.0]], stride=8)
    raw = yolo.decode_head(_head_with_one_box(tw=np.log(2.0)), spec, 1, 64, 32, 0.5)
    assert len(raw.boxes) == 1
    # centre = (col + 0.5) / 8 * 64 = 20, (row + 0.5) / 4 * 32 = 12; w = 2 * 8, h = 16
    assert np.allclose(raw.boxes[0], [12, 4, 28, 20], atol=1e-4)
    s = 1 / (1 + np.exp(-5.0))
    assert raw.scores[0] == pytest.approx(s * s)


def test_decode_scale_x_y_and_threshold():
    spec = OutputSpec(name="h", shape=[1, 4, 8, 6], role="yolo_head", dtype="float32",
                      anchors=[[8.0, 8.0]], scale_x_y=2.0)
    raw = yolo.decode_head(_head_with_one_box(tx=50.0), spec, 1, 64, 32, 0.5)
    # sigmoid(50)*2 - 0.5 = 1.5 -> centre x = (2 + 1.5) / 8 * 64 = 28
    assert (raw.boxes[0, 0] + raw.boxes[0, 2]) / 2 == pytest.approx(28.0)
    assert len(yolo.decode_head(_head_with_one_box(obj=-1.0), spec, 1, 64, 32, 0.5).boxes) == 0


def test_nms_keeps_best_of_overlapping_and_separate_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    assert list(yolo.nms(boxes, scores, 0.45)) == [1, 2]


def test_detector_with_stub_interpreter_maps_to_frame(tmp_path):
    path = _det_manifest(tmp_path)
    head = _head_with_one_box()
    q = np.clip(np.round(head / 0.1), -128, 127).astype(np.int8)
    stub = _stub([1, 32, 64, 3], np.int8, {"StatefulPartitionedCall:0": (q, (0.1, 0))})
    det = Detector(path, interpreter=stub)
    frame = np.zeros((64, 128, 3), np.uint8)  # 2x the input: boxes scale by 2
    dets = det.detect(frame)
    assert len(dets) == 1 and dets[0].label == "face"
    assert [round(v) for v in dets[0].box.as_list()] == [32, 16, 48, 32]
    assert stub.last_input.dtype == np.int8


def test_detector_refuses_label_count_mismatch(tmp_path):
    path = _det_manifest(tmp_path)
    raw = json.loads(path.read_text())
    raw["labels"] = ["face", "hand"]  # heads encode 1 class
    path.write_text(json.dumps(raw))
    stub = _stub([1, 32, 64, 3], np.int8, {"h": (np.zeros((1, 4, 8, 6), np.int8), (0.1, 0))})
    with pytest.raises(ModelError, match="2 labels but the heads encode"):
        Detector(path, interpreter=stub)


def test_classifier_with_stub(tmp_path):
    (tmp_path / "cls.tflite").write_bytes(b"x")
    m = Manifest(format_version=FORMAT_VERSION, name="cls", task="classify", tflite="cls.tflite",
                 sha256=sha256_file(tmp_path / "cls.tflite"),
                 input=_input(width=32, height=32, resize="stretch"),
                 outputs=[OutputSpec(name="probs", shape=[1, 3], role="probabilities", dtype="int8",
                                     quant={"scale": 1 / 256, "zero_point": -128})],
                 labels=["mask", "no_mask", "mask_incorrect"], crop_margin=0.2, source={"kind": "trained"})
    write_manifest(m, tmp_path / "cls.json")
    probs = np.array([[-128 + 26, -128 + 205, -128 + 25]], np.int8)
    stub = _stub([1, 32, 32, 3], np.int8, {"probs": (probs, (1 / 256, -128))})
    c = Classifier(tmp_path / "cls.json", interpreter=stub)
    out = c.classify(np.zeros((50, 40, 3), np.uint8))
    assert out.label == "no_mask" and out.score == pytest.approx(205 / 256)
    assert set(out.probabilities) == {"mask", "no_mask", "mask_incorrect"}


def test_classifier_label_weights_set_the_operating_point(tmp_path):
    """The manifest's label_weights move the decision: probability x weight, renormalised, so the
    score that rules.min_score reads is the reweighted one too."""
    path = _clf_manifest(tmp_path)
    probs = np.array([[-128 + 140, -128 + 100, -128 + 16]], np.int8)  # mask 0.55, no_mask 0.39
    stub = _stub([1, 32, 32, 3], np.int8, {"probs": (probs, (1 / 256, -128))})
    crop = np.zeros((50, 40, 3), np.uint8)
    assert Classifier(path, interpreter=stub).classify(crop).label == "mask"
    raw = json.loads(path.read_text())
    raw["label_weights"] = {"no_mask": 1.5, "mask_incorrect": 1.5}
    path.write_text(json.dumps(raw))
    out = Classifier(path, interpreter=stub).classify(crop)
    total = 140 + 1.5 * 100 + 1.5 * 16
    assert out.label == "no_mask" and out.score == pytest.approx(1.5 * 100 / total)
    assert out.probabilities["mask"] == pytest.approx(140 / total)
    assert sum(out.probabilities.values()) == pytest.approx(1.0)
    for bad, needle in (({"nomask": 2.0}, "label_weights names nomask"), ({"no_mask": 0.0}, "label_weights"),
                        ({"no_mask": float("nan")}, "label_weights")):
        raw["label_weights"] = bad
        path.write_text(json.dumps(raw))
        with pytest.raises(ModelError, match=needle):
            Classifier(path, interpreter=stub)


# ---- the manifest's tensors are the model's own (issue 17) ---------------------------------------

def _clf_manifest(tmp_path, **changes):
    (tmp_path / "cls.tflite").write_bytes(b"x")
    out = dict(name="probs", shape=[1, 3], role="probabilities", dtype="int8",
               quant={"scale": 1 / 256, "zero_point": -128})
    out.update(changes.pop("output", {}))
    m = Manifest(format_version=FORMAT_VERSION, name="cls", task="classify", tflite="cls.tflite",
                 sha256=sha256_file(tmp_path / "cls.tflite"),
                 input=_input(width=32, height=32, resize="stretch", **changes.pop("input", {})),
                 outputs=[OutputSpec(**out)], labels=["mask", "no_mask", "mask_incorrect"], crop_margin=0.2,
                 source={"kind": "trained"})
    write_manifest(m, tmp_path / "cls.json")
    return tmp_path / "cls.json"


def _clf_stub():
    return _stub([1, 32, 32, 3], np.int8, {"probs": (np.zeros((1, 3), np.int8), (1 / 256, -128))})


@pytest.mark.parametrize("change, needle", [
    ({"input": {"quant": {"scale": 0.5, "zero_point": -128}}}, "input quantization is scale 0.00392156"),
    ({"input": {"quant": {"scale": 1 / 255, "zero_point": 0}}}, "zero point -128 in the model"),
    ({"input": {"dtype": "uint8"}}, "input is int8 in the model, but the manifest says uint8"),
    ({"input": {"dtype": "float32", "quant": None}}, "input is int8 in the model"),
    ({"input": {"quant": None}}, "input quantization is scale 0.00392156"),
    ({"output": {"quant": {"scale": 1 / 255, "zero_point": -128}}}, "output probs quantization"),
    ({"output": {"quant": {"scale": 1 / 256, "zero_point": 0}}}, "output probs quantization"),
    ({"output": {"dtype": "uint8"}}, "output probs is int8 in the model"),
])
def test_manifest_quant_and_dtype_must_be_the_models(tmp_path, change, needle):
    """A classifier manifest with a wrong input scale loaded with only a numpy warning, and the demo's
    unmasked face became "compliant mask 0.89". Every quant parameter and dtype is checked at load."""
    path = _clf_manifest(tmp_path, **change)
    with pytest.raises(ModelError, match="manifest says") as e:
        Classifier(path, interpreter=_clf_stub())
    assert needle in str(e.value) and "\n" not in str(e.value)
    assert Classifier(_clf_manifest(tmp_path), interpreter=_clf_stub())  # the unchanged manifest loads


def test_manifest_quant_scale_zero_or_not_finite_is_invalid(tmp_path):
    path = _clf_manifest(tmp_path)
    for bad in (0.0, -0.1, float("nan"), float("inf")):
        raw = json.loads(path.read_text())
        raw["input"]["quant"]["scale"] = bad
        path.write_text(json.dumps(raw))
        with pytest.raises(ModelError, match="input.quant.scale"):
            load_manifest(path)
    raw["input"]["quant"] = {"scale": 0.1, "zero_point": 300}
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="input.quant.zero_point"):
        load_manifest(path)


def test_detector_head_quant_must_be_the_models(tmp_path):
    path = _det_manifest(tmp_path)
    stub = _stub([1, 32, 64, 3], np.int8, {"h": (np.zeros((1, 4, 8, 6), np.int8), (0.2, 0))})
    with pytest.raises(ModelError, match="output head0 quantization is scale 0.2, zero point 0 in the model"):
        Detector(path, interpreter=stub)


def test_map_outputs_by_name_then_by_shape():
    # One mapping for the runtime (manifest names) and the darknet converter (unnamed heads,
    # issue 23): a named output never falls back to the ':index' guess, an unnamed one does.
    outs = {"call:0": {"shape": np.array([1, 6, 8, 18])}, "call:1": {"shape": [1, 6, 8, 18]},
            "small": {"shape": [1, 3, 4, 18]}}
    assert map_outputs(outs, [("small", [1, 3, 4, 18]), ("renamed", [1, 3, 4, 18])], "m") == ["small", "small"]
    with pytest.raises(ModelError, match="has shape"):
        map_outputs(outs, [("small", [1, 6, 8, 18])], "m")
    with pytest.raises(ModelError, match=r"cannot find output renamed with shape \[1, 6, 8, 18\]"):
        map_outputs(outs, [("renamed", [1, 6, 8, 18])], "m")
    assert map_outputs(outs, [(None, [1, 6, 8, 18]), (None, [1, 6, 8, 18])], "m") == ["call:0", "call:1"]
    with pytest.raises(ModelError, match="the output of head 0"):
        map_outputs(outs, [(None, [1, 9, 9, 18])], "m")
