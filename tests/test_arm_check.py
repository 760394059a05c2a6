"""benchmarks/arm/arm_check.py, the judge of `make test-arm`: what counts as the same int8 output and events.

Runs on the host: the x86 side for real (shipped models through ai-edge-litert), the
"ARM" side as edited copies, so the policy is checked without an emulator.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from benchmarks.arm import arm_check


@pytest.fixture(scope="module")
def x86(tmp_path_factory):
    if not arm_check.shipped_manifests():
        pytest.skip("no shipped int8 models in models/")
    d = tmp_path_factory.mktemp("arm")
    assert arm_check.main(["inputs", "--out", str(d / "inputs.npz"), "--shared", str(d / "none")]) == 0
    assert arm_check.main(["run", "--inputs", str(d / "inputs.npz"), "--out", str(d / "x86.npz"),
                           "--label", "host", "--shared", str(d / "none")]) == 0
    return d


def edited(x86, name, change):
    """A copy of the x86 outputs with ``change(key, array) -> array`` applied."""
    ref = np.load(x86 / "x86.npz")
    data = {k: change(k, ref[k]) for k in ref.files}
    np.savez(x86 / name, **data)
    return x86 / name


def compare(x86, *preferred, fallback=()):
    args = ["compare", "--ref", str(x86 / "x86.npz"), "--preferred", *map(str, preferred)]
    if fallback:
        args += ["--fallback", *map(str, fallback)]
    return arm_check.main(args + ["--report", str(x86 / "report.md")])


def test_every_shipped_model_is_covered_with_real_and_random_inputs(x86):
    ref = np.load(x86 / "x86.npz")
    for man in arm_check.shipped_manifests():
        keys = [k for k in ref.files if k.startswith(f"out/{man.stem}/")]
        frames = {k.split("/")[2] for k in keys}
        assert {"demo_photo", "demo_masked", "random"} <= frames
        assert f"producer/{man.stem}/{keys[0].split('/', 3)[3]}" in ref.files


def test_identical_outputs_pass(x86):
    same = edited(x86, "same.npz", lambda k, v: v)
    assert compare(x86, same) == 0
    assert "bit-identical" in (x86 / "report.md").read_text()


def _classifier_key(x86):
    ref = np.load(x86 / "x86.npz")
    return next(k for k in ref.files if k.startswith("out/mask-classifier/demo_photo/"))


def test_one_lsb_on_the_builtin_softmax_with_the_same_decision_passes(x86):
    key = _classifier_key(x86)
    ref = np.load(x86 / "x86.npz")
    assert str(ref[f"producer/mask-classifier/{key.split('/', 3)[3]}"]) == "SOFTMAX"

    def nudge(k, v):
        if k != key:
            return v
        v = v.copy()
        i = int(np.argmin(v))  # the least likely class: the decision cannot change
        v.flat[i] = v.flat[i] + 1
        return v

    assert compare(x86, edited(x86, "softmax1.npz", nudge)) == 0
    assert "1 LSB, same argmax" in (x86 / "report.md").read_text()


def test_a_flipped_decision_or_two_lsb_on_softmax_fails(x86):
    key = _classifier_key(x86)

    def flip(k, v):
        return v[..., ::-1].copy() if k == key else v

    assert compare(x86, edited(x86, "flip.npz", flip)) == 1

    def two(k, v):
        if k != key:
            return v
        v = v.copy()
        i = int(np.argmin(v))
        v.flat[i] += 2
        return v

    assert compare(x86, edited(x86, "two.npz", two)) == 1


def test_one_lsb_anywhere_in_a_detector_head_fails(x86):
    key = next(k for k in np.load(x86 / "x86.npz").files if k.startswith("out/yoloface-500k-v2-facemask/"))

    def nudge(k, v):
        if k != key:
            return v
        v = v.copy()
        v.flat[0] = v.flat[0] + (1 if v.flat[0] < 127 else -1)
        return v

    assert compare(x86, edited(x86, "det1.npz", nudge)) == 1


def test_missing_outputs_fail_and_fallback_spread_is_only_reported(x86):
    ref = np.load(x86 / "x86.npz")
    dropped = x86 / "dropped.npz"
    np.savez(dropped, **{k: ref[k] for k in ref.files if not k.startswith("out/yoloface-500k-v2/")})
    assert compare(x86, dropped) == 1

    def noisy(k, v):
        return (v.astype(np.int16) // 2 * 2).astype(v.dtype) if k.startswith("out/") else v

    same = edited(x86, "same2.npz", lambda k, v: v)
    assert compare(x86, same, fallback=[edited(x86, "noisy.npz", noisy)]) == 0
    assert "fallback runtime" in (x86 / "report.md").read_text()


def _events(path, rows):
    path.mkdir()
    with sqlite3.connect(path / "events.sqlite3") as con:
        con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, track INT, verdict TEXT, label TEXT, "
                    "score REAL, x1 REAL, y1 REAL, x2 REAL, y2 REAL, alerted INT)")
        con.executemany("INSERT INTO events (track, verdict, label, score, x1, y1, x2, y2, alerted) "
                        "VALUES (?,?,?,?,?,?,?,?,?)", rows)


def test_events_must_match_in_order_label_and_box(tmp_path):
    ref = [(1, "violation", "no_mask", 0.98, 508, 210, 626, 337, 1), (2, "compliant", "mask", 1.0, 494, 206, 612, 344, 0)]
    _events(tmp_path / "x86", ref)
    _events(tmp_path / "near", [(*r[:5], r[5] + 1.5, *r[6:]) for r in ref])
    _events(tmp_path / "far", [(*r[:5], r[5] + 9, *r[6:]) for r in ref])
    _events(tmp_path / "other", [ref[0], (2, "violation", "no_mask", 0.9, 494, 206, 612, 344, 1)])
    _events(tmp_path / "short", ref[:1])
    _events(tmp_path / "empty", [])
    run = lambda *dirs: arm_check.main(["events", "--ref", *(str(tmp_path / d) for d in dirs)])  # noqa: E731
    assert run("x86", "near") == 0
    for bad in ("far", "other", "short"):
        assert run("x86", bad) == 1, bad
    assert run("empty", "empty") == 1  # a reference run with no events proves nothing


def test_junit_names_the_failing_tests(tmp_path):
    """What test-arm writes into build/arm/report.md for the edge tests under emulation."""
    import subprocess
    import sys

    (tmp_path / "test_demo.py").write_text(
        "import pytest\n"
        "def test_ok(): pass\n"
        "def test_fails(): assert 0\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_param(n): assert n == 1\n"
        "@pytest.mark.skip(reason='x')\n"
        "def test_skipped(): pass\n"
        "@pytest.fixture\n"
        "def broken(): raise RuntimeError('setup')\n"
        "def test_error(broken): pass\n"
        "class TestGroup:\n"
        "    def test_method(self): assert 0\n")
    xml = tmp_path / "out.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                    "-o", "junit_family=xunit1", "test_demo.py"], cwd=tmp_path, capture_output=True, timeout=120)
    counts, bad = arm_check.junit_summary(xml)
    assert counts == {"passed": 2, "failed": 3, "errors": 1, "skipped": 1}
    assert bad == ["test_demo.py::test_fails", "test_demo.py::test_param[2]", "test_demo.py::test_error (error)",
                   "test_demo.py::TestGroup::test_method"]


def test_junit_unreadable_file_is_one_line(tmp_path, capsys):
    (tmp_path / "bad.xml").write_text("<testsuites><testcase")
    assert arm_check.main(["junit", str(tmp_path / "bad.xml")]) == 2
    assert arm_check.main(["junit", str(tmp_path / "missing.xml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("arm_check: cannot read the test results ") for line in err)


def test_runs_by_path_from_the_checkout_as_test_arm_runs_it(tmp_path):
    """scripts/test-arm.sh runs it by path from the repository root; in the guest with no PYTHONPATH."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "benchmarks/arm/arm_check.py", "junit", str(tmp_path / "missing.xml")],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("arm_check: cannot read the test results ") and r.stderr.count("\n") == 1
