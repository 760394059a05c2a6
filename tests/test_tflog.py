"""Workstation commands: TensorFlow's own logging silenced (--log-level DEBUG brings it back),
unreadable files summarized in one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from convert.tflite import tflog
from convert.data.images import load_images

ROOT = Path(__file__).resolve().parent.parent

# Lines a workstation command printed before (issue 24 item 4), and lines that must pass.
TF_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
    b"I0000 00:00:1796165539.939407    6273 port.cc:153] oneDNN custom operations are on. You may see\n",
    b"I0000 00:00:1796165539.942333    6273 cudart_stub.cc:31] Could not find cuda drivers on your machine\n",
    b"E0000 00:00:1796165785.444098    8288 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n",
    b"W0000 00:00:1796165815.416354    8288 tf_tfl_flatbuffer_helpers.cc:364] Ignored output_format.\n",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.\n",
    b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n",
    b"fully_quantize: 0, inference_type: 6, input_inference_type: INT8, output_inference_type: INT8\n",
]
KEPT = [
    b"doorguard: error: only 0 readable calibration images\n",
    b"\rcalibrating:  50%|#####     | 10/20 [00:01<00:01, 9.80img/s]",
    b"2026-12-01 22:56:25,948 WARNING convert.train.mobilenet: no --backbone-weights\n",
    b"I0000 is not how a sentence of ours starts, but this one is not absl's format\n",
]


def test_tensorflow_lines_are_recognized():
    assert all(tflog.is_tensorflow_line(line) for line in TF_LINES)
    assert not any(tflog.is_tensorflow_line(line) for line in KEPT)


def test_quiet_filters_descriptor_2_and_passes_the_rest(capfd):
    with tflog.quiet():
        for line in TF_LINES + KEPT:
            os.write(2, line)
        print("stdout is untouched", flush=True)
    err = capfd.readouterr()
    assert err.err.encode() == b"".join(KEPT)
    assert "stdout is untouched" in err.out
    os.write(2, TF_LINES[1])  # restored afterwards: nothing filtered any more
    assert "oneDNN" in capfd.readouterr().err


def test_quiet_verbose_leaves_everything(capfd):
    with tflog.quiet(verbose=True):
        os.write(2, TF_LINES[1])
    assert "oneDNN" in capfd.readouterr().err


def test_unreadable_files_are_one_summary_line(tmp_path, caplog):
    for i in range(30):
        (tmp_path / f"{i:02d}.jpg").write_bytes(b"not an image")
    caplog.set_level(logging.DEBUG, logger="convert.data.images")
    images, _, skipped = load_images(sorted(tmp_path.iterdir()), desc="reading calibration images")
    assert images == [] and skipped == 30
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].getMessage().startswith("reading calibration images: skipped 30 unreadable file(s): "
                                               "cannot decode image ")
    assert "and 29 more (--log-level DEBUG lists them)" in warnings[0].getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 30


@pytest.mark.slow
def test_convert_keras_output_is_the_lines_that_matter(tmp_path):
    """A fresh process (TensorFlow prints on import): without DEBUG no TensorFlow line, one summary
    of the 30 broken files and the error; with --log-level DEBUG the details come back."""
    import keras

    inp = keras.Input((32, 32, 3))
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(inp))).save(
        tmp_path / "m.keras")
    calib = tmp_path / "calib"
    calib.mkdir()
    for i in range(30):
        (calib / f"{i:02d}.jpg").write_bytes(b"not an image")
    argv = [str(ROOT / ".venv" / "bin" / "doorguard"), "convert", "keras", "--model", str(tmp_path / "m.keras"),
            "--labels", "a,b", "--calib", str(calib), "--out", str(tmp_path / "out" / "m")]
    if not Path(argv[0]).is_file():
        argv[0:1] = [sys.executable, "-m", "edge.cli"]
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "DOORGUARD_LOG_LEVEL")}

    quiet = subprocess.run(argv, capture_output=True, env=env, cwd=ROOT, timeout=300)
    assert quiet.returncode == 8
    out = quiet.stdout.decode() + quiet.stderr.decode()
    lines = [ln for ln in out.replace("\r", "\n").splitlines() if ln.strip()]
    assert not [ln for ln in lines if tflog.is_tensorflow_line(ln.encode() + b"\n")], out
    assert [ln for ln in lines if "unreadable" in ln] == [
        next(ln for ln in lines if "skipped 30 unreadable file(s)" in ln)]
    assert quiet.stderr.decode().strip().splitlines()[-1].startswith(
        "doorguard: error: only 0 readable calibration images")
    assert "Traceback" not in out and len([ln for ln in lines if "WARNING" in ln]) == 2  # summary + preprocessing

    cmd = argv.index("convert")
    loud = subprocess.run(argv[:cmd] + ["--log-level", "DEBUG"] + argv[cmd:], capture_output=True, env=env,
                          cwd=ROOT, timeout=300)
    assert loud.returncode == 8
    assert loud.stdout.decode().count("skipping cannot decode image") == 30
