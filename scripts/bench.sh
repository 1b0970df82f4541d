#!/usr/bin/env bash
# scripts/bench.sh [BUILD_DIR]: every benchmark, one table at the end.
#
# Builds BUILD_DIR (default build; Release, with the test helpers that
# bench-gpu needs), runs every bench-* executable built from bench/bench-*.c,
# then bench/bench-transport.sh against BUILD_DIR/aiwm-worker, every other
# bench/bench-*.sh with BUILD_DIR as its argument (e.g. bench-deploy.sh),
# and bench/bench-download.sh when BENCH_DOWNLOAD=1 (2 GiB, slow). Each bench
# measures its baseline in the same run; one that exits 77 is skipped (a
# peer such as podman missing), not failed.
#
# Output contract for benches: besides anything else they print, a bench
# reports each figure as one line
#     BENCH <figure>\t<our value>\t<baseline value>\t<unit>
# (tab-separated; values are plain numbers, the baseline `-` when there is
# none). Those lines are collected into the final table (figure, ours,
# baseline, ratio = ours / baseline) and into BUILD_DIR/bench-results.json;
# everything else a bench prints is shown as is. Not part of the tests:
# timings are for reading, not asserting. Exit 1 when a bench failed.
# BENCH_COMMIT names the commit in the JSON when the source is not a git
# checkout (default: git rev-parse --short HEAD).
set -uo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
T=$(mktemp -d /tmp/aiwm-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DAIWM_TESTS=ON >/dev/null || exit 1
cmake --build "$BUILD" -j"$JOBS" >"$T/build.log" 2>&1 || { tail -n 40 "$T/build.log" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
: >"$T/bench.tsv"
failed=()

# run NAME CMD...: shows the output, keeps its BENCH lines.
run() {
        local name=$1 rc
        shift
        echo "== $name"
        "$@" 2>&1 | tee "$T/out"
        rc=${PIPESTATUS[0]}
        if [ "$rc" = 77 ]; then
                echo "== $name: skipped"
        elif [ "$rc" != 0 ]; then
                echo "== $name: exit $rc"
                failed+=("$name")
        fi
        grep -P '^BENCH [^\t]+\t[^\t]*\t[^\t]*\t[^\t]*$' "$T/out" | sed "s/^BENCH /$name\t/" >>"$T/bench.tsv"
        echo
}

for b in "$BUILD"/bench-*; do
        [ -f "$b" ] && [ -x "$b" ] || continue
        run "$(basename "$b")" bash -c 'cd "$1" && exec "$2"' _ "$BUILD" "$b"
done
run bench-transport env BENCH_JSON="$T/transport.json" bash "$SRC/bench/bench-transport.sh" "$BUILD/aiwm-worker"
for sh in "$SRC"/bench/bench-*.sh; do
        case $(basename "$sh") in
        bench-transport.sh | bench-download.sh) continue ;;
        esac
        run "$(basename "$sh" .sh)" bash "$sh" "$BUILD"
done
if [ "${BENCH_DOWNLOAD:-0}" = 1 ]; then
        run bench-download bash "$SRC/bench/bench-download.sh" "$BUILD/aiwm-worker"
fi

COMMIT=${BENCH_COMMIT:-$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)}
node - "$T/bench.tsv" "$BUILD/bench-results.json" "$T/transport.json" "$COMMIT" "${failed[*]:-}" <<'JS'
const [tsv, out, transport, commit, failed] = process.argv.slice(2);
const fs = require('fs');
const os = require('os');
const num = (s) => (s !== undefined && s.trim() !== '' && s.trim() !== '-' && Number.isFinite(Number(s)) ? Number(s) : null);
const rows = fs.readFileSync(tsv, 'utf8').split('\n').filter(Boolean).map((l) => {
  const [bench, figure, ours, baseline, unit] = l.split('\t');
  const o = num(ours), b = num(baseline);
  return { bench, figure, ours: o === null ? ours : o, baseline: b === null ? (baseline === '-' ? null : baseline) : b,
    unit: unit || '', ratio: o !== null && b ? o / b : null };
});
const w = [Math.max(5, ...rows.map((r) => r.bench.length)), Math.max(6, ...rows.map((r) => r.figure.length)), 14, 14, 7];
const cell = (s, i) => (i >= 2 ? String(s).padStart(w[i]) : String(s).padEnd(w[i]));
const fmt = (v, u) => (v === null || v === undefined ? '-' : `${v} ${u}`);
const cpu = os.cpus();
console.log(`== summary (ratio = ours / baseline): ${new Date().toISOString()}, commit ${commit}, ` +
  `${cpu.length} x ${cpu[0] ? cpu[0].model.trim() : '?'}, Linux ${os.release()}, ${Math.round(os.totalmem() / 1048576)} MiB`);
console.log([ 'bench', 'figure', 'ours', 'baseline', 'ratio' ].map(cell).join(' '));
for (const r of rows) {
  const ratio = r.ratio === null ? '-' : r.ratio === 0 || r.ratio >= 0.1 ? r.ratio.toFixed(2) : r.ratio.toPrecision(2);
  console.log([r.bench, r.figure, fmt(r.ours, r.unit), fmt(r.baseline, r.unit), ratio].map(cell).join(' '));
}
if (!rows.length) console.log('(no BENCH lines)');
console.log('original TypeScript worker (issue 2): ~1.0 s spawn -> register, 76-80 MiB RSS (93 MiB peak), ~7 ms CPU per heartbeat');
fs.writeFileSync(out, JSON.stringify({
  date: new Date().toISOString(), commit,
  host: { cpus: cpu.length, cpuModel: cpu[0] && cpu[0].model, kernel: os.release(), memTotalMiB: Math.round(os.totalmem() / 1048576) },
  format: 'BENCH <figure>\\t<ours>\\t<baseline>\\t<unit>',
  results: rows,
  failed: failed ? failed.split(' ') : [],
  original: { spawnToRegisterMs: 1000, rssMiB: [76, 80], rssPeakMiB: 93, cpuMsPerHeartbeat: 7 },
  transport: fs.existsSync(transport) ? JSON.parse(fs.readFileSync(transport, 'utf8')) : null,
}, null, 1));
console.log(`results: ${out}`);
JS
if [ "${#failed[@]}" -gt 0 ]; then
        echo "failed: ${failed[*]}" >&2
        exit 1
fi
