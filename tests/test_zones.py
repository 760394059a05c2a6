"""Zones, privacy masks, face-only snapshots (issue 20 items 1-3): geometry, validation, the runner.

The runner tests go through the real loop with a folder source, gpiozero's mock pins and the
blob/colour interpreter stubs of edge/fakes.py, so detection, zones, tracking, rules, the
event store and the annotated video are the code `doorguard run` uses.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge import config, service
from edge.errors import ConfigError
from edge.fakes import (BLUE, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeNotifier,
                        frame_with, write_classifier_manifest, write_detector_manifest)
from edge.types import Box, Detection
from edge.decide.zones import (MaskConfig, MaskPainter, PrivacyConfig, ZoneConfig, ZoneFilter, pixelate,
                        polygon_problem, segments_cross)

LEFT_HALF = "[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]"


# ---- geometry --------------------------------------------------------------------------------------

def test_segments_cross():
    assert segments_cross((0, 0), (2, 2), (0, 2), (2, 0))
    assert not segments_cross((0, 0), (1, 0), (0, 1), (1, 1))
    assert segments_cross((0, 0), (2, 0), (1, 0), (3, 0))  # collinear overlap
    assert segments_cross((0, 0), (2, 0), (1, 0), (1, 5))  # touching


def test_polygon_problems():
    assert polygon_problem([(0, 0), (1, 0), (1, 1)]) is None
    assert polygon_problem([(0, 0), (1, 0), (1, 1), (0, 1)]) is None
    assert polygon_problem([(0, 0), (3, 0), (3, 3), (2, 1), (0, 3)]) is None  # concave is fine
    assert "at least 3" in polygon_problem([(0, 0), (1, 1)])
    assert "self-intersecting" in polygon_problem([(0, 0), (1, 1), (1, 0), (0, 1)])  # bow tie
    assert "same point" in polygon_problem([(0, 0), (0, 0), (1, 1)])
    assert "no area" in polygon_problem([(0, 0), (1, 0), (2, 0)])


def det(x1, y1, x2, y2):
    return Detection(Box(x1, y1, x2, y2), 0.9, 0, "face")


def test_zone_filter_centre_overlap_and_min_face_px():
    centre = ZoneConfig(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
    inside, straddling, outside = det(10, 10, 40, 40), det(40, 10, 80, 50), det(70, 10, 100, 40)
    kept, out = ZoneFilter([centre]).split([inside, straddling, outside], 128, 96, 12)
    assert kept == [inside, straddling] and out == [outside]  # straddling: centre x = 60 < 64
    # overlap: 24 of the 40 px width are in the zone (60 %)
    half = ZoneConfig(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], inside="overlap", min_overlap=0.5)
    most = ZoneConfig(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)], inside="overlap", min_overlap=0.7)
    assert ZoneFilter([half]).split([straddling], 128, 96, 12)[0] == [straddling]
    assert ZoneFilter([most]).split([straddling], 128, 96, 12) == ([], [straddling])
    # min_face_px per zone: a 30 px face counts in the zone asking 24, not in one asking 40
    small_ok = ZoneConfig(points=[(0, 0), (1, 0), (1, 1), (0, 1)], min_face_px=24)
    too_big = ZoneConfig(points=[(0, 0), (1, 0), (1, 1), (0, 1)], min_face_px=40)
    assert ZoneFilter([small_ok]).split([inside], 128, 96, 100)[0] == [inside]
    assert ZoneFilter([too_big]).split([inside], 128, 96, 12) == ([], [])  # in a zone: not "outside"
    # pixels: the same left half of a 128 x 96 frame
    px = ZoneConfig(units="pixels", points=[(0, 0), (64, 0), (64, 96), (0, 96)])
    assert ZoneFilter([px]).split([inside, outside], 128, 96, 12) == ([inside], [outside])
    # no zones: the whole frame, models.min_face_px only
    assert ZoneFilter([]).split([inside, det(0, 0, 5, 5)], 128, 96, 12) == ([inside], [])


def test_straddling_face_centre_is_outside():
    # (40+80)/2 = 60 < 64: the centre is in the left half after all
    z = ZoneConfig(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
    assert ZoneFilter([z]).zone_of(Box(40, 10, 80, 50), 128, 96) == 0
    assert ZoneFilter([z]).zone_of(Box(60, 10, 100, 50), 128, 96) is None


def test_mask_painter_blacks_out_a_copy():
    img = np.full((96, 128, 3), 200, np.uint8)
    out = MaskPainter([MaskConfig(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])]).apply(img)
    assert out is not img and (img == 200).all()
    assert (out[:, :60] == 0).all() and (out[:, 70:] == 200).all()
    assert MaskPainter([]).apply(img) is img


def test_pixelate_removes_detail_inside_the_box_only():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (96, 128, 3), np.uint8)
    out = pixelate(img, [Box(20, 20, 60, 60)], cells=4, margin=0.0)
    assert (out[:20] == img[:20]).all() and (out[:, 60:] == img[:, 60:]).all()
    face = out[20:60, 20:60].reshape(-1, 3)
    assert len(np.unique(face, axis=0)) <= 16  # 4 x 4 blocks
    assert pixelate(img, []) is img


# ---- validation (check-config) ----------------------------------------------------------------------

def test_config_errors_name_the_zone_and_its_line():
    text = ("[models]\nnum_threads = 2\n\n[[zones]]\nname = 'door'\npoints = [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9]]\n"
            "\n[[zones]]\nname = 'bow'\npoints = [[0, 0], [1, 1], [1, 0], [0, 1]]\n"
            "\n[[privacy.masks]]\npoints = [[0, 0], [0.5, 0]]\n"
            "\n[[privacy.masks]]\npoints = [[0, 0], [1.5, 0], [0, 1]]\n")
    errors = config.all_errors(text, "door.toml")
    assert len(errors) == 3, errors
    assert errors[0].startswith("door.toml: zones.1.points (line 10): ") and "self-intersecting" in errors[0]
    assert errors[1].startswith("door.toml: privacy.masks.0.points (line 13): ") and "at least 3" in errors[1]
    assert errors[2].startswith("door.toml: privacy.masks.1.points (line 16): ")
    assert "outside 0..1" in errors[2]
    with pytest.raises(ConfigError, match=r"zones\.1\.points \(line 10\)"):
        config.parse(text, "door.toml")


def test_check_config_pixel_corners_outside_a_cameras_frame(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(config, "model_problems", lambda cfg: [])  # the models are not the point here
    p = tmp_path / "c.toml"
    zone = "[[zones]]\nunits = 'pixels'\npoints = [[0, 0], [700, 0], [700, 400], [0, 400]]\n"
    p.write_text("[source]\nspec = '/dev/video0'\nwidth = 640\nheight = 480\n\n" + zone)
    assert config.main(argparse.Namespace(path=str(p))) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"{p}: zones.0.points (line 8): point 1 (700, 0) is outside the 640x480 frame (+1 more)"
    p.write_text("[source]\nspec = '/dev/video0'\nwidth = 1280\nheight = 720\n\n" + zone)
    assert config.main(argparse.Namespace(path=str(p))) == 0
    p.write_text(f"[source]\nspec = '{tmp_path}'\n\n" + zone)  # a folder: frame size unknown
    assert config.main(argparse.Namespace(path=str(p))) == 0


def test_check_config_command_one_line_no_traceback(tmp_path):
    import subprocess
    import sys

    p = tmp_path / "c.toml"
    p.write_text("[[zones]]\npoints = [[0, 0], [1, 1], [1, 0], [0, 1]]\n")
    r = subprocess.run([sys.executable, "-m", "edge.cli", "check-config", str(p)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if str(p) in ln]
    assert len(lines) == 1 and "zones.0.points (line 2)" in lines[0] and "self-intersecting" in lines[0]


# ---- the runner ----------------------------------------------------------------------------------

def textured(colour, size=30):
    """A square "face" with a fine checker pattern (so pixelation is measurable), still saturated."""
    face = np.empty((size, size, 3), np.uint8)
    face[:] = colour
    dark = tuple(int(c * 0.6) for c in colour)
    yy, xx = np.mgrid[:size, :size]
    face[(yy // 2 + xx // 2) % 2 == 1] = dark
    return face


def detail(region) -> float:
    """Mean per-channel standard deviation of a region: the checker pattern's, or ~0 once pixelated."""
    return float(np.asarray(region, float).std(axis=(0, 1)).mean())


