# Sourced by setup.sh, test.sh, demo.sh and setup_llama_cpp.sh: each names the step it is
# in (`step "building loam"`), and any command that fails ends the script with one line
# saying which script, which step, and what to do — never a silent non-zero exit.
# Needs bash; sets -E so the trap also fires inside functions and subshells.
set -Eeuo pipefail
LOAM_SCRIPT="$(basename "$0")"
LOAM_STEP="starting"
LOAM_STEP_HINT=""
# step "what is happening" ["what to do if it fails"]
step() {
  LOAM_STEP="$1"
  LOAM_STEP_HINT="${2:-}"
  printf '\033[1m[%s]\033[0m %s\n' "${LOAM_SCRIPT%.sh}" "$1" >&2
}
loam_on_error() {
  local rc=$? line="$1" cmd="$2"
  trap - ERR
  local hint="${LOAM_STEP_HINT:-read the output above, fix the cause, and run $LOAM_SCRIPT again (finished steps are not redone)}"
  printf '\n%s failed (exit %s) at step "%s": `%s` (line %s)\n  what to do: %s\n' \
    "$LOAM_SCRIPT" "$rc" "$LOAM_STEP" "$cmd" "$line" "$hint" >&2
  exit "$rc"
}
trap 'loam_on_error "$LINENO" "$BASH_COMMAND"' ERR
# die "message": a failure found by a check rather than by a failing command.
die() {
  trap - ERR
  printf '\n%s failed at step "%s": %s\n' "$LOAM_SCRIPT" "$LOAM_STEP" "$*" >&2
  exit 1
}
