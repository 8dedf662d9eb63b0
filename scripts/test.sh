#!/usr/bin/env bash
# Sets everything up and runs every test: the Rust unit tests, the parity tests against the
# Python reference stack, and the end-to-end tests of the `loam` binary.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/steps.sh"
cd "$ROOT"
step "setting up (scripts/setup.sh --tests)"
scripts/setup.sh --tests
source scripts/env.sh
step "the README's commands on a fresh machine (scripts/fresh_machine_test.sh)"
scripts/fresh_machine_test.sh
step "building the reference fixtures (scripts/oracle/build.sh)" \
  "the failing fixture script is named above; run scripts/oracle/build.sh alone to see it again"
scripts/oracle/build.sh
step "cargo test (release)" "the failing tests are listed above; rerun one with: cargo test --release -p loam --test NAME"
cargo test --release --locked --workspace --no-fail-fast "$@"
