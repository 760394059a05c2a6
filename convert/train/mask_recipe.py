"""The default mask classifier (models/mask-classifier.*): its data from ../shared and its recipe.

``mask_classifier_data`` gathers the training pool and the measured validation sets;
``build_default_mask_classifier`` trains it with ``convert.train.train_classifier`` (MobileNet
v1 1.0 from Coral's ImageNet weights, ``convert.parse.coral_weights``) and writes its card
(``convert.report.mask_card``). ``make models`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.errors import DataError, UsageError

from convert.pipeline.classifier import LabeledFiles, folder_set
from convert.train.classifier_data import grouped_split, stratified_split
from convert.report.mask_card import measured_notes, write_mask_model_card
from convert.train.train_classifier import train_classifier

MASK_LABELS = ["mask", "no_mask", "mask_incorrect"]
DEFAULT_MASK_MARGIN = 0.15
DEFAULT_MASK_SIZE = 96


def mask_classifier_data(shared: Path | str, work: Path | str, margin: float = DEFAULT_MASK_MARGIN,
                         progress: bool = True) -> tuple[LabeledFiles, dict[str, LabeledFiles], dict[str, Any]]:
    """Gather the default mask classifier's training pool and its two validation sets.

    Training pool (labels mask / no_mask / mask_incorrect):
    - dataroots ``train/{masked,not_masked}`` (VGGFace2 crops, artificial masks);
    - chandrikadeb7 ``with_mask``/``without_mask``, one file per ``source_sha256``;
    - facemask853 train boxes (``train.txt``), cut with ``crop_with_margin`` (the
      only source of mask_incorrect);
    - adityap27 train boxes (YOLO, 0 = no_mask, 1 = mask), cut the same way,
      minus photos that are near-duplicates of facemask853 val photos.

    Validation (never trained on, never used for early stopping):
    - ``facemask853_val``: facemask853 val boxes cut with the runtime margin;
    - ``dataroots_real_val``: dataroots real validation faces re-cut from the raw
      photos with the runtime margin (what the Pi would crop);
    - ``dataroots_real_val_crops``: the dataset's own tight crops, as published.

    Returns:
        (training pool, validation sets by name, notes for the manifest).
    """
    import csv

    from convert.data import dataset

    shared, work = Path(shared), Path(work)
    data = shared / "data"
    fm, dr, cd, ad = data / "facemask853", data / "dataroots", data / "chandrikadeb7", data / "adityap27"
    for d in (fm, dr, cd, ad):
        if not d.is_dir():
            raise DataError(f"missing {d}: the default mask classifier is built from ../shared/data")
    notes: dict[str, Any] = {}
    pool = LabeledFiles(list(MASK_LABELS))

    def add_folder(folder: Path, label: str, files: list[Path] | None = None) -> int:
        fs = files if files is not None else sorted(p for p in folder.iterdir() if p.is_file())
        pool.files += fs
        pool.targets += [MASK_LABELS.index(label)] * len(fs)
        return len(fs)

    notes["dataroots_train"] = {"mask": add_folder(dr / "train" / "masked", "mask"),
                                "no_mask": add_folder(dr / "train" / "not_masked", "no_mask")}
    seen: set[str] = set()
    kept: dict[str, list[Path]] = {"with_mask": [], "without_mask": []}
    dropped = 0
    for row in csv.DictReader((cd / "manifest.csv").open(newline="")):
        if row["source_sha256"] in seen:
            dropped += 1
            continue
        seen.add(row["source_sha256"])
        f = cd / row["file"]
        if f.is_file():
            kept[row["class"]].append(f)
    notes["chandrikadeb7"] = {"mask": add_folder(cd, "mask", sorted(kept["with_mask"])),
                              "no_mask": add_folder(cd, "no_mask", sorted(kept["without_mask"])),
                              "duplicates_dropped": dropped}

    sources, dups = train_photo_sources(shared)
    for src in sources:
        st = dataset.write_crops(src.items, work / src.name, margin, src.label_map, min_size=4,
                                 normalized=src.normalized, progress=progress)
        notes[src.name] = {**dict(st.crops), "boxes_under_4px_skipped": st.small_boxes}
        if src.normalized:
            notes[src.name]["photos_dropped_as_facemask853_val_duplicates"] = dups
        for lab in MASK_LABELS:
            if (work / src.name / lab).is_dir():
                add_folder(work / src.name / lab, lab)

    lm = dataset.DEFAULT_LABEL_MAP
    fm_val_items = dataset.voc_items(fm, fm / "val.txt")
    evals: dict[str, LabeledFiles] = {}
    fm_val = work / "facemask853_val"
    dataset.write_crops(fm_val_items, fm_val, margin, lm, progress=progress)
    evals["facemask853_val"] = folder_set(fm_val, MASK_LABELS)
    dr_val = work / "dataroots_real_val"
    dataset.write_crops(dataset.dataroots_items(dr / "validation_metadata.csv"), dr_val, margin, lm,
                        progress=progress)
    evals["dataroots_real_val"] = folder_set(dr_val, MASK_LABELS)
    crops = LabeledFiles(list(MASK_LABELS))
    for sub, lab in (("masked", "mask"), ("not_masked", "no_mask")):
        fs = sorted(p for p in (dr / "validation" / "real" / sub).iterdir() if p.is_file())
        crops.files += fs
        crops.targets += [MASK_LABELS.index(lab)] * len(fs)
    evals["dataroots_real_val_crops"] = crops
    notes["pool"] = pool.counts()
    return pool, evals, notes


@dataclass
class PhotoSource:
    """Labelled photos whose boxes are cut into training crops (work/NAME/LABEL/STEM_I.jpg)."""

    name: str
    items: list
    label_map: dict[str, str]
    normalized: bool


def train_photo_sources(shared: Path) -> tuple[list[PhotoSource], int]:
    """The training photos with boxes: facemask853 train (VOC) and adityap27 train (YOLO), minus
    adityap27 photos that are near-duplicates of facemask853 val (their count is returned)."""
    from convert.data import dataset

    fm, ad = Path(shared) / "data" / "facemask853", Path(shared) / "data" / "adityap27"
    ad_items = dataset.yolo_items(ad / "train", ["no_mask", "mask"])
    fm_val = [p for p, _ in dataset.voc_items(fm, fm / "val.txt")]
    dups = dataset.near_duplicates([p for p, _ in ad_items], fm_val)
    return [PhotoSource("facemask853_train", dataset.voc_items(fm, fm / "train.txt"),
                        dataset.DEFAULT_LABEL_MAP, False),
            PhotoSource("adityap27_train", [(p, b) for p, b in ad_items if p not in dups],
                        {"mask": "mask", "no_mask": "no_mask"}, True)], len(dups)


#: How the default classifier's early-stopping (and operating-point) split is drawn.
HOLDOUTS = ("crops", "photos")


def photo_groups(shared: Path, work: Path, files: list[Path]) -> list[str]:
    """A group per training file, for a split that holds out whole photos (``grouped_split``).

    The crops cut from one facemask853 or adityap27 train photo share a group, and so do an
    adityap27 photo's and the facemask853 photo it nearly duplicates (dHash; adityap27 holds most
    facemask853 photos); dataroots' VGGFace2 crops are grouped by person (the file name's
    ``nNNNNNN`` prefix); any other file is its own group.
    """
    from convert.data import dataset

    shared, work = Path(shared), Path(work)
    first, *others = train_photo_sources(shared)[0]  # facemask853 train, then adityap27 train
    refs = [p for p, _ in first.items]
    photo_key = {(first.name, p.stem): f"{first.name}:{p.stem}" for p in refs}
    for src in others:
        photos = [p for p, _ in src.items]
        twin = dataset.near_duplicate_pairs(photos, refs)
        photo_key.update({(src.name, p.stem): f"{first.name}:{twin[p].stem}" if p in twin else f"{src.name}:{p.stem}"
                          for p in photos})
    dr_train = (shared / "data" / "dataroots" / "train").resolve()
    out = []
    for f in map(Path, files):
        src = f.parent.parent
        key = None
        if src.parent.resolve() == work.resolve():
            key = photo_key.get((src.name, f.stem.rsplit("_", 1)[0]))
        elif f.resolve().is_relative_to(dr_train):
            key = f"person:{f.name.split('_', 1)[0]}"
        out.append(key or f"file:{f}")
    return out


def photo_condition_crops(shared: Path, work: Path, train: LabeledFiles, copies: float, seed: int,
                          margin: float = DEFAULT_MASK_MARGIN, progress: bool = True) -> tuple[LabeledFiles, dict]:
    """``copies`` more crops of every training-photo face in ``train``, each cut from a copy of
    its photo degraded by one ``classifier_data.photo_condition`` (seeded per photo and copy).

    A fractional ``copies`` (e.g. 0.5) gives the last copy to that share of the faces, drawn by a
    hash of each crop's name. Seeds use the photo's path relative to ``shared`` and the crop's
    name, so the copies are the same however ``--shared`` is spelt. Only faces whose clean crop is
    in ``train`` get copies, so the early-stopping split never holds a degraded twin of a face it
    trains on.
    """
    import math
    import os
    import zlib

    import numpy as np

    from convert.data import dataset
    from convert.train.classifier_data import PHOTO_CONDITIONS, photo_condition

    in_train = {Path(f) for f in train.files}
    out = LabeledFiles(list(train.labels))
    made = 0
    sources, _ = train_photo_sources(shared)
    for k in range(math.ceil(copies)):
        share = min(1.0, copies - k)
        for src in sources:
            def degrade(rgb, path, k=k):
                name = Path(os.path.relpath(path, shared)).as_posix()
                return photo_condition(rgb, np.random.default_rng(zlib.crc32(f"{seed}:{k}:{name}".encode())))

            folder, prefix = work / f"{src.name}_photo{k}", f"p{k}_"
            dataset.write_crops(src.items, folder, margin, src.label_map, min_size=4, normalized=src.normalized,
                                prefix=prefix, progress=progress, transform=degrade)
            for lab in MASK_LABELS:
                for f in sorted((folder / lab).glob(f"{prefix}*.jpg")) if (folder / lab).is_dir() else []:
                    if work / src.name / lab / f.name[len(prefix):] not in in_train:
                        continue
                    if share < 1.0 and zlib.crc32(f"{seed}:{k}:{src.name}/{lab}/{f.name}".encode()) >= share * 2**32:
                        continue
                    out.files.append(f)
                    out.targets.append(MASK_LABELS.index(lab))
                    made += 1
    return out, {"copies": copies, "crops": made, "conditions": list(PHOTO_CONDITIONS),
                 "sources": [s.name for s in sources], "seed": seed,
                 "note": "cut from degraded copies of the training photos; training split only"}


def build_default_mask_classifier(shared: Path | str, out: Path | str = "models", *,
                                  name: str = "mask-classifier", work: Path | str | None = None,
                                  backbone: str = "mobilenet_v1_1.0",
                                  backbone_weights: Path | str | None = None, seed: int = 0,
                                  size: int = DEFAULT_MASK_SIZE, epochs: int = 8,
                                  fine_tune_epochs: int = 5, batch: int = 64,
                                  min_accuracy_drop: float = 1.0, max_class_weight: float = 10.0,
                                  synth: bool | dict[str, int] = False, synth_small: float = 0.0,
                                  synth_nose_gap: tuple[float, float] | None = None,
                                  conditions_aug: float = 0.0,
                                  photo_conditions: float = 0.0, max_false_alarm: float | None = None,
                                  holdout: str = "crops"):
    """Rebuild models/mask-classifier.{tflite,json,md} (+ report) from ../shared, reproducibly.

    MobileNet v1 1.0 with ImageNet weights dequantized from the Apache-2.0 Coral
    int8 model (../shared/models/coral), 96x96 input, crop margin 0.15. With
    ``backbone="mobilenet_v1_0.25"`` the Keras 0.25 no-top .h5 is used instead
    (12x fewer MACs, about 4 points less on facemask853 val). Early stopping uses
    a seeded 10% split of the training pool; the facemask853 and dataroots
    validation sets are only measured. About 25 min on 2 busy CPU cores.

    Args:
        shared: the ../shared folder.
        out: models folder.
        work: scratch folder for generated crops (default: a temporary folder, removed after).
        synth: add synthetic crops (``convert.train.masksynth``): True for ``masksynth.DEFAULT_COUNTS``
            (1200 mask_incorrect with the mask below the nose or on the chin, 600 dark and 600
            patterned masks, all on dataroots ``train/not_masked`` placed by YuNet landmarks),
            or a dict of those counts. Cached under ``work``.
        synth_small: the share of synthetic crops written at a doorway face's size (10-40 px,
            ``masksynth.synthesize(small=...)``); 0: all at the source crop's size.
        synth_nose_gap: where synthetic ``below_nose`` masks' top edge sits (share of the way
            from the nose tip to the mouth; None: ``masksynth.NOSE_GAP``).
        conditions_aug: share of training crops that also get one doorway condition
            (``convert.train.classifier_data.condition_augment``); 0: none.
        photo_conditions: add this many degraded copies of every training-split face of
            facemask853/adityap27 train, cut from its photo after one
            ``convert.train.classifier_data.photo_condition`` (``photo_condition_crops``); a fraction
            gives the last copy to that share of the faces; 0: none.
        max_false_alarm: choose the operating point on the early-stopping split
            (``train_classifier(max_false_alarm=...)``, alarm labels no_mask and
            mask_incorrect); None: plain argmax.
        holdout: how the early-stopping split is drawn (``HOLDOUTS``): ``crops``, a stratified
            10% of the crops; ``photos``, about 10% of each class with every photo's crops (and
            its near-duplicates, and each VGGFace2 person's crops) on one side
            (``photo_groups``), so the split is faces from photos the model never saw.

    Returns:
        The manifest written.
    """
    import shutil
    import tempfile

    if not 0.0 <= conditions_aug <= 1.0:  # before the crops are cut, not after
        raise UsageError(f"--classifier-conditions-aug must be within 0..1, got {conditions_aug}")
    if holdout not in HOLDOUTS:
        raise UsageError(f"--classifier-holdout must be one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if not 0 <= photo_conditions <= 8:
        raise UsageError(f"--classifier-photo-conditions must be within 0..8 copies, got {photo_conditions:g}")
    shared = Path(shared)
    default_weights = {
        "mobilenet_v1_1.0": shared / "models" / "coral" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite",
        "mobilenet_v1_0.25": shared / "models" / "keras-mobilenet" / "mobilenet_2_5_224_tf_no_top.h5",
    }
    weights = Path(backbone_weights) if backbone_weights else default_weights.get(backbone)
    tmp = None
    if work is None:
        tmp = work = Path(tempfile.mkdtemp(prefix="doorguard-mask-"))
    try:
        pool, evals, notes = mask_classifier_data(shared, work)
        if synth:
            from convert.train import masksynth

            counts = dict(masksynth.DEFAULT_COUNTS) if synth is True else dict(synth)
            gap = masksynth.NOSE_GAP if synth_nose_gap is None else tuple(synth_nose_gap)
            sy = masksynth.default_synth(shared, work, counts, seed=seed, small=synth_small, nose_gap=gap)
            for lab, fs in sorted(sy["files"].items()):
                pool.files += list(fs)
                pool.targets += [MASK_LABELS.index(lab)] * len(fs)
            notes["synthetic"] = {"counts": counts, "made": sy["made"], "small": synth_small, "nose_gap": list(gap),
                                  "no_face_sources_skipped": sy["no_face_sources_skipped"],
                                  "placements_rejected": sy["placements_rejected"],
                                  "source": "dataroots train/not_masked x mask-templates, YuNet landmarks "
                                            f"(convert.train.masksynth v{masksynth.VERSION}, seed {seed})"}
            notes["pool"] = pool.counts()
        if holdout == "photos":
            train, held = grouped_split(pool, 0.1, seed, photo_groups(shared, Path(work), pool.files))
            notes["early_stopping_split"] = ("seeded 10% of each class of the training pool, whole photos "
                                             "(near-duplicates and VGGFace2 persons together; reported as 'val')")
        else:
            train, held = stratified_split(pool, 0.1, seed)
            notes["early_stopping_split"] = "seeded stratified 10% of the training pool (reported as 'val')"
        if photo_conditions:
            extra, notes["photo_conditions"] = photo_condition_crops(shared, Path(work), train,
                                                                     photo_conditions, seed)
            train.files += extra.files
            train.targets += extra.targets
        manifest = train_classifier(train, Path(out) / name, val=held, backbone=backbone,
                                    backbone_weights=weights, size=size, epochs=epochs,
                                    fine_tune_epochs=fine_tune_epochs, batch=batch, seed=seed,
                                    min_accuracy_drop=min_accuracy_drop, crop_margin=DEFAULT_MASK_MARGIN,
                                    extra_eval_sets=evals, data_notes=notes,
                                    max_class_weight=max_class_weight, conditions_aug=conditions_aug,
                                    max_false_alarm=max_false_alarm)
        write_mask_model_card(Path(out) / f"{name}.json",
                              measured_notes(default_backbone=backbone == "mobilenet_v1_1.0", synth=bool(synth)))
        return manifest
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
