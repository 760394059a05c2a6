"""Both Raspberry Pi OS releases: the numpy/OpenCV combination pyproject.toml picks per Python,
systemd/install.sh's line per release, and `doorguard doctor`'s OS check (faked hosts)."""

from __future__ import annotations

import os
import subprocess
import tomllib
import types
from pathlib import Path

import pytest

from edge.doctor import FAIL, OK, WARN, Doctor, Host

ROOT = Path(__file__).resolve().parents[1]

packaging = pytest.importorskip("packaging.requirements")


def requirements(machine: str, python: str) -> dict[str, list[str]]:
    """pyproject's runtime requirements that apply on (machine, python): name -> specifiers."""
    from packaging.requirements import Requirement

    env = {"platform_machine": machine, "python_version": python, "python_full_version": python + ".0",
           "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython"}
    out: dict[str, list[str]] = {}
    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        r = Requirement(dep)
        if r.marker is None or r.marker.evaluate(env):
            out.setdefault(r.name, []).append(str(r.specifier))
    return out


def allows(specs: list[str], version: str) -> bool:
    from packaging.specifiers import SpecifierSet

    return all(version in SpecifierSet(s) for s in specs)


def test_bookworm_arm_keeps_opencv_below_4_12_for_numpy_1_24():
    req = requirements("aarch64", "3.11")
    assert len(req["opencv-python-headless"]) == 1
    assert allows(req["opencv-python-headless"], "4.11.0.86") and not allows(req["opencv-python-headless"], "4.12.0.88")
    assert allows(req["numpy"], "1.24.2")


@pytest.mark.parametrize("machine", ["aarch64", "armv7l"])
def test_trixie_arm_takes_opencv_4_12_or_later_with_numpy_2(machine):
    req = requirements(machine, "3.13")
    assert len(req["opencv-python-headless"]) == 1
    assert allows(req["opencv-python-headless"], "4.14.0.94") and not allows(req["opencv-python-headless"], "4.11.0.86")
    assert allows(req["numpy"], "2.2.4") and not allows(req["numpy"], "1.26.4")


@pytest.mark.parametrize("python", ["3.11", "3.13"])
def test_x86_keeps_any_opencv_4(python):
    req = requirements("x86_64", python)
    assert req["opencv-python-headless"] == [">=4.8,<5"] or sorted(req["opencv-python-headless"][0].split(",")) == ["<5", ">=4.8"]


