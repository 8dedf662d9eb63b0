# Sourced by loam's scripts (and by you, to run cargo by hand: `source scripts/env.sh`).
# Everything heavy lives per machine under $LOAM_HOME, never per clone or per run.
# It must be safe to source under `set -euo pipefail` whatever exists yet (no venv, no
# fixtures, no target/, no HOME): every command here ends with status 0.
if [ -z "${LOAM_HOME:-}" ]; then
  if [ -n "${HOME:-}" ]; then
    LOAM_HOME="$HOME/.cache/loam"
  else
    LOAM_HOME="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.loam-home"
  fi
fi
export LOAM_HOME
export LOAM_VENV="${LOAM_VENV:-$LOAM_HOME/venv}"
export LOAM_FIXTURES="${LOAM_FIXTURES:-$LOAM_HOME/fixtures}"
# Downloaded wheels (torch and the reference stack), so a new venv installs offline.
export LOAM_WHEELHOUSE="${LOAM_WHEELHOUSE:-$LOAM_HOME/wheelhouse}"
# libtorch from the torch wheel in the venv: tch's build reads LIBTORCH, and the loam binary
# gets an rpath to $LIBTORCH/lib, so running it needs none of these variables.
if [ -z "${LIBTORCH:-}" ]; then
  for torch_dir in "$LOAM_VENV"/lib/python3*/site-packages/torch; do
    if [ -d "$torch_dir/lib" ]; then export LIBTORCH="$torch_dir"; fi
  done
fi
# Whether this CPU does bf16 arithmetic natively (AVX-512 BF16 or AMX). Without it libtorch's
# bf16 matmul is a scalar loop: the demo and the training benchmark use f32 there.
cpu_has_native_bf16() { grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo 2>/dev/null; }
true
