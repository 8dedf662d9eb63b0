#!/usr/bin/env bash
# Sets everything up and runs every test: the Rust unit tests, the parity tests against the
# Python reference stack, and the end-to-end tests of the `loam` binary.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
scripts/setup.sh --tests
source scripts/env.sh
scripts/oracle/build.sh
printf '\033[1m[test]\033[0m cargo test (release)\n' >&2
cargo test --release --locked --workspace --no-fail-fast "$@"
