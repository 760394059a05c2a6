#!/usr/bin/env bash
# Runs once on the Pi after the first boot with network (from cloud-init's runcmd, or from
# doorguard-firstboot.service set up by firstrun.sh): installs doorguard from the unpacked
# bundle with install.sh, then marks itself done. Log: /var/log/doorguard-firstboot.log.
#
#   firstboot.sh            (as root; DESTDIR=DIR for a scratch-root test run)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/../.." && pwd)
DESTDIR=${DESTDIR:-}
DONE=$DESTDIR/var/lib/doorguard-firstboot.done
LOG=$DESTDIR/var/log/doorguard-firstboot.log
NET_WAIT_S=${NET_WAIT_S:-300}

mkdir -p "$(dirname "$LOG")" "$(dirname "$DONE")"
exec > >(tee -a "$LOG") 2>&1
echo "doorguard first boot: $(date -u +%FT%TZ), source $SRC"

if [[ -e $DONE ]]; then
  echo "doorguard first boot: already done ($DONE)"
  exit 0
fi

args=()
if [[ -n $DESTDIR ]]; then
  args+=(--root "$DESTDIR")
else
  # apt needs the network; Wi-Fi may take a while after boot.
  for ((i = 0; i < NET_WAIT_S; i += 5)); do
    getent hosts deb.debian.org >/dev/null 2>&1 && break
    echo "doorguard first boot: waiting for the network ($i s)"
    sleep 5
  done
fi

"$SRC/systemd/install.sh" "${args[@]}"
date -u +%FT%TZ > "$DONE"
echo "doorguard first boot: done. Check: systemctl status doorguard; doorguard doctor"
