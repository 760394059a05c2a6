"""train detector: weights round trip, targets, augmentation, a few training steps end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main as cli

pytest.importorskip("tensorflow")

from convert.parse import darknet  # noqa: E402
from convert.train import train_detector as td  # noqa: E402
from edge.errors import UsageError  # noqa: E402
from darknet_fixtures import ALL_LAYERS_CFG, TINY_CFG, write_model  # noqa: E402


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


def test_build_targets_assign_iou_adds_every_close_anchor_without_taking_held_cells():
    heads = [td.HeadMeta((6, 8), np.array([[8, 8], [16, 16]], np.float32), [0, 1], 1),
             td.HeadMeta((3, 4), np.array([[24, 24], [40, 40]], np.float32), [2, 3], 1)]
    # A 20x20 box centred at (20, 20): IoU with the anchors 0.16 / 0.64 / 0.69 / 0.25, so the best is
    # 24x24 (stride 16) and 0.213 adds 16x16 (stride 8) and 40x40 (stride 16), not 8x8.
    box = np.array([[10, 10, 30, 30]], np.float32)
    plain, _ = td.build_targets(box, np.array([0]), heads, 64, 48, max_boxes=4)
    assert plain[0][..., 4].sum() == 0 and plain[1][1, 1, 0, 4] == 1 and plain[1][..., 4].sum() == 1
    t, _ = td.build_targets(box, np.array([0]), heads, 64, 48, max_boxes=4, assign_iou=0.213)
    assert t[0][2, 2, 1, 4] == 1 and t[0][..., 4].sum() == 1
    assert t[1][1, 1, 0, 4] == 1 and t[1][1, 1, 1, 4] == 1 and t[1][..., 4].sum() == 2
    np.testing.assert_allclose(t[1][1, 1, 1, 2:4], np.log(20 / 40), rtol=1e-6)
    np.testing.assert_array_equal(t[1][1, 1, 0], plain[1][1, 1, 0])  # the best anchor's target unchanged
    # A second box whose best anchor is the 40x40 one in the same cell holds it, in either order:
    # an extra anchor never overwrites a box's best one.
    two = np.array([[10, 10, 30, 30], [1, 1, 39, 39]], np.float32)
    for order in ([0, 1], [1, 0]):
        t2, _ = td.build_targets(two[order], np.array([0, 0]), heads, 64, 48, max_boxes=4, assign_iou=0.213)
        np.testing.assert_allclose(t2[1][1, 1, 1, 2:4], np.log(38 / 40), rtol=1e-6)


def test_augment_keeps_boxes_on_the_object():
    img = np.zeros((120, 160, 3), np.uint8)
    img[30:70, 90:130] = 255
    ex = td.Example(img, np.array([[90, 30, 130, 70]], np.float32), np.array([0]))
    rng = np.random.default_rng(0)
    seen = 0
    for _ in range(40):
        a = td.augment(ex, rng, (64, 48))
        out, boxes, classes = a.image, a.boxes, a.classes
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


# ---------------------------------------------------------------------------
# Issue 15: teacher ignore regions, unlabelled photos, copy-paste, balance, resume


class FakeTeacherCache:
    """Stands in for convert.train.teacher.TeacherCache: fixed boxes per image name."""

    def __init__(self, boxes: dict[str, list[tuple[float, float, float, float, float]]]):
        self.boxes = boxes
        self.saved = 0

    def get(self, path, rgb):
        from convert.train.teacher import TeacherBoxes

        rows = np.asarray(self.boxes.get(Path(path).name, []), np.float32).reshape(-1, 5)
        return TeacherBoxes(rows[:, :4], rows[:, 4])

    def save(self):
        self.saved += 1


def test_box_kinds_reads_voc_names_and_yolo_classes(tmp_path):
    xml = tmp_path / "a.xml"
    xml.write_text("<annotation>" + "".join(
        f"<object><name>{n}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
        for n in ("with_mask", "without_mask", "mask_weared_incorrect", "hat")) + "</annotation>")
    assert td.box_kinds(xml, 4) == ["mask", "no_mask", "mask_incorrect", "face"]
    (tmp_path / "classes.txt").write_text("no_mask\nmask\n")
    sub = tmp_path / "valid"
    sub.mkdir()
    txt = sub / "b.txt"
    txt.write_text("1 0.5 0.5 0.1 0.1\n0 0.2 0.2 0.1 0.1\n")
    assert td.box_kinds(txt, 2) == ["mask", "no_mask"]
    assert td.box_kinds(txt, 3) == ["face"] * 3  # count mismatch: no guessing


def test_teacher_boxes_that_match_no_label_become_ignore_regions(tmp_path):
    listfile = _make_set(tmp_path / "data", n=1, seed=5)
    ex0, _ = td.load_examples([listfile], ["face"], 200, progress=False)
    labelled = ex0[0].boxes[0]
    teacher = FakeTeacherCache({"img0.jpg": [(*labelled, 0.9), (60, 2, 80, 20, 0.7)]})
    ex, stats = td.load_examples([listfile], ["face"], 200, progress=False, teacher=teacher, ignore_score=0.5)
    np.testing.assert_allclose(ex[0].ignore, [[60, 2, 80, 20]])  # the labelled face is no ignore region
    assert stats["teacher_ignore_regions"] == 1 and teacher.saved == 1


def test_confident_teacher_boxes_become_labels_and_the_unsure_ones_ignore_regions(tmp_path):
    listfile = _make_set(tmp_path / "data", n=1, seed=5)
    ex0, _ = td.load_examples([listfile], ["face"], 200, progress=False)
    labelled = ex0[0].boxes
    teacher = FakeTeacherCache({"img0.jpg": [(*labelled[0], 0.95), (60, 2, 80, 20, 0.9), (2, 40, 14, 52, 0.6)]})
    ex, stats = td.load_examples([listfile], ["face"], 200, progress=False, teacher=teacher, ignore_score=0.5,
                                 add_score=0.8)
    e = ex[0]
    assert len(e.boxes) == len(labelled) + 1 and len(e.classes) == len(e.boxes) == len(e.kinds)
    np.testing.assert_allclose(e.boxes[-1], [60, 2, 80, 20])  # the face the annotator left out
    assert e.kinds[-1] == "face" and e.classes[-1] == 0
    np.testing.assert_allclose(e.ignore, [[2, 40, 14, 52]])  # unsure: no label, no penalty
    assert stats["teacher_added_boxes"] == 1 and stats["teacher_ignore_regions"] == 1


def test_teacher_add_score_needs_the_teacher(tmp_path, capsys):
    lst = _make_set(tmp_path / "d", n=1)
    (tmp_path / "n").write_text("face\n")
    (tmp_path / "c.cfg").write_text(TINY_CFG)
    (tmp_path / "w").write_bytes(b"")
    code = cli(["train", "detector", "--cfg", str(tmp_path / "c.cfg"), "--weights", str(tmp_path / "w"),
                "--names", str(tmp_path / "n"), "--train", str(lst), "--out", str(tmp_path / "o.weights"),
                "--teacher-add-score", "0.8"])
    err = capsys.readouterr().err
    assert code == 2 and "--teacher-add-score needs --teacher-peers" in err


def test_ignore_regions_join_the_ignore_mask_without_targets():
    heads = [td.HeadMeta((6, 8), np.array([[8, 8], [16, 16]], np.float32), [0, 1], 1)]
    from edge.manifest import InputSpec

    spec = InputSpec(width=64, height=48, channels=3, color="RGB", resize="letterbox", pad_value=127.5,
                     scale=1 / 255, dtype="float32")
    ex = td.Example(np.zeros((48, 64, 3), np.uint8), np.array([[4, 4, 20, 20]], np.float32), np.array([0]),
                    kinds=["no_mask"], ignore=np.array([[30, 10, 46, 26]], np.float32))
    x, t, g = td.make_batch([ex], spec, heads, np.random.default_rng(0), max_boxes=4, train=False)
    np.testing.assert_allclose(g[0, :2], [[4, 4, 20, 20], [30, 10, 46, 26]])
    assert t[0][..., 4].sum() == 1  # one positive: the labelled box only


def test_paste_faces_adds_exact_boxes_that_overlap_nothing():
    rng = np.random.default_rng(0)
    face = np.full((40, 40, 3), 220, np.uint8)
    pool = td.PastePool({"no_mask": [face], "mask": [face // 2]})
    img = np.zeros((200, 300, 3), np.uint8)
    boxes = np.array([[10, 10, 60, 60]], np.float32)
    ignore = np.array([[100, 100, 150, 150]], np.float32)
    out, b, c, kinds = td.paste_faces(img, boxes, np.array([0]), ["mask"], pool, rng, scale=1.0,
                                      px=(20, 40), count=4, want_unmasked=True, avoid=ignore)
    assert len(b) > 1 and len(b) == len(c) == len(kinds) and kinds[0] == "mask"
    assert kinds[1] == "no_mask"  # asked for unmasked first
    from convert.verify.metrics import iou_matrix

    new = b[1:]
    assert iou_matrix(new, np.concatenate([boxes, ignore])).max() == 0
    m = iou_matrix(new, new)
    assert (m - np.eye(len(new))).max() == 0  # pasted faces do not overlap each other
    for x1, y1, x2, y2 in new.astype(int):
        assert 20 <= x2 - x1 <= 41 and 0 <= x1 and x2 <= 300 and y2 <= 200
        centre = out[(y1 + y2) // 2, (x1 + x2) // 2]
        assert centre.max() > 100  # the face is there, fully opaque in the middle
    assert img.max() == 0  # the input image is not changed in place


def test_kind_balance_asks_for_unmasked_until_the_share_is_reached():
    bal = td.KindBalance(0.4)
    assert bal.want_unmasked()
    bal.add(["mask"] * 6)
    assert bal.want_unmasked()
    bal.add(["no_mask"] * 4)
    assert not bal.want_unmasked() and bal.share() == pytest.approx(0.4)
    assert not td.KindBalance(0.0).want_unmasked()


def test_augment_with_paste_and_balance_reaches_the_unmasked_share(tmp_path):
    listfile = _make_set(tmp_path / "data", n=4, seed=1)
    ex, _ = td.load_examples([listfile], ["face"], 200, progress=False)
    for e in ex:
        e.kinds = ["mask"] * len(e.boxes)
    pool = td.PastePool({"no_mask": [np.full((32, 32, 3), 200, np.uint8)], "mask": [np.full((32, 32, 3), 90, np.uint8)]})
    paste = td.PasteConfig(pool, prob=1.0, max_count=3, px=(8, 20))
    bal = td.KindBalance(0.4)
    rng = np.random.default_rng(0)
    for _ in range(40):
        a = td.augment(ex[int(rng.integers(len(ex)))], rng, (64, 48), paste, bal)
        assert len(a.boxes) == len(a.kinds) == len(a.classes)
    assert bal.share() >= 0.35


def test_unlabelled_photos_take_confident_teacher_boxes_as_labels(tmp_path):
    listfile = _make_set(tmp_path / "u", n=3, seed=2)
    for f in (tmp_path / "u").glob("*.txt"):
        if f.name != "train.txt":
            f.unlink()  # no labels
    teacher = FakeTeacherCache({"img0.jpg": [(1, 1, 20, 20, 0.95), (30, 30, 50, 50, 0.6)],
                                "img1.jpg": [(5, 5, 25, 25, 0.5)]})  # img1: unsure only; img2: nothing
    ex, stats = td.load_unlabelled([f"no_mask={listfile}"], teacher, 200, label_score=0.8, progress=False)
    assert [Path(e.path).name for e in ex] == ["img0.jpg"]
    np.testing.assert_allclose(ex[0].boxes, [[1, 1, 20, 20]])
    np.testing.assert_allclose(ex[0].ignore, [[30, 30, 50, 50]])
    assert ex[0].kinds == ["no_mask"]
    assert stats[str(listfile)]["skipped_no_confident_face"] == 2
    with pytest.raises(td.DataError):
        td.load_unlabelled([str(listfile)], None, 200, 0.8, progress=False)


def test_training_resumes_from_its_checkpoint(tmp_path):
    cfg, weights, net, _ = write_model(tmp_path, TINY_CFG)
    names = tmp_path / "face.names"
    names.write_text("face\n")
    listfile = _make_set(tmp_path / "data")
    out = tmp_path / "out" / "ft.weights"
    full = td.train(cfg, weights, names, [listfile], tmp_path / "full" / "ft.weights", epochs=3, batch=2, lr=3e-3,
                    seed=0, progress=False)
    # Stopped after one epoch (--max-minutes 0), then resumed: the same three epochs.
    td.train(cfg, weights, names, [listfile], out, epochs=3, batch=2, lr=3e-3, seed=0, progress=False,
             max_minutes=0.0)
    assert Path(str(out) + ".ckpt.npz").is_file()
    res = td.train(cfg, weights, names, [listfile], out, epochs=3, batch=2, lr=3e-3, seed=0, progress=False,
                   resume=True)
    log = json.loads(res.log_path.read_text())
    assert log["resumed_after_epoch"] == 1 and [h["epoch"] for h in log["history"]] == [1, 2, 3]
    np.testing.assert_allclose(res.losses, full.losses, rtol=0.05)


def test_teacher_cache_gives_the_same_boxes_when_it_computes_them_as_when_it_reads_them(tmp_path):
    """A run that fills the cache used the unrounded boxes and trained otherwise than every run after it."""
    from convert.train.teacher import TeacherBoxes, TeacherCache

    photo = tmp_path / "p.jpg"
    photo.write_bytes(b"x")
    cold = TeacherCache(tmp_path / "t.json", tmp_path)
    cold._teacher = lambda rgb: TeacherBoxes(np.array([[10.04, 20.06, 30.123, 40.987]], np.float32),
                                             np.array([0.876543], np.float32))
    a = cold.get(photo, np.zeros((4, 4, 3), np.uint8))
    cold.save()
    warm = TeacherCache(tmp_path / "t.json", tmp_path)
    b = warm.get(photo, np.zeros((4, 4, 3), np.uint8))
    assert not warm.dirty and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    np.testing.assert_allclose(a.boxes, [[10.0, 20.1, 30.1, 41.0]], atol=1e-5)


def test_teacher_finds_the_face_in_a_real_photo():
    shared = Path(__file__).resolve().parents[1].parent / "shared"
    photo = shared / "data" / "dataroots" / "raw_images" / "0.jpg"
    if not photo.is_file():
        pytest.skip("../shared (dataroots photo, peer models) not present")
    from convert.data.images import read_rgb
    from convert.train.teacher import Teacher

    rgb = read_rgb(photo)
    tb = Teacher(shared / "models" / "peers")(rgb)
    # validation_metadata.csv: a masked face at x 549, y 319, 253 x 301
    from convert.verify.metrics import iou_matrix

    assert len(tb.boxes) >= 1
    assert iou_matrix(np.array([[549, 319, 802, 620]], np.float32), tb.boxes).max() > 0.5


def test_night_augmentation_greys_darkens_or_blurs_and_never_moves_boxes():
    rng = np.random.default_rng(0)
    img = np.random.default_rng(1).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert td.night(img, rng, 0.0) is img
    kinds = set()
    for _ in range(60):
        out = td.night(img, rng, 1.0)
        assert out.shape == img.shape and out.dtype == np.uint8
        if (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all():
            kinds.add("grey")
        elif out.mean() < 0.8 * img.mean():
            kinds.add("dark")
        else:
            kinds.add("blur")
    assert kinds == {"grey", "dark", "blur"}


def test_unsure_teacher_boxes_are_no_ignore_regions(tmp_path):
    listfile = _make_set(tmp_path / "data", n=1, seed=5)
    teacher = FakeTeacherCache({"img0.jpg": [(60, 2, 80, 20, 0.7)]})
    ex, stats = td.load_examples([listfile], ["face"], 200, progress=False, teacher=teacher, ignore_score=0.8)
    assert len(ex[0].ignore) == 0 and stats["teacher_ignore_regions"] == 0


def _kind_examples(kinds_per_photo: list[list[str]]) -> list:
    return [td.Example(np.zeros((8, 8, 3), np.uint8), np.zeros((len(k), 4), np.float32),
                       np.zeros(len(k), np.int64), f"p{i}", list(k)) for i, k in enumerate(kinds_per_photo)]


def test_oversampling_draws_photos_with_unmasked_faces_until_their_share_is_reached():
    # 2 photos with one unmasked + one masked face, 8 photos with 2 masked faces: 2 of 20 boxes unmasked.
    exs = _kind_examples([["no_mask", "mask"]] * 2 + [["mask", "mask"]] * 8)
    w = td.unmasked_weight(exs, 0.3)
    # a*2 / (a*4 + 16) = 0.3  ->  a = 4.8 / 0.8 = 6
    assert w == pytest.approx(6.0)
    rng = np.random.default_rng(0)
    seen = {"no_mask": 0, "all": 0}
    for _ in range(400):
        order = td.epoch_order(exs, rng, w)
        assert len(order) == len(exs)
        for i in order:
            seen["no_mask"] += exs[i].kinds.count("no_mask")
            seen["all"] += len(exs[i].kinds)
    assert seen["no_mask"] / seen["all"] == pytest.approx(0.3, abs=0.02)


def test_oversampling_is_capped_and_a_no_op_when_not_needed():
    exs = _kind_examples([["no_mask", "mask", "mask", "mask"]] + [["mask"]] * 3)
    assert td.unmasked_weight(exs, 0.4) == td.MAX_OVERSAMPLE  # the photo itself is below 40% unmasked
    assert td.unmasked_weight(exs, 0.0) == 1.0
    assert td.unmasked_weight(_kind_examples([["no_mask"], ["mask"]]), 0.4) == 1.0  # 50% already
    assert td.unmasked_weight(_kind_examples([["mask"]] * 3), 0.4) == 1.0  # nothing to draw more often
    rng = np.random.default_rng(1)
    assert sorted(td.epoch_order(exs, rng, 1.0)) == [0, 1, 2, 3]  # a plain permutation


def test_smaller_crop_min_zooms_in_on_larger_faces():
    img = np.zeros((320, 416, 3), np.uint8)
    img[120:200, 170:250] = 255
    ex = td.Example(img, np.array([[170, 120, 250, 200]], np.float32), np.array([0]))

    def largest_side(crop_min: float) -> float:
        rng = np.random.default_rng(0)
        sides = []
        for _ in range(200):
            a = td.augment(ex, rng, (416, 320), crop_min=crop_min)
            if len(a.boxes):
                # face side at the network input (the crop is letterboxed to 416x320)
                s = min(416 / a.image.shape[1], 320 / a.image.shape[0])
                sides.append((a.boxes[0, 2] - a.boxes[0, 0]) * s)
        return float(np.max(sides))

    # an 80 px face in a 416x320 photo: at most ~80/0.55 = 145 px at the input, ~80/0.35 = 229 px with 0.35
    assert largest_side(0.55) < 150 < 190 < largest_side(0.35)


def test_cli_rejects_absurd_oversampling_and_crop(tmp_path, capsys):
    lst = _make_set(tmp_path / "d", n=1)
    (tmp_path / "n").write_text("face\n")
    (tmp_path / "c.cfg").write_text(TINY_CFG)
    (tmp_path / "w").write_bytes(b"")
    for flag, value, msg in (("--oversample-unmasked", "1.5", "--oversample-unmasked must be"),
                             ("--crop-min", "0", "--crop-min must be")):
        code = cli(["train", "detector", "--cfg", str(tmp_path / "c.cfg"), "--weights", str(tmp_path / "w"),
                    "--names", str(tmp_path / "n"), "--train", str(lst), "--out", str(tmp_path / "o.weights"),
                    flag, value])
        err = capsys.readouterr().err
        assert code == 2 and msg in err and "Traceback" not in err


# Mosaic (issue 15: crowded scenes of real photos with exact boxes)


def _square_photo(value: int, kind: str, side: int = 40) -> td.Example:
    img = np.zeros((120, 160, 3), np.uint8)
    img[40:40 + side, 60:60 + side] = value
    return td.Example(img, np.array([[60, 40, 60 + side, 40 + side]], np.float32), np.array([0]), kinds=[kind])


def test_mosaic_puts_four_photos_in_one_input_with_boxes_on_their_faces():
    """Every box of a mosaic lies on its own photo's bright square; faces come out smaller
    than they would alone; the canvas is the network input's size; balance counts kept boxes."""
    photos = [_square_photo(v, k) for v, k in ((250, "no_mask"), (200, "mask"), (150, "mask"), (100, "no_mask"))]
    rng = np.random.default_rng(0)
    bal = td.KindBalance()
    sizes, kept = [], 0
    for i in range(30):
        a = td.mosaic(photos[i % 4], [photos[(i + j) % 4] for j in (1, 2, 3)], rng, (96, 72), balance=bal)
        assert a.image.shape == (72, 96, 3)
        assert len(a.boxes) == len(a.classes) == len(a.kinds)
        kept += len(a.boxes)
        for (x1, y1, x2, y2), kind in zip(np.round(a.boxes).astype(int), a.kinds):
            assert x2 - x1 >= td.MOSAIC_MIN_BOX_PX and y2 - y1 >= td.MOSAIC_MIN_BOX_PX
            patch = a.image[y1 + 1:y2 - 1, x1 + 1:x2 - 1].max(axis=2)
            assert patch.mean() > 60  # the square (HSV jitter moves its value), not the black ground
            sizes.append(max(x2 - x1, y2 - y1))
    assert kept > 60 and sum(bal.seen.values()) == kept
    # alone, the 40 px square of a 160 px photo is 24 px of a 96 px input: the mosaic halves it
    assert np.median(sizes) < 20


