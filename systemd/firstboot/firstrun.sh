#!/bin/bash
# Raspberry Pi OS Bookworm first-run hook (kernel command line: systemd.run=<boot>/firstrun.sh).
# Runs once, very early and without network: unpacks doorguard.tar.gz from the boot partition,
# enables doorguard-firstboot.service (installs doorguard once the network is up), then runs
# Raspberry Pi Imager's own first-run script if prepare-boot.sh kept it as firstrun-imager.sh.
# DESTDIR=DIR runs it against a scratch root (tests).
set -eu

BOOT=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
SRC=$DESTDIR/usr/local/src/doorguard
UNIT=$DESTDIR/etc/systemd/system/doorguard-firstboot.service

if [ -f "$BOOT/doorguard.tar.gz" ]; then
  mkdir -p "$SRC"
  tar -xzf "$BOOT/doorguard.tar.gz" -C "$SRC" --strip-components=1 --no-same-owner
  mkdir -p "$(dirname "$UNIT")" "$DESTDIR/etc/systemd/system/multi-user.target.wants"
  install -m 0644 "$SRC/systemd/firstboot/doorguard-firstboot.service" "$UNIT"
  # Enabling is one symlink; systemctl may not be usable this early.
  ln -sf /etc/systemd/system/doorguard-firstboot.service \
    "$DESTDIR/etc/systemd/system/multi-user.target.wants/doorguard-firstboot.service"
  echo "doorguard firstrun: unpacked to /usr/local/src/doorguard, install runs on next boot"
else
  echo "doorguard firstrun: no $BOOT/doorguard.tar.gz, nothing to install" >&2
fi

if [ -f "$BOOT/firstrun-imager.sh" ]; then
  # Imager's script sets user, Wi-Fi, SSH, then removes itself from cmdline.txt.
  bash "$BOOT/firstrun-imager.sh" || echo "doorguard firstrun: Imager's firstrun failed" >&2
  rm -f "$BOOT/firstrun-imager.sh"
fi
rm -f "$BOOT/firstrun.sh"
sed -i "s| systemd.run.*||g" "$BOOT/cmdline.txt"
exit 0
