"""Weight soup of detector builds (issue 15): the element-wise mean of several fine-tuned darknet
weights files of one cfg (the same start, other seeds), converted, thresholded and measured like any
build of ``make models``.

    .venv/bin/python benchmarks/weight_soup.py \
        --weights build/work-g2/yoloface-500k-v2-facemask.weights \
        --weights build/work-g3/yoloface-500k-v2-facemask.weights \
        --work build/soup-g --json benchmarks/results/detector-weight-soup-issue15.json

Each file's BatchNorm is folded first (``convert.parse.darknet.fold_batchnorm``), so files whose
BatchNorm differs average as the networks they compute; the soup is written BatchNorm-free, as
``doorguard train detector`` writes. Then ``doorguard convert darknet`` at 416x320 (the default's
command), the score threshold on facemask853 train by the rule of every detector
(``convert.build_models.tune_threshold``), and the validation sets with doorguard's classifier
(``benchmarks/detector_recipes.py``). The soup costs the Pi nothing: the same graph, other numbers.
x86 timings are not reported.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.detector_recipes import measure, report  # noqa: E402


def average_weights(paths: list[Path], cfg: Path, out: Path) -> None:
    """Write the mean of ``paths`` (darknet weights of ``cfg``, BatchNorm folded) to ``out``.

    Raises:
        DataError: a file does not fit the cfg (its own one-line message).
    """
    from convert.parse import darknet

    net = darknet.load_network(cfg)
    loaded = [darknet.read_weights(p, net)[1] for p in paths]
    soup = {}
    for layer in net.conv_layers:
        folded = [darknet.fold_batchnorm(layer, w[layer.index]) for w in loaded]
        d = {"weights": np.mean([k for k, _ in folded], axis=0, dtype=np.float64).astype(np.float32),
             "biases": np.mean([b for _, b in folded], axis=0, dtype=np.float64).astype(np.float32)}
        if layer.params["batch_normalize"]:
            n = layer.params["filters"]
            d.update(scales=np.ones(n, np.float32), mean=np.zeros(n, np.float32),
                     variance=np.full(n, 1.0 - darknet.BN_EPSILON, np.float32))
        soup[layer.index] = d
    darknet.write_weights(out, net, soup)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", action="append", required=True, type=Path, help="a build's .weights (repeat)")
    ap.add_argument("--work", type=Path, required=True, help="folder for the soup's weights and model")
    ap.add_argument("--classifier", type=Path, default=ROOT / "models" / "mask-classifier.json")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    from convert.build_models import DETECTOR, DETECTOR_INPUT, _convert_fine_tuned, tune_threshold
    from edge.config import load
    from edge.errors import DoorguardError

    if len(args.weights) < 2:
        print("error: give at least two --weights files to average", file=sys.stderr)
        return 2
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = args.shared / "models" / "yoloface-500k" / "v2" / "yoloface-500k-v2.cfg"
    try:
        average_weights(args.weights, cfg, args.work / f"{DETECTOR}.weights")
        (args.work / "face.names").write_text("face\n")
        cmd = _convert_fine_tuned(args.shared, args.work, args.work, DETECTOR_INPUT)
        print("  $ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd).returncode != 0:
            raise DoorguardError("doorguard convert darknet failed (its error is above)")
        manifest = args.work / f"{DETECTOR}.json"
        choice = tune_threshold(manifest, args.shared, load(None), progress=not args.quiet)
    except DoorguardError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"soup of {len(args.weights)}: threshold {choice['threshold']:.3f} (facemask853 train)")
    res = measure({"soup": manifest}, args.classifier, args.shared, progress=not args.quiet)
    res["soup"]["_ingredients"] = [str(p) for p in args.weights]
    return report(res, args.json)


if __name__ == "__main__":
    sys.exit(main())
