"""scripts/arm64.sh on a machine without binfmt: which path it takes, in which order.

A fresh machine has binfmt_misc unmounted, so binfmt-support registered QEMU's
qemu-aarch64 handler in its database but could not enable it in the kernel; and
debootstrap's second stage runs arm64 programs. arm64.sh must mount binfmt_misc and
enable the handler *before* debootstrap (issue 16: it did so only afterwards), and
where binfmt cannot be had, reuse an existing rootfs in direct mode
(``qemu-aarch64-static -L``) or fail with one line saying why.

Two kinds of test:

* The decision with fakes: the script is sourced (functions only) with fake
  ``mount``, ``update-binfmts``, ``debootstrap``, ``chroot`` and
  ``qemu-aarch64-static`` first on PATH, and BINFMT_DIR pointing at a scratch folder
  that the fake mount and update-binfmts fill as the kernel would. Runs anywhere bash does.
* The real mount, as root: in a private mount namespace where binfmt_misc is not
  mounted (a tmpfs hides it there, whatever the host has), the script's own
  ``mount -t binfmt_misc`` must make it appear before debootstrap is called; nothing
  outside the namespace changes (update-binfmts and debootstrap are fakes, so no handler is
  registered in the kernel and nothing is downloaded).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARM64 = ROOT / "scripts" / "arm64.sh"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

# Each fake logs one line to $FAKE_LOG. The "kernel" state is files in $FAKE_BINFMT, as in
# /proc/sys/fs/binfmt_misc: `register` once mounted, `qemu-aarch64` (first line "enabled")
# once the handler is enabled. FAKE_* variables choose how each fake behaves.
FAKES = {
    "mount": r"""
if [[ $1 == -t && $2 == binfmt_misc ]]; then
  echo "mount binfmt_misc $4" >> "$FAKE_LOG"
  [[ ${FAKE_MOUNT:-ok} == ok ]] || { echo "mount: permission denied" >&2; exit 32; }
  touch "$4/register" "$4/status"; exit 0
fi
exec /bin/mount "$@"
""",
    "update-binfmts": r"""
echo "update-binfmts $*" >> "$FAKE_LOG"
[[ ${FAKE_UPDATE_BINFMTS:-ok} == ok && -e $FAKE_BINFMT/register ]] || exit 2
printf 'enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\n' > "$FAKE_BINFMT/qemu-aarch64"
""",
    "debootstrap": r"""
echo "debootstrap $* handler=$(head -n1 "$FAKE_BINFMT/qemu-aarch64" 2>/dev/null || echo none)" >> "$FAKE_LOG"
# Its second stage runs the target's arm64 programs: only works with the handler enabled.
[[ $(head -n1 "$FAKE_BINFMT/qemu-aarch64" 2>/dev/null) == enabled ]] || {
  echo "W: Failure trying to run: chroot \"${@: -2:1}\" /bin/true"; exit 1; }
t=${@: -2:1}
mkdir -p "$t/usr/bin" "$t/bin" "$t/proc"
printf '#!/bin/sh\n' > "$t/usr/bin/python3"; chmod +x "$t/usr/bin/python3"; : > "$t/bin/true"
""",
    "chroot": r"""
echo "chroot $*" >> "$FAKE_LOG"
[[ $(head -n1 "$FAKE_BINFMT/qemu-aarch64" 2>/dev/null) == enabled ]]
""",
    "qemu-aarch64-static": r"""
