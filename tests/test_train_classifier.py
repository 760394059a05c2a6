"""train classifier: a small generated folder end to end, seeds, imbalance, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.cli import main as cli
from edge.errors import DataError, ModelError, UsageError

pytest.importorskip("tensorflow")

from convert.train import mask_recipe, train_classifier  # noqa: E402
from convert.train.classifier_data import augment, class_weights, grouped_split, load_resized, stratified_split  # noqa: E402
from convert.train.mobilenet import TrainResult, build_backbone, fit_classifier, mobilenet_spec  # noqa: E402
from convert.pipeline.classifier import Evaluation, LabeledFiles, folder_set  # noqa: E402
from convert.verify.metrics import auc, roc_curve  # noqa: E402
from convert.data.images import read_rgb  # noqa: E402


def make_folder(root: Path, n: int = 14, labels=("circle", "square"), size: int = 40, seed: int = 0) -> Path:
    """Two easy classes: a bright disc vs a bright square on dark noise."""
    rng = np.random.default_rng(seed)
    for lab in labels:
        (root / lab).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            c = tuple(int(v) for v in rng.integers(150, 255, 3))
            if lab == labels[0]:
                cv2.circle(img, (size // 2, size // 2), int(rng.integers(size // 5, size // 3)), c, -1)
            else:
                a = int(rng.integers(4, size // 4))
                cv2.rectangle(img, (a, a), (size - a, size - a), c, -1)
            cv2.imwrite(str(root / lab / f"{i}.png"), img)
    return root


def _one_error_line(err: str) -> bool:
    """One 'doorguard: error:' line and no traceback (TF may log warnings around it)."""
    return "Traceback" not in err and sum(l.startswith("doorguard: error:") for l in err.splitlines()) == 1


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("data"), n=16)


def test_train_from_scratch_end_to_end(folder, tmp_path, capsys):
    data = tmp_path / "data"
    import shutil

    shutil.copytree(folder, data)
    (data / "circle" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "models" / "shapes"
    rc = cli(["train", "classifier", "--data", str(data), "--out", str(out), "--size", "32",
              "--epochs", "1", "--fine-tune-epochs", "0", "--batch", "8", "--min-accuracy-drop", "100",
              "--min-agreement", "0"])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    # No SavedModel signature dump (hundreds of lines) and no partial folder left behind.
    assert "TensorSpec" not in cap.out and "Saved artifact" not in cap.out
    assert sorted(p.name for p in out.parent.iterdir()) == ["shapes.float32.tflite", "shapes.json",
                                                           "shapes.report", "shapes.tflite"]
    m = json.loads((out.parent / "shapes.json").read_text())
    assert m["task"] == "classify" and m["labels"] == ["circle", "square"]
    assert m["input"]["dtype"] == "int8" and m["input"]["resize"] == "stretch"
    assert m["input"]["scale"] == pytest.approx(1 / 127.5) and m["input"]["mean"] == [1.0, 1.0, 1.0]
    assert m["outputs"][0]["role"] == "probabilities" and m["outputs"][0]["dtype"] == "int8"
    assert m["crop_margin"] == 0.15 and m["source"]["kind"] == "trained"
    tr = m["metrics"]["training"]
    assert "from scratch" in tr["backbone_init"]
    assert tr["unreadable_skipped"]["train"] + tr["unreadable_skipped"]["val"] == 1
    assert (out.parent / "shapes.float32.tflite").is_file()
    report = out.parent / m["metrics"]["report"]
    assert (report / "report.md").is_file() and (report / "roc_val.png").stat().st_size < 60_000
    ev = m["metrics"]["eval"]["val"]
    assert set(ev) >= {"float_accuracy", "int8_accuracy", "confusion_int8", "per_class_int8", "roc_auc_int8"}

    # The runtime Classifier, built from the manifest, reproduces the report's int8 figures.
    from edge.infer.models import Classifier

    split_train, split_val = stratified_split(folder_set(data), 0.2, 0)
    clf = Classifier(out.parent / "shapes.json")
    correct, n = 0, 0
    for f, t in zip(split_val.files, split_val.targets):
        try:
            img = read_rgb(f)
        except DataError:
            continue
        correct += clf.classify(img).label == m["labels"][t]
        n += 1
    assert n == ev["images"]
    assert correct / n == pytest.approx(ev["int8_accuracy"], abs=1e-4)


def test_seeded_training_is_reproducible(folder):
    spec = mobilenet_spec(32)
    data = folder_set(folder)
    x, y, _ = load_resized(data, spec, "t")
    kw = dict(labels=data.labels, spec=spec, backbone="mobilenet_v1_0.25", weights=None, epochs=1,
              fine_tune_epochs=0, batch=8, seed=3)
    x, y = x[::2], y[::2]  # 16 images, two steps: enough to see any unseeded randomness
    a = fit_classifier(x, y, x[:6], y[:6], **kw).model
    b = fit_classifier(x, y, x[:6], y[:6], **kw).model
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


@pytest.mark.shared
def test_imagenet_backbone_head_then_fine_tune(folder, shared, tmp_path):
    weights = shared / "models" / "keras-mobilenet" / "mobilenet_2_5_224_tf_no_top.h5"
    m = train_classifier.train_classifier(folder, tmp_path / "m", backbone_weights=weights, size=32, epochs=1,
                                          fine_tune_epochs=1, batch=8, min_accuracy_drop=100, min_agreement=0)
    tr = m.metrics["training"]
    assert tr["backbone_init"] == "imagenet weights"
    assert [p["phase"] for p in tr["phases"]] == ["head", "fine-tune"] and tr["fine_tuned_layers"] > 0
    assert m.source.files["backbone"].sha256.startswith("dbdb03ee")


def test_wrong_architecture_backbone_is_one_line_error(folder, tmp_path, capsys):
    import keras

    inp = keras.Input((32, 32, 3))
    other = keras.Model(inp, keras.layers.Conv2D(4, 3)(inp))
    bad = tmp_path / "other.weights.h5"
    other.save_weights(bad)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"nope")
    for f in (bad, garbage):
        rc = cli(["train", "classifier", "--data", str(folder), "--out", str(tmp_path / "m"), "--size", "32",
                  "--epochs", "1", "--fine-tune-epochs", "0", "--backbone-weights", str(f)])
        err = capsys.readouterr().err.strip()
        assert rc == ModelError.exit_code and _one_error_line(err) and "do not fit" in err


def test_bad_folders_are_one_line_errors(folder, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    one = make_folder(tmp_path / "one", n=3, labels=("only",))
    other = make_folder(tmp_path / "other", n=3, labels=("circle", "triangle"))
    cases = [
        (["--data", str(empty)], "no label subfolders"),
        (["--data", str(one)], "only one label"),
        (["--data", str(folder), "--val", str(other)], "label mismatch"),
    ]
    for extra, msg in cases:
        rc = cli(["train", "classifier", "--out", str(tmp_path / "m"), "--size", "32", *extra])
        err = capsys.readouterr().err.strip()
        assert rc == DataError.exit_code and msg in err and _one_error_line(err)


def _no_training(monkeypatch):
    def fail(*a, **k):
        raise AssertionError("trained although the inputs were refusable")

    monkeypatch.setattr(train_classifier, "fit_classifier", fail)


def test_inputs_checked_before_training(tmp_path, capsys, monkeypatch):
    """3 images per class trained first and only then refused (issue 24 item 5): now the counts
    per label, the calibration size and --out are checked first, and nothing is left."""
    _no_training(monkeypatch)
    out = tmp_path / "models" / "o"
    cases = [
        (make_folder(tmp_path / "three", n=3), [], DataError,
         "too few readable training images of circle, square: each label needs at least 5 "
         "(training+validation per label: circle 2+1, square 2+1)"),
        (make_folder(tmp_path / "six", n=6), [], DataError, "only 10 readable calibration images"),
        (make_folder(tmp_path / "six", n=6), ["--val", str(make_folder(tmp_path / "v", n=0))], DataError,
         "no label subfolders"),
    ]
    (tmp_path / "afile").write_text("")
    cases.append((make_folder(tmp_path / "six", n=6), ["--out", str(tmp_path / "afile" / "m")], UsageError,
                  "cannot write the output folder"))
    for data, extra, err_cls, msg in cases:
        argv = ["train", "classifier", "--data", str(data), "--out", str(out), "--size", "32", *extra]
        rc = cli(argv)
        err = capsys.readouterr().err.strip()
        assert rc == err_cls.exit_code and msg in err and _one_error_line(err), err
        assert not out.parent.exists()  # not even the folder --out would have made


def test_failure_after_training_leaves_nothing(folder, tmp_path, capsys, monkeypatch):
    """A conversion that fails after training leaves no float model and no empty report
    folder, and a model already at --out stays as it was."""
    import keras

    from convert.tflite import quantize
    from edge.errors import ModelError

    def quick_fit(x, y, xv, yv, *, labels, spec, **kw):
        inp = keras.Input((spec.height, spec.width, 3), batch_size=1)
        out = keras.layers.Dense(len(labels), activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))
        return TrainResult(keras.Model(inp, out), {"backbone_init": "test"})

    def fail(*a, **k):
        raise ModelError("int8 conversion failed: simulated")

    monkeypatch.setattr(train_classifier, "fit_classifier", quick_fit)
    monkeypatch.setattr(quantize, "to_tflite_int8", fail)
    models = tmp_path / "models"
    models.mkdir()
    (models / "o.json").write_text("the earlier model")
    rc = cli(["train", "classifier", "--data", str(folder), "--out", str(models / "o"), "--size", "32"])
    assert rc == ModelError.exit_code and "simulated" in capsys.readouterr().err
    assert [(p.name, p.read_text()) for p in models.iterdir()] == [("o.json", "the earlier model")]


def test_split_weights_and_augment():
    data = LabeledFiles(["a", "b"], [Path(f"{i}.png") for i in range(13)], [0] * 10 + [1] * 3)
    tr, va = stratified_split(data, 0.2, 0)
    assert va.counts() == {"a": 2, "b": 1} and tr.counts() == {"a": 8, "b": 2}
    assert stratified_split(data, 0.2, 0)[1].files == va.files  # seeded
    w = class_weights(np.array([0] * 90 + [1] * 9 + [2]), 3, cap=10)
    assert w[0] < 1 < w[1] and w[2] == 10
    img = np.zeros((32, 32, 3), np.uint8)
    out = augment(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.uint8


def test_grouped_split_keeps_each_group_on_one_side_within_each_class_quota():
    # 40 photos of 3 crops (2 of class a, 1 of b) and 10 single files of class c.
    files = [Path(f"p{i}_{k}.jpg") for i in range(40) for k in range(3)] + [Path(f"c{i}.jpg") for i in range(10)]
    targets = [0, 0, 1] * 40 + [2] * 10
    groups = [f"p{i}" for i in range(40) for _ in range(3)] + [f"c{i}" for i in range(10)]
    data = LabeledFiles(["a", "b", "c"], files, targets)
    tr, va = grouped_split(data, 0.1, 0, groups)
    assert sorted(tr.files + va.files) == sorted(files)
    held = {f.name.split("_")[0] for f in va.files}
    assert not held & {f.name.split("_")[0] for f in tr.files}  # no photo on both sides
    assert va.counts() == {"a": 8, "b": 4, "c": 1}  # quotas round(0.1 * 80 / 40 / 10)
    assert grouped_split(data, 0.1, 0, groups)[1].files == va.files  # seeded
    assert grouped_split(data, 0.1, 1, groups)[1].files != va.files
    with pytest.raises(ValueError, match="groups"):
        grouped_split(data, 0.1, 0, groups[:-1])


def test_photo_groups_join_a_photos_crops_its_near_duplicate_and_a_persons_crops(tmp_path, monkeypatch):
    from convert.data import dataset
    from edge.types import Box

    rng = np.random.default_rng(0)
    a, b, c = (rng.integers(0, 255, (60, 80, 3), dtype=np.uint8) for _ in range(3))
    photos = {}
    for name, img in (("fm/x_1", a), ("fm/y", b), ("ad/copy_of_x", a), ("ad/z", c)):
        p = tmp_path / f"{name}.png"
        p.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(p), img)
        photos[name] = (p, [dataset.LabeledBox(Box(5, 5, 30, 30), "with_mask")])
    fm = mask_recipe.PhotoSource("facemask853_train", [photos["fm/x_1"], photos["fm/y"]], {}, False)
    ad = mask_recipe.PhotoSource("adityap27_train", [photos["ad/copy_of_x"], photos["ad/z"]], {}, True)
    monkeypatch.setattr(mask_recipe, "train_photo_sources", lambda shared: ([fm, ad], 0))
    work, dr = tmp_path / "w", tmp_path / "data" / "dataroots" / "train"
    files = [work / "facemask853_train" / "mask" / "x_1_0.jpg", work / "facemask853_train" / "no_mask" / "x_1_1.jpg",
             work / "facemask853_train" / "mask" / "y_0.jpg", work / "adityap27_train" / "mask" / "copy_of_x_0.jpg",
             work / "adityap27_train" / "mask" / "z_0.jpg", dr / "masked" / "n000001_0027_03.jpg",
             dr / "not_masked" / "n000001_0202_01.jpg", dr / "masked" / "n000002_0001_01.jpg",
             tmp_path / "chandrikadeb7" / "with_mask" / "0001.jpg", tmp_path / "chandrikadeb7" / "with_mask" / "0002.jpg"]
    g = mask_recipe.photo_groups(tmp_path, work, files)
    assert g[0] == g[1] == g[3] != g[2]  # one photo's crops and its adityap27 copy
    assert len({g[2], g[4], g[5], g[7], g[8], g[9]}) == 6 and g[5] == g[6]  # one person


def test_roc_curve_hand_computed():
    fpr, tpr, _ = roc_curve(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]))
    assert auc(fpr, tpr) == pytest.approx(0.75)
    assert tpr[-1] == 1 and fpr[-1] == 1
    fpr, tpr, _ = roc_curve(np.array([1, 1]), np.array([0.2, 0.3]))
    assert auc(fpr, tpr) is None


def test_report_auc_is_none_for_an_absent_class():
    # The classifier report uses convert.verify.metrics' ROC (its old copy returned NaN for a
    # one-class set and the report turned NaN into None): the report is unchanged.
    both = Evaluation(["mask", "no_mask"], np.array([0, 0, 1, 1]),
                      np.array([[0.9, 0.1], [0.4, 0.6], [0.6, 0.4], [0.1, 0.9]]), 0)
    assert both.summary()["roc_auc"] == {"mask": 0.75, "no_mask": 0.75}
    one = Evaluation(["mask", "no_mask"], np.array([0, 0]), np.array([[0.8, 0.2], [0.7, 0.3]]), 0)
    assert one.summary()["roc_auc"] == {"mask": None, "no_mask": None}


@pytest.mark.shared
def test_coral_int8_tflite_dequantizes_into_a_keras_backbone(shared):
    coral = shared / "models" / "coral" / "mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"
    base = build_backbone("mobilenet_v1_1.0", 32, coral)
    k = base.get_layer("conv_pw_13").get_weights()[0]
    assert k.shape == (1, 1, 1024, 1024) and np.abs(k).max() > 0
    bn = base.get_layer("conv_pw_13_bn").get_weights()
    np.testing.assert_allclose(bn[0], 1.0)  # folded BatchNorm -> identity + bias
    with pytest.raises(ModelError, match="do not fit"):
        build_backbone("mobilenet_v1_0.25", 32, coral)
    with pytest.raises(ModelError, match="do not fit"):
        build_backbone("mobilenet_v2_1.0", 32, coral)


def test_default_recipe_synth_option_adds_the_synthetic_crops(tmp_path, monkeypatch):
    """synth=True puts convert.train.masksynth's crops into the pool (split as the rest); off by default."""
    from convert.train import masksynth
    from convert.pipeline.classifier import LabeledFiles

    def fake_data(shared, work):
        pool = LabeledFiles(list(mask_recipe.MASK_LABELS))
        for i in range(20):
            pool.files.append(tmp_path / f"real_{i}.jpg")
            pool.targets.append(i % 2)
        return pool, {}, {"pool": pool.counts()}

    synth_calls = []

    def fake_synth(shared, work, counts, seed=0, small=0.0, nose_gap=masksynth.NOSE_GAP):
        synth_calls.append((counts, seed) + ((small,) if small else ())
                           + ((nose_gap,) if nose_gap != masksynth.NOSE_GAP else ()))
        files = {"mask_incorrect": [tmp_path / f"inc_{i}.jpg" for i in range(10)],
                 "mask": [tmp_path / f"dark_{i}.jpg" for i in range(4)]}
        return {"files": files, "made": {"mask_incorrect:below_nose:as_is": 10, "mask:correct:dark": 4},
                "no_face_sources_skipped": 1, "placements_rejected": 2}

    seen = {}

    def fake_train(data, out, *, val, data_notes, **kw):
        seen["files"] = list(data.files) + list(val.files)
        seen["targets"] = list(data.targets) + list(val.targets)
        seen["notes"] = data_notes

    monkeypatch.setattr(mask_recipe, "mask_classifier_data", fake_data)
    monkeypatch.setattr(masksynth, "default_synth", fake_synth)
    monkeypatch.setattr(mask_recipe, "train_classifier", fake_train)
    monkeypatch.setattr(mask_recipe, "write_mask_model_card", lambda *a, **k: None)
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w")
    assert synth_calls == [] and "synthetic" not in seen["notes"] and len(seen["files"]) == 20
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", synth=True)
    assert synth_calls == [(masksynth.DEFAULT_COUNTS, 0)]
    lab = dict(zip(seen["files"], seen["targets"]))
    assert len(lab) == 34
    assert lab[tmp_path / "inc_3.jpg"] == mask_recipe.MASK_LABELS.index("mask_incorrect")
    assert lab[tmp_path / "dark_0.jpg"] == mask_recipe.MASK_LABELS.index("mask")
    assert seen["notes"]["synthetic"]["counts"] == masksynth.DEFAULT_COUNTS
    assert seen["notes"]["pool"]["mask_incorrect"] == 10
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", synth=True,
                                              synth_small=0.6)
    assert synth_calls[-1] == (masksynth.DEFAULT_COUNTS, 0, 0.6)
    assert seen["notes"]["synthetic"]["small"] == 0.6
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", synth=True,
                                              synth_nose_gap=(0.05, 0.2))
    assert synth_calls[-1] == (masksynth.DEFAULT_COUNTS, 0, (0.05, 0.2))
    assert seen["notes"]["synthetic"]["nose_gap"] == [0.05, 0.2]


