"""make test-arm's suites: ARM_SUITES parsing, the report's line per suite and profile, and
where scripts/arm64.sh keeps each suite (no emulation: the scripts are sourced for their
functions, or asked for what they print without root)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_ARM = ROOT / "scripts" / "test-arm.sh"
ARM64 = ROOT / "scripts" / "arm64.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def bash(script: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` in bash with ``args`` as $1...; the caller's ARM_* / DOORGUARD_ARM_* left out."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ARM_", "DOORGUARD_ARM_"))}
    return subprocess.run(["bash", "-c", script, "_", *args], capture_output=True, text=True,
                          env={**full, **env}, timeout=60)


def parse(spec: str) -> subprocess.CompletedProcess:
    return bash(f'source "{TEST_ARM}"; parse_suites "$1"', spec)


@pytest.mark.parametrize("spec, suites", [
    ("bookworm,trixie", ["bookworm", "trixie"]),
    ("trixie", ["trixie"]),
    ("bookworm", ["bookworm"]),
    ("trixie,bookworm", ["trixie", "bookworm"]),       # the order given
    (" trixie, bookworm trixie,", ["trixie", "bookworm"]),  # commas or spaces, each suite once
])
def test_arm_suites_are_parsed_in_order_once_each(spec, suites):
    r = parse(spec)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == suites


@pytest.mark.parametrize("spec, said", [
    ("bookworm,buster", "test-arm: unknown suite 'buster' in ARM_SUITES=bookworm,buster (known: bookworm trixie)"),
    ("", "test-arm: ARM_SUITES='' names no suite (known: bookworm trixie)"),
    (" , ", "test-arm: ARM_SUITES=' , ' names no suite (known: bookworm trixie)"),
])
def test_a_suite_arm64_cannot_make_is_one_line_and_status_2(spec, said):
    r = parse(spec)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [said] and r.stdout == ""


def test_default_is_both_suites_and_the_known_list_comes_from_arm64():
    # Both Raspberry Pi OS releases by default (issue 16): `.ci/run` from empty caches measured
    # 74 minutes under load, within CI's 90.
    r = bash(f'source "{TEST_ARM}"; echo "$DEFAULT_SUITES"; "{ARM64}" suites')
    assert r.returncode == 0, r.stderr
    default, known = r.stdout.splitlines()
    assert default == "bookworm,trixie"
    assert parse(default).stdout.split() == ["bookworm", "trixie"]
    assert known == "bookworm trixie"


def line(*entries: str, suite="trixie", profile="pi4", secs="312") -> str:
    r = bash(f'source "{TEST_ARM}"; profile_line "$@"', suite, profile, secs, *entries)
    assert r.returncode == 0, r.stderr
    return r.stdout.rstrip("\n")


def test_report_line_passed_names_every_check():
    got = line("ok|edge tests 157 passed", "ok|demo run: events same as x86 (3)",
               "ok|int8 outputs (ai-edge-litert) within policy: max 1 LSB, 1 of 72 tensors differ",
               "info|no tflite-runtime to compare (no build for this Python)")
    assert got == ("- trixie pi4: passed (312 s): edge tests 157 passed; demo run: events same as x86 (3); "
                   "int8 outputs (ai-edge-litert) within policy: max 1 LSB, 1 of 72 tensors differ; "
                   "no tflite-runtime to compare (no build for this Python)")


def test_report_line_failed_when_any_check_failed_and_keeps_the_failing_test_names():
    got = line("FAILED|edge tests FAILED (156 passed, 1 failed; failed: tests/test_events.py::test_x)",
               "ok|demo run: events same as x86 (3)", suite="bookworm", profile="pi5", secs="90")
    assert got.startswith("- bookworm pi5: FAILED (90 s): edge tests FAILED (156 passed, 1 failed; failed: "
                          "tests/test_events.py::test_x); demo run")


def test_report_line_info_alone_does_not_fail_but_no_check_at_all_does():
    assert line("ok|a", "info|b").startswith("- trixie pi4: passed ")
    assert line() == "- trixie pi4: FAILED (312 s): no check ran"


def suite_vars(suite: str | None, cache: Path) -> dict[str, str]:
    env = {"DOORGUARD_ARM_CACHE": str(cache)}
    if suite is not None:
        env["DOORGUARD_ARM_SUITE"] = suite
    r = bash(f'source "{ARM64}"; for v in SUITE CACHE ROOTFS PIP_CACHE ROOTFS_KEY TFLITE_RUNTIME; do '
             'echo "$v=${!v}"; done', **env)
    assert r.returncode == 0, r.stderr
    return dict(x.split("=", 1) for x in r.stdout.splitlines())


def test_bookworm_keeps_its_cache_and_trixie_sits_beside_it_sharing_the_pip_cache(tmp_path):
    cache = tmp_path / "arm64"
    default, book, trixie = suite_vars(None, cache), suite_vars("bookworm", cache), suite_vars("trixie", cache)
    assert default == book and book["SUITE"] == "bookworm"
    assert book["ROOTFS"] == f"{cache}/rootfs"                # where it was before there were two suites
    assert trixie["ROOTFS"] == f"{cache}-trixie/rootfs"
    assert book["PIP_CACHE"] == trixie["PIP_CACHE"] == f"{cache}-pip"
    assert book["ROOTFS_KEY"].startswith("bookworm ") and trixie["ROOTFS_KEY"].startswith("trixie ")
    # tflite-runtime 2.14, the comparison's fallback runtime, has no Python 3.13 wheels.
    assert book["TFLITE_RUNTIME"] == "tflite-runtime==2.14.0" and trixie["TFLITE_RUNTIME"] == ""


def test_an_unknown_suite_is_refused_in_one_line(tmp_path):
    r = bash(f'"{ARM64}" rootfs', DOORGUARD_ARM_SUITE="sid", DOORGUARD_ARM_CACHE=str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["arm64: unknown suite 'sid' (DOORGUARD_ARM_SUITE: bookworm trixie)"]


def test_stack_and_backends_read_what_setup_recorded(tmp_path):
    cache = tmp_path / "arm64"
    r = bash(f'"{ARM64}" backends', DOORGUARD_ARM_SUITE="trixie", DOORGUARD_ARM_CACHE=str(cache))
    assert r.returncode == 1 and "run '" in r.stderr and "setup' first" in r.stderr
    (tmp_path / "arm64-trixie").mkdir()
    (tmp_path / "arm64-trixie" / "stack.txt").write_text(
        "trixie: Python 3.13.5, numpy 2.2.4, OpenCV 4.14.0.94, ai-edge-litert 2.3.0\nlitert\n")
    env = {"DOORGUARD_ARM_SUITE": "trixie", "DOORGUARD_ARM_CACHE": str(cache)}
    assert bash(f'"{ARM64}" stack', **env).stdout == "trixie: Python 3.13.5, numpy 2.2.4, OpenCV 4.14.0.94, ai-edge-litert 2.3.0\n"
    assert bash(f'"{ARM64}" backends', **env).stdout == "litert\n"
