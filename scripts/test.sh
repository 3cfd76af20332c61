#!/usr/bin/env bash
# Runs the whole test suite: with cargo-nextest when installed (parallel processes, the
# one-at-a-time group for heavy tests), else with cargo test.
set -euo pipefail
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --locked --profile "${NEXTEST_PROFILE:-default}" "$@"
else
  echo "cargo-nextest not found (cargo install --locked cargo-nextest); using cargo test" >&2
  exec cargo test --workspace --locked "$@"
fi