def test_condition_augment_draws_each_doorway_condition_and_keeps_the_crop():
    """conditions=1: every crop gets one of IR grey, low light, motion blur, JPEG; 0 changes nothing."""
    from convert.train.classifier_data import TRAIN_CONDITIONS, condition_augment

    img = np.random.default_rng(1).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    img[:, 24:] = (200, 40, 40)
    grey = dark = other = 0
    for i in range(80):
        out = condition_augment(img, np.random.default_rng(i))
        assert out.shape == img.shape and out.dtype == np.uint8
        if (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all():
            grey += 1
        elif out.mean() < 0.85 * img.mean():
            dark += 1
        else:
            other += 1
    assert TRAIN_CONDITIONS == ("ir", "low-light", "motion-blur", "jpeg")
    assert grey > 8 and dark > 8 and other > 16
    # The share 0 keeps the draws (and so the default classifier's weights) as they were.
    for i in range(10):
        a = augment(img, np.random.default_rng(i))
        assert (a == augment(img, np.random.default_rng(i), 0.0)).all()
    changed = sum(not (augment(img, np.random.default_rng(i)) == augment(img, np.random.default_rng(i), 1.0)).all()
                  for i in range(10))
    assert changed == 10


def test_conditions_aug_out_of_range_is_a_usage_error(folder, tmp_path):
    with pytest.raises(UsageError, match="conditions-aug"):
        train_classifier.train_classifier(folder, tmp_path / "m", conditions_aug=1.5)


def test_default_recipe_passes_the_conditions_share_and_false_alarm_budget_to_training(tmp_path, monkeypatch):
    from convert.pipeline.classifier import LabeledFiles

    pool = LabeledFiles(list(mask_recipe.MASK_LABELS), [tmp_path / f"{i}.jpg" for i in range(20)],
                        [i % 2 for i in range(20)])
    seen = {}
    monkeypatch.setattr(mask_recipe, "mask_classifier_data", lambda shared, work: (pool, {}, {}))
    monkeypatch.setattr(mask_recipe, "train_classifier", lambda data, out, **kw: seen.update(kw))
    monkeypatch.setattr(mask_recipe, "write_mask_model_card", lambda *a, **k: None)
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w")
    assert seen["conditions_aug"] == 0.0 and seen["max_false_alarm"] is None
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", conditions_aug=0.5,
                                              max_false_alarm=0.02)
    assert seen["conditions_aug"] == 0.5 and seen["max_false_alarm"] == 0.02
    seen.clear()
    with pytest.raises(UsageError, match="classifier-conditions-aug"):
        mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", conditions_aug=-1)
    assert seen == {}


