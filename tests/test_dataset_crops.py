"""dataset crops: VOC/YOLO/dataroots boxes -> label folders cut by the runtime's crop_with_margin."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.data import dataset
from convert.data.images import read_rgb
from edge.cli import main as cli
from edge.errors import DataError, UsageError
from edge.infer.preprocess import crop_with_margin
from edge.types import Box

VOC_XML = """<annotation><filename>{fn}</filename><size><width>{w}</width><height>{h}</height></size>
{objs}</annotation>"""
OBJ = "<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"


def _image(seed: int, w: int = 80, h: int = 60) -> np.ndarray:
    # Smooth content (JPEG keeps it close) that differs per seed.
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (4, 4, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def _voc(tmp_path: Path, boxes: dict[str, list[tuple[str, tuple[int, int, int, int]]]]) -> Path:
    voc = tmp_path / "voc"
    (voc / "images").mkdir(parents=True)
    (voc / "annotations").mkdir()
    for i, (stem, objs) in enumerate(boxes.items()):
        img = _image(i)
        cv2.imwrite(str(voc / "images" / f"{stem}.png"), img[..., ::-1])
        xml = VOC_XML.format(fn=f"{stem}.png", w=80, h=60, objs="".join(OBJ.format(n=n, b=b) for n, b in objs))
        (voc / "annotations" / f"{stem}.xml").write_text(xml)
    return voc


def test_voc_crops_use_the_runtime_crop_and_map_labels(tmp_path, capsys):
    voc = _voc(tmp_path, {
        "a": [("with_mask", (10, 10, 30, 40)), ("without_mask", (50, 5, 70, 25))],
        "b": [("mask_weared_incorrect", (0, 0, 20, 20)), ("hat", (5, 5, 15, 15))],
    })
    out = tmp_path / "crops"
    rc = cli(["dataset", "crops", "--voc", str(voc), "--out", str(out), "--margin", "0.2", "--no-progress"])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["mask", "mask_incorrect", "no_mask"]
    assert "1 boxes of unmapped classes" in capsys.readouterr().out
    crop = read_rgb(out / "mask" / "a_0.jpg")
    want = crop_with_margin(read_rgb(voc / "images" / "a.png"), Box(10, 10, 30, 40), 0.2)
    assert crop.shape == want.shape  # 20x30 box + 20% each side = 28x42
    assert crop.shape[:2] == (42, 28)
    # JPEG q95: pixels close to the runtime crop.
    assert np.abs(crop.astype(int) - want.astype(int)).mean() < 4
    # Clipped at the frame edge, not padded.
    assert read_rgb(out / "mask_incorrect" / "b_0.jpg").shape[:2] == (24, 24)


def test_split_label_map_and_errors(tmp_path):
    voc = _voc(tmp_path, {"a": [("with_mask", (10, 10, 30, 40))], "b": [("with_mask", (1, 1, 9, 9))]})
    split = tmp_path / "split.txt"
    split.write_text("b\n")
    out = tmp_path / "c"
    assert cli(["dataset", "crops", "--voc", str(voc), "--out", str(out), "--split", str(split),
                "--label-map", "with_mask=masked", "--no-progress"]) == 0
    assert [p.name for p in (out / "masked").iterdir()] == ["b_0.jpg"]
    split.write_text("zzz\n")
    assert cli(["dataset", "crops", "--voc", str(voc), "--out", str(out), "--split", str(split)]) == DataError.exit_code
    assert cli(["dataset", "crops", "--voc", str(tmp_path / "nope"), "--out", str(out)]) == DataError.exit_code
    with pytest.raises(UsageError):
        dataset.parse_label_map("with_mask")
    assert dataset.parse_label_map("a=b, c=")["c"] == ""


def test_label_map_is_the_default_map_updated():
    # One parser for `dataset crops` and `eval` (issue 23). `eval`'s rule is kept: entries
    # update the default map (crops used to replace it, so remapping one class silently
    # skipped the others); crops' NAME= drops a class, which eval still refuses.
    assert dataset.parse_label_map(None) == dataset.DEFAULT_LABEL_MAP
    assert dataset.parse_label_map("with_mask=masked") == {**dataset.DEFAULT_LABEL_MAP, "with_mask": "masked"}
    assert dataset.parse_label_map("without_mask=")["without_mask"] == ""
    with pytest.raises(UsageError):
        dataset.parse_label_map("without_mask=", allow_drop=False)


def test_unreadable_image_is_skipped_and_counted(tmp_path):
    voc = _voc(tmp_path, {"a": [("with_mask", (10, 10, 30, 40))], "b": [("with_mask", (10, 10, 30, 40))]})
    (voc / "images" / "b.png").write_bytes(b"not an image")
    stats = dataset.write_crops(dataset.voc_items(voc), tmp_path / "o", 0.1, dataset.DEFAULT_LABEL_MAP,
                                progress=False)
    assert stats.unreadable_images == 1 and stats.crops["mask"] == 1


def test_yolo_boxes_are_scaled_to_pixels(tmp_path):
    d = tmp_path / "y"
    d.mkdir()
    cv2.imwrite(str(d / "p.jpg"), _image(3, 100, 50))
    (d / "p.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n7 0.5 0.5 0.1 0.1\n")
    items = dataset.yolo_items(d, ["no_mask", "mask"])
    stats = dataset.write_crops(items, tmp_path / "o", 0.0, {"mask": "mask", "no_mask": "no_mask"},
                                normalized=True, progress=False)
    assert dict(stats.crops) == {"mask": 1, "no_mask": 1}
    assert read_rgb(tmp_path / "o" / "mask" / "p_0.jpg").shape[:2] == (20, 20)  # 0.2*100 x 0.4*50


def test_dataroots_csv_and_near_duplicates(tmp_path):
    img = _image(5, 120, 90)
    cv2.imwrite(str(tmp_path / "1.jpg"), img)
    cv2.imwrite(str(tmp_path / "copy.jpg"), cv2.resize(img, (60, 45)))
    cv2.imwrite(str(tmp_path / "other.jpg"), _image(6, 120, 90))
    csv = tmp_path / "meta.csv"
    csv.write_text("class,x,y,w,h,image_urls,raw_img_dir,cropped_img_dir\n"
                   "masked,10,20,30,40,u,data/1.jpg,c\nnot_masked,50,5,20,20,u,data/1.jpg,c\n")
    items = dataset.dataroots_items(csv)
    assert len(items) == 1 and items[0][0] == tmp_path / "1.jpg"
    assert [(b.name, b.box.as_list()) for b in items[0][1]] == [
        ("with_mask", [10, 20, 40, 60]), ("without_mask", [50, 5, 70, 25])]
    dups = dataset.near_duplicates([tmp_path / "copy.jpg", tmp_path / "other.jpg"], [tmp_path / "1.jpg"])
    assert dups == {tmp_path / "copy.jpg"}


@pytest.mark.shared
def test_facemask853_val_crops(shared, tmp_path):
    fm = shared / "data" / "facemask853"
    stats = dataset.write_crops(dataset.voc_items(fm, fm / "val.txt"), tmp_path, 0.15,
                                dataset.DEFAULT_LABEL_MAP, progress=False)
    # Box counts of the val split as listed in ../shared/data/README.md.
    assert dict(stats.crops) == {"mask": 459, "no_mask": 94, "mask_incorrect": 15}
