"""Doorway conditions (convert/verify/conditions.py): reproducible transforms, boxes follow, mask colour rule."""

from __future__ import annotations

import numpy as np
import pytest

from convert.verify import conditions as cond
from edge.types import Box


def _photo(seed=0, h=120, w=160):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(cond.CONDITIONS))
def test_every_condition_is_reproducible_and_keeps_an_rgb_frame(name):
    fn, k = cond.CONDITIONS[name]
    img = _photo()
    boxes = [Box(40, 30, 80, 80)]
    a, b = fn(img, boxes, "x.jpg"), fn(img, boxes, "x.jpg")
    np.testing.assert_array_equal(a, b)  # seeded by the image name
    assert a.dtype == np.uint8 and a.ndim == 3 and a.shape[2] == 3
    assert a.shape[:2] == (round(120 * k), round(160 * k))
    assert not np.array_equal(a, img) or name == "jpeg"


def test_ir_is_grey_and_backlight_darkens_the_face_but_not_the_rest():
    img = np.full((100, 100, 3), 120, np.uint8)
    img[..., 0] = 200
    g = cond.ir(img, [], "a")
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    b = cond.backlight(img, [Box(30, 30, 70, 70)], "a")
    assert b[50, 50].mean() < 0.6 * img[50, 50].mean()
    assert b[2, 2].mean() > img[2, 2].mean()


def test_low_light_is_darker_on_average():
    img = _photo(1)
    assert cond.low_light(img, [], "a").mean() < 0.75 * img.mean()


def test_mask_colour_rule():
    face = np.zeros((80, 60, 3), np.uint8)
    box = Box(0, 0, 60, 80)
    face[40:] = (20, 20, 25)
    assert cond.mask_colour(face, box) == "dark"
    face[40:] = (170, 200, 230)
    assert cond.mask_colour(face, box) == "light"
    face[40:] = (220, 40, 40)  # red fabric
    assert cond.mask_colour(face, box) == "colourful"
