# shellcheck shell=bash
# Sourced (never run) by install.sh, uninstall.sh and deploy.sh: how a step is printed and
# run, and the options and root check the two service scripts share.
#
# The sourcing script sets SCRIPT (its file name, for messages) and DRY_RUN (0 or 1), and
# defines usage(); for sys, common_option and need_root also DESTDIR (a scratch root, or
# empty). deploy.sh uses run and quote only.

# say TEXT...: one line of progress.
say() { echo "doorguard ${SCRIPT%.sh}: $*"; }
# quote ARGS...: the arguments as one line a shell reads back the same.
quote() { local out; printf -v out '%q ' "$@"; echo "${out% }"; }
# run CMD...: a step that changes the system. Printed always, executed unless --dry-run.
run() {
  echo "+ $(quote "$@")"
  if [[ $DRY_RUN -eq 0 ]]; then "$@"; fi
}
# sys CMD...: a step on the live system (apt, users, venv, systemctl): listed only with --root.
sys() {
  if [[ -n $DESTDIR ]]; then echo "skip (--root): $(quote "$@")"; else run "$@"; fi
}

# common_option ARGS...: the option in $1 that both service scripts take (--dry-run,
# --root DIR, --help), else exit 2 naming it. Sets SHIFT to the arguments it used.
# shellcheck disable=SC2034  # DRY_RUN, DESTDIR and SHIFT are read by the sourcing script
common_option() {
  SHIFT=1
  case $1 in
    --dry-run) DRY_RUN=1 ;;
    --root) DESTDIR=${2:?--root needs a directory}; SHIFT=2 ;;
    --root=*) DESTDIR=${1#--root=} ;;
    -h|--help) usage; exit 0 ;;
    *) echo "$SCRIPT: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
}

# need_root ARGS...: a step on the live system needs root (a dry run or --root does not).
need_root() {
  if [[ $DRY_RUN -eq 0 && -z $DESTDIR && $(id -u) -ne 0 ]]; then
    echo "$SCRIPT: run as root: sudo $0 $*" >&2
    exit 1
  fi
}