def test_shipped_card_notes_carry_the_measured_options():
    """The default model's card ends with the backbone, synthetic-mask and conditions notes; the
    synthetic candidate's card only with the backbone note (it is the 'after' of the synth note)."""
    from convert.report.mask_card import measured_notes

    shipped = measured_notes(default_backbone=True, synth=False)
    assert "## Synthetic masks" in shipped and "## Doorway conditions in training" in shipped
    assert "--classifier-conditions-aug 0.5" in shipped
    candidate = measured_notes(default_backbone=True, synth=True)
    assert "## Backbone choice" in candidate and "## Doorway conditions in training" not in candidate
    assert measured_notes(default_backbone=False, synth=False) == ""


def test_photo_condition_degrades_the_whole_photo_and_keeps_its_size():
    """Each photo-scale family is drawn; the photo keeps its size (boxes stay valid); seeded."""
    from convert.train.classifier_data import PHOTO_CONDITIONS, photo_condition

    rng0 = np.random.default_rng(3)
    img = cv2.resize(rng0.integers(0, 256, (30, 40, 3), dtype=np.uint8), (160, 120), interpolation=cv2.INTER_NEAREST)
    assert PHOTO_CONDITIONS == ("ir", "low-light", "motion-blur", "jpeg", "small")
    grey = changed = 0
    for i in range(60):
        out = photo_condition(img, np.random.default_rng(i))
        assert out.shape == img.shape and out.dtype == np.uint8
        assert (out == photo_condition(img, np.random.default_rng(i))).all()
        grey += bool((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all())
        changed += bool(np.abs(out.astype(int) - img).mean() > 2)
    assert 4 <= grey <= 24 and changed >= 55
    # 'small' (scaled down and up again) loses the sharp edges of the blocks.
    edges = [np.abs(np.diff(photo_condition(img, np.random.default_rng(i)).astype(int), axis=1)).max()
             for i in range(60)]
    assert min(edges) < 0.6 * np.abs(np.diff(img.astype(int), axis=1)).max()


def test_photo_condition_crops_cut_degraded_twins_of_training_faces_only(tmp_path, monkeypatch):
    """Copies are cut from degraded photos with the same boxes, and only for faces in the training
    split: the early-stopping split never sees a twin of a face it trains on."""
    from convert.data import dataset
    from convert.pipeline.classifier import LabeledFiles
    from edge.types import Box

    photos = []
    for i in range(3):
        p = tmp_path / f"ph{i}.png"
        img = np.full((60, 80, 3), 40 * i + 30, np.uint8)
        img[10:40, 20:50] = (220, 30, 30)
        cv2.imwrite(str(p), img[..., ::-1])
        photos.append((p, [dataset.LabeledBox(Box(20, 10, 50, 40), "with_mask"),
                           dataset.LabeledBox(Box(55, 20, 75, 45), "without_mask")]))
    src = mask_recipe.PhotoSource("facemask853_train", photos, dataset.DEFAULT_LABEL_MAP, False)
    monkeypatch.setattr(mask_recipe, "train_photo_sources", lambda shared: ([src], 0))
    work = tmp_path / "w"
    dataset.write_crops(photos, work / src.name, 0.15, src.label_map, progress=False)
    clean = sorted((work / src.name).rglob("*.jpg"))
    assert len(clean) == 6
    train = LabeledFiles(list(mask_recipe.MASK_LABELS), clean[1:],
                         [mask_recipe.MASK_LABELS.index(f.parent.name) for f in clean[1:]])
    extra, notes = mask_recipe.photo_condition_crops(tmp_path, work, train, copies=2, seed=0, progress=False)
    assert notes["crops"] == len(extra.files) == 10 and notes["copies"] == 2
    names = {(f.parent.name, f.name.split("_", 1)[1]) for f in extra.files}
    assert (clean[0].parent.name, clean[0].name) not in names
    for f, t in zip(extra.files, extra.targets):
        assert mask_recipe.MASK_LABELS[t] == f.parent.name
        twin = work / src.name / f.parent.name / f.name.split("_", 1)[1]
        assert read_rgb(f).shape == read_rgb(twin).shape


def test_default_recipe_adds_photo_condition_copies_to_the_training_split_only(tmp_path, monkeypatch):
    from convert.pipeline.classifier import LabeledFiles

    pool = LabeledFiles(list(mask_recipe.MASK_LABELS), [tmp_path / f"{i}.jpg" for i in range(20)],
                        [i % 2 for i in range(20)])
    seen = {}
    calls = []

    def fake_copies(shared, work, train, copies, seed):
        calls.append((copies, seed, len(train.files)))
        return LabeledFiles(list(train.labels), [tmp_path / "c.jpg"], [2]), {"copies": copies}

    monkeypatch.setattr(mask_recipe, "mask_classifier_data", lambda shared, work: (pool, {}, {}))
    monkeypatch.setattr(mask_recipe, "photo_condition_crops", fake_copies)
    monkeypatch.setattr(mask_recipe, "train_classifier",
                        lambda data, out, val, data_notes, **kw: seen.update(train=list(data.files),
                                                                            val=list(val.files), notes=data_notes))
    monkeypatch.setattr(mask_recipe, "write_mask_model_card", lambda *a, **k: None)
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w")
    assert calls == [] and "photo_conditions" not in seen["notes"]
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", photo_conditions=2)
    assert calls == [(2, 0, 18)]
    assert tmp_path / "c.jpg" in seen["train"] and tmp_path / "c.jpg" not in seen["val"]
    assert seen["notes"]["photo_conditions"] == {"copies": 2}
    with pytest.raises(UsageError, match="photo-conditions"):
        mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", photo_conditions=9)
    # holdout="photos": the early-stopping split holds whole groups (photo_groups), here pairs.
    pair = lambda f: int(f.stem) // 2  # noqa: E731
    monkeypatch.setattr(mask_recipe, "photo_groups", lambda shared, work, files: [str(pair(f)) for f in files])
    mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", work=tmp_path / "w", holdout="photos")
    assert "whole photos" in seen["notes"]["early_stopping_split"] and len(seen["val"]) == 2
    assert not {pair(f) for f in seen["val"]} & {pair(f) for f in seen["train"]}
    with pytest.raises(UsageError, match="holdout"):
        mask_recipe.build_default_mask_classifier(tmp_path, tmp_path / "models", holdout="people")


def test_photo_condition_crops_take_a_share_and_do_not_depend_on_how_shared_is_spelt(tmp_path, monkeypatch):
    """A fractional count gives the last copy to about that share of the faces (a subset of the
    full copy's crops), and the degraded photos are the same for any spelling of --shared."""
    import os

    from convert.data import dataset
    from convert.pipeline.classifier import LabeledFiles
    from edge.types import Box

    shared = tmp_path / "shared"
    (shared / "data").mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = []
    for i in range(12):
        img = rng.integers(0, 255, (60, 80, 3), np.uint8)
        cv2.imwrite(str(shared / "data" / f"ph{i}.png"), img)
        names.append(f"ph{i}.png")

    def sources(sh):
        photos = [(Path(sh) / "data" / n, [dataset.LabeledBox(Box(10, 10, 40, 40), "without_mask")]) for n in names]
        return [mask_recipe.PhotoSource("facemask853_train", photos, dataset.DEFAULT_LABEL_MAP, False)], 0

    monkeypatch.setattr(mask_recipe, "train_photo_sources", sources)
    work = tmp_path / "w"
    dataset.write_crops(sources(shared)[0][0].items, work / "facemask853_train", 0.15, dataset.DEFAULT_LABEL_MAP,
                        progress=False)
    clean = sorted((work / "facemask853_train").rglob("*.jpg"))
    train = LabeledFiles(list(mask_recipe.MASK_LABELS), clean,
                         [mask_recipe.MASK_LABELS.index(f.parent.name) for f in clean])
    full, _ = mask_recipe.photo_condition_crops(shared, work, train, copies=1, seed=0, progress=False)
    first = {f.name: read_rgb(f) for f in full.files}
    half, notes = mask_recipe.photo_condition_crops(shared, work, train, copies=0.5, seed=0, progress=False)
    assert notes["copies"] == 0.5 and 0 < len(half.files) < len(full.files) == 12
    assert {f.name for f in half.files} <= set(first)
    monkeypatch.chdir(tmp_path)
    other = Path(os.path.relpath(shared, tmp_path)) / ".." / "shared"
    again, _ = mask_recipe.photo_condition_crops(other, work, train, copies=1, seed=0, progress=False)
    assert all((read_rgb(f) == first[f.name]).all() for f in again.files)


def test_operating_point_takes_the_largest_weight_within_the_false_alarm_budget():
    from convert.train.operating_point import WEIGHTS, choose_weight, rates

    # labels (ok, alarm); four ok crops, two alarm crops.
    p = np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.8, 0.2], [0.3, 0.7], [0.7, 0.3]])
    y = np.array([0, 0, 0, 0, 1, 1])
    alarm = np.array([False, True])
    assert rates(p, y, alarm, 1.0) == (0.0, 0.5)
    # Every ok crop stays ok below w = 0.55/0.45; from 0.6/0.4 = 1.5 two of four (0.5) are alarms.
    w = choose_weight(p, y, alarm, 0.0)
    assert w == max(v for v in WEIGHTS if v * 0.45 < 0.55) and rates(p, y, alarm, w) == (0.0, 0.5)
    assert choose_weight(p, y, alarm, 0.25) == max(v for v in WEIGHTS if v * 0.4 < 0.6)
    # A budget nothing meets gives the smallest weight.
    bad = np.array([[0.01, 0.99], [0.2, 0.8]]), np.array([0, 1])
    assert choose_weight(*bad, alarm, 0.0) == WEIGHTS[0] == 1 / 16


