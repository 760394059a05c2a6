#!/usr/bin/env bash
# An emulated Raspberry Pi OS userland (arm64 Debian: Bookworm with Python 3.11 and apt's
# numpy 1.24, or Trixie with Python 3.13 and apt's numpy 2.2) under QEMU user mode, for
# `make test-arm` and `make bench-arm`. DOORGUARD_ARM_SUITE picks it: bookworm (default) | trixie.
#
#   scripts/arm64.sh setup             rootfs (cached) + doorguard installed in it as on a Pi
#   scripts/arm64.sh exec PROFILE CMD  run CMD (guest paths) on a Pi CPU profile: pi4 | pi5
#   scripts/arm64.sh count PROFILE OUT CMD   as exec, counting guest instructions between
#                                      markers into OUT (needs the plugin: benchmarks/arm/)
#   scripts/arm64.sh mode              print how guests run here: chroot | direct
#   scripts/arm64.sh rootfs            print the rootfs path (after setup)
#   scripts/arm64.sh suites            print the suites this script can make: bookworm trixie
#   scripts/arm64.sh stack             one line: the suite's Python, numpy, OpenCV, runtimes (after setup)
#   scripts/arm64.sh backends          the TFLite runtimes installed for the checks: litert [tflite_runtime]
#
# Each suite's rootfs is made once by debootstrap (about 4 minutes) and cached outside the
# repository: Bookworm's in $DOORGUARD_ARM_CACHE (default ~/.cache/doorguard/arm64), another
# suite's beside it ($DOORGUARD_ARM_CACHE-trixie). The venv in it (/opt/doorguard/venv,
# --system-site-packages, numpy pinned to apt's, as systemd/install.sh makes it on a Pi) is
# refreshed from this checkout at every setup. The suites share one pip cache
# ($DOORGUARD_ARM_CACHE-pip: the pure-Python wheels are the same for both).
#
# binfmt_misc with QEMU's qemu-aarch64 handler lets the kernel run arm64 programs. Making
# the rootfs needs it (debootstrap's second stage runs the new system's dpkg and maintainer
# scripts), so setup mounts binfmt_misc and enables the handler first where they are not
# (a fresh machine: binfmt_misc unmounted, so binfmt-support registered the handler but
# could not enable it), and says so in one line. Guests then run in a chroot. Where binfmt
# cannot be had (the mount is refused), an existing rootfs still runs: guests start
# directly as `qemu-aarch64-static -L ROOTFS` (a guest cannot then start other arm64
# programs), and making a new rootfs fails with one line saying why (tests/test_arm64_script.py).
# Each run is in its own mount namespace, where the repository and ../shared appear at
# their host paths and /proc/cpuinfo is replaced by a Pi's: XNNPACK picks its kernels from
# it, and from the CPU features QEMU_CPU gives. Profiles: pi4 = Cortex-A72 (Pi 4/400/CM4),
# pi5 = Cortex-A76 (Pi 5, has the int8 dot-product instructions).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=$(cd "$REPO/.." && pwd)/shared
# The suites make test-arm knows, in its default order (scripts/test-arm.sh reads this list).
SUITES=(bookworm trixie)
SUITE=${DOORGUARD_ARM_SUITE:-bookworm}
CACHE_BASE=${DOORGUARD_ARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/doorguard/arm64}
case $SUITE in
  # Bookworm's cache stays where it was before there were two suites.
  bookworm) CACHE=$CACHE_BASE ;;
  trixie) CACHE=$CACHE_BASE-$SUITE ;;
  *) echo "arm64: unknown suite '$SUITE' (DOORGUARD_ARM_SUITE: ${SUITES[*]})" >&2; exit 2 ;;
