#!/usr/bin/env bash
# The whole suite, in the installed .venv: unit, security and provider tests, the fuzzers for
# a bounded time, and the cgroup v2 guest. Any failure fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
step() {
  echo "=== $1"
  shift
  "$@" || { echo "=== FAILED: $*"; status=1; }
}
# The tests import the installed package, never the source tree's python/ directory.
step "pytest" .venv/bin/python -m pytest -p no:cacheprovider tests
exit $status
