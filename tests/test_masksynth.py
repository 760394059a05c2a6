"""convert.train.masksynth: masks placed by landmarks (nose uncovered for mask_incorrect), styles, cache."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from convert.train import masksynth as ms

# An upright 96 px face: eyes, nose tip, mouth corners (YuNet order: right eye first, on the image left).
LM = np.array([[32, 34], [64, 34], [48, 52], [37, 68], [59, 68]], np.float64)


def face(h=96, w=96):
    img = np.full((h, w, 3), (200, 160, 130), np.uint8)  # skin
    return img


def rect_template(name="red", colour=(230, 40, 40), h=60, w=120):
    rgba = np.zeros((h, w, 4), np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = 255
    return ms.template_from_rgba(name, rgba)


def alpha_at(alpha, p):
    return float(alpha[int(round(p[1])), int(round(p[0]))])


def place(kind, lm=LM, seed=0, t=None, size=96):
    t = t or rect_template()
    return ms.place_mask(face(size, size), lm, t.rgba, t.top, t.bottom, kind, np.random.default_rng(seed))


def mouth(lm):
    return (lm[3] + lm[4]) / 2


@pytest.mark.parametrize("seed", range(12))
def test_kinds_cover_what_they_say(seed):
    _, a = place("correct", seed=seed)
    assert alpha_at(a, LM[2]) > 0.9 and alpha_at(a, mouth(LM)) > 0.9   # nose and mouth covered
    assert alpha_at(a, LM[0]) < 0.05 and alpha_at(a, LM[1]) < 0.05     # eyes free
    _, a = place("below_nose", seed=seed)
    assert alpha_at(a, LM[2]) < 0.05, "the nose tip stays visible when the mask is worn below the nose"
    assert alpha_at(a, mouth(LM)) > 0.9
    _, a = place("chin", seed=seed)
    assert alpha_at(a, LM[2]) < 0.05 and alpha_at(a, mouth(LM)) < 0.05
    assert a[90, 48] > 0.9  # the chin is covered


def test_placement_follows_the_landmarks():
    # On a larger canvas, so that the crop's edge does not clip the mask.
    _, a0 = place("below_nose", lm=LM + 30, seed=3, size=160)
    _, a1 = place("below_nose", lm=LM + 30 + (7, -5), seed=3, size=160)
    c0 = np.argwhere(a0 > 0.5).mean(axis=0)
    c1 = np.argwhere(a1 > 0.5).mean(axis=0)
    assert c1 - c0 == pytest.approx((-5, 7), abs=0.6)   # (row, col) moves with the face
    # A face tilted by 25 degrees about its nose: the mask's long axis tilts with it; nose still out.
    th = np.deg2rad(25)
    r = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    lm_rot = (LM - LM[2]) @ r.T + LM[2] + 30
    _, a = place("below_nose", lm=lm_rot, seed=3, size=160)
    assert alpha_at(a, lm_rot[2]) < 0.05 and alpha_at(a, mouth(lm_rot)) > 0.9
    ys, xs = np.nonzero(a > 0.5)
    cov = np.cov(np.stack([xs, ys]).astype(float))
    w, v = np.linalg.eigh(cov)
    major = v[:, np.argmax(w)]
    angle = np.degrees(np.arctan2(major[1], major[0])) % 180
    assert min(abs(angle - 25), abs(angle - 205)) < 6


def test_placement_ok_rejects_masks_pushed_out_of_a_tight_crop():
    _, a = place("below_nose")
    assert ms.placement_ok(a, LM, "below_nose")
    assert not ms.placement_ok(a, LM, "correct")       # the nose is not covered
    assert not ms.placement_ok(np.zeros_like(a), LM, "chin")


def test_styles_dark_and_patterned_keep_the_shape():
    t = rect_template(colour=(240, 240, 235))
    rng = np.random.default_rng(0)
    dark = ms.styled(t, "dark", rng)
    pat = ms.styled(t, "patterned", rng)
    assert np.array_equal(dark[..., 3], t.rgba[..., 3]) and np.array_equal(pat[..., 3], t.rgba[..., 3])
    assert np.median(dark[..., :3].max(axis=2)) < 80
    assert pat[..., :3].std() > 20
    assert ms.template_from_rgba("k", dark).dark and not t.dark


def write_sources(folder, n=6):
    folder.mkdir()
    for i in range(n):
        img = face()
        img[10:20, 10 + i:20 + i] = (30 * i, 10, 10)  # make every source different
        cv2.imwrite(str(folder / f"n{i:06d}_0001_01.jpg"), img[..., ::-1])
    return sorted(folder.iterdir())


def test_synthesize_is_seeded_cached_and_leaves_the_nose_visible(tmp_path):
    sources = write_sources(tmp_path / "src")
    calls = []

    def landmarks(rgb):
        calls.append(rgb.shape)
        return LM.copy()

    counts = {"mask_incorrect": 5, "mask_dark": 2, "mask_patterned": 2}
    tpls = [rect_template(), rect_template("black", (15, 15, 15))]
    a = ms.synthesize(sources, tpls, tmp_path / "w1", counts=counts, seed=4, landmarks=landmarks)
    b = ms.synthesize(sources, tpls, tmp_path / "w2", counts=counts, seed=4, landmarks=landmarks)
    assert {k: len(v) for k, v in a["files"].items()} == {"mask_incorrect": 5, "mask": 4}
    for fa, fb in zip(sum(a["files"].values(), []), sum(b["files"].values(), [])):
        assert fa.read_bytes() == fb.read_bytes()
    for f in a["files"]["mask_incorrect"]:
        img = cv2.imread(str(f))[..., ::-1].astype(int)
        nose = img[int(LM[2][1]), int(LM[2][0])]
        assert np.abs(nose - (200, 160, 130)).max() < 12, f"{f.name}: nose covered"
    for f in a["files"]["mask"]:
        img = cv2.imread(str(f))[..., ::-1].astype(int)
        x, y = int(LM[2][0]), int(LM[2][1])
        patch = img[y - 4:y + 5, x - 4:x + 5]
        assert np.abs(patch - (200, 160, 130)).mean() > 20, f"{f.name}: nose bare"
    n_calls = len(calls)
    again = ms.synthesize(sources, tpls, tmp_path / "w1", counts=counts, seed=4, landmarks=landmarks)
    assert len(calls) == n_calls, "the second run reuses the cache"
    assert again["files"] == a["files"] and again["made"] == a["made"]
    other = ms.synthesize(sources, tpls, tmp_path / "w1", counts=counts, seed=5, landmarks=landmarks)
    assert other["key"] != a["key"]


def test_synthesize_small_share_writes_doorway_sized_crops_and_keeps_the_rest(tmp_path):
    """small=0.5: about half the crops saved with their longer side within SMALL_PX (as a crowded
    photo's faces are cut), the others byte-identical to a run without it; its own cache key."""
    sources = write_sources(tmp_path / "src")
    counts = {"mask_incorrect": 12}
    tpls = [rect_template()]
    plain = ms.synthesize(sources, tpls, tmp_path / "w", counts=counts, seed=2, landmarks=lambda rgb: LM.copy())
    small = ms.synthesize(sources, tpls, tmp_path / "w", counts=counts, seed=2, landmarks=lambda rgb: LM.copy(),
                          small=0.5)
    assert small["key"] != plain["key"] and small["small"] == 0.5
    n_small = 0
    for a, b in zip(plain["files"]["mask_incorrect"], small["files"]["mask_incorrect"]):
        img = cv2.imread(str(b))
        if "_s" in b.name.split("_red")[1]:
            n_small += 1
            assert ms.SMALL_PX[0] <= max(img.shape[:2]) <= ms.SMALL_PX[1]
        else:
            assert a.read_bytes() == b.read_bytes()
    assert 2 <= n_small <= 10
    assert sum(v for k, v in small["made"].items() if k.endswith(":small")) == n_small
    with pytest.raises(ms.DataError, match="small"):
        ms.synthesize(sources, tpls, tmp_path / "w", counts=counts, landmarks=lambda rgb: LM.copy(), small=2)


def test_nose_gap_moves_a_below_nose_mask_up_to_just_under_the_nose_tip(tmp_path):
    """A smaller nose_gap puts the top edge nearer the nose tip (as facemask853's incorrect masks
    sit), still leaving the tip uncovered; synthesize keys its cache on a non-default gap."""
    def top_row(alpha):
        rows = np.where(alpha[:, 40:56].max(axis=1) > 0.5)[0]
        return rows.min()

    default_tops, near_tops = [], []
    for seed in range(8):
        img, a = place("below_nose", seed=seed)
        default_tops.append(top_row(a))
        t = rect_template()
        img, b = ms.place_mask(face(), LM, t.rgba, t.top, t.bottom, "below_nose", np.random.default_rng(seed),
                               nose_gap=(0.05, 0.2))
        near_tops.append(top_row(b))
        assert alpha_at(b, LM[2]) < 0.5 < alpha_at(b, mouth(LM))
    assert max(near_tops) < min(default_tops)
    assert min(near_tops) > LM[2][1]
    sources = write_sources(tmp_path / "src", 3)
    kw = dict(counts={"mask_incorrect": 2}, landmarks=lambda rgb: LM.copy())
    plain = ms.synthesize(sources, [rect_template()], tmp_path / "w", **kw)
    near = ms.synthesize(sources, [rect_template()], tmp_path / "w", nose_gap=(0.05, 0.2), **kw)
    assert near["key"] != plain["key"] and near["nose_gap"] == [0.05, 0.2]
    with pytest.raises(ms.DataError, match="nose_gap"):
        ms.synthesize(sources, [rect_template()], tmp_path / "w", nose_gap=(0.5, 0.2), **kw)


def test_synthesize_skips_faceless_sources(tmp_path):
    sources = write_sources(tmp_path / "src", 4)
    found = {sources[1].name}

    def landmarks(rgb):
        return LM.copy() if abs(int(rgb[15, 16, 0]) - 30) < 12 else None   # only the second source has a face

    out = ms.synthesize(sources, [rect_template()], tmp_path / "w", counts={"mask_incorrect": 3},
                        landmarks=landmarks)
    assert out["no_face_sources_skipped"] == 3
    assert all(f.name.endswith(next(iter(found))) for f in out["files"]["mask_incorrect"])


def test_yunet_landmarks_on_a_real_training_crop(shared):
    crops = sorted((shared / "data" / "dataroots" / "train" / "not_masked").glob("*.jpg"))[:5]
    det = ms.YuNetLandmarks(ms.yunet_path(shared))
    found = 0
    for c in crops:
        rgb = cv2.imread(str(c))[..., ::-1].copy()
        lm = det(rgb)
        if lm is None:
            continue
        found += 1
        h, w = rgb.shape[:2]
        assert (lm[:, 0] > -0.1 * w).all() and (lm[:, 0] < 1.1 * w).all()
        assert lm[0, 1] < lm[2, 1] < lm[3, 1] and lm[1, 1] < lm[2, 1] < lm[4, 1]  # eyes, nose, mouth
    assert found >= 4


def test_classifier_figures_tnr_fnr_and_colour_groups():
    y = ["mask", "mask", "mask", "no_mask", "mask_incorrect", "mask_incorrect"]
    p = ["mask", "mask_incorrect", "mask", "no_mask", "mask_incorrect", "no_mask"]
    c = ["dark", "dark", "light", None, None, None]
    f = ms.classifier_figures(y, p, c)
    assert f["accuracy"] == round(4 / 6, 4)
    assert f["fnr"] == round(1 / 3, 4) and f["tnr"] == 1.0            # mask_incorrect -> no_mask still alarms
    assert f["recall_mask_incorrect"] == 0.5 and f["precision_mask_incorrect"] == 0.5
    assert f["fnr_dark"] == 0.5 and f["masked_dark"] == 2 and f["fnr_light"] == 0.0
    assert f["fnr_colourful"] is None
    table = ms.comparison_table([{"model": "a", "set": "s", "condition": "clean", **f}])
    assert "| s | clean | a | 6 | 0.667 | 1.000 | 0.333 | 0.500 | 0.500 | 2 | 0.500 |" in table
