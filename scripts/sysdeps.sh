#!/usr/bin/env bash
# Installs the Debian packages doorguard needs, only those missing.
#   sysdeps.sh venv   python3-venv (to create .venv)
#   sysdeps.sh test   what the test suite drives for real (systemd-analyze, mosquitto, ...)
#   sysdeps.sh arm    the emulated Pi of make test-arm / bench-arm (QEMU user mode, binfmt-support, debootstrap)
#   sysdeps.sh        all three
# Without root or sudo it prints the apt-get line to run and carries on.
set -euo pipefail
what=${1:-all}
pkgs=()
need() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || pkgs+=("$1"); }

if [[ $what == venv || $what == all ]]; then
  python3 -c 'import ensurepip, venv' 2>/dev/null || need python3-venv
fi
if [[ $what == test || $what == all ]]; then
  need systemd        # systemd-analyze verify/security for the unit tests
  need shellcheck     # install/deploy scripts
  need mosquitto      # real MQTT broker for tests/test_mqtt.py (started on a loopback port)
  need chromium       # headless end-to-end test of the web page (tests/test_web.py)
fi
if [[ $what == arm || $what == all ]]; then
  need qemu-user-static  # arm64 programs in a chroot, through binfmt_misc (or directly: qemu-aarch64-static -L)
  need qemu-user         # the dynamic qemu-aarch64, the only one that loads TCG plugins (make bench-arm)
  need binfmt-support    # update-binfmts: hands qemu-aarch64's handler to the kernel
  need debootstrap       # the arm64 Raspberry Pi OS-like rootfs
fi
command -v dpkg-query >/dev/null || exit 0
[[ ${#pkgs[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "doorguard: please run: apt-get install -y ${pkgs[*]}" >&2; exit 0
fi
echo "doorguard: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o Acquire::Retries=3 update -qq >/dev/null || true
$sudo apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || {
  echo "doorguard: apt-get install ${pkgs[*]} failed; the tests that need them will skip" >&2; }
