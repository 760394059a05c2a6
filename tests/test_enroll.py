"""`doorguard enroll`: face crops through the real detector, skip rules, permissions, delete."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.pipeline.classifier import label_folders
from edge import cli
from edge.enroll import MARKER, EnrollSettings, Enroller, prepare_dataset, sharpness
from edge.types import Box, Detection

ROOT = Path(__file__).resolve().parent.parent
SAMPLED = ROOT.parent / "shared" / "data" / "dataroots" / "sampled_face_images"


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def assert_private(out: Path) -> None:
    for p in [out, *out.rglob("*")]:
        assert mode(p) == (0o700 if p.is_dir() else 0o600), p


def test_demo_source_through_the_real_detector(tmp_path, capsys):
    out = tmp_path / "faces"
    assert cli.main(["enroll", "--label", "me", "--out", str(out), "--source", "demo", "--count", "8"]) == 0
    files = sorted((out / "me").glob("*.jpg"))
    assert len(files) == 8
    assert_private(out)
    said = capsys.readouterr().out
    assert "8/8 saved" in said and "duplicate" in said and "train classifier --data" in said
    # The demo's face is about 110 px; each crop is that box grown by the mask classifier's margin.
    h, w = cv2.imread(str(files[0])).shape[:2]
    assert 60 < w < 250 and 60 < h < 250


@pytest.mark.skipif(not SAMPLED.is_dir(), reason="needs ../shared/data/dataroots")
def test_photo_folder_gives_a_dataset_train_classifier_reads(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    names = sorted(p.name for p in SAMPLED.glob("n008630_*.jpg"))[:6]
    for n in names:
        shutil.copy(SAMPLED / n, photos / n)
    shutil.copy(SAMPLED / names[0], photos / "zz_copy.jpg")  # the same photo again: a duplicate
    out = tmp_path / "faces"
    assert cli.main(["enroll", "--label", "me", "--out", str(out), "--source", str(photos)]) == 0
    assert cli.main(["enroll", "--others", "--out", str(out), "--source", str(photos), "--count", "2"]) == 0
    said = capsys.readouterr().out
    assert "1 duplicate" in said
    folders = label_folders(out)
    assert set(folders) == {"me", "not_me"}
    assert 4 <= len(folders["me"]) <= 6 and len(folders["not_me"]) == 2
    assert_private(out)
    # A second session into the same folder skips what is already there.
    assert cli.main(["enroll", "--label", "me", "--out", str(out), "--source", str(photos)]) == 8
    assert "duplicate" in capsys.readouterr().out


class FakeDetector:
    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, image):
        return [Detection(Box(*b), 0.9, 0, "face") for b in self.boxes]


def textured(h=200, w=200, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def test_skip_rules(tmp_path):
    folder = prepare_dataset(tmp_path / "ds", "me")
    e = Enroller(FakeDetector([(40, 40, 140, 140)]), folder, "me", EnrollSettings(min_face_px=48))
    img = textured()
    assert len(e.offer(img)) == 1
    assert e.offer(img) == [] and e.tally.skipped["duplicate"] == 1
    blurred = cv2.GaussianBlur(textured(seed=1), (0, 0), 6)
    assert sharpness(blurred) < EnrollSettings.min_sharpness < sharpness(textured(seed=1))
    assert e.offer(blurred) == [] and e.tally.skipped["blurred"] == 1
    e.detector = FakeDetector([(10, 10, 40, 40)])
    assert e.offer(textured(seed=2)) == [] and e.tally.skipped["tiny"] == 1
    e.detector = FakeDetector([(0, 0, 90, 90), (100, 100, 199, 199)])
    assert e.offer(textured(seed=3)) == [] and e.tally.skipped["several_faces"] == 1
    others = Enroller(e.detector, prepare_dataset(tmp_path / "ds", "not_me"), "not_me",
                      EnrollSettings(all_faces=True))
    assert len(others.offer(textured(seed=3))) == 2
    e.detector = FakeDetector([])
    assert e.offer(img) == [] and e.tally.skipped["no_face"] == 1
    assert e.tally.saved == 1 and e.tally.frames == 6


def test_delete(tmp_path, capsys):
    out = tmp_path / "ds"
    prepare_dataset(out, "me")
    prepare_dataset(out, "not_me")
    (out / "me" / "a.jpg").write_bytes(b"x")
    assert cli.main(["enroll", "--delete", str(out), "--label", "not_me"]) == 0
    assert (out / "me").is_dir() and not (out / "not_me").exists()
    assert cli.main(["enroll", "--delete", str(out)]) == 0
    assert not out.exists() and "removed" in capsys.readouterr().out


@pytest.mark.parametrize("argv, code, words", [
    (["enroll", "--label", "me"], 2, "--out DIR is required"),
    (["enroll", "--out", "OUT"], 2, "--label NAME"),
    (["enroll", "--label", "../x", "--out", "OUT"], 2, "folder name"),
    (["enroll", "--label", "me", "--out", "OUT", "--count", "0"], 2, "--count"),
    (["enroll", "--label", "me", "--out", "OUT", "--source", "/no/such/thing"], 2, "unknown source"),
    (["enroll", "--delete", "NOTDS"], 2, "not a doorguard enroll dataset"),
    (["enroll", "--delete", "MISSING"], 2, "no such folder"),
    (["enroll", "--label", "me", "--out", "NOTDS", "--source", "demo"], 6, "not empty"),
])
def test_bad_input_is_one_line(tmp_path, capsys, argv, code, words):
    (tmp_path / "NOTDS").mkdir()
    (tmp_path / "NOTDS" / "notes.txt").write_text("mine")
    argv = [str(tmp_path / a) if a in ("OUT", "NOTDS", "MISSING") else a for a in argv]
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err and "Traceback" not in err
    assert (tmp_path / "NOTDS" / "notes.txt").exists()
    assert not (tmp_path / "NOTDS" / MARKER).exists()


def test_live_preview_on_the_web_page_while_enrolling(tmp_path, monkeypatch, capsys):
    """With [web] on, each frame goes to the page with its faces boxed by what became of them."""
    from edge.act.web import server as web_server

    seen = {}

    class FakeWeb:
        url = "http://127.0.0.1:8080/"

        def __init__(self, cfg, status, latest_frame, test_outputs, state_dir=None, **kw):
            seen["status"], seen["latest"] = status, latest_frame
            seen["frames"] = []

        def start(self):
            return self

        def close(self):
            item = seen["latest"]()
            seen["closed_with"] = (item, seen["status"]())

    monkeypatch.setattr(web_server, "WebServer", FakeWeb)
    cfg = tmp_path / "door.toml"
    cfg.write_text(f'[web]\nenabled = true\n[events]\nstate_dir = "{tmp_path / "state"}"\n')
    out = tmp_path / "faces"
    assert cli.main(["enroll", "--label", "me", "--out", str(out), "--source", "demo", "--count", "3",
                     "--config", str(cfg)]) == 0
    (image, overlays), status = seen["closed_with"]
    assert image.ndim == 3 and overlays and {o.label for o in overlays} <= {
        "saved", "duplicate", "blurred", "tiny", "several faces"}
    assert status["enroll"].startswith("enroll me: 3/3 saved")


def test_preview_boxes_are_green_only_for_saved_crops():
    from edge.enroll import preview_overlays

    d = Detection(Box(1, 2, 30, 40), 0.9, 0, "face")
    got = preview_overlays([(d, "saved"), (d, "blurred")])
    assert [(o.label, o.verdict) for o in got] == [("saved", "compliant"), ("blurred", None)]
    assert got[0].box == (1, 2, 30, 40)
