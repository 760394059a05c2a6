"""Sources: picamera2 colour order, OpenCV, folders, spec parsing, the capture thread."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.config import SourceConfig
from edge.capture.demo import DemoSource, draw_mask, load_photo
from edge.errors import SourceError, UsageError
from edge.fakes import FakeClock, FakePicamera2, ListSource
from edge.capture.sources import (Capture, FolderSource, FrameSource, OpenCVSource, PicameraSource, SourceLost,
                          bgr_memory_to_rgb, make_source)


def test_picamera_rgb888_is_bgr_in_memory():
    src = PicameraSource(64, 48, 0, factory=FakePicamera2)
    src.open()
    cam = FakePicamera2.instances[-1]
    assert cam.config["main"] == {"size": (64, 48), "format": "RGB888"}
    frame = src.read()
    assert frame.shape == (48, 64, 3) and frame.flags["C_CONTIGUOUS"]
    assert tuple(frame[0, 0]) == (255, 0, 0)  # red stays red
    src.close()
    assert cam.closed and not cam.started
    src.close()  # idempotent


def test_xrgb8888_drops_padding_and_reorders():
    a = np.array([[[10, 20, 30, 255]]], np.uint8)  # B, G, R, X
    assert bgr_memory_to_rgb(a).tolist() == [[[30, 20, 10]]]


def test_picamera_failure_is_source_lost():
    src = PicameraSource(8, 8, 0, factory=lambda: FakePicamera2(fail_after=1))
    src.open()
    src.read()
    with pytest.raises(SourceLost):
        src.read()


def test_picamera_cannot_open():
    def broken():
        raise IndexError("list index out of range")  # what Picamera2() raises with no camera

    with pytest.raises(SourceError, match="cannot open the Pi camera"):
        PicameraSource(factory=broken).open()


def test_picamera_not_importable_is_clear():
    import importlib.util

    if importlib.util.find_spec("picamera2"):
        pytest.skip("picamera2 is installed here")
    with pytest.raises(SourceError, match="python3-picamera2"):
        PicameraSource().open()


def test_sources_satisfy_protocol():
    for s in (PicameraSource(), OpenCVSource(0, True), FolderSource("."), DemoSource(), ListSource([])):
        assert isinstance(s, FrameSource)


def test_video_file_rgb_and_end(tmp_path):
    path = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for _ in range(3):
        w.write(np.full((24, 32, 3), (0, 0, 255), np.uint8))  # BGR red
    w.release()
    src = make_source(str(path))
    assert isinstance(src, OpenCVSource) and not src.live
    src.open()
    f = src.read()
    assert f[..., 0].mean() > 200 and f[..., 2].mean() < 50  # RGB red
    assert src.read() is not None and src.read() is not None and src.read() is None
    src.close()


class FakeCapture:
    def __init__(self, target, opened=True):
        self.opened = opened
        self.props = {}

    def isOpened(self):
        return self.opened

    def set(self, k, v):
        self.props[k] = v

    def read(self):
        return False, None

    def release(self):
        pass


def test_camera_device_settings_and_loss():
    cap = {}

    def factory(target):
        cap["c"] = FakeCapture(target)
        return cap["c"]

    src = OpenCVSource(0, True, 320, 240, 15, capture_factory=factory)
    src.open()
    assert cap["c"].props[cv2.CAP_PROP_FRAME_WIDTH] == 320
    assert cap["c"].props[cv2.CAP_PROP_BUFFERSIZE] == 1
    with pytest.raises(SourceLost):
        src.read()
    with pytest.raises(SourceError, match="cannot open camera"):
        OpenCVSource("/dev/video7", True, capture_factory=lambda t: FakeCapture(t, opened=False)).open()


def test_folder_sorted_skips_nothing_and_flags_corrupt(tmp_path):
    for i, c in enumerate([(255, 0, 0), (0, 255, 0)]):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), c[::-1], np.uint8))
    (tmp_path / "2.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    src = make_source(str(tmp_path))
    assert isinstance(src, FolderSource)
    src.open()
    assert [p.name for p in src.files] == ["0.png", "1.png", "2.jpg"]
    assert tuple(src.read()[0, 0]) == (255, 0, 0)
    assert tuple(src.read()[0, 0]) == (0, 255, 0)
    from edge.capture.sources import UnreadableFrame

    with pytest.raises(UnreadableFrame):
        src.read()
    assert src.read() is None


def test_empty_folder(tmp_path):
    with pytest.raises(SourceError, match="no images"):
        FolderSource(tmp_path).open()


def test_make_source_specs(tmp_path):
    assert isinstance(make_source("demo"), DemoSource)
    assert isinstance(make_source("picamera"), PicameraSource)
    s = make_source("0")
    assert isinstance(s, OpenCVSource) and s.target == 0 and s.live
    assert make_source("/dev/video2").live
    assert make_source("rtsp://cam.local/stream").live
    img = tmp_path / "a.jpg"
    cv2.imwrite(str(img), np.zeros((4, 4, 3), np.uint8))
    assert isinstance(make_source(str(img)), FolderSource)
    with pytest.raises(UsageError, match="unknown source"):
        make_source("no/such/thing.mp4")


def test_parse_source_spec_reads_the_text_only():
    from edge.capture.sources import SourceSpec, parse_source_spec

    assert [parse_source_spec(s).kind for s in ("demo", " auto ", "picamera", "picamera2", "picam")] == [
        "demo", "auto", "picamera", "picamera", "picamera"]
    assert parse_source_spec("2") == SourceSpec("camera", 2)
    assert parse_source_spec("/dev/video1") == SourceSpec("camera", "/dev/video1")
    assert parse_source_spec("RTSP://cam/s") == SourceSpec("stream", "RTSP://cam/s")
    assert parse_source_spec("no/such/thing.mp4") == SourceSpec("path", Path("no/such/thing.mp4"))


# ---- capture thread ----------------------------------------------------------------------

def fast_cfg(**kw):
    base = dict(open_timeout_s=1.0, reconnect_initial_s=0.01, reconnect_max_s=0.04, read_timeout_s=5.0)
    base.update(kw)
    return SourceConfig(**base)


def imgs(n):
    return [np.full((4, 4, 3), i, np.uint8) for i in range(n)]


def test_finite_source_delivers_every_frame_in_order():
    cap = Capture(ListSource(imgs(20)), fast_cfg()).start()
    got = []
    while not cap.ended:
        f = cap.get(0.2)
        if f is not None:
            got.append(int(f.image[0, 0, 0]))
            time.sleep(0.001)
    cap.stop()
    assert got == list(range(20)) and cap.dropped == 0


def until(cond, seconds=60.0, step=0.005):
    """Poll ``cond`` until true; the limit only catches a hang (never a slow CPU: make test-arm)."""
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, f"not within {seconds} s"
        time.sleep(step)


class RecordingStop:
    """A Capture's stop event that records each wait it is asked for (the back-off delays)."""

    def __init__(self, event, clock=None):
        self.event, self.clock, self.waits = event, clock, []

    def wait(self, timeout=None):
        self.waits.append(timeout)
        if self.clock is not None:  # virtual time: the wait passes at once
            self.clock.t += timeout
            return self.event.is_set()
        return self.event.wait(timeout)

    def __getattr__(self, name):
        return getattr(self.event, name)