def test_mosaic_turns_cut_and_tiny_faces_into_ignore_regions():
    """A face cut by the quarter's edge or shrunk under MOSAIC_MIN_BOX_PX is not taught as
    background: it becomes an ignore region."""
    tiny = _square_photo(250, "no_mask", side=2)  # a tile is never larger than its photo: under 2 px
    # a wide strip of faces: zoomed out (a quarter of the draws) it is wider than any quarter
    strip = np.zeros((60, 480, 3), np.uint8)
    faces = np.array([[20 + 76 * i, 10, 60 + 76 * i, 50] for i in range(6)], np.float32)
    for x1, y1, x2, y2 in faces.astype(int):
        strip[y1:y2, x1:x2] = 250
    big = td.Example(strip, faces, np.zeros(6, int), kinds=["no_mask"] * 6)
    rng = np.random.default_rng(1)
    ignored = cut = 0
    for _ in range(20):
        a = td.mosaic(tiny, [tiny, tiny, tiny], rng, (96, 72))
        assert len(a.boxes) == 0
        ignored += len(a.ignore)
        b = td.mosaic(big, [big, big, big], rng, (96, 72))
        cut += len(b.ignore)
        for x1, y1, x2, y2 in np.round(b.ignore).astype(int):  # the visible part of a face
            assert b.image[y1:y2, x1:x2].max(axis=2).mean() > 60
    assert ignored >= 20 and cut >= 5


