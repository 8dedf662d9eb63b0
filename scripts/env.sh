# Sourced by loam's scripts (and by you, to run cargo by hand: `source scripts/env.sh`).
# Everything heavy lives per machine under $LOAM_HOME, never per clone or per run.
export LOAM_HOME="${LOAM_HOME:-$HOME/.cache/loam}"
export LOAM_VENV="${LOAM_VENV:-$LOAM_HOME/venv}"
export LOAM_FIXTURES="${LOAM_FIXTURES:-$LOAM_HOME/fixtures}"
# libtorch from the torch wheel in the venv: tch's build reads LIBTORCH, and the loam binary
# gets an rpath to $LIBTORCH/lib, so running it needs none of these variables.
if [ -z "${LIBTORCH:-}" ]; then
  for torch_dir in "$LOAM_VENV"/lib/python3*/site-packages/torch; do
    [ -d "$torch_dir/lib" ] && export LIBTORCH="$torch_dir"
  done
fi
