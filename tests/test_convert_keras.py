"""convert keras: legacy Keras-2 .h5 (tf_keras), .keras, SavedModel; inferred preprocessing; int8 gate."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.cli import main as cli
from edge.errors import AccuracyGateError, ModelError, UsageError

pytest.importorskip("tensorflow")
tf_keras = pytest.importorskip("tf_keras")



def _one_error_line(err: str) -> bool:
    """One 'doorguard: error:' line and no traceback (TF may log warnings around it)."""
    return "Traceback" not in err and sum(l.startswith("doorguard: error:") for l in err.splitlines()) == 1


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """circle/ and square/ folders of 12 small generated images each."""
    import cv2

    root = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    for lab in ("circle", "square"):
        (root / lab).mkdir()
        for i in range(12):
            img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            c = tuple(int(v) for v in rng.integers(150, 255, 3))
            if lab == "circle":
                cv2.circle(img, (16, 16), int(rng.integers(6, 10)), c, -1)
            else:
                cv2.rectangle(img, (6, 6), (26, 26), c, -1)
            cv2.imwrite(str(root / lab / f"{i}.png"), img)
    return root


def _legacy_h5(path: Path, rescaling: bool = True) -> Path:
    """A Keras-2 model with DepthwiseConv2D (the layer Keras 3 cannot deserialize from .h5)."""
    k = tf_keras
    inp = k.Input((32, 32, 3))
    x = k.layers.Rescaling(1 / 127.5, offset=-1)(inp) if rescaling else inp
    x = k.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = k.layers.GlobalAveragePooling2D()(x)
    out = k.layers.Dense(2, activation="softmax")(x)
    model = k.Model(inp, out)
    model.save(path)
    return path


def test_legacy_h5_converts_with_inferred_preprocessing(images, tmp_path, capsys):
    h5 = _legacy_h5(tmp_path / "legacy.h5")
    out = tmp_path / "models" / "leg"
    rc = cli(["convert", "keras", "--model", str(h5), "--labels", "circle,square", "--calib", str(images),
              "--val", str(images), "--out", str(out), "--min-accuracy-drop", "100", "--min-agreement", "0"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "models" / "leg.json").read_text())
    assert m["gate"]["passed"] is True
    assert [c["metric"] for c in m["gate"]["checks"]] == ["int8_accuracy_drop_points", "int8_float_top1_agreement"]
    assert m["gate"]["checks"][1]["basis"] == "val (24 validation crops)"
    assert m["metrics"]["float_vs_keras"]["max_abs"] < 1e-4
    conv = m["metrics"]["conversion"]
    assert conv["loader"] == "tf_keras" and "Rescaling" in conv["preprocessing"]
    # The model rescales itself: the manifest feeds raw pixels.
    assert m["input"]["scale"] == 1.0 and m["input"]["mean"] == [0.0, 0.0, 0.0]
    assert m["input"]["width"] == 32 and m["outputs"][0]["role"] == "probabilities"
    assert m["source"]["kind"] == "keras" and len(m["source"]["files"]["model"]["sha256"]) == 64

    # The runtime agrees with the float reference on every image of the report.
    from convert.data.images import list_images, read_rgb
    from edge.infer.models import Classifier

    q = Classifier(tmp_path / "models" / "leg.json")
    f = Classifier(tmp_path / "models" / "leg.json", use_float=True)
    imgs = [read_rgb(p) for p in list_images(images / "circle")[:5]]
    for img in imgs:
        assert np.abs(q.probabilities(img) - f.probabilities(img)).max() < 0.05


def test_keras3_and_savedmodel_and_presets(images, tmp_path):
    import keras

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    keras.Model(inp, keras.layers.Dense(2)(x)).save(tmp_path / "m.keras")
    from convert.pipeline.keras import convert_keras

    m = convert_keras(tmp_path / "m.keras", ["circle", "square"], images, tmp_path / "o" / "k3",
                      preprocess="unit", min_accuracy_drop=100, min_agreement=0)
    assert m.input.scale == pytest.approx(1 / 255) and m.outputs[0].role == "logits"
    assert m.metrics["conversion"]["loader"] == "keras"

    sm = tmp_path / "sm"
    tf_model = tf_keras.models.load_model(_legacy_h5(tmp_path / "l2.h5", rescaling=False), compile=False)
    tf_model.save(str(sm), save_format="tf")
    m = convert_keras(sm, ["circle", "square"], images, tmp_path / "o" / "sm", min_accuracy_drop=100,
                      min_agreement=0)
    # No Rescaling layer and no flag: MobileNet's [-1, 1] is assumed and recorded.
    assert m.input.scale == pytest.approx(1 / 127.5) and "assumed" in m.metrics["conversion"]["preprocessing"]


def test_int8_gate_fails_after_writing_the_report(images, tmp_path, capsys):
    h5 = _legacy_h5(tmp_path / "legacy.h5")
    out = tmp_path / "models" / "gate"
    # A negative allowance cannot be met: the gate must fire, after everything is written.
    rc = cli(["convert", "keras", "--model", str(h5), "--labels", "circle,square", "--calib", str(images),
              "--val", str(images), "--out", str(out), "--min-accuracy-drop", "-101"])
    err = capsys.readouterr().err.strip()
    assert rc == AccuracyGateError.exit_code and _one_error_line(err) and "report written" in err
    m = json.loads((tmp_path / "models" / "gate.json").read_text())
    assert m["metrics"]["gate"]["passed"] is False
    assert m["gate"]["passed"] is False and m["gate"]["checks"][0]["passed"] is False
    assert (tmp_path / "models" / "gate.report" / "report.md").is_file()
    assert (tmp_path / "models" / "gate.report" / "roc_val.png").is_file()
    assert (tmp_path / "models" / "gate.tflite").is_file()
    # The runtime refuses what the gate failed (issue 24 item 1).
    from edge.manifest import check_gate, load_manifest

    with pytest.raises(ModelError, match="failed its accuracy gate .*int8_accuracy_drop_points"):
        check_gate(load_manifest(tmp_path / "models" / "gate.json"), tmp_path / "models" / "gate.json")


def test_agreement_gate(images, tmp_path, capsys, monkeypatch):
    """int8 that flips 1 in 6 of the float model's answers fails the agreement gate even when
    the accuracy-drop gate lets everything through."""
    from convert.pipeline import classifier

    real = classifier.evaluate_runtime

    def flipping(manifest_path, data, use_float):
        ev = real(manifest_path, data, use_float)
        if not use_float:
            # Every 6th answer: the label the float model did not give (two classes). Flipping
            # int8's own output instead could land on the float answer where the untrained
            # model's int8 already disagreed on a near-tie (seen: 0.9583 in one test order).
            other = 1 - np.argmax(real(manifest_path, data, True).probs[::6], axis=1)
            ev.probs[::6] = np.eye(2, dtype=ev.probs.dtype)[other]
        return ev

    monkeypatch.setattr(classifier, "evaluate_runtime", flipping)
    h5 = _legacy_h5(tmp_path / "legacy.h5")
    out = tmp_path / "models" / "agree"
    rc = cli(["convert", "keras", "--model", str(h5), "--labels", "circle,square", "--calib", str(images),
              "--val", str(images), "--out", str(out), "--min-accuracy-drop", "100"])
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert rc == AccuracyGateError.exit_code and _one_error_line(err)
    # At most 5 of 6 answers agree (the flips), fewer where the untrained test model's int8
    # output already sits on the other side of a near-tie: the value is read, then checked.
    import re

    found = re.search(r"int8_float_top1_agreement (\d\.\d+) < 0\.98 \(min\)", err)
    assert found and "drop" not in err.split(";")[0]
    value = float(found.group(1))
    assert value <= 0.8334
    m = json.loads((tmp_path / "models" / "agree.json").read_text())
    agree = m["gate"]["checks"][1]
    assert {k: agree[k] for k in ("metric", "op", "threshold", "passed", "basis")} == {
        "metric": "int8_float_top1_agreement", "op": ">=", "threshold": 0.98, "passed": False,
        "basis": "val (24 validation crops)"}
    assert round(agree["value"], 4) == value
    assert m["metrics"]["eval"]["val"]["int8_float_agreement"] == value
    assert f"top-1 agreement {value:.4f}" in cap.out
    report = (tmp_path / "models" / "agree.report" / "report.md").read_text()
    assert "FAILED: int8_float_top1_agreement" in report and "None" not in report


def test_tf_keras_dot_keras_and_keras3_export(images, tmp_path):
    """The two formats that failed (issue 24 item 3): a .keras saved by tf_keras ("Could not locate
    class 'Functional'") and a Keras 3 model.export() SavedModel ('_UserObject' has no 'inputs')."""
    import keras

    from convert.pipeline.keras import convert_keras

    k = tf_keras
    inp = k.Input((32, 32, 3))
    x = k.layers.Rescaling(1 / 127.5, offset=-1)(inp)
    x = k.layers.DepthwiseConv2D(3, padding="same", activation="relu")(k.layers.Conv2D(6, 3)(x))
    k.Model(inp, k.layers.Dense(2, activation="softmax")(k.layers.GlobalAveragePooling2D()(x))).save(
        tmp_path / "tfk.keras")
    m = convert_keras(tmp_path / "tfk.keras", ["circle", "square"], images, tmp_path / "o" / "tfk",
                      min_accuracy_drop=100, min_agreement=0)
    conv = m.metrics["conversion"]
    assert conv["loader"] == "tf_keras" and conv["format"].startswith(".keras (Keras 2.")
    assert "Rescaling" in conv["preprocessing"] and m.outputs[0].role == "probabilities"

    inp = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(6, 3, activation="relu")(inp)
    x = keras.layers.BatchNormalization()(x)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    k3 = keras.Model(inp, out)
    k3.export(str(tmp_path / "exported"), verbose=False)
    m = convert_keras(tmp_path / "exported", ["circle", "square"], images, tmp_path / "o" / "exp",
                      preprocess="mobilenet", min_accuracy_drop=100, min_agreement=0)
    assert m.metrics["conversion"]["format"] == "SavedModel" and m.input.width == 32
    # A SavedModel hides its layers: its outputs on the calibration images show it is a softmax.
    assert m.outputs[0].role == "probabilities" and "sum to 1" in m.metrics["conversion"]["output"]
    # The float32 TFLite reproduces the exported model (BatchNorm in inference mode).
    assert m.metrics["float_vs_keras"]["max_abs"] < 1e-4
    from convert.data.images import list_images, read_rgb
    from edge.infer.models import Classifier
    from edge.infer.preprocess import prepare

    f = Classifier(tmp_path / "o" / "exp.json", use_float=True)
    img = read_rgb(list_images(images / "circle")[0])
    x, _ = prepare(img, f.manifest.input, dtype="float32")
    assert np.abs(f.probabilities(img) - np.asarray(k3(x, training=False))[0]).max() < 1e-4


def test_too_few_calibration_images_before_converting_and_nothing_left(images, tmp_path, capsys):
    h5 = _legacy_h5(tmp_path / "legacy.h5")
    few = tmp_path / "few"
    few.mkdir()
    for p in sorted((images / "circle").iterdir())[:3]:
        (few / p.name).write_bytes(p.read_bytes())
    for i in range(30):
        (few / f"junk{i}.jpg").write_bytes(b"not an image")
    out = tmp_path / "models" / "few"
    rc = cli(["convert", "keras", "--model", str(h5), "--labels", "circle,square", "--calib", str(few),
              "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 8 and _one_error_line(err) and "only 3 readable calibration images" in err
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_bad_models_are_one_line_errors(images, tmp_path, capsys):
    k = tf_keras
    inp = k.Input((10,))
    k.Model(inp, k.layers.Dense(2, activation="softmax")(inp)).save(tmp_path / "vec.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    (tmp_path / "junk.keras").write_bytes(b"PK not really a zip")
    k.Model(inp, k.layers.Dense(2, activation="softmax")(inp)).save_weights(tmp_path / "weights.h5")
    h5 = _legacy_h5(tmp_path / "ok.h5")
    cases = [
        (tmp_path / "vec.h5", "a,b", ModelError, "not an image"),
        (tmp_path / "junk.h5", "a,b", ModelError, "is not an HDF5 file: corrupt, truncated"),
        (tmp_path / "weights.h5", "a,b", ModelError, "holds no model architecture (a weights-only file?)"),
        (tmp_path / "junk.keras", "a,b", ModelError, "is not a .keras archive"),
        (tmp_path / "missing.keras", "a,b", ModelError, "not found"),
        (h5, "a,b,c", UsageError, "outputs 2 classes"),
    ]
    for model, labels, err_cls, msg in cases:
        rc = cli(["convert", "keras", "--model", str(model), "--labels", labels, "--calib", str(images),
                  "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip()
        assert rc == err_cls.exit_code, err
        assert msg in err and _one_error_line(err)
