"""Peer face (and face-mask) detectors, measured with doorguard's own eval code.

Each peer implements the eval loop's detector protocol, ``detect(rgb) ->
list[Detection]`` in frame pixels, so it can stand in for doorguard's Detector
in ``convert.verify.evaluate.Pipeline`` (and then feed doorguard's mask classifier).
AIZOO's detector and UltraFace's masked-face model also name the mask class
themselves: ``predict(rgb) -> list[Prediction]`` evaluates them as whole
pipelines with their own classes.

Every peer follows its origin's own inference code (input size, colour order,
normalization, box decoding) with the score threshold its demo uses; NMS is
``edge.infer.yolo.nms`` (greedy, the same as doorguard's).

Sources (../shared/models/peers, see SOURCES.md there):
- YuNet n 640 (libfacedetection.train): ``cv2.FaceDetectorYN``, which decodes and NMSes.
- UltraFace version-RFB-640 and RFB-640-masked_face-v2 (Linzaer): ONNX through
  ``cv2.dnn``; outputs are already-decoded corner boxes (0..1) and softmax scores.
- AIZOO face_mask_detection.tflite: SSD, 260x260, RGB/255, anchors from feature
  maps [33,17,9,5,3] with sizes [[.04,.056],[.08,.11],[.16,.22],[.32,.45],[.64,.72]]
  and ratios [1,.62,.42], variances (.1,.1,.2,.2) (its tflite_infer.py and
  utils/anchor_generator.py); classes 0 = Mask, 1 = NoMask.
- OpenCV res10 SSD (opencv_face_detector_uint8.pb + .pbtxt): 300x300 BGR, mean
  (104,177,123), output [1,1,N,7] with corner boxes in 0..1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from convert.verify.metrics import Prediction
from edge.errors import ModelError
from edge.types import Box, Detection
from edge.infer.yolo import nms


def _detections(boxes: np.ndarray, scores: np.ndarray, labels: list[str], class_ids: np.ndarray,
                width: int, height: int) -> list[Detection]:
    out = []
    for b, s, c in zip(boxes, scores, class_ids):
        x1, y1 = float(np.clip(b[0], 0, width)), float(np.clip(b[1], 0, height))
        x2, y2 = float(np.clip(b[2], 0, width)), float(np.clip(b[3], 0, height))
        if x2 > x1 and y2 > y1:
            out.append(Detection(Box(x1, y1, x2, y2), float(s), int(c), labels[int(c)]))
    return out


def _need(path: Path) -> Path:
    if not path.is_file():
        raise ModelError(f"peer model not found: {path}")
    return path


class YuNet:
    """YuNet n through cv2.FaceDetectorYN on a fixed square input (letterboxed top-left)."""

    name = "yunet-n-640"

    def __init__(self, peers_dir: Path, size: int = 640, score_threshold: float = 0.9, nms_iou: float = 0.3):
        self.size = size
        self.score_threshold = score_threshold
        model = _need(peers_dir / f"yunet_n_{size}_{size}.onnx")
        # OpenCV zoo's demo defaults: score 0.9, NMS 0.3, top_k 5000.
        self.net = cv2.FaceDetectorYN.create(str(model), "", (size, size), score_threshold, nms_iou, 5000)

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        s = self.size / max(h, w)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        canvas = np.zeros((self.size, self.size, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh))[..., ::-1]  # BGR, as the detector expects
        self.net.setScoreThreshold(self.score_threshold)
        _, faces = self.net.detect(canvas)
        if faces is None or len(faces) == 0:
            return []
        faces = np.asarray(faces, np.float32)
        boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]], 1) / s
        return _detections(boxes, faces[:, 14], ["face"], np.zeros(len(faces), int), w, h)


class UltraFace:
    """UltraFace RFB (ONNX via cv2.dnn): RGB, (x - 127) / 128, 640x480, decoded boxes; NMS here.

    With ``masked=True`` it loads RFB-640-masked_face-v2 (classes face, masked_face) and
    ``predict`` reports masked_face as ``mask`` and face as ``no_mask``.
    """

    def __init__(self, peers_dir: Path, masked: bool = False, score_threshold: float = 0.7,
                 nms_iou: float = 0.3, size: tuple[int, int] = (640, 480)):
        self.masked = masked
        self.name = "ultraface-rfb-640-masked" if masked else "ultraface-rfb-640"
        file = "RFB-640-masked_face-v2.onnx" if masked else "version-RFB-640.onnx"
        self.net = cv2.dnn.readNetFromONNX(str(_need(peers_dir / file)))
        self.size = size
        # The origin's demo: threshold 0.7, hard NMS IoU 0.3.
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def _raw(self, image: np.ndarray):
        h, w = image.shape[:2]
        x = cv2.resize(image, self.size).astype(np.float32)
        blob = ((x - 127.0) / 128.0).transpose(2, 0, 1)[None]
        self.net.setInput(blob)
        boxes, scores = self.net.forward(["boxes", "scores"])
        boxes = boxes[0] * np.array([w, h, w, h], np.float32)
        return boxes, scores[0], w, h

    def _nms(self, boxes, scores):
        face_prob = scores[:, 1:].sum(axis=1)  # any non-background class is a face
        keep = np.nonzero(face_prob >= self.score_threshold)[0]
        if keep.size == 0:
            return keep
        k = nms(boxes[keep], face_prob[keep], self.nms_iou)
        return keep[k]

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, scores, w, h = self._raw(image)
        idx = self._nms(boxes, scores)
        return _detections(boxes[idx], scores[idx, 1:].sum(axis=1), ["face"], np.zeros(len(idx), int), w, h)

    def predict(self, image: np.ndarray) -> list[Prediction]:
        """Masked model only: its own classes as the pipeline's decision."""
        if not self.masked:
            raise ModelError("only the masked-face UltraFace model names mask classes")
        boxes, scores, w, h = self._raw(image)
        idx = self._nms(boxes, scores)
        out = []
        for d, i in zip(_detections(boxes[idx], scores[idx, 1:].sum(axis=1), ["face"],
                                    np.zeros(len(idx), int), w, h), idx):
            p_face, p_masked = float(scores[i, 1]), float(scores[i, 2])
            no_mask = p_face > p_masked
            out.append(Prediction(d.box, d.score, "no_mask" if no_mask else "mask", no_mask,
                                  p_face / max(p_face + p_masked, 1e-9)))
        return out


