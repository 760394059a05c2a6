#!/usr/bin/env bash
# Build the instruction-count TCG plugin (benchmarks/arm/insn_count.c) for the host's
# qemu-aarch64, once, into $CACHE/libinsncount.so (default ~/.cache/doorguard/arm64).
#
#   benchmarks/arm/build_plugin.sh          build if missing or older than insn_count.c
#   benchmarks/arm/build_plugin.sh --force  rebuild
#
# Debian ships no QEMU plugins and no qemu-plugin.h, but the dynamic qemu-aarch64 loads
# plugins built against the header of the same QEMU version. So this fetches Debian's qemu
# source package for the *installed* qemu-user version (about 23 MB, from Debian's archive,
# through a private sources list that leaves the system's apt configuration alone), takes
# only include/qemu/qemu-plugin.h out of it, and compiles the plugin with gcc. The header
# and the .so are cached; a bench run downloads nothing once they exist.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE=${DOORGUARD_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doorguard/arm64}
SRC=$REPO/benchmarks/arm/insn_count.c
LIB=$CACHE/libinsncount.so
WORK=$CACHE/qemu-src

die() { echo "build_plugin: $*" >&2; exit 1; }
say() { echo "build_plugin: $*" >&2; }

force=0
[[ ${1:-} == --force ]] && force=1
if [[ $force -eq 0 && -f $LIB && $LIB -nt $SRC ]]; then
  say "up to date: $LIB"
  exit 0
fi

command -v qemu-aarch64 >/dev/null || die "qemu-aarch64 (package qemu-user) is missing: run scripts/arm64.sh setup first"
version=$(dpkg-query -W -f '${source:Version}' qemu-user 2>/dev/null) || die "cannot read the qemu-user package version"
[[ -n $version ]] || die "qemu-user is not installed as a Debian package"
upstream=${version#*:}
upstream=${upstream%%+*}   # 1:7.2+dfsg-7+deb12u18 -> 7.2
upstream=${upstream%%-*}
mkdir -p "$CACHE"
HEADER_DIR=$WORK/qemu-$version/include/qemu
HEADER=$HEADER_DIR/qemu-plugin.h

if [[ ! -f $HEADER ]]; then
  command -v gcc >/dev/null || {
    say "installing gcc"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gcc libc6-dev >/dev/null ||
      die "apt-get install gcc failed"
  }
  say "fetching Debian's qemu source package $version for qemu-plugin.h (about 23 MB, once)"
  rm -rf "$WORK/dl" "$WORK/lists"
  mkdir -p "$WORK/dl" "$WORK/lists/partial"
  # A private source list: deb-src lines for bookworm (and its updates/security, where
  # Debian keeps the newest qemu), without touching /etc/apt.
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
  cat > "$WORK/sources.list" <<EOF
deb-src http://deb.debian.org/debian $codename main
deb-src http://deb.debian.org/debian $codename-updates main
deb-src http://deb.debian.org/debian-security $codename-security main
EOF
  apt_opts=(-o "Dir::Etc::SourceList=$WORK/sources.list" -o Dir::Etc::SourceParts=/dev/null
            -o "Dir::State::Lists=$WORK/lists" -o APT::Sandbox::User=root)
  apt-get "${apt_opts[@]}" -qq update >/dev/null || die "apt-get update of the deb-src list failed (network?)"
  (cd "$WORK/dl" && apt-get "${apt_opts[@]}" -qq source --download-only "qemu=$version" >/dev/null) ||
    die "apt-get source qemu=$version failed (is that version still in Debian's archive?)"
  shopt -s nullglob
  origs=("$WORK"/dl/qemu_*.orig.tar.*)
  shopt -u nullglob
  [[ ${#origs[@]} -gt 0 ]] || die "no qemu orig tarball downloaded"
  orig=${origs[0]}
  tmp=$WORK/extract
  rm -rf "$tmp"
  mkdir -p "$tmp"
  # Only the header; the tarball's top directory is qemu-<upstream>[.0].
  tar -C "$tmp" -xf "$orig" --wildcards '*/include/qemu/qemu-plugin.h' ||
    die "qemu-plugin.h not found in $orig"
  mkdir -p "$HEADER_DIR"
  mv "$tmp"/*/include/qemu/qemu-plugin.h "$HEADER"
  rm -rf "$tmp" "$WORK/dl" "$WORK/lists"
  say "header cached: $HEADER (qemu $upstream)"
fi

gcc -O2 -shared -fPIC -Wall -Werror -I"$HEADER_DIR" -o "$LIB.tmp" "$SRC"
mv "$LIB.tmp" "$LIB"
say "built $LIB"
