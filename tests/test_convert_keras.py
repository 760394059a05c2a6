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
              "--val", str(images), "--out", str(out), "--min-accuracy-drop", "100"])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((tmp_path / "models" / "leg.json").read_text())
    conv = m["metrics"]["conversion"]
    assert conv["loader"] == "tf_keras" and "Rescaling" in conv["preprocessing"]
    # The model rescales itself: the manifest feeds raw pixels.
    assert m["input"]["scale"] == 1.0 and m["input"]["mean"] == [0.0, 0.0, 0.0]
    assert m["input"]["width"] == 32 and m["outputs"][0]["role"] == "probabilities"
    assert m["source"]["kind"] == "keras" and len(m["source"]["files"]["model"]["sha256"]) == 64

    # The runtime agrees with the float reference on every image of the report.
    from convert.images import list_images, read_rgb
    from edge.models import Classifier

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
    from convert.keras import convert_keras

    m = convert_keras(tmp_path / "m.keras", ["circle", "square"], images, tmp_path / "o" / "k3",
                      preprocess="unit", min_accuracy_drop=100)
    assert m.input.scale == pytest.approx(1 / 255) and m.outputs[0].role == "logits"
    assert m.metrics["conversion"]["loader"] == "keras"

    sm = tmp_path / "sm"
    tf_model = tf_keras.models.load_model(_legacy_h5(tmp_path / "l2.h5", rescaling=False), compile=False)
    tf_model.save(str(sm), save_format="tf")
    m = convert_keras(sm, ["circle", "square"], images, tmp_path / "o" / "sm", min_accuracy_drop=100)
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
    assert (tmp_path / "models" / "gate.report" / "report.md").is_file()
    assert (tmp_path / "models" / "gate.report" / "roc_val.png").is_file()
    assert (tmp_path / "models" / "gate.tflite").is_file()


def test_bad_models_are_one_line_errors(images, tmp_path, capsys):
    k = tf_keras
    inp = k.Input((10,))
    k.Model(inp, k.layers.Dense(2, activation="softmax")(inp)).save(tmp_path / "vec.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    h5 = _legacy_h5(tmp_path / "ok.h5")
    cases = [
        (tmp_path / "vec.h5", "a,b", ModelError, "not an image"),
        (tmp_path / "junk.h5", "a,b", ModelError, "cannot load"),
        (tmp_path / "missing.keras", "a,b", ModelError, "not found"),
        (h5, "a,b,c", UsageError, "outputs 2 classes"),
    ]
    for model, labels, err_cls, msg in cases:
        rc = cli(["convert", "keras", "--model", str(model), "--labels", labels, "--calib", str(images),
                  "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err.strip()
        assert rc == err_cls.exit_code, err
        assert msg in err and _one_error_line(err)
