#!/usr/bin/env bash
# Install doorguard as a systemd service on Raspberry Pi OS Bookworm or Trixie (or Debian 12/13).
# Idempotent: run it again after an update; /etc/doorguard/config.toml is kept.
#
#   sudo ./systemd/install.sh [--dry-run] [--no-start] [--root DIR]
#
#   --dry-run   print every step and command, change nothing
#   --no-start  install and enable, but do not (re)start the service
#   --root DIR  install the files into DIR (DESTDIR-style scratch root, also DESTDIR=DIR);
#               apt, users, venv/pip and systemctl are then listed, not run
#
# Environment: PREFIX (default /opt/doorguard), DOORGUARD_PYTHON (default python3),
# DOORGUARD_SRC (project to install, default this checkout), DOORGUARD_OS_RELEASE (the
# os-release file that names the release, default /etc/os-release).
set -euo pipefail

SRC=${DOORGUARD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
PREFIX=${PREFIX:-/opt/doorguard}
DESTDIR=${DESTDIR:-}
PYTHON=${DOORGUARD_PYTHON:-python3}
DRY_RUN=0
START=1
SERVICE_USER=doorguard
GROUPS_NEEDED=(video gpio audio)
# picamera2/libcamera and lgpio only come from apt, on both releases; the venv sees them via
# --system-site-packages. numpy comes from apt too, and the venv is pinned to it: 1.24 on
# Bookworm (Python 3.11), 2.x on Trixie (Python 3.13). OpenCV >= 4.12 needs numpy 2, so
# pyproject.toml's markers on python_version pick OpenCV below 4.12 on Bookworm's ARM and 4.12
# or later on Trixie's.
APT_PACKAGES=(python3-venv python3-pip python3-numpy alsa-utils)
# Only in the Raspberry Pi OS archive: skipped with a warning elsewhere. vcgencmd (doctor's
# throttling check) is added per release below.
APT_PI_PACKAGES=(python3-picamera2 python3-lgpio)
OS_RELEASE=${DOORGUARD_OS_RELEASE:-/etc/os-release}
SCRIPT=install.sh
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --no-start) START=0; shift ;;
    *) common_option "$@"; shift "$SHIFT" ;;
  esac
done
if [[ -n $DESTDIR ]]; then
  mkdir -p "$DESTDIR"
  DESTDIR=$(cd "$DESTDIR" && pwd)
fi
need_root "$@"

# 0. The release: decides nothing silently, says which stack the venv will get.
release_field() { if [[ -r $OS_RELEASE ]]; then sed -n "s/^$1=//p" "$OS_RELEASE" | head -n 1 | tr -d "\"'"; fi; }
codename=$(release_field VERSION_CODENAME)
os_name=$(release_field PRETTY_NAME)
os_name=${os_name:-${codename:-unknown (no $OS_RELEASE)}}
case $codename in
  bookworm)
    say "$os_name: Bookworm stack (Python 3.11, apt's numpy 1.24, OpenCV below 4.12)"
    # vcgencmd: libraspberrypi-bin on Bookworm (a transitional package for raspi-utils on newer images).
    VCGENCMD_PACKAGES=(libraspberrypi-bin) ;;
  trixie)
    say "$os_name: Trixie stack (Python 3.13, apt's numpy 2.x, OpenCV 4.12 or later)"
    VCGENCMD_PACKAGES=(raspi-utils-core libraspberrypi-bin) ;;
  *)
    say "WARNING: $os_name is neither Raspberry Pi OS Bookworm nor Trixie (Debian 12 or 13), the releases" \
        "doorguard is installed on and tested for: going on with this release's python3 and numpy and the" \
        "OpenCV pip picks for them (OpenCV 4.12 and later need numpy 2)"
    VCGENCMD_PACKAGES=(libraspberrypi-bin) ;;
esac

D=$DESTDIR
UNIT_DIR=/etc/systemd/system
CONF_DIR=/etc/doorguard
STATE_DIR=/var/lib/doorguard
VENV=$PREFIX/venv

# 1. Debian packages (only the missing ones; not on a scratch root).
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for p in "${APT_PACKAGES[@]}"; do
  installed "$p" || missing+=("$p")
done
if grep -rqs "archive.raspberrypi" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  for p in "${APT_PI_PACKAGES[@]}"; do
    installed "$p" || missing+=("$p")
  done
  # The first vcgencmd package apt knows (package names moved between releases).
  if ! command -v vcgencmd >/dev/null; then
    pick=${VCGENCMD_PACKAGES[0]}
    for p in "${VCGENCMD_PACKAGES[@]}"; do
      if apt-cache show "$p" >/dev/null 2>&1; then pick=$p; break; fi
    done
    installed "$pick" || missing+=("$pick")
  fi
else
  say "WARNING: not Raspberry Pi OS (no archive.raspberrypi.* apt source): skipping ${APT_PI_PACKAGES[*]} ${VCGENCMD_PACKAGES[*]}"
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  sys apt-get update -q
  sys env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  say "Debian packages present: ${APT_PACKAGES[*]}"
fi

# 2. System user and groups (gpio exists on Raspberry Pi OS; create it elsewhere so the unit starts).
for g in "$SERVICE_USER" "${GROUPS_NEEDED[@]}"; do
  getent group "$g" >/dev/null || sys groupadd --system "$g"
done
if ! getent passwd "$SERVICE_USER" >/dev/null; then
  sys useradd --system --gid "$SERVICE_USER" --home-dir "$STATE_DIR" --no-create-home \
      --shell /usr/sbin/nologin --comment "doorguard service" "$SERVICE_USER"
