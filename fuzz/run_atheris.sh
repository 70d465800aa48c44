#!/usr/bin/env bash
# Run every atheris target for a bounded time (FUZZ_SECONDS each, default 60), starting from
# the seed corpus; new inputs go to fuzz/out/<target>/, crashes to fuzz/out/crashes/.
# Needs: pip install atheris (a wheel exists for CPython 3.11 on x86_64 Linux).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
mkdir -p fuzz/out/crashes
status=0
for target in ipc manifest; do
  mkdir -p "fuzz/out/$target"
  echo "== atheris_$target for ${seconds}s"
  if ! "${PYTHON:-python3}" "fuzz/atheris_$target.py" "fuzz/out/$target" "fuzz/corpus/$target" \
      -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
      -artifact_prefix="fuzz/out/crashes/$target-" -print_final_stats=1; then
    echo "atheris_$target FOUND A CRASH: see fuzz/out/crashes/" >&2
    status=1
  fi
done
exit "$status"
