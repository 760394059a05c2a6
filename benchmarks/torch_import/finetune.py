"""Train a torchvision classifier on the ../shared mask crops (CPU), import it with doorguard's
converters and report float vs int8 vs the original framework's accuracy (issue 22).

The two seeds' models:

- ``--arch mobilenet_v2`` (seed: a torchvision MobileNetV2 state dict): imported with
  ``doorguard convert torch --state-dict``; reference torch itself.
- ``--arch resnet18`` (seed: a fast.ai ResNet18 exported to ONNX): exported here with
  ``torch.onnx.export`` and imported with ``doorguard convert onnx --model``; reference
  onnxruntime on that file.

Not a timed test: a measurement of the import on a model trained on real data.
torchvision's ImageNet weights cannot be downloaded here: MobileNetV2 starts
from the ImageNet weights of ../shared's Coral MobileNetV2 (Apache-2.0, int8,
dequantized; ``--init random`` starts from scratch); ../shared holds no ResNet18
weights, so ResNet18 starts from random weights. Each trains for a CPU-time
budget; its accuracy is that of a briefly trained model, not a tuned one.
What matters here is int8 vs the framework.

Training input goes through ``edge.infer.preprocess`` with the same spec the
manifest will carry (96x96 RGB stretch, MobileNet's [-1, 1]), so the model is
trained on exactly what the Pi feeds it.

Usage (needs the torch extra, see README "Importing PyTorch and ONNX classifiers"):

    nice -n 10 python benchmarks/torch_import/finetune.py --arch mobilenet_v2 --shared ../shared \
        --work /tmp/mnv2 --cpu-seconds 1200
    nice -n 10 python benchmarks/torch_import/finetune.py --arch resnet18 --shared ../shared \
        --work /tmp/resnet18 --cpu-seconds 2400

Writes WORK/ARCH_mask.pth (and WORK/ARCH_mask.onnx for resnet18),
WORK/models/ARCH-torch or ARCH-onnx.{tflite,json,...} and WORK/result.json
(accuracies on facemask853 val and dataroots validation).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

LABELS = ["mask", "no_mask", "mask_incorrect"]
SIZE = 96
# How each architecture reaches doorguard: as the seed that used it shipped it.
ROUTES = {"mobilenet_v2": "torch", "resnet18": "onnx"}


def _spec():
    """MobileNet's [-1, 1] (the Coral weights were trained on it): ``convert torch --preprocess mobilenet``."""
    from edge.manifest import InputSpec

    return InputSpec(width=SIZE, height=SIZE, color="RGB", resize="stretch", scale=1 / 127.5,
                     mean=[1.0, 1.0, 1.0], std=[1.0, 1.0, 1.0], dtype="float32")


def coral_init(model, path: Path) -> int:
    """ImageNet weights for torchvision's MobileNetV2 from the Apache-2.0 Coral int8 MobileNetV2.

    The TFLite convolutions run in torchvision's module order (BN folded into them): each is
    dequantized into the matching Conv2d and its BatchNorm set to the identity plus the folded
    bias (kept in eval mode while fine-tuning, so that stays exact). The 1001-class logits
    layer is not used. Returns the number of convolutions set.
    """
    import tensorflow as tf
    import torch

    it = tf.lite.Interpreter(str(path), experimental_op_resolver_type=tf.lite.experimental.OpResolverType
                             .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    det = {d["index"]: d for d in it.get_tensor_details()}

    def real(i):
        d = det[i]
        s, z = d["quantization"]
        return (it.get_tensor(i).astype(np.float32) - z) * s

    tfl = [(o["op_name"], real(o["inputs"][1]), real(o["inputs"][2])) for o in it._get_ops_details()
           if o["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    convs = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    bns = [m for m in model.features.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == len(bns) == len(tfl) - 1, (len(convs), len(bns), len(tfl))
    with torch.no_grad():
        for (op, w, b), conv, bn in zip(tfl, convs, bns):
            w = w.transpose(3, 0, 1, 2) if op == "DEPTHWISE_CONV_2D" else w.transpose(0, 3, 1, 2)
            assert tuple(conv.weight.shape) == w.shape, (conv, w.shape)
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(w)))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(b))
    return len(convs)


