"""Broken models at start-up: `doorguard run` (a real subprocess) refuses them at once.

Each case copies the shipped int8 models (models/) into a temp folder, breaks one
thing, points a temp config at it and runs ``doorguard run --source demo``. The
run must exit at start with ModelError's exit code and one line on stderr, no
traceback, and never reach the loop (no GPIO claimed, no camera opened, no frame).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge.errors import ModelError
from edge.fakes import BlobDetectorInterpreter

ROOT = Path(__file__).resolve().parents[1]
DET, CLF = "yoloface-500k-v2", "mask-classifier"

pytestmark = pytest.mark.skipif(
    not all((ROOT / "models" / f"{n}{s}").is_file() for n in (DET, CLF) for s in (".json", ".tflite")),
    reason="needs the shipped int8 models in models/ (make models)")


@pytest.fixture
def models(tmp_path) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    for n in (DET, CLF):
        for s in (".json", ".tflite"):
            shutil.copy(ROOT / "models" / f"{n}{s}", d / f"{n}{s}")
    return d


def manifest(d: Path, name: str) -> dict:
    return json.loads((d / f"{name}.json").read_text())


def save_manifest(d: Path, name: str, m: dict, rehash: bool = False) -> None:
    if rehash:  # the broken file comes with a manifest that matches it (a bad conversion)
        m["sha256"] = hashlib.sha256((d / f"{name}.tflite").read_bytes()).hexdigest()
    (d / f"{name}.json").write_text(json.dumps(m))


def run_doorguard(tmp_path: Path, d: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    cfg = tmp_path / "doorguard.toml"
    cfg.write_text(f'[models]\ndetector = "{d / DET}.json"\nclassifier = "{d / CLF}.json"\n'
                   f'[events]\nstate_dir = "{tmp_path / "state"}"\n')
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "DOORGUARD_DEBUG": "0"}
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run([sys.executable, "-m", "edge.cli", "run", "--config", str(cfg), "--source", "demo",
                           "--max-frames", "30"], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT, env=env)


def assert_refused(p: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit code 4 at start-up, one error line, no traceback, the loop never started."""
    assert p.returncode == ModelError.exit_code, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr
    # The TFLite runtime itself may log "INFO: Created ... delegate" before failing.
    lines = [line for line in p.stderr.splitlines() if line.strip() and not line.startswith("INFO: ")]
    assert len(lines) == 1 and lines[0].startswith("doorguard: error: "), p.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    for never in ("gpio ready", "source demo open", "first frame processed"):
        assert never not in p.stdout, f"{never!r}: the loop started with a broken model"
    return lines[0]


def test_intact_models_run(tmp_path, models):
    p = run_doorguard(tmp_path, models)
    assert p.returncode == 0, p.stderr
    assert "first frame processed" in p.stdout


@pytest.mark.parametrize("name", [DET, CLF])
def test_truncated_model_hash_mismatch(tmp_path, models, name):
    f = models / f"{name}.tflite"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    assert_refused(run_doorguard(tmp_path, models), "does not match its manifest", f"{name}.tflite")


@pytest.mark.parametrize("keep", [0, 100, -16])
def test_truncated_model_with_matching_manifest(tmp_path, models, keep):
    """Truncated and re-hashed (a conversion or copy that broke before the manifest was written)."""
    f = models / f"{DET}.tflite"
    data = f.read_bytes()
    f.write_bytes(data[:keep] if keep >= 0 else data[:keep])
    save_manifest(models, DET, manifest(models, DET), rehash=True)
    assert_refused(run_doorguard(tmp_path, models), f"{DET}.tflite")