def aizoo_anchors() -> np.ndarray:
    """AIZOO's 5972 SSD anchors as (x1, y1, x2, y2) in 0..1 (its anchor_generator.py)."""
    feature_maps = [33, 17, 9, 5, 3]
    sizes = [[0.04, 0.056], [0.08, 0.11], [0.16, 0.22], [0.32, 0.45], [0.64, 0.72]]
    ratios = [1.0, 0.62, 0.42]
    out = []
    for fm, sz in zip(feature_maps, sizes):
        c = (np.arange(fm) + 0.5) / fm
        cx, cy = np.meshgrid(c, c)
        # Every size at the first ratio, then the first size at the other ratios.
        wh = [(s * np.sqrt(ratios[0]), s / np.sqrt(ratios[0])) for s in sz]
        wh += [(sz[0] * np.sqrt(r), sz[0] / np.sqrt(r)) for r in ratios[1:]]
        per = [np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1) for w, h in wh]
        out.append(np.stack(per, axis=2).reshape(-1, 4))  # row, col, anchor order
    return np.concatenate(out).astype(np.float32)


class Aizoo:
    """AIZOO face_mask_detection.tflite: a joint face + Mask/NoMask SSD detector."""

    name = "aizoo-facemask"
    VARIANCES = np.array([0.1, 0.1, 0.2, 0.2], np.float32)

    def __init__(self, peers_dir: Path, score_threshold: float = 0.5, nms_iou: float = 0.4,
                 num_threads: int = 2):
        from edge.infer.runtime import TfliteModel

        self.model = TfliteModel(_need(peers_dir / "face_mask_detection.tflite"), num_threads)
        self.anchors = aizoo_anchors()
        if len(self.anchors) != 5972:
            raise ModelError(f"AIZOO anchors: {len(self.anchors)} generated, the model has 5972")
        # tflite_infer.py: conf 0.5, NMS IoU 0.4 (single-class NMS over the max class score).
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou

    def _decode(self, image: np.ndarray):
        h, w = image.shape[:2]
        x = cv2.resize(image, (260, 260)).astype(np.float32)[None] / 255.0
        out = self.model.run(x)
        loc = next(v for k, v in out.items() if v.shape[-1] == 4)[0]
        cls = next(v for k, v in out.items() if v.shape[-1] == 2)[0]
        a = self.anchors
        acx, acy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
        aw, ah = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
        r = loc * self.VARIANCES
        cx, cy = r[:, 0] * aw + acx, r[:, 1] * ah + acy
        bw, bh = np.exp(r[:, 2]) * aw, np.exp(r[:, 3]) * ah
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * np.array([w, h, w, h])
        score = cls.max(axis=1)
        keep = np.nonzero(score >= self.score_threshold)[0]
        if keep.size:
            keep = keep[nms(boxes[keep], score[keep], self.nms_iou)]
        return boxes[keep], cls[keep], w, h

    def detect(self, image: np.ndarray) -> list[Detection]:
        boxes, cls, w, h = self._decode(image)
        return _detections(boxes, cls.max(axis=1), ["face"], np.zeros(len(boxes), int), w, h)

    def predict(self, image: np.ndarray) -> list[Prediction]:
        """Its own Mask/NoMask classes as the pipeline's decision (flag score = NoMask share)."""
        boxes, cls, w, h = self._decode(image)
        out = []
        for d, c in zip(_detections(boxes, cls.max(axis=1), ["face"], np.zeros(len(boxes), int), w, h), cls):
            no_mask = bool(c[1] > c[0])
            out.append(Prediction(d.box, d.score, "no_mask" if no_mask else "mask", no_mask,
                                  float(c[1] / max(c[0] + c[1], 1e-9))))
        return out


