"""``--annotate OUT.mp4``: a video of the run with boxes, labels and verdicts (dry runs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..errors import UsageError
from ..pipeline import FrameResult
from ..types import Verdict

# BGR colours (the writer takes OpenCV's B,G,R order).
COLOURS = {Verdict.VIOLATION: (40, 40, 230), Verdict.COMPLIANT: (60, 200, 60),
           Verdict.NEUTRAL: (200, 200, 200), None: (0, 215, 255)}


def draw(result: FrameResult, verdicts: dict[int, str], extra: str = "") -> np.ndarray:
    """BGR image of a frame with each track's box, id, label, vote count and verdict.

    Args:
        result: the pipeline's result for the frame.
        verdicts: track id -> verdict of its settled label (absent: unsettled, drawn yellow).
        extra: a status line for the top-left corner.
    """
    img = cv2.cvtColor(result.frame.image, cv2.COLOR_RGB2BGR)
    for t in result.tracks:
        if t.missed:
            continue
        verdict = verdicts.get(t.id)
        colour = COLOURS.get(verdict, COLOURS[None])
        b = t.box
        p1, p2 = (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2))
        cv2.rectangle(img, p1, p2, colour, 2)
        c = result.classified.get(t.id)
        now = f" now {c.label} {c.score:.2f}" if c else ""
        settled = f"{t.label} {t.score:.2f} {verdict}" if t.label else f"voting {len(t.votes)}/{t.window}"
        text = f"#{t.id} {settled}{now}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        y = max(th + 4, p1[1] - 4)
        cv2.rectangle(img, (p1[0], y - th - 4), (p1[0] + tw + 4, y + 2), colour, -1)
        cv2.putText(img, text, (p1[0] + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for boxes in getattr(result, "hands", {}).values():
        for b in boxes:  # hand boxes the face-touch check found near a face (orange, thin)
            cv2.rectangle(img, (int(b.x1), int(b.y1)), (int(b.x2), int(b.y2)), (0, 140, 255), 1)
    if extra:
        cv2.putText(img, extra, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(img, extra, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return img


class AnnotatedVideo:
    """Writes annotated frames to an .mp4 (mp4v), opened on the first frame (size known then).

    Frames of another size (an image folder) are letterboxed onto the first size.
    """

    def __init__(self, path: Path | str, fps: float = 15.0):
        self.path = Path(path)
        self.fps = fps
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0
        parent = self.path.parent
        if not parent.is_dir():
            raise UsageError(f"--annotate: folder {parent} does not exist")

    def write(self, bgr: np.ndarray) -> None:
        h, w = bgr.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                self._writer = None
                raise UsageError(f"--annotate: cannot write video {self.path}")
        if (w, h) != self._size:
            W, H = self._size
            s = min(W / w, H / h)
            small = cv2.resize(bgr, (max(1, int(w * s)), max(1, int(h * s))))
            canvas = np.zeros((H, W, 3), np.uint8)
            y, x = (H - small.shape[0]) // 2, (W - small.shape[1]) // 2
            canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
            bgr = canvas
        self._writer.write(bgr)
        self.frames += 1

    def close(self) -> None:
        w, self._writer = self._writer, None
        if w is not None:
            w.release()
