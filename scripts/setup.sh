#!/usr/bin/env bash
# Sets up loam on this machine, idempotently:
#   1. a Python virtual environment cached per machine ($LOAM_VENV, default
#      ~/.cache/loam/venv) with the torch wheel (libtorch) and the reference stack;
#   2. with --tests (scripts/test.sh): llama.cpp in that environment (llama-cpp-python,
#      compiled once per machine into a cached wheel) and its GGUF converter, the oracles
#      the tests check GGUF files with: scripts/setup_llama_cpp.sh;
#   3. a release build of `loam`, linked with an rpath to that libtorch.
# A second run takes seconds.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
source scripts/env.sh

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }
die() { printf 'setup failed: %s\n' "$*" >&2; exit 1; }

command -v python3 >/dev/null || die "python3 is missing: install Python 3.10+ (Debian: apt-get install python3 python3-venv)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing for python3 (Debian: apt-get install python3-pip)"
command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs)"

# 1. The Python environment. A stamp holds the hash of requirements.txt: when it matches,
# nothing is installed.
want="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
stamp="$LOAM_VENV/.loam-requirements"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "Python environment up to date ($LOAM_VENV)"
else
  if [ ! -x "$LOAM_VENV/bin/python" ]; then
    say "creating the Python environment in $LOAM_VENV"
    mkdir -p "$(dirname "$LOAM_VENV")"
    python3 -m venv "$LOAM_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  fi
  say "installing torch 2.13.0 (libtorch, ~5 GB with CUDA libraries; once per machine) and the reference stack"
  "$LOAM_VENV/bin/python" -m pip install --quiet --upgrade pip
  "$LOAM_VENV/bin/python" -m pip install --progress-bar off -r scripts/requirements.txt \
    || die "pip install -r scripts/requirements.txt failed (see above)"
  echo "$want" > "$stamp"
fi
source scripts/env.sh
[ -n "${LIBTORCH:-}" ] || die "no torch package found in $LOAM_VENV; delete $LOAM_VENV and run again"

# 2. llama.cpp, a test oracle (its wheel is cached outside the venv: never rebuilt for a new venv).
if [ "${1:-}" = "--tests" ]; then
  scripts/setup_llama_cpp.sh
fi

# 3. The binary.
say "building loam (release)"
cargo build --release --locked -p loam
env -u LIBTORCH -u LD_LIBRARY_PATH target/release/loam --version >/dev/null \
  || die "target/release/loam does not start; is $LIBTORCH/lib readable?"
say "ready: $ROOT/target/release/loam"
