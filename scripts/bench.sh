#!/usr/bin/env bash
# bench.sh BUILD_DIR: runs every benchmark built from bench/bench-*.c and the
# scripted ones; each prints its figure beside a baseline measured in the
# same run. Not part of the tests: timings are for reading, not asserting.
set -uo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAIWM_TESTS=ON >/dev/null
cmake --build "$BUILD" -j"$(nproc)" >/dev/null
for b in "$BUILD"/bench-*; do
        [ -x "$b" ] || continue
        echo "== $(basename "$b")"
        (cd "$BUILD" && "$b")
done
if [ "${BENCH_DOWNLOAD:-0}" = 1 ]; then
        echo "== bench-download (2 GiB)"
        bash "$SRC/bench/bench-download.sh" "$BUILD/aiwm-worker"
fi
