#!/usr/bin/env bash
# Sets up loam on this machine, idempotently:
#   1. a Python virtual environment cached per machine ($LOAM_VENV, default
#      ~/.cache/loam/venv) with the torch wheel (libtorch) and the reference stack;
#   2. with --tests (scripts/test.sh): llama.cpp in that environment (llama-cpp-python,
#      compiled once per machine into a cached wheel) and its GGUF converter, the oracles
#      the tests check GGUF files with: scripts/setup_llama_cpp.sh;
#   3. Gloo's headers for the c10d shim (scripts/setup_dist.sh);
#   4. a release build of `loam`, linked with an rpath to that libtorch.
# A second run takes seconds.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
cd "$ROOT"
source scripts/env.sh

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

step "checking the tools setup needs (python3, pip, venv, cargo)"

command -v python3 >/dev/null || die "python3 is missing: install Python 3.10+ (Debian: apt-get install python3 python3-venv)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is missing for python3 (Debian: apt-get install python3-pip)"
python3 -c 'import venv, ensurepip' 2>/dev/null \
  || die "python3 cannot make virtual environments (Debian: apt-get install python3-venv)"
command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs)"
mkdir -p "$LOAM_HOME" 2>/dev/null || die "cannot create LOAM_HOME=$LOAM_HOME; set LOAM_HOME to a writable directory"

# 1. The Python environment, in three idempotent parts: the venv itself; a wheelhouse of
# downloaded wheels kept per machine (pip's own HTTP cache does not keep them everywhere:
# some package mirrors forbid caching, and a new venv must not mean another 2.9 GB
# download); the install from that wheelhouse, offline. Stamps hold the hash of
# requirements.txt: when they match, nothing is done.
want="$(sha256sum scripts/requirements.txt | cut -d' ' -f1)"
py="$LOAM_VENV/bin/python"
stamp="$LOAM_VENV/.loam-requirements"
wheel_stamp="$LOAM_WHEELHOUSE/.loam-requirements"
registry_hint="this needs the PyPI registry; check the network and free disk (df -h $LOAM_HOME: ~8 GB in all), then run again"
if [ ! -x "$py" ]; then
  step "creating the Python environment in $LOAM_VENV" "$registry_hint"
  mkdir -p "$(dirname "$LOAM_VENV")"
  python3 -m venv "$LOAM_VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$py" -m pip install --quiet --upgrade pip
fi
if [ -f "$wheel_stamp" ] && [ "$(cat "$wheel_stamp")" = "$want" ]; then
  say "wheelhouse up to date ($LOAM_WHEELHOUSE)"
else
  step "downloading torch 2.13.0 (libtorch; 2.9 GB of wheels with its CUDA libraries, once per machine) and the reference stack into $LOAM_WHEELHOUSE" "$registry_hint"
  mkdir -p "$LOAM_WHEELHOUSE"
  "$py" -m pip download --quiet --progress-bar off --find-links "$LOAM_WHEELHOUSE" \
    -d "$LOAM_WHEELHOUSE" -r scripts/requirements.txt
  echo "$want" > "$wheel_stamp"
fi
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "Python environment up to date ($LOAM_VENV)"
else
  step "installing torch and the reference stack into $LOAM_VENV (~5 GB, from the wheelhouse)" \
    "read pip's error above; delete $LOAM_VENV to start the environment over"
  "$py" -m pip install --quiet --progress-bar off --no-index --find-links "$LOAM_WHEELHOUSE" \
    -r scripts/requirements.txt
  echo "$want" > "$stamp"
fi
source scripts/env.sh
[ -n "${LIBTORCH:-}" ] || die "no torch package found in $LOAM_VENV; delete $LOAM_VENV and run again"

# 2. llama.cpp, a test oracle (its wheel is cached outside the venv: never rebuilt for a new venv).
if [ "${1:-}" = "--tests" ]; then
  step "setting up llama.cpp (the GGUF test oracle)"
  scripts/setup_llama_cpp.sh
fi

# 3. Gloo's headers for the data-parallel shim (cached per machine, no root needed).
# Not fatal: without them loam builds single-process (`loam --version` says so).
step "fetching the headers data-parallel training is built with"
if ! scripts/setup_dist.sh; then
  say "warning: no Gloo headers, so this build has no data-parallel training on CPUs (see above)"
fi

# 4. The binary.
step "building loam (release)" \
  "read cargo's error above; crates come from crates.io, libtorch from LIBTORCH=${LIBTORCH:-unset}"
cargo build --release --locked -p loam
bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/loam"
step "checking that $bin starts"
env -u LIBTORCH -u LD_LIBRARY_PATH "$bin" --version >/dev/null \
  || die "$bin does not start; is $LIBTORCH/lib readable?"
say "ready: $bin"
