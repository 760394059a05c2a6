#!/usr/bin/env bash
# Remove the doorguard service installed by install.sh.
# Recorded events (/var/lib/doorguard), the config (/etc/doorguard) and the doorguard user
# are kept unless PURGE=1. Debian packages stay (other software may use them).
#
#   sudo [PURGE=1] ./systemd/uninstall.sh [--dry-run] [--root DIR]
set -euo pipefail

PREFIX=${PREFIX:-/opt/doorguard}
DESTDIR=${DESTDIR:-}
PURGE=${PURGE:-0}
DRY_RUN=0
SERVICE_USER=doorguard
SCRIPT=uninstall.sh
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --purge) PURGE=1; shift ;;
    *) common_option "$@"; shift "$SHIFT" ;;
  esac
done
[[ $PURGE == 1 || $PURGE == yes || $PURGE == true ]] && PURGE=1 || PURGE=0
if [[ -n $DESTDIR ]]; then DESTDIR=$(cd "$DESTDIR" && pwd); fi
need_root "$@"

D=$DESTDIR
UNIT=/etc/systemd/system/doorguard.service

if [[ -z $D ]] && command -v systemctl >/dev/null && systemctl cat doorguard.service >/dev/null 2>&1; then
  # The recovery timer first, or it could start the service again.
  sys systemctl disable --now doorguard-recover.timer
  # Stopping turns the buzzer and LEDs off (the runner's SIGTERM path).
  sys systemctl disable --now doorguard.service
fi
for u in doorguard-recover.timer doorguard-recover.service; do
  if [[ -e $D/etc/systemd/system/$u ]]; then run rm -f "$D/etc/systemd/system/$u"; fi
done
if [[ -e $D$UNIT ]]; then
  run rm -f "$D$UNIT"
  run rm -rf "$D/etc/systemd/system/doorguard.service.d"
  sys systemctl daemon-reload
  sys systemctl reset-failed doorguard.service
fi
if [[ -e $D$PREFIX ]]; then
  run rm -rf "$D$PREFIX"
fi

if [[ $PURGE -eq 1 ]]; then
  say "PURGE=1: deleting recorded events, snapshots, config and the $SERVICE_USER user"
  run rm -rf "$D/var/lib/doorguard" "$D/etc/doorguard"
  if getent passwd "$SERVICE_USER" >/dev/null; then sys userdel "$SERVICE_USER"; fi
  if getent group "$SERVICE_USER" >/dev/null; then sys groupdel "$SERVICE_USER"; fi
else
  if [[ -e $D/var/lib/doorguard ]]; then say "kept recorded events in /var/lib/doorguard (PURGE=1 deletes them)"; fi
  if [[ -e $D/etc/doorguard ]]; then say "kept config in /etc/doorguard (PURGE=1 deletes it)"; fi
fi
say "done"