def test_bit_flip_caught_by_hash(tmp_path, models):
    f = models / f"{CLF}.tflite"
    b = bytearray(f.read_bytes())
    b[len(b) // 2] ^= 0x10  # one bit, in the weights: the interpreter alone would not notice
    f.write_bytes(bytes(b))
    assert_refused(run_doorguard(tmp_path, models), "does not match its manifest")


@pytest.mark.parametrize("seed", range(2))
def test_bit_flips_in_structure_with_matching_manifest(tmp_path, models, seed):
    """Flips in the flatbuffer's tables (first 2 kB) are refused by the interpreter, never a crash."""
    f = models / f"{DET}.tflite"
    b = bytearray(f.read_bytes())
    rng = random.Random(seed)
    for _ in range(4):
        b[rng.randrange(2000)] ^= 1 << rng.randrange(8)
    f.write_bytes(bytes(b))
    save_manifest(models, DET, manifest(models, DET), rehash=True)
    assert_refused(run_doorguard(tmp_path, models), "cannot load model")


def test_bit_flips_anywhere_never_crash(tmp_path, models):
    """Flips anywhere, manifest re-hashed: the process never dies on a signal or a traceback.
    (Flips inside weight values can load fine: that is what the manifest's sha256 is for.)"""
    outcomes = []
    data = (models / f"{DET}.tflite").read_bytes()
    for seed in range(100, 103):
        b = bytearray(data)
        rng = random.Random(seed)
        for _ in range(4):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        (models / f"{DET}.tflite").write_bytes(bytes(b))
        save_manifest(models, DET, manifest(models, DET), rehash=True)
        p = run_doorguard(tmp_path, models)
        assert p.returncode in (0, ModelError.exit_code), (seed, p.returncode, p.stderr[-1500:])
        if p.returncode:
            assert_refused(p)
        outcomes.append(p.returncode)
    assert ModelError.exit_code in outcomes


def test_manifest_hash_mismatch(tmp_path, models):
    m = manifest(models, DET)
    m["sha256"] = "ab" * 32
    save_manifest(models, DET, m)
    assert_refused(run_doorguard(tmp_path, models), "does not match its manifest", "abababababab")


def test_manifest_newer_format_version(tmp_path, models):
    m = manifest(models, CLF)
    m["format_version"] = 99
    m["new_field_from_the_future"] = {"x": 1}
    save_manifest(models, CLF, m)
    assert_refused(run_doorguard(tmp_path, models), "format version 99", "upgrade doorguard")


@pytest.mark.parametrize("text", ["{", "\xff\xfe garbage", '{"format_version": 1}'])
def test_manifest_unreadable_or_invalid(tmp_path, models, text):
    (models / f"{DET}.json").write_text(text, encoding="latin-1")
    assert_refused(run_doorguard(tmp_path, models), f"{DET}.json")


def test_detector_labels_do_not_match_heads(tmp_path, models):
    m = manifest(models, DET)
    m["labels"] = ["face", "hand"]
    save_manifest(models, DET, m)
    assert_refused(run_doorguard(tmp_path, models), "2 labels", "1] classes")


def test_classifier_labels_do_not_match_output(tmp_path, models):
    m = manifest(models, CLF)
    m["labels"] = ["mask", "no_mask"]
    save_manifest(models, CLF, m)
    assert_refused(run_doorguard(tmp_path, models), "2 labels but the output has 3 classes")


def test_classifier_manifest_shape_and_labels_agree_but_model_disagrees(tmp_path, models):
    """Labels and the manifest's output shape edited together (4 classes); the model has 3."""
    m = manifest(models, CLF)
    m["labels"] = ["mask", "no_mask", "mask_incorrect", "other"]
    m["outputs"][0]["shape"] = [1, 4]
    save_manifest(models, CLF, m)
    assert_refused(run_doorguard(tmp_path, models), "[1, 4]", "[1, 3]")


def test_detector_head_shape_disagrees_with_model(tmp_path, models):
    m = manifest(models, DET)
    m["labels"] = ["face", "hand"]
    for o in m["outputs"]:
        o["shape"][-1] = 3 * 7
    save_manifest(models, DET, m)
    assert_refused(run_doorguard(tmp_path, models), "shape")


def test_model_is_a_classifier_where_a_detector_belongs(tmp_path, models):
    shutil.copy(models / f"{CLF}.json", models / f"{DET}.json")
    m = manifest(models, DET)
    m["tflite"] = f"{CLF}.tflite"
    save_manifest(models, DET, m)
    assert_refused(run_doorguard(tmp_path, models), "a detector needs 'detect'")


def test_model_file_missing_or_a_directory(tmp_path, models):
    (models / f"{CLF}.tflite").unlink()
    assert_refused(run_doorguard(tmp_path, models), "is missing")
    (models / f"{CLF}.tflite").mkdir()
    assert_refused(run_doorguard(tmp_path, models), f"{CLF}.tflite")


# ---- a model that fails while running (in-process, interpreter stubs) -----------------------

class FlakyDetector(BlobDetectorInterpreter):
    """The blob detector stub whose invoke() raises on the invocations numbered in ``fail_on``."""

    def __init__(self, fail_on):
        super().__init__()
        self.fail_on = fail_on
        self.calls = 0

    def invoke(self):
        self.calls += 1
        if self.calls in self.fail_on:
            raise RuntimeError("XNNPACK: failed to allocate")
        super().invoke()


def _stub_runner(tmp_path, frames, fail_on):
    from edge.fakes import (ColourClassifierInterpreter, FakeActuators, FakeNotifier, ListSource,
                            write_classifier_manifest, write_detector_manifest)
    from edge import config, service

    det, clf = write_detector_manifest(tmp_path), write_classifier_manifest(tmp_path)
    p = tmp_path / "c.toml"
    # The motion gate off: these empty frames must each reach the (failing) detector. How a
    # failing detector is retried on every frame with the gate on: tests/test_motion.py.
    p.write_text(f'[models]\ndetector = "{det}"\nclassifier = "{clf}"\n'
                 f'[events]\nstate_dir = "{tmp_path / "state"}"\n[motion]\nenabled = false\n')
    act = FakeActuators()
    r = service.Runner(config.load(p), source=ListSource(frames), actuators=act, notifier=FakeNotifier(),
                       detector_interpreter=FlakyDetector(fail_on),
                       classifier_interpreter=ColourClassifierInterpreter())
    return r, act


def test_transient_model_failures_show_the_fault_and_the_run_goes_on(tmp_path):
    from edge.fakes import frame_with

    r, act = _stub_runner(tmp_path, [frame_with([])] * 60, fail_on=set(range(10, 30)))
    assert r.run() == 0
    assert r.frames == 40 and r.model_failures == 0
    faults = [c for c in act.calls if c[0] == "fault"]
    assert faults == [("fault", True), ("fault", False)]


def test_persistent_model_failure_exits_with_a_code_systemd_restarts(tmp_path):
    """A loaded, verified model failing at run time may be transient: exit code must not be
    in the unit's RestartPreventExitStatus= (2 3 4: bad usage/config/model file)."""
    import re

    from edge.fakes import frame_with
    from edge.errors import ModelRuntimeError

    r, act = _stub_runner(tmp_path, [frame_with([])] * 60, fail_on=set(range(5, 1000)))
    with pytest.raises(ModelError, match="failed on 25 frames") as info:
        r.run()
    assert isinstance(info.value, ModelRuntimeError)
    unit = (ROOT / "systemd" / "doorguard.service").read_text()
    prevent = {int(c) for c in re.search(r"^RestartPreventExitStatus=(.*)$", unit, re.M).group(1).split()}
    assert ModelError.exit_code in prevent, "a broken model file at start is not restarted"
    assert info.value.exit_code not in prevent and info.value.exit_code != 0
    assert act.names()[-1] == "close"


@pytest.mark.parametrize("name, edit, needle", [
    # The case: the demo's unmasked face became "compliant mask 0.89".
    (CLF, lambda m: m["input"]["quant"].update(scale=0), "input.quant.scale"),
    (CLF, lambda m: m["input"]["quant"].update(scale=m["input"]["quant"]["scale"] * 2), "input quantization"),
    (CLF, lambda m: m["outputs"][0]["quant"].update(zero_point=m["outputs"][0]["quant"]["zero_point"] + 1),
     "quantization"),
    (DET, lambda m: m["outputs"][1]["quant"].update(scale=m["outputs"][1]["quant"]["scale"] * 1.01),
     "quantization"),
    (DET, lambda m: m["input"].update(dtype="uint8"), "input is int8 in the model, but the manifest says uint8"),
])
def test_manifest_quant_disagreeing_with_the_model_is_refused(tmp_path, models, name, edit, needle):
    m = manifest(models, name)
    edit(m)
    save_manifest(models, name, m)
    assert_refused(run_doorguard(tmp_path, models), needle, f"{name}.json")
