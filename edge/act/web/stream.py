"""The live view: the newest frame drawn and JPEG-encoded on a viewer's request thread.

Nothing is encoded while nobody watches. A stream sends at most ``live_fps`` frames a
second, a frame only when the loop has handed over a new one (and the last one again
every 2 s, which also notices a viewer that went away), and at most ``max_viewers``
streams run at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ...settings.web import WebConfig
from .render import render_frame

log = logging.getLogger("doorguard.web")

LatestFrameFn = Callable[[], "tuple[np.ndarray, Sequence[Any]] | None"]


class LiveView:
    """Annotated JPEGs of the newest frame, for the page's live view.

    Args:
        cfg: the ``[web]`` section (``live_fps``, ``live_width``, ``jpeg_quality``, ``max_viewers``).
        latest_frame: returns the newest ``(rgb_image, overlays)`` or None
            (e.g. :meth:`edge.act.web.handover.LiveFrame.get`).
        fps: the loop's frames per second (or None), drawn on each frame; called about
            once a second per stream.
    """

    def __init__(self, cfg: WebConfig, latest_frame: LatestFrameFn, fps: Callable[[], float | None]) -> None:
        self.cfg = cfg
        self._latest = latest_frame
        self._fps = fps
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._viewers = 0
        #: JPEG frames sent to live viewers so far (all streams together).
        self.frames_sent = 0

    @property
    def viewers(self) -> int:
        """Streams open now."""
        return self._viewers

    def frame(self) -> bytes | None:
        """One annotated JPEG of the newest frame; None before the first frame.

        Raises:
            ValueError: the image cannot be encoded.
        """
        fps = self._fps()
        item = self._latest()
        if item is None:
            return None
        image, overlays = item
        return render_frame(image, overlays or (), self.cfg.live_width, fps, self.cfg.jpeg_quality)

    def stream(self, still_allowed: Callable[[], bool]) -> "_Closing | None":
        """A ``multipart/x-mixed-replace`` body for one viewer, or None when ``max_viewers`` watch already.

        Args:
            still_allowed: checked before each frame (the viewer's session); the stream ends once it is False.
        """
        with self._lock:
            if self._viewers >= self.cfg.max_viewers:
                return None
            self._viewers += 1
        return _Closing(self._mjpeg(still_allowed), self._viewer_left)

    def stop(self) -> None:
        """End every stream at its next frame (the page is closing)."""
        self._stop.set()

    def _mjpeg(self, still_allowed: Callable[[], bool]) -> Iterator[bytes]:
        period = 1.0 / self.cfg.live_fps
        # Holding the last image (not its id) keeps one frame alive per viewer, and a new
        # array can never be mistaken for the last one because it reused its address.
        last_image: np.ndarray | None = None
        last_jpeg: bytes | None = None
        last_sent = 0.0
        fps: float | None = None
        fps_at = float("-inf")
        while not self._stop.is_set() and still_allowed():
            t0 = time.monotonic()
            if t0 - fps_at >= 1.0:
                fps, fps_at = self._fps(), t0
            item = self._latest()
            jpeg = None
            if item is not None and item[0] is not last_image:
                last_image = item[0]
                try:
                    jpeg = render_frame(item[0], item[1] or (), self.cfg.live_width, fps, self.cfg.jpeg_quality)
                    last_jpeg = jpeg
                except Exception as e:  # noqa: BLE001 - one bad frame must not end the view
                    log.warning("web: live frame not encoded: %s: %s", type(e).__name__, e)
            elif last_jpeg is not None and t0 - last_sent > 2.0:
                # No new frame (camera lost?): resend the last one now and then, which also
                # notices a viewer that went away (only a write fails on a closed socket).
                jpeg = last_jpeg
            if jpeg is not None:
                yield (b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                       + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                last_sent = t0
                self.frames_sent += 1
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))

    def _viewer_left(self) -> None:
        with self._lock:
            self._viewers -= 1


class _Closing:
    """A response body that calls ``on_close`` exactly once when the server closes it.

    A generator's ``finally`` never runs when the generator was not started
    (a viewer gone before the first frame); WSGI always calls ``close()``.
    """

    def __init__(self, it: Iterator[bytes], on_close: Callable[[], None]) -> None:
        self._it = it
        self._on_close = on_close
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self._it

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._it.close()  # type: ignore[attr-defined]
        finally:
            self._on_close()
