# Sourced by the benchmark scripts (with ROOT set to the repository): the environment, the
# loam binary to time, and the checks every benchmark needs before it starts.
source "$ROOT/scripts/env.sh"
PY="$LOAM_VENV/bin/python"
# `cargo build --release -p loam` puts it in target/; the development builds use target-trainer/.
if [ -z "${LOAM_BIN:-}" ]; then
  LOAM_BIN="$ROOT/target/release/loam"
  [ -x "$LOAM_BIN" ] || LOAM_BIN="$ROOT/target-trainer/release/loam"
fi

# Exits with what to do when the loam binary, the Python venv or the file `$1` (a model file
# the benchmark reads) is missing.
bench_preflight() {
  [ -x "$LOAM_BIN" ] || { echo "no loam binary at $LOAM_BIN: source scripts/env.sh && cargo build --release -p loam (or set LOAM_BIN)" >&2; exit 1; }
  [ -x "$PY" ] || { echo "no python at $PY: run scripts/setup.sh" >&2; exit 1; }
  [ -f "$1" ] || { echo "no $1: run scripts/oracle/build.sh, or point the benchmark at another model (see --help)" >&2; exit 1; }
}

# For the benchmarks that read wall, CPU time and peak RSS from GNU time's report.
need_gnu_time() {
  [ -x /usr/bin/time ] || { echo "/usr/bin/time (GNU time) is needed for peak RSS: apt-get install time" >&2; exit 1; }
}
