"""Per-image mode: a folder of unrelated photos gives each photo its own verdicts.

Before it, the README's recipe (votes_needed = window = 1, max_missed = 0) still
merged overlapping boxes of consecutive photos into one track and re-classified a
settled track only every ``reclassify_every`` frames: 13 faces gave 6 events.
"""

from __future__ import annotations

import cv2
import pytest

from edge import config, service
from edge.fakes import (BLUE, GREEN, RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators,
                        FakeNotifier, ListSource, frame_with, write_classifier_manifest,
                        write_detector_manifest)
from edge.capture.sources import FolderSource, make_source

# Consecutive photos with a face at almost the same place, in alternating colours, then a
# photo with two faces and one with none: 9 faces in 8 photos.
PHOTOS = [
    [(20, 30, 30, RED)], [(22, 30, 30, BLUE)], [(21, 31, 30, RED)], [(20, 30, 30, RED)],
    [(23, 29, 30, GREEN)], [(20, 30, 30, BLUE), (80, 30, 30, RED)], [], [(21, 30, 30, RED)],
]
LABEL = {RED: "no_mask", BLUE: "mask", GREEN: "mask_incorrect"}
VERDICT = {"no_mask": "violation", "mask_incorrect": "violation", "mask": "compliant"}


def _cfg(tmp_path, extra=""):
    det = write_detector_manifest(tmp_path)
    clf = write_classifier_manifest(tmp_path)
    p = tmp_path / "doorguard.toml"
    # The defaults otherwise (votes_needed 3 of 5, max_missed 8, reclassify_every 5).
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 "[events]\nenabled = false\n[rules]\nglobal_cooldown_s = 0.0\n" + extra)
    return config.load(p)


def _folder(tmp_path):
    d = tmp_path / "photos"
    d.mkdir()
    for i, faces in enumerate(PHOTOS):
        cv2.imwrite(str(d / f"p{i:02d}.png"), cv2.cvtColor(frame_with(faces), cv2.COLOR_RGB2BGR))
    return d


def _run(cfg, source, caplog):
    caplog.set_level("INFO")
    r = service.Runner(cfg, source=source, actuators=FakeActuators(), notifier=FakeNotifier(),
                       detector_interpreter=BlobDetectorInterpreter(),
                       classifier_interpreter=ColourClassifierInterpreter())
    assert r.run() == 0 and r.frames == len(PHOTOS)
    events = [ln.split("event: ", 1)[1].split()[:2] for ln in caplog.text.splitlines() if "event: " in ln]
    return r, events


def _expected():
    return [[VERDICT[LABEL[c]], LABEL[c]] for faces in PHOTOS for *_, c in faces]


def test_image_folder_is_per_image_by_default(tmp_path, caplog):
    """Every face of every photo is classified once and gets its own event, in photo order."""
    source = make_source(str(_folder(tmp_path)))
    assert isinstance(source, FolderSource) and source.per_image
    r, events = _run(_cfg(tmp_path), source, caplog)
    assert r.per_image and "per image" in caplog.text
    assert events == _expected()
    assert r._pipeline.latency.count("classify") == sum(len(f) for f in PHOTOS)
    # No track of a photo continues into the next one: ids are never reused.
    assert r._pipeline.tracker._next_id - 1 == sum(len(f) for f in PHOTOS)


def test_readme_recipe_alone_merged_photos(tmp_path, caplog):
    """per_image = false (tracking across images, as for a folder of video frames): the old
    recipe of one-vote verdicts still merges neighbouring photos' faces into one track."""
    extra = "[source]\nper_image = false\n[tracking]\nvotes_needed = 1\nwindow = 1\nmax_missed = 0\n"
    r, events = _run(_cfg(tmp_path, extra), make_source(str(_folder(tmp_path))), caplog)
    assert not r.per_image
    assert len(events) < len(_expected())


def test_single_image_and_explicit_setting(tmp_path, caplog):
    one = tmp_path / "one.png"
    cv2.imwrite(str(one), frame_with([(20, 30, 30, RED)]))
    assert make_source(str(one)).per_image
    # Any source can be judged per image when the config says so ...
    frames = [frame_with(f) for f in PHOTOS]
    r, events = _run(_cfg(tmp_path, "[source]\nper_image = true\n"), ListSource(frames), caplog)
    assert r.per_image and events == _expected()


@pytest.mark.parametrize("spec", ["demo"])
def test_video_like_sources_are_not_per_image(spec):
    assert not getattr(make_source(spec), "per_image", False)