esac
ROOTFS=$CACHE/rootfs
PIP_CACHE=$CACHE_BASE-pip
MIRROR=${DOORGUARD_ARM_MIRROR:-http://deb.debian.org/debian}
INCLUDE=python3,python3-venv,python3-numpy,ca-certificates
ROOTFS_KEY="$SUITE minbase $INCLUDE v1"
GUEST_VENV=/opt/doorguard/venv
GUEST_SRC=/opt/doorguard/src
# The fallback runtime compared against ai-edge-litert: its last release (2.14, 2023) has
# aarch64 wheels up to cp311, so Bookworm only; Trixie's Python 3.13 has none.
case $SUITE in
  bookworm) TFLITE_RUNTIME=tflite-runtime==2.14.0 ;;
  *) TFLITE_RUNTIME= ;;
esac

die() { echo "arm64: $*" >&2; exit 1; }
say() { echo "arm64: $*" >&2; }

need_root() {
  [[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot and mounts): run it with sudo"
}

# Host packages (scripts/sysdeps.sh arm): QEMU user mode (static for chroot/binfmt, dynamic
# for TCG plugins), binfmt-support and debootstrap.
host_packages() {
  "$REPO/scripts/sysdeps.sh" arm
  local c
  for c in qemu-aarch64-static qemu-aarch64 update-binfmts debootstrap; do
    command -v "$c" >/dev/null || die "$c not found: apt-get install qemu-user-static qemu-user binfmt-support debootstrap failed (see above)"
  done
}

# Can the kernel run arm64 programs itself (binfmt_misc mounted, qemu-aarch64 enabled in it)?
# Mounts binfmt_misc and enables the handler where needed, says what it did in one line;
# false where that cannot be done here. Decided once per call.
BINFMT_DIR=/proc/sys/fs/binfmt_misc
BINFMT='' BINFMT_WHY=''
binfmt_handler() { head -n 1 "$BINFMT_DIR/qemu-aarch64" 2>/dev/null || true; }
enable_binfmt() {
  if [[ -z $BINFMT ]]; then
    BINFMT=no
    local did=()
    if [[ ! -e $BINFMT_DIR/register ]]; then
      if mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" 2>/dev/null; then
        did+=("mounted binfmt_misc on $BINFMT_DIR")
      else
        BINFMT_WHY="binfmt_misc is not mounted and 'mount -t binfmt_misc binfmt_misc $BINFMT_DIR' was refused (it needs root, outside a container that forbids it)"
      fi
    fi
    if [[ -e $BINFMT_DIR/register && $(binfmt_handler) != enabled ]]; then
      # binfmt-support keeps qemu-user-static's handler in its database; --enable hands it to the kernel.
      update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || update-binfmts --import qemu-aarch64 >/dev/null 2>&1 || true
      if [[ $(binfmt_handler) == enabled ]]; then
        did+=("enabled its qemu-aarch64 handler (update-binfmts --enable qemu-aarch64)")
      else
        BINFMT_WHY="'update-binfmts --enable qemu-aarch64' did not enable the handler in $BINFMT_DIR (are qemu-user-static and binfmt-support installed?)"
      fi
    fi
    local msg=${did[0]:-}
    [[ ${#did[@]} -eq 2 ]] && msg+=" and ${did[1]}"
    if [[ $(binfmt_handler) == enabled ]]; then
      BINFMT=yes
      [[ -n $msg ]] && say "$msg: debootstrap and chroot run arm64 programs through it"
    elif [[ -n $msg ]]; then
      BINFMT_WHY="$msg, then $BINFMT_WHY"
    fi
  fi
  [[ $BINFMT == yes ]]
}

# A Pi's /proc/cpuinfo (64-bit kernel), one entry per host CPU so /sys and it agree.
write_cpuinfo() { # PROFILE FILE
  local features variant part rev n
  case $1 in
    pi4) features="fp asimd evtstrm crc32 cpuid"; variant=0x0; part=0xd08; rev=3 ;;
    pi5) features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
         variant=0x4; part=0xd0b; rev=1 ;;
    *) die "unknown CPU profile '$1' (pi4 or pi5)" ;;
  esac
  n=$(nproc)
  : > "$2"
  for ((i = 0; i < n; i++)); do
    printf 'processor\t: %d\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
      "$i" "$features" "$variant" "$part" "$rev" >> "$2"
  done
}

qemu_cpu() { case $1 in pi4) echo cortex-a72 ;; pi5) echo cortex-a76 ;; *) die "unknown CPU profile '$1' (pi4 or pi5)" ;; esac; }

