"""The network ``train classifier`` trains: a MobileNet backbone, a softmax head, a two-phase fit.

Recipe (the seeds' notebooks, done carefully):
1. ImageNet backbone frozen (BatchNorm in inference mode), new head
   (global average pool, dropout, softmax), Adam 1e-3.
2. Fine-tune the last blocks at a low learning rate (1e-4), BatchNorm still
   frozen so small batches do not wreck its statistics.
Both phases stop early on validation loss and restore the best weights.
``keras.utils.set_random_seed`` + op determinism make a rerun give the same
weights on the same machine.

Without backbone weights the backbone starts from random weights and the whole
network trains from scratch in one phase (the report says so).

Keras and TensorFlow are imported inside the functions that need them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ModelError, UsageError, first_line
from edge.manifest import InputSpec
from edge.infer.preprocess import normalize

from convert.train.classifier_data import class_weights, make_sequence
from convert.parse.coral_weights import load_tflite_backbone_weights

log = logging.getLogger(__name__)

# name -> (keras.applications family, alpha, first layer of the fine-tuned tail)
BACKBONES: dict[str, tuple[str, float, str]] = {
    "mobilenet_v1_0.25": ("v1", 0.25, "conv_dw_12"),
    "mobilenet_v1_0.5": ("v1", 0.5, "conv_dw_12"),
    "mobilenet_v1_0.75": ("v1", 0.75, "conv_dw_12"),
    "mobilenet_v1_1.0": ("v1", 1.0, "conv_dw_12"),
    "mobilenet_v2_0.35": ("v2", 0.35, "block_15_expand"),
    "mobilenet_v2_0.5": ("v2", 0.5, "block_15_expand"),
    "mobilenet_v2_1.0": ("v2", 1.0, "block_15_expand"),
}

# MobileNet's own preprocessing: pixels to [-1, 1].
MOBILENET_SCALE = 1.0 / 127.5
MOBILENET_MEAN = [1.0, 1.0, 1.0]


def mobilenet_spec(size: int) -> InputSpec:
    """Input spec of a trained classifier: RGB, stretched to size x size, [-1, 1]."""
    return InputSpec(width=size, height=size, color="RGB", resize="stretch",
                     scale=MOBILENET_SCALE, mean=list(MOBILENET_MEAN), std=[1.0, 1.0, 1.0],
                     dtype="int8")


def check_backbone(name: str, size: int) -> None:
    """Refuse a backbone or input size this module cannot build.

    Raises:
        UsageError: size below 32 (MobileNet downsamples 32x) or an unknown backbone.
    """
    if size < 32:
        raise UsageError(f"--size must be at least 32 (MobileNet downsamples 32x), not {size}")
    if name not in BACKBONES:
        raise UsageError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")


def build_backbone(name: str, size: int, weights: Path | None):
    """keras.applications MobileNet without top, optionally loaded from a weights file.

    Args:
        name: a key of ``BACKBONES``.
        size: square input size.
        weights: a Keras no-top weights file, a Coral MobileNet v1 ``.tflite``
            (``convert.parse.coral_weights``), or None for random weights.

    Raises:
        UsageError: unknown backbone or size.
        ModelError: the weights file does not fit the architecture.
    """
    import keras

    check_backbone(name, size)
    family, alpha, _ = BACKBONES[name]
    cls = keras.applications.MobileNet if family == "v1" else keras.applications.MobileNetV2
    base = cls(input_shape=(size, size, 3), alpha=alpha, include_top=False, weights=None)
    if weights is not None:
        if not Path(weights).is_file():
            raise ModelError(f"backbone weights not found: {weights}")
        if Path(weights).suffix == ".tflite":
            load_tflite_backbone_weights(base, Path(weights), name)
            return base
        before = [w.copy() for w in base.get_weights()]
        try:
            with warnings.catch_warnings():
                # Keras 3 only warns (and keeps random weights) for layers a
                # .weights.h5 file lacks: treat that as the mismatch it is.
                warnings.simplefilter("error")
                base.load_weights(str(weights))
        except Exception as e:  # h5py/keras raise many kinds; all mean "does not fit"
            raise ModelError(f"backbone weights {weights} do not fit {name}: {first_line(e)}") from e
        unchanged = sum(np.array_equal(a, b) for a, b in zip(before, base.get_weights()))
        if unchanged:
            raise ModelError(f"backbone weights {weights} do not fit {name}: {unchanged} of "
                             f"{len(before)} weight arrays were not loaded")
    return base


def build_classifier(base: Any, n_classes: int, size: int, dropout: float = 0.2, *,
                     frozen_bn: bool = True):
    """Backbone + pooled softmax head.

    Args:
        frozen_bn: call the backbone in inference mode (BatchNorm keeps its ImageNet
            statistics); False when training from scratch, where BatchNorm must learn them.
    """
    import keras

    inp = keras.Input((size, size, 3), name="image")
    feats = base(inp, training=False) if frozen_bn else base(inp)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(feats)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    out = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inp, out, name="classifier")


def set_tail_trainable(base: Any, first_layer: str) -> int:
    """Make the layers from ``first_layer`` on trainable, BatchNorm excepted.

    Returns:
        The number of trainable layers that have weights.

    Raises:
        ModelError: the backbone has no such layer.
    """
    import keras

    names = [layer.name for layer in base.layers]
    if first_layer not in names:
        raise ModelError(f"backbone has no layer {first_layer} to start fine-tuning at")
    start = names.index(first_layer)
    base.trainable = True
    n = 0
    for i, layer in enumerate(base.layers):
        # BatchNorm stays frozen: its statistics came from ImageNet-sized batches.
        layer.trainable = i >= start and not isinstance(layer, keras.layers.BatchNormalization)
        n += int(layer.trainable and bool(layer.weights))
    return n


class _EpochBar:
    """A tqdm bar over epochs (Keras' own per-step bars are too chatty for logs)."""

    def __new__(cls, keras: Any, total: int, desc: str, seq: Any):
        from tqdm import tqdm

        class Bar(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                self.bar = tqdm(total=total, desc=desc, unit="epoch")

            def on_epoch_begin(self, epoch, logs=None):
                seq.set_epoch(epoch + (1000 if "fine" in desc else 0))

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                self.bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()
                                      if k in ("loss", "accuracy", "val_loss", "val_accuracy")})
                self.bar.update(1)

            def on_train_end(self, logs=None):
                self.bar.close()

        return Bar()


