"""Darknet cfg parser, weights reader/writer and Keras builder, on small random-weight networks.

OpenCV's own darknet importer (cv2.dnn.readNetFromDarknet) is the independent
reference: every test network is written as real cfg + weights files and read
by both.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest

from convert.parse import darknet
from edge.errors import DataError

from darknet_fixtures import ALL_LAYERS_CFG, ODD_POOL_CFG, write_model, yolov3_style_cfg


def _predict(model, x):
    out = model.predict(x, verbose=0)
    return out if isinstance(out, list) else [out]


# --- cfg parser -------------------------------------------------------------


def test_parse_cfg_tokenises_like_darknet(tmp_path):
    cfg = tmp_path / "a.cfg"
    cfg.write_text("# comment\n[net]\nwidth = 32\n; other comment\nheight=32\n\n[yolo]\n"
                   "mask = 0, 1\nanchors=1,2\nmask=5\n")
    sections = darknet.parse_cfg(cfg)
    assert [s.kind for s in sections] == ["net", "yolo"]
    assert sections[1].line == 7
    assert sections[1].options["mask"] == "0,1"  # whitespace removed; first duplicate wins
    assert sections[1].option_lines["anchors"] == 9


@pytest.mark.parametrize(
    "body, needle",
    [
        ("[convolutional]\nfilters=8\nsize=3\nactivation=leaky\n\n[reorg]\nstride=2\n",
         "unsupported section [reorg] at line 11"),
        ("[convolutional]\nfilters=8\nsize=3\nxnor=1\nactivation=leaky\n",
         "unsupported option xnor in [convolutional] at line 9"),
        ("[convolutional]\nfilters=8\nsize=3\nactivation=mish\n",
         "unsupported activation mish in [convolutional] at line 9"),
        ("[convolutional]\nfilters=8\nsize=3\nactivation=leaky\n\n[route]\nlayers=-5\n",
         "[route] at line 11"),
        ("[convolutional]\nfilters=8\nsize=3\nactivation=leaky\n\n[yolo]\nmask=0\nanchors=1,2\nclasses=1\nnum=1\n",
         "a yolo layer must follow a linear convolutional layer"),
    ],
)
def test_unsupported_or_bad_cfg_is_one_line_with_line_number(tmp_path, body, needle):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n" + body)
    with pytest.raises(DataError) as e:
        darknet.load_network(cfg)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_cfg_missing_and_without_net(tmp_path):
    with pytest.raises(DataError, match="cfg file not found"):
        darknet.parse_cfg(tmp_path / "nope.cfg")
    cfg = tmp_path / "x.cfg"
    cfg.write_text("[convolutional]\nfilters=1\n")
    with pytest.raises(DataError, match=r"expected \[net\]"):
        darknet.parse_cfg(cfg)


def test_route_size_mismatch_names_the_layer(tmp_path):
    cfg = tmp_path / "m.cfg"
    cfg.write_text(ALL_LAYERS_CFG)
    # 50x30: the upsampled 13x8 map cannot be concatenated with the 25x15 one.
    with pytest.raises(DataError, match=r"\[route\] at line \d+: routed layers"):
        darknet.load_network(cfg, input_size=(50, 30))


def test_shapes_and_heads(tmp_path):
    _, _, net, _ = write_model(tmp_path, ALL_LAYERS_CFG)
    assert [h.grid for h in net.heads] == [(8, 12), (16, 24)]
    assert [h.stride for h in net.heads] == [4, 2]
    assert net.heads[0].anchors == [[20.0, 24.0], [30.0, 40.0]]
    assert net.heads[0].scale_x_y == pytest.approx(1.05)
    assert net.layers[13].out_shape == (8, 12, 16)  # route groups=2 group_id=1 of 32 channels


# --- weights file -------------------------------------------------------------


@pytest.mark.parametrize("version, header_bytes", [((0, 2, 0), 20), ((0, 1, 0), 16), ((1, 0, 0), 20)])
def test_weights_round_trip_and_header_versions(tmp_path, version, header_bytes):
    cfg, weights, net, w = write_model(tmp_path, ALL_LAYERS_CFG, version=version)
    data = weights.read_bytes()
    floats = sum(c for lay in net.conv_layers for _, c in net.weight_counts(lay))
    assert len(data) == header_bytes + 4 * floats
    header, read = darknet.read_weights(weights, net)
    assert (header.major, header.minor, header.revision) == version
    for idx, arrays in w.items():
        for k, a in arrays.items():
            np.testing.assert_array_equal(read[idx][k], a)


def test_seen_is_read_as_64_bit_from_version_0_2(tmp_path):
    data = struct.pack("<iiiq", 0, 2, 5, 7871728)
    assert darknet.read_header(data).seen == 7871728
    data = struct.pack("<iii", 0, 1, 0) + struct.pack("<i", 1234)
    h = darknet.read_header(data)
    assert (h.seen, h.size) == (1234, 16)


def test_truncated_weights_names_the_layer_and_loads_nothing(tmp_path):
    cfg, weights, net, _ = write_model(tmp_path, ALL_LAYERS_CFG)
    data = weights.read_bytes()
    last = net.conv_layers[-1]
    weights.write_bytes(data[:-100])
    with pytest.raises(DataError) as e:
        darknet.read_weights(weights, net)
    msg = str(e.value)
    assert f"ends inside layer {last.index} [convolutional] (cfg line {last.line})" in msg
    assert "100 bytes short" in msg and "\n" not in msg
    weights.write_bytes(data[:30])
    with pytest.raises(DataError, match=r"ends inside layer 0 \[convolutional\]"):
        darknet.read_weights(weights, net)


def test_weights_too_long_says_bytes_left_over(tmp_path):
    cfg, weights, net, _ = write_model(tmp_path, ALL_LAYERS_CFG)
    weights.write_bytes(weights.read_bytes() + b"\0" * 24)
    with pytest.raises(DataError, match=r"24 bytes \(6 floats\) left over"):
        darknet.read_weights(weights, net)


def test_weights_for_another_cfg(tmp_path):
    _, weights, _, _ = write_model(tmp_path, ODD_POOL_CFG, name="small")
    cfg = tmp_path / "big.cfg"
    cfg.write_text(ALL_LAYERS_CFG)
    with pytest.raises(DataError, match="ends inside layer"):
        darknet.read_weights(weights, darknet.load_network(cfg))
    with pytest.raises(DataError, match="weights file not found"):
        darknet.read_weights(tmp_path / "none.weights", darknet.load_network(cfg))


# --- Keras model vs OpenCV ----------------------------------------------------


@pytest.mark.parametrize("cfg_text, size", [(ALL_LAYERS_CFG, None), (ALL_LAYERS_CFG, (64, 48)),
                                            (ODD_POOL_CFG, None), (yolov3_style_cfg(), None)])
def test_keras_model_matches_opencv_darknet(tmp_path, cfg_text, size):
    cfg, weights, net, w = write_model(tmp_path, cfg_text, seed=3)
    if size:
        net = darknet.load_network(cfg, size)
    model = darknet.build_keras(net, w)
    x = np.random.default_rng(0).uniform(0, 1, (2, net.height, net.width, 3)).astype(np.float32)
    ours = _predict(model, x)
    ref = darknet.opencv_heads(cfg, weights, net, x)
    assert [o.shape for o in ours] == [r.shape for r in ref]
    for o, r in zip(ours, ref):
        assert np.abs(r).max() > 0.1  # the heads carry signal, not zeros
        assert np.abs(o - r).max() <= 1e-5


def test_heads_are_separate_raw_outputs_in_cfg_order(tmp_path):
    _, _, net, w = write_model(tmp_path, ALL_LAYERS_CFG)
    model = darknet.build_keras(net, w)
    assert darknet.head_names(net) == ["head_4", "head_2"]
    assert [tuple(o.shape) for o in model.outputs] == [(1, 8, 12, 14), (1, 16, 24, 21)]


def test_clip_heads_clamps_only_the_outputs(tmp_path):
    _, _, net, w = write_model(tmp_path, ALL_LAYERS_CFG, seed=3)
    x = np.random.default_rng(1).uniform(0, 1, (1, 32, 48, 3)).astype(np.float32)
    raw = _predict(darknet.build_keras(net, w), x)
    clipped = _predict(darknet.build_keras(net, w, clip_heads=0.3), x)
    for r, c in zip(raw, clipped):
        assert np.abs(r).max() > 0.3
        np.testing.assert_allclose(c, np.clip(r, -0.3, 0.3), atol=1e-6)


def test_batchnorm_folding_uses_darknet_epsilon():
    layer = darknet.Layer(0, "convolutional", 1, (1, 1, 1),
                          dict(filters=1, size=1, stride=1, pad=0, groups=1, batch_normalize=True,
                               activation="linear"), [-1])
    w = {"biases": np.array([0.5], np.float32), "scales": np.array([2.0], np.float32),
         "mean": np.array([1.0], np.float32), "variance": np.array([1e-4], np.float32),
         "weights": np.ones((1, 1, 1, 1), np.float32)}
    k, b = darknet.fold_batchnorm(layer, w)
    g = 2.0 / np.sqrt(1e-4 + 1e-6)
    assert k.reshape(()) == pytest.approx(g, rel=1e-6)
    assert b[0] == pytest.approx(0.5 - g, rel=1e-6)
