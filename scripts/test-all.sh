#!/usr/bin/env bash
# The whole suite, in the installed .venv: unit, property, security and provider tests (the
# provider tests start their own private dockerd), the C++ unit tests, the fuzzers for a
# bounded time, and the cgroup v2 guest. Every step runs; any failure fails the run.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHON="$PWD/.venv/bin/python"
# The provider suite starts its own private dockerd (scripts/dockerd-start) for the Docker
# half; WARDEN_TEST_DOCKER=0 leaves it out outside CI.
export WARDEN_TEST_DOCKER="${WARDEN_TEST_DOCKER:-1}"
status=0
step() {
  local name=$1
  shift
  echo "=== $name"
  if "$@"; then
    echo "=== $name: ok"
  else
    echo "=== FAILED: $name"
    status=1
  fi
}
# The tests import the installed package: run from the repository root without python/ on
# the path (tests/ is a package, so pytest puts only the root there).
step "lint: ruff, mypy, import rules" scripts/lint.sh
step "pytest" "$PYTHON" -m pytest -p no:cacheprovider tests
step "ctest: C++ unit tests" scripts/ctest.sh
if [ -x fuzz/run_scan_fuzzer.sh ]; then
  step "libFuzzer: scanner" env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" fuzz/run_scan_fuzzer.sh
fi
step "atheris: ipc frames and manifests" env FUZZ_SECONDS="${FUZZ_SECONDS:-30}" fuzz/run_atheris.sh
step "cgroup v2 guest" "$PYTHON" scripts/v2-guest
exit $status