fi
# Also as members, so `sudo -u doorguard doorguard doctor` sees what the service sees.
sys usermod -a -G "$(IFS=,; echo "${GROUPS_NEEDED[*]}")" "$SERVICE_USER"

# 3. The program: a venv that also sees apt's picamera2/libcamera/lgpio/numpy.
if [[ ! -x $VENV/bin/python ]]; then
  sys "$PYTHON" -m venv --system-site-packages "$VENV"
fi
# Runtime extras only (EXTRAS none): the workstation toolchain (tensorflow) never goes on the Pi.
# Pin numpy to apt's (1.24 on Bookworm, 2.x on Trixie): picamera2's compiled helpers (simplejpeg,
# libcamera) are built against it, and an unpinned resolve could pull another numpy into the
# venv over it (numpy 2 on Bookworm, a newer 2.x on Trixie).
pip_args=(install --quiet --disable-pip-version-check --upgrade)
sys_numpy=$("$PYTHON" -c 'import numpy; print(numpy.__version__)' 2>/dev/null || true)
if [[ -n $sys_numpy ]]; then
  constraints=$D$PREFIX/constraints.txt
  run install -d -m 0755 "$D$PREFIX"
  echo "+ write $constraints: numpy==$sys_numpy"
  if [[ $DRY_RUN -eq 0 ]]; then echo "numpy==$sys_numpy" > "$constraints"; fi
  pip_args+=(--constraint "$PREFIX/constraints.txt")
fi
sys "$VENV/bin/python" -m pip "${pip_args[@]}" "$SRC"

# 4. Models: every manifest in models/ with the int8 model it names, plus model cards.
run install -d -m 0755 "$D$PREFIX/models"
shopt -s nullglob
manifests=("$SRC"/models/*.json)
if [[ ${#manifests[@]} -eq 0 ]]; then
  say "WARNING: no models in $SRC/models (run 'make models' on a workstation first)"
fi
for m in "${manifests[@]}"; do
  # Other JSON beside the models (eval.json, conditions.json: measurements) names no model file.
  if ! grep -q '"tflite"' "$m"; then
    say "skipping ${m#"$SRC"/}: not a model manifest (no \"tflite\")"
    continue
  fi
  tfl=$(sed -n 's/.*"tflite": *"\([^"]*\)".*/\1/p' "$m" | head -n1)
  if [[ -z $tfl || ! -f $SRC/models/$tfl ]]; then
    echo "install.sh: $m names model file '${tfl:-?}' which is missing in $SRC/models" >&2
    exit 1
  fi
  run install -m 0644 "$m" "$SRC/models/$tfl" "$D$PREFIX/models/"
done
for card in "$SRC"/models/*.md "$SRC"/models/LICENSE*; do
  run install -m 0644 "$card" "$D$PREFIX/models/"
done
shopt -u nullglob

# 5. Configuration: kept if present; else the commented example with absolute model paths.
run install -d -m 0750 "$D$CONF_DIR"
if [[ -f $D$CONF_DIR/config.toml ]]; then
  say "kept existing $CONF_DIR/config.toml"
else
  template=$SRC/config.example.toml
  [[ -f $template ]] || template=$SRC/edge/default.toml
  echo "+ write $D$CONF_DIR/config.toml from ${template#"$SRC"/} (models under $PREFIX/models)"
  if [[ $DRY_RUN -eq 0 ]]; then
    sed -e "s#= *\"models/#= \"$PREFIX/models/#" "$template" > "$D$CONF_DIR/config.toml.new"
    chmod 0640 "$D$CONF_DIR/config.toml.new"
    mv "$D$CONF_DIR/config.toml.new" "$D$CONF_DIR/config.toml"
  fi
fi
sys chown -R "root:$SERVICE_USER" "$CONF_DIR"
# systemd creates /var/lib/doorguard (StateDirectory=); create it now so doctor can check it.
run install -d -m 0750 "$D$STATE_DIR"
sys chown "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

# 6. The unit.
run install -d -m 0755 "$D$UNIT_DIR"
echo "+ install systemd/doorguard.service $D$UNIT_DIR/doorguard.service"
if [[ $DRY_RUN -eq 0 ]]; then
  sed -e "s#/opt/doorguard#$PREFIX#g" "$SRC/systemd/doorguard.service" > "$D$UNIT_DIR/doorguard.service.new"
  chmod 0644 "$D$UNIT_DIR/doorguard.service.new"
  mv "$D$UNIT_DIR/doorguard.service.new" "$D$UNIT_DIR/doorguard.service"
fi
# The recovery timer retries a service that hit its start limit (see doorguard-recover.service).
for u in doorguard-recover.service doorguard-recover.timer; do
  echo "+ install systemd/$u $D$UNIT_DIR/$u"
  if [[ $DRY_RUN -eq 0 ]]; then
    install -m 0644 "$SRC/systemd/$u" "$D$UNIT_DIR/$u"
  fi
done
sys "$VENV/bin/doorguard" check-config "$CONF_DIR/config.toml"
sys systemctl daemon-reload
sys systemctl enable doorguard.service
sys systemctl enable --now doorguard-recover.timer
if [[ $START -eq 1 ]]; then
  # restart, not start: a re-install must run the new code.
  sys systemctl restart doorguard.service
fi

say "done. Check it with:"
say "  systemctl status doorguard; journalctl -u doorguard -f"
say "  sudo -u $SERVICE_USER $VENV/bin/doorguard doctor --config $CONF_DIR/config.toml"
