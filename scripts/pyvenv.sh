#!/usr/bin/env bash
# Makes DIR a Python virtualenv holding exactly the pinned PACKAGES (from PyPI), reusing it
# while the pins are unchanged. Installs Debian's python3-venv when it is missing and we are
# root; otherwise says what to do.
#   scripts/pyvenv.sh DIR PACKAGE==VERSION...
set -euo pipefail
venv=$1; shift
stamp="$venv/.pins-$(printf '%s ' "$@" | sha256sum | cut -c1-12)"
[ -e "$stamp" ] && exit 0
rm -rf "$venv"
if ! python3 -m venv "$venv" 2>/dev/null; then
  # shellcheck source=lib/apt.sh
  . "$(dirname "$0")/lib/apt.sh"
  apt_install python3-venv
  rm -rf "$venv"
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check "$@"
touch "$stamp"
