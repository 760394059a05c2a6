#!/usr/bin/env bash
# Put doorguard on a freshly flashed Raspberry Pi OS card so it installs itself on first boot.
#
#   ./systemd/firstboot/prepare-boot.sh [--models "NAME ..."] [--cloud-init | --firstrun] BOOTDIR
#
#   BOOTDIR       the mounted boot partition (e.g. /media/$USER/bootfs)
#   --cloud-init  images that read user-data (newer Raspberry Pi OS): add doorguard's runcmd
#   --firstrun    Bookworm images: a firstrun.sh hook on the kernel command line
#   (default: --cloud-init when BOOTDIR already has a user-data file, else --firstrun)
#
# Settings that Raspberry Pi Imager wrote (user, Wi-Fi, SSH) are kept: an existing user-data
# only gets the runcmd line; an existing firstrun.sh is kept as firstrun-imager.sh and run first.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=
MODELS=${MODELS:-}
BOOT=

while [[ $# -gt 0 ]]; do
  case $1 in
    --models) MODELS=${2?--models needs names}; shift ;;
    --cloud-init) MODE=cloud-init ;;
    --firstrun) MODE=firstrun ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "prepare-boot.sh: unknown option $1" >&2; exit 2 ;;
    *) BOOT=$1 ;;
  esac
  shift
done
if [[ -z $BOOT || ! -d $BOOT ]]; then
  echo "prepare-boot.sh: usage: prepare-boot.sh BOOTDIR (the mounted boot partition)" >&2
  exit 2
fi
if [[ ! -f $BOOT/cmdline.txt && ! -f $BOOT/config.txt ]]; then
  echo "prepare-boot.sh: $BOOT has no cmdline.txt or config.txt: is it the Pi's boot partition?" >&2
  exit 1
fi
[[ -n $MODE ]] || { [[ -f $BOOT/user-data ]] && MODE=cloud-init || MODE=firstrun; }

MODELS=$MODELS "$HERE/../deploy.sh" --bundle "$BOOT/doorguard.tar.gz"

if [[ $MODE == cloud-init ]]; then
  if [[ ! -f $BOOT/user-data ]]; then
    cp "$HERE/user-data" "$BOOT/user-data"
    echo "prepare-boot: wrote $BOOT/user-data (add a user there if Imager did not)"
  elif grep -q "doorguard" "$BOOT/user-data"; then
    echo "prepare-boot: $BOOT/user-data already installs doorguard"
  else
    item=$(grep -E '^\s*- \[sh, -c, ".*doorguard' "$HERE/user-data" | sed 's/^ *//')
    if grep -qE '^runcmd:' "$BOOT/user-data"; then
      # Add one item to the existing list, with the indentation its items already use.
      indent=$(awk '/^runcmd:/{f=1; next} f && /^ *- /{match($0, /^ */); print RLENGTH; exit}' "$BOOT/user-data")
      pad=$(printf '%*s' "${indent:-2}" '')
      awk -v line="$pad$item" '{print} /^runcmd:/{print line}' "$BOOT/user-data" > "$BOOT/user-data.new"
      mv "$BOOT/user-data.new" "$BOOT/user-data"
    else
      printf '\n# doorguard: install on first boot (systemd/firstboot/user-data)\nruncmd:\n  %s\n' "$item" \
        >> "$BOOT/user-data"
    fi
    echo "prepare-boot: added doorguard's runcmd to the existing $BOOT/user-data"
  fi
else
  if [[ -f $BOOT/firstrun.sh ]] && ! grep -q "doorguard" "$BOOT/firstrun.sh"; then
    mv "$BOOT/firstrun.sh" "$BOOT/firstrun-imager.sh"
    echo "prepare-boot: kept Imager's firstrun.sh as firstrun-imager.sh (runs first)"
  fi
  cp "$HERE/firstrun.sh" "$BOOT/firstrun.sh"
  if ! grep -q "systemd.run=" "$BOOT/cmdline.txt"; then
    # cmdline.txt is one line; Bookworm mounts the boot partition at /boot/firmware.
    sed -i '1 s|$| systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target|' \
      "$BOOT/cmdline.txt"
  fi
  echo "prepare-boot: firstrun.sh hooked into cmdline.txt"
fi
echo "prepare-boot: done. Eject the card, put it in the Pi, power on; the install log is"
echo "prepare-boot: /var/log/doorguard-firstboot.log (cloud-init: /var/log/cloud-init-output.log)."