def scene(faces, w=128, h=96):
    img = frame_with([], w, h)
    for x, y, colour in faces:
        img[y:y + 30, x:x + 30] = textured(colour)
    return img


def folder_of(tmp_path, frames) -> Path:
    d = tmp_path / "frames"
    d.mkdir()
    for i, img in enumerate(frames):
        cv2.imwrite(str(d / f"{i:04d}.png"), img[..., ::-1])
    return d


def run_folder(tmp_path, frames, extra=""):
    """``doorguard run`` on a folder of PNGs with mock GPIO pins: (runner, factory pins, clf interpreter)."""
    from gpiozero.pins.mock import MockFactory, MockPWMPin

    det, clf = write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[source]\nspec = "{folder_of(tmp_path, frames)}"\nper_image = false\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n'
                 "[rules]\nglobal_cooldown_s = 0.0\n" + extra)
    cfg = config.load(p)
    factory = MockFactory(pin_class=MockPWMPin)
    clf_interp = ColourClassifierInterpreter()
    try:
        r = service.Runner(cfg, pin_factory=factory, notifier=FakeNotifier(), config_path=p,
                           detector_interpreter=BlobDetectorInterpreter(), classifier_interpreter=clf_interp,
                           annotate=str(tmp_path / "out.mp4"))
        assert r.run() == 0
        g = cfg.gpio
        pins = {k: [s.state for s in factory.pin(getattr(g, k)).states] for k in ("red_led", "green_led", "buzzer")}
    finally:
        factory.close()
    return r, pins, clf_interp


