#!/usr/bin/env bash
# bench/soak.sh [DURATION] [WORKER_BIN]
#
# The worker against the dev controller with a 10 ms heartbeat and 10 ms
# metrics (--heartbeat-interval 10 --metrics-interval 10), a
# system.healthCheck every 50 ms and the controller dropping the TCP
# connection every 30 s (POST /admin/faults {"mode":"drop"}). Once a second
# it records the worker's VmRSS and RssAnon (/proc/PID/status), open
# descriptors (/proc/PID/fd), threads and CPU ticks into a CSV, then judges
# it with bench/soak-report.js: RssAnon and VmRSS under 1 % growth after the
# warm-up (median of the second minute against the median of the last minute;
# proportional windows for short runs), descriptors and threads back to the
# same steady state (+2 allowed while a reconnect is in progress), and the
# load really applied.
#
# DURATION: minutes (default 10), or with a unit: 90s, 10m, 1h.
# WORKER_BIN: default $AIWM_BIN, else build/aiwm-worker.
# SOAK_CSV=FILE keeps the samples there (otherwise in a temp dir, kept and
# named on failure); KEEP=1 keeps the temp dir.
set -uo pipefail
ARG=${1:-10}
case $ARG in
*s) DUR=${ARG%s} ;;
*m) DUR=$((${ARG%m} * 60)) ;;
*h) DUR=$((${ARG%h} * 3600)) ;;
*) DUR=$((ARG * 60)) ;;
esac
[[ $DUR =~ ^[0-9]+$ ]] && [ "$DUR" -ge 60 ] || { echo "soak: duration must be at least 60s (got $ARG)" >&2; exit 64; }
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-${AIWM_BIN:-$SRC/build/aiwm-worker}}
[ -x "$BIN" ] || { echo "soak: no worker binary at $BIN (make first)" >&2; exit 1; }
T=$(mktemp -d /tmp/aiwm-soak.XXXXXX)
CSV=${SOAK_CSV:-$T/soak.csv}
ADMIN_TOKEN=soak-admin JWT_SECRET=soak-secret
export ADMIN_TOKEN JWT_SECRET
NODE=6650a1b2c3d4e5f6071829aa
RC=1
cleanup() {
        kill "${LP:-}" "${WP:-}" "${CP:-}" 2>/dev/null
        wait 2>/dev/null
        if [ "${KEEP:-0}" = 1 ] || [ "$RC" != 0 ]; then
                echo "# soak files kept in $T (csv: $CSV)" >&2
        else
                rm -rf "$T"
        fi
}
trap cleanup EXIT

node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/port" --seed-node "$NODE" \
        --heartbeat-interval 10 --metrics-interval 10 --quiet --max-log 200 >"$T/ctl.log" 2>&1 &
CP=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || { echo "soak: the controller did not start" >&2; cat "$T/ctl.log" >&2; exit 1; }
P=$(cat "$T/port")
API="http://127.0.0.1:$P"
TOKEN=$(node "$SRC/tests/controller/ctl.js" mint-token "$NODE")
mkdir -p "$T/state" "$T/models"
# A sanitizer build: ASan's quarantine and shadow memory grow by design, so
# memory is reported, not judged (descriptors, threads and the exit are).
REPORT_ARGS=()
if grep -qa __asan_init "$BIN"; then
        REPORT_ARGS=(--no-memory)
        echo "# AddressSanitizer build: memory growth reported, not judged"
fi
env -i PATH="$PATH" HOME="$T" CONTROLLER_WS_URL="ws://127.0.0.1:$P/ws/node" NODE_TOKEN="$TOKEN" STATE_DIR="$T/state" \
        MODEL_CACHE_DIR="$T/models" PUBLIC_IP_URLS= AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent LOG_LEVEL=warn \
        RECONNECT_DELAY=100 RECONNECT_DELAY_MAX=500 ${ASAN_OPTIONS:+ASAN_OPTIONS="$ASAN_OPTIONS"} \
        ${UBSAN_OPTIONS:+UBSAN_OPTIONS="$UBSAN_OPTIONS"} "$BIN" >"$T/worker.log" 2>&1 &
