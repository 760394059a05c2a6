"""A model whose manifest records a failed accuracy gate is refused by run unless allowed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edge import cli, config, service
from edge.errors import ModelError
from edge.fakes import (RED, BlobDetectorInterpreter, ColourClassifierInterpreter, FakeActuators, FakeNotifier,
                        ListSource, frame_with, write_classifier_manifest, write_detector_manifest)
from edge.manifest import Gate, gate_check, gate_problem, load_manifest, recorded_gate

ROOT = Path(__file__).resolve().parent.parent
FAILED = {"passed": False, "checks": [
    {"metric": "int8_float_top1_agreement", "value": 0.9, "op": ">=", "threshold": 0.98, "passed": False,
     "basis": "val (50 validation crops)"},
    {"metric": "int8_accuracy_drop_points", "value": 0.4, "op": "<=", "threshold": 1.0, "passed": True}]}


def _with_gate(path: Path, gate: dict | None) -> Path:
    raw = json.loads(path.read_text())
    raw["gate"] = gate
    path.write_text(json.dumps(raw))
    return path


def _runner(tmp_path, gate, extra="", **kw):
    det = write_detector_manifest(tmp_path)
    clf = _with_gate(write_classifier_manifest(tmp_path), gate)
    p = tmp_path / "doorguard.toml"
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n{extra}[events]\nenabled = false\n')
    return service.Runner(config.load(p), source=ListSource([frame_with([(20, 30, 30, RED)])]),
                          actuators=FakeActuators(), notifier=FakeNotifier(),
                          detector_interpreter=BlobDetectorInterpreter(),
                          classifier_interpreter=ColourClassifierInterpreter(), **kw), clf


def test_gate_checks_and_words():
    ok = gate_check("f1", 0.95, ">=", 0.9)
    low = gate_check("f1", 0.455, ">=", 0.9)
    nan = gate_check("agreement", float("nan"), ">=", 0.98)
    assert ok.passed and not low.passed and not nan.passed and nan.value is None
    g = Gate.of([ok, low, nan])
    assert not g.passed and g.failures() == "f1 0.455 < 0.9 (min); agreement unmeasured"
    assert Gate.of([gate_check("drop", 3.0, "<=", 1.0)]).failures() == "drop 3 > 1 (max)"


def test_run_refuses_a_failed_gate_naming_why_and_the_override(tmp_path):
    r, clf = _runner(tmp_path, FAILED)
    with pytest.raises(ModelError) as e:
        r.run()
    msg = str(e.value)
    assert f"model {clf} failed its accuracy gate at conversion" in msg
    assert "int8_float_top1_agreement 0.9 < 0.98 (min)" in msg and "drop" not in msg
    assert "models.allow_failed_gate = true" in msg and "--allow-failed-gate" in msg
    assert e.value.exit_code == 4 and "\n" not in msg


@pytest.mark.parametrize("how", ["flag", "config"])
def test_override_runs_it_with_a_warning(tmp_path, caplog, how):
    kw = {"allow_failed_gate": True} if how == "flag" else {}
    extra = "allow_failed_gate = true\n" if how == "config" else ""
    r, _ = _runner(tmp_path, FAILED, extra, **kw)
    assert r.run() == 0 and r.frames == 1
    assert "failed its accuracy gate" in caplog.text and "running it anyway" in caplog.text


@pytest.mark.parametrize("gate", [None, {"passed": True, "checks": []}])
def test_no_record_or_a_passed_gate_runs(tmp_path, gate):
    r, _ = _runner(tmp_path, gate)
    assert r.run() == 0


def test_shipped_models_load_and_pass():
    """The shipped manifests have no gate record or a passed one: run and doctor accept them."""
    for name in ("mask-classifier", "yoloface-500k-v2", "yoloface-500k-v2-facemask"):
        path = ROOT / "models" / f"{name}.json"
        if not path.is_file():
            continue
        m = load_manifest(path)
        g = recorded_gate(m)
        assert g is None or g.passed, (name, g)
        assert gate_problem(m, path) is None


def test_cli_run_exits_4_with_one_line(tmp_path, capsys):
    models = tmp_path / "models"
    models.mkdir()
    for name in ("yoloface-500k-v2-facemask", "mask-classifier"):
        for suffix in (".json", ".tflite"):
            shutil.copy(ROOT / "models" / f"{name}{suffix}", models / f"{name}{suffix}")
    _with_gate(models / "mask-classifier.json", FAILED)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[models]\ndetector = "{models / "yoloface-500k-v2-facemask.json"}"\n'
                   f'classifier = "{models / "mask-classifier.json"}"\n[events]\nenabled = false\n')
    rc = cli.main(["run", "--config", str(cfg), "--source", "demo", "--max-frames", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 4 and len(err) == 1 and err[0].startswith("doorguard: error: model ")
    assert "failed its accuracy gate" in err[0] and "--allow-failed-gate" in err[0]