def test_live_source_keeps_newest_and_counts_drops():
    src = ListSource(imgs(60), live=True)
    cap = Capture(src, fast_cfg(give_up_after_s=0.05)).start()
    until(lambda: cap.captured == 60)  # a consumer slower than the camera: it took none of them
    f = cap.get(0.1)
    cap.stop()
    assert f is not None and int(f.image[0, 0, 0]) == 59  # the newest, not the first
    assert cap.dropped == cap.captured - 1 == 59


def test_unreadable_frames_are_skipped_and_counted():
    from edge.capture.sources import UnreadableFrame

    class Flaky(ListSource):
        def read(self):
            if self.i == 1:
                self.i += 1
                raise UnreadableFrame("bad jpeg")
            return super().read()

    cap = Capture(Flaky(imgs(4)), fast_cfg()).start()
    got = []
    while not cap.ended:
        f = cap.get(0.2)
        if f is not None:
            got.append(int(f.image[0, 0, 0]))
    cap.stop()
    assert got == [0, 2, 3] and cap.unreadable == 1


def test_camera_never_opens():
    """Retries with back-off until open_timeout_s, then one error; in the capture's clock,
    whose waits pass at once here, so the count is exact on any CPU."""
    src = ListSource([], live=True, fail_open=1000)
    clock = FakeClock()
    cap = Capture(src, fast_cfg(open_timeout_s=0.2), clock=clock)
    cap._stop = stop = RecordingStop(cap._stop, clock)
    with pytest.raises(SourceError, match=r"gave up after trying for 0\.2 s, source.open_timeout_s = 0\.2"):
        cap.start()
    assert stop.waits == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04, 0.04])  # the next would pass 0.2 s
    assert src.opens == 7


