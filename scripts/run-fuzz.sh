#!/usr/bin/env bash
# run-fuzz.sh BUILD_DIR [SECONDS] [--regress]
#
# Runs every libFuzzer target built in BUILD_DIR (fuzz-* executables, from
# `make fuzz`: clang, -DAIWM_FUZZ=ON).
#
#   fuzz mode (default): each target fuzzes for SECONDS (default 60,
#     -max_total_time) starting from a scratch copy of its seed corpus
#     tests/fuzz/corpus/<name>/ (fuzz-<name> -> <name>; the repository's
#     corpus is never written), with tests/fuzz/fuzz-<name>.dict when present,
#     -rss_limit_mb=2048 -timeout=10.
#   --regress: each target runs every file of its corpus once, as is, and
#     nothing else (no mutation): the fast regression check for CI.
#
# Any crash, sanitizer report (ASan, UBSan, LeakSanitizer), timeout or
# out-of-memory fails the run (exit 1); the reproducer is copied to
# tests/fuzz/findings/ (gitignored) with the commands to replay it, minimise
# it and keep it as a regression test. Prints a table: target, mode, runs,
# corpus files, result. Exit 2 when BUILD_DIR holds no fuzz target.
#
# Environment: FUZZ_ONLY=a,b (targets by name, with or without fuzz-),
# FUZZ_BUDGET=S (cap on the total fuzzing time: each target gets
# min(SECONDS, S / targets), at least 1 s), FUZZ_JOBS is not supported (the
# test machines have 2 cores: one target at a time).
set -uo pipefail

usage() { echo "usage: run-fuzz.sh BUILD_DIR [SECONDS] [--regress]" >&2; exit 64; }
MODE=fuzz
POS=()
for a in "$@"; do
        case $a in
        --regress) MODE=regress ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) usage ;;
        *) POS+=("$a") ;;
        esac
done
[ "${#POS[@]}" -ge 1 ] || usage
BUILD=${POS[0]}
SECS=${POS[1]:-60}
[[ $SECS =~ ^[0-9]+$ ]] || usage
SRC=$(cd "$(dirname "$0")/.." && pwd)
FINDINGS=$SRC/tests/fuzz/findings
SCRATCH=$(mktemp -d /tmp/aiwm-fuzz.XXXXXX)
trap 'rm -rf "$SCRATCH"' EXIT
# UBSan in the fuzz build recovers by default: make every report fatal so
# libFuzzer sees it. Keep what the caller set.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}

targets=()
for bin in "$BUILD"/fuzz-*; do
        [ -f "$bin" ] && [ -x "$bin" ] || continue
        t=$(basename "$bin")
        if [ -n "${FUZZ_ONLY:-}" ]; then
                case ",$FUZZ_ONLY," in *",$t,"*|*",${t#fuzz-},"*) ;; *) continue ;; esac
        fi
        targets+=("$t")
done
if [ "${#targets[@]}" -eq 0 ]; then
        echo "run-fuzz: no fuzz-* targets in $BUILD (build them with: make fuzz)" >&2
        exit 2
