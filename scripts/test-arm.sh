#!/usr/bin/env bash
# make test-arm: doorguard on Raspberry Pi OS Bookworm's own stack (arm64, Python 3.11,
# apt's numpy 1.24, aarch64 wheels), emulated by QEMU user mode (scripts/arm64.sh).
#
# For each CPU profile (pi4 = Cortex-A72, pi5 = Cortex-A76):
#   1. the edge test subset under the Pi's Python and wheels (fakes at the seams, gpiozero's
#      MockFactory, the runner end to end);
#   2. the installed `doorguard run` (the venv systemd/install.sh makes) on the built-in demo
#      clip with the shipped int8 models: its events must be those of the same run on x86;
#   3. the shipped int8 models on the same input tensors as on x86: ai-edge-litert (what
#      doorguard picks) must match x86 bit for bit (bar a documented 1 LSB on TFLite's own
#      int8 SOFTMAX kernel, same decision); tflite-runtime's spread is reported.
# Writes build/arm/report.md: one line per check and profile with its result (failing tests by
# name, from pytest's JUnit XML), then the output comparison and the events. Needs root (debootstrap, chroot, mounts) and the network
# (Debian's archive and PyPI) the first time; the rootfs is cached outside the repo.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OUT=$REPO/build/arm
HOSTPY=${HOSTPY:-$REPO/.venv/bin/python}
PROFILES=${ARM_PROFILES:-pi4 pi5}
GUESTPY=/opt/doorguard/venv/bin/python
# The edge subset: nothing here needs tensorflow, ../shared, a broker or a browser.
ARM_TESTS=(tests/test_config.py tests/test_sources.py tests/test_edge_core.py tests/test_tracking.py
           tests/test_rules.py tests/test_actuators.py tests/test_events.py tests/test_pipeline.py
           tests/test_run_e2e.py tests/test_preprocess_lut.py tests/test_notify.py tests/test_doctor.py)