def test_make_batch_mosaic_share_and_no_change_without_it():
    """--mosaic 0 leaves the random stream (hence the batches) as before; --mosaic 1 makes
    every image a mosaic (photos drawn from the pool)."""
    from edge.manifest import InputSpec

    spec = InputSpec(width=64, height=48, channels=3, color="RGB", resize="letterbox", pad_value=127.5,
                     scale=1.0 / 255.0, dtype="float32")
    heads = [td.HeadMeta((6, 8), np.array([[8, 8], [16, 16]], np.float32), [0, 1], 1)]
    photos = [_square_photo(250, "no_mask"), _square_photo(120, "mask")]
    a = td.make_batch(photos, spec, heads, np.random.default_rng(3), 8)
    b = td.make_batch(photos, spec, heads, np.random.default_rng(3), 8, mosaic_p=0.0, pool=photos)
    assert all(np.array_equal(u, v) for u, v in zip([a[0], *a[1], a[2]], [b[0], *b[1], b[2]]))
    bal = td.KindBalance()
    x, _, g = td.make_batch(photos, spec, heads, np.random.default_rng(3), 8, balance=bal, mosaic_p=1.0, pool=photos)
    assert x.shape == (2, 48, 64, 3)
    assert sum(bal.seen.values()) >= 4  # four squares per mosaic, some cut to ignore regions


