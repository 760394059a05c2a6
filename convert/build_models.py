"""``doorguard models`` (``make models``): rebuild the default models in models/ from ../shared, then measure them.

    doorguard models --shared ../shared --out models [--steps detector,classifier,eval]

Steps (each prints a progress line):

1. detector: yoloface-500k v2 (darknet) fine-tuned by ``doorguard train
   detector`` on facemask853 + adityap27 train boxes, then ``doorguard convert
   darknet`` (both subprocesses of this Python's CLI), calibrated on facemask853
   train images, verified against the float model on facemask853 val. The class is named
   ``face`` (the cfg's label.names says ``Face``; the config's
   ``classify_labels`` and the rules use lower case).
2. threshold: the detector's default score threshold is chosen on facemask853
   TRAIN with the eval code (best detector F1, IoU > 0.5) and written into its
   manifest.
3. classifier: ``convert.train.mask_recipe.build_default_mask_classifier`` (MobileNet v1
   0.25, mask / no_mask / mask_incorrect).
4. eval: the full pipeline (int8 and float) and the peers, with the same eval
   code, on facemask853 val and dataroots validation; writes models/eval.json
   and each model card's metrics section (models/NAME.md).
5. hands: the palm detector for the face-touch check (``convert.pipeline.hands.build``: the
   mediapipe wheel's model -> int8 TFLite, manifest and card).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge.errors import DataError, DoorguardError, UsageError

log = logging.getLogger(__name__)

DETECTOR = "yoloface-500k-v2-facemask"
# The default detector: yoloface-500k v2 fine-tuned here (``doorguard train detector``),
# then converted like any darknet model. Input size and epochs as measured in its card.
DETECTOR_INPUT = "416x320"
DETECTOR_EPOCHS = 30
# The issue-15 recipes (teacher, copy-paste) were trained for 24 epochs (about the same wall time).
RECIPE_EPOCHS = {"default": DETECTOR_EPOCHS, "a": 24, "b": 24, "c": DETECTOR_EPOCHS, "d": DETECTOR_EPOCHS,
                 "e": DETECTOR_EPOCHS, "f": DETECTOR_EPOCHS, "v1": DETECTOR_EPOCHS, "night": DETECTOR_EPOCHS,
                 "h": DETECTOR_EPOCHS, "i": DETECTOR_EPOCHS, "j": DETECTOR_EPOCHS,
                 "k": DETECTOR_EPOCHS}
# Photos per unlabelled source (teacher-labelled) in the detector's training set.
DETECTOR_UNLABELLED_LIMIT = 400
BASE_DETECTOR = "yoloface-500k-v2"
CLASSIFIER = "mask-classifier"
# Share of the classifier's training crops that also get one doorway condition (issue 21 item 4).
CLASSIFIER_CONDITIONS_AUG = 0.0
# Input sizes measured as a trade-off (issue 15): the same fine-tuned weights converted at each
# (YOLO is fully convolutional); the first is the default's (DETECTOR_INPUT).
DETECTOR_SIZES = ("416x320", "512x384", "640x480")
STEPS = ("detector", "sizes", "threshold", "classifier", "eval", "conditions", "cards", "hands")
GOALS = {"detector_recall": (">=", 0.97), "tnr": (">=", 0.95), "fnr": ("<=", 0.02),
         "classifier_accuracy": (">=", 0.95), "false_detections_per_135_images": ("<=", 10.0)}
BEGIN, END = "<!-- eval:begin (written by make models) -->", "<!-- eval:end -->"

LICENCES = {
    BASE_DETECTOR: ("yoloface-500k v2, github.com/dog-qiuqiu/MobileNet-Yolo (HEAD 86c05bf); "
                    "YOLO LICENSE v2 (\"Darknet is public domain\"), no separate weight licence. "
                    "Trained on WIDER FACE by its authors."),
    DETECTOR: ("yoloface-500k v2, github.com/dog-qiuqiu/MobileNet-Yolo (HEAD 86c05bf); YOLO LICENSE v2 "
               "(\"Darknet is public domain\"), no separate weight licence; trained on WIDER FACE by its "
               "authors. Fine-tuned here (doorguard train detector) on facemask853 train boxes (CC0) and "
               "adityap27 train boxes (MIT), all as face, plus teacher boxes (ignore regions and labels of "
               "unlabelled photos) from YuNet n 640 (libfacedetection.train, Apache-2.0) and UltraFace "
               "RFB-640-masked (MIT), VGGFace2 source photos and train crops from datarootsio/face-mask-detection "
               "(MIT; no separate licence stated for the VGGFace2 images) and chandrikadeb7 photos (MIT; part "
               "RMFD with unclear terms); without the photos that are near-duplicates of facemask853 val, "
               "adityap27 valid or the dataroots validation photos."),
    CLASSIFIER: ("MobileNet v1 0.25 ImageNet backbone (keras-applications asset, via homxxx/"
                 "MicroExpressionRecognition, GPL-3.0 repository, no licence stated for the weights); "
                 "trained here on dataroots train crops (MIT; VGGFace2 crops), chandrikadeb7 (MIT; "
                 "part RMFD with unclear terms), facemask853 train crops (CC0) and adityap27 train "
                 "crops (MIT)."),
}


def _step(i: int, n: int, msg: str, t0: float) -> None:
    print(f"[make models {i}/{n} {time.monotonic() - t0:6.0f}s] {msg}", flush=True)


def check_shared(shared: Path) -> None:
    """One-line failure when ../shared (or a source file it needs) is missing.

    Raises:
        DataError: naming the first missing path.
    """
    need = [
        shared / "models" / "yoloface-500k" / "v2" / "yoloface-500k-v2.cfg",
        shared / "models" / "yoloface-500k" / "v2" / "yoloface-500k-v2.weights",
        shared / "data" / "facemask853" / "train.txt",
        shared / "data" / "facemask853" / "val.txt",
        shared / "data" / "adityap27" / "train.txt",
        shared / "data" / "dataroots" / "validation_metadata.csv",
    ]
    if not shared.is_dir():
        raise DataError(f"{shared} not found: make models needs ../shared (source weights and data); "
                        f"pass SHARED=/path/to/shared")
    for p in need:
        if not p.exists():
            raise DataError(f"{p} not found: ../shared is incomplete")


def validation_sets(shared: Path) -> list[Path]:
    """The detector's validation photos: never trained on (near-duplicates left out too)."""
    d = shared / "data"
    return [d / "facemask853" / "val.txt", d / "dataroots" / "raw_images", d / "adityap27" / "valid.txt"]


