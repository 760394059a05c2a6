"""Fakes at the doorway runner's seams: interpreter stubs, sources, actuators, notifier.

The interpreter stubs look at the pixels they are given, so the real
preprocessing, YOLO decode, cropping, tracking and rules all run:

* the detector stub finds saturated colour blobs (a "face") and encodes each
  as a YOLO head cell, exactly as a real head would be decoded;
* the classifier stub calls a crop "mask" when it is mostly blue, "no_mask"
  when mostly red, "mask_incorrect" when mostly green.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from edge.sources import SourceLost

DET_W, DET_H, STRIDE = 128, 96, 16
ANCHOR = 32.0
CLF_SIZE = 32
CLF_LABELS = ["mask", "no_mask", "mask_incorrect"]
BLUE, RED, GREEN = (30, 60, 220), (220, 40, 30), (40, 200, 40)


def _source():
    return {"kind": "trained", "files": {}}


def write_detector_manifest(folder: Path, labels=("face",)) -> Path:
    gw, gh = DET_W // STRIDE, DET_H // STRIDE
    m = {
        "format_version": 1, "name": "stub-det", "task": "detect", "tflite": "stub-det.tflite",
        "sha256": "0" * 64,
        "input": {"name": "input", "width": DET_W, "height": DET_H, "resize": "stretch",
                  "scale": 1 / 255, "dtype": "float32"},
        "outputs": [{"name": "head0", "shape": [1, gh, gw, 5 + len(labels)], "role": "yolo_head",
                     "dtype": "float32", "stride": STRIDE, "anchors": [[ANCHOR, ANCHOR]], "mask": [0]}],
        "labels": list(labels), "score_threshold": 0.3, "nms_iou": 0.45, "source": _source(),
    }
    p = folder / "stub-det.json"
    p.write_text(json.dumps(m))
    return p


def write_classifier_manifest(folder: Path) -> Path:
    m = {
        "format_version": 1, "name": "stub-clf", "task": "classify", "tflite": "stub-clf.tflite",
        "sha256": "1" * 64,
        "input": {"name": "input", "width": CLF_SIZE, "height": CLF_SIZE, "resize": "stretch",
                  "scale": 1 / 255, "dtype": "float32"},
        "outputs": [{"name": "probs", "shape": [1, len(CLF_LABELS)], "role": "probabilities", "dtype": "float32"}],
        "labels": CLF_LABELS, "crop_margin": 0.1, "source": _source(),
    }
    p = folder / "stub-clf.json"
    p.write_text(json.dumps(m))
    return p


class _StubInterpreter:
    def __init__(self, in_shape, outputs):
        self._in = {"index": 0, "name": "input", "shape": np.array(in_shape), "dtype": np.float32,
                    "quantization": (0.0, 0)}
        self._outs = [{"index": i + 1, "name": n, "shape": np.array(s), "dtype": np.float32,
                       "quantization": (0.0, 0)} for i, (n, s) in enumerate(outputs)]
        self._tensors: dict[int, np.ndarray] = {}
        self.invocations = 0
        self.fail = False

    def get_input_details(self):
        return [self._in]

    def get_output_details(self):
        return list(self._outs)

    def set_tensor(self, index, value):
        self._tensors[index] = np.asarray(value)

    def get_tensor(self, index):
        return self._tensors[index]

    def invoke(self):
        if self.fail:
            raise RuntimeError("stub interpreter failure")
        self.invocations += 1
        self._compute()


def _logit(p):
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


class BlobDetectorInterpreter(_StubInterpreter):
    """Detects saturated colour blobs; one YOLO head with one anchor, class 0."""

    def __init__(self, num_classes: int = 1):
        gw, gh = DET_W // STRIDE, DET_H // STRIDE
        super().__init__([1, DET_H, DET_W, 3], [("head0", [1, gh, gw, 5 + num_classes])])
        self.nc = num_classes

    def _compute(self):
        x = self._tensors[0][0]  # H, W, 3 floats 0..1
        sat = (x.max(axis=2) - x.min(axis=2)) > 0.35
        n, _, stats, cents = cv2.connectedComponentsWithStats(sat.astype(np.uint8), connectivity=4)
        gw, gh = DET_W // STRIDE, DET_H // STRIDE
        head = np.full((gh, gw, 5 + self.nc), -10.0, np.float32)
        for i in range(1, n):
            bx, by, bw, bh, area = stats[i]
            if area < 12:
                continue
            cx, cy = bx + bw / 2, by + bh / 2
            col, row = min(gw - 1, int(cx / STRIDE)), min(gh - 1, int(cy / STRIDE))
            head[row, col, 0] = _logit(cx / STRIDE - col)
            head[row, col, 1] = _logit(cy / STRIDE - row)
            head[row, col, 2] = np.log(bw / ANCHOR)
            head[row, col, 3] = np.log(bh / ANCHOR)
            head[row, col, 4] = 6.0
            head[row, col, 5:] = -6.0
            head[row, col, 5] = 6.0
        self._tensors[1] = head[None]


class ColourClassifierInterpreter(_StubInterpreter):
    """mostly blue -> mask, mostly red -> no_mask, mostly green -> mask_incorrect."""

    def __init__(self):
        super().__init__([1, CLF_SIZE, CLF_SIZE, 3], [("probs", [1, 3])])

    def _compute(self):
        mean = self._tensors[0][0].reshape(-1, 3).mean(axis=0)  # R, G, B
        order = {2: 0, 0: 1, 1: 2}  # dominant channel -> label index
        p = np.full(3, 0.05, np.float32)
        p[order[int(np.argmax(mean))]] = 0.9
        self._tensors[1] = p[None]


def frame_with(faces, w=DET_W, h=DET_H) -> np.ndarray:
    """Gray RGB frame with square colour "faces": [(x, y, size, colour), ...]."""
    img = np.full((h, w, 3), 128, np.uint8)
    for x, y, s, colour in faces:
        img[y:y + s, x:x + s] = colour
    return img


class ListSource:
    """FrameSource over a list of images; ``lose_at`` indices raise SourceLost (live sources)."""

    def __init__(self, images, live=False, lose_at=(), fail_open=0, name="list"):
        self.images = list(images)
        self.live = live
        self.name = name
        self.lose_at = set(lose_at)
        self.fail_open = fail_open
        self.opens = 0
        self.closes = 0
        self.i = 0

    def open(self):
        from edge.errors import SourceError

        self.opens += 1
        if self.fail_open > 0:
            self.fail_open -= 1
            raise SourceError(f"{self.name}: no such camera")

    def read(self):
        if self.i in self.lose_at:
            self.lose_at.discard(self.i)
            raise SourceLost(f"{self.name} unplugged")
        if self.i >= len(self.images):
            if self.live:
                time.sleep(0.01)
                raise SourceLost(f"{self.name} ran dry")
            return None
        img = self.images[self.i]
        self.i += 1
        if self.live:
            time.sleep(0.002)
        return img

    def close(self):
        self.closes += 1


class FakeActuators:
    """Records calls with their time; asserts nothing blocks."""

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.closed = 0
        self.lock = threading.Lock()

    def _rec(self, name, arg=None):
        with self.lock:
            self.calls.append((name, arg))

    def alert(self):
        self._rec("alert")

    def compliant(self):
        self._rec("compliant")

    def set_fault(self, on):
        self._rec("fault", bool(on))

    def mute(self, minutes=None):
        self._rec("mute", minutes)

    def unmute(self):
        self._rec("unmute")

    def close(self):
        self.closed += 1
        self._rec("close")

    def names(self):
        return [c[0] for c in self.calls]


class FakeNotifier:
    def __init__(self):
        self.messages: list[str] = []

    def ready(self, status=None):
        self.messages.append("READY")

    def status(self, text):
        self.messages.append(f"STATUS={text}")

    def watchdog(self):
        self.messages.append("WATCHDOG")

    def stopping(self, status=None):
        self.messages.append("STOPPING")

    def close(self):
        pass