def test_mosaic_flag_is_checked(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    td.add_arguments(p)
    args = p.parse_args(["--cfg", "c", "--weights", "w", "--names", "n", "--train", "t", "--out", "o",
                         "--mosaic", "1.5"])
    with pytest.raises(UsageError, match="--mosaic"):
        td.main(args)


def _weights_distance(net, a: Path, b: Path) -> float:
    _, wa = darknet.read_weights(a, net)
    _, wb = darknet.read_weights(b, net)
    return float(np.sqrt(sum(np.sum((np.asarray(wa[i][k], np.float64) - np.asarray(wb[i][k], np.float64)) ** 2)
                             for i in wa for k in wa[i])))


def test_ema_writes_the_moving_average_and_resumes_with_it(tmp_path):
    cfg, weights, net, _ = write_model(tmp_path, TINY_CFG)
    names = tmp_path / "face.names"
    names.write_text("face\n")
    listfile = _make_set(tmp_path / "data")
    kw = dict(epochs=3, batch=2, lr=3e-3, seed=0, progress=False)
    plain = td.train(cfg, weights, names, [listfile], tmp_path / "plain" / "ft.weights", **kw)
    # The starting weights as the trainer writes them (BatchNorm folded): a run that does not move.
    start = td.train(cfg, weights, names, [listfile], tmp_path / "start" / "ft.weights", **{**kw, "lr": 1e-12})
    # A momentum this close to 1 keeps the average at the first step's weights: far nearer the
    # starting weights than the last batch's, which is what a plain run writes.
    slow = td.train(cfg, weights, names, [listfile], tmp_path / "slow" / "ft.weights", ema=0.999999, **kw)
    assert _weights_distance(net, slow.weights_path, start.weights_path) < 0.3 * _weights_distance(
        net, plain.weights_path, start.weights_path)
    # The average is in the checkpoint: stopped after one epoch and resumed, the same weights.
    full = td.train(cfg, weights, names, [listfile], tmp_path / "full" / "ft.weights", ema=0.9, **kw)
    out = tmp_path / "resumed" / "ft.weights"
    td.train(cfg, weights, names, [listfile], out, ema=0.9, max_minutes=0.0, **kw)
    res = td.train(cfg, weights, names, [listfile], out, ema=0.9, resume=True, **kw)
    assert json.loads(res.log_path.read_text())["ema"] == 0.9
    assert _weights_distance(net, out, full.weights_path) < 0.05 * _weights_distance(net, out, plain.weights_path)


def test_ema_flag_is_checked(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    td.add_arguments(p)
    base = ["--cfg", "c", "--weights", "w", "--names", "n", "--train", "t", "--out", "o"]
    assert p.parse_args(base + ["--ema"]).ema == td.DEFAULT_EMA and p.parse_args(base).ema == 0.0
    with pytest.raises(UsageError, match="--ema"):
        td.main(p.parse_args(base + ["--ema", "1"]))
    assert p.parse_args(base + ["--assign-iou"]).assign_iou == td.DEFAULT_ASSIGN_IOU
    assert p.parse_args(base).assign_iou is None
    with pytest.raises(UsageError, match="--assign-iou"):
        td.main(p.parse_args(base + ["--assign-iou", "1"]))