def test_max_false_alarm_writes_the_operating_point_the_runtime_uses(folder, tmp_path, capsys):
    from edge.infer.models import Classifier

    out = tmp_path / "models" / "shapes"
    args = ["train", "classifier", "--data", str(folder), "--out", str(out), "--size", "32", "--epochs", "1",
            "--fine-tune-epochs", "0", "--batch", "8", "--min-accuracy-drop", "100", "--min-agreement", "0"]
    assert cli(args + ["--max-false-alarm", "0", "--alarm-labels", "squares"]) != 0
    assert "--alarm-labels must name some but not all" in capsys.readouterr().err and not out.parent.exists()
    assert cli(args + ["--max-false-alarm", "0", "--alarm-labels", "square"]) == 0
    m = json.loads(out.with_suffix(".json").read_text())
    op = m["metrics"]["operating_point"]
    assert set(m["label_weights"]) == {"square"} and m["label_weights"]["square"] == op["weight"]
    assert op["at_weight"]["false_alarm"] == 0.0
    # The runtime decides with the weight: on the split it was chosen on, no circle is called a square.
    _, val = stratified_split(folder_set(folder), 0.2, 0)
    clf = Classifier(out.with_suffix(".json"))
    called = [clf.classify(read_rgb(f)).label for f, t in zip(val.files, val.targets) if t == 0]
    assert called and "square" not in called