def test_camera_opens_on_retry():
    src = ListSource(imgs(3), live=True, fail_open=2)
    cap = Capture(src, fast_cfg())
    cap._stop = stop = RecordingStop(cap._stop)
    cap.start()
    until(lambda: cap.get(0.05) is not None)
    cap.stop()
    assert src.opens == 3 and stop.waits[:2] == [0.01, 0.02]
    assert cap.captured >= 1 and cap.error is None


def test_camera_lost_reconnects_with_backoff():
    # Enough frames that the camera never runs dry during the test (a second loss) on a slow CPU.
    src = ListSource(imgs(200) * 25, live=True, lose_at={5})
    src.fail_open = 0
    orig_open = src.open
    failed_reopens = []

    def open_():
        if src.opens >= 1 and len(failed_reopens) < 3:
            failed_reopens.append(time.monotonic())
            src.opens += 1
            raise SourceError("camera gone")
        orig_open()

    src.open = open_
    cap = Capture(src, fast_cfg())
    cap._stop = stop = RecordingStop(cap._stop)
    cap.start()
    saw_lost = False

    def reconnected():
        nonlocal saw_lost
        saw_lost |= cap.lost
        cap.get(0.005)
        return cap.reconnects > 0

    until(reconnected)
    until(lambda: cap.get(0.05) is not None)  # frames flow again
    cap.stop()
    assert saw_lost and cap.reconnects == 1 and not cap._lost and len(failed_reopens) == 3
    # The waits before each reopen, asked of the stop event: doubling from reconnect_initial_s
    # (0.01) up to reconnect_max_s (0.04); the 4th reopen succeeded.
    assert stop.waits == pytest.approx([0.01, 0.02, 0.04, 0.04])


def test_camera_gone_for_good_gives_up():
    src = ListSource(imgs(3), live=True)
    cap = Capture(src, fast_cfg(give_up_after_s=0.1)).start()
    src.fail_open = 10**6
    until(lambda: cap.get(0.05) is None and cap.ended)
    cap.stop()
    assert cap.ended and isinstance(cap.error, SourceError) and "giving up" in str(cap.error)


def test_silent_camera_counts_as_lost():
    """A live camera that blocks in read() without delivering counts as lost after read_timeout_s."""
    t = [0.0]
    src = ListSource(imgs(1), live=True)
    cap = Capture(src, fast_cfg(read_timeout_s=1.0), clock=lambda: t[0])
    cap._thread = object()  # pretend started; only the timeout logic is under test
    cap._last_frame_at = 0.0
    t[0] = 0.5
    assert not cap.lost
    t[0] = 1.5
    assert cap.lost


# ---- demo --------------------------------------------------------------------------------

def test_demo_clip_is_deterministic_and_shows_both_appearances():
    a, b = DemoSource(), DemoSource()
    a.open()
    b.open()
    n = len(a)
    assert n >= 90
    kinds = {a.appearance_at(i) for i in range(n)}
    assert kinds == {None, "unmasked", "masked"}
    i = next(i for i in range(n) if a.appearance_at(i) == "masked")
    assert np.array_equal(a.render(i), b.render(i))
    frames = 0
    while a.read() is not None:
        frames += 1
    assert frames == n


