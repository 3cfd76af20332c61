#!/usr/bin/env bash
# `make chaos`: the system as five processes of the test build on its own database and
# redis-server, a steady stream of orders, and seven faults (one kills the payment service
# during a stream of refunds); one report line per fault, and a failure exit if any check
# failed. Process logs: target/chaos/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."
# The same build as `make test` (nothing new to compile after it): the order service's
# fault hook (feature test-hooks, switched on by the test harness) is in this build only.
cargo build --locked --workspace --tests --bins
target/debug/shop-chaos
