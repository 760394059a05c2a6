"""make models: fails in one line without ../shared; model cards keep all but their eval section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from convert import build_models
from edge import cli
from edge.errors import DataError


def test_missing_shared_is_one_line(tmp_path, capsys):
    rc = cli.main(["models", "--shared", str(tmp_path / "nope"), "--out", str(tmp_path / "models")])
    assert rc == DataError.exit_code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs ../shared" in err


def test_unknown_step_is_refused(tmp_path, capsys):
    assert cli.main(["models", "--shared", str(tmp_path), "--steps", "detector,fly"]) == 2
    assert "unknown step(s) fly" in capsys.readouterr().err


def test_card_refresh_replaces_only_the_eval_section(tmp_path):
    card = tmp_path / "m.md"
    card.write_text(f"# m\nwritten by hand\n\n{build_models.BEGIN}\nold figures\n{build_models.END}\n\n## Notes\nkeep\n")
    build_models.write_card(tmp_path / "m.json", f"{build_models.BEGIN}\nnew figures\n{build_models.END}\n")
    text = card.read_text()
    assert "written by hand" in text and "new figures" in text and "keep" in text
    assert "old figures" not in text
    assert text.count(build_models.BEGIN) == 1


def test_command_runs_as_make_models_calls_it(tmp_path):
    for how in (["-m", "edge.cli", "models"], ["-m", "convert.build_models"]):  # doorguard models; the old way
        r = subprocess.run([sys.executable, *how, "--shared", str(tmp_path / "x")], capture_output=True, text=True)
        assert r.returncode == DataError.exit_code, how
        assert "Traceback" not in r.stderr and "needs ../shared" in r.stderr, how


def _manifest(path, name, threshold, f1):
    """A minimal detector manifest written by the project's own writer (no model file needed)."""
    import json

    path.write_text(json.dumps({"name": name, "score_threshold": threshold, "metrics": {"agreement": {"f1": f1}}}))


def test_size_tradeoff_rows_and_the_rule(tmp_path, monkeypatch):
    from types import SimpleNamespace

    def fake_load(p, verify_hash=False):
        import json

        d = json.loads(p.read_text())
        return SimpleNamespace(score_threshold=d["score_threshold"], metrics=d["metrics"])

    monkeypatch.setattr("edge.manifest.load_manifest", fake_load)
    sets = build_models.TRADEOFF_SETS

    def figures(tnr):
        return {k: {"detector_recall": 0.9, "tnr": tnr, "fnr": 0.01, "false_detections_per_135_images": 5.0,
                    "detector_recall_by_class": {"no_mask": tnr}} for k in sets}

    results = {"doorguard-int8": figures(0.80), "doorguard-int8-512x384": figures(0.85),
               "doorguard-int8-640x480": figures(0.90)}
    for size, thr in (("416x320", 0.3), ("512x384", 0.35), ("640x480", 0.4)):
        _manifest(tmp_path / f"{build_models.size_variant(size)}.json", size, thr, 0.95)
    # Pi 5 counts: 640x480 costs more than 2.5x the default, so the rule takes 512x384.
    counts = {build_models.size_variant("416x320"): {"pi4": 55.0, "pi5": 35.0},
              build_models.size_variant("512x384"): {"pi4": 80.0, "pi5": 52.0},
              build_models.size_variant("640x480"): {"pi4": 130.0, "pi5": 90.0}}
    rows = build_models.tradeoff_rows(results, tmp_path, counts)
    assert [r["size"] for r in rows] == ["416x320", "512x384", "640x480"]
    assert rows[2]["cost_ratio"] == pytest.approx(90 / 35) and rows[2]["cost_basis"] == "pi5 invoke"
    assert build_models.choose_size(rows)["size"] == "512x384"
    # Without counts the input pixels stand in, and say so.
    rows = build_models.tradeoff_rows(results, tmp_path, {})
    assert rows[2]["cost_basis"] == "input pixels" and rows[2]["cost_ratio"] == pytest.approx(640 * 480 / (416 * 320))
    text = build_models.tradeoff_section(results, tmp_path, counts)
    assert "Only the default" in build_models.tradeoff_section({"doorguard-int8": results["doorguard-int8"]}, tmp_path, counts)
    assert "Rule's choice: **512x384**" in text and "| 640x480 |" in text


