"""Model manifest (models/NAME.json): the single source of truth for a model.

Written by ``convert/``, read by ``edge/``. Every model constant (input size,
colour order, resize mode, normalization, quantization, anchors, strides,
labels, crop margin) lives here and nowhere else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ModelError

FORMAT_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class QuantParams(_Strict):
    """Affine quantization: real = scale * (q - zero_point).

    A manifest's quant parameters must also be the model's own (checked against the
    interpreter's tensors when a Detector/Classifier is built, edge/infer/models.py).
    """

    scale: float = Field(gt=0.0, description="Quantization scale")
    zero_point: int = Field(ge=-128, le=255, description="Quantization zero point (int8 or uint8 range)")


class InputSpec(_Strict):
    """How a frame becomes the model's input tensor."""

    name: str = Field("", description="Input tensor name in the TFLite model")
    width: int = Field(gt=0, le=8192, description="Input width in pixels")
    height: int = Field(gt=0, le=8192, description="Input height in pixels")
    channels: int = Field(3, ge=1, le=4, description="Number of channels")
    color: Literal["RGB", "BGR"] = Field("RGB", description="Channel order the model expects")
    resize: Literal["letterbox", "stretch"] = Field(
        description="letterbox keeps aspect ratio and pads; stretch resizes to fit"
    )
    pad_value: float = Field(
        127.5, description="Pixel value (0..255) used for letterbox padding (darknet uses 0.5*255)"
    )
    scale: float = Field(description="normalized = (pixel * scale - mean) / std")
    mean: list[float] = Field(default_factory=lambda: [0.0, 0.0, 0.0], description="Per-channel mean")
    std: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0], description="Per-channel std")
    dtype: Literal["int8", "uint8", "float32"] = Field(description="Input tensor dtype")
    quant: QuantParams | None = Field(None, description="Input quantization (int8/uint8 inputs)")


class OutputSpec(_Strict):
    """One output tensor and what it means."""

    name: str = Field(description="Output tensor name in the TFLite model")
    shape: list[int] = Field(description="Tensor shape, NHWC for YOLO heads")
    role: Literal["yolo_head", "probabilities", "logits", "ssd_boxes", "ssd_scores"] = Field(
        description="What the tensor holds (ssd_boxes / ssd_scores: per-anchor box regressions / score logits "
        "of an SSD detector, decoded with the manifest's ``ssd`` anchors)")
    dtype: Literal["int8", "uint8", "float32"] = Field(description="Output tensor dtype")
    quant: QuantParams | None = Field(None, description="Output quantization")
    stride: int | None = Field(None, description="YOLO head stride in input pixels")
    anchors: list[list[float]] | None = Field(
        None, description="YOLO anchors of this head as [w, h] in input pixels"
    )
    mask: list[int] | None = Field(None, description="Indices of this head's anchors in the cfg list")
    scale_x_y: float = Field(1.0, description="darknet scale_x_y of this head")


class SsdSpec(_Strict):
    """SSD anchors and box decoding (MediaPipe's SsdAnchorsCalculator / TensorsToDetections options)."""

    num_layers: int = Field(gt=0, description="Anchor layers")
    strides: list[int] = Field(min_length=1, description="Feature-map stride of each layer, input pixels")
    min_scale: float = Field(gt=0, description="Anchor scale of the first layer")
    max_scale: float = Field(gt=0, description="Anchor scale of the last layer")
    aspect_ratios: list[float] = Field(default_factory=lambda: [1.0], description="Anchor aspect ratios")
    interpolated_scale_aspect_ratio: float = Field(
        1.0, description="Aspect ratio of the extra anchor between two scales (<= 0: none)")
    anchor_offset: float = Field(0.5, description="Anchor centre offset within a cell")
    fixed_anchor_size: bool = Field(True, description="Anchors have unit width and height")
    reduce_boxes_in_lowest_layer: bool = Field(False, description="SSD's 3-box lowest layer")
    num_anchors: int = Field(gt=0, description="Anchors the options give (checked against the outputs)")
    box_scale: float = Field(gt=0, description="Box regressions are in units of this many input pixels")
    num_keypoints: int = Field(0, ge=0, description="Keypoints after the 4 box values (x, y each)")
    score_clip: float = Field(100.0, gt=0, description="Score logits are clipped to +-this before the sigmoid")


