#!/usr/bin/env bash
# run-fuzz.sh BUILD_DIR SECONDS [--regress]
# Runs every libFuzzer target built in BUILD_DIR (make fuzz) for SECONDS each,
# starting from a scratch copy of its seed corpus (tests/fuzz/corpus/<name>)
# and its dictionary (tests/fuzz/fuzz-<name>.dict). With --regress, runs each
# target over its corpus only (no new inputs): the fast regression check.
# Any crash, leak or timeout fails the run; the reproducer is copied to
# tests/fuzz/findings/ — add it to the target's corpus as a regression test
# once fixed.
set -uo pipefail
BUILD=${1:?usage: run-fuzz.sh BUILD_DIR SECONDS [--regress]}
SECONDS_EACH=${2:-60}
MODE=${3:-fuzz}
SRC=$(cd "$(dirname "$0")/.." && pwd)
SCRATCH=$(mktemp -d /tmp/aiwm-fuzz.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$SRC/tests/fuzz/findings"
fails=0
printf '%-16s %10s  %s\n' target runs result
for bin in "$BUILD"/fuzz-*; do
        [ -x "$bin" ] || continue
        t=$(basename "$bin")
        name=${t#fuzz-}
        corpus="$SCRATCH/$name"
        mkdir -p "$corpus"
        [ -d "$SRC/tests/fuzz/corpus/$name" ] && cp -r "$SRC/tests/fuzz/corpus/$name/." "$corpus/"
        args=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$SCRATCH/$name-")
        [ -f "$SRC/tests/fuzz/$t.dict" ] && args+=(-dict="$SRC/tests/fuzz/$t.dict")
        if [ "$MODE" = --regress ]; then
                args+=(-runs=0)
        else
                args+=(-max_total_time="$SECONDS_EACH")
        fi
        log="$SCRATCH/$name.log"
        if "$bin" "${args[@]}" "$corpus" >"$log" 2>&1; then
                res=ok
        else
                res=FAILED
                fails=$((fails + 1))
                cp "$SCRATCH/$name-"* "$SRC/tests/fuzz/findings/" 2>/dev/null || true
                tail -n 30 "$log" >&2
        fi
        runs=$(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#')
        printf '%-16s %10s  %s\n' "$t" "${runs:-0}" "$res"
done
if [ "$fails" -gt 0 ]; then
        echo "$fails fuzz target(s) failed; reproducers in tests/fuzz/findings/" >&2
        exit 1
fi
