#!/usr/bin/env bash
# `make bench`: the system as five release processes on loopback, its own database and
# redis-server, rate limits on at a high limit; the machine's ceilings measured in the same
# run; commits and statements per order counted. Writes bench/results/<date>.{json,md,png}
# and prints the table. BENCH_DURATION, BENCH_WARMUP, BENCH_CONNECTIONS, BENCH_BACKLOG,
# BENCH_SHOPPERS and BENCH_PRODUCTS change the run; BENCH_BIN_DIR measures another build's
# binaries (an older commit's) with this driver.
set -euo pipefail
cd "$(dirname "$0")/.."

# Load tools from Debian's packages, as root; otherwise say what is missing.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v redis-benchmark >/dev/null || missing+=(redis-tools)
command -v pgbench >/dev/null || missing+=(postgresql-client)
command -v nginx >/dev/null || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench: installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: install ${missing[*]} (Debian packages) first" >&2
    exit 1
  fi
fi

cargo build --release --locked --bins \
  -p user-service -p catalog-service -p order-service -p payment-service -p gateway -p shop-proof
mkdir -p target/bench
target/release/shop-bench | tee target/bench/last-run.txt
json=$(sed -n 's/^written: //p' target/bench/last-run.txt)

# The chart: matplotlib from PyPI, pinned, in its own venv.
scripts/pyvenv.sh target/bench-venv matplotlib==3.10.7
target/bench-venv/bin/python scripts/bench-chart.py "$json" "${json%.json}.png"
echo "bench: chart ${json%.json}.png"
