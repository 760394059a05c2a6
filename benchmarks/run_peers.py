"""Measure doorguard's default pipeline next to the peers, with the same eval code.

    .venv/bin/python -m benchmarks.run_peers --shared ../shared --out bench-out/peers

Sets: facemask853 val and dataroots validation (converted to VOC in a temp
folder). Each system's detector threshold is chosen on facemask853 TRAIN by
one rule for all (best detector F1 at IoU > 0.5), unless ``--default-thresholds`` keeps each origin's demo default.
Writes results.json (system -> set -> eval report) and results.md (a table).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from convert.verify.evaluate import (  # noqa: E402
    System, compare, doorguard_systems, load_classifier, load_voc, pipeline_for, standard_sets, table,
)
from edge.errors import run_main  # noqa: E402

from convert.verify import peers  # noqa: E402


def run(args: argparse.Namespace) -> None:
    """Measure the systems ``main`` parsed and write the results."""
    from edge.config import load

    cfg = load(args.config)
    det = cfg.resolve(cfg.models.detector)
    cls_path = cfg.resolve(cfg.models.classifier) if cfg.models.classifier else None
    classifier = load_classifier(cls_path, cfg) if cls_path and cls_path.is_file() else None
    if classifier is None:
        logging.warning("no classifier at %s: peers run as detectors with their own classes only", cls_path)
    systems = []
    if not args.no_doorguard and det.is_file():
        systems += doorguard_systems(cfg, det, cls_path if classifier else None)
    systems += peers.systems(Path(args.shared) / "models" / "peers", classifier, cfg)
    if args.only:
        keep = set(args.only.split(","))
        systems = [s for s in systems if s.name in keep]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sets = standard_sets(args.shared, tmp)
        samples = {k: load_voc(*v) for k, v in sets.items()}
        tune = None if args.default_thresholds else samples.pop("facemask853-train")
        samples.pop("facemask853-train", None)
        violating = set(cfg.rules.alert_on_classifier)
        results = compare(systems, samples, violating, tune_on=tune, progress=not args.quiet)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(table(results))
    print(table(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"), help="../shared")
    ap.add_argument("--config", help="doorguard config (models, rules); default: the embedded one")
    ap.add_argument("--out", default="bench-out/peers", help="output folder")
    ap.add_argument("--default-thresholds", action="store_true",
                    help="use each origin's default threshold instead of tuning on facemask853 train")
    ap.add_argument("--only", help="comma-separated system names to run")
    ap.add_argument("--no-doorguard", action="store_true", help="peers only")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_main("run_peers", lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
