"""The default mask classifier's model card (models/mask-classifier.md), from its manifest.

The figures come from the manifest the training wrote; the measured notes that do not
change from run to run (data sources and licences, the backbone choice, the synthetic
mask experiment) are Markdown files in ``convert/report/cards/``, measured once each
(backbone: 2026-11-22, same data/seed/recipe, 96 px; synthetic masks: 2026-12-02,
issue 21 items 4-5). ``make models`` then refreshes the card's eval section.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path


def card_note(name: str) -> str:
    """The text of ``convert/report/cards/NAME.md``."""
    return resources.files(__package__).joinpath("cards", f"{name}.md").read_text()


def measured_notes(default_backbone: bool, synth: bool) -> str:
    """The notes the card of a default-recipe model ends with.

    Args:
        default_backbone: the model has the shipped backbone (MobileNet v1 1.0 from Coral):
            the backbone comparison applies to it.
        synth: the model was trained with synthetic masks, so it is the candidate the
            synthetic-mask note compares with, not the shipped model.

    Returns:
        Markdown ("" for another backbone).
    """
    if not default_backbone:
        return ""
    backbone = card_note("mask-classifier-backbone")
    if synth:
        return backbone
    return "\n".join((backbone, card_note("mask-classifier-synth"), card_note("mask-classifier-conditions")))


def operating_point_lines(op: dict | None) -> list[str]:
    """The card's lines on the manifest's operating point (``convert.train.operating_point``); none without one."""
    if not op:
        return []
    a1, a = op["at_weight_1"], op["at_weight"]
    return [f"Operating point (the manifest's `label_weights`): {op['rule']}, on {op['basis']}: weight "
            f"{op['weight']:g}; there false alarms {a1['false_alarm']:.4f} -> {a['false_alarm']:.4f}, violations "
            f"called {a1['alarm_recall']:.4f} -> {a['alarm_recall']:.4f}. The table above is at weight 1 (plain "
            "argmax); the device decides at the weight.", ""]


def write_mask_model_card(manifest_path: Path | str, extra: str = "") -> Path:
    """Write models/NAME.md (model card) from the manifest's measured figures.

    Args:
        manifest_path: models/NAME.json, as ``train_classifier`` wrote it.
        extra: Markdown appended at the end (``measured_notes``).

    Returns:
        The card's path.
    """
    from edge.manifest import load_manifest

    manifest_path = Path(manifest_path)
    m = load_manifest(manifest_path)
    met = m.metrics
    tr = met.get("training", {})
    size_kb = met.get("size_bytes", 0) / 1024
    lines = [
        f"# {m.name}: face mask classifier (mask / no_mask / mask_incorrect)", "",
        f"Full-integer int8 TFLite, {size_kb:.0f} KB (`{m.tflite}`), manifest `{m.name}.json`, report "
        f"`{met.get('report')}/report.md` (confusion matrices, per-class precision/recall, ROC PNGs).", "",
        "## What it does", "",
        "Classifies one face crop, cut from the frame with `crop_with_margin(box, "
        f"{m.crop_margin})` (the detector box grown by {m.crop_margin:.0%} on every side), "
        f"stretched to {m.input.width}x{m.input.height} RGB, scaled to [-1, 1]. Labels: "
        f"{', '.join(m.labels)}. The rules flag `no_mask` and `mask_incorrect`.", "",
        f"Backbone {tr.get('backbone')} ({tr.get('backbone_init')}), new softmax head; "
        "trained head-first with the backbone frozen, then the last blocks fine-tuned at a low "
        "learning rate; augmentation (flip, small rotation/zoom/shift, brightness/contrast, a random "
        "down-then-up resize that imitates small faces), capped balanced class weights "
        f"({tr.get('class_weights')}), early stopping on a seeded 10% split of the training pool.", "",
        f"Input size {m.input.width}: faces at a door camera are small (facemask853's median face is "
        "21 px, with the margin about 27 px), so a larger input would only upsample further while "
        "costing (size/96)^2 more compute on the Pi; below 96 the 32x-downsampling MobileNet "
        "keeps too little spatial detail.", "",
        "## Figures (measured at build time, float32 vs int8, through edge.infer.models.Classifier)", "",
        "| set | images | float32 accuracy | int8 accuracy | int8 recall mask / no_mask / mask_incorrect |",
        "|---|---|---|---|---|",
    ]
    for name, ev in met.get("eval", {}).items():
        pc = ev["per_class_int8"]
        rec = " / ".join(str(pc[lab]["recall"]) for lab in m.labels)
        lines.append(f"| {name} | {ev['images']} | {ev['float_accuracy']:.4f} | {ev['int8_accuracy']:.4f} | {rec} |")
    lines += [
        "",
        "`val` is the early-stopping split (seeded 10% of the training pool). `facemask853_val`: "
        "every box of facemask853 `val.txt` cut with the runtime margin. `dataroots_real_val`: the "
        "83 dataroots real validation faces re-cut from the raw photos with the runtime margin (what "
        "the Pi would crop). `dataroots_real_val_crops`: the dataset's own tight crops as published. "
        "None of these sets was used for training or early stopping; no threshold was tuned on them.",
        "",
        f"int8 loses {met.get('int8_accuracy_drop_points')} accuracy points against float32 over all "
        f"sets (gate: {met.get('gate', {}).get('max_drop_points')} points)"
        + (f"; int8 and float32 agree on {met['int8_float_top1_agreement']} of the top-1 labels of "
           f"{met['gate'].get('agreement_basis')} (gate: at least {met['gate'].get('min_agreement')})"
           if met.get("int8_float_top1_agreement") is not None else "") + ".", "",
        *operating_point_lines(met.get("operating_point")),
        "## Training data", "",
        "```json", json.dumps(tr.get("data", {}), indent=2), "```", "",
        card_note("mask-classifier-sources"), "",
        "## Reproduce", "",
        "    make models            # or:",
        "    .venv/bin/python -c \"from convert.train.mask_recipe import build_default_mask_classifier as b; "
        "b('../shared', 'models')\"", "",
        "Seeded (seed 0) with op determinism: a rerun on the same machine and library versions gives "
        "the same weights. Versions: " + ", ".join(f"{k} {v}" for k, v in m.versions.items()) + ".", "",
        "## Limits", "",
        "- mask_incorrect has 65 training crops (all from facemask853 train) and 15 validation crops; "
        "its recall is low. The alarm still fires when it is confused with no_mask.",
        "- The dataroots real validation set holds only 10 unmasked faces.",
        "- facemask853 val shares burst shots with facemask853 train (random split by image).",
    ]
    if extra:
        lines += ["", extra]
    card = manifest_path.with_suffix(".md")
    card.write_text("\n".join(lines) + "\n")
    return card