def test_classifier_shift_diagnostic_reweights_the_alarm_labels():
    from benchmarks.classifier_shift import tnr_fnr

    labels = ["mask", "no_mask", "mask_incorrect"]
    p = [[0.6, 0.4, 0.0], [0.3, 0.7, 0.0], [0.55, 0.0, 0.45], [0.9, 0.1, 0.0]]
    y = ["mask", "no_mask", "mask_incorrect", "mask"]
    assert tnr_fnr(p, y, labels, 1.0) == (0.5, 0.0)
    assert tnr_fnr(p, y, labels, 1.6) == (1.0, 0.5)  # 0.45 x 1.6 > 0.55 and 0.4 x 1.6 > 0.6


def test_false_detection_diagnostic_tells_a_label_boxed_otherwise_from_a_peer_face():
    from benchmarks.false_detections import explain

    truths = np.array([[0, 0, 10, 10]], np.float64)
    peers = np.array([[50, 50, 60, 60]], np.float64)
    assert explain([0, 0, 10, 30], truths, peers) == (True, False)  # IoU 0.33 with the label: boxed otherwise
    assert explain([50, 50, 60, 61], truths, peers) == (False, True)
    assert explain([30, 30, 40, 40], truths, peers) == (False, False)
    assert explain([30, 30, 40, 40], np.zeros((0, 4)), np.zeros((0, 4))) == (False, False)
