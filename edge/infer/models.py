"""Detector and Classifier, each built from a manifest (no model constant elsewhere)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import yolo
from ..errors import ModelError
from ..manifest import Manifest, OutputSpec, QuantParams, load_manifest
from .preprocess import Transform, crop_with_margin, prepare
from .runtime import TfliteModel
from ..types import Box, Classification, Detection


def tensor_quant(detail: dict) -> tuple[float, int] | None:
    """(scale, zero_point) of an interpreter tensor, None for a float (unquantized) tensor.

    The one reading of a tensor's quantization: the check of a manifest against its model
    here, and the converters' manifests (``convert.tflite.quantize.quant_params``).
    """
    scale, zp = detail.get("quantization", (0.0, 0))
    if np.dtype(detail["dtype"]).kind == "f" or not scale:
        return None
    return float(scale), int(zp)


def _check_tensor(where: str, what: str, dtype: str, quant: QuantParams | None, detail: dict) -> None:
    """The manifest's dtype and quant parameters of one tensor are the model's own.

    A manifest saying ``input.quant.scale = 0`` (or any other wrong value) used to load,
    and the demo's unmasked face became "compliant mask 0.89".

    Raises:
        ModelError: the dtype or a quant parameter differs.
    """
    got_dtype = np.dtype(detail["dtype"]).name
    if got_dtype != dtype:
        raise ModelError(f"{where}: {what} is {got_dtype} in the model, but the manifest says {dtype}")
    got = tensor_quant(detail)
    want = None if quant is None else (quant.scale, quant.zero_point)
    if got is None and want is None:
        return
    if got is None or want is None:
        raise ModelError(f"{where}: {what} quantization is {_shown(got)} in the model, but the manifest "
                         f"says {_shown(want)}")
    # The manifest stores the model's float32 scale as JSON: equal to about 1e-7 relative.
    if got[1] != want[1] or not math.isclose(got[0], want[0], rel_tol=1e-5, abs_tol=0.0):
        raise ModelError(f"{where}: {what} quantization is {_shown(got)} in the model, but the manifest "
                         f"says {_shown(want)}: re-convert the model or restore its manifest")


def _shown(q: tuple[float, int] | None) -> str:
    return "none (float)" if q is None else f"scale {q[0]:.9g}, zero point {q[1]}"


def map_outputs(outputs: dict[str, dict], wanted: Sequence[tuple[str | None, Sequence[int]]],
                where: str) -> list[str]:
    """The interpreter tensor name of each wanted output: by name, else by unique shape.

    The one output mapping of the runtime (manifest -> model) and of the converters
    (a fresh TFLite's outputs -> heads), so both read the same tensors.

    Args:
        outputs: the model's output details keyed by tensor name (``TfliteModel.outputs``).
        wanted: (name, shape) of each output, in order. A name found in the model must
            have the shape, or labels/anchors would be read off the wrong channels (a
            half-working loop). Name None: an output the converter has not named yet
            (``StatefulPartitionedCall:N``), where a same-shape tie goes to the tensor
            whose name ends in ``:index``.
        where: the model, for the error message.

    Returns:
        Tensor names, one per wanted output.

    Raises:
        ModelError: a named output with another shape, or no single tensor of the shape.
    """
    names: list[str] = []
    for k, (name, shape) in enumerate(wanted):
        shape = [int(v) for v in shape]
        if name is not None and name in outputs:
            got = [int(v) for v in outputs[name]["shape"]]
            if got != shape:
                raise ModelError(f"{where}: output {name} has shape {got} in the model, "
                                 f"but the manifest says {shape}")
            names.append(name)
            continue
        same = [n for n, d in outputs.items() if [int(v) for v in d["shape"]] == shape]
        if name is None and len(same) > 1:
            same = [n for n in same if n.endswith(f":{k}")]
        if len(same) != 1:
            have = ", ".join(f"{n}{[int(v) for v in d['shape']]}" for n, d in outputs.items())
            what = f"output {name}" if name is not None else f"the output of head {k}"
            raise ModelError(f"{where}: cannot find {what} with shape {shape} in the model (outputs: {have})")
        names.append(same[0])
    return names


def _map_outputs(model: TfliteModel, specs: list[OutputSpec], where: str) -> dict[str, str]:
    """Manifest output name -> interpreter tensor name (``map_outputs``)."""
    return dict(zip([s.name for s in specs], map_outputs(model.outputs, [(s.name, s.shape) for s in specs], where)))


def _check_outputs(model: TfliteModel, specs: list[OutputSpec], names: dict[str, str], where: str) -> None:
    for spec in specs:
        _check_tensor(where, f"output {spec.name}", spec.dtype, spec.quant, model.outputs[names[spec.name]])


def _check_input(model: TfliteModel, m: Manifest, where: str, reference: bool = False) -> None:
    shape = [int(v) for v in model.input["shape"]]
    want = [1, m.input.height, m.input.width, m.input.channels]
    if shape != want:
        raise ModelError(f"{where}: model input shape {shape} does not match manifest {want}")
    if not reference:  # the float reference model has float tensors; the manifest describes the int8 one
        _check_tensor(where, "input", m.input.dtype, m.input.quant, model.input)


def _open(path: Path, task: str, num_threads: int, backend: str | None, interpreter: Any,
          use_float: bool) -> tuple[Manifest, TfliteModel, str | None]:
    """Load a manifest (hash-checked unless a stub interpreter is given) and its model.

    Returns:
        (manifest, model, input dtype override: "float32" for the float reference, else None).
    """
    m = load_manifest(path, verify_hash=interpreter is None)
    if m.task != task:
        need = "a detector" if task == "detect" else "a classifier"
        raise ModelError(f"{path}: task is {m.task!r}, {need} needs {task!r}")
    model_file = m.tflite_path(path)
    input_dtype = None
    if use_float:
        if not m.float_tflite:
            raise ModelError(f"{path}: no float reference model in the manifest")
        model_file = path.parent / m.float_tflite
        input_dtype = "float32"
    model = TfliteModel(model_file, num_threads, backend, interpreter=interpreter)
    _check_input(model, m, str(path), reference=use_float)
    return m, model, input_dtype


class DetectorStages:
    """preprocess -> infer -> postprocess, shared by every detector built from a manifest.

    A subclass sets ``manifest``, ``model``, ``input_dtype`` and ``_names`` (manifest output
    name -> tensor name) and implements ``postprocess`` (its decoding).
    """

    def preprocess(self, image: np.ndarray) -> tuple[np.ndarray, Transform]:
        return prepare(image, self.manifest.input, dtype=self.input_dtype)

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Invoke; returns float outputs keyed by manifest output name."""
        out = self.model.run(tensor)
        return {name: out[tensor_name] for name, tensor_name in self._names.items()}

    def postprocess(self, outputs: dict[str, np.ndarray], transform: Transform | None) -> list[Detection]:
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Detection]:
        """RGB uint8 frame -> detections in frame pixels, best first."""
        tensor, tf = self.preprocess(image)
        return self.postprocess(self.infer(tensor), tf)


