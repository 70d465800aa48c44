#!/usr/bin/env bash
# Builds the scanner's libFuzzer target with address and undefined-behaviour sanitizers and runs
# it for a bounded time (FUZZ_SECONDS, default 60). Exits non-zero on any sanitizer finding,
# crash, leak or timeout. Needs Debian's clang and libclang-rt (libclang-rt-14-dev).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
out=${FUZZ_OUT:-$here/fuzz/out/scan}
seconds=${FUZZ_SECONDS:-60}
cxx=${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14)}
mkdir -p "$out/corpus" "$out/artifacts"
srcs=()
for f in "$here"/cpp/scan/*.cc; do
  case "$f" in *_test.cc|*/batch.cc) ;; *) srcs+=("$f") ;; esac
done
"$cxx" -std=c++20 -g -O1 -fno-omit-frame-pointer \
  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -I"$here/cpp" "$here/fuzz/scan_fuzzer.cc" "${srcs[@]}" -o "$out/scan_fuzzer"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# New inputs go to the scratch corpus; the committed seed corpus is only read.
exec "$out/scan_fuzzer" "$out/corpus" "$here/fuzz/corpus/scan" \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix="$out/artifacts/" -print_final_stats=1
