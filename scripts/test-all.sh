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
failed=()
# Each step's output goes to the terminal and to a log of its own; the fuzzers, whose progress
# lines run to thousands, only to their log, with the tail shown. The run ends with a summary
# of what failed (pytest's failures read back from its JUnit report), so that the last lines
# of a long run say it.
logs=$(mktemp -d /tmp/warden-test-logs.XXXXXX)
step() {
  local name=$1 quiet=$2
  shift 2
  local log="$logs/$(echo "$name" | tr -c 'a-zA-Z0-9\n' '-' | cut -c1-40).log"
  echo "=== $name"
  local rc
  if [ "$quiet" = quiet ]; then
    "$@" >"$log" 2>&1; rc=$?
    tail -n 12 "$log"
  else
    # Straight to the terminal (no pipe that a daemon a test started could hold open).
    "$@"; rc=$?
  fi
  if [ "$rc" -eq 0 ]; then
    echo "=== $name: ok"
  else
    echo "=== FAILED: $name (exit $rc)"
    failed+=("$name")
    if [ -f "$log" ]; then
      # What names the failure in a quiet step's log: a sanitizer's report, a crash.
      { echo "($name: its whole output is in $log)"
        grep -E '==ERROR|SUMMARY: |FOUND A CRASH|: error: ' "$log" | tail -n 20; } >"$log.summary"
    fi
    status=1
  fi
}
# The tests import the installed package: run from the repository root without python/ on
# the path (tests/ is a package, so pytest puts only the root there).
step "lint: ruff, mypy, import rules" loud scripts/lint.sh
step "pytest" loud "$PYTHON" -m pytest -p no:cacheprovider --junitxml="$logs/pytest.xml" tests
step "ctest: C++ unit tests" loud scripts/ctest.sh
if [ -x fuzz/run_scan_fuzzer.sh ]; then
  step "libFuzzer: scanner" quiet env FUZZ_SECONDS="${FUZZ_SECONDS:-60}" fuzz/run_scan_fuzzer.sh
fi
step "atheris: ipc frames and manifests" quiet env FUZZ_SECONDS="${FUZZ_SECONDS:-30}" fuzz/run_atheris.sh
step "cgroup v2 guest" loud "$PYTHON" scripts/v2-guest
echo "=== summary"
if [ "$status" -eq 0 ]; then
  echo "every step passed"
else
  for name in "${failed[@]}"; do
    echo "FAILED step: $name"
  done
  cat "$logs"/*.summary 2>/dev/null
  if [ -f "$logs/pytest.xml" ]; then
    "$PYTHON" - "$logs/pytest.xml" <<'PY'
import sys
import xml.etree.ElementTree as ET

for case in ET.parse(sys.argv[1]).iter("testcase"):
    for kind in ("failure", "error"):
        for bad in case.findall(kind):
            where = case.get("classname", "").replace(".", "/") + ".py::" + case.get("name", "")
            message = " ".join((bad.get("message") or "").split())[:300]
            print(f"{kind.upper()} {where} - {message}")
PY
  fi
fi
exit $status
