#!/usr/bin/env bash
# make demo: starts the dev controller and a worker on this machine, shows
# them connect, register and exchange heartbeats and a command, then stops.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-build/aiwm-worker}
DEMO_SECONDS=${DEMO_SECONDS:-12}
scripts/install-deps.sh
T=$(mktemp -d /tmp/aiwm-demo.XXXXXX)
cleanup() { kill "${WPID:-}" "${CPID:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

export JWT_SECRET=demo-secret ADMIN_TOKEN=demo-admin
NODE_ID=6650a1b2c3d4e5f607182930
echo "== starting the dev controller (socket.io@4 + jsonwebtoken) on 127.0.0.1"
HEARTBEAT_INTERVAL=2000 METRICS_INTERVAL=4000 \
  node tests/controller/server.js --port 0 --port-file "$T/port" >"$T/controller.log" 2>&1 &
CPID=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
PORT=$(cat "$T/port")
echo "   controller on port $PORT"
echo "== provisioning node $NODE_ID through the REST API"
curl -sS -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  --data "{\"_id\":\"$NODE_ID\",\"name\":\"demo-node\",\"role\":[\"worker\"]}" "http://127.0.0.1:$PORT/api/nodes" >/dev/null
TOKEN=$(curl -sS -X POST -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' \
  --data '{"expiresIn":3600}' "http://127.0.0.1:$PORT/api/nodes/$NODE_ID/token" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).token))')
printf 'NODE_TOKEN=%s\n' "$TOKEN" > "$T/token.env"
echo "== starting the worker: $BIN"
CONTROLLER_WS_URL="ws://127.0.0.1:$PORT/ws/node" STATE_DIR="$T/state" MODEL_CACHE_DIR="$T/models" \
  PUBLIC_IP_URLS= LOG_LEVEL=info "$BIN" --env-file "$T/token.env" 2>&1 | sed -u "s/^/   worker | /" &
WPID=$!
sleep 3
echo "== sending system.healthCheck from the controller"
node tests/controller/ctl.js send --url "http://127.0.0.1:$PORT" --admin-token "$ADMIN_TOKEN" --node "$NODE_ID" \
  --type system.healthCheck --data '{"includeMetrics":true}' --wait 10 | sed 's/^/   result | /'
sleep "$DEMO_SECONDS"
echo "== what the controller recorded"
curl -sS -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$PORT/admin/nodes" | sed 's/^/   /'
echo
echo "== demo done"
