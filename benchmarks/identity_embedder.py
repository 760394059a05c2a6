"""A face embedder for the identity benchmark: MobileNet v1 fine-tuned to tell apart the
benchmark's ``neg`` people (disjoint from its ``cal`` and ``test`` people), cut at the pooled
1024-d features and converted to a full-integer int8 TFLite.

It asks whether face-trained features (instead of ImageNet's) make a per-user head usable::

    nice -n 10 python -m benchmarks.identity_embedder --out /tmp/doorguard-identity/face-embedder.tflite
    nice -n 10 python -m benchmarks.identity --embedder /tmp/doorguard-identity/face-embedder.tflite \\
        --work /tmp/doorguard-identity/face --out benchmarks/results/identity-face

Workstation only (TensorFlow); about 10 minutes on 2 busy x86 cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import identity as bench

SIZE = 96


def load(images: list[bench.Image]) -> np.ndarray:
    out = np.zeros((len(images), SIZE, SIZE, 3), np.float32)
    for i, im in enumerate(images):
        rgb = cv2.cvtColor(cv2.imread(str(im.path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        out[i] = cv2.resize(rgb, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return out / 127.5 - 1.0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--data", type=Path, default=bench.DATAROOTS)
    p.add_argument("--backbone-weights", type=Path, default=bench.EMBEDDER)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0, help="the benchmark's split seed (default 0)")
    p.add_argument("--neg-people", type=int, default=150)
    p.add_argument("--cal-people", type=int, default=100)
    p.add_argument("--epochs", type=int, default=12)
    args = p.parse_args(argv)

    import keras
    import tensorflow as tf

    from convert.train.mobilenet import build_backbone, set_tail_trainable

    keras.utils.set_random_seed(args.seed)
    crops = [im for im in bench.scan(args.data) if im.kind == "crop"]
    people = sorted({im.person for im in crops} | {im.person for im in bench.scan(args.data)})
    neg = set(bench.split_people(people, args.seed, args.neg_people, args.cal_people)["neg"])
    train = [im for im in crops if im.person in neg]
    ids = sorted({im.person for im in train})
    y = np.array([ids.index(im.person) for im in train])
    x = load(train)
    print(f"{len(train)} crops of {len(ids)} people (the benchmark's neg group)")

    base = build_backbone("mobilenet_v1_1.0", SIZE, args.backbone_weights)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    feats = keras.layers.GlobalAveragePooling2D(name="embedding")(base(inp, training=False))
    logits = keras.layers.Dense(len(ids), name="logits")(keras.layers.Dropout(0.3)(feats))
    model = keras.Model(inp, logits)

    def flip(xb):
        return np.where(np.random.rand(len(xb), 1, 1, 1) < 0.5, xb[:, :, ::-1], xb)

    class Flips(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.order = np.random.permutation(len(x))

        def __len__(self):
            return int(np.ceil(len(x) / 32))

        def __getitem__(self, i):
            j = self.order[i * 32:(i + 1) * 32]
            return flip(x[j]), y[j]

        def on_epoch_end(self):
            self.order = np.random.permutation(len(x))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    t0 = time.perf_counter()
    base.trainable = False
    model.compile(keras.optimizers.Adam(1e-3), loss, metrics=["accuracy"])
    model.fit(Flips(), epochs=3, verbose=2)
    base.trainable = True
    set_tail_trainable(base, "conv_dw_10")
    model.compile(keras.optimizers.Adam(2e-4), loss, metrics=["accuracy"])
    model.fit(Flips(), epochs=args.epochs, verbose=2)
    print(f"trained in {time.perf_counter() - t0:.0f} s")

    embedder = keras.Model(inp, feats)
    conv = tf.lite.TFLiteConverter.from_keras_model(embedder)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = x[np.random.default_rng(args.seed).choice(len(x), size=min(300, len(x)), replace=False)]
    conv.representative_dataset = lambda: ([c[None]] for c in calib)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(conv.convert())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
