"""Compare detector recipes (issue 15): each detector manifest with doorguard's classifier on the
validation sets, at the detector's own threshold (chosen on facemask853 train by `make models`).

    .venv/bin/python benchmarks/detector_recipes.py --detector default=models/yoloface-500k-v2-facemask.json \
        --detector c=build/run-c/yoloface-500k-v2-facemask.json --json build/recipes.json

Per set: detector recall, recall of unmasked faces, tnr, fnr, false detections per 135 images
(the same `convert.verify.evaluate` code as `doorguard eval` and the model cards). None of these sets was
trained on or used to choose a threshold. x86 timings are not reported: they say nothing about a Pi.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SETS = ("dataroots-val", "facemask853-val-clean", "adityap27-valid", "adityap27-valid-clean")
KEYS = ("detector_recall", "recall_no_mask", "tnr", "fnr", "false_detections_per_135_images")


def evaluations(detectors: dict[str, Path], classifier: Path, shared: Path, sets: Sequence[str] = SETS,
                progress: bool = True) -> Iterator[tuple[str, Any, str, list, Any]]:
    """(name, Detector, set name, samples, ``EvalAccumulator``) for each detector on each of ``sets``,
    with doorguard's classifier at the detector's own threshold (``convert.verify.evaluate``)."""
    from convert.verify.evaluate import evaluate, load_classifier, load_voc, pipeline_for, standard_sets
    from edge.config import load
    from edge.infer.models import Detector

    cfg = load(None)
    cls = load_classifier(classifier, cfg)
    with tempfile.TemporaryDirectory(prefix="doorguard-recipes-") as tmp:
        found = standard_sets(shared, tmp)
        samples = {k: load_voc(*found[k]) for k in sets if k in found}
        for name, path in detectors.items():
            det = Detector(path)
            pipe = pipeline_for(det, cls, cfg)
            for set_name, smp in samples.items():
                acc = evaluate(smp, pipe.predict, pipe.violating, progress=progress, desc=f"{name} {set_name}",
                               input_size=[det.manifest.input.width, det.manifest.input.height])
                yield name, det, set_name, smp, acc


def measure(detectors: dict[str, Path], classifier: Path, shared: Path, progress: bool = True) -> dict:
    """name -> set -> figures (``KEYS``), plus the threshold used."""
    res: dict[str, dict] = {}
    for name, det, set_name, _, acc in evaluations(detectors, classifier, shared, SETS, progress):
        res.setdefault(name, {"_threshold": det.score_threshold, "_sha256": det.manifest.sha256})
        r = acc.summary()
        r["recall_no_mask"] = r["detector_recall_by_class"].get("no_mask")
        res[name][set_name] = {k: r.get(k) for k in KEYS}
    return res


def table(res: dict) -> str:
    """Markdown: one row per detector, recall / unmasked recall / tnr / false per 135 per set."""
    sets = [s for s in SETS if any(s in r for r in res.values())]
    lines = ["| detector | threshold | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets),
             "| (recall / unmasked recall / tnr / false per 135) | | " + " | ".join("" for _ in sets) + " |"]
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    for name, r in res.items():
        cells = [f"{f(r[s]['detector_recall'])} / {f(r[s]['recall_no_mask'])} / {f(r[s]['tnr'])} / "
                 f"{r[s]['false_detections_per_135_images']:.1f}" for s in sets]
        lines.append(f"| {name} | {r['_threshold']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def arguments(doc: str) -> argparse.ArgumentParser:
    """The options of a detector comparison: --detector NAME=M.json (repeated), --classifier,
    --shared, --json, --quiet."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--detector", action="append", required=True, metavar="NAME=M.json")
    ap.add_argument("--classifier", type=Path, default=ROOT / "models" / "mask-classifier.json")
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--quiet", action="store_true")
    return ap


def detectors_of(specs: Sequence[str]) -> dict[str, Path] | None:
    """NAME=M.json specs -> {name: manifest}; None (with a one-line error) when one is not a file."""
    dets = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        if not path or not Path(path).is_file():
            print(f"error: --detector {spec}: give NAME=M.json of an existing manifest", file=sys.stderr)
            return None
        dets[name] = Path(path)
    return dets


def report(res: dict, json_path: Path | None) -> int:
    """Write ``res`` to ``json_path`` (when given), print its table; the exit code (0)."""
    if json_path:
        json_path.write_text(json.dumps(res, indent=2) + "\n")
    print(table(res))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = arguments(__doc__).parse_args(argv)
    dets = detectors_of(args.detector)
    if dets is None:
        return 2
    return report(measure(dets, args.classifier, args.shared, progress=not args.quiet), args.json)


if __name__ == "__main__":
    sys.exit(main())