def test_mask_covers_lower_face_only():
    photo = load_photo()
    masked = draw_mask(photo)
    diff = np.abs(masked.astype(int) - photo.astype(int)).sum(axis=2) > 30
    ys, xs = np.nonzero(diff)
    # Eyes (y ~ 195 in the photo) stay visible; mouth (y ~ 275) is covered.
    assert not diff[190:200, 200:320].any()
    assert diff[270:280, 230:290].mean() > 0.9
    assert ys.max() < 380


def test_quiet_opencv_works_with_either_opencv_logging_api(monkeypatch):
    """x86's OpenCV 4.14 has cv2.utils.logging, the Pi's 4.11 aarch64 wheel only cv2.setLogLevel
    (make test-arm caught an AttributeError there)."""
    import sys
    import types

    from edge.capture import sources

    monkeypatch.delenv("OPENCV_LOG_LEVEL", raising=False)
    calls = []
    pi_cv2 = types.SimpleNamespace(setLogLevel=lambda level: calls.append(("top", level)),
                                   utils=types.SimpleNamespace())
    monkeypatch.setitem(sys.modules, "cv2", pi_cv2)
    sources.quiet_opencv()
    assert calls == [("top", 0)]
    x86_logging = types.SimpleNamespace(LOG_LEVEL_SILENT=0, setLogLevel=lambda level: calls.append(("utils", level)))
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(utils=types.SimpleNamespace(logging=x86_logging)))
    sources.quiet_opencv()
    assert calls[-1] == ("utils", 0)


def test_lores_size_keeps_the_main_aspect_and_covers_the_detector_input():
    from edge.capture.sources import lores_size

    assert lores_size(416, 320, 640, 480) == (448, 336)  # 4:3, width a multiple of 64
    assert lores_size(416, 320, 1280, 720) == (576, 324)  # 16:9: the height covers 320
    assert lores_size(416, 320, 320, 240) == (320, 240)  # never larger than the main stream


def test_picamera_lores_stream_comes_with_each_main_frame():
    src = PicameraSource(640, 480, 0, factory=FakePicamera2, lores=(448, 336))
    src.open()
    cam = FakePicamera2.instances[-1]
    assert cam.config["lores"] == {"size": (448, 336), "format": "YUV420"}
    frame = src.read()
    lo = src.take_lores()
    assert frame.shape == (480, 640, 3) and lo.shape == (336, 448, 3)
    assert tuple(frame[0, 0]) == (255, 0, 0) and lo[..., 0].min() > 240 and lo[..., 1:].max() < 15  # red both
    assert src.take_lores() is None  # once per frame
    src.close()


def test_capture_puts_the_lores_image_into_the_frame():
    src = PicameraSource(64, 48, 0, factory=FakePicamera2, lores=(64, 48))
    cap = Capture(src, SourceConfig())
    cap.start()
    try:
        f = cap.get(timeout=5.0)
        assert f is not None and f.lores is not None and f.lores.shape == (48, 64, 3)
    finally:
        cap.stop()


def test_picamera_that_refuses_the_lores_stream_runs_on_the_main_one(caplog):
    class NoLores(FakePicamera2):
        def configure(self, conf):
            if conf.get("lores"):
                raise RuntimeError("Failed to configure stream")
            super().configure(conf)

    src = PicameraSource(64, 48, 0, factory=NoLores, lores=(64, 48))
    src.open()
    assert src.lores is None and "no lores stream" in caplog.text
    assert src.read().shape == (48, 64, 3) and src.take_lores() is None
    src.close()


def test_picamera_without_lores_asks_for_none():
    src = PicameraSource(64, 48, 0, factory=FakePicamera2)
    src.open()
    assert FakePicamera2.instances[-1].config["lores"] is None
    src.read()
    assert src.take_lores() is None
    src.close()
