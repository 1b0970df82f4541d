#!/usr/bin/env bash
# Issue 8: every libFuzzer target, built with clang (-fsanitize=fuzzer,
# address,undefined), runs over its seed corpus and then fuzzes for a few
# seconds (FUZZ_SECONDS, default 3). Any crash, leak or timeout fails.
set -euo pipefail
SRC=${AIWM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v clang >/dev/null || { echo "skip: clang not installed"; exit 77; }
B=${AIWM_FUZZ_BUILD:-${AIWM_BUILD_DIR:-/tmp}/fuzz-short}
CC=clang cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Debug -DAIWM_FUZZ=ON -DAIWM_TESTS=OFF >/dev/null
cmake --build "$B" -j"$(nproc)" >/dev/null
"$SRC/scripts/run-fuzz.sh" "$B" 0 --regress
"$SRC/scripts/run-fuzz.sh" "$B" "${FUZZ_SECONDS:-3}"
n=$(ls "$B"/fuzz-* | wc -l)
echo "$n passed, 0 failed"