WP=$!
node "$SRC/tests/controller/ctl.js" wait --url "$API" --node "$NODE" --state registered --wait 15 >/dev/null ||
        { echo "soak: the worker did not register" >&2; tail "$T/worker.log" >&2; exit 1; }
echo "# soak: $DUR s against $BIN (pid $WP); samples in $CSV"

# Load and sampling in one node process (little noise): a command every
# 50 ms, a drop every 30 s, one CSV row a second, a progress line a minute.
node - "$API" "$NODE" "$ADMIN_TOKEN" "$DUR" "$WP" "$CSV" "$T/summary.json" "$(getconf CLK_TCK)" <<'JS' &
const [api, node, tok, durS, pid, csv, sumPath, hz] = process.argv.slice(2);
const fs = require('fs');
const dur = Number(durS) * 1000;
const H = { Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json' };
const post = (p, b) => fetch(api + p, { method: 'POST', headers: H, body: JSON.stringify(b) }).catch(() => {});
let drops = 0;
const t0 = Date.now();
const a = setInterval(() => post(`/admin/nodes/${node}/commands`, { type: 'system.healthCheck', data: { includeMetrics: true } }), 50);
// No drop in the last 5 s: each one must be followed by a reconnect in the run.
const b = setInterval(() => {
  if (Date.now() - t0 > dur - 5000) return;
  drops++;
  post('/admin/faults', { mode: 'drop' });
}, 30000);
const field = (txt, k) => { const m = new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(txt); return m ? Number(m[1]) : NaN; };
fs.writeFileSync(csv, 't,vmrss_kb,rssanon_kb,fds,threads,cpu_ticks\n');
let n = 0;
function sample() {
  n++;
  let row;
  try {
    const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
    row = [n, field(st, 'VmRSS'), field(st, 'RssAnon'), fds, field(st, 'Threads'), Number(f[11]) + Number(f[12])];
  } catch (e) {
    console.error(`soak: the worker is gone at t=${n} s`);
    process.exit(3);
  }
  fs.appendFileSync(csv, row.join(',') + '\n');
  if (n % 60 === 0) console.log(`# t=${n} s: RssAnon ${row[2]} kB, VmRSS ${row[1]} kB, ${row[3]} fds, ${row[4]} threads, ${row[5]} ticks`);
  if (n * 1000 >= dur) return finish();
  setTimeout(sample, Math.max(0, t0 + (n + 1) * 1000 - Date.now()));
}
async function finish() {
  clearInterval(a);
  clearInterval(b);
  const r = await fetch(`${api}/admin/nodes/${node}`, { headers: H });
  const c = (await r.json()).counters;
  fs.writeFileSync(sumPath, JSON.stringify({ heartbeats: c.heartbeats, metrics: c.metrics, commandsSent: c.commandsSent,
    results: c.results, connections: c.connections, drops, ticksPerSecond: Number(hz) }));
  process.exit(0);
}
setTimeout(sample, 1000);
JS
LP=$!
wait "$LP"
lrc=$?
LP=
if [ "$lrc" != 0 ]; then
        echo "not ok - the worker died during the soak" >&2
        tail -n 20 "$T/worker.log" >&2
        echo "0 passed, 1 failed"
        exit 1
fi
node "$SRC/bench/soak-report.js" "${REPORT_ARGS[@]}" "$CSV" "$T/summary.json"
RC=$?
# The worker leaves cleanly after all that (a sanitizer's exit report too).
kill -TERM "$WP"
wait "$WP"
wrc=$?
WP=
if [ "$wrc" = 0 ]; then
        echo "ok - SIGTERM after the soak: exit 0"
else
        echo "not ok - SIGTERM after the soak: exit $wrc"
        tail -n 30 "$T/worker.log"
        RC=1
fi
exit "$RC"
