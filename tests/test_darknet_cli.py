"""``doorguard convert darknet`` end to end on a small random-weight network, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.parse import darknet
from convert.tflite import quantize
from convert.verify import detect_report
from edge import cli
from edge.errors import AccuracyGateError, DataError, UsageError
from edge.manifest import load_manifest
from edge.infer.models import Detector

from darknet_fixtures import ALL_LAYERS_CFG, write_model


def _images(folder: Path, n: int, seed: int = 0, size=(60, 40)) -> list[Path]:
    """Synthetic photos: smooth gradients with a few bright blobs (not pure noise)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        w, h = size
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = rng.integers(0, 255, 3)
        for _ in range(3):
            c = (int(rng.integers(0, w)), int(rng.integers(0, h)))
            cv2.circle(img, c, int(rng.integers(3, 12)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
        p = folder / f"img{i:03d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """One conversion shared by the tests below (calib has a corrupt and a non-image file)."""
    tmp = tmp_path_factory.mktemp("dk")
    cfg, weights, net, _ = write_model(tmp, ALL_LAYERS_CFG, seed=5)
    names = tmp / "m.names"
    names.write_text("face\nhand\n")
    calib = tmp / "calib"
    _images(calib, 24)
    (calib / "broken.jpg").write_bytes(b"\xff\xd8not a jpeg")
    (calib / "notes.txt").write_text("not an image")
    val = tmp / "val"
    for p in _images(val, 6, seed=9):
        p.with_suffix(".txt").write_text("0 0.5 0.5 0.3 0.4\n1 0.2 0.3 0.1 0.2\n")
    out = tmp / "models" / "tiny"
    code = cli.main(["convert", "darknet", "--cfg", str(cfg), "--weights", str(weights), "--names",
                     str(names), "--calib", str(calib), "--out", str(out), "--val", str(val),
                     "--min-agreement", "0"])
    return dict(code=code, out=out, cfg=cfg, weights=weights, names=names, calib=calib, val=val, net=net)


def test_writes_int8_float_and_manifest(converted):
    assert converted["code"] == 0
    out = converted["out"]
    for suffix in (".tflite", ".float32.tflite", ".json"):
        assert (out.parent / f"tiny{suffix}").is_file()
    m = load_manifest(out.parent / "tiny.json")  # sha256 verified
    assert m.task == "detect" and m.labels == ["face", "hand"]
    assert m.input.dtype == "int8" and m.input.quant is not None
    assert (m.input.width, m.input.height, m.input.resize, m.input.pad_value) == (48, 32, "letterbox", 127.5)
    assert [o.stride for o in m.outputs] == [4, 2]
    assert m.outputs[0].anchors == [[20.0, 24.0], [30.0, 40.0]] and m.outputs[0].mask == [3, 4]
    assert m.outputs[0].scale_x_y == pytest.approx(1.05)
    assert all(o.quant is not None and o.dtype == "int8" for o in m.outputs)
    assert set(m.source.files) == {"cfg", "weights", "names"}
    assert "tensorflow" in m.versions


def test_int8_model_is_full_integer_with_raw_heads(converted):
    import tensorflow as tf

    data = (converted["out"].parent / "tiny.tflite").read_bytes()
    quantize.check_full_int8(data)
    interp = tf.lite.Interpreter(model_content=data)
    ops = [op["op_name"] for op in interp._get_ops_details()]
    assert ops.count("RESIZE_NEAREST_NEIGHBOR") == 1  # one upsample, one op
    m = load_manifest(converted["out"].parent / "tiny.json")
    outs = {d["name"]: list(d["shape"]) for d in interp.get_output_details()}
    assert {o.name: o.shape for o in m.outputs} == outs  # manifest names are the TFLite names
    # Heads are named by stride in both models (the converter called them StatefulPartitionedCall_1:N).
    assert [o.name for o in m.outputs] == ["head_s4", "head_s2"]
    float_model = tf.lite.Interpreter(model_content=(converted["out"].parent / "tiny.float32.tflite").read_bytes())
    assert sorted(d["name"] for d in float_model.get_output_details()) == ["head_s2", "head_s4"]
    assert sorted(interp.get_signature_list()["serving_default"]["outputs"]) == ["head_s2", "head_s4"]


def test_head_names_by_stride():
    from convert.pipeline.darknet_import import head_names

    assert head_names([8, 16, 32]) == ["head_s8", "head_s16", "head_s32"]
    assert head_names([32, 16, 16]) == ["head_s32", "head_s16_1", "head_s16_2"]


def test_report_in_manifest(converted):
    r = json.loads((converted["out"].parent / "tiny.json").read_text())["metrics"]
    assert r["calibration"]["images"] == 24 and r["calibration"]["skipped_unreadable"] == 1
    assert set(r["head_error"]) == {o["name"] for o in json.loads(
        (converted["out"].parent / "tiny.json").read_text())["outputs"]}
    for e in r["head_error"].values():
        assert 0 <= e["mean_lsb"] <= e["max_lsb"]
    assert 0 <= r["agreement"]["f1"] <= 1
    assert r["evaluation"]["images"] == 6
    assert 0 <= r["map"]["float"] <= 1 and r["map"]["gt_boxes"] == 12
    assert r["reference"]["max_abs"] < 1e-4  # float TFLite vs OpenCV darknet
    assert r["sizes_bytes"]["int8"] < r["sizes_bytes"]["float32"]
    assert r["int8_head_clip"] == 10.0
    assert set(r["head_error"]) == {"head_s4", "head_s2"}


def test_gate_recorded_in_manifest(converted, capsys):
    m = load_manifest(converted["out"].parent / "tiny.json")
    assert m.gate is not None and m.gate.passed
    assert [c.metric for c in m.gate.checks] == ["int8_float_detection_f1", "float_vs_opencv_max_abs"]
    f1 = m.gate.checks[0]
    assert (f1.op, f1.threshold, f1.value) == (">=", 0.0, m.metrics["agreement"]["f1"])
    # No partial folder is left beside the outputs.
    assert sorted(p.name for p in converted["out"].parent.iterdir()) == [
        "tiny.float32.tflite", "tiny.json", "tiny.tflite"]


def test_detector_runs_both_models(converted):
    img = cv2.cvtColor(cv2.imread(str(sorted(converted["val"].glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    for use_float in (False, True):
        det = Detector(converted["out"].parent / "tiny.json", use_float=use_float, score_threshold=0.0)
        dets = det.detect(img)
        assert dets and all(d.label in ("face", "hand") for d in dets)


def test_float_tflite_matches_keras(converted):
    net = converted["net"]
    _, w = darknet.read_weights(converted["weights"], net)
    keras_out = darknet.build_keras(net, w).predict(
        np.full((1, 32, 48, 3), 0.5, np.float32), verbose=0)
    det = Detector(converted["out"].parent / "tiny.json", use_float=True)
    heads = det.infer(np.full((1, 32, 48, 3), 0.5, np.float32))
    for k, o in zip(keras_out, det.heads):
        np.testing.assert_allclose(heads[o.name], k, atol=1e-5)


def test_accuracy_gate_fails_after_writing_report_uint8_input_resized(converted, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(detect_report, "agreement",
                        lambda *a, **k: {"precision": 0.5, "recall": 0.5, "f1": 0.5, "tp": 1, "fp": 1,
                                         "fn": 1, "images": 1})
    out = tmp_path / "gated"
    code = cli.main(["convert", "darknet", "--cfg", str(converted["cfg"]), "--weights",
                     str(converted["weights"]), "--names", str(converted["names"]), "--calib",
                     str(converted["calib"]), "--out", str(out), "--reference-images", "0",
                     "--input-dtype", "uint8", "--input", "64x48"])
    assert code == AccuracyGateError.exit_code
    cap = capsys.readouterr()
    err = cap.err
    last = err.strip().splitlines()[-1]  # progress bars come before the error line
    assert last.startswith("doorguard: error: int8 vs float detection F1 0.500 is below --min-agreement 0.9")
    assert "records the failed gate" in last
    assert "Traceback" not in err
    raw = json.loads((tmp_path / "gated.json").read_text())
    assert raw["metrics"]["agreement"]["f1"] == 0.5
    assert raw["gate"]["passed"] is False
    assert raw["gate"]["checks"] == [{"metric": "int8_float_detection_f1", "value": 0.5, "op": ">=",
                                      "threshold": 0.9, "passed": False,
                                      "basis": raw["gate"]["checks"][0]["basis"]}]
    assert "gate: FAILED: int8_float_detection_f1 0.5 (must be >= 0.9)" in cap.out
    # the files are complete and usable: a uint8-input model this time
    det = Detector(tmp_path / "gated.json")
    assert det.manifest.input.dtype == "uint8" and det.manifest.input.quant.zero_point == 0
    assert (det.manifest.input.width, det.manifest.input.height) == (64, 48)
    assert [o.shape for o in det.manifest.outputs] == [[1, 12, 16, 14], [1, 24, 32, 21]]
    assert det.detect(np.full((40, 60, 3), 128, np.uint8)) is not None


@pytest.mark.parametrize("case", ["missing_cfg", "empty_calib", "few_images", "names_mismatch",
                                  "not_images", "bad_input"])
def test_bad_inputs_are_one_line_errors(converted, tmp_path, capsys, case):
    args = {"--cfg": converted["cfg"], "--weights": converted["weights"], "--names": converted["names"],
            "--calib": converted["calib"], "--out": tmp_path / "x"}
    extra: list[str] = []
    code = DataError.exit_code
    if case == "missing_cfg":
        args["--cfg"] = tmp_path / "nope.cfg"
    elif case == "empty_calib":
        (tmp_path / "empty").mkdir()
        args["--calib"] = tmp_path / "empty"
    elif case == "few_images":
        _images(tmp_path / "few", 5)
        args["--calib"] = tmp_path / "few"
    elif case == "names_mismatch":
        (tmp_path / "one.names").write_text("face\n")
        args["--names"] = tmp_path / "one.names"
    elif case == "not_images":
        d = tmp_path / "docs"
        d.mkdir()
        (d / "a.txt").write_text("x")
        (d / "b.jpg").write_bytes(b"garbage")
        args["--calib"] = d
    elif case == "bad_input":
        extra = ["--input", "big"]
        code = UsageError.exit_code
    argv = ["convert", "darknet"] + [v for k, p in args.items() for v in (k, str(p))] + extra
    (tmp_path / "x.json").write_text("an earlier model's manifest")
    assert cli.main(argv) == code
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith("doorguard: error:") and "Traceback" not in err
    assert not (tmp_path / "x.tflite").exists()
    # Nothing half-written is left (no model file, no temporary folder) and what was there stays.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(("x.", ".x."))] == ["x.json"]
    assert (tmp_path / "x.json").read_text() == "an earlier model's manifest"


def test_failure_half_way_leaves_nothing_and_keeps_the_old_model(converted, tmp_path, monkeypatch, capsys):
    """The float model is written, then the int8 conversion fails: no file of the new model
    appears, no temporary folder stays, and the model already at --out is untouched."""
    from edge.errors import ModelError

    def fail(*a, **k):
        raise ModelError("int8 conversion failed: simulated")

    monkeypatch.setattr(quantize, "to_tflite_int8", fail)
    old = {n: f"old {n}" for n in ("m.tflite", "m.float32.tflite", "m.json")}
    for n, text in old.items():
        (tmp_path / n).write_text(text)
    code = cli.main(["convert", "darknet", "--cfg", str(converted["cfg"]), "--weights",
                     str(converted["weights"]), "--names", str(converted["names"]), "--calib",
                     str(converted["calib"]), "--out", str(tmp_path / "m"), "--reference-images", "0"])
    assert code == ModelError.exit_code
    assert "simulated" in capsys.readouterr().err
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == old
