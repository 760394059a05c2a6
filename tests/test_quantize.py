"""int8 conversion core: full-integer output, float leftovers detected, calibration count gate."""

from __future__ import annotations

import numpy as np
import pytest

from edge.errors import DataError, ModelError

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from convert.tflite import quantize  # noqa: E402


def _tiny_model():
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    return keras.Model(inp, out)


def _rep(n=8):
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32) for _ in range(n)]


def test_int8_model_is_full_integer_and_runs():
    data = quantize.to_tflite_int8(_tiny_model(), _rep(), progress=False)
    inp, outs = quantize.io_details(data)
    assert quantize.dtype_name(inp) == "int8"
    assert [quantize.dtype_name(o) for o in outs] == ["int8"]
    assert quantize.quant_params(inp).scale > 0


def test_float_model_fails_the_int8_check():
    data = quantize.to_tflite_float(_tiny_model())
    with pytest.raises(ModelError, match="not full-integer"):
        quantize.check_full_int8(data)


def test_calibration_count_gate(caplog):
    with pytest.raises(DataError, match="at least 20"):
        quantize.check_calib_count(19)
    quantize.check_calib_count(50)
    assert "calibration images" in caplog.text
