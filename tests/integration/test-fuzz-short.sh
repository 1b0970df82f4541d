#!/usr/bin/env bash
# Issue 8: every libFuzzer target, built with clang (-fsanitize=fuzzer,
# address,undefined), first replays its seed corpus file by file (the
# regression check), then fuzzes for FUZZ_SECONDS each (default 5), the
# fuzzing capped at FUZZ_BUDGET seconds in all (default 90, so the test stays
# within ~2-3 minutes on 2 cores whatever the number of targets). Any crash,
# sanitizer report, leak or timeout fails; the reproducer lands in
# tests/fuzz/findings/. Builds the fuzzers in a private build dir
# ($AIWM_BUILD_DIR/fuzz-short) unless AIWM_FUZZ_BUILD names a built one.
# Exit 77 (skip) without clang or its libFuzzer runtime.
set -uo pipefail
SRC=${AIWM_SRC:-$(cd "$(dirname "$0")/../.." && pwd)}
command -v clang >/dev/null || { echo "skip: clang not installed"; exit 77; }
probe=$(mktemp -d /tmp/aiwm-fuzzprobe.XXXXXX)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' >"$probe/p.c"
clang -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" 2>"$probe/err" ||
        { echo "skip: clang cannot link -fsanitize=fuzzer ($(head -1 "$probe/err"))"; exit 77; }

t0=$(date +%s)
if [ -n "${AIWM_FUZZ_BUILD:-}" ]; then
        B=$AIWM_FUZZ_BUILD
else
        B=${AIWM_BUILD_DIR:-/tmp}/fuzz-short
        CC=clang cmake -S "$SRC" -B "$B" -DCMAKE_BUILD_TYPE=Debug -DAIWM_FUZZ=ON -DAIWM_TESTS=OFF >"$probe/cmake.log" 2>&1 &&
                cmake --build "$B" -j"${FUZZ_BUILD_JOBS:-$(nproc)}" >>"$probe/cmake.log" 2>&1 ||
                { tail -n 40 "$probe/cmake.log"; echo "not ok - fuzz build"; echo "0 passed, 1 failed"; exit 1; }
fi
t1=$(date +%s)
echo "# fuzz targets built in $((t1 - t0)) s in $B"
pass=0 fail=0
if "$SRC/scripts/run-fuzz.sh" "$B" --regress; then
        echo "ok - every seed corpus replays clean"; pass=$((pass + 1))
else
        echo "not ok - seed corpus replay"; fail=$((fail + 1))
fi
if FUZZ_BUDGET=${FUZZ_BUDGET:-90} "$SRC/scripts/run-fuzz.sh" "$B" "${FUZZ_SECONDS:-5}"; then
        echo "ok - short fuzzing found nothing"; pass=$((pass + 1))
else
        echo "not ok - short fuzzing (reproducers in tests/fuzz/findings/)"; fail=$((fail + 1))
fi
echo "# $(($(date +%s) - t0)) s in all"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
