"""One annotated live-view JPEG: the frame scaled down, boxes, labels and fps drawn, encoded.

Runs on a viewer's request thread (edge/act/web/stream.py), never on the frame loop.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .handover import overlay_fields


# BGR colours (the encoder takes BGR): red for a violation, green compliant, amber otherwise.
_COLOURS = {"violation": (40, 40, 230), "compliant": (60, 200, 60)}
_OTHER = (0, 190, 255)


def render_frame(image: np.ndarray, overlays: Sequence[Any], width: int, fps: float | None,
                 quality: int) -> bytes:
    """Scale an RGB frame down to ``width``, draw overlays and fps, encode as JPEG.

    Raises:
        ValueError: the image cannot be encoded.
    """
    import cv2

    h, w = image.shape[:2]
    scale = min(1.0, width / float(w)) if w else 1.0
    if scale < 1.0:
        small = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    else:
        small = image
    # Frames are R,G,B; OpenCV draws and encodes B,G,R. cvtColor also gives a private copy to draw on.
    bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if small.ndim == 3 else cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    font = cv2.FONT_HERSHEY_SIMPLEX
    fs = max(0.4, bgr.shape[1] / 1100.0)
    th = 1 if bgr.shape[1] < 900 else 2
    for item in overlays:
        try:
            ov = overlay_fields(item)
        except (ValueError, TypeError):
            continue
        x1, y1, x2, y2 = (int(round(c * scale)) for c in ov.box)
        colour = _COLOURS.get(str(ov.verdict), _OTHER)
        cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
        parts = []
        if ov.track_id is not None:
            parts.append(f"#{ov.track_id}")
        if ov.label:
            parts.append(ov.label)
        if ov.score is not None:
            parts.append(f"{ov.score:.2f}")
        if ov.verdict:
            parts.append(str(ov.verdict))
        text = " ".join(parts)
        if text:
            (tw, tht), base = cv2.getTextSize(text, font, fs, th)
            ty = y1 - 4 if y1 - tht - base - 4 >= 0 else y2 + tht + 4
            tx = max(0, min(x1, bgr.shape[1] - tw - 4))  # keep the label inside the frame
            cv2.rectangle(bgr, (tx, ty - tht - 3), (tx + tw + 4, ty + base), colour, -1)
            cv2.putText(bgr, text, (tx + 2, ty), font, fs, (0, 0, 0), th, cv2.LINE_AA)
    if fps is not None:
        text = f"{fps:.1f} fps"
        (tw, tht), base = cv2.getTextSize(text, font, fs, th)
        cv2.rectangle(bgr, (0, 0), (tw + 8, tht + base + 8), (0, 0, 0), -1)
        cv2.putText(bgr, text, (4, tht + 4), font, fs, (255, 255, 255), th, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encode failed")
    return buf.tobytes()