def events(tmp_path):
    db = sqlite3.connect(tmp_path / "state" / "events.sqlite3")
    return db.execute("SELECT verdict, label, x1, snapshot FROM events ORDER BY id").fetchall()


def test_face_outside_every_zone_is_never_judged_stored_or_alarmed(tmp_path):
    frames = [scene([(85, 30, RED)])] * 10  # an unmasked face, right half only
    r, pins, clf = run_folder(tmp_path, frames, f"[[zones]]\nname = 'door'\npoints = {LEFT_HALF}\n")
    assert r.frames == 10 and events(tmp_path) == [] and clf.invocations == 0
    assert not any(pins["buzzer"]) and not any(pins["red_led"])
    assert "1 zone(s)" in r._status()["privacy"]


def test_face_in_the_zone_alarms_as_before(tmp_path):
    frames = [scene([(10, 30, RED), (85, 30, BLUE)])] * 10
    r, pins, clf = run_folder(tmp_path, frames, f"[[zones]]\npoints = {LEFT_HALF}\n")
    assert [e[:2] for e in events(tmp_path)] == [("violation", "no_mask")]  # the masked face: outside
    assert any(pins["buzzer"]) and not any(pins["green_led"])


def test_no_zones_is_the_whole_frame(tmp_path):
    frames = [scene([(10, 30, RED), (85, 30, BLUE)])] * 10
    run_folder(tmp_path, frames)
    assert sorted(e[:2] for e in events(tmp_path)) == [("compliant", "mask"), ("violation", "no_mask")]


def test_privacy_mask_hides_a_face_from_the_detector(tmp_path):
    frames = [scene([(85, 30, RED)])] * 10
    r, pins, _ = run_folder(tmp_path, frames, "[[privacy.masks]]\nname = 'street'\n"
                                              "points = [[0.6, 0], [1, 0], [1, 1], [0.6, 1]]\n")
    assert events(tmp_path) == [] and not any(pins["buzzer"])
    cap = cv2.VideoCapture(str(tmp_path / "out.mp4"))
    ok, img = cap.read()
    cap.release()
    assert ok and img[30:, 80:].max() < 20  # black in the annotated video too


