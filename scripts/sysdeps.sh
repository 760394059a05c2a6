#!/usr/bin/env bash
# Installs the Debian packages doorguard needs, only those missing.
#   sysdeps.sh venv   python3-venv (to create .venv)
#   sysdeps.sh test   what the test suite drives for real (systemd-analyze, mosquitto, ...)
#   sysdeps.sh        both
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
command -v dpkg-query >/dev/null || exit 0
[[ ${#pkgs[@]} -eq 0 ]] && exit 0

if [[ $(id -u) -eq 0 ]]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "doorguard: please run: apt-get install -y ${pkgs[*]}" >&2; exit 0
fi
echo "doorguard: installing ${pkgs[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null || true
$sudo apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null || {
  echo "doorguard: apt-get install ${pkgs[*]} failed; the tests that need them will skip" >&2; }
