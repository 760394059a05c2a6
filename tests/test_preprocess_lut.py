"""``prepare``'s table path for integer inputs gives the same bytes as normalize + quantize."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.manifest import InputSpec, QuantParams
from edge.infer.preprocess import normalize, prepare, quantize, resize_for


def _reference(image, spec):
    resized, tf = resize_for(image, spec)
    return quantize(normalize(resized, spec), spec)[None], tf


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from(["int8", "uint8"]),
    color=st.sampled_from(["RGB", "BGR"]),
    resize=st.sampled_from(["letterbox", "stretch"]),
    scale=st.sampled_from([1 / 255, 1 / 127.5, 1.0]),
    per_channel=st.booleans(),
    qscale=st.floats(0.001, 0.05),
    zp=st.integers(-128, 127),
)
def test_table_path_matches_float_path(seed, dtype, color, resize, scale, per_channel, qscale, zp):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 80, size=2)
    image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    mean = [0.485, 0.456, 0.406] if per_channel else [0.5]
    std = [0.229, 0.224, 0.225] if per_channel else [0.5]
    if dtype == "uint8":
        zp = abs(zp)
    spec = InputSpec(width=32, height=24, color=color, resize=resize, scale=scale, mean=mean, std=std,
                     dtype=dtype, quant=QuantParams(scale=qscale, zero_point=zp))
    got, tf = prepare(image, spec)
    want, tf_ref = _reference(image, spec)
    assert got.dtype == want.dtype and got.shape == want.shape == (1, 24, 32, 3)
    assert np.array_equal(got, want)
    assert tf == tf_ref


def test_float_override_still_takes_the_float_path():
    spec = InputSpec(width=16, height=16, resize="stretch", scale=1 / 255, dtype="int8",
                     quant=QuantParams(scale=1 / 255, zero_point=-128))
    image = np.full((20, 20, 3), 255, np.uint8)
    x, _ = prepare(image, spec, dtype="float32")
    assert x.dtype == np.float32 and np.allclose(x, 1.0)
    q, _ = prepare(image, spec)
    assert q.dtype == np.int8 and np.all(q == 127)
