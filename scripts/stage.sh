#!/usr/bin/env bash
# Runs one named stage of a build and reports how long it took.
set -euo pipefail
name=$1; shift
printf '\n==> %s\n' "$name"
start=$(date +%s)
status=0
"$@" || status=$?
printf '<== %s: %ss%s\n' "$name" "$(( $(date +%s) - start ))" "$([ $status = 0 ] || echo " (FAILED, exit $status)")"
exit $status
