"""``doorguard dataset voc``: dataroots CSV -> VOC folder that ``eval`` reads back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from convert.verify.evaluate import load_voc
from edge import cli
from edge.errors import DataError

HEADER = "class,x,y,w,h,image_urls,raw_img_dir,cropped_img_dir\n"


def _setup(tmp_path):
    raw = tmp_path / "dr" / "raw_images"
    raw.mkdir(parents=True)
    cv2.imwrite(str(raw / "7.jpg"), np.zeros((50, 80, 3), np.uint8))
    csv = tmp_path / "dr" / "meta.csv"
    csv.write_text(HEADER
                   + "masked,10,5,20,30,http://x,data/raw_images/7.jpg,data/validation/real/masked/7.jpg\n"
                   + "not_masked,70,40,20,20,http://x,data/raw_images/7.jpg,data/validation/real/not_masked/7.jpg\n"
                   + "masked,1,1,5,5,http://x,data/raw_images/9.jpg,data/validation/real/masked/9.jpg\n")
    return csv


def test_csv_to_voc_round_trip(tmp_path, capsys):
    csv = _setup(tmp_path)
    out = tmp_path / "voc"
    rc = cli.main(["dataset", "voc", "--dataroots-csv", str(csv), "--images", str(tmp_path / "dr"),
                   "--out", str(out)])
    assert rc == 0
    assert "1 images with 2 faces" in capsys.readouterr().out  # 9.jpg is missing: skipped
    samples = load_voc(out)
    assert len(samples) == 1 and samples[0].path.name == "7.jpg"
    got = sorted((t.label, t.box.as_list()) for t in samples[0].truths)
    # x,y,w,h -> x1,y1,x1+w,y1+h; the second box is clipped to the 80x50 image.
    assert got == [("mask", [10.0, 5.0, 30.0, 35.0]), ("no_mask", [70.0, 40.0, 80.0, 50.0])]


def test_unknown_class_is_a_data_error(tmp_path):
    csv = tmp_path / "m.csv"
    csv.write_text(HEADER + "hat,1,1,5,5,u,data/raw_images/1.jpg,c\n")
    (tmp_path / "imgs").mkdir()
    from convert.data.dataset_voc import convert

    with pytest.raises(DataError, match="class 'hat'"):
        convert(csv, tmp_path / "imgs", tmp_path / "out")


@pytest.mark.shared
def test_dataroots_validation_converts(shared, tmp_path):
    from convert.data.dataset_voc import convert

    counts = convert(shared / "data/dataroots/validation_metadata.csv", shared / "data/dataroots", tmp_path)
    assert counts["images"] == 83 and counts["faces"] == 83
    assert counts["with_mask"] == 73 and counts["without_mask"] == 10
