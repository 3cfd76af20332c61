#!/usr/bin/env bash
# `make e2e`: the storefront in headless Chromium (Debian's package, driven by playwright-core
# from npm, pinned in e2e/package-lock.json; no browser download) against the system as five
# processes of the debug build on its own database and redis-server (target/debug/shop-system).
# Screenshots: $E2E_SCREENSHOTS, else target/e2e/screenshots/; process logs: target/e2e/logs/.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt-get install, as root or through sudo; refreshes the package lists if the first try fails.
apt_install() {
  local sudo=()
  if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null; then sudo=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y "$@" || {
    "${sudo[@]}" apt-get update
    "${sudo[@]}" apt-get install -y "$@"
  }
}

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || apt_install chromium
command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm

npm ci --prefix e2e --no-audit --no-fund
# The same debug build as `make test` and `make chaos` (nothing new to compile after them); the
# order service's fault hook is in it but stays unarmed without its variable.
cargo build --locked --workspace --tests --bins
E2E_SCREENSHOTS=${E2E_SCREENSHOTS:-target/e2e/screenshots} npm test --prefix e2e
