#!/usr/bin/env bash
# bench/soak.sh [SECONDS, default 600] [WORKER_BIN]
# The worker against the dev controller with a 10 ms heartbeat and metrics, a
# system.healthCheck every 50 ms and the controller dropping the connection
# every 30 s. Records RSS (VmRSS, RssAnon), open descriptors, threads and CPU
# once a second into soak.csv and fails on growth: RssAnon growth over 1 %
# between the first and the last quarter after warm-up, descriptors or
# threads above their warm-up level (one extra descriptor is allowed while a
# reconnect is in progress).
set -uo pipefail
DUR=${1:-600}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${2:-${AIWM_BIN:-$SRC/build/aiwm-worker}}
T=$(mktemp -d /tmp/aiwm-soak.XXXXXX)
CSV=${SOAK_CSV:-$T/soak.csv}
ADMIN_TOKEN=soak-admin JWT_SECRET=soak-secret
export ADMIN_TOKEN JWT_SECRET
NODE=6650a1b2c3d4e5f6071829aa
cleanup() { kill "${WP:-}" "${CP:-}" "${LP:-}" 2>/dev/null; wait 2>/dev/null; [ "${KEEP:-0}" = 1 ] || rm -rf "$T"; }
trap cleanup EXIT

node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/port" --seed-node "$NODE" \
        --heartbeat-interval 10 --metrics-interval 10 --quiet --max-log 200 >"$T/ctl.log" 2>&1 &
CP=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
P=$(cat "$T/port")
API="http://127.0.0.1:$P"
TOKEN=$(node "$SRC/tests/controller/ctl.js" mint-token "$NODE")
env -i PATH="$PATH" CONTROLLER_WS_URL="ws://127.0.0.1:$P/ws/node" NODE_TOKEN="$TOKEN" STATE_DIR="$T/state" \
        MODEL_CACHE_DIR="$T/models" PUBLIC_IP_URLS= AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent LOG_LEVEL=warn \
        RECONNECT_DELAY=100 RECONNECT_DELAY_MAX=500 "$BIN" >"$T/worker.log" 2>&1 &
WP=$!
# Load: a command every 50 ms, a dropped connection every 30 s (one node
# process, so the load itself costs little).
node -e '
const http = require("http"); const [api, node, tok, dur] = process.argv.slice(1);
const post = (p, b) => { const r = http.request(api + p, {method: "POST", headers: {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}}); r.on("error", () => {}); r.end(JSON.stringify(b)); };
const a = setInterval(() => post("/admin/nodes/" + node + "/commands", {type: "system.healthCheck", data: {includeMetrics: true}}), 50);
const b = setInterval(() => post("/admin/faults", {mode: "drop"}), 30000);
setTimeout(() => { clearInterval(a); clearInterval(b); }, dur * 1000);' "$API" "$NODE" "$ADMIN_TOKEN" "$DUR" &
LP=$!
echo "t,vmrss_kb,rssanon_kb,fds,threads,cpu_ticks" >"$CSV"
for t in $(seq 1 "$DUR"); do
        sleep 1
        [ -d "/proc/$WP" ] || { echo "FAIL: the worker died" >&2; tail "$T/worker.log" >&2; exit 1; }
        rss=$(awk '/^VmRSS/{print $2}' "/proc/$WP/status")
        anon=$(awk '/^RssAnon/{print $2}' "/proc/$WP/status")
        thr=$(awk '/^Threads/{print $2}' "/proc/$WP/status")
        fds=$(ls "/proc/$WP/fd" | wc -l)
        cpu=$(awk '{print $14 + $15}' "/proc/$WP/stat")
        echo "$t,$rss,$anon,$fds,$thr,$cpu" >>"$CSV"
done
stats=$(curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "$API/admin/nodes/$NODE" |
        node -pe 'const c = JSON.parse(require("fs").readFileSync(0)).counters; `${c.heartbeats} heartbeats, ${c.metrics} metrics, ${c.commandsSent} commands sent, ${c.results} results, ${c.connections} connections`')
node - "$CSV" "$stats" <<'JS'
const fs = require("fs");
const rows = fs.readFileSync(process.argv[2], "utf8").trim().split("\n").slice(1).map(l => l.split(",").map(Number));
const n = rows.length, warm = Math.min(n - 4, Math.max(30, Math.floor(n / 5)));
const steady = rows.slice(warm), q = Math.max(1, Math.floor(steady.length / 4));
const med = a => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
const first = med(steady.slice(0, q).map(r => r[2])), last = med(steady.slice(-q).map(r => r[2]));
const growth = (last - first) / first * 100;
const fdBase = med(steady.slice(0, q).map(r => r[3])), fdMax = Math.max(...steady.map(r => r[3]));
const thrBase = steady[0][4], thrMax = Math.max(...steady.map(r => r[4]));
const cpu = (rows[n - 1][5] - rows[0][5]) / 100;
console.log(`soak: ${n} s; ${process.argv[3]}`);
console.log(`RssAnon ${first} kB -> ${last} kB (${growth.toFixed(2)} %), VmRSS ${rows[n - 1][1]} kB; fds ${fdBase} (max ${fdMax}); threads ${thrBase} (max ${thrMax}); CPU ${cpu.toFixed(2)} s`);
let ok = growth < 1 && fdMax <= fdBase + 1 && thrMax === thrBase;
console.log(ok ? "1 passed, 0 failed" : "0 passed, 1 failed");
process.exit(ok ? 0 : 1);
JS
