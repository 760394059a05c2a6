"""The ``[models]`` section: which models run and how the interpreter is set up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from .base import _Section


class ModelsConfig(_Section):
    """Which models run and how the interpreter is set up."""

    detector: str = Field(
        "models/yoloface-500k-v2-facemask.json",
        description="Manifest of the face/object detector (relative paths: see Config.base_dir)",
    )
    classifier: str | None = Field(
        "models/mask-classifier.json",
        description="Manifest of the face classifier; empty or absent runs the detector alone",
    )
    num_threads: int = Field(2, ge=1, le=16, description="CPU threads for each TFLite interpreter")
    backend: Literal["auto", "litert", "tflite_runtime", "tensorflow"] = Field(
        "auto", description="Interpreter backend; auto tries litert, then tflite_runtime, then tf.lite"
    )
    # Scores reach 1.0 only in theory (int8: 0.996 at most): a threshold of 1 detects nothing.
    score_threshold: float | None = Field(
        None, ge=0.0, le=0.99, description="Detector score threshold; absent uses the manifest's"
    )
    nms_iou: float | None = Field(
        None, ge=0.0, le=1.0, description="Detector NMS IoU threshold; absent uses the manifest's"
    )
    classify_labels: list[str] = Field(
        default_factory=lambda: ["face"],
        description="Detector labels whose boxes are cropped and passed to the classifier",
    )
    min_face_px: int = Field(
        12, ge=1, le=4096, description="Boxes narrower or shorter than this many pixels are ignored"
    )
    crop_margin: float | None = Field(
        None, ge=0.0, le=2.0,
        description="Margin around a face box for the classifier crop; absent uses the manifest's",
    )
    extra_classifiers: list[str] = Field(
        default_factory=list, max_length=8,
        description="Manifests of more classifiers run on every face crop (e.g. identity), each voting on "
        "its own; their labels are judged by the same rules.alert_on_classifier / compliant_on_classifier",
    )

    allow_failed_gate: bool = Field(
        False, description="Run a model whose manifest records a failed accuracy gate (run and doctor "
        "refuse it otherwise; same as run --allow-failed-gate)",
    )

    @model_validator(mode="after")
    def _empty_classifier(self) -> "ModelsConfig":
        if self.classifier is not None and not self.classifier.strip():
            self.classifier = None
        return self