class Detector(DetectorStages):
    """YOLO face/object detector: frame -> list of Detection in frame pixels.

    Args:
        manifest_path: models/NAME.json (the .tflite next to it is checked by sha256).
        num_threads: interpreter threads.
        score_threshold, nms_iou: override the manifest's defaults.
        interpreter: a stub interpreter for tests (skips loading the file).
        use_float: run the float32 reference model named in the manifest instead.
    """

    def __init__(self, manifest_path: Path | str, num_threads: int = 2,
                 score_threshold: float | None = None, nms_iou: float | None = None,
                 interpreter: Any = None, use_float: bool = False, backend: str | None = None):
        path = Path(manifest_path)
        m, self.model, self.input_dtype = _open(path, "detect", num_threads, backend, interpreter, use_float)
        self.manifest = m
        self.heads = [o for o in m.outputs if o.role == "yolo_head"]
        if not self.heads:
            raise ModelError(f"{path}: detector manifest has no yolo_head outputs")
        self._names = _map_outputs(self.model, self.heads, str(path))
        if not use_float:
            _check_outputs(self.model, self.heads, self._names, str(path))
        nc = {o.shape[-1] // len(o.anchors or [1]) - 5 for o in self.heads}
        if nc != {len(m.labels)}:
            raise ModelError(
                f"{path}: {len(m.labels)} labels but the heads encode {sorted(nc)} classes"
            )
        self.score_threshold = score_threshold if score_threshold is not None else (m.score_threshold or 0.3)
        self.nms_iou = nms_iou if nms_iou is not None else (m.nms_iou or 0.45)

    def postprocess(self, heads: dict[str, np.ndarray], transform: Transform | None) -> list[Detection]:
        m = self.manifest
        raw = yolo.decode(heads, self.heads, len(m.labels), m.input.width, m.input.height,
                          transform, self.score_threshold, self.nms_iou)
        return [
            Detection(Box(*map(float, b)), float(s), int(c), m.labels[int(c)])
            for b, s, c in zip(raw.boxes, raw.scores, raw.class_ids)
            if b[2] > b[0] and b[3] > b[1]
        ]


class Classifier:
    """Face classifier: crop -> Classification (label, score, all probabilities)."""

    def __init__(self, manifest_path: Path | str, num_threads: int = 2, interpreter: Any = None,
                 use_float: bool = False, backend: str | None = None):
        path = Path(manifest_path)
        m, self.model, self.input_dtype = _open(path, "classify", num_threads, backend, interpreter, use_float)
        self.manifest = m
        if len(m.outputs) != 1:
            raise ModelError(f"{path}: a classifier manifest needs exactly one output")
        self.output = m.outputs[0]
        if self.output.shape[-1] != len(m.labels):
            raise ModelError(
                f"{path}: {len(m.labels)} labels but the output has {self.output.shape[-1]} classes"
            )
        names = _map_outputs(self.model, [self.output], str(path))
        if not use_float:
            _check_outputs(self.model, [self.output], names, str(path))
        self._name = names[self.output.name]
        self.margin = m.crop_margin if m.crop_margin is not None else 0.0
        # The operating point (manifest label_weights): probability x weight, renormalised.
        w = m.label_weights or {}
        self.weights = np.array([w.get(lab, 1.0) for lab in m.labels], np.float64) if w else None

    def crop(self, image: np.ndarray, box: Box) -> np.ndarray:
        return crop_with_margin(image, box, self.margin)

    def probabilities(self, crop: np.ndarray) -> np.ndarray:
        tensor, _ = prepare(crop, self.manifest.input, dtype=self.input_dtype)
        out = self.model.run(tensor)[self._name].reshape(-1)
        if self.output.role == "logits":
            e = np.exp(out - out.max())
            out = e / e.sum()
        return out

    def classify(self, crop: np.ndarray) -> Classification:
        """RGB uint8 crop -> best label with every class probability.

        With the manifest's ``label_weights`` (the operating point) the probabilities are the
        model's times the weights, renormalised (a shift of the class priors): the label, its
        score (which ``rules.min_score`` reads) and the probabilities all come from those.
        """
        p = self.probabilities(crop)
        if self.weights is not None:
            q = p * self.weights
            p = q / q.sum() if q.sum() > 0 else p
        i = int(np.argmax(p))
        labels = self.manifest.labels
        return Classification(labels[i], float(p[i]), {lab: float(v) for lab, v in zip(labels, p)})