echo "qemu-aarch64-static $*" >> "$FAKE_LOG"
[[ ${FAKE_QEMU:-ok} == ok ]]
""",
}


@pytest.fixture
def fakes(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        f = bin_dir / name
        f.write_text("#!/usr/bin/env bash\nset -u\n" + body)
        f.chmod(0o755)
    binfmt = tmp_path / "binfmt_misc"
    binfmt.mkdir()
    return tmp_path, bin_dir, binfmt


def run_script(tmp: Path, bin_dir: Path, binfmt: Path, steps: str, **fake_env: str):
    """Source arm64.sh (its functions, not main) and run ``steps`` with the fakes first on PATH."""
    cache = tmp / "cache"
    script = (f'source "{ARM64}"\n'
              f'BINFMT_DIR="{binfmt}" CACHE="{cache}" ROOTFS="{cache}/rootfs"\n'
              f"{steps}\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp / "log"),
           "FAKE_BINFMT": str(binfmt), **fake_env}
    env.pop("DOORGUARD_ARM_MODE", None)
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=60)
    log = (tmp / "log").read_text().splitlines() if (tmp / "log").exists() else []
    return r, log


def cached_rootfs(tmp: Path) -> None:
    """A rootfs as an earlier setup (made where binfmt worked) leaves it."""
    rootfs = tmp / "cache" / "rootfs"
    for d in ("usr/bin", "bin", "proc"):
        (rootfs / d).mkdir(parents=True)
    (rootfs / "usr/bin/python3").write_text("#!/bin/sh\n")
    (rootfs / "usr/bin/python3").chmod(0o755)
    (rootfs / "bin/true").write_text("")
    key = subprocess.run(["bash", "-c", f'source "{ARM64}"; echo "$ROOTFS_KEY"'], capture_output=True,
                         text=True, check=True).stdout
    (tmp / "cache" / "rootfs.key").write_text(key)


def test_fresh_machine_mounts_binfmt_and_enables_the_handler_before_debootstrap(fakes):
    tmp, bin_dir, binfmt = fakes
    r, log = run_script(tmp, bin_dir, binfmt, 'make_rootfs; detect_mode; echo "MODE=$MODE"')
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in log] == ["mount", "update-binfmts", "debootstrap", "chroot"], log
    assert log[0] == f"mount binfmt_misc {binfmt}"
    assert log[1] == "update-binfmts --enable qemu-aarch64"
    # No --foreign: with the handler enabled, debootstrap runs its second stage itself.
    assert "--foreign" not in log[2] and log[2].endswith("handler=enabled"), log[2]
    assert "MODE=chroot" in r.stdout
    said = [line for line in r.stderr.splitlines() if "binfmt_misc" in line]
    assert said == [f"arm64: mounted binfmt_misc on {binfmt} and enabled its qemu-aarch64 handler "
                    "(update-binfmts --enable qemu-aarch64): debootstrap and chroot run arm64 programs "
                    "through it"], r.stderr
    assert (tmp / "cache" / "rootfs" / "usr/bin/python3").is_file()


def test_binfmt_already_working_is_left_alone_and_not_mentioned(fakes):
    tmp, bin_dir, binfmt = fakes
    (binfmt / "register").touch()
    (binfmt / "qemu-aarch64").write_text("enabled\n")
    r, log = run_script(tmp, bin_dir, binfmt, 'make_rootfs; detect_mode; echo "MODE=$MODE"')
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in log] == ["debootstrap", "chroot"], log
    assert "MODE=chroot" in r.stdout and "arm64: mounted" not in r.stderr and "enabled its" not in r.stderr


def test_mounted_but_disabled_handler_is_enabled(fakes):
    tmp, bin_dir, binfmt = fakes
    (binfmt / "register").touch()
    (binfmt / "qemu-aarch64").write_text("disabled\n")
    r, log = run_script(tmp, bin_dir, binfmt, "make_rootfs")
    assert r.returncode == 0, r.stderr
    assert [line.split()[0] for line in log] == ["update-binfmts", "debootstrap"], log
    assert "arm64: enabled its qemu-aarch64 handler" in r.stderr


@pytest.mark.parametrize("refused", ["mount", "update-binfmts"])
def test_no_binfmt_and_no_rootfs_fails_with_one_line_before_debootstrap(fakes, refused):
    tmp, bin_dir, binfmt = fakes
    env = {"FAKE_MOUNT": "refused"} if refused == "mount" else {"FAKE_UPDATE_BINFMTS": "fails"}
    r, log = run_script(tmp, bin_dir, binfmt, "make_rootfs", **env)
    assert r.returncode == 1
    assert not any(line.startswith("debootstrap") for line in log), log
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("arm64: cannot make the arm64 rootfs here: "), r.stderr
    why = ("binfmt_misc is not mounted and 'mount -t binfmt_misc binfmt_misc" if refused == "mount" else
           f"mounted binfmt_misc on {binfmt}, then 'update-binfmts --enable qemu-aarch64' did not enable")
    assert why in lines[0] and "Traceback" not in r.stderr


def test_no_binfmt_with_a_cached_rootfs_runs_guests_directly(fakes):
    tmp, bin_dir, binfmt = fakes
    cached_rootfs(tmp)
    r, log = run_script(tmp, bin_dir, binfmt, 'make_rootfs; detect_mode; echo "MODE=$MODE"', FAKE_MOUNT="refused")
    assert r.returncode == 0, r.stderr
    rootfs = tmp / "cache" / "rootfs"
    assert log == [f"mount binfmt_misc {binfmt}", f"qemu-aarch64-static -L {rootfs} {rootfs}/bin/true"], log
    assert "MODE=direct" in r.stdout
    assert "running guests directly under qemu-aarch64-static -L" in r.stderr
    assert "'mount -t binfmt_misc binfmt_misc" in r.stderr  # it says why


def test_no_way_to_run_arm64_programs_is_one_line(fakes):
    tmp, bin_dir, binfmt = fakes
    cached_rootfs(tmp)
    r, _ = run_script(tmp, bin_dir, binfmt, "detect_mode", FAKE_MOUNT="refused", FAKE_QEMU="fails")
    assert r.returncode == 1
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("arm64: cannot run arm64 programs: "), r.stderr


def _namespace_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a private mount namespace and mount -t binfmt_misc)"
    if shutil.which("unshare") is None:
        return "needs unshare (util-linux)"
    if "binfmt_misc" not in Path("/proc/filesystems").read_text():
        return "this kernel has no binfmt_misc"
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot make a private mount namespace here: {r.stderr.strip()}"
    return None


def _binfmt_mounts() -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if "binfmt_misc" in line]


NAMESPACE_SKIP = _namespace_skip_reason()


@pytest.mark.skipif(NAMESPACE_SKIP is not None, reason=NAMESPACE_SKIP or "")
def test_real_mount_in_a_namespace_without_binfmt_happens_before_debootstrap(fakes):
    """The script's own mount, for real, where binfmt_misc is not mounted."""
    tmp, bin_dir, _ = fakes
    (bin_dir / "mount").unlink()  # the real mount this time
    before = _binfmt_mounts()
    cache = tmp / "cache"
    probe = tmp / "probe"
    # In the namespace: hide whatever the host has on /proc/sys/fs/binfmt_misc (an empty tmpfs:
    # "not mounted"), then the steps of setup that come before and include debootstrap. The
    # fake debootstrap records whether binfmt_misc was mounted (its `register` there) when called.
    (bin_dir / "debootstrap").write_text(
        "#!/usr/bin/env bash\n"
        f'if [[ -e /proc/sys/fs/binfmt_misc/register ]]; then echo mounted > "{probe}"; '
        f'else echo not-mounted > "{probe}"; fi\n'
        'echo "debootstrap $*" >> "$FAKE_LOG"; exit 1\n')
    script = (
        "set -e\n"
        "mount -t tmpfs -o size=1k doorguard-test-no-binfmt /proc/sys/fs/binfmt_misc\n"
        "test ! -e /proc/sys/fs/binfmt_misc/register\n"
        f'source "{ARM64}"\n'
        f'CACHE="{cache}" ROOTFS="{cache}/rootfs"\n'
        "make_rootfs || true\n")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_LOG": str(tmp / "log"),
           "FAKE_BINFMT": "/proc/sys/fs/binfmt_misc", "FAKE_UPDATE_BINFMTS": "fails"}
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                       capture_output=True, text=True, env=env, timeout=120)
    assert _binfmt_mounts() == before, "the namespace's mounts leaked out"
    log = (tmp / "log").read_text().splitlines() if (tmp / "log").exists() else []
    if any(line.startswith("debootstrap") for line in log):
        # The kernel already has the handler enabled (this machine ran make test-arm before).
        assert "arm64: mounted binfmt_misc on /proc/sys/fs/binfmt_misc: " in r.stderr, r.stderr
        assert probe.read_text().strip() == "mounted", "debootstrap ran before binfmt_misc was mounted"
    else:
        # The fake update-binfmts enables nothing, so on a kernel without the handler setup stops,
        # before debootstrap, with its one line.
        assert ("arm64: cannot make the arm64 rootfs here: debootstrap runs arm64 programs, which needs "
                "binfmt_misc with QEMU's qemu-aarch64 handler enabled: mounted binfmt_misc on "
                "/proc/sys/fs/binfmt_misc, then ") in r.stderr, r.stderr
        assert "update-binfmts --enable qemu-aarch64" in log, log