make_rootfs() {
  if [[ -x $ROOTFS/usr/bin/python3 && $(cat "$CACHE/rootfs.key" 2>/dev/null) == "$ROOTFS_KEY" ]]; then
    say "reusing $ROOTFS"
    return 0
  fi
  # debootstrap's second stage runs the new system's own dpkg and maintainer scripts, each an
  # arm64 program that starts others: only the kernel's binfmt_misc can run those (QEMU user
  # mode alone runs one program, not the ones it execs), with or without --foreign.
  enable_binfmt ||
    die "cannot make the arm64 rootfs here: debootstrap runs arm64 programs, which needs binfmt_misc with QEMU's qemu-aarch64 handler enabled: $BINFMT_WHY. A rootfs made where that works runs here without it (direct mode): copy that machine's $CACHE here or point DOORGUARD_ARM_CACHE at a copy"
  mkdir -p "$CACHE"
  rm -rf "$ROOTFS" "$ROOTFS.tmp"
  say "debootstrap $SUITE arm64 into $ROOTFS (about 4 minutes, once)"
  # Two tries: a mirror hiccup must not fail CI (the second starts clean).
  local try
  for try in 1 2; do
    if debootstrap --arch=arm64 --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS.tmp" "$MIRROR" \
        > "$CACHE/debootstrap.log" 2>&1; then
      break
    fi
    tail -n 5 "$CACHE/debootstrap.log" >&2
    [[ $try -eq 2 ]] && die "debootstrap failed twice (log: $CACHE/debootstrap.log)"
    say "debootstrap failed; trying once more"
    rm -rf "$ROOTFS.tmp"
  done
  mv "$ROOTFS.tmp" "$ROOTFS"
  echo "$ROOTFS_KEY" > "$CACHE/rootfs.key"
}

# chroot (binfmt_misc) or direct; decided once per call.
MODE=
# A TCG plugin spec (file[,arg=value]) for `count`: forces direct mode under qemu-aarch64.
PLUGIN=
detect_mode() {
  [[ -n $MODE ]] && return 0
  # DOORGUARD_ARM_MODE=direct forces the fallback (to test it where binfmt works).
  case ${DOORGUARD_ARM_MODE:-} in
    chroot|direct) MODE=$DOORGUARD_ARM_MODE; return 0 ;;
    "") ;;
    *) die "DOORGUARD_ARM_MODE must be chroot or direct, not '$DOORGUARD_ARM_MODE'" ;;
  esac
  if enable_binfmt && chroot "$ROOTFS" /bin/true 2>/dev/null; then MODE=chroot; return 0; fi
  local why=${BINFMT_WHY:-chroot $ROOTFS /bin/true failed}
  if qemu-aarch64-static -L "$ROOTFS" "$ROOTFS/bin/true" 2>/dev/null; then
    say "binfmt_misc not usable here ($why): running guests directly under qemu-aarch64-static -L"
    MODE=direct; return 0
  fi
  die "cannot run arm64 programs: $why, and qemu-aarch64-static -L $ROOTFS $ROOTFS/bin/true failed too"
}

# The environment a guest sees: nothing of the host's but proxies and pip's CA bundle.
guest_env() {
  local e=("PATH=$GUEST_VENV/bin:/usr/local/bin:/usr/bin:/bin" HOME=/root LANG=C.UTF-8
           PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 PIP_CERT=/etc/doorguard-host-ca.crt
           PYTHONDONTWRITEBYTECODE=1 "DOORGUARD_SHARED=$SHARED" "PIP_CACHE_DIR=$PIP_CACHE")
  for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY DOORGUARD_ARM_PROFILE GPIOZERO_PIN_FACTORY; do
    [[ -n ${!v:-} ]] && e+=("$v=${!v}")
  done
  printf '%s\n' "${e[@]}"
}