def detector_recipe_v1(shared: Path, work: Path) -> list[str]:
    """``doorguard train detector`` data arguments of the detector shipped until issue 15's
    recipe G replaced it (``--detector-recipe v1``).

    facemask853 train and adityap27 train boxes (all as ``face``), without the
    near-duplicates of facemask853 val and the dataroots validation photos.
    40 adityap27 train photos are near-duplicates of adityap27 valid photos; this
    recipe keeps them (it predates adityap27 valid as a validation set), so the
    cards also report ``adityap27-valid-clean``.
    """
    d = shared / "data"
    return ["--train", str(d / "facemask853" / "train.txt"), str(d / "adityap27" / "train.txt"),
            "--exclude", str(d / "facemask853" / "val.txt"), str(d / "dataroots" / "raw_images")]


def detector_recipe_b(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe B (measured, not the default: see the detector's card).

    - every validation set's near-duplicates left out (``validation_sets``);
    - teacher (YuNet n 640 + UltraFace RFB-640-masked from ../shared/models/peers):
      confident teacher faces (score >= 0.8) that the annotators left out become
      ignore regions;
    - copy-paste: dataroots train face crops (unmasked and masked) pasted at
      12-200 px of the input, unmasked until they are 40% of the boxes seen.
    """
    d = shared / "data"
    dr = d / "dataroots"
    return ["--train", str(d / "facemask853" / "train.txt"), str(d / "adityap27" / "train.txt"),
            "--exclude", *map(str, validation_sets(shared)),
            "--teacher-peers", str(shared / "models" / "peers"), "--teacher-ignore-score", "0.8",
            "--teacher-cache", str(work / "teacher.json"),
            "--paste", f"no_mask={dr / 'train' / 'not_masked'}", f"mask={dr / 'train' / 'masked'}",
            "--paste-prob", "0.5", "--paste-px", "12,200", "--min-unmasked", "0.4"]


def _dataroots_sampled_list(shared: Path, work: Path) -> Path:
    """WORK/sampled_face_images-train.txt: dataroots' VGGFace2 source photos, without those
    its validation crops come from."""
    dr = shared / "data" / "dataroots"
    held = {p.name for sub in ("validation/artificial/masked", "validation/artificial/not_masked")
            for p in (dr / sub).glob("*.jpg")}
    sampled = sorted(p for p in (dr / "sampled_face_images").glob("*.jpg") if p.name not in held)
    out = work / "sampled_face_images-train.txt"
    out.write_text("".join(f"{p.resolve()}\n" for p in sampled))
    return out


def _unlabelled_args(shared: Path, work: Path) -> list[str]:
    """``--unlabelled``: photos without boxes, labelled by the teacher (dataroots' VGGFace2 source
    photos, chandrikadeb7's), at most ``DETECTOR_UNLABELLED_LIMIT`` per source."""
    d = shared / "data" / "chandrikadeb7"
    return ["--unlabelled", f"no_mask={_dataroots_sampled_list(shared, work)}", f"no_mask={d / 'without_mask'}",
            f"mask={d / 'with_mask'}", "--unlabelled-limit", str(DETECTOR_UNLABELLED_LIMIT)]


def detector_recipe_a(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe A (measured, not the default): recipe B plus teacher-labelled
    unlabelled photos and ignore regions from every teacher box >= 0.5."""
    args = detector_recipe_b(shared, work)
    args[args.index("--teacher-ignore-score") + 1] = "0.5"
    return args + _unlabelled_args(shared, work)


def detector_recipe_c(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe C: the shipped recipe's data (labelled boxes only: no teacher, no
    pasted faces), every validation set's near-duplicates left out, photos holding an
    unmasked face drawn more often (unmasked about 40% of the boxes seen) and crops
    down to 35% of each side (larger faces, as a doorway camera sees them up close)."""
    d = shared / "data"
    return ["--train", str(d / "facemask853" / "train.txt"), str(d / "adityap27" / "train.txt"),
            "--exclude", *map(str, validation_sets(shared)),
            "--oversample-unmasked", "0.4", "--crop-min", "0.35"]


def size_variant(size: str) -> str:
    """Model name of the default detector converted at ``size`` (the default size: DETECTOR)."""
    return DETECTOR if size == DETECTOR_INPUT else f"{DETECTOR}-{size}"


def _convert_fine_tuned(shared: Path, out: Path, work: Path, size: str) -> list[str]:
    v2 = shared / "models" / "yoloface-500k" / "v2"
    fm = shared / "data" / "facemask853"
    return [sys.executable, "-m", "edge.cli", "convert", "darknet", "--cfg", str(v2 / "yoloface-500k-v2.cfg"),
            "--weights", str(work / f"{DETECTOR}.weights"), "--names", str(work / "face.names"),
            "--calib", str(fm / "train.txt"), "--val", str(fm / "val.txt"), "--input", size,
            "--out", str(out / size_variant(size))]


def build_size_variants(shared: Path, out: Path, work: Path) -> list[Path]:
    """The fine-tuned detector converted at the other ``DETECTOR_SIZES`` (documented options).

    Raises:
        DataError: the fine-tuned weights are missing (run the detector step first).
        DoorguardError: a conversion failed.
    """
    if not (work / f"{DETECTOR}.weights").is_file():
        raise DataError(f"{work / (DETECTOR + '.weights')} not found: run the detector step first "
                        f"(same --work folder)")
    made = []
    for size in DETECTOR_SIZES:
        if size == DETECTOR_INPUT:
            continue
        cmd = _convert_fine_tuned(shared, out, work, size)
        print("  $ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise DoorguardError(f"doorguard convert darknet --input {size} failed (exit {r.returncode})")
        made.append(out / f"{size_variant(size)}.json")
    return made


def detector_recipe_d(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe D: the shipped recipe's data with every validation set's
    near-duplicates left out (adityap27 valid too): the honest baseline to compare with."""
    d = shared / "data"
    return ["--train", str(d / "facemask853" / "train.txt"), str(d / "adityap27" / "train.txt"),
            "--exclude", *map(str, validation_sets(shared))]


def detector_recipe_e(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe E: recipe d plus the teacher on the labelled photos only (no pasted
    faces, no unlabelled photos): teacher faces (YuNet n 640 + UltraFace RFB-640-masked)
    scoring >= 0.8 that match no label become labels (the faces annotators of crowded
    photos left out, which plain training learns as background), 0.5-0.8 ignore regions."""
    return detector_recipe_d(shared, work) + [
        "--teacher-peers", str(shared / "models" / "peers"), "--teacher-cache", str(work / "teacher.json"),
        "--teacher-ignore-score", "0.5", "--teacher-add-score", "0.8"]


def detector_recipe_f(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe F: recipe e at half the peak learning rate. The fine-tuning traded
    unmasked faces for masked ones (the WIDER FACE model before it finds more unmasked faces
    on the held-out photos): a smaller step keeps more of what it knew."""
    return detector_recipe_e(shared, work) + ["--lr", "2.5e-4"]


def detector_recipe_g(shared: Path, work: Path) -> list[str]:
    """The default detector's recipe (issue 15's recipe G): recipe e plus teacher-labelled
    photos that have no boxes (``_unlabelled_args``): unmasked faces in the scenes the
    held-out dataroots photos come from. No pasted faces (recipes a and b pasted and lost)."""
    return detector_recipe_e(shared, work) + _unlabelled_args(shared, work)


def detector_recipe_h(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe H: recipe g with half the images a mosaic of four training photos
    (``--mosaic 0.5``): crowded scenes with faces about half size and exact boxes, from real
    photos (the pasted crops of recipes a and b taught face-coloured blobs; these are whole
    scenes). Aimed at the small faces in crowds that the default misses (adityap27 valid:
    detector recall 0.57 for faces of 8-16 px at the input)."""
    return detector_recipe_g(shared, work) + ["--mosaic", "0.5"]


def detector_recipe_i(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe I: recipe g writing the moving average of its weights (``--ema 0.999``,
    about the last 1,000 batches, i.e. five epochs) instead of the last batch's. Not more data
    but less noise: the recipes differ by a few faces on the small validation sets, about as much
    as two builds of one recipe do (the detector card: "Where the spread comes from")."""
    return detector_recipe_g(shared, work) + ["--ema", "0.999"]


def detector_recipe_j(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe J: recipe g with each true box also given to every anchor that fits it by
    IoU > 0.213 (``--assign-iou``, darknet's ``iou_thresh`` as YOLOv4 sets it), not only the best
    one. yoloface's nine anchors are close in size (4x6 to 141x149), so a face between two of
    them, or between two heads, is taught to both: more positives for the small faces in crowds."""
    return detector_recipe_g(shared, work) + ["--assign-iou", "0.213"]


def detector_recipe_k(shared: Path, work: Path) -> list[str]:
    """Issue-15 recipe K: recipe g with crops down to 35% of each side (``--crop-min 0.35``, default
    0.55), nothing else changed. Every miss of the default on the two clean validation sets is a
    masked face, most of them 97-116 px at the input and scored under the threshold: zooming in more
    shows the network faces of that size more often (recipe C did this too, but together with
    oversampling and without the teacher)."""
    return detector_recipe_g(shared, work) + ["--crop-min", "0.35"]


def detector_recipe_night(shared: Path, work: Path) -> list[str]:
    """Issue-21 recipe: recipe v1 (the default when it was measured) with the night augmentation
    (``--night-aug 0.3``: greyscale/IR, dusk with sensor noise, motion blur), everything else
    alike, so the conditions table before/after measures what the augmentation does."""
    return detector_recipe_v1(shared, work) + ["--night-aug", "0.3"]


# "default" is recipe G (issue 15: the highest mean tnr over the three validation sets).
RECIPES = {"default": detector_recipe_g, "v1": detector_recipe_v1, "a": detector_recipe_a, "b": detector_recipe_b,
           "c": detector_recipe_c, "d": detector_recipe_d, "e": detector_recipe_e, "f": detector_recipe_f,
           "night": detector_recipe_night, "h": detector_recipe_h, "i": detector_recipe_i, "j": detector_recipe_j,
           "k": detector_recipe_k}


def build_detector(shared: Path, out: Path, work: Path, recipe: str = "default", size: str = DETECTOR_INPUT,
                   seed: int = 0) -> Path:
    """Convert yoloface-500k v2 as it is (the baseline, ``models/yoloface-500k-v2``), fine-tune it
    (``doorguard train detector``) and convert the result (``doorguard convert darknet``).

    Both run as subprocesses of this Python's CLI. Training data: the recipe's
    (``RECIPES``; the default: facemask853 train and adityap27 train boxes, all as
    ``face``, teacher faces the annotators left out, teacher-labelled photos without
    boxes, and no near-duplicate of a validation photo). The fine-tuned darknet
    weights stay in ``work``; the shipped artifact is the converted int8 model. ``seed``: the
    training's (shuffles, augmentation, TF); the shipped model is seed 0, another seed is a second
    build of the same recipe (a recipe is judged on several).

    Raises:
        DoorguardError: training or conversion failed (its own one-line error is shown above).
    """
    v2 = shared / "models" / "yoloface-500k" / "v2"
    names = work / "face.names"
    names.write_text("face\n")
    fm = shared / "data" / "facemask853"
    weights = work / f"{DETECTOR}.weights"
    cli = [sys.executable, "-m", "edge.cli"]
    train = cli + ["train", "detector", "--cfg", str(v2 / "yoloface-500k-v2.cfg"),
                   "--weights", str(v2 / "yoloface-500k-v2.weights"), "--names", str(names),
                   *RECIPES[recipe](shared, work),
                   "--input", size, "--epochs", str(RECIPE_EPOCHS[recipe]), "--seed", str(seed), "--quiet",
                   "--resume", "--out", str(weights)]
    convert = _convert_fine_tuned(shared, out, work, size)
    # The public model as it is (the fine-tuning's starting point and baseline), then the fine-tuned one.
    base = cli + ["convert", "darknet", "--cfg", str(v2 / "yoloface-500k-v2.cfg"),
                  "--weights", str(v2 / "yoloface-500k-v2.weights"), "--names", str(names),
                  "--calib", str(fm / "train.txt"), "--val", str(fm / "val.txt"), "--out", str(out / BASE_DETECTOR)]
    for what, cmd in (("convert darknet", base), ("train detector", train), ("convert darknet", convert)):
        print("  $ " + " ".join(cmd), flush=True)
        r = subprocess.run(cmd)
        if r.returncode != 0:
            raise DoorguardError(f"doorguard {what} failed (exit {r.returncode})")
    return out / f"{size_variant(size)}.json"


def tune_threshold(manifest_path: Path, shared: Path, cfg: Any, progress: bool = True) -> dict:
    """Choose the detector's score threshold on facemask853 train and write it into the manifest.

    Rule (the same as for the peers in ``benchmarks/run_peers.py``): the best
    detector F1 at IoU > 0.5 on facemask853 train. (The issue's budget of 10
    false detections per 135 images cannot be met on facemask853 by any
    threshold: its crowds hold unlabelled and tiny faces.) Detector only (the classifier does not change which boxes exist); the config's
    ``min_face_px`` applies as on the device.
    """
    from edge.manifest import load_manifest, write_manifest
    from edge.infer.models import Detector

    from convert.verify.evaluate import SWEEP, Pipeline, collect, load_voc
    from convert.verify.metrics import pick_threshold, threshold_sweep

    fm = shared / "data" / "facemask853"
    samples = load_voc(fm, fm / "train.txt")
    det = Detector(manifest_path, score_threshold=min(SWEEP))
    pipe = Pipeline(det, None, min_face_px=cfg.models.min_face_px)
    sweep = threshold_sweep(collect(samples, pipe.predict, progress, desc="threshold sweep (train)"), SWEEP)
    choice = pick_threshold(sweep)
    m = load_manifest(manifest_path)
    metrics = dict(m.metrics)
    metrics["score_threshold_choice"] = {
        "rule": "best detector F1 (IoU > 0.5) on facemask853 train",
        "min_face_px": cfg.models.min_face_px, "chosen": choice,
        "sweep": [{k: r[k] for k in ("threshold", "recall", "precision", "false_per_image")} for r in sweep],
    }
    write_manifest(m.model_copy(update={"score_threshold": choice["threshold"], "metrics": metrics}),
                   manifest_path)
    return choice


def build_classifier(shared: Path, out: Path, conditions_aug: float = CLASSIFIER_CONDITIONS_AUG,
                     photo_conditions: float = 0.0, max_false_alarm: float | None = None,
                     holdout: str = "crops") -> Path:
    """Train the default mask classifier (convert.train.mask_recipe.build_default_mask_classifier)."""
    from convert.train.mask_recipe import build_default_mask_classifier

    build_default_mask_classifier(shared, out, name=CLASSIFIER, conditions_aug=conditions_aug,
                                  photo_conditions=photo_conditions, max_false_alarm=max_false_alarm,
                                  holdout=holdout)
    return out / f"{CLASSIFIER}.json"


def measure(shared: Path, out: Path, cfg: Any, progress: bool = True, only: list[str] | None = None,
            known: dict[str, dict] | None = None) -> dict:
    """doorguard int8 + float and every peer on facemask853 val and dataroots validation.

    Every system's detector threshold is tuned on facemask853 train by the same
    rule (doorguard's equals the one written into its manifest by ``tune_threshold``).
    """
    from convert.verify import peers
    from convert.verify.evaluate import compare, doorguard_systems, load_classifier, load_voc, standard_sets

    det = out / f"{DETECTOR}.json"
    cls = out / f"{CLASSIFIER}.json"
    classifier_path = cls if cls.is_file() else None
    if classifier_path is None:
        log.warning("%s missing: the pipeline and the peers run without doorguard's classifier", cls)
    systems = doorguard_systems(cfg, det, classifier_path) if det.is_file() else []
    for size in DETECTOR_SIZES:
        variant = out / f"{size_variant(size)}.json"
        if size != DETECTOR_INPUT and variant.is_file():
            systems += doorguard_systems(cfg, variant, classifier_path, ("int8",), suffix=f"-{size}")
    classifier = load_classifier(classifier_path, cfg) if classifier_path else None
    systems += peers.systems(shared / "models" / "peers", classifier, cfg)
    if only:
        systems = [s for s in systems if any(s.name.startswith(o) for o in only)]
    with tempfile.TemporaryDirectory(prefix="doorguard-eval-") as tmp:
        sets = standard_sets(shared, tmp)
        samples = {k: load_voc(*v) for k, v in sets.items()}
        tune = samples.pop("facemask853-train")
        return compare(systems, samples, set(cfg.rules.alert_on_classifier), tune_on=tune, progress=progress,
                       known=known)


def measure_conditions(shared: Path, out: Path, cfg: Any, progress: bool = True) -> dict:
    """The int8 pipeline on the validation sets under each reproduced doorway condition (issue 21).

    Returns:
        set name -> condition name ("clean" first) -> figures (recall, recall of unmasked faces, tnr,
        fnr, false detections per 135 images, and by mask colour).
    """
    from edge.infer.models import Detector

    from convert.verify.conditions import CONDITIONS
    from convert.verify.evaluate import evaluate, load_classifier, load_voc, pipeline_for, standard_sets

    det_path, cls_path = out / f"{DETECTOR}.json", out / f"{CLASSIFIER}.json"
    det = Detector(det_path)
    pipe = pipeline_for(det, load_classifier(cls_path, cfg), cfg)
    keys = ("detector_recall", "tnr", "fnr", "false_detections_per_135_images", "classifier_accuracy")
    res: dict[str, dict] = {"_meta": {"detector": det.manifest.name, "detector_sha256": det.manifest.sha256,
                                      "threshold": det.score_threshold}}
    with tempfile.TemporaryDirectory(prefix="doorguard-cond-") as tmp:
        sets = standard_sets(shared, tmp)
        for name in TRADEOFF_SETS:
            if name not in sets:
                continue
            samples = load_voc(*sets[name])
            res[name] = {}
            for cond in ("clean", *CONDITIONS):
                acc = evaluate(samples, pipe.predict, pipe.violating, progress=progress, desc=f"{name} {cond}",
                               input_size=[det.manifest.input.width, det.manifest.input.height],
                               condition=None if cond == "clean" else cond, mask_groups=True)
                r = acc.summary()
                res[name][cond] = {k: r[k] for k in keys} | {
                    "recall_no_mask": r["detector_recall_by_class"].get("no_mask"), "by_mask_colour": r["by_group"]}
    return res


def conditions_section(now: dict, before: dict | None = None) -> str:
    """Markdown table of ``measure_conditions`` (with the previous default's figures when given)."""
    f = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["## Doorway conditions (convert/verify/conditions.py, `doorguard eval --condition NAME`)", "",
             "Each validation photo transformed reproducibly: ir (near-greyscale, stretched), low-light (gamma "
             "darkening to 1/4 + sensor noise), backlight (faces darkened, background blown out), motion-blur "
             "(9 px), jpeg (quality 15), small (half size). int8 pipeline at the shipped threshold. "
             "Mask colour groups (dark / light / colourful) by the rule in `convert.verify.conditions.mask_colour`."
             + (" `before`: the previous default detector, same classifier, same code." if before else ""), "",
             "| set | condition | recall | unmasked recall | tnr | fnr | false/135 | fnr dark masks | "
             "recall dark masks |" + (" tnr before | unmasked recall before |" if before else ""),
             "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if before else "")]
    for set_name, per in now.items():
        if set_name.startswith("_"):
            continue
        for cond, r in per.items():
            dark = (r.get("by_mask_colour") or {}).get("dark") or {}
            row = [set_name, cond, f(r["detector_recall"]), f(r["recall_no_mask"]), f(r["tnr"]), f(r["fnr"]),
                   "n/a" if r["false_detections_per_135_images"] is None else f"{r['false_detections_per_135_images']:.1f}",
                   f(dark.get("fnr")), f(dark.get("detector_recall"))]
            if before:
                b = (before.get(set_name) or {}).get(cond) or {}
                row += [f(b.get("tnr")), f(b.get("recall_no_mask"))]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _kb(path: Path) -> str:
    return f"{path.stat().st_size / 1024:.0f} KB" if path.is_file() else "missing"


def card_header(manifest_path: Path) -> str:
    """The static part of a model card, from its manifest."""
    from edge.manifest import load_manifest

    m = load_manifest(manifest_path, verify_hash=False)
    d = manifest_path.parent
    lines = [f"# {m.name}", "",
             f"- Task: {m.task}; labels: {', '.join(m.labels)}",
             f"- Input: {m.input.width}x{m.input.height} {m.input.color}, {m.input.resize}, {m.input.dtype}",
             f"- int8 model: `{m.tflite}` ({_kb(d / m.tflite)}), sha256 `{m.sha256}`"]
    if m.float_tflite:
        lines.append(f"- float32 reference: `{m.float_tflite}` ({_kb(d / m.float_tflite)}; not committed, "
                     "`make models` rebuilds it)")
    if m.task == "detect":
        lines.append(f"- Default score threshold {m.score_threshold} (chosen on facemask853 train), "
                     f"NMS IoU {m.nms_iou}")
    if m.crop_margin is not None:
        lines.append(f"- Crop margin: {m.crop_margin}")
    lines.append(f"- Sources and licences: {LICENCES.get(m.name, 'see the manifest')}")
    for k, f in m.source.files.items():
        lines.append(f"  - {k}: `{f.path}` sha256 `{f.sha256[:16]}...`")
    lines.append(f"- Built with: {', '.join(f'{k} {v}' for k, v in m.versions.items())}")
    lines.append("")
    return "\n".join(lines)


#: Validation sets of the trade-off table (never trained on, never used to choose a threshold).
TRADEOFF_SETS = ("dataroots-val", "facemask853-val-clean", "adityap27-valid-clean")
#: The rule that picks the default input size (issue 15), on the Pi 5's detector cost.
MAX_COST_RATIO = 2.5


def arm_counts(path: Path) -> dict[str, dict[str, float]]:
    """Model name -> {"pi4": M instructions, "pi5": ...} per int8 litert invoke, from a bench-arm JSON."""
    try:
        rows = json.loads(path.read_text())["summary"]["models"]
    except (OSError, ValueError, KeyError):
        return {}
    return {r["model"]: {p: r[f"invoke_{p}"] / 1e6 for p in ("pi4", "pi5") if r.get(f"invoke_{p}")}
            for r in rows if r.get("precision") == "int8" and r.get("backend") == "litert"}


def tradeoff_rows(results: dict, out: Path, counts: dict[str, dict[str, float]]) -> list[dict]:
    """One row per detector input size: validation figures, int8 vs float agreement, Pi cost."""
    from edge.manifest import load_manifest

    rows = []
    for size in DETECTOR_SIZES:
        name = size_variant(size)
        system = "doorguard-int8" if size == DETECTOR_INPUT else f"doorguard-int8-{size}"
        man_path = out / f"{name}.json"
        if system not in results or not man_path.is_file():
            continue
        man = load_manifest(man_path, verify_hash=False)
        per_set = {k: results[system][k] for k in TRADEOFF_SETS if k in results[system]}
        rows.append({
            "size": size, "model": name, "system": system, "threshold": man.score_threshold,
            "agreement_f1": (man.metrics.get("agreement") or {}).get("f1"),
            "sets": {k: {c: r.get(c) for c in ("detector_recall", "tnr", "fnr", "false_detections_per_135_images")}
                     | {"recall_no_mask": (r.get("detector_recall_by_class") or {}).get("no_mask")}
                     for k, r in per_set.items()},
            "mean_tnr": (sum(r["tnr"] or 0 for r in per_set.values()) / len(per_set)) if per_set else None,
            "pixels": int(size.split("x")[0]) * int(size.split("x")[1]),
            "arm_minstr": counts.get(name, {}),
        })
    base = next((r for r in rows if r["size"] == DETECTOR_INPUT), None)
    for r in rows:
        if base and r["arm_minstr"].get("pi5") and base["arm_minstr"].get("pi5"):
            r["cost_ratio"], r["cost_basis"] = r["arm_minstr"]["pi5"] / base["arm_minstr"]["pi5"], "pi5 invoke"
        elif base:
            r["cost_ratio"], r["cost_basis"] = r["pixels"] / base["pixels"], "input pixels"
    return rows


def choose_size(rows: list[dict]) -> dict | None:
    """The highest mean validation tnr among sizes costing at most MAX_COST_RATIO x the default's."""
    ok = [r for r in rows if r.get("mean_tnr") is not None and r.get("cost_ratio", 99) <= MAX_COST_RATIO]
    return max(ok, key=lambda r: (round(r["mean_tnr"], 6), -r["pixels"])) if ok else None


def tradeoff_section(results: dict, out: Path, counts: dict[str, dict[str, float]]) -> str:
    """Markdown: the input-size trade-off table and the rule's choice."""
    rows = tradeoff_rows(results, out, counts)
    if len(rows) < 2:
        # One size cannot be a trade-off; say where the measured sizes are instead of "choosing" it.
        return ("## Input size trade-off\n\nOnly the default input size is in models/ (run the `sizes` step for "
                f"{', '.join(DETECTOR_SIZES[1:])}); sizes measured this round are in the detector card's issue-15 "
                "section.\n") if rows else ""
    f = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
    head = ["input", "threshold", "int8/float F1"]
    for k in TRADEOFF_SETS:
        head += [f"{k} recall", "unmasked recall", "tnr", "false/135"]
    head += ["Pi 4 M instr", "Pi 5 M instr", "cost vs default"]
    lines = ["## Input size trade-off (same fine-tuned weights, int8 pipeline)", "",
             "Each size is the fine-tuned weights converted by `doorguard convert darknet --input WxH`, its "
             "threshold chosen on facemask853 train by the same rule. Pi cost: guest instructions of one int8 "
             "detector invoke (ai-edge-litert, 1 thread) under `make bench-arm`; where no count exists the "
             f"ratio of input pixels stands in (marked). Rule: the highest mean tnr over {', '.join(TRADEOFF_SETS)} "
             f"among sizes whose Pi 5 cost is at most {MAX_COST_RATIO:g}x the default's.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["size"] + (" (default)" if r["size"] == DETECTOR_INPUT else ""), f(r["threshold"]),
                 f(r["agreement_f1"])]
        for k in TRADEOFF_SETS:
            v = r["sets"].get(k, {})
            cells += [f(v.get("detector_recall")), f(v.get("recall_no_mask")), f(v.get("tnr")),
                      f(v.get("false_detections_per_135_images"), 1)]
        cells += [f(r["arm_minstr"].get("pi4"), 1), f(r["arm_minstr"].get("pi5"), 1),
                  f"{r['cost_ratio']:.2f}x" + ("" if r.get("cost_basis") == "pi5 invoke" else " (pixels)")]
        lines.append("| " + " | ".join(cells) + " |")
    best = choose_size(rows)
    lines += ["", f"Rule's choice: **{best['size']}** (mean tnr {best['mean_tnr']:.3f})." if best else
              "Rule's choice: none measured.", ""]
    return "\n".join(lines)


def metrics_section(results: dict, tradeoff: str = "") -> str:
    """The model cards' eval section: the table, how it was measured, how to reproduce."""
    from convert.verify.evaluate import table

    return "\n".join([
        BEGIN, "## Measured (full pipeline, single-frame decisions)", "",
        "`doorguard eval` code on the validation sets, none of them trained on or used to choose a threshold: "
        "dataroots validation (83 real photos, 83 faces), facemask853-val-clean (the 37 facemask853 val photos "
        "with no near-duplicate in adityap27 train), adityap27 valid (87 photos) and, for comparison with "
        "earlier cards, all of facemask853 val (108 images, 568 faces; 71 of its photos have near-duplicates "
        "in adityap27 train, which training leaves out). recall_mask / recall_no_mask / recall_mask_incorrect: "
        "detector recall per true class; `models/eval.json` also has recall by face size at the detector "
        "input (`recall_by_input_size`). Detector -> crop -> classifier -> rule; match by IoU > 0.5; tnr = "
        "violating faces flagged / violating faces (missed count as not flagged); fnr = compliant faces "
        "flagged / compliant faces. Each system's detector threshold was chosen on facemask853 TRAIN by "
        "one rule (best detector F1 at IoU > 0.5); the config's "
        "min_face_px applies to every system. Peers: `convert/verify/peers.py`, with doorguard's "
        "classifier, or their own mask classes (`-own-classes`). Timings are x86 CPU, for ratios only.",
        "", table(results), tradeoff,
        "Goals (issue 5): detector_recall >= 0.97, tnr >= 0.95, fnr <= 0.02, classifier_accuracy >= 0.95, "
        "<= 10 false detections per 135 images.", "", *goal_lines(results), "",
        "Reproduce: `make models` (all steps) or `doorguard models --shared ../shared "
        "--out models --steps eval`; one set: `doorguard eval --voc ../shared/data/facemask853 --split "
        "../shared/data/facemask853/val.txt --json out.json --plots plots/`.",
        END, ""])


def goal_lines(results: dict, system: str = "doorguard-int8") -> list[str]:
    """One line per set: which goals the shipped int8 pipeline meets and misses."""
    out = []
    for set_name, r in results.get(system, {}).items():
        parts = []
        for key, (op, goal) in GOALS.items():
            v = r.get(key)
            ok = v is not None and (v >= goal if op == ">=" else v <= goal)
            parts.append(f"{key} {'n/a' if v is None else f'{v:.3f}'} {'meets' if ok else 'MISSES'} {op} {goal:g}")
        out.append(f"- {system} on {set_name}: " + "; ".join(parts) + ".")
    return out


def write_card(manifest_path: Path, section: str) -> Path:
    """Create or refresh models/NAME.md; only the eval section is replaced in an existing card."""
    card = manifest_path.with_suffix(".md")
    if card.is_file():
        text = card.read_text()
        if BEGIN in text and END in text:
            head, rest = text.split(BEGIN, 1)
            tail = rest.split(END, 1)[1].lstrip("\n")
            text = head + section + tail
        else:
            text = text.rstrip("\n") + "\n\n" + section
    else:
        text = card_header(manifest_path) + "\n" + section
    card.write_text(text)
    return card


def run_steps(args: argparse.Namespace) -> None:
    """Run the steps ``doorguard models`` parsed (the work of ``make models``)."""
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = [s for s in steps if s not in STEPS]
    if bad:
        raise UsageError(f"unknown step(s) {', '.join(bad)}; choose from {', '.join(STEPS)}")
    if "classifier" in steps:  # before hours of other steps, not after
        from convert.train.mask_recipe import HOLDOUTS

        if args.classifier_holdout not in HOLDOUTS:
            raise UsageError(f"--classifier-holdout must be one of {', '.join(HOLDOUTS)}, "
                             f"got {args.classifier_holdout!r}")
    shared, out = Path(args.shared), Path(args.out)
    check_shared(shared)
    out.mkdir(parents=True, exist_ok=True)
    from edge.config import load

    cfg = load(args.config)
    t0 = time.monotonic()
    n = len(steps)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for i, step in enumerate(steps, 1):
        if step == "detector":
            _step(i, n, f"face detector: fine-tuning and converting yoloface-500k v2 -> {out}/{DETECTOR}", t0)
            build_detector(shared, out, work, args.detector_recipe, args.detector_input, args.detector_seed)
        elif step == "sizes":
            _step(i, n, f"face detector at the other input sizes ({', '.join(DETECTOR_SIZES[1:])})", t0)
            build_size_variants(shared, out, work)
        elif step == "threshold":
            _step(i, n, "face detectors: choosing the score threshold on facemask853 train", t0)
            for name in (BASE_DETECTOR, *map(size_variant, DETECTOR_SIZES)):
                if not (out / f"{name}.json").is_file():
                    continue
                c = tune_threshold(out / f"{name}.json", shared, cfg, not args.quiet)
                print(f"  {name}: threshold {c['threshold']:.3f}: train recall {c['recall']:.3f}, "
                      f"precision {c['precision']:.3f}, {c['false_per_image'] * 135:.1f} false "
                      f"detections per 135 images", flush=True)
        elif step == "hands":
            _step(i, n, f"hand detector: MediaPipe's palm model -> int8 -> {out}", t0)
            from convert.pipeline.hands import build as build_hands

            print(f"  wrote {build_hands(shared, out, Path(args.hands_work))}", flush=True)
        elif step == "classifier":
            _step(i, n, f"mask classifier: training -> {out}/{CLASSIFIER}", t0)
            build_classifier(shared, out, args.classifier_conditions_aug, args.classifier_photo_conditions,
                             args.classifier_max_false_alarm, args.classifier_holdout)
        elif step == "conditions":
            _step(i, n, "the int8 pipeline under reproduced doorway conditions (validation sets)", t0)
            res = measure_conditions(shared, out, cfg, not args.quiet)
            (out / "conditions.json").write_text(json.dumps(res, indent=2) + "\n")
            print(f"  wrote {out / 'conditions.json'}", flush=True)
        elif step in ("eval", "cards"):
            if step == "eval":
                _step(i, n, "measuring doorguard (int8, float) and the peers on facemask853 val "
                            "and dataroots validation", t0)
                only = [o for o in (args.only or "").split(",") if o]
                known = None
                if args.reuse_peer_thresholds and (out / "eval.json").is_file():
                    old = json.loads((out / "eval.json").read_text())
                    known = {k: next(iter(v.values()))["threshold_choice"] for k, v in old.items()
                             if not k.startswith("doorguard")
                             and "threshold_choice" in next(iter(v.values()))}
                results = measure(shared, out, cfg, not args.quiet, only or None, known)
                if only and (out / "eval.json").is_file():
                    # Re-measured systems replace their rows; the others are kept.
                    results = {**json.loads((out / "eval.json").read_text()), **results}
                (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
            else:
                _step(i, n, f"model cards from {out / 'eval.json'}", t0)
                try:
                    results = json.loads((out / "eval.json").read_text())
                except (OSError, ValueError) as e:
                    raise DataError(f"cannot read {out / 'eval.json'}: run the eval step first") from e
            counts = arm_counts(Path("bench-out/arm/bench-arm.json")) or arm_counts(
                Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "bench-arm.json")
            extra = tradeoff_section(results, out, counts)
            if (out / "conditions.json").is_file():
                before = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "conditions-before-issue15.json"
                extra += "\n" + conditions_section(json.loads((out / "conditions.json").read_text()),
                                                    json.loads(before.read_text()) if before.is_file() else None)
            section = metrics_section(results, extra)
            for name in (DETECTOR, CLASSIFIER):
                if (out / f"{name}.json").is_file():
                    print(f"  wrote {write_card(out / f'{name}.json', section)}", flush=True)
            from convert.verify.evaluate import table

            print(table(results), flush=True)
    _step(n, n, "done", t0)


#: The options that tune one step each, listed under it in ``doorguard models --help``:
#: step -> (flag, add_argument keywords).
STEP_OPTIONS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "detector": [
        ("--detector-recipe", {"choices": sorted(RECIPES), "default": "default",
                               "help": "the shipped recipe (default: issue 15's recipe G), the one before it (v1) or "
                                       "issue 15's other measured recipes a-f, h-k and night (teacher, copy-paste, "
                                       "unmasked oversampling, learning rate, mosaic, weight averaging, "
                                       "multi-anchor assignment, zoom-in, night augmentation; see the detector's card)"}),
        ("--detector-seed", {"type": int, "default": 0, "metavar": "N",
                             "help": "the detector training's seed (default 0, the shipped build; another seed "
                                     "builds the recipe again, to see how much two trainings differ)"}),
        ("--detector-input", {"default": DETECTOR_INPUT, "choices": DETECTOR_SIZES,
                              "help": f"train and convert at this input size (default {DETECTOR_INPUT}; another "
                                      "size is written as the -WxH variant, trained at that size)"}),
    ],
    "classifier": [
        ("--classifier-conditions-aug", {"type": float, "default": CLASSIFIER_CONDITIONS_AUG, "metavar": "SHARE",
                                         "help": "share of training crops that also get one doorway condition "
                                                 "(IR-like grey, low light, motion blur, heavy JPEG; default "
                                                 f"{CLASSIFIER_CONDITIONS_AUG:g}; see the classifier's card)"}),
        ("--classifier-photo-conditions", {"type": float, "default": 0.0, "metavar": "COPIES",
                                           "help": "add this many copies of every facemask853/adityap27 training "
                                                   "face, each cut from its photo after one doorway condition "
                                                   "(the crop-level ones, at photo scale, and a smaller photo; "
                                                   "0-8, a fraction gives the last copy to that share of the "
                                                   "faces; default 0; measured, not shipped: see the "
                                                   "classifier's card)"}),
        ("--classifier-max-false-alarm", {"type": float, "default": None, "metavar": "SHARE",
                                          "help": "choose the classifier's operating point on its early-stopping "
                                                  "split: the largest weight on no_mask and mask_incorrect that "
                                                  "calls at most SHARE of the masked crops there a violation "
                                                  "(default: plain argmax; measured, not shipped: see the "
                                                  "classifier's card)"}),
        ("--classifier-holdout", {"default": "crops", "metavar": "crops|photos",
                                  "help": "the early-stopping (and operating-point) split: crops, a stratified "
                                          "10%% of the crops (default), or photos, about 10%% of each class as "
                                          "whole photos, their near-duplicates and each VGGFace2 person on one "
                                          "side (convert.train.mask_recipe.HOLDOUTS)"}),
    ],
    "eval": [
        ("--only", {"metavar": "PREFIX,...",
                    "help": "re-measure only systems whose name starts with one of these (e.g. doorguard) "
                            "and keep the other rows of models/eval.json"}),
        ("--reuse-peer-thresholds", {"action": "store_true",
                                     "help": "keep the peers' thresholds chosen on facemask853 train in the "
                                             "previous models/eval.json (their detectors do not change) instead "
                                             "of sweeping again"}),
    ],
    "hands": [
        ("--hands-work", {"default": "build/hands",
                          "help": "work folder holding the installed mediapipe wheel (default build/hands)"}),
    ],
}


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """Arguments of ``doorguard models``: the run's, then each step's (:data:`STEP_OPTIONS`)."""
    ap.add_argument("--shared", default="../shared", help="the shared folder (source weights and data)")
    ap.add_argument("--out", default="models", help="models folder")
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    ap.add_argument("--config", help="doorguard config whose rules the eval uses (default: embedded)")
    ap.add_argument("--work", default="build/models-work",
                    help="work folder kept between runs: fine-tuned weights, training checkpoints (a stopped "
                         "training resumes), teacher boxes cache (default build/models-work)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    for step, options in STEP_OPTIONS.items():
        group = ap.add_argument_group(f"{step} step")
        for flag, keywords in options:
            group.add_argument(flag, **keywords)


def main(args: argparse.Namespace) -> int:
    """``doorguard models``."""
    run_steps(args)
    return 0


if __name__ == "__main__":  # the old way in: python -m convert.build_models
    from edge.cli import main as doorguard

    sys.exit(doorguard(["models", *sys.argv[1:]]))
