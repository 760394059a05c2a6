"""Fakes at doorguard's seams, for tests and benchmarks (as gpiozero ships ``MockFactory``).

Everything the runner takes as an argument has a stand-in here, so a whole run goes
through the real code without a camera, a model file or a Pi:

    from edge import config, fakes, service

    folder = Path(tempfile.mkdtemp())
    cfg = config.parse(f'[models]\\ndetector = "{fakes.write_detector_manifest(folder)}"\\n'
                       f'classifier = "{fakes.write_classifier_manifest(folder)}"\\n'
                       f'[events]\\nstate_dir = "{folder}/state"\\n')
    source = fakes.ListSource([fakes.frame_with([(40, 30, 30, fakes.RED)])] * 10)
    runner = service.Runner(cfg, source=source, actuators=fakes.FakeActuators(),
                            notifier=fakes.FakeNotifier(),
                            detector_interpreter=fakes.BlobDetectorInterpreter(),
                            classifier_interpreter=fakes.ColourClassifierInterpreter())
    runner.run()   # the red face settles as no_mask: one alert

The interpreter stubs look at the pixels they are given, so preprocessing, YOLO and SSD
decoding, cropping, tracking and the rules all run for real:

* :class:`BlobDetectorInterpreter` finds saturated colour blobs (a "face") and encodes
  each as a cell of one YOLO head, exactly as a real head would be decoded;
* :class:`ColourClassifierInterpreter` calls a crop "mask" when it is mostly blue,
  "no_mask" when mostly red, "mask_incorrect" when mostly green;
* :class:`DarkBlobHandInterpreter` finds near-black blobs (a "hand", which the face stub
  ignores because they are not saturated) and encodes each at its nearest anchor as
  MediaPipe's palm detector does.

The manifests they stand behind come from :func:`write_detector_manifest`,
:func:`write_classifier_manifest` and :func:`write_hand_manifest`; draw frames for them
with :func:`frame_with`. :class:`StubInterpreter` is the base for other stubs.

Other seams: :class:`ListSource` (a ``FrameSource``), :class:`FakePicamera2` (the
``factory`` of ``edge.capture.sources.PicameraSource``), :class:`FakeActuators`,
:class:`FakeNotifier` and :class:`FakeClock` (the runner's ``clock``). Fault injection
for the reliability tests (a camera that hangs or vanishes, a jumping wall clock) stays
in the test suite (tests/faults.py).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import SourceError
from .capture.sources import SourceLost

#: The detector stub's input (width, height) and its one head's stride and anchor side.
DET_W, DET_H, STRIDE = 128, 96, 16
ANCHOR = 32.0
#: The classifier stub's square input side and its labels, in output order.
CLF_SIZE = 32
CLF_LABELS = ["mask", "no_mask", "mask_incorrect"]
#: Face colours (RGB) and what the classifier stub calls them: mask, no_mask, mask_incorrect.
BLUE, RED, GREEN = (30, 60, 220), (220, 40, 30), (40, 200, 40)
#: The hand stub's square input side.
HAND_SIZE = 64
#: The hand stub's SSD anchors: one layer of stride 8 on a 64 x 64 input, 8 x 8 cells x 2 anchors.
SSD = {"num_layers": 1, "strides": [8], "min_scale": 0.5, "max_scale": 0.5, "aspect_ratios": [1.0],
       "interpolated_scale_aspect_ratio": 1.0, "anchor_offset": 0.5, "fixed_anchor_size": True,
       "num_anchors": 128, "box_scale": float(HAND_SIZE), "num_keypoints": 1}
#: A colour the hand stub calls a hand (and the face stub ignores).
DARK = (8, 8, 8)


# ---- manifests ---------------------------------------------------------------------------------

def _write(folder: Path, manifest: dict) -> Path:
    manifest.setdefault("source", {"kind": "trained", "files": {}})
    p = Path(folder) / f"{manifest['name']}.json"
    p.write_text(json.dumps(manifest))
    return p


def _float_input() -> dict:
    return {"name": "input", "resize": "stretch", "scale": 1 / 255, "dtype": "float32"}


def write_detector_manifest(folder: Path, labels: Sequence[str] = ("face",)) -> Path:
    """The manifest ``stub-det.json`` of :class:`BlobDetectorInterpreter` (no model file: pass the stub).

    Args:
        folder: where to write it.
        labels: the detector's labels (the stub reports class 0).

    Returns:
        The manifest's path.
    """
    gw, gh = DET_W // STRIDE, DET_H // STRIDE
    return _write(folder, {
        "format_version": 1, "name": "stub-det", "task": "detect", "tflite": "stub-det.tflite",
        "sha256": "0" * 64, "input": {**_float_input(), "width": DET_W, "height": DET_H},
        "outputs": [{"name": "head0", "shape": [1, gh, gw, 5 + len(labels)], "role": "yolo_head",
                     "dtype": "float32", "stride": STRIDE, "anchors": [[ANCHOR, ANCHOR]], "mask": [0]}],
        "labels": list(labels), "score_threshold": 0.3, "nms_iou": 0.45,
    })


def write_classifier_manifest(folder: Path) -> Path:
    """The manifest ``stub-clf.json`` of :class:`ColourClassifierInterpreter`; returns its path."""
    return _write(folder, {
        "format_version": 1, "name": "stub-clf", "task": "classify", "tflite": "stub-clf.tflite",
        "sha256": "1" * 64, "input": {**_float_input(), "width": CLF_SIZE, "height": CLF_SIZE},
        "outputs": [{"name": "probs", "shape": [1, len(CLF_LABELS)], "role": "probabilities", "dtype": "float32"}],
        "labels": CLF_LABELS, "crop_margin": 0.1,
    })


def write_hand_manifest(folder: Path) -> Path:
    """The manifest ``stub-hands.json`` of :class:`DarkBlobHandInterpreter`; returns its path."""
    n, k = SSD["num_anchors"], 4 + 2 * SSD["num_keypoints"]
    return _write(folder, {
        "format_version": 1, "name": "stub-hands", "task": "detect", "tflite": "stub-hands.tflite",
        "sha256": "2" * 64, "input": {**_float_input(), "width": HAND_SIZE, "height": HAND_SIZE},
        "outputs": [{"name": "boxes", "shape": [1, n, k], "role": "ssd_boxes", "dtype": "float32"},
                    {"name": "scores", "shape": [1, n, 1], "role": "ssd_scores", "dtype": "float32"}],
        "labels": ["hand"], "score_threshold": 0.5, "nms_iou": 0.3, "ssd": SSD,
    })


def frame_with(faces: Sequence[tuple[int, int, int, tuple[int, int, int]]], w: int = DET_W,
               h: int = DET_H) -> np.ndarray:
    """A grey RGB uint8 frame with square colour "faces": ``[(x, y, size, colour), ...]``."""
    img = np.full((h, w, 3), 128, np.uint8)
    for x, y, s, colour in faces:
        img[y:y + s, x:x + s] = colour
    return img


# ---- interpreters ------------------------------------------------------------------------------

class StubInterpreter:
    """The part of the TFLite ``Interpreter`` API ``edge.infer.runtime.TfliteModel`` uses, computed in Python.

    Pass one as ``interpreter=`` of ``Detector``/``Classifier``/``SsdDetector`` or as the
    runner's ``*_interpreter=``. Like TFLite, ``set_tensor`` refuses an input of the wrong
    dtype or shape.

    Args:
        input_shape: the input tensor's shape, e.g. ``[1, 96, 128, 3]``.
        outputs: per output tensor ``(name, shape)`` (float32, not quantized) or
            ``(name, shape, dtype, (scale, zero_point))``.
        dtype: the input tensor's dtype.
        quantization: the input's ``(scale, zero_point)``; ``(0.0, 0)`` for a float input.
        compute: ``compute(input) -> [one array per output]``; subclasses override
            :meth:`compute` instead.

    Attributes:
        invocations: ``invoke()`` calls that computed outputs.
        fail: while True, ``invoke()`` raises RuntimeError (a model failing at run time).
        last_input: the last input tensor set.
    """

    def __init__(self, input_shape: Sequence[int], outputs: Sequence[tuple], *, dtype: Any = np.float32,
                 quantization: tuple[float, int] = (0.0, 0),
                 compute: Callable[[np.ndarray], Sequence[np.ndarray]] | None = None):
        self._in = {"index": 0, "name": "input", "shape": np.array(input_shape), "dtype": dtype,
                    "quantization": quantization}
        self._outs = []
        for i, spec in enumerate(outputs):
            name, shape, out_dtype, quant = (*spec, np.float32, (0.0, 0)) if len(spec) == 2 else spec
            self._outs.append({"index": i + 1, "name": name, "shape": np.array(shape), "dtype": out_dtype,
                               "quantization": quant})
        self._compute = compute
        self._tensors: dict[int, np.ndarray] = {}
        self.invocations = 0
        self.fail = False
        self.last_input: np.ndarray | None = None

    @classmethod
    def returning(cls, input_shape: Sequence[int], outputs: dict[str, tuple[np.ndarray, tuple[float, int]]],
                  **kw: Any) -> "StubInterpreter":
        """A stub that always gives the same outputs: ``{name: (array, (scale, zero_point))}``.

        Keyword arguments (``dtype``, ``quantization``) describe the input as in the constructor.
        """
        arrays = [np.asarray(a) for a, _ in outputs.values()]
        return cls(input_shape, [(n, np.shape(a), np.asarray(a).dtype, q) for n, (a, q) in outputs.items()],
                   compute=lambda _x: arrays, **kw)

    def get_input_details(self) -> list[dict]:
        return [self._in]

    def get_output_details(self) -> list[dict]:
        return list(self._outs)

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        value = np.asarray(value)
        if index == 0:
            if value.dtype != self._in["dtype"] or list(value.shape) != list(self._in["shape"]):
                raise ValueError(f"stub interpreter: input {value.dtype}{list(value.shape)}, expected "
                                 f"{np.dtype(self._in['dtype'])}{list(self._in['shape'])}")
            self.last_input = value
        self._tensors[index] = value

    def get_tensor(self, index: int) -> np.ndarray:
        return self._tensors[index]

    def invoke(self) -> None:
        if self.fail:
            raise RuntimeError("stub interpreter failure")
        self.invocations += 1
        for d, a in zip(self._outs, self.compute(self._tensors[0])):
            self._tensors[d["index"]] = np.asarray(a)

    def compute(self, x: np.ndarray) -> Sequence[np.ndarray]:
        """The outputs for input ``x`` (batch axis included), one array per output in order."""
        if self._compute is None:
            return [np.zeros(d["shape"], d["dtype"]) for d in self._outs]
        return self._compute(x)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


class BlobDetectorInterpreter(StubInterpreter):
    """Detects saturated colour blobs; one YOLO head with one anchor, class 0 (:func:`write_detector_manifest`).

    Args:
        num_classes: classes the head encodes (the manifest's label count).
    """

    def __init__(self, num_classes: int = 1):
        gw, gh = DET_W // STRIDE, DET_H // STRIDE
        super().__init__([1, DET_H, DET_W, 3], [("head0", [1, gh, gw, 5 + num_classes])])
        self.nc = num_classes

    def compute(self, x: np.ndarray) -> list[np.ndarray]:
        import cv2

        x = x[0]  # H, W, 3 floats 0..1
        sat = (x.max(axis=2) - x.min(axis=2)) > 0.35
        n, _, stats, _ = cv2.connectedComponentsWithStats(sat.astype(np.uint8), connectivity=4)
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
        return [head[None]]


class ColourClassifierInterpreter(StubInterpreter):
    """Mostly blue -> mask, mostly red -> no_mask, mostly green -> mask_incorrect.

    Its manifest: :func:`write_classifier_manifest`.
    """

    def __init__(self):
        super().__init__([1, CLF_SIZE, CLF_SIZE, 3], [("probs", [1, 3])])

    def compute(self, x: np.ndarray) -> list[np.ndarray]:
        mean = x[0].reshape(-1, 3).mean(axis=0)  # R, G, B
        order = {2: 0, 0: 1, 1: 2}  # dominant channel -> label index
        p = np.full(3, 0.05, np.float32)
        p[order[int(np.argmax(mean))]] = 0.9
        return [p[None]]


class DarkBlobHandInterpreter(StubInterpreter):
    """Boxes each dark blob (all channels < 0.15) at the anchor nearest its centre.

    Its manifest: :func:`write_hand_manifest`.
    """

    def __init__(self):
        from .manifest import SsdSpec
        from .infer.ssd import anchors

        n, k = SSD["num_anchors"], 4 + 2 * SSD["num_keypoints"]
        super().__init__([1, HAND_SIZE, HAND_SIZE, 3], [("boxes", [1, n, k]), ("scores", [1, n, 1])])
        self.anchors = anchors(SsdSpec(**SSD), HAND_SIZE, HAND_SIZE)
        self.k = k

    def compute(self, x: np.ndarray) -> list[np.ndarray]:
        import cv2

        dark = (x[0].max(axis=2) < 0.15).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=4)
        boxes = np.zeros((len(self.anchors), self.k), np.float32)
        scores = np.full((len(self.anchors), 1), -10.0, np.float32)
        s = float(HAND_SIZE)
        for i in range(1, n):
            bx, by, bw, bh, area = stats[i]
            if area < 4:
                continue
            cx, cy = (bx + bw / 2) / s, (by + bh / 2) / s
            a = int(np.argmin((self.anchors[:, 0] - cx) ** 2 + (self.anchors[:, 1] - cy) ** 2))
            ax, ay, aw, ah = self.anchors[a]
            boxes[a, :4] = [(cx - ax) / aw * s, (cy - ay) / ah * s, bw / s / aw * s, bh / s / ah * s]
            scores[a, 0] = 8.0
        return [boxes[None], scores[None]]


# ---- sources and camera ------------------------------------------------------------------------

class ListSource:
    """A ``FrameSource`` over a list of images.

    Args:
        images: RGB uint8 frames, in order.
        live: behave as a camera (a short pause per frame; at the end, SourceLost instead
            of None, so ``Capture`` reconnects).
        lose_at: frame indices at which ``read`` raises SourceLost once (the camera unplugged).
        fail_open: the first this many ``open`` calls raise SourceError.
        name: the source's name in logs.

    Attributes:
        opens, closes: calls so far; i: index of the next frame.
    """

    def __init__(self, images: Sequence[np.ndarray], live: bool = False, lose_at: Sequence[int] = (),
                 fail_open: int = 0, name: str = "list"):
        self.images = list(images)
        self.live = live
        self.name = name
        self.lose_at = set(lose_at)
        self.fail_open = fail_open
        self.opens = 0
        self.closes = 0
        self.i = 0

    def open(self) -> None:
        self.opens += 1
        if self.fail_open > 0:
            self.fail_open -= 1
            raise SourceError(f"{self.name}: no such camera")

    def read(self) -> np.ndarray | None:
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

    def close(self) -> None:
        self.closes += 1


class FakePicamera2:
    """Stands in for ``picamera2.Picamera2``: a pure red scene, laid out as libcamera does.

    ``"RGB888"`` arrays hold B, G, R per pixel in memory (``"XRGB8888"``: B, G, R, X); the
    lores stream is YUV420 (I420) of the same scene. Pass the class (or a lambda making
    one) as ``PicameraSource(factory=...)``.

    Args:
        fmt_channels: 3 for RGB888, 4 for XRGB8888.
        fail_after: ``capture_array`` raises (the camera front end timing out) after this
            many captures.

    Attributes:
        instances: every FakePicamera2 made (class attribute), the latest last.
        config, started, closed, calls: what was configured, the state, captures so far.
    """

    instances: list["FakePicamera2"] = []

    def __init__(self, fmt_channels: int = 3, fail_after: int | None = None):
        self.config: dict | None = None
        self.started = self.closed = False
        self.channels = fmt_channels
        self.calls = 0
        self.fail_after = fail_after
        FakePicamera2.instances.append(self)

    def create_video_configuration(self, main, controls=None, lores=None) -> dict:
        return {"main": main, "controls": controls, "lores": lores}

    def configure(self, conf: dict) -> None:
        self.config = conf

    def start(self) -> None:
        self.started = True

    def capture_array(self, name: str = "main") -> np.ndarray:
        self.calls += 1
        if self.fail_after is not None and self.calls > self.fail_after:
            raise RuntimeError("Camera frontend has timed out!")
        w, h = self.config["main"]["size"]
        a = np.zeros((h, w, self.channels), np.uint8)
        # A pure red scene: in memory B=0, G=0, R=255 (and X=255 for XRGB8888).
        a[..., 2] = 255
        if self.channels == 4:
            a[..., 3] = 255
        return a

    def capture_arrays(self, names) -> tuple[list[np.ndarray], dict]:
        """Main (red scene, B,G,R in memory) and lores (YUV420 of the same red scene) of one request."""
        import cv2

        main = self.capture_array("main")
        w, h = self.config["lores"]["size"]
        rgb = np.zeros((h, w, 3), np.uint8)
        rgb[..., 0] = 255
        return [main, cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)], {"SensorTimestamp": self.calls}

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


# ---- outputs, systemd, time --------------------------------------------------------------------

class FakeActuators:
    """Stands in for ``edge.act.actuators.Actuators``: records each call, never blocks.

    Attributes:
        calls: ``(name, argument)`` per call: alert, compliant, fault (on/off), mute, unmute, close.
        closed: ``close()`` calls.
    """

    def __init__(self):
        self.calls: list[tuple[str, object]] = []
        self.closed = 0
        self.lock = threading.Lock()

    def _rec(self, name: str, arg: object = None) -> None:
        with self.lock:
            self.calls.append((name, arg))

    def alert(self) -> None:
        self._rec("alert")

    def compliant(self) -> None:
        self._rec("compliant")

    def set_fault(self, on: bool) -> None:
        self._rec("fault", bool(on))

    def mute(self, minutes: float | None = None) -> None:
        self._rec("mute", minutes)

    def unmute(self) -> None:
        self._rec("unmute")

    def close(self) -> None:
        self.closed += 1
        self._rec("close")

    def names(self) -> list[str]:
        """The names of the calls so far, in order."""
        return [c[0] for c in self.calls]


class FakeNotifier:
    """Stands in for ``edge.notify.SystemdNotifier``: keeps the messages (``READY``, ``STATUS=...``,
    ``WATCHDOG``, ``STOPPING``) in ``messages``."""

    def __init__(self):
        self.messages: list[str] = []

    def ready(self, status: str | None = None) -> None:
        self.messages.append("READY")

    def status(self, text: str) -> None:
        self.messages.append(f"STATUS={text}")

    def watchdog(self) -> None:
        self.messages.append("WATCHDOG")

    def stopping(self, status: str | None = None) -> None:
        self.messages.append("STOPPING")

    def close(self) -> None:
        pass


class FakeClock:
    """A monotonic clock (seconds) that only moves when told: ``clock.t += 2`` or ``advance(2)``.

    Args:
        start: its first reading.
    """

    def __init__(self, start: float = 0.0):
        self.t = start

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
