"""train detector: weights round trip, targets, augmentation, a few training steps end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main as cli

pytest.importorskip("tensorflow")

from convert import darknet, train_detector as td  # noqa: E402
from darknet_fixtures import ALL_LAYERS_CFG, write_model  # noqa: E402

# One class, two heads (stride 8 and 16), BN convs: a tiny yoloface-like net.
TINY_CFG = """\
[net]
width=64
height=48
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
groups=8
stride=2
pad=1
activation=relu

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=12
activation=linear

[yolo]
mask = 0,1
anchors = 8,8,  16,16,  24,24,  40,40
classes=1
num=4

[route]
layers = -3

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
size=1
stride=1
pad=1
filters=12
activation=linear

[yolo]
mask = 2,3
anchors = 8,8,  16,16,  24,24,  40,40
classes=1
num=4
"""


def _heads(model, x):
    out = model(x)
    return [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]


def test_extract_weights_inverts_build_keras(tmp_path):
    # Every conv kind: BN/no BN, depthwise, grouped (split into convs), heads.
    _, _, net, w = write_model(tmp_path, ALL_LAYERS_CFG)
    model = darknet.build_keras(net, w)
    out = tmp_path / "back.weights"
    darknet.write_weights(out, net, td.extract_weights(model, net))
    _, back = darknet.read_weights(out, net)
    for layer in net.conv_layers:
        if layer.params["batch_normalize"]:
            assert np.all(back[layer.index]["scales"] == 1) and np.all(back[layer.index]["mean"] == 0)
    x = np.random.default_rng(1).uniform(0, 1, (1, net.height, net.width, 3)).astype(np.float32)
    for a, b in zip(_heads(model, x), _heads(darknet.build_keras(net, back), x)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_build_targets_assigns_best_anchor_cell_and_offsets():
    heads = [td.HeadMeta((6, 8), np.array([[8, 8], [16, 16]], np.float32), [0, 1], 1),
             td.HeadMeta((3, 4), np.array([[24, 24], [40, 40]], np.float32), [2, 3], 1)]
    # a 14x18 box centred at (21, 13): best anchor 16x16 (index 1, stride-8 head, cell col 2 row 1)
    boxes = np.array([[14, 4, 28, 22], [0, 0, 39, 41]], np.float32)
    t, padded = td.build_targets(boxes, np.array([0, 0]), heads, 64, 48, max_boxes=4)
    assert padded.shape == (4, 4) and np.array_equal(padded[:2], boxes) and not padded[2:].any()
    cell = t[0][1, 2, 1]
    np.testing.assert_allclose(cell[:2], [21 / 8 - 2, 13 / 8 - 1], rtol=1e-6)
    np.testing.assert_allclose(cell[2:4], [np.log(14 / 16), np.log(18 / 16)], rtol=1e-6)
    assert cell[4] == 1 and cell[6] == 1 and cell[5] == pytest.approx(2 - 14 * 18 / (64 * 48))
    # the 39x41 box goes to the 40x40 anchor of the stride-16 head, centre (19.5, 20.5) -> cell (1, 1)
    big = t[1][1, 1, 1]
    assert big[4] == 1 and big[2] == pytest.approx(np.log(39 / 40), rel=1e-5)
    assert t[0][..., 4].sum() == 1 and t[1][..., 4].sum() == 1


def test_augment_keeps_boxes_on_the_object():
    img = np.zeros((120, 160, 3), np.uint8)
    img[30:70, 90:130] = 255
    ex = td.Example(img, np.array([[90, 30, 130, 70]], np.float32), np.array([0]))
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        out, boxes, classes = td.augment(ex, rng, (64, 48))
        assert len(boxes) == len(classes) <= 1
        if len(boxes):
            seen += 1
            x1, y1, x2, y2 = np.round(boxes[0]).astype(int)
            inside = out[y1:y2, x1:x2].max(axis=2)
            assert inside.mean() > 100  # the bright square, not the black background
    assert seen > 20


def _make_set(root: Path, n: int = 4, size=(96, 72), seed: int = 0) -> Path:
    """n noisy images each with two bright 'faces', YOLO txt labels, and a list file."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        w, h = size
        img = rng.integers(0, 50, (h, w, 3), dtype=np.uint8)
        rows = []
        for _ in range(2):
            bw, bh = int(rng.integers(12, 28)), int(rng.integers(12, 28))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cv2.rectangle(img, (x, y), (x + bw - 1, y + bh - 1), (230, 200, 180), -1)
            rows.append(f"0 {(x + bw / 2) / w} {(y + bh / 2) / h} {bw / w} {bh / h}")
        cv2.imwrite(str(root / f"img{i}.jpg"), img)
        (root / f"img{i}.txt").write_text("\n".join(rows) + "\n")
        lines.append(f"img{i}.jpg")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root / "train.txt"


def test_train_few_steps_loss_decreases_and_writes_darknet_weights(tmp_path):
    cfg, weights, net, _ = write_model(tmp_path, TINY_CFG)
    names = tmp_path / "face.names"
    names.write_text("face\n")
    listfile = _make_set(tmp_path / "data")
    out = tmp_path / "out" / "ft.weights"
    res = td.train(cfg, weights, names, [listfile], out, epochs=12, batch=2, lr=3e-3, seed=0, progress=False)
    assert res.losses[-1] < 0.7 * res.losses[0]
    header, w = darknet.read_weights(out, net)  # the cfg's layout, all or nothing
    assert header.seen == 12 * 2 * 2
    log = json.loads(res.log_path.read_text())
    assert log["data"]["images"] == 4 and log["data"]["boxes"] == 8 and log["epochs_run"] == 12
    # an independent reader (OpenCV's darknet importer) computes what our Keras builder does
    model = darknet.build_keras(net, w)
    x = np.random.default_rng(2).uniform(0, 1, (1, net.height, net.width, 3)).astype(np.float32)
    ref = darknet.opencv_heads(cfg, out, net, x)
    for a, b in zip(_heads(model, x), ref):
        np.testing.assert_allclose(a, b, atol=1e-3)


def test_cli_reports_missing_files_in_one_line(tmp_path, capsys):
    code = cli(["train", "detector", "--cfg", str(tmp_path / "no.cfg"), "--weights", str(tmp_path / "w"),
                "--names", str(tmp_path / "n"), "--train", str(tmp_path), "--out", str(tmp_path / "o.weights")])
    err = capsys.readouterr().err
    assert code != 0 and "cfg file not found" in err and "Traceback" not in err


def test_load_examples_leaves_out_near_duplicates_of_excluded_images(tmp_path):
    listfile = _make_set(tmp_path / "data", n=4, seed=3)
    held = tmp_path / "held"
    held.mkdir()
    # a re-encoded, slightly brightened copy of one training photo stands for an eval photo
    img = cv2.imread(str(tmp_path / "data" / "img2.jpg"))
    cv2.imwrite(str(held / "copy.jpg"), cv2.add(img, 3), [cv2.IMWRITE_JPEG_QUALITY, 80])
    examples, stats = td.load_examples([listfile], ["face"], 200, progress=False, exclude=[held])
    assert sorted(Path(e.path).name for e in examples) == ["img0.jpg", "img1.jpg", "img3.jpg"]
    assert stats["skipped_near_duplicates"] == 1
    assert all(e.boxes.shape == (2, 4) for e in examples)