fi
if [ "$MODE" = fuzz ] && [ -n "${FUZZ_BUDGET:-}" ]; then
        per=$((FUZZ_BUDGET / ${#targets[@]}))
        [ "$per" -lt 1 ] && per=1
        [ "$per" -lt "$SECS" ] && SECS=$per
fi

# classify LOG: the kind of failure libFuzzer or a sanitizer reported.
classify() {
        local log=$1
        if grep -q 'ERROR: LeakSanitizer' "$log"; then echo leak
        elif grep -Eq 'SUMMARY: libFuzzer: timeout|ALARM: working on the last Unit' "$log"; then echo timeout
        elif grep -Eq 'out-of-memory|SUMMARY: libFuzzer: (out-of-memory|malloc limit)' "$log"; then echo oom
        elif grep -q 'runtime error:' "$log"; then echo ubsan
        elif grep -q 'ERROR: AddressSanitizer' "$log"; then echo asan
        elif grep -q 'deadly signal' "$log"; then echo crash
        else echo "failed"
        fi
}

fails=0
rows=()
report=()
[ "$MODE" = fuzz ] && echo "# fuzzing ${#targets[@]} target(s) for ${SECS} s each" \
        || echo "# replaying the seed corpus of ${#targets[@]} target(s)"
for t in "${targets[@]}"; do
        bin=$BUILD/$t
        name=${t#fuzz-}
        seed=$SRC/tests/fuzz/corpus/$name
        corpus=$SCRATCH/corpus/$name
        art=$SCRATCH/artifacts/$name/
        log=$SCRATCH/$name.log
        mkdir -p "$corpus" "$art"
        [ -d "$seed" ] && cp -r "$seed/." "$corpus/"
        nseed=$(find "$corpus" -type f | wc -l)
        args=(-rss_limit_mb=2048 -timeout=10 -artifact_prefix="$art" -print_final_stats=1)
        [ -f "$SRC/tests/fuzz/$t.dict" ] && args+=(-dict="$SRC/tests/fuzz/$t.dict")
        if [ "$MODE" = regress ]; then
                # Every file exactly as stored (no -max_len truncation), once.
                mapfile -t files < <(find "$corpus" -type f | sort)
                if [ "${#files[@]}" -eq 0 ]; then
                        : >"$SCRATCH/empty-input"
                        files=("$SCRATCH/empty-input")
                fi
                timeout 600 "$bin" "${args[@]}" "${files[@]}" >"$log" 2>&1
                rc=$?
                runs=$(grep -c '^Executed ' "$log")
        else
                timeout $((SECS + 120)) "$bin" "${args[@]}" -max_total_time="$SECS" "$corpus" >"$log" 2>&1
                rc=$?
                runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
                [ -n "$runs" ] || runs=$(grep -Eo '^#[0-9]+' "$log" | tail -1 | tr -d '#')
        fi
        ncorp=$(find "$corpus" -type f | wc -l)
        if [ "$rc" -eq 0 ] && ! grep -Eq 'runtime error:|ERROR: (AddressSanitizer|LeakSanitizer)' "$log"; then
                res=ok
        else
                fails=$((fails + 1))
                if [ "$rc" -eq 124 ]; then res="hung (killed)"; else res=$(classify "$log"); fi
                res="FAILED: $res"
                mkdir -p "$FINDINGS"
                found=()
                for f in "$art"*; do
                        [ -f "$f" ] || continue
                        dst=$FINDINGS/$t-$(basename "$f")
                        cp "$f" "$dst"
                        found+=("$dst")
                done
                cp "$log" "$FINDINGS/$t.log"
                report+=("" "=== $t: $res (log: tests/fuzz/findings/$t.log)")
                report+=("$(grep -E -m1 -A12 'ERROR: |runtime error:|ALARM:|deadly signal' "$log" | head -n 14)")
                if [ "${#found[@]}" -eq 0 ] && [ "$MODE" = regress ]; then
                        # File mode writes no artifact: the input is the last one started.
                        last=$(sed -n 's/^Running: //p' "$log" | tail -1)
                        if [ -n "$last" ] && [ -f "$last" ]; then
                                dst=$FINDINGS/$t-regress-$(basename "$last")
                                cp "$last" "$dst"
                                found+=("$dst")
                                report+=("failing corpus file: tests/fuzz/corpus/$name/${last#"$corpus"/}")
                        fi
                fi
                if [ "${#found[@]}" -eq 0 ]; then
                        report+=("no reproducer was written (the failure happened outside one input: see the log)")
                fi
                for f in "${found[@]}"; do
                        rel=${f#"$SRC"/}
                        report+=("reproducer: $rel"
                                "  replay (from the repository root):"
                                "             $bin $rel"
                                "  minimise:  $bin -minimize_crash=1 -runs=10000 -exact_artifact_path=$rel.min $rel"
                                "  then fix the bug and keep the input as a regression test:"
                                "             cp $rel tests/fuzz/corpus/$name/regress-<what-it-was>"
                                "  (scripts/run-fuzz.sh BUILD --regress and test-fuzz-short replay every corpus file)")
                done
        fi
        rows+=("$(printf '%-16s %-8s %12s %8s  %s' "$t" "$MODE" "${runs:-0}" "$nseed/$ncorp" "$res")")
        echo "# $t: ${runs:-0} runs, $res"
done

echo
printf '%-16s %-8s %12s %8s  %s\n' target mode runs corpus result
printf '%s\n' "${rows[@]}"
if [ "$fails" -gt 0 ]; then
        printf '%s\n' "${report[@]}" >&2
        echo >&2
        echo "$fails of ${#targets[@]} fuzz target(s) failed; reproducers in tests/fuzz/findings/" >&2
        exit 1
fi
echo "${#targets[@]} target(s) ok"