def install_dry_run(tmp_path: Path, os_release: str | None) -> list[str]:
    env = {**os.environ, "DOORGUARD_OS_RELEASE": str(tmp_path / "missing")}
    if os_release is not None:
        (tmp_path / "os-release").write_text(os_release)
        env["DOORGUARD_OS_RELEASE"] = str(tmp_path / "os-release")
    r = subprocess.run([str(ROOT / "systemd" / "install.sh"), "--dry-run"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.splitlines()


BOOKWORM = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=bookworm\nID=debian\n'
TRIXIE = 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"\nNAME="Debian GNU/Linux"\nVERSION_CODENAME=trixie\nID=debian\n'
NOBLE = 'PRETTY_NAME="Ubuntu 24.04.1 LTS"\nVERSION_CODENAME=noble\nID=ubuntu\n'


@pytest.mark.parametrize("text, said", [
    (BOOKWORM, "doorguard install: Debian GNU/Linux 12 (bookworm): Bookworm stack (Python 3.11, apt's numpy 1.24, "
               "OpenCV below 4.12)"),
    (TRIXIE, "doorguard install: Debian GNU/Linux 13 (trixie): Trixie stack (Python 3.13, apt's numpy 2.x, "
             "OpenCV 4.12 or later)"),
])
def test_install_says_which_release_stack_it_installs(tmp_path, text, said):
    lines = install_dry_run(tmp_path, text)
    assert lines[0] == said
    assert any("-m venv --system-site-packages /opt/doorguard/venv" in x for x in lines)
    # This checkout's models/ as shipped: measurements beside the manifests are skipped, not refused.
    if (ROOT / "models" / "eval.json").is_file():
        assert 'doorguard install: skipping models/eval.json: not a model manifest (no "tflite")' in lines


@pytest.mark.parametrize("text, name", [(NOBLE, "Ubuntu 24.04.1 LTS"), (None, "unknown (no ")])
def test_install_on_neither_release_says_so_in_one_line_and_goes_on(tmp_path, text, name):
    lines = install_dry_run(tmp_path, text)
    warned = [x for x in lines if "is neither Raspberry Pi OS Bookworm nor Trixie" in x]
    assert len(warned) == 1 and warned[0].startswith(f"doorguard install: WARNING: {name}")
    assert any(x.startswith("+ ") and "pip install" in x for x in lines)


PI5 = b"Raspberry Pi 5 Model B Rev 1.0\x00"


def os_check(tmp_path: Path, os_release: str | None, python=(3, 11), numpy="1.24.2", cv2: str | Exception = "4.11.0",
             pi: bool = True):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    if os_release is not None:
        (root / "etc/os-release").write_text(os_release)
    if pi:
        (root / "proc/device-tree").mkdir(parents=True)
        (root / "proc/device-tree/model").write_bytes(PI5)

    def import_module(name):
        if name == "numpy":
            return types.SimpleNamespace(__version__=numpy)
        if name == "cv2":
            if isinstance(cv2, Exception):
                raise cv2
            return types.SimpleNamespace(__version__=cv2)
        raise ImportError(name)

    host = Host(root=root, run=lambda cmd: (0, ""), identity=lambda: ("doorguard", {"doorguard"}),
                import_module=import_module, env={}, python=python)
    (check,) = Doctor(None, host).check_os()
    assert check.name == "os"
    return check.status, check.message


def test_doctor_bookworm_and_trixie_with_their_own_stacks_are_ok(tmp_path):
    status, msg = os_check(tmp_path / "b", BOOKWORM)
    assert (status, msg) == (OK, "Debian GNU/Linux 12 (bookworm): Python 3.11, numpy 1.24.2, OpenCV 4.11.0, the "
                                 "combination doorguard is tested with on Bookworm (Debian 12).")
    status, msg = os_check(tmp_path / "t", TRIXIE, python=(3, 13), numpy="2.2.4", cv2="4.14.0")
    assert status == OK and "Python 3.13, numpy 2.2.4, OpenCV 4.14.0" in msg and "Trixie (Debian 13)" in msg


def test_doctor_names_a_stack_that_does_not_fit_the_release(tmp_path):
    status, msg = os_check(tmp_path / "a", TRIXIE, python=(3, 13), numpy="1.26.4", cv2="4.11.0")
    assert status == WARN and "numpy 1.26.4 is not apt's 2.x" in msg and "install.sh" in msg
    status, msg = os_check(tmp_path / "b", BOOKWORM, numpy="1.24.2", cv2="4.12.0")
    assert status == WARN and "OpenCV 4.12.0 needs numpy 2 but numpy 1.24.2 is here" in msg
    status, msg = os_check(tmp_path / "c", BOOKWORM, python=(3, 13))
    assert status == WARN and "Bookworm (Debian 12) has Python 3.11 but the venv runs 3.13" in msg


def test_doctor_opencv_that_cannot_import_is_a_fail_with_the_fix(tmp_path):
    err = ImportError("numpy.core.multiarray failed to import")
    status, msg = os_check(tmp_path, BOOKWORM, cv2=err)
    assert status == FAIL
    assert msg.startswith("Debian GNU/Linux 12 (bookworm), Python 3.11: OpenCV cannot be imported (ImportError: "
                          "numpy.core.multiarray failed to import): run `sudo ./systemd/install.sh` again")


def test_doctor_neither_release_is_one_clear_line(tmp_path):
    status, msg = os_check(tmp_path / "pi", NOBLE)
    assert status == WARN
    assert msg.startswith("Ubuntu 24.04.1 LTS (Python 3.11, numpy 1.24.2, OpenCV 4.11.0) is neither Raspberry Pi "
                          "OS Bookworm (Debian 12) or Raspberry Pi OS Trixie (Debian 13)")
    # A workstation need not be either: the same words, not a warning.
    status, msg2 = os_check(tmp_path / "ws", NOBLE, pi=False)
    assert status == OK and msg2 == msg


def test_doctor_workstation_on_a_known_release_does_not_judge_pips_numpy(tmp_path):
    status, msg = os_check(tmp_path, BOOKWORM, numpy="2.4.6", cv2="4.14.0", pi=False)
    assert status == OK and "not a Raspberry Pi" in msg


def test_doctor_without_os_release_says_it_did_not_check(tmp_path):
    status, msg = os_check(tmp_path, None)
    assert (status, msg) == (OK, "release not checked: no /etc/os-release here; Python 3.11.")