class OpenCvSsd:
    """OpenCV res10 SSD face detector (TensorFlow uint8 graph), 300x300 BGR, mean (104,177,123)."""

    name = "opencv-ssd-res10"

    def __init__(self, peers_dir: Path, score_threshold: float = 0.5):
        self.net = cv2.dnn.readNetFromTensorflow(str(_need(peers_dir / "opencv_face_detector_uint8.pb")),
                                                 str(_need(peers_dir / "opencv_face_detector.pbtxt")))
        # OpenCV's face detector sample: confidence 0.5.
        self.score_threshold = score_threshold

    def detect(self, image: np.ndarray) -> list[Detection]:
        h, w = image.shape[:2]
        blob = cv2.dnn.blobFromImage(image[..., ::-1].copy(), 1.0, (300, 300), (104, 177, 123), swapRB=False)
        self.net.setInput(blob)
        out = self.net.forward()[0, 0]
        out = out[out[:, 2] >= self.score_threshold]
        boxes = out[:, 3:7] * np.array([w, h, w, h], np.float32)
        return _detections(boxes, out[:, 2], ["face"], np.zeros(len(out), int), w, h)


#: name -> factory(peers_dir) for every peer detector.
DETECTORS: dict[str, Callable[[Path], object]] = {
    "yunet-n-640": YuNet,
    "ultraface-rfb-640": lambda d: UltraFace(d),
    "aizoo-facemask": Aizoo,
    "opencv-ssd-res10": OpenCvSsd,
}
#: Peers that classify masks themselves: name -> factory(peers_dir) with ``predict``.
JOINT: dict[str, Callable[[Path], object]] = {
    "aizoo-facemask": Aizoo,
    "ultraface-rfb-640-masked": lambda d: UltraFace(d, masked=True),
}