# In a function, called on the last line together with `exit` (bash reads a script line by
# line while running it: an edit to this file must not reach a run in progress).
main() {
  t0=$(date +%s)
  step() { echo "== test-arm [$(($(date +%s) - t0)) s] $*"; }
  [[ -x $HOSTPY ]] || { echo "test-arm: no host venv at $HOSTPY (make venv)" >&2; exit 1; }

  step "arm64 rootfs and doorguard installed in it"
  scripts/arm64.sh setup
  mode=$(scripts/arm64.sh mode)
  deselect=()
  if [[ $mode == direct ]]; then
    # Without binfmt_misc a guest cannot start another arm64 program: the tests that do.
    deselect=(--deselect tests/test_actuators.py::test_sound_plays_without_blocking_and_never_twice
              --deselect tests/test_events.py::test_unwritable_state_dir)
  fi

  rm -rf "$OUT"
  mkdir -p "$OUT"
  # A config as install.sh writes it: the default models by absolute path, its own state directory.
  # The cooldowns are in seconds of wall time: an emulated Pi under load takes minutes for the
  # demo clip that x86 runs in 2 s, so a track would alert again after track_cooldown_s there
  # and not on x86 (seen: 3 violations vs 1). Events are compared frame for frame, so here a
  # track alerts once per run and no alert is held back, whatever the speed.
  local models
  models=$("$HOSTPY" -c 'from edge import config; c = config.load()
print(f"detector = \"{c.resolve(c.models.detector)}\"\nclassifier = \"{c.resolve(c.models.classifier)}\"")')
  config() { # NAME -> path of a config file whose events go to $OUT/state-NAME
    local f=$OUT/$1.toml
    printf '[models]\n%s\n[events]\nstate_dir = "%s"\n[rules]\ntrack_cooldown_s = 86400.0\nglobal_cooldown_s = 0.0\n' \
      "$models" "$OUT/state-$1" > "$f"
    echo "$f"
  }

  step "x86 reference: input tensors, int8 outputs, demo run"
  "$HOSTPY" tests/arm_check.py inputs --out "$OUT/inputs.npz"
  "$HOSTPY" tests/arm_check.py run --backend litert --inputs "$OUT/inputs.npz" --out "$OUT/out-x86-litert.npz" \
    --label "$(uname -m) host" 2>/dev/null
  GPIOZERO_PIN_FACTORY=mock "$HOSTPY" -m edge.cli run --config "$(config x86)" --source demo \
    > "$OUT/run-x86.log" 2>&1 || { tail -n 20 "$OUT/run-x86.log" >&2; exit 1; }

  status=0
  failed=() results=()
  fail() { status=1; failed+=("$*"); echo "test-arm: FAILED: $*" >&2; }
  result() { results+=("- $*"); }  # one report line per check and profile
  preferred=() fallback=() states=()
  for p in $PROFILES; do
    step "$p: edge tests (${#ARM_TESTS[@]} files) under the Pi's Python and wheels"
    local junit=$OUT/edge-$p.xml summary
    rm -f "$junit"
    if scripts/arm64.sh exec "$p" "$GUESTPY" -m pytest -p no:cacheprovider -q -rfE \
        --junitxml="$junit" -o junit_family=xunit1 "${ARM_TESTS[@]}" "${deselect[@]}"; then
      result "$p edge tests: passed ($("$HOSTPY" tests/arm_check.py junit "$junit" 2>&1))"
    else
      summary=$("$HOSTPY" tests/arm_check.py junit "$junit" 2>&1) || summary="pytest wrote no results: $summary"
      fail "$p: edge tests ($summary)"
      result "$p edge tests: FAILED ($summary)"
    fi

    step "$p: installed doorguard run on the demo clip with the shipped int8 models"
    # The venv's console script, run by path: `edge` comes from the installed package.
    if GPIOZERO_PIN_FACTORY=mock scripts/arm64.sh exec "$p" "$GUESTPY" /opt/doorguard/venv/bin/doorguard \
        run --config "$(config "$p")" --source demo > "$OUT/run-$p.log" 2>&1; then
      result "$p doorguard run on the demo: ran (events compared below)"
    else
      tail -n 20 "$OUT/run-$p.log" >&2
      fail "$p: doorguard run"
      result "$p doorguard run on the demo: FAILED (build/arm/run-$p.log)"
    fi
    grep -E "events by verdict" "$OUT/run-$p.log" | sed "s/^.*summary: /  /" || true  # its FPS is emulated: no speed
    states+=("$OUT/state-$p")

    for b in litert tflite_runtime; do
      step "$p: shipped int8 models on the x86 input tensors ($b)"
      if scripts/arm64.sh exec "$p" "$GUESTPY" tests/arm_check.py run --backend "$b" --inputs "$OUT/inputs.npz" \
          --out "$OUT/out-$p-$b.npz" --label "$p" 2>/dev/null; then
        result "$p int8 models ran ($b): outputs compared below"
      else
        fail "$p: int8 outputs ($b)"
        result "$p int8 models ($b): FAILED to run"
      fi
    done
    preferred+=("$OUT/out-$p-litert.npz")
    fallback+=("$OUT/out-$p-tflite_runtime.npz")
  done

  step "compare with x86"
  if "$HOSTPY" tests/arm_check.py events --ref "$OUT/state-x86" "${states[@]}" > "$OUT/events.txt"; then
    result "events of the demo run on $PROFILES: same as x86"
  else
    fail "events differ from x86"
    result "events of the demo run on $PROFILES: FAILED (differ from x86, below)"
  fi
  cat "$OUT/events.txt"
  if "$HOSTPY" tests/arm_check.py compare --ref "$OUT/out-x86-litert.npz" --preferred "${preferred[@]}" \
      --fallback "${fallback[@]}" --report "$OUT/outputs.md"; then
    result "int8 outputs of the preferred runtime on $PROFILES: within policy (below)"
  else
    fail "int8 outputs differ from x86"
    result "int8 outputs of the preferred runtime on $PROFILES: FAILED (below)"
  fi
  {
    echo "# make test-arm ($mode mode, profiles: $PROFILES), $(($(date +%s) - t0)) s: $([[ $status -eq 0 ]] && echo passed || echo FAILED)"
    echo
    printf '%s\n' "${results[@]}"
    echo
    cat "$OUT/outputs.md" 2>/dev/null || echo "(no output comparison: $OUT/outputs.md missing)"
    echo
    sed 's/^/- /' "$OUT/events.txt"
  } > "$OUT/report.md"
  step "done ($([[ $status -eq 0 ]] && echo passed || echo "FAILED: ${failed[*]}")); report: build/arm/report.md"
  return $status
}

main "$@"; exit
