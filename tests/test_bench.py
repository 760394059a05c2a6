"""``doorguard bench``: runs on a tiny input and writes a well-formed report (never timed).

The speed figures themselves are not asserted: the machine is shared and the
numbers belong in benchmarks/results, not in a pass/fail test.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from benchmarks.bench import end_to_end, macs, report, stats
from edge import cli, config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_spread_and_fmt():
    s = stats.spread([3.0, 1.0, 2.0, None, float("nan")])
    assert s == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert stats.fmt(s, 1, "ms") == "2.0 ms (1.0-3.0)"
    assert stats.fmt(stats.spread([4.0]), 2) == "4.00"
    assert stats.fmt(None) == "not measured"
    assert stats.spread([]) is None


def test_markdown_table_lines():
    from benchmarks.markdown import table

    assert table(("a", "b"), [(1, "x y"), ("-", "")]) == ["| a | b |", "|---|---|", "| 1 | x y |", "| - | |"]


def test_ultraface_priors_match_the_model_outputs():
    from benchmarks.ultraface_tflite import priors

    p = priors()
    assert p.shape == (4420, 4)  # the RFB-320 model's output rows
    assert np.all((p >= 0) & (p <= 1))
    # First prior: stride 8, cell (0, 0), min box 10 px.
    assert np.allclose(p[0], [0.5 / 40, 0.5 / 30, 10 / 320, 10 / 240])


def test_stage_timer_per_frame_records():
    t = end_to_end.StageTimer()

    class R:
        detections = [1, 2]
        timings = {"track": 0.5, "pipeline": 3.0}

    def process(frame):
        t.add("crop", 0.2)
        t.add("classify", 1.0)
        return R()

    proc = t.wrap_process(process)
    proc(None)
    t.add("rules", 0.1)
    proc(None)
    t.finish()
    assert len(t.frames) == 2 and t.frames[0]["faces"] == 2
    assert t.frames[0]["tracking"] == pytest.approx(0.3)  # the pipeline's track stage minus the crops
    assert t.frames[0]["rules"] == pytest.approx(0.1) and "rules" not in t.frames[1]
    assert "loop" in t.frames[0] and t.fps() is not None


def test_face_buckets():
    frames = [{"faces": k, "busy": 2.0 + k, "preprocess": 1.0, "infer": 1.0, "decode+nms": 0.1}
              for k in (0, 0, 1, 2, 4, 5, 12)]
    b = end_to_end.face_buckets(frames)
    assert [x["faces"] for x in b] == ["0", "1", "2", "4-5", "10+"]
    assert b[0]["frames"] == 2 and b[0]["fps"] == pytest.approx(500.0)


def test_render_without_measurements_says_why():
    r = {"machine": {"cpu": "x", "cores": 2, "load_start": (1.0, 1.0, 1.0), "date_utc": "d", "commit": "c",
                     "python": "3", "numpy": "2", "opencv": "4", "ai_edge_litert": "2"},
         "repeats": 1, "quick": True, "skipped": {"doorguard": "ModelError: no model", "seed": "needs ../shared"}}
    md = report.render(r)
    assert "not measured: ModelError: no model" in md and "Not measured: needs ../shared" in md
    assert md.count("\n## ") >= 7


def _png_size(p: Path) -> tuple[int, int]:
    data = p.read_bytes()
    assert data[:8] == PNG_MAGIC, p
    return struct.unpack(">II", data[16:24])


@pytest.mark.slow
def test_bench_quick_on_demo(tmp_path, capsys):
    """The real command on a few demo frames with the default models: report, JSON and plots."""
    cfg = config.load()
    for m in (cfg.models.detector, cfg.models.classifier):
        if not cfg.resolve(m).is_file():
            pytest.skip(f"default model {m} not in models/ yet")
    out = tmp_path / "b"
    code = cli.main(["bench", "--quick", "--source", "demo", "--frames", "6", "--out", str(out)])
    assert code == 0
    md = (out / "bench.md").read_text()
    for heading in ("## Summary", "## 1. End to end", "## 2. Seed-style loop", "## 3. Peers",
                    "## 4. Float vs int8", "## 5. `doorguard run`", "## 6. Pi projection", "## Reproduce"):
        assert heading in md, heading
    assert "--quick run: a smoke test" in md and "projection" in md
    data = json.loads((out / "bench.json").read_text())
    d = data["doorguard"]
    assert d["frames"] == 6 and d["fps"]["median"] > 0 and d["invoke_ms"]["median"] > 0
    stages = {s["key"]: s for s in d["stages"]}
    for key in ("preprocess", "detector", "decode+nms", "rules", "capture"):
        assert stages[key]["calls"] >= 6, key
    assert data["subprocess"]["max_rss_mib"]["median"] > 10
    assert data["subprocess"]["first_frame_s"]["median"] > 0
    macs = {r["name"]: r["macs"] for r in data["projection"]["rows"]}
    assert all(v > 0 for v in macs.values())
    for png in ("stage_latency.png", "fps_vs_faces.png"):
        w, h = _png_size(out / png)
        assert w > 100 and h > 100


@pytest.mark.shared
def test_macs_of_known_graphs(shared):
    """MAC counts agree with the published size of yolov3-tiny (5.56 BFLOPs = 2.78 GMACs at 416)."""
    import cv2

    d = shared / "models" / "yolov3-tiny"
    net = cv2.dnn.readNetFromDarknet(str(d / "yolov3-tiny.cfg"), str(d / "yolov3-tiny.weights"))
    assert macs.cv2_macs(net, (1, 3, 416, 416)) == pytest.approx(2.78e9, rel=0.01)
    aizoo = macs.tflite_macs(shared / "models" / "peers" / "face_mask_detection.tflite")
    assert 1e8 < aizoo < 2e9


def test_flip_fusion_pairs_boxes_and_discounts_single_pass_ones():
    from benchmarks.flip_tta import fuse

    a = np.array([[0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    b = np.array([[1, 0, 11, 10], [100, 100, 110, 110]], np.float32)
    boxes, scores = fuse(a, [0.8, 0.6], b, [0.4, 0.9], "mean")
    # the overlapping pair is one box weighted by score, scored by the mean; the others keep half
    assert scores.tolist() == pytest.approx([0.6, 0.3, 0.45])
    assert boxes[0].tolist() == pytest.approx([1 / 3, 0, 10 + 1 / 3, 10])
    boxes, scores = fuse(a, [0.8, 0.6], b, [0.4, 0.9], "max")
    assert scores.tolist() == pytest.approx([0.8, 0.6, 0.9]) and len(boxes) == 3
    assert fuse(np.zeros((0, 4)), [], np.zeros((0, 4)), [], "mean")[0].shape == (0, 4)
    with pytest.raises(ValueError, match="one of mean, max"):
        fuse(a, [0.8, 0.6], b, [0.4, 0.9], "median")


def test_flip_detector_maps_the_mirror_pass_back(monkeypatch):
    from benchmarks import flip_tta
    from edge.types import Box, Detection

    class Inner:
        nms_iou = 0.45

        def detect(self, image):  # a face at the left of whatever it is shown
            left = image[:, :20].mean() > 100
            box = Box(2, 2, 12, 12) if left else Box(28, 2, 38, 12)
            return [Detection(box, 0.8 if left else 0.6, 0, "face")]

    det = flip_tta.FlipDetector.__new__(flip_tta.FlipDetector)
    det.inner, det.mode, det.score_threshold = Inner(), "mean", 0.5
    det.manifest = type("M", (), {"labels": ["face"]})()
    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :20] = 200
    (d,) = det.detect(img)  # the mirror pass's box at x 28-38 is x 2-12 in the frame: one face
    assert d.score == pytest.approx(0.7) and (d.box.x1, d.box.x2) == pytest.approx((2, 12))


def test_weight_soup_averages_the_networks_with_batchnorm_folded(tmp_path):
    # Two builds whose BatchNorm differs: the soup is the mean of what each computes (folded kernel
    # and bias), written BatchNorm-free as `train detector` writes, and reads back as a darknet file.
    from benchmarks.weight_soup import average_weights
    from convert.parse import darknet
    from darknet_fixtures import TINY_CFG, write_model

    cfg, wa, net, a = write_model(tmp_path, TINY_CFG, seed=0, name="a")
    _, wb, _, b = write_model(tmp_path, TINY_CFG, seed=1, name="b")
    out = tmp_path / "soup.weights"
    average_weights([wa, wb], cfg, out)
    _, soup = darknet.read_weights(out, net)
    assert any(layer.params["batch_normalize"] for layer in net.conv_layers)
    for layer in net.conv_layers:
        (ka, ba), (kb, bb) = (darknet.fold_batchnorm(layer, w[layer.index]) for w in (a, b))
        ks, bs = darknet.fold_batchnorm(layer, soup[layer.index])
        np.testing.assert_allclose(ks, (ka + kb) / 2, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bs, (ba + bb) / 2, rtol=1e-5, atol=1e-6)
        if layer.params["batch_normalize"]:
            assert np.all(soup[layer.index]["scales"] == 1) and np.all(soup[layer.index]["mean"] == 0)


def test_weight_soup_refuses_a_file_of_another_cfg(tmp_path):
    from benchmarks.weight_soup import average_weights
    from darknet_fixtures import ALL_LAYERS_CFG, TINY_CFG, write_model
    from edge.errors import DataError

    cfg, wa, _, _ = write_model(tmp_path, TINY_CFG, name="a")
    _, other, _, _ = write_model(tmp_path, ALL_LAYERS_CFG, name="b")
    with pytest.raises(DataError):
        average_weights([wa, other], cfg, tmp_path / "soup.weights")