def _factory(name: str, peers_dir: Path, threshold: float):
    if name == "yunet-n-640":
        return YuNet(peers_dir, score_threshold=threshold)
    if name == "ultraface-rfb-640":
        return UltraFace(peers_dir, score_threshold=threshold)
    if name == "ultraface-rfb-640-masked":
        return UltraFace(peers_dir, masked=True, score_threshold=threshold)
    if name == "aizoo-facemask":
        return Aizoo(peers_dir, score_threshold=threshold)
    if name == "opencv-ssd-res10":
        return OpenCvSsd(peers_dir, score_threshold=threshold)
    raise ModelError(f"unknown peer {name!r}")


#: The demo defaults of each peer's origin.
DEFAULT_THRESHOLDS = {
    "yunet-n-640": 0.9, "ultraface-rfb-640": 0.7, "ultraface-rfb-640-masked": 0.7,
    "aizoo-facemask": 0.5, "opencv-ssd-res10": 0.5,
}
#: Each peer's input (width, height) and how frames are resized to it (for recall by input size).
INPUTS = {
    "yunet-n-640": ([640, 640], "letterbox"), "ultraface-rfb-640": ([640, 480], "stretch"),
    "ultraface-rfb-640-masked": ([640, 480], "stretch"), "aizoo-facemask": ([260, 260], "stretch"),
    "opencv-ssd-res10": ([300, 300], "stretch"),
}
FILES = {
    "yunet-n-640": ["yunet_n_640_640.onnx"], "ultraface-rfb-640": ["version-RFB-640.onnx"],
    "ultraface-rfb-640-masked": ["RFB-640-masked_face-v2.onnx"],
    "aizoo-facemask": ["face_mask_detection.tflite"],
    "opencv-ssd-res10": ["opencv_face_detector_uint8.pb", "opencv_face_detector.pbtxt"],
}


def systems(peers_dir: Path, classifier=None, cfg=None) -> list:
    """convert.verify.evaluate.System entries for every peer.

    With a classifier (doorguard's, and the config its rules come from), each
    peer detector feeds it (``<peer>+doorguard-classifier``), else it runs as a
    detector only (detector figures; no class); the peers that name mask classes
    themselves also run alone (``<peer>-own-classes``).
    """
    from convert.verify.evaluate import System, pipeline_for
    from edge.manifest import sha256_file

    peers_dir = Path(peers_dir)
    out = []

    def meta(name, extra=None):
        files = {f: sha256_file(peers_dir / f) for f in FILES[name] if (peers_dir / f).is_file()}
        size, resize = INPUTS[name]
        return {"peer": name, "peer_files": files, "input": size, "resize": resize, **(extra or {})}

    cls_meta = ({"classifier": {"name": classifier.manifest.name, "sha256": classifier.manifest.sha256}}
                if classifier is not None else {"classifier": None})
    for name in ("yunet-n-640", "ultraface-rfb-640", "aizoo-facemask", "opencv-ssd-res10"):
        suffix = "+doorguard-classifier" if classifier is not None else " (detector only)"
        out.append(System(
            f"{name}{suffix}",
            lambda t, n=name: pipeline_for(_factory(n, peers_dir, t), classifier, cfg).predict,
            DEFAULT_THRESHOLDS[name], meta(name, cls_meta),
            lambda t, n=name: pipeline_for(_factory(n, peers_dir, t), None, cfg).predict))
    for name in ("aizoo-facemask", "ultraface-rfb-640-masked"):
        out.append(System(f"{name}-own-classes", lambda t, n=name: _factory(n, peers_dir, t).predict,
                          DEFAULT_THRESHOLDS[name], meta(name)))
    return out