def test_arm_counts_reads_the_bench_arm_json(tmp_path):
    import json

    p = tmp_path / "b.json"
    p.write_text(json.dumps({"summary": {"models": [
        {"model": "m", "precision": "int8", "backend": "litert", "invoke_pi4": 55e6, "invoke_pi5": 35e6},
        {"model": "m", "precision": "int8", "backend": "tflite_runtime", "invoke_pi4": 1e9},
        {"model": "m", "precision": "float32", "backend": "litert", "invoke_pi4": 2e9}]}}))
    assert build_models.arm_counts(p) == {"m": {"pi4": 55.0, "pi5": 35.0}}
    assert build_models.arm_counts(tmp_path / "missing.json") == {}


def test_detector_step_trains_and_converts_at_the_asked_input_size(tmp_path, monkeypatch):
    """--detector-input 512x384: training and conversion at that size, written as the -512x384 variant."""
    import subprocess

    from convert import build_models as bm

    shared = tmp_path / "shared"
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    got = bm.build_detector(shared, tmp_path / "out", tmp_path, "d", "512x384")
    assert got == tmp_path / "out" / "yoloface-500k-v2-facemask-512x384.json"
    train = next(c for c in calls if "train" in c)
    convert = calls[-1]
    assert train[train.index("--input") + 1] == "512x384" and convert[convert.index("--input") + 1] == "512x384"
    assert convert[convert.index("--out") + 1].endswith("yoloface-500k-v2-facemask-512x384")
    # recipe d leaves out every validation set's near-duplicates
    ex = train[train.index("--exclude") + 1:train.index("--input")]
    assert [Path(e).name for e in ex] == ["val.txt", "raw_images", "valid.txt"]


def test_default_detector_recipe_is_g_teacher_labels_and_unlabelled_photos(tmp_path, monkeypatch):
    """The shipped recipe (issue 15, G): teacher faces as labels, teacher-labelled photos without
    boxes, every validation set's near-duplicates left out, nothing pasted; v1 keeps the old one."""
    import subprocess

    from convert import build_models as bm

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd) or subprocess.CompletedProcess(cmd, 0))
    bm.build_detector(tmp_path / "shared", tmp_path / "out", tmp_path)
    train = next(c for c in calls if "train" in c)
    assert train[train.index("--teacher-add-score") + 1] == "0.8"
    unl = train[train.index("--unlabelled") + 1:train.index("--unlabelled-limit")]
    assert [u.split("=")[0] for u in unl] == ["no_mask", "no_mask", "mask"]
    assert Path(unl[0].split("=", 1)[1]) == tmp_path / "sampled_face_images-train.txt"
    ex = train[train.index("--exclude") + 1:train.index("--teacher-peers")]
    assert [Path(e).name for e in ex] == ["val.txt", "raw_images", "valid.txt"]
    assert "--paste" not in train
    v1 = bm.RECIPES["v1"](tmp_path / "shared", tmp_path)
    assert "--teacher-peers" not in v1 and "--unlabelled" not in v1
    assert "--mosaic" not in train
    h = bm.RECIPES["h"](tmp_path / "shared", tmp_path)
    assert h[:len(train[train.index("--train"):train.index("--input")])] == train[train.index("--train"):train.index("--input")]
    assert h[h.index("--mosaic") + 1] == "0.5"
    i = bm.RECIPES["i"](tmp_path / "shared", tmp_path)
    assert i[:-2] == h[:-2] and i[-2:] == ["--ema", "0.999"] and "--ema" not in train
    j = bm.RECIPES["j"](tmp_path / "shared", tmp_path)
    assert j[:-2] == i[:-2] and j[-2:] == ["--assign-iou", "0.213"] and "--assign-iou" not in train
    k = bm.RECIPES["k"](tmp_path / "shared", tmp_path)
    assert k[:-2] == i[:-2] and k[-2:] == ["--crop-min", "0.35"] and "--crop-min" not in train
    assert train[train.index("--seed") + 1] == "0"  # the shipped build; --detector-seed builds it again
    calls.clear()
    bm.build_detector(tmp_path / "shared", tmp_path / "out", tmp_path, seed=3)
    again = next(c for c in calls if "train" in c)
    assert again[again.index("--seed") + 1] == "3" and again[:again.index("--seed")] == train[:train.index("--seed")]
