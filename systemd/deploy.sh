#!/usr/bin/env bash
# From a workstation: copy doorguard and the chosen models to a Pi over SSH and install it there.
#
#   ./systemd/deploy.sh [--dry-run] [--no-start] [--models "NAME ..."] HOST
#   ./systemd/deploy.sh [--models "NAME ..."] --bundle OUT.tar.gz     (for first boot, no SSH)
#
#   HOST        user@host of the Pi (e.g. pi@doorway.local); key-based SSH recommended
#   --models    manifest names in models/ (default: every model manifest in models/)
#   --no-start  install and enable on the Pi without (re)starting the service
#   --dry-run   print the rsync/ssh commands without running them
#
# Environment: SSH (default ssh), RSYNC (default rsync), REMOTE_DIR (default doorguard-src,
# relative to the remote home), DOORGUARD_SRC (project root, default this checkout).
set -euo pipefail

SRC=${DOORGUARD_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
SSH=${SSH:-ssh}
RSYNC=${RSYNC:-rsync}
REMOTE_DIR=${REMOTE_DIR:-doorguard-src}
MODELS=${MODELS:-}
DRY_RUN=0
START=1
BUNDLE=
HOST=
SCRIPT=deploy.sh
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --no-start) START=0 ;;
    --models) MODELS=${2?--models needs names}; shift ;;
    --models=*) MODELS=${1#--models=} ;;
    --bundle) BUNDLE=${2:?--bundle needs a file name}; shift ;;
    --bundle=*) BUNDLE=${1#--bundle=} ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "deploy.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) [[ -z $HOST ]] || { echo "deploy.sh: one HOST only" >&2; exit 2; }; HOST=$1 ;;
  esac
  shift
done
if [[ -z $HOST && -z $BUNDLE ]]; then
  echo "deploy.sh: usage: deploy.sh HOST   (e.g. pi@doorway.local), or --bundle OUT.tar.gz" >&2
  exit 2
fi

# Workstation-only things never travel to the Pi.
EXCLUDES=(.git .venv venv __pycache__ '*.pyc' '*.egg-info' build dist .pytest_cache .hypothesis
          bench-out state '*.float32.tflite' '*.sqlite3*')

# The chosen models: manifest, the int8 model it names, plus model cards and licences.
model_files=()
if [[ -z $MODELS ]]; then
  shopt -s nullglob
  # Manifests only (a "tflite" key, as edge.manifest.manifest_paths): eval.json and
  # conditions.json are workstation measurements, not models.
  for m in "$SRC"/models/*.json; do
    grep -q '"tflite" *:' "$m" && MODELS+="$(basename "$m" .json) "
  done
  shopt -u nullglob
fi
for name in $MODELS; do
  name=$(basename "$name" .json)
  manifest=$SRC/models/$name.json
  if [[ ! -f $manifest ]]; then
    echo "deploy.sh: no model manifest models/$name.json in $SRC" >&2
    exit 1
  fi
  tfl=$(sed -n 's/.*"tflite": *"\([^"]*\)".*/\1/p' "$manifest" | head -n1)
  if [[ -z $tfl || ! -f $SRC/models/$tfl ]]; then
    echo "deploy.sh: models/$name.json names '${tfl:-?}', which is missing (run 'make models')" >&2
    exit 1
  fi
  model_files+=("models/$name.json" "models/$tfl")
done
shopt -s nullglob
for f in "$SRC"/models/*.md "$SRC"/models/LICENSE*; do model_files+=("models/$(basename "$f")"); done
shopt -u nullglob
if [[ ${#model_files[@]} -eq 0 ]]; then
  echo "deploy.sh: WARNING: no models in $SRC/models: the Pi gets none (run 'make models' first)" >&2
fi

if [[ -n $BUNDLE ]]; then
  # One tarball with the same files as the rsync below, unpacked on first boot.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  tar_excludes=()
  for e in "${EXCLUDES[@]}"; do tar_excludes+=("--exclude=$e"); done
  run tar -cf "$tmp/b.tar" -C "$SRC" --transform 's,^\.,doorguard,' "${tar_excludes[@]}" \
      --exclude=./models ./
  if [[ ${#model_files[@]} -gt 0 ]]; then
    run tar -rf "$tmp/b.tar" -C "$SRC" --transform 's,^,doorguard/,' "${model_files[@]}"
  fi
  if [[ $DRY_RUN -eq 0 ]]; then
    gzip -9 -n < "$tmp/b.tar" > "$BUNDLE.part" && mv "$BUNDLE.part" "$BUNDLE"
  fi
  echo "deploy: wrote $BUNDLE (copy it to the boot partition, see systemd/firstboot/)"
  exit 0
fi

# Mirror the project (--delete: files removed here go there too), then install remotely.
filters=()
for e in "${EXCLUDES[@]}"; do filters+=("--exclude=$e"); done
filters+=("--include=/models/")
for f in "${model_files[@]}"; do filters+=("--include=/$f"); done
filters+=("--exclude=/models/*")
run "$RSYNC" -az --delete --delete-excluded -e "$SSH" "${filters[@]}" "$SRC/" "$HOST:$REMOTE_DIR/"

remote_cmd="cd $(quote "$REMOTE_DIR") && sudo ./systemd/install.sh"
[[ $START -eq 1 ]] || remote_cmd+=" --no-start"
ssh_opts=()
# A terminal lets sudo on the Pi ask for a password.
[[ -t 0 ]] && ssh_opts+=(-t)
run "$SSH" "${ssh_opts[@]}" "$HOST" "$remote_cmd"
echo "deploy: done. On the Pi: systemctl status doorguard; doorguard doctor"
