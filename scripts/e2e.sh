#!/usr/bin/env bash
# `make e2e`: the storefront in headless Chromium (Debian's package, driven by playwright-core
# from npm, pinned in e2e/package-lock.json; no browser download) against the system as five
# processes of the debug build on its own database and redis-server (target/debug/shop-system).
# Screenshots: $E2E_SCREENSHOTS, else target/e2e/screenshots/; process logs: target/e2e/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=lib/apt.sh
. scripts/lib/apt.sh

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || apt_install chromium
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

npm ci --prefix e2e --no-audit --no-fund
# The same debug build as `make test` and `make chaos` (nothing new to compile after them); the
# order service's fault hook is in it but stays unarmed without its variable.
cargo build --locked --workspace --tests --bins
E2E_SCREENSHOTS=${E2E_SCREENSHOTS:-target/e2e/screenshots} npm test --prefix e2e
