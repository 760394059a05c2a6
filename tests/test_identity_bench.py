"""The identity benchmark (benchmarks/identity.py) on a tiny synthetic set."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import identity as bench


def synthetic(people=40, photos=10, dim=32, noise=0.25, seed=0) -> bench.Dataset:
    """Each person a random direction; each photo that plus noise, with a masked copy of some."""
    rng = np.random.default_rng(seed)
    images, vecs = [], []
    mask_dir = rng.normal(size=dim)
    for p in range(people):
        centre = rng.normal(size=dim)
        for ph in range(photos):
            name = f"n{p:06d}_{ph:04d}_01"
            v = centre + noise * rng.normal(size=dim) * np.linalg.norm(centre) / np.sqrt(dim)
            images.append(bench.Image(Path(name + ".jpg"), f"n{p:06d}", name, False, "crop"))
            vecs.append(v)
            if ph % 3 == 0:  # a masked crop is another photo
                mname = f"n{p:06d}_{ph + 100:04d}_01"
                images.append(bench.Image(Path(mname + ".jpg"), f"n{p:06d}", mname, True, "crop"))
                vecs.append(v + 0.5 * mask_dir)
    emb = np.array(vecs, np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return bench.Dataset(images, emb)


def test_benchmark_separates_synthetic_people_and_reports_every_figure():
    ds = synthetic()
    res = bench.run(ds, [5, 8], far=0.01, seed=0, n_neg=10, n_cal=10)
    assert set(res["results"]) == {"centroid/K=5", "centroid/K=8", "logistic/K=5", "logistic/K=8"}
    assert res["groups"] == {"neg": 10, "cal": 10, "test": 20}
    for r in res["results"].values():
        t = r["test"]
        assert t["people"] == 20
        assert t["far_unmasked"] <= 0.05 and t["frr_unmasked"] <= 0.1, r["head"]
        assert r["curve"] and all(0 <= c["far_unmasked"] <= 1 for c in r["curve"])
        # FAR falls and FRR rises along the curve
        fars = [c["far_unmasked"] for c in r["curve"]]
        frrs = [c["frr_unmasked"] for c in r["curve"]]
        assert fars == sorted(fars, reverse=True) and frrs == sorted(frrs)
    assert "| centroid | 5 | 20 |" in bench.markdown(res)
    assert all(v > 0 for v in res["logistic_fit_s_x86"].values())


def test_no_photo_is_in_enrollment_and_test(monkeypatch):
    ds = synthetic(people=12, photos=10)
    seen = []

    def spy(enroll, negatives):
        seen.append(enroll.copy())
        return bench.centroid_head(enroll, negatives)

    monkeypatch.setitem(bench.HEADS, "spy", spy)
    sc = bench.score_group(ds, sorted(ds.by_person), np.arange(0), 5, "spy", seed=3)
    assert sc.people == 12 and len(seen) == 12
    rows = {tuple(np.round(v, 6)) for v in ds.emb}
    assert len(rows) == len(ds.emb)
    for person, enroll, per in zip(sorted(ds.by_person), seen, sc.per_person):
        idx = ds.by_person[person]
        enrolled = [i for i in idx if any(np.allclose(ds.emb[i], e) for e in enroll)]
        assert len(enrolled) == 5 and not any(ds.images[i].masked for i in enrolled)
        # every other photo of the person is a genuine test: 10 + 4 masked - 5 enrolled
        assert len(per["genuine_unmasked"]) == 5 and len(per["genuine_masked"]) == 4


def test_photo_keys_people_and_thresholds():
    assert bench.person_of("n000123_0021_01.jpg") == "n000123"
    assert bench.threshold_at_far([0.1, 0.2, 0.3, 0.9], 0.25) == pytest.approx(0.9)
    assert bench.threshold_at_far([0.1, 0.2, 0.3, 0.9], 0.0) > 0.9
    assert bench.eer([0.8, 0.9], [0.1, 0.2]) == 0.0
    w, b = bench.fit_logistic(np.ones((3, 2), np.float32), np.zeros((5, 2), np.float32))
    p = bench.quantized_logistic(w, b)(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert p[0] > 0.5 > p[1] and all(abs(v * 256 - round(v * 256)) < 1e-9 for v in p)


def test_scan_and_embed_with_cache(tmp_path):
    root = tmp_path / "dataroots"
    rng = np.random.default_rng(0)
    for sub, name in (("train/masked", "n000001_0001_01"), ("train/not_masked", "n000001_0002_01"),
                      ("validation/artificial/not_masked", "n000002_0003_01"),
                      ("sampled_face_images", "n000001_0001_01"), ("sampled_face_images", "n000002_0009_01")):
        (root / sub).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / sub / f"{name}.jpg"), rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
    images = bench.scan(root)
    assert [(i.person, i.photo, i.masked, i.kind) for i in images] == [
        ("n000001", "n000001_0001_01", True, "crop"), ("n000001", "n000001_0002_01", False, "crop"),
        ("n000002", "n000002_0003_01", False, "crop"), ("n000001", "n000001_0001_01", False, "sampled"),
        ("n000002", "n000002_0009_01", False, "sampled")]
    calls = []

    def embed(rgb):
        calls.append(rgb.shape)
        v = np.ones(4, np.float32)
        return v / np.linalg.norm(v)

    def crop(rgb):  # the detector finds nothing in the last photo
        return None if len(calls) == 4 else rgb[5:25, 5:25]

    ds = bench.embed_all(images, embed, crop, tmp_path / "cache.npz")
    assert len(ds.images) == 4 and ds.emb.shape == (4, 4) and calls[3] == (20, 20, 3)
    again = bench.embed_all(images, lambda rgb: 1 / 0, crop, tmp_path / "cache.npz")
    assert [i.path for i in again.images] == [i.path for i in ds.images]
    assert ds.photos("n000001") == ["n000001_0001_01", "n000001_0002_01"]