class GateCheck(_Strict):
    """One accuracy check the converter made before shipping the model."""

    metric: str = Field(description="What was measured, e.g. int8_float_detection_f1")
    value: float | None = Field(description="Measured value (None: could not be measured)")
    op: Literal[">=", "<="] = Field(description="value must be >= or <= threshold to pass")
    threshold: float = Field(description="Limit the converter was given")
    passed: bool = Field(description="Whether value met threshold")
    basis: str = Field("", description="What it was measured on")


class Gate(_Strict):
    """The converter's accuracy gate: the model ships only if every check passed."""

    passed: bool = Field(description="Every check passed")
    checks: list[GateCheck] = Field(default_factory=list, description="The checks, in the order made")

    @classmethod
    def of(cls, checks: list[GateCheck]) -> "Gate":
        return cls(passed=all(c.passed for c in checks), checks=checks)

    def failures(self) -> str:
        """The failed checks in words, e.g. ``int8_float_detection_f1 0.455 < 0.9 (min)``."""
        out = []
        for c in self.checks:
            if c.passed:
                continue
            if c.value is None:
                out.append(f"{c.metric} unmeasured")
            else:
                rel, kind = ("<", "min") if c.op == ">=" else (">", "max")
                out.append(f"{c.metric} {c.value:.4g} {rel} {c.threshold:g} ({kind})")
        return "; ".join(out) or "no check recorded"


def gate_check(metric: str, value: float | None, op: str, threshold: float, basis: str = "") -> GateCheck:
    """A GateCheck; a missing or NaN value fails."""
    ok = value is not None and value == value and (value >= threshold if op == ">=" else value <= threshold)
    v = None if value is None or value != value else round(float(value), 6)
    return GateCheck(metric=metric, value=v, op=op, threshold=float(threshold), passed=bool(ok), basis=basis)


class SourceFile(_Strict):
    path: str = Field(description="Path the file was read from at conversion time")
    sha256: str = Field(description="sha256 of the file")


class ModelSource(_Strict):
    kind: Literal["darknet", "keras", "trained", "tflite", "onnx", "torch"] = Field(
        description="What the model was made from (tflite: a third-party float TFLite model; onnx: an ONNX "
        "file; torch: a PyTorch state dict)")
    files: dict[str, SourceFile] = Field(default_factory=dict, description="Source files and hashes")


class Manifest(_Strict):
    """Everything the runtime needs to use a model, and how it was made."""

    format_version: int = Field(description="Manifest format version")
    name: str = Field(description="Model name (file stem)")
    task: Literal["detect", "classify"] = Field(description="detect (YOLO) or classify")
    tflite: str = Field(description="File name of the int8 model, relative to the manifest")
    sha256: str = Field(description="sha256 of the int8 model file")
    float_tflite: str | None = Field(None, description="File name of the float32 reference model")
    float_sha256: str | None = Field(None, description="sha256 of the float32 reference model")
    input: InputSpec
    outputs: list[OutputSpec]
    labels: list[str] = Field(min_length=1, description="Class labels in output order")
    crop_margin: float | None = Field(
        None, description="Classifiers: margin added around a face box, as a fraction of its size"
    )
    label_weights: dict[str, Annotated[float, Field(gt=0.0, le=1000.0)]] | None = Field(
        None, description="Classifiers: the device's probabilities are the model's times these weights, "
        "renormalised (a label left out weighs 1): the operating point, chosen on training data (doorguard "
        "train classifier --max-false-alarm); absent: the model's own")
    score_threshold: float | None = Field(None, description="Detectors: default score threshold")
    nms_iou: float | None = Field(None, description="Detectors: default NMS IoU threshold")
    ssd: SsdSpec | None = Field(None, description="SSD detectors (ssd_boxes/ssd_scores outputs): anchors, decoding")
    source: ModelSource
    metrics: dict[str, Any] = Field(default_factory=dict, description="Figures measured at conversion")
    versions: dict[str, str] = Field(default_factory=dict, description="Converter and library versions")
    gate: Gate | None = Field(
        None, description="Accuracy gate measured at conversion; absent: not recorded (older converters)")

    @model_validator(mode="after")
    def _weights_name_labels(self) -> "Manifest":
        unknown = sorted(set(self.label_weights or {}) - set(self.labels))
        if unknown:
            raise ValueError(f"label_weights names {', '.join(unknown)}, which are not among the labels")
        return self

    def tflite_path(self, manifest_path: Path) -> Path:
        return manifest_path.parent / self.tflite


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "(root)"
    return f"{loc}: {err['msg']}"


