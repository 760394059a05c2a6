"""The seed-style loop (``doorguard bench`` section 2; also counted by ``make bench-arm``).

What the seed projects wrote: OpenCV DNN running the float darknet yolov3-tiny per frame
(blobFromImage 416, forward, decode, NMSBoxes) with a synchronous "beep" on every frame
where it finds a person, as the face-touch seed's blocking beep did.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import DataError

#: A typical beep of the seed projects (a buzzer/`playsound` call of ~0.2 s), blocking the loop.
BEEP_S = 0.2
#: COCO classes whose detection made the seed beep (the face-touch seed flagged people).
SEED_FLAG_CLASSES = ("person",)
SEED_SIZE = 416
SEED_CONF, SEED_NMS = 0.5, 0.4


class SeedLoop:
    """What the seed projects wrote: OpenCV DNN float yolov3-tiny per frame, then a blocking beep.

    Args:
        shared: ../shared (yolov3-tiny cfg, weights and coco.names).
        beep_s: how long the synchronous beep blocks the loop.
    """

    def __init__(self, shared: Path, beep_s: float = BEEP_S):
        import cv2

        d = shared / "models" / "yolov3-tiny"
        self.cfg_path, self.weights_path = d / "yolov3-tiny.cfg", d / "yolov3-tiny.weights"
        for p in (self.cfg_path, self.weights_path):
            if not p.is_file():
                raise DataError(f"seed model missing: {p}")
        self.net = cv2.dnn.readNetFromDarknet(str(self.cfg_path), str(self.weights_path))
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.names = (d / "coco.names").read_text().split("\n")
        self.flag = {i for i, n in enumerate(self.names) if n.strip() in SEED_FLAG_CLASSES}
        self.beep_s = beep_s

    def detect(self, bgr: np.ndarray) -> list[tuple[int, float, list[int]]]:
        """One seed-style inference: (class id, confidence, [x, y, w, h]) after NMSBoxes."""
        import cv2

        h, w = bgr.shape[:2]
        blob = cv2.dnn.blobFromImage(bgr, 1 / 255.0, (SEED_SIZE, SEED_SIZE), swapRB=True, crop=False)
        self.net.setInput(blob)
        outs = self.net.forward(self.out_names)
        boxes, confs, ids = [], [], []
        for out in outs:
            for row in out:
                scores = row[5:]
                c = int(np.argmax(scores))
                conf = float(scores[c])
                if conf > SEED_CONF:
                    cx, cy, bw, bh = row[0] * w, row[1] * h, row[2] * w, row[3] * h
                    boxes.append([int(cx - bw / 2), int(cy - bh / 2), int(bw), int(bh)])
                    confs.append(conf)
                    ids.append(c)
        keep = cv2.dnn.NMSBoxes(boxes, confs, SEED_CONF, SEED_NMS) if boxes else []
        return [(ids[i], confs[i], boxes[i]) for i in np.asarray(keep).ravel()]

    def run(self, spec: str, cfg: Any, frames: int) -> dict[str, Any]:
        """Read, infer, beep, per frame, synchronously (as the seeds' while-loops did)."""
        from edge.capture.sources import UnreadableFrame, make_source

        src = make_source(spec, cfg.source)
        src.open()
        n = beeps = 0
        infer_ms: list[float] = []
        slept = 0.0
        t0 = time.perf_counter()
        try:
            while n < frames:
                try:
                    rgb = src.read()
                except UnreadableFrame:
                    continue
                if rgb is None:
                    break
                bgr = rgb[..., ::-1]  # the seeds read BGR from cv2.VideoCapture
                a = time.perf_counter()
                found = self.detect(bgr)
                infer_ms.append((time.perf_counter() - a) * 1000.0)
                if any(c in self.flag for c, _, _ in found):
                    b = time.perf_counter()
                    time.sleep(self.beep_s)  # the blocking beep
                    slept += time.perf_counter() - b
                    beeps += 1
                n += 1
        finally:
            src.close()
        wall = time.perf_counter() - t0
        return {"frames": n, "beeps": beeps, "fps": n / wall if wall else None,
                "fps_no_beep": n / (wall - slept) if wall > slept else None,
                "infer_ms": statistics.median(infer_ms) if infer_ms else None}
