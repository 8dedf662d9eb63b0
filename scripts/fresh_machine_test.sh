#!/usr/bin/env bash
# The README's commands on a machine that has never run loam: run by scripts/test.sh,
# because CI's machine always has ~/.cache/loam and would never see a broken first run.
#   1. scripts/env.sh sources cleanly under `set -euo pipefail` with an empty LOAM_HOME, with
#      no HOME, and with LOAM_HOME unset (nothing exists yet: no venv, no fixtures, no target/).
#   2. A failing setup step says which step failed (the ERR trap of scripts/steps.sh).
#   3. scripts/setup.sh, cold, into a temporary LOAM_HOME: a new venv (from this machine's
#      wheelhouse, so minutes, not a 2.9 GB download), a build against its libtorch, and
#      `loam --version` from that build with no environment set.
# LOAM_FRESH_QUICK=1 skips part 3 (the cold install and rebuild, a few minutes).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
cd "$ROOT"

scratch="$(mktemp -d "${TMPDIR:-/tmp}/loam-fresh.XXXXXX")"
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
fail() { die "fresh-machine test: $*"; }

step "1. scripts/env.sh under set -euo pipefail, before anything exists"
for case in "empty LOAM_HOME" "no HOME" "LOAM_HOME unset"; do
  home="$scratch/home-${case// /-}"
  mkdir -p "$home"
  vars=(PATH="$PATH" HOME="$home")
  case "$case" in
    "empty LOAM_HOME") vars+=(LOAM_HOME="$scratch/empty-loam-home") ;;
    "no HOME") vars=(PATH="$PATH" LOAM_HOME="$scratch/empty-loam-home") ;;
  esac
  out="$(env -i "${vars[@]}" bash -c 'set -euo pipefail; source scripts/env.sh; echo "sourced LOAM_HOME=$LOAM_HOME LIBTORCH=${LIBTORCH:-}"' 2>&1)" \
    || fail "sourcing scripts/env.sh with $case exits non-zero under set -euo pipefail: $out"
  case "$out" in
    "sourced LOAM_HOME="*" LIBTORCH=") ;;
    *) fail "sourcing scripts/env.sh with $case printed: $out" ;;
  esac
done
# With no HOME at all, LOAM_HOME must still be somewhere real.
out="$(env -i PATH="$PATH" bash -c 'set -euo pipefail; source scripts/env.sh; echo "$LOAM_HOME"')"
[ -n "$out" ] && [ "$out" != "/.cache/loam" ] || fail "with no HOME, LOAM_HOME is '$out'"

step "2. a failing setup step names itself"
# A python3 that cannot make a venv: setup must stop at its check with a message, not silently.
mkdir -p "$scratch/bin"
printf '#!/bin/sh\nexit 1\n' > "$scratch/bin/python3"
chmod +x "$scratch/bin/python3"
if out="$(env -i PATH="$scratch/bin:$PATH" HOME="$scratch/home-x" LOAM_HOME="$scratch/broken" \
  scripts/setup.sh 2>&1)"; then
  fail "setup.sh with a broken python3 exited 0"
fi
case "$out" in
  *'setup.sh failed at step "checking the tools setup needs'*) ;;
  *) fail "setup.sh with a broken python3 did not name its failing step: $out" ;;
esac

if [ "${LOAM_FRESH_QUICK:-0}" = 1 ]; then
  echo "LOAM_FRESH_QUICK=1: the cold install and build are skipped" >&2
  exit 0
fi

step "3. scripts/setup.sh cold: a new, empty LOAM_HOME" \
  "the log is above; a cold setup must work with nothing but the downloaded wheels"
start=$SECONDS
# Everything loam caches goes to the empty LOAM_HOME: a new venv, installed from this
# machine's wheelhouse (as pip's download cache would serve it; the download itself is
# not repeated), and a build against that venv's libtorch. The build reuses a copy of
# target/'s compiled dependencies, which do not depend on libtorch (a build from nothing
# is ~10 min on 2 cores); torch-sys, tch and loam are rebuilt for the new libtorch.
[ -d "$LOAM_WHEELHOUSE" ] || fail "no wheelhouse at $LOAM_WHEELHOUSE: run scripts/setup.sh first"
if [ -d "$ROOT/target/release" ]; then
  mkdir -p "$scratch/target"
  cp -a "$ROOT/target/release" "$scratch/target/release"
fi
env -u LIBTORCH -u LOAM_VENV -u LOAM_FIXTURES -u LD_LIBRARY_PATH \
  LOAM_HOME="$scratch/loam-home" LOAM_WHEELHOUSE="$LOAM_WHEELHOUSE" \
  CARGO_TARGET_DIR="$scratch/target" \
  scripts/setup.sh
bin="$scratch/target/release/loam"
version="$(env -i PATH="$PATH" "$bin" --version)" || fail "$bin --version failed after a cold setup"
case "$version" in
  "loam "*) ;;
  *) fail "$bin --version printed '$version'" ;;
esac
# The binary's libtorch is the new venv's, found through its rpath.
ldd "$bin" | grep -q "$scratch/loam-home/venv/.*libtorch" \
  || fail "$bin does not link the new venv's libtorch: $(ldd "$bin" | grep torch)"
echo "cold setup into an empty LOAM_HOME: $((SECONDS - start)) s, then '$version'" >&2