def manifest_paths(folder: Path | str) -> list[Path]:
    """The model manifests in a folder, sorted: its ``*.json`` files that name a ``tflite``.

    Other JSON kept beside the models (``models/eval.json``, reports) is skipped. A file
    that is not valid JSON is listed, so that loading it says what is wrong with it.
    """
    out = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            raw = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            out.append(p)
            continue
        if isinstance(raw, dict) and "tflite" in raw:
            out.append(p)
    return out


def load_manifest(path: Path | str, verify_hash: bool = True) -> Manifest:
    """Read and validate a manifest; optionally check the model file's sha256.

    Args:
        path: the manifest .json, or the .tflite next to it.
        verify_hash: refuse a model whose sha256 differs from the manifest.

    Returns:
        The validated manifest.

    Raises:
        ModelError: missing/unreadable/invalid manifest, newer format version,
            missing model file, or hash mismatch.
    """
    path = Path(path)
    if path.suffix == ".tflite":
        path = path.with_suffix(".json")
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"model manifest not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"model manifest {path} is unreadable: {e}") from e
    if not isinstance(raw, dict):
        raise ModelError(f"model manifest {path} is not a JSON object")
    version = raw.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ModelError(
            f"model manifest {path} has format version {version}; this doorguard reads up to "
            f"{FORMAT_VERSION}: upgrade doorguard"
        )
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as e:
        raise ModelError(f"model manifest {path} is invalid: {_first_error(e)}") from e
    if verify_hash:
        model = manifest.tflite_path(path)
        if not model.is_file():
            raise ModelError(f"model file {model} named by {path.name} is missing")
        actual = sha256_file(model)
        if actual != manifest.sha256:
            raise ModelError(
                f"model file {model} does not match its manifest (sha256 {actual[:12]}... != "
                f"{manifest.sha256[:12]}...): corrupt or replaced; re-copy or re-convert it"
            )
    return manifest


def write_manifest(manifest: Manifest, path: Path | str) -> None:
    """Write a manifest atomically (write to a temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(manifest.model_dump(mode="json"), indent=2) + "\n")
    tmp.replace(path)


#: The setting and the flag that let a model with a failed gate run (named in the refusal).
GATE_OVERRIDE = "models.allow_failed_gate = true in the config, or --allow-failed-gate"


def recorded_gate(m: Manifest) -> Gate | None:
    """The accuracy gate a manifest records; None when it records none.

    Manifests written before ``gate`` existed are read for what they do say: a
    classifier's ``metrics.gate.passed``, a detector's ``metrics.agreement.f1``
    against ``metrics.min_agreement``. A manifest with neither is "not recorded",
    never "failed".
    """
    if m.gate is not None:
        return m.gate
    met = m.metrics or {}
    legacy = met.get("gate")
    if isinstance(legacy, dict) and isinstance(legacy.get("passed"), bool):
        drop = met.get("int8_accuracy_drop_points")
        limit = legacy.get("max_drop_points")
        checks = []
        if isinstance(drop, (int, float)) and isinstance(limit, (int, float)):
            checks.append(gate_check("int8_accuracy_drop_points", drop, "<=", limit,
                                     str(legacy.get("basis", ""))).model_copy(update={"passed": legacy["passed"]}))
        return Gate(passed=legacy["passed"], checks=checks)
    f1 = (met.get("agreement") or {}).get("f1") if isinstance(met.get("agreement"), dict) else None
    limit = met.get("min_agreement")
    if isinstance(f1, (int, float)) and isinstance(limit, (int, float)):
        return Gate.of([gate_check("int8_float_detection_f1", f1, ">=", limit)])
    return None


def gate_problem(m: Manifest, path: Path | str) -> str | None:
    """Why a model must not run (its recorded gate failed), or None (passed or not recorded)."""
    gate = recorded_gate(m)
    if gate is None or gate.passed:
        return None
    return f"model {path} failed its accuracy gate at conversion ({gate.failures()})"


def check_gate(m: Manifest, path: Path | str, allow: bool = False) -> str | None:
    """Refuse a model whose manifest records a failed accuracy gate.

    Args:
        m, path: the manifest and where it was read from (for the message).
        allow: the user's explicit override; the problem is then returned, not raised.

    Returns:
        The problem in words when ``allow`` let it through (the caller warns), else None.

    Raises:
        ModelError: the gate failed and ``allow`` is False.
    """
    problem = gate_problem(m, path)
    if problem is None:
        return None
    if not allow:
        raise ModelError(f"{problem}: re-convert or retrain it, or set {GATE_OVERRIDE} to run it anyway")
    return f"{problem}; running it anyway (allowed by models.allow_failed_gate / --allow-failed-gate)"

