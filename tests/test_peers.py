"""Peer detectors (convert/verify/peers.py): decoding checked on a real dataroots photo."""

from __future__ import annotations

import numpy as np
import pytest

from convert.verify import peers
from convert.data.images import read_rgb
from edge.types import Box


def test_aizoo_anchor_layout():
    a = peers.aizoo_anchors()
    assert a.shape == (5972, 4)
    # First anchor: cell (0, 0) of the 33x33 map, size 0.04 at ratio 1 -> centred square.
    c = 0.5 / 33
    np.testing.assert_allclose(a[0], [c - 0.02, c - 0.02, c + 0.02, c + 0.02], atol=1e-6)
    # Fourth anchor of that cell: size 0.04 at ratio 0.42 -> w = 0.04*sqrt(.42), h = 0.04/sqrt(.42).
    w, h = 0.04 * np.sqrt(0.42), 0.04 / np.sqrt(0.42)
    np.testing.assert_allclose(a[3], [c - w / 2, c - h / 2, c + w / 2, c + h / 2], atol=1e-6)
    # The second cell is one column to the right (row-major over the map).
    np.testing.assert_allclose(a[4, 0] - a[0, 0], 1 / 33, atol=1e-6)


@pytest.mark.shared
@pytest.mark.parametrize("name", ["yunet-n-640", "ultraface-rfb-640", "aizoo-facemask", "opencv-ssd-res10",
                                  "ultraface-rfb-640-masked"])
def test_peer_finds_the_face(shared, name):
    # dataroots raw_images/0.jpg: one masked face at x,y,w,h = 549,319,253,301.
    image = read_rgb(shared / "data/dataroots/raw_images/0.jpg")
    truth = Box(549, 319, 802, 620)
    det = peers._factory(name, shared / "models/peers", 0.3)
    found = det.detect(image)
    assert max((d.box.iou(truth) for d in found), default=0) > 0.5
    if name in peers.JOINT:
        preds = det.predict(image)
        best = max(preds, key=lambda p: p.box.iou(truth))
        assert best.label == "mask" and not best.flagged
