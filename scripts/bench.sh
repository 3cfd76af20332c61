#!/usr/bin/env bash
# `make bench`: the system as five release processes on loopback, its own database and
# redis-server, rate limits on at a high limit; the machine's ceilings measured in the same
# run; commits and statements per order counted. Writes bench/results/<date>.{json,md,png}
# and prints the table. BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_BACKLOG,
# BENCH_SHOPPERS and BENCH_PRODUCTS change the run; BENCH_BIN_DIR measures another build's
# binaries (an older commit's) with this driver.
set -euo pipefail
cd "$(dirname "$0")/.."

# Tools from Debian's packages.
# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh
need_command wrk wrk
need_command redis-benchmark redis-tools
need_command pgbench postgresql-client
need_command nginx nginx

cargo build --release --locked --bins \
  -p user-service -p catalog-service -p order-service -p payment-service -p gateway -p shop-proof
mkdir -p target/bench
target/release/shop-bench | tee target/bench/last-run.txt
json=$(sed -n 's/^written: //p' target/bench/last-run.txt)

# The chart: matplotlib from PyPI, pinned, in its own venv.
scripts/pyvenv.sh target/bench-venv matplotlib==3.10.7
target/bench-venv/bin/python scripts/bench-chart.py "$json" "${json%.json}.png"
echo "bench: chart ${json%.json}.png"