# run_guest PROFILE CMD...: CMD inside the emulated Pi, in a private mount namespace.
run_guest() {
  local profile=$1; shift
  detect_mode
  local cpuinfo cpu env_args rc d
  cpu=$(qemu_cpu "$profile")
  cpuinfo=$CACHE/cpuinfo-$profile
  write_cpuinfo "$profile" "$cpuinfo"
  mapfile -t env_args < <(DOORGUARD_ARM_PROFILE=$profile guest_env)
  if [[ $MODE == chroot && -z $PLUGIN ]]; then
    mkdir -p "$PIP_CACHE"
    # unshare -m: every mount below vanishes with the command, even on kill.
    # shellcheck disable=SC2016  # the inner script expands its own positional arguments
    unshare --mount --propagation private -- bash -euo pipefail -c '
      R=$1 REPO=$2 SHARED=$3 CPUINFO=$4 PIPC=$5; shift 5
      mount -t proc proc "$R/proc"
      mount --bind "$CPUINFO" "$R/proc/cpuinfo"
      mount --rbind /sys "$R/sys"
      mount --rbind /dev "$R/dev"
      mkdir -p "$R$REPO" "$R$SHARED" "$R$PIPC"
      mount --bind "$REPO" "$R$REPO"
      mount --bind "$PIPC" "$R$PIPC"
      if [[ -d $SHARED ]]; then mount --bind -o ro "$SHARED" "$R$SHARED"; fi
      exec chroot "$R" "$@"' _ "$ROOTFS" "$REPO" "$SHARED" "$cpuinfo" "$PIP_CACHE" \
      env -i -C "$REPO" QEMU_CPU="$cpu" "${env_args[@]}" "$@" || rc=$?
    # The mount points, empty again, would hide the host's folders from direct mode.
    for d in "$REPO" "$SHARED" "$PIP_CACHE"; do
      [[ -d $ROOTFS$d ]] && rmdir -p --ignore-fail-on-non-empty "$ROOTFS$d"
    done
    return "${rc:-0}"
  else
    # -L maps guest paths to $ROOTFS first, then the host's: the repo and ../shared are seen
    # at their host paths. /proc/cpuinfo is looked up in $ROOTFS/proc, which is empty here.
    # The chroot mode's (empty, unmounted here) mount points would hide the host's folders.
    mkdir -p "$PIP_CACHE"
    for d in "$REPO" "$SHARED" "$PIP_CACHE"; do
      [[ -d $ROOTFS$d ]] && rmdir -p --ignore-fail-on-non-empty "$ROOTFS$d"
    done
    install -m 0644 "$cpuinfo" "$ROOTFS/proc/cpuinfo"
    local exe=$1; shift
    local argv0=$exe
    [[ $exe == /* ]] || die "direct mode needs an absolute guest path, not '$exe'"
    # Follow the guest's own symlinks (the venv's python -> /usr/bin/python3 -> python3.11);
    # a program named by its path in the rootfs keeps that path as argv[0] (setup does so).
    local real
    real=$(cd "$ROOTFS" && readlink -m "$(guest_readlink "${exe#"$ROOTFS"}")")
    local qemu=(qemu-aarch64-static)
    # Only the dynamically linked qemu-aarch64 can load TCG plugins.
    [[ -n $PLUGIN ]] && qemu=(qemu-aarch64 -plugin "$PLUGIN")
    # Debian's BLAS/LAPACK are found through absolute /etc/alternatives links, which -L does
    # not follow into the rootfs: name their real folders to the guest's loader.
    (cd "$REPO" && env -i QEMU_CPU="$cpu" "${env_args[@]}" \
      "${qemu[@]}" -L "$ROOTFS" -E LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu/blas:/usr/lib/aarch64-linux-gnu/lapack \
      -0 "$argv0" "$ROOTFS$real" "$@")
  fi
}

# Resolve a guest path's symlinks inside the rootfs (absolute links are rootfs-relative).
guest_readlink() {
  local p=$1 n=0 t
  while [[ -L $ROOTFS$p && $n -lt 20 ]]; do
    t=$(readlink "$ROOTFS$p")
    if [[ $t == /* ]]; then p=$t; else p=$(dirname "$p")/$t; fi
    n=$((n + 1))
  done
  echo "$p"
}

# doorguard into /opt/doorguard/venv, as systemd/install.sh does on a Pi, plus the test tools.
install_doorguard() {
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/doorguard-host-ca.crt"
  install -m 0644 /etc/resolv.conf "$ROOTFS/etc/resolv.conf" 2>/dev/null || true
  rm -rf "$ROOTFS$GUEST_SRC"
  mkdir -p "$ROOTFS$GUEST_SRC"
  # The tracked files of this checkout (what a clone has), not its .venv or build outputs.
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard -- pyproject.toml README.md LICENSE* edge convert benchmarks |
     tar --null -T - -cf -) | tar -C "$ROOTFS$GUEST_SRC" -xf -
  local py=/usr/bin/python3 venv=$GUEST_VENV what=$GUEST_SRC opt=/opt/doorguard only=()
  detect_mode
  if [[ $MODE == direct ]]; then
    # No binfmt. Under qemu -L a guest's path goes to the rootfs only where it exists there,
    # else to the host: a new file (a package pip unpacks) would land on the host. So name
    # the rootfs' own paths here (the venv's python run by that path finds its pyvenv.cfg and
    # site-packages there). And a guest cannot start another arm64 program, which venv's
    # ensurepip and pip's build of a source tree (its build backend) do: the venv comes
    # without pip, pip from Debian's own wheel run in-process, doorguard as a wheel built on
    # the host (pure Python), everything else as wheels only.
    venv=$ROOTFS$GUEST_VENV opt=$ROOTFS/opt/doorguard
    if [[ ! -x $venv/bin/python ]]; then
      run_guest pi4 "$py" -m venv --without-pip --system-site-packages "$venv"
    fi
    if [[ ! -e $venv/bin/pip ]]; then
      local wheel
      wheel=$(cd "$ROOTFS" && compgen -G "usr/share/python-wheels/pip-*.whl" | head -n 1) ||
        die "no pip wheel in $ROOTFS/usr/share/python-wheels (python3-venv)"
      run_guest pi4 "$venv/bin/python" "/$wheel/pip" install -q --no-index "/$wheel"
    fi
    local hostpy=${HOSTPY:-$REPO/.venv/bin/python}
    [[ -x $hostpy ]] || hostpy=python3
    rm -rf "$opt/wheels"
    "$hostpy" -m pip wheel -q --no-deps -w "$opt/wheels" "$ROOTFS$GUEST_SRC" >&2 ||
      die "building doorguard's wheel on the host ($hostpy -m pip wheel) failed"
    what=$(compgen -G "$opt/wheels/doorguard-*.whl" | head -n 1)
    only=(--only-binary :all:)
  elif [[ ! -x $ROOTFS$GUEST_VENV/bin/python ]]; then
    run_guest pi4 "$py" -m venv --system-site-packages "$GUEST_VENV"
  fi
  local numpy
  numpy=$(run_guest pi4 "$py" -c 'import numpy; print(numpy.__version__)')
  echo "numpy==$numpy" > "$ROOTFS/opt/doorguard/constraints.txt"
  local checks=(pytest hypothesis pyyaml ${TFLITE_RUNTIME:+"$TFLITE_RUNTIME"})
  say "pip install doorguard (numpy==$numpy from apt), ${checks[*]} into $GUEST_VENV ($SUITE, $MODE mode)"
  local try ok=
  for try in 1 2; do
    run_guest pi4 "$venv/bin/python" -m pip install -q --upgrade "${only[@]}" \
      --constraint "$opt/constraints.txt" "$what" "${checks[@]}" && { ok=1; break; }
    say "pip install into the arm64 venv failed (try $try of 2)"
  done
  [[ -n $ok ]] || die "pip install into the arm64 venv failed twice (needs PyPI; see above)"
  # What the suite runs, for test-arm's report (read by `stack` and `backends`).
  run_guest pi4 "$venv/bin/python" -c "$STACK_PY" "$SUITE" > "$CACHE/stack.txt" ||
    die "the arm64 venv's python cannot report its packages"
  say "stack: $(head -n 1 "$CACHE/stack.txt")"
}

# One line (Python, numpy, OpenCV, runtimes as installed in the venv), then the TFLite
# runtimes there, by doorguard's backend names. Metadata only: importing cv2 under the
# emulator takes seconds.
STACK_PY='
import platform, sys
from importlib import metadata
def v(d):
    try:
        return metadata.version(d)
    except metadata.PackageNotFoundError:
        return None
pkgs = [("numpy", "numpy"), ("OpenCV", "opencv-python-headless"), ("ai-edge-litert", "ai-edge-litert"),
        ("tflite-runtime", "tflite-runtime")]
print(", ".join([f"{sys.argv[1]}: Python {platform.python_version()}"] +
                [f"{n} {v(d)}" for n, d in pkgs if v(d)]))
print(" ".join(b for b, d in (("litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime")) if v(d)))
'


# What setup needs of the machine itself, not of a suite (apt's host packages, binfmt_misc):
# one setup at a time, so suites set up side by side (test-arm) do not race apt or the mount.
# enable_binfmt's answer stays for make_rootfs and detect_mode, which say why it matters.
prepare_host() {
  mkdir -p "$(dirname "$CACHE_BASE")"
  exec 8> "$CACHE_BASE.host-lock"
  flock 8
  host_packages
  enable_binfmt || true
  exec 8>&-
}

# One guest at a time per rootfs: a run changes $ROOTFS/proc/cpuinfo (direct mode) and
# its mount points, and setup replaces the venv under a running guest's feet.
lock() {
  mkdir -p "$CACHE"
  exec 9> "$CACHE/lock"
  flock 9
}

# All in a function, called on the last line together with `exit` (bash reads a script
# line by line while running it: an edit to this file must not reach a run in progress).
main() {
  cmd=${1:-}
  case $cmd in
    setup)
      need_root; prepare_host; lock; make_rootfs; detect_mode; install_doorguard
      say "ready: $ROOTFS ($MODE mode)" ;;
    exec)
      [[ $# -ge 3 ]] || die "usage: $0 exec pi4|pi5 CMD [ARG...]"
      need_root
      [[ -x $ROOTFS$GUEST_VENV/bin/python ]] || die "no arm64 venv in $ROOTFS: run '$0 setup' first"
      profile=$2; shift 2
      lock
      run_guest "$profile" "$@" ;;
    count)
      [[ $# -ge 4 ]] || die "usage: $0 count pi4|pi5 OUT CMD [ARG...]"
      need_root
      [[ -x $ROOTFS$GUEST_VENV/bin/python ]] || die "no arm64 venv in $ROOTFS: run '$0 setup' first"
      lib=${DOORGUARD_ARM_PLUGIN:-$CACHE/libinsncount.so}
      [[ -f $lib ]] || die "no instruction-count plugin at $lib (make bench-arm builds it)"
      profile=$2; out=$3; shift 3
      lock
      : > "$out"
      PLUGIN="$lib,out=$out" MODE=direct run_guest "$profile" "$@" ;;
    mode) need_root; detect_mode; echo "$MODE" ;;
    rootfs) echo "$ROOTFS" ;;
    suites) echo "${SUITES[*]}" ;;
    stack|backends)
      [[ -s $CACHE/stack.txt ]] || die "no $CACHE/stack.txt: run '$0 setup' first"
      if [[ $cmd == stack ]]; then sed -n 1p "$CACHE/stack.txt"; else sed -n 2p "$CACHE/stack.txt"; fi ;;
    *) sed -n '2,/arm64.sh backends/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
}

# Sourced (tests/test_arm64_script.py): the functions only.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then main "$@"; exit; fi