def _load(ds, spec) -> tuple[np.ndarray, np.ndarray]:
    from convert.data.images import read_rgb
    from edge.infer.preprocess import resize_for

    xs, ys = [], []
    for f, t in zip(ds.files, ds.targets):
        img, _ = resize_for(read_rgb(f), spec)
        xs.append(img)
        ys.append(t)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def _link_folder(ds, folder: Path) -> Path:
    """DIR/<label>/NNNNN.jpg symlinks, the layout --val and --calib take."""
    for i, (f, t) in enumerate(zip(ds.files, ds.targets)):
        d = folder / ds.labels[t]
        d.mkdir(parents=True, exist_ok=True)
        dst = d / f"{i:05d}{Path(f).suffix}"
        if not dst.exists():
            dst.symlink_to(Path(f).resolve())
    return folder


def train(model, init: str, x_train: np.ndarray, y_train: np.ndarray, weights, spec, rng, args) -> list[dict]:
    """AdamW, one-cycle, horizontal flips, class-weighted loss, for ``args.epochs`` or the CPU budget."""
    import torch

    from edge.infer.preprocess import normalize

    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weights)
    cpu0 = time.process_time()
    history = []
    batch = 64
    steps_per_epoch = len(y_train) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)
    stopped = False
    for epoch in range(args.epochs):
        model.train()
        if init == "coral":  # the folded ImageNet statistics stay as they are
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.eval()
        order = rng.permutation(len(y_train))
        total, correct, seen = 0.0, 0, 0
        for s in range(steps_per_epoch):
            idx = order[s * batch:(s + 1) * batch]
            xb = x_train[idx]
            flip = rng.random(len(idx)) < 0.5
            xb = np.where(flip[:, None, None, None], xb[:, :, ::-1], xb)
            xt = torch.from_numpy(np.ascontiguousarray(normalize(xb, spec).transpose(0, 3, 1, 2)))
            yt = torch.from_numpy(y_train[idx])
            opt.zero_grad()
            out = model(xt)
            loss = loss_fn(out, yt)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
            correct += int((out.argmax(1) == yt).sum())
            seen += len(idx)
            if time.process_time() - cpu0 > args.cpu_seconds:
                stopped = True
                break
        history.append({"epoch": epoch + 1, "steps": s + 1, "loss": round(total / seen, 4),
                        "train_accuracy": round(correct / seen, 4),
                        "cpu_s": round(time.process_time() - cpu0, 1)})
        print(history[-1], flush=True)
        if stopped:
            break
    return history


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--cpu-seconds", type=float, default=1200.0, help="training CPU-time budget (all threads)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--arch", choices=sorted(ROUTES), default="mobilenet_v2",
                    help="torchvision architecture; mobilenet_v2 goes through convert torch, resnet18 "
                         "through an ONNX export and convert onnx (default mobilenet_v2)")
    ap.add_argument("--init", choices=["coral", "random"],
                    help="mobilenet_v2: ImageNet weights from ../shared's Coral MobileNetV2 (its default) "
                         "or random; resnet18: random only (no ResNet18 weights in ../shared)")
    ap.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate (one-cycle)")
    ap.add_argument("--max-train", type=int, default=4000,
                    help="train on a seeded sample of this many crops (every mask_incorrect crop kept)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true",
                    help="WORK/ARCH_mask.pth from an earlier run: skip training, import and measure it again")
    args = ap.parse_args()
    init = args.init or ("coral" if args.arch == "mobilenet_v2" else "random")
    if init == "coral" and args.arch != "mobilenet_v2":
        ap.error("--init coral: the Coral ImageNet weights are a MobileNetV2's")

    import torch
    import torchvision

    from convert.train.mask_recipe import mask_classifier_data

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    pool, evals, _ = mask_classifier_data(args.shared, work / "crops-src", progress=False)
    from convert.pipeline.classifier import LabeledFiles

    rng = np.random.default_rng(args.seed)
    if len(pool.files) > args.max_train:
        rare = [i for i, t in enumerate(pool.targets) if t == LABELS.index("mask_incorrect")]
        rest = [i for i in range(len(pool.files)) if i not in set(rare)]
        keep = sorted(rare + list(rng.choice(rest, size=args.max_train - len(rare), replace=False)))
        pool = LabeledFiles(LABELS, [pool.files[i] for i in keep], [pool.targets[i] for i in keep])
    spec = _spec()
    t0 = time.time()
    x_train, y_train = _load(pool, spec)
    print(f"training pool {len(y_train)} crops {np.bincount(y_train, minlength=3).tolist()} "
          f"(read in {time.time() - t0:.0f} s)", flush=True)

    counts = np.bincount(y_train, minlength=3).astype(np.float64)
    weights = torch.tensor(np.minimum(counts.max() / np.maximum(counts, 1), 10.0), dtype=torch.float32)
    model = getattr(torchvision.models, args.arch)(num_classes=len(LABELS))
    coral = args.shared / "models" / "coral" / "mobilenet_v2_1.0_224_quant.tflite"
    if init == "coral":
        print(f"ImageNet init from {coral.name}: {coral_init(model, coral)} convolutions", flush=True)
    pth = work / f"{args.arch}_mask.pth"
    history_path = work / f"{args.arch}_history.json"
    if args.reuse:
        if not pth.is_file():
            ap.error(f"--reuse: {pth} not found")
        model.load_state_dict(torch.load(pth, weights_only=True))
        history = json.loads(history_path.read_text()) if history_path.is_file() else []
        print(f"reusing {pth} (training skipped)", flush=True)
    else:
        history = train(model, init, x_train, y_train, weights, spec, rng, args)
        torch.save(model.state_dict(), pth)
        history_path.write_text(json.dumps(history, indent=2) + "\n")
    model.eval()

    # Calibration: 300 seeded training crops; validation: facemask853 val crops (runtime margin).
    pick = np.random.default_rng(args.seed + 1).choice(len(pool.files), size=min(300, len(pool.files)), replace=False)
    calib = _link_folder(LabeledFiles(LABELS, [pool.files[i] for i in pick], [pool.targets[i] for i in pick]),
                         work / "calib")
    val = _link_folder(evals["facemask853_val"], work / "facemask853_val")
    dr = _link_folder(evals["dataroots_real_val"], work / "dataroots_real_val")
    route = ROUTES[args.arch]
    name = f"{args.arch}-{route}"
    common = ["--labels", ",".join(LABELS), "--input", f"{SIZE}x{SIZE}", "--preprocess", "mobilenet",
              "--calib", str(calib), "--val", str(val), "--out", str(work / "models" / name)]
    from convert.pipeline.onnx_import import compare_with_reference, onnxruntime_reference
    from convert.pipeline.torch_import import export_onnx, torch_reference

    if route == "torch":
        cmd = [sys.executable, "-m", "edge.cli", "convert", "torch", "--arch", f"torchvision:{args.arch}",
               "--state-dict", str(pth), *common]
        reference = torch_reference(model)
    else:  # the fast.ai seed's way: an ONNX file, imported as one
        onnx_path = work / f"{args.arch}_mask.onnx"
        export_onnx(model, SIZE, SIZE, onnx_path)
        cmd = [sys.executable, "-m", "edge.cli", "convert", "onnx", "--model", str(onnx_path), "--layout", "nchw",
               *common]
        reference = onnxruntime_reference(onnx_path.read_bytes(), "image", "nchw")
    print("$ " + " ".join(cmd), flush=True)
    rc = subprocess.run(cmd).returncode

    # dataroots validation too, through the runtime (int8, float32) and the framework.
    manifest = work / "models" / f"{name}.json"
    result = {"arch": args.arch, "route": f"convert {route}", "init": init, "history": history, "convert_exit": rc,
              "cpu_budget_s": args.cpu_seconds, "train_crops": int(len(y_train)),
              "params": int(sum(p.numel() for p in model.parameters()))}
    if manifest.is_file():
        m = json.loads(manifest.read_text())
        ev = m["metrics"]["eval"]["val"]
        result["facemask853_val"] = {"float32_tflite_accuracy": ev["float_accuracy"],
                                     "int8_accuracy": ev["int8_accuracy"], **m["metrics"]["framework"]}
        from convert.pipeline.classifier import folder_set

        result["dataroots_real_val"] = compare_with_reference(manifest, reference,
                                                              folder_set(dr, LABELS), labelled=True)
        from edge.infer.models import Classifier
        from convert.data.images import read_rgb

        fl = Classifier(manifest, use_float=True)
        ds = folder_set(dr, LABELS)
        pred = [int(np.argmax(fl.probabilities(read_rgb(f)))) for f in ds.files]
        result["dataroots_real_val"]["float32_tflite_accuracy"] = round(
            float(np.mean(np.asarray(pred) == np.asarray(ds.targets))), 4)
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
