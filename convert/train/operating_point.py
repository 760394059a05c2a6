"""A classifier's operating point, chosen on training data: one weight on its alarm labels.

The device calls a face by the argmax of the classifier's probabilities times the manifest's
``label_weights`` (``edge.infer.models.Classifier.classify``). Two trainings that differ in
their data (an augmentation, more copies of one class) end at different operating points: one
calls more faces ``no_mask`` on clean photos too, which raises tnr and fnr together, so their
figures under doorway conditions cannot be compared as they are. The rule here puts every model
at the same place, chosen on its own training data (the early-stopping split), never on a set
that is reported:

    the largest weight w on a fixed grid (2^(k/8), 1/16 to 16) such that, with the alarm labels'
    probabilities multiplied by w, at most ``max_false_alarm`` of the split's crops of the other
    labels are called an alarm label (an alarm label: one the rules alert on).

So a model is made as eager to alarm as the false-alarm budget allows on data it was fitted
beside, and no more.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import DataError

#: The weights tried, smallest first (1 is on the grid: k = 0).
WEIGHTS = tuple(float(2.0 ** (k / 8)) for k in range(-32, 33))


def rates(probs: np.ndarray, targets: np.ndarray, alarm: np.ndarray, w: float) -> tuple[float, float]:
    """(false-alarm rate, alarm recall) with the alarm labels' probabilities times ``w``.

    Args:
        probs: N x L probabilities; targets: N true label indices; alarm: L booleans.
    """
    scaled = probs * np.where(alarm, w, 1.0)
    called = alarm[np.argmax(scaled, axis=1)]
    truth = alarm[targets]
    fa = float(called[~truth].mean()) if (~truth).any() else 0.0
    rec = float(called[truth].mean()) if truth.any() else 0.0
    return fa, rec


def choose_weight(probs: np.ndarray, targets: np.ndarray, alarm: np.ndarray, max_false_alarm: float) -> float:
    """The largest ``WEIGHTS`` entry whose false-alarm rate is at most ``max_false_alarm``
    (the smallest entry when none is)."""
    ok = [w for w in WEIGHTS if rates(probs, targets, alarm, w)[0] <= max_false_alarm]
    return max(ok) if ok else WEIGHTS[0]


def set_operating_point(manifest_path: Path | str, split: Any, alarm_labels: Sequence[str],
                        max_false_alarm: float, threads: int = 2, progress: bool = True) -> dict:
    """Choose the weight on ``split`` (a ``LabeledFiles`` of crops) and write it to the manifest.

    The crops are classified by the int8 model through ``edge.infer.models.Classifier`` (the
    runtime code). The manifest gets ``label_weights`` (the alarm labels at the chosen weight)
    and ``metrics.operating_point`` (the rule and what it measured at weight 1 and at the chosen
    one); the model file is not touched.

    Returns:
        ``metrics.operating_point``.

    Raises:
        DataError: no alarm label among the model's labels, an unreadable crop, or a split
            without crops of both kinds.
    """
    from edge.infer.models import Classifier
    from edge.manifest import Manifest, load_manifest, write_manifest

    from convert.data.images import read_rgb

    manifest_path = Path(manifest_path)
    clf = Classifier(manifest_path, num_threads=threads)
    labels = list(clf.manifest.labels)
    folded = {a.casefold() for a in alarm_labels}
    alarm = np.array([lab.casefold() in folded for lab in labels])
    if not alarm.any() or alarm.all():
        raise DataError(f"the alarm labels {', '.join(alarm_labels)} must name some but not all of the model's "
                        f"labels ({', '.join(labels)})")
    files = list(split.files)
    targets = np.array([labels.index(split.labels[t]) for t in split.targets], dtype=int)
    if not (alarm[targets].any() and (~alarm[targets]).any()):
        raise DataError("the split needs crops of an alarm label and of another label to choose an operating point")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(files), desc="operating point", unit="crop")
    probs = []
    for f in files:
        try:
            probs.append(np.asarray(clf.probabilities(read_rgb(f)), np.float64).reshape(-1))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read crop {f}: {e}") from None
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    p = np.stack(probs)
    w = choose_weight(p, targets, alarm, max_false_alarm)
    fa1, rec1 = rates(p, targets, alarm, 1.0)
    fa, rec = rates(p, targets, alarm, w)
    info = {"rule": f"largest weight on {', '.join(labels[i] for i in np.flatnonzero(alarm))} (grid 2^(k/8), "
                    f"1/16..16) with at most {max_false_alarm:g} of the other labels' crops called an alarm label",
            "basis": f"{len(files)} crops of the early-stopping split, int8", "max_false_alarm": max_false_alarm,
            "weight": round(w, 4), "at_weight_1": {"false_alarm": round(fa1, 4), "alarm_recall": round(rec1, 4)},
            "at_weight": {"false_alarm": round(fa, 4), "alarm_recall": round(rec, 4)}}
    m = load_manifest(manifest_path)
    weights = {labels[i]: round(w, 4) for i in np.flatnonzero(alarm)}
    metrics = {**m.metrics, "operating_point": info}
    write_manifest(Manifest.model_validate({**m.model_dump(), "label_weights": weights, "metrics": metrics}),
                   manifest_path)
    return info
