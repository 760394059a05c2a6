"""How much of a classifier's gain under doorway conditions is a shift of its operating point (issue 21).

A DIAGNOSTIC, not a way to set a model up: the candidate's alarm-label probabilities are scaled
by the weight that makes its clean fnr on facemask853_val equal the baseline's, i.e. matched on
the reported set itself, which no shipped setting may be (`convert/train/operating_point.py` chooses
shipped weights on training data). Then both are compared under every condition of
`convert.verify.conditions`, classifier only, with the crops `python -m convert.train.masksynth compare` cuts.

    .venv/bin/python benchmarks/classifier_shift.py models/mask-classifier.json DIR/mask-classifier.json \
        [--shared ../shared] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ALARM = ("no_mask", "mask_incorrect")


def probabilities(manifests: dict[str, Path], shared: Path, set_name: str = "facemask853_val"):
    """condition -> (true labels, {model: N x L int8 probabilities}) over the set's true boxes."""
    from convert.verify import conditions as cond
    from convert.data.dataset import DEFAULT_LABEL_MAP
    from convert.data.images import read_rgb
    from convert.train.masksynth import _set_items
    from edge.infer.models import Classifier
    from edge.types import Box

    models = {k: Classifier(v, num_threads=2) for k, v in manifests.items()}
    names = ["clean", *cond.CONDITIONS]
    out = {c: ([], {m: [] for m in models}) for c in names}
    for path, lboxes in _set_items(shared)[set_name]:
        lboxes = [lb for lb in lboxes if DEFAULT_LABEL_MAP.get(lb.name)]
        if not lboxes:
            continue
        rgb = read_rgb(path)
        for c in names:
            img, s = (rgb, 1.0) if c == "clean" else (cond.CONDITIONS[c][0](rgb, [lb.box for lb in lboxes],
                                                                              path.name), cond.CONDITIONS[c][1])
            for lb in lboxes:
                b = lb.box
                box = Box(b.x1 * s, b.y1 * s, b.x2 * s, b.y2 * s)
                if box.width < 1 or box.height < 1:
                    continue
                crops = {m: clf.crop(img, box) for m, clf in models.items()}
                if any(cr.size == 0 for cr in crops.values()):
                    continue
                out[c][0].append(DEFAULT_LABEL_MAP[lb.name])
                for m, clf in models.items():
                    out[c][1][m].append(np.asarray(clf.probabilities(crops[m]), np.float64).reshape(-1))
    return out, list(next(iter(models.values())).manifest.labels)


def tnr_fnr(p: list, y: list, labels: list[str], w: float) -> tuple[float, float]:
    """(tnr, fnr) with the alarm labels' probabilities times ``w`` (``convert.train.operating_point.rates``:
    the compliant label is the only other one, so its false alarms are the fnr)."""
    from convert.train.operating_point import rates

    alarm = np.array([lab in ALARM for lab in labels])
    fa, rec = rates(np.asarray(p, np.float64), np.array([labels.index(t) for t in y]), alarm, w)
    return rec, fa


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("candidate", type=Path)
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    probs, labels = probabilities({"baseline": a.baseline, "candidate": a.candidate}, a.shared)
    y, clean = probs["clean"]
    target = tnr_fnr(clean["baseline"], y, labels, 1.0)[1]
    grid = np.exp(np.linspace(-4, 2, 241))
    w = float(min(grid, key=lambda v: abs(tnr_fnr(clean["candidate"], y, labels, v)[1] - target)))
    rows = []
    for c, (yc, ps) in probs.items():
        b, m = tnr_fnr(ps["baseline"], yc, labels, 1.0), tnr_fnr(ps["candidate"], yc, labels, w)
        rows.append({"condition": c, "baseline_tnr": round(b[0], 3), "baseline_fnr": round(b[1], 3),
                     "candidate_matched_tnr": round(m[0], 3), "candidate_matched_fnr": round(m[1], 3)})
    print(f"candidate's alarm labels x {w:.3f}: clean fnr {rows[0]['candidate_matched_fnr']} "
          f"(baseline {target:.3f}), matched on facemask853_val itself (diagnostic only)")
    print("| condition | baseline tnr / fnr | candidate, matched, tnr / fnr |\n|---|---|---|")
    for r in rows:
        print(f"| {r['condition']} | {r['baseline_tnr']:.3f} / {r['baseline_fnr']:.3f} | "
              f"{r['candidate_matched_tnr']:.3f} / {r['candidate_matched_fnr']:.3f} |")
    if a.json:
        a.json.write_text(json.dumps({"weight": round(w, 4), "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
