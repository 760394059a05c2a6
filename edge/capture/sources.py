"""Frame sources and the capture thread.

Every source gives RGB uint8 frames (H x W x 3, R,G,B order). A source is
either *live* (a camera or a stream: frames keep coming whether or not we keep
up, so the capture thread keeps only the newest and counts the ones it drops;
a source that stops delivering is reopened with exponential back-off) or
*finite* (a video file, an image folder, the demo: every frame is processed in
order, and the end of the input ends the run).

Sources (``make_source`` spec):

    picamera              the Pi camera through picamera2 (libcamera); also picamera2, picam
    /dev/video0, 0        a V4L2/USB camera through OpenCV
    rtsp://..., http://   a network stream through OpenCV (live)
    clip.mp4              a video file through OpenCV
    some/folder/          the images in a folder, sorted by name
    photo.jpg             one image
    demo                  the built-in synthetic doorway (edge/capture/demo.py)
    auto                  picamera when picamera2 imports, else /dev/video0
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..settings.source import SourceConfig
from ..errors import SourceError, UsageError
from ..types import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class SourceLost(SourceError):
    """A live source stopped delivering frames (camera unplugged, stream dropped)."""


class UnreadableFrame(SourceError):
    """One frame could not be decoded; the source itself is still usable."""


@runtime_checkable
class FrameSource(Protocol):
    """What the capture thread needs from a source.

    Attributes:
        name: for logs ("picamera", "/dev/video0", "demo", ...).
        live: True for cameras/streams (newest frame wins, reconnect on loss).
    """

    name: str
    live: bool

    def open(self) -> None:
        """Open the device/file. Raises SourceError when it cannot."""

    def read(self) -> np.ndarray | None:
        """Next RGB frame; None at the end of a finite source.

        Raises:
            SourceLost: a live source stopped delivering.
            UnreadableFrame: this frame is corrupt (the next may be fine).
        """

    def close(self) -> None:
        """Release the device (idempotent)."""


# ---- picamera2 ---------------------------------------------------------------------------

def bgr_memory_to_rgb(array: np.ndarray) -> np.ndarray:
    """picamera2 "RGB888"/"XRGB8888" buffer -> R,G,B frame.

    libcamera names formats after the little-endian pixel *word*, so "RGB888"
    stores each pixel as the bytes B, G, R (and "XRGB8888" as B, G, R, X). A
    numpy array from ``capture_array`` therefore has channel 0 = blue; reverse
    the first three channels. (picamera2's "BGR888" would be R,G,B in memory;
    we request "RGB888" because it is what the Pi camera stack and its
    examples default to.)
    """
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise UnreadableFrame(f"picamera2 returned an array of shape {array.shape}, expected H x W x 3/4")
    return np.ascontiguousarray(array[..., 2::-1])


def lores_size(detector_w: int, detector_h: int, main_w: int, main_h: int) -> tuple[int, int]:
    """The lores stream's size: the main stream's aspect ratio (same field of view, no
    stretch), covering the detector's input, width a multiple of 64 (picamera2's YUV420
    alignment: no row padding) and at most the main stream's size."""
    scale = max(detector_w / main_w, detector_h / main_h)
    w = min(main_w, -(-round(main_w * scale) // 64) * 64)
    h = min(main_h, 2 * round(w * main_h / main_w / 2))
    return max(64, w), max(2, h)


def yuv420_to_rgb(array: np.ndarray, width: int, height: int) -> np.ndarray:
    """A picamera2 "YUV420" (I420) array, (height * 3/2, width) uint8, as an R,G,B image."""
    if array.ndim != 2 or array.shape[0] != height * 3 // 2 or array.shape[1] < width:
        raise UnreadableFrame(f"picamera2 lores array of shape {array.shape}, expected "
                              f"({height * 3 // 2}, {width}) YUV420")
    if array.shape[1] != width:
        raise UnreadableFrame(f"picamera2 lores rows are padded ({array.shape[1]} for {width} pixels): "
                              "use a width that is a multiple of 64")
    import cv2

    return cv2.cvtColor(array, cv2.COLOR_YUV2RGB_I420)


class PicameraSource:
    """The Pi camera through picamera2.

    Args:
        width, height, fps: requested main-stream size and frame rate (fps 0: camera default).
        factory: builds the camera (default ``picamera2.Picamera2``); tests pass a fake.
        lores: (width, height) of a second, low-resolution YUV420 stream taken from the same
            request as each main frame (``take_lores``), or None; ``set_lores`` before opening.
    """

    live = True

    def __init__(self, width: int = 640, height: int = 480, fps: float = 0.0,
                 factory: Callable[[], Any] | None = None, lores: tuple[int, int] | None = None):
        self.name = "picamera"
        self.width, self.height, self.fps = width, height, fps
        self._factory = factory
        self._cam = None
        self.lores = lores
        self._lores_frame: np.ndarray | None = None

    def set_lores(self, size: tuple[int, int] | None) -> None:
        """Ask for the lores stream at ``size`` (or none) from the next ``open``."""
        self.lores = size

    def take_lores(self) -> np.ndarray | None:
        """The lores image (RGB) of the frame ``read`` returned last, once."""
        lo, self._lores_frame = self._lores_frame, None
        return lo

    def open(self) -> None:
        factory = self._factory
        if factory is None:
            try:
                from picamera2 import Picamera2  # type: ignore[import-not-found]
            except ImportError as e:
                raise SourceError(
                    "picamera2 is not importable: on a Pi install python3-picamera2 (apt) and make the "
                    "venv with --system-site-packages; elsewhere use --source /dev/video0, a file or demo"
                ) from e
            factory = Picamera2
        try:
            cam = factory()
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            main = {"size": (self.width, self.height), "format": "RGB888"}
            if self.lores:
                try:
                    cam.configure(cam.create_video_configuration(
                        main=main, controls=controls, lores={"size": tuple(self.lores), "format": "YUV420"}))
                except Exception as e:  # a camera/ISP that refuses the second stream: main only
                    log.warning("picamera: no lores stream %dx%d (%s: %s): the detector takes the main stream",
                                *self.lores, type(e).__name__, e)
                    self.lores = None
            if not self.lores:
                cam.configure(cam.create_video_configuration(main=main, controls=controls))
            cam.start()
        except SourceError:
            raise
        except Exception as e:  # libcamera raises RuntimeError/IndexError/OSError for "no camera"
            raise SourceError(f"cannot open the Pi camera: {type(e).__name__}: {e}") from e
        self._cam = cam

    def read(self) -> np.ndarray:
        if self._cam is None:
            raise SourceLost("picamera is not open")
        try:
            if self.lores:
                # Both streams of one request: the lores image shows the same instant.
                (array, lo), _ = self._cam.capture_arrays(["main", "lores"])
            else:
                array = self._cam.capture_array("main")
        except Exception as e:
            raise SourceLost(f"Pi camera stopped delivering frames: {type(e).__name__}: {e}") from e
        if self.lores:
            self._lores_frame = yuv420_to_rgb(lo, *self.lores)
        return bgr_memory_to_rgb(array)

    def close(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            for step in (cam.stop, cam.close):
                try:
                    step()
                except Exception as e:  # closing a vanished camera can fail; we are done with it
                    log.debug("picamera close: %s", e)


# ---- OpenCV: devices, files, streams -----------------------------------------------------

def quiet_opencv() -> None:
    """Keep OpenCV's and FFmpeg's own log lines off stderr (unless --log-level DEBUG).

    A closed RTSP port, a missing camera index or a garbage .mp4 gave the right exit code,
    but the one line saying so was buried under ``[ WARN:0@0.6] global cap_v4l.cpp ...``
    and ``[tcp @ 0x...] Connection ... failed`` lines; doorguard's own message names the
    source and what went wrong. OPENCV_LOG_LEVEL / OPENCV_FFMPEG_LOGLEVEL set by the user win.
    """
    if logging.getLogger("doorguard").isEnabledFor(logging.DEBUG):
        return
    # AV_LOG_QUIET; read when OpenCV's FFmpeg backend starts (the first capture of the process).
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    if "OPENCV_LOG_LEVEL" not in os.environ:
        import cv2

        # OpenCV 4.14 (x86 wheel) has cv2.utils.logging; the Pi's 4.11 aarch64 wheel has only
        # the top-level cv2.setLogLevel (0 = LOG_LEVEL_SILENT). Found by make test-arm.
        levels = getattr(getattr(cv2, "utils", None), "logging", None)
        if levels is not None and hasattr(levels, "setLogLevel"):
            levels.setLogLevel(levels.LOG_LEVEL_SILENT)
        elif hasattr(cv2, "setLogLevel"):
            cv2.setLogLevel(0)


class OpenCVSource:
    """A V4L2/USB camera, a network stream or a video file through cv2.VideoCapture.

    Args:
        target: camera index (int), device path, URL or file path.
        live: camera/stream (True) or file (False).
        width, height, fps: requested capture settings (cameras only).
        loop: files: rewind at the end.
        capture_factory: builds the capture (default ``cv2.VideoCapture``); tests pass a fake.
    """

    def __init__(self, target: int | str, live: bool, width: int = 640, height: int = 480,
                 fps: float = 0.0, loop: bool = False, capture_factory: Callable[..., Any] | None = None):
        self.target = target
        self.name = str(target)
        self.live = live
        self.width, self.height, self.fps, self.loop = width, height, fps, loop
        self._factory = capture_factory
        self._cap = None

    def open(self) -> None:
        import cv2

        quiet_opencv()
        if self._factory is None and isinstance(self.target, str) and self.target.startswith("/dev/") \
                and not Path(self.target).exists():
            # Say so plainly (and spare OpenCV's own warning on every retry).
            raise SourceError(f"cannot open camera {self.name}: no such device")
        factory = self._factory or cv2.VideoCapture
        cap = factory(self.target)
        if not cap.isOpened():
            cap.release()
            kind = "camera" if self.live and not str(self.target).startswith(STREAM_PREFIXES) else (
                "stream" if self.live else "video file")
            raise SourceError(f"cannot open {kind} {self.name}")
        if self.live and not str(self.target).startswith(STREAM_PREFIXES):
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            # Keep the driver queue short: we want the newest frame, not a backlog.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        import cv2

        if self._cap is None:
            raise SourceLost(f"{self.name} is not open")
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            if self.live:
                raise SourceLost(f"{self.name} stopped delivering frames")
            if self.loop:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return None
        if bgr.ndim == 2:
            return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        # OpenCV decodes to B,G,R.
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


# ---- image folder ------------------------------------------------------------------------

class FolderSource:
    """The images of a folder (or one image), sorted by name; a finite source."""

    live = False
    #: Unrelated photos by default: the run judges each on its own (``source.per_image``).
    per_image = True

    def __init__(self, path: Path | str, loop: bool = False):
        self.path = Path(path)
        self.name = str(self.path)
        self.loop = loop
        self.files: list[Path] = []
        self._i = 0
        self._decoded = 0  # images decoded in this pass over the files

    def open(self) -> None:
        quiet_opencv()
        if self.path.is_file():
            self.files = [self.path]
        else:
            try:
                self.files = sorted(p for p in self.path.iterdir()
                                    if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            except OSError as e:
                raise SourceError(f"cannot list image folder {self.path}: {e.strerror}") from e
        if not self.files:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {self.path}")
        self._i = 0
        self._decoded = 0

    def read(self) -> np.ndarray | None:
        import cv2

        if self._i >= len(self.files):
            if not self._decoded:
                # Every file was corrupt: that is the source failing (exit 5), not a run of 0 frames
                # that exits 0 (and, looping, it would warn about the same files forever).
                raise SourceError(f"no readable image in {self.path}: all {len(self.files)} file(s) failed "
                                  "to decode")
            if not self.loop:
                return None
            self._i = 0
            self._decoded = 0
        path = self.files[self._i]
        self._i += 1
        try:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        except cv2.error as e:  # e.g. a header claiming an image larger than OpenCV accepts
            raise UnreadableFrame(f"cannot decode image {path}: {str(e).strip().splitlines()[-1]}") from e
        if bgr is None:
            raise UnreadableFrame(f"cannot decode image {path}")
        self._decoded += 1
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        pass


# ---- factory -----------------------------------------------------------------------------

#: Spellings of the Pi camera source.
PICAMERA_ALIASES = ("picamera", "picamera2", "picam")


@dataclass(frozen=True)
class SourceSpec:
    """What a source spec names, read off its text alone (no file or camera is opened).

    Attributes:
        kind: ``demo``, ``auto`` (picamera or /dev/video0, decided when opened),
            ``picamera``, ``camera`` (V4L2), ``stream`` (a URL) or ``path`` (a
            file or folder, which may not exist).
        target: the camera's index (int) or device path, the URL, or the path; None
            for demo, auto and picamera.
    """

    kind: str
    target: int | str | Path | None = None


def parse_source_spec(spec: str) -> SourceSpec:
    """Classify a source spec (see the module docstring): the one reading of a spec, for
    ``make_source`` and for ``doorguard doctor``'s camera check."""
    s = spec.strip()
    if s in ("demo", "auto"):
        return SourceSpec(s)
    if s in PICAMERA_ALIASES:
        return SourceSpec("picamera")
    if s.isdigit():
        return SourceSpec("camera", int(s))
    if s.startswith("/dev/video"):
        return SourceSpec("camera", s)
    if s.lower().startswith(STREAM_PREFIXES):
        return SourceSpec("stream", s)
    return SourceSpec("path", Path(s).expanduser())


def make_source(spec: str, cfg: SourceConfig | None = None) -> FrameSource:
    """Build the source a spec names (see the module docstring).

    Raises:
        UsageError: the spec names no known kind of source (exit 2).
    """
    cfg = cfg or SourceConfig()
    sp = parse_source_spec(spec)
    if sp.kind == "demo":
        from .demo import DemoSource

        return DemoSource(loop=cfg.loop)
    if sp.kind == "auto":
        try:
            import picamera2  # type: ignore[import-not-found] # noqa: F401

            sp = SourceSpec("picamera")
        except ImportError:
            sp = parse_source_spec("/dev/video0")
            log.info("source auto: picamera2 not importable, using %s", sp.target)
    if sp.kind == "picamera":
        return PicameraSource(cfg.width, cfg.height, cfg.fps)
    if sp.kind in ("camera", "stream"):
        return OpenCVSource(sp.target, True, cfg.width, cfg.height, cfg.fps)
    p = sp.target
    if p.is_dir() or (p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
        return FolderSource(p, loop=cfg.loop)
    if p.is_file():
        return OpenCVSource(str(p), False, loop=cfg.loop)
    raise UsageError(
        f"unknown source {spec!r}: not demo, picamera, a camera (/dev/videoN or N), a URL, "
        f"or an existing file or folder"
    )


def _frame_problem(image) -> str | None:
    """Why an array is not an H x W x 3 uint8 frame, or None when it is one."""
    if not isinstance(image, np.ndarray):
        return f"got {type(image).__name__}, not an array"
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        return f"array {image.shape} {image.dtype}, expected H x W x 3 uint8"
    return None


# ---- capture thread ----------------------------------------------------------------------

class Capture:
    """Runs a source in its own thread and hands the loop the newest frame.

    Live sources: each new frame replaces an unconsumed one (counted in
    ``dropped``), so inference never works on a stale queue; a lost source is
    reopened with exponential back-off (``lost`` is True meanwhile, for the
    fault pattern). Finite sources: the thread waits until the loop took the
    previous frame, so every frame is processed, and the end of the input ends
    the run.

    Args:
        source: the FrameSource.
        cfg: timeouts and back-off ([source] section).
        clock: monotonic clock; wall: wall clock for frame timestamps (both injectable).
    """

    def __init__(self, source: FrameSource, cfg: SourceConfig | None = None,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        self.source = source
        self.cfg = cfg or SourceConfig()
        self.clock, self.wall = clock, wall
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._frame: Frame | None = None
        self._ended = False
        self._thread: threading.Thread | None = None
        self._last_frame_at = 0.0
        self.error: SourceError | None = None
        self.captured = 0
        self.dropped = 0
        self.unreadable = 0
        self.reconnects = 0
        #: Times the source was lost: the loop compares it, so even an outage
        #: shorter than one frame wait shows the fault pattern.
        self.losses = 0
        self._lost = False
        # Back-off state survives a reopen that succeeds but delivers nothing;
        # only a real frame resets it.
        self._lost_since: float | None = None
        self._delay = self.cfg.reconnect_initial_s

    # -- life cycle ----------------------------------------------------------------------
    def start(self, on_retry: Callable[[], None] | None = None) -> "Capture":
        """Open the source (retrying live sources until ``open_timeout_s``) and start the thread.

        Args:
            on_retry: called before each wait for a retry (the runner shows the fault pattern).

        Raises:
            SourceError: the source never opened.
        """
        t0 = self.clock()
        deadline = t0 + self.cfg.open_timeout_s
        delay = self.cfg.reconnect_initial_s
        while True:
            try:
                self.source.open()
                break
            except SourceError as e:
                if not self.source.live or self.clock() + delay > deadline:
                    # Name the limit that was hit: "after 7.5 s, open_timeout_s = 10" alone read
                    # as if it gave up early (the next retry would have ended past the limit).
                    raise SourceError(f"{e} (gave up after trying for {self.clock() - t0:.1f} s, "
                                      f"source.open_timeout_s = {self.cfg.open_timeout_s:g} s is the limit hit: "
                                      f"the next try, {delay:g} s later, would pass it)"
                                      if self.source.live else str(e)) from e
                if on_retry is not None:
                    on_retry()
                log.warning("%s; retrying in %.1f s", e, delay)
                if self._stop.wait(delay):
                    raise SourceError(f"{self.source.name}: stopped while opening") from e
                delay = min(delay * 2, self.cfg.reconnect_max_s)
        self._last_frame_at = self.clock()
        self._thread = threading.Thread(target=self._run, name="capture", daemon=True)
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the thread (or a ``start`` still retrying) to stop; safe from a signal handler."""
        self._stop.set()

    def stop(self) -> None:
        """Stop the thread and close the source (idempotent)."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        t = self._thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=5.0)
        try:
            self.source.close()
        except Exception as e:  # closing must never mask the real exit reason
            log.debug("closing %s: %s", self.source.name, e)

    def __enter__(self) -> "Capture":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- consumer side -------------------------------------------------------------------
    @property
    def lost(self) -> bool:
        """True while a live source is lost (reconnecting) or silent past ``read_timeout_s``."""
        if self._lost:
            return True
        return (self.source.live and self._thread is not None and not self._ended
                and self.clock() - self._last_frame_at > self.cfg.read_timeout_s)

    @property
    def ended(self) -> bool:
        """No more frames will come (end of a finite source, stop, or gave up)."""
        with self._cond:
            return self._ended and self._frame is None

    def get(self, timeout: float = 0.5) -> Frame | None:
        """The newest frame not yet taken, waiting up to ``timeout`` seconds.

        Returns:
            A Frame, or None when none arrived in time or the source ended
            (check ``ended`` and ``error``).
        """
        with self._cond:
            if self._frame is None and not self._ended:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is not None:
                self._cond.notify_all()  # a finite source waits for this
            return frame

    # -- producer side -------------------------------------------------------------------
    def _publish(self, image: np.ndarray, lores: np.ndarray | None = None) -> bool:
        with self._cond:
            if not self.source.live:
                while self._frame is not None and not self._stop.is_set():
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return False
            elif self._frame is not None:
                self.dropped += 1
            self._frame = Frame(image, self.wall(), self.captured, lores)
            self.captured += 1
            self._last_frame_at = self.clock()
            if self._lost:
                log.info("camera %s delivering again after %.1f s", self.source.name,
                         self.clock() - (self._lost_since or self.clock()))
            self._lost = False
            self._lost_since = None
            self._delay = self.cfg.reconnect_initial_s
            self._cond.notify_all()
        return True

    def _end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _run(self) -> None:
        pace = 1.0 / self.cfg.fps if (self.cfg.fps and not self.source.live) else 0.0
        next_at = self.clock()
        try:
            while not self._stop.is_set():
                try:
                    image = self.source.read()
                except UnreadableFrame as e:
                    self.unreadable += 1
                    log.warning("unreadable frame skipped (%d so far): %s", self.unreadable, e)
                    continue
                except SourceError as e:
                    if not self.source.live:
                        self.error = e
                        log.error("%s", e)
                        return
                    if not self._reconnect(e):
                        return
                    continue
                except Exception as e:  # a driver bug must not kill the thread silently
                    if not self.source.live:
                        self.error = SourceError(f"{self.source.name}: {type(e).__name__}: {e}")
                        return
                    if not self._reconnect(SourceLost(f"{type(e).__name__}: {e}")):
                        return
                    continue
                if image is None:
                    if not self.source.live:
                        return
                    # A camera never "ends": None from a live driver is a lost camera, not
                    # the end of the run (exit 0 would keep systemd from restarting us).
                    if not self._reconnect(SourceLost(f"{self.source.name} returned no frame")):
                        return
                    continue
                bad = _frame_problem(image)
                if bad:
                    # A garbage frame must not reach the models (MAX_MODEL_FAILURES would stop
                    # the run as a model fault); a camera that sends only garbage times out
                    # as lost (read_timeout_s) and shows the fault pattern.
                    self.unreadable += 1
                    if self.unreadable == 1 or self.unreadable % 100 == 0:
                        log.warning("invalid frame skipped (%d so far): %s", self.unreadable, bad)
                    continue
                if pace:
                    next_at += pace
                    delay = next_at - self.clock()
                    if delay > 0 and self._stop.wait(delay):
                        return
                take = getattr(self.source, "take_lores", None)
                if not self._publish(image, take() if take is not None else None):
                    return
        finally:
            self._end()

    def _reconnect(self, why: SourceError) -> bool:
        """Reopen a lost live source with exponential back-off; False when giving up or stopping."""
        if self._lost_since is None:
            self._lost_since = self.clock()
            self.losses += 1
            log.error("camera lost: %s; reconnecting", why)
        else:
            log.warning("camera %s still failing: %s", self.source.name, why)
        with self._cond:
            self._lost = True
            # Wake the loop now, so it shows the fault pattern while we wait.
            self._cond.notify_all()
        while not self._stop.is_set():
            try:
                self.source.close()
            except Exception as e:
                log.debug("close after loss: %s", e)
            gone = self.clock() - self._lost_since
            if self.cfg.give_up_after_s and gone >= self.cfg.give_up_after_s:
                self.error = SourceError(f"camera {self.source.name} lost for {gone:.0f} s, giving up "
                                         f"(source.give_up_after_s = {self.cfg.give_up_after_s:g} s is the "
                                         f"limit hit): {why}")
                log.error("%s", self.error)
                return False
            delay = self._delay
            self._delay = min(self._delay * 2, self.cfg.reconnect_max_s)
            if self._stop.wait(delay):
                return False
            try:
                self.source.open()
            except SourceError as e:
                why = e
                log.warning("reopen %s failed (%s); next try in %.1f s", self.source.name, e, self._delay)
                continue
            self.reconnects += 1
            self._last_frame_at = self.clock()
            log.info("camera %s reopened (attempt after %.1f s)", self.source.name, self.clock() - self._lost_since)
            return True
        return False
