"""Detection report metrics: agreement P/R/F1, VOC mAP, label reading, image lists."""

from __future__ import annotations

import numpy as np
import pytest

from convert.verify import detect_report as dr
from convert.verify.detect_report import Boxes
from edge.errors import DataError


def boxes(rows, scores=None, classes=None, difficult=None) -> Boxes:
    b = np.asarray(rows, np.float32).reshape(-1, 4)
    n = len(b)
    return Boxes(b, np.asarray(scores if scores is not None else [1.0] * n, np.float32),
                 np.asarray(classes if classes is not None else [0] * n, np.int64),
                 None if difficult is None else np.asarray(difficult, bool))


def test_agreement_counts_iou_and_class():
    ref = [boxes([[0, 0, 10, 10], [20, 20, 30, 30]], classes=[0, 1])]
    pred = [boxes([[1, 0, 11, 10],      # IoU 0.82 same class: TP
                   [20, 20, 30, 30],    # right box, wrong class: FP
                   [50, 50, 60, 60]],   # nothing there: FP
                  classes=[0, 0, 1])]
    a = dr.agreement(pred, ref)
    assert (a["tp"], a["fp"], a["fn"]) == (1, 2, 1)
    assert a["precision"] == pytest.approx(1 / 3, abs=1e-4)
    assert a["recall"] == pytest.approx(0.5)
    assert a["f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5), abs=1e-4)


def test_agreement_one_match_per_reference_and_empty_images():
    ref = [boxes([[0, 0, 10, 10]]), Boxes.empty()]
    pred = [boxes([[0, 0, 10, 10], [0, 0, 10, 9.5]], scores=[0.9, 0.8]), Boxes.empty()]
    a = dr.agreement(pred, ref)
    assert (a["tp"], a["fp"], a["fn"], a["images"]) == (1, 1, 0, 2)
    assert dr.agreement([Boxes.empty()], [Boxes.empty()])["f1"] == 1.0


def test_map_perfect_and_ranked():
    gt = [boxes([[0, 0, 10, 10], [20, 20, 40, 40]])]
    assert dr.mean_average_precision([gt[0]], gt, ["face"])["map"] == pytest.approx(1.0)
    # A false positive ranked above the second true positive: AP = 1*0.5 + (2/3)*0.5
    pred = [boxes([[0, 0, 10, 10], [70, 70, 80, 80], [20, 20, 40, 40]], scores=[0.9, 0.8, 0.7])]
    r = dr.mean_average_precision(pred, gt, ["face"])
    assert r["map"] == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-4)
    assert r["gt_boxes"] == 2


def test_map_ignores_difficult_boxes_and_averages_classes():
    gt = [boxes([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], classes=[0, 0, 1],
                difficult=[False, True, False])]
    pred = [boxes([[20, 20, 30, 30], [0, 0, 10, 10]], scores=[0.9, 0.8], classes=[0, 0])]
    r = dr.mean_average_precision(pred, gt, ["a", "b"])
    assert r["per_class"] == {"a": 1.0, "b": 0.0}  # the difficult hit is neither TP nor FP
    assert r["map"] == pytest.approx(0.5)


def test_head_errors_in_lsb():
    f = [{"h": np.array([0.0, 1.0, -2.0])}]
    q = [{"h": np.array([0.1, 1.0, -2.2])}]
    e = dr.head_errors(f, q, {"h": 0.1})["h"]
    assert e["max_abs"] == pytest.approx(0.2) and e["max_lsb"] == pytest.approx(2.0)
    assert e["mean_lsb"] == pytest.approx(1.0, abs=1e-3) and e["float_range"] == pytest.approx(2.0)


VOC = """<annotation><size><width>100</width><height>50</height></size>
<object><name>with_mask</name><difficult>0</difficult>
<bndbox><xmin>10</xmin><ymin>5</ymin><xmax>30</xmax><ymax>25</ymax></bndbox></object>
<object><name>without_mask</name><difficult>1</difficult>
<bndbox><xmin>40</xmin><ymin>5</ymin><xmax>60</xmax><ymax>25</ymax></bndbox></object>
</annotation>"""


def test_read_voc_one_class_model_counts_every_object(tmp_path):
    p = tmp_path / "a.xml"
    p.write_text(VOC)
    gt, unknown = dr.read_labels(p, ["Face"], (100, 50))
    assert gt.boxes.tolist() == [[10, 5, 30, 25], [40, 5, 60, 25]]
    assert gt.class_ids.tolist() == [0, 0] and gt.difficult.tolist() == [False, True]
    assert not unknown
    gt, unknown = dr.read_labels(p, ["with_mask", "mask_weared_incorrect"], (100, 50))
    assert gt.class_ids.tolist() == [0] and unknown == {"without_mask"}


def test_read_yolo_txt_and_errors(tmp_path):
    p = tmp_path / "a.txt"
    p.write_text("1 0.5 0.5 0.2 0.4\n\n")
    gt, _ = dr.read_labels(p, ["a", "b"], (100, 50))
    assert gt.boxes.tolist() == [[40, 15, 60, 35]] and gt.class_ids.tolist() == [1]
    p.write_text("1 0.5 0.5\n")
    with pytest.raises(DataError, match="expected 'class cx cy w h'"):
        dr.read_labels(p, ["a", "b"], (100, 50))
    bad = tmp_path / "b.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(DataError, match="unreadable"):
        dr.read_labels(bad, ["a"], (1, 1))


def test_resolve_images_from_list_of_stems_and_labels_beside(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations").mkdir()
    for s in ("a", "b"):
        (tmp_path / "images" / f"{s}.jpg").write_bytes(b"x")
    (tmp_path / "annotations" / "a.xml").write_text(VOC)
    lst = tmp_path / "val.txt"
    lst.write_text("a\nimages/b.jpg\n")
    files = dr.resolve_images(lst)
    assert [f.name for f in files] == ["a.jpg", "b.jpg"]
    assert dr.find_label(files[0]) == tmp_path / "annotations" / "a.xml"
    assert dr.find_label(files[1]) is None
    assert [f.name for f in dr.resolve_images(tmp_path)] == ["a.jpg", "b.jpg"]  # folder with images/
    lst.write_text("a\nmissing\n")
    with pytest.raises(DataError, match=r"val.txt:2: image 'missing' not found"):
        dr.resolve_images(lst)
    with pytest.raises(DataError, match="not found"):
        dr.resolve_images(tmp_path / "nowhere")