def test_snapshot_is_the_face_crop_and_other_faces_are_pixelated(tmp_path):
    frames = [scene([(10, 30, RED), (50, 30, BLUE)])] * 10
    r, _, _ = run_folder(tmp_path, frames, "[events.snapshots]\nenabled = true\n")
    rows = events(tmp_path)
    assert sorted(v for v, *_ in rows) == ["compliant", "violation"]
    snaps = [s for v, _, _, s in rows if s]
    assert len(snaps) == 1 and [v for v, _, _, s in rows if s] == ["violation"]  # never the compliant face
    img = cv2.imread(str(tmp_path / "state" / "snapshots" / snaps[0]))
    h, w = img.shape[:2]
    assert 30 <= w <= 70 and 30 <= h <= 70, img.shape  # a ~30 px face + 0.5 margin, not 128 x 96


def test_whole_frame_snapshot_with_other_faces_pixelated(tmp_path):
    frames = [scene([(10, 30, RED), (70, 30, BLUE)])] * 10
    run_folder(tmp_path, frames, "[events.snapshots]\nenabled = true\ncontent = 'frame'\n"
                                 "[privacy]\nblur_other_faces = true\n")
    (snap,) = [s for *_, s in events(tmp_path) if s]
    img = cv2.imread(str(tmp_path / "state" / "snapshots" / snap))[..., ::-1].astype(float)
    assert img.shape[:2] == (96, 128)
    alerting, other = detail(img[32:58, 12:38]), detail(img[32:58, 72:98])
    assert alerting > 12 and other < alerting / 4  # checker kept / pixelated away


def test_live_view_pixelates_faces_outside_the_zones(tmp_path, monkeypatch):
    from edge.act.web.handover import LiveFrame

    shown = []
    monkeypatch.setattr(LiveFrame, "put", lambda self, image, overlays=(): shown.append((image, overlays)))
    frames = [scene([(10, 30, RED), (85, 30, BLUE)])] * 6
    run_folder(tmp_path, frames, f"[[zones]]\npoints = {LEFT_HALF}\n[web]\nenabled = true\nport = 0\n")
    image, overlays = shown[-1]
    inside, outside = detail(image[32:58, 12:38]), detail(image[32:58, 87:113])
    assert inside > 12 and outside < inside / 4
    assert len(overlays) == 1 and overlays[0].box[0] < 64  # no box, label or track for the outside face


def test_privacy_config_defaults():
    p = PrivacyConfig()
    assert p.masks == [] and p.blur_other_faces is False
    cfg = config.load()
    assert cfg.zones == [] and cfg.events.snapshots.content == "face"


def test_a_restart_runs_with_the_overlay_the_web_page_saved_and_reset_goes_back(tmp_path, capsys, caplog):
    """The unit's config is read-only, so the page saved the zone to <state dir>/zones.toml; the
    next `doorguard run` uses it, and `doorguard zones --reset` returns to the file's (none)."""
    from edge import cli

    state = tmp_path / "state"
    state.mkdir()
    overlay = state / "zones.toml"
    overlay.write_text(f"[[zones]]\nname = 'door'\npoints = {LEFT_HALF}\n")
    frames = [scene([(85, 30, RED)])] * 10  # an unmasked face, right half only: outside the overlay's zone
    caplog.set_level("INFO", logger="doorguard")
    r, pins, clf = run_folder(tmp_path, frames)
    assert f"zones: from {overlay} (saved on the web page" in caplog.text
    assert events(tmp_path) == [] and clf.invocations == 0 and not any(pins["buzzer"])
    st = r._status()
    assert "1 zone(s)" in st["privacy"] and st["zones_from"].startswith(f"{overlay} (saved on the web page")
    assert cli.main(["zones", "--config", str(tmp_path / "doorguard.toml"), "--reset"]) == 0
    assert not overlay.exists()
    capsys.readouterr()
    (tmp_path / "frames").rename(tmp_path / "frames-1")
    r, pins, _ = run_folder(tmp_path, frames)
    assert [e[:2] for e in events(tmp_path)] == [("violation", "no_mask")] and any(pins["buzzer"])
    assert r._status()["zones_from"] == str(tmp_path / "doorguard.toml")