@dataclass
class TrainResult:
    """The trained Keras model and what happened while training it."""

    model: Any
    history: dict[str, Any]


def fit_classifier(x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, *, labels: list[str],
                   spec: InputSpec, backbone: str, weights: Path | None, epochs: int,
                   fine_tune_epochs: int, batch: int, seed: int, patience: int = 3,
                   max_class_weight: float = 10.0, conditions_aug: float = 0.0) -> TrainResult:
    """Train head then tail (or from scratch without weights); best weights by val loss.

    Args:
        x, y: training images (N x H x W x 3 uint8, resized as the runtime does) and label indices.
        xv, yv: the validation images early stopping watches.
        labels: label names in output order.
        spec: the input spec (``mobilenet_spec``).
        backbone, weights: a ``BACKBONES`` name and its weights (None: from scratch).
        epochs, fine_tune_epochs: maximum epochs of each phase (from scratch: their sum, one phase).
        batch, seed: batch size and the seed of every random choice.
        patience: early-stopping patience in epochs.
        max_class_weight: cap of the balanced class weights.
        conditions_aug: share of training crops that also get one doorway condition
            (``classifier_data.condition_augment``); 0: none.

    Returns:
        The inference model (batch 1, no Dropout randomness) and the training history.
    """
    import keras
    import tensorflow as tf

    from tensorflow.python.framework import config as tf_config

    was_deterministic = tf_config.is_op_determinism_enabled()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    try:
        return _fit(x, y, xv, yv, labels=labels, spec=spec, backbone=backbone, weights=weights,
                    epochs=epochs, fine_tune_epochs=fine_tune_epochs, batch=batch, seed=seed,
                    patience=patience, max_class_weight=max_class_weight, conditions_aug=conditions_aug)
    finally:
        # Op determinism is process-wide: leave the process as it was found.
        if not was_deterministic:
            tf_config.disable_op_determinism()


def _fit(x, y, xv, yv, *, labels, spec, backbone, weights, epochs, fine_tune_epochs, batch, seed,
         patience, max_class_weight, conditions_aug) -> TrainResult:
    import keras

    n = len(labels)
    base = build_backbone(backbone, spec.width, weights)
    model = build_classifier(base, n, spec.width)
    w = class_weights(y, n, max_class_weight)
    seq = make_sequence(keras, x, y, w, spec, batch, seed, n, conditions=conditions_aug)
    xv_n = np.stack([normalize(im, spec) for im in xv]).astype(np.float32)
    yv_1 = np.eye(n, dtype=np.float32)[yv]
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=0.05)
    history: dict[str, Any] = {"class_weights": {lab: round(float(v), 3) for lab, v in zip(labels, w)},
                               "phases": []}

    def run(phase: str, lr: float, n_epochs: int):
        model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss, metrics=["accuracy"])
        stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                             restore_best_weights=True)
        h = model.fit(seq, validation_data=(xv_n, yv_1), epochs=n_epochs, verbose=0,
                      callbacks=[stop, _EpochBar(keras, n_epochs, phase, seq)])
        vl = h.history.get("val_loss", [])
        best = int(np.argmin(vl)) if vl else -1
        history["phases"].append({
            "phase": phase, "learning_rate": lr, "epochs_run": len(vl), "best_epoch": best + 1,
            "best_val_loss": round(float(vl[best]), 4) if vl else None,
            "best_val_accuracy": round(float(h.history["val_accuracy"][best]), 4) if vl else None,
        })

    if weights is not None:
        base.trainable = False
        if epochs > 0:
            run("head", 1e-3, epochs)
        if fine_tune_epochs > 0:
            history["fine_tuned_layers"] = set_tail_trainable(base, BACKBONES[backbone][2])
            run("fine-tune", 1e-4, fine_tune_epochs)
        history["backbone_init"] = "imagenet weights"
    else:
        # From scratch: BatchNorm must learn its statistics, so the backbone runs in training mode.
        log.warning("no --backbone-weights: training %s from random weights (expect lower accuracy)", backbone)
        model = build_classifier(base, n, spec.width, frozen_bn=False)
        base.trainable = True
        run("from scratch", 1e-3, epochs + fine_tune_epochs)
        history["backbone_init"] = "random (trained from scratch, no ImageNet weights)"
    return TrainResult(_inference_model(model, spec.width), history)


def _inference_model(model: Any, size: int):
    """The same weights in a graph without Dropout randomness, ready for conversion."""
    import keras

    inp = keras.Input((size, size, 3), name="image", batch_size=1)
    out = model(inp, training=False)
    return keras.Model(inp, out, name=model.name)
