#!/usr/bin/env bash
# Issue 7: local observability. A worker with METRICS_LISTEN against the dev
# controller: /healthz follows the session, /metrics is valid Prometheus
# text (parsed by the official Python client's parser, see
# tests/tools/prom-check.py) and its figures agree with the
# telemetry.metrics the controller received (MB -> bytes); GPU figures come
# from the fake NVML so they compare exactly; counters move on a reconnect;
# the image's healthcheck script reads /healthz; LOG_FORMAT=json lines parse.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
PROM_CHECK="$AIWM_SRC/tests/tools/prom-check.py"
HEALTHCHECK="$AIWM_SRC/deploy/docker-healthcheck.sh"
NODE=6650a1b2c3d4e5f607182977
TOKEN=$(mint "$NODE")
FAKE_NVML="${AIWM_BUILD_DIR:-$AIWM_SRC/build}/fake-nvml/libnvidia-ml.so.1"
NVML_FIXTURE="$AIWM_SRC/tests/fixtures/nvidia-smi/h100/load/nvml.txt"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# http PORT PATH [curl args]: prints "STATUS\nBODY".
http() { local port=$1 path=$2; shift 2; curl -sS -m 5 -o "$T/body" -w '%{http_code}' "$@" "http://127.0.0.1:$port$path" && echo && cat "$T/body"; }
status_of() { http "$@" | head -n 1; }
wait_status() { # PORT PATH WANT SECONDS
        local i
        for i in $(seq 1 $(($4 * 10))); do
                [ "$(status_of "$1" "$2" 2>/dev/null)" = "$3" ] && return 0
                sleep 0.1
        done
        return 1
}

if ! "$PY" -c 'import prometheus_client.parser' 2>/dev/null; then
        fail "python3-prometheus-client is missing (scripts/install-deps.sh installs it)"
        finish
        exit 1
fi

# --- no controller: /healthz 503, the worker keeps retrying ---------------
P0=$(free_port)
DEAD=$(free_port)
start_worker lonely NODE_TOKEN="$TOKEN" CONTROLLER_WS_URL="ws://127.0.0.1:$DEAD/ws/node" \
        RECONNECT_DELAY=100 RECONNECT_DELAY_MAX=200 METRICS_LISTEN="127.0.0.1:$P0" AIWM_NVML_PATH=
LONELY_PID=$WORKER_PID
check "METRICS_LISTEN is served (main.c wires httpd + exporter)" wait_status "$P0" /healthz 503 10
check "/healthz 503 while not registered" \
        bash -c "[ \"\$(curl -sS -m 5 http://127.0.0.1:$P0/healthz)\" = '{\"status\":\"unavailable\",\"connected\":false,\"registered\":false}' ]"
sleep 1
curl -sS -m 5 "http://127.0.0.1:$P0/metrics" >"$T/lonely.prom"
check "/metrics valid while disconnected" "$PY" "$PROM_CHECK" "$T/lonely.prom"
check "aiwm_worker_connected 0" grep -qx 'aiwm_worker_connected 0' "$T/lonely.prom"
check "aiwm_worker_reconnects_total 0: no connection was ever up" grep -qx 'aiwm_worker_reconnects_total 0' "$T/lonely.prom"
check "aiwm_worker_registered 0" grep -qx 'aiwm_worker_registered 0' "$T/lonely.prom"
check "image healthcheck fails before registration" bash -c "! METRICS_LISTEN=127.0.0.1:$P0 '$HEALTHCHECK' >/dev/null"
check "image healthcheck passes without METRICS_LISTEN" env -u METRICS_LISTEN "$HEALTHCHECK"
stop_pid "$LONELY_PID"

# --- registered worker with a fake H100 ------------------------------------
start_controller ctl --heartbeat-interval 300 --metrics-interval 300 --seed-node "$NODE"
PORT=$(free_port)
GPU_ENV=(AIWM_NVML_PATH=)
if [ -f "$FAKE_NVML" ]; then
        GPU_ENV=(AIWM_NVML_PATH="$FAKE_NVML" AIWM_FAKE_NVML_FIXTURE="$NVML_FIXTURE")
else
        echo "# $FAKE_NVML not built: GPU figures not compared"
fi
# ":PORT": all addresses (one dual-stack socket).
start_worker w NODE_TOKEN="$TOKEN" CONTROLLER_WS_URL="ws://127.0.0.1:$CTL_PORT/ws/node" \
        RECONNECT_DELAY=100 RECONNECT_DELAY_MAX=300 METRICS_LISTEN=":$PORT" \
        LOG_FORMAT=json NVIDIA_SMI_PATH= "${GPU_ENV[@]}"
check "/healthz 200 once registered" wait_status "$PORT" /healthz 200 15
check "/healthz body" bash -c "[ \"\$(curl -sS -m 5 http://127.0.0.1:$PORT/healthz)\" = '{\"status\":\"ok\",\"connected\":true,\"registered\":true}' ]"
check "/healthz is JSON" bash -c "curl -sSI -m 5 http://127.0.0.1:$PORT/healthz | grep -qi '^Content-Type: application/json'"
if "$PY" -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
        check "all addresses: reachable over IPv6 too" \
                bash -c "[ \"\$(curl -sS -g -m 5 'http://[::1]:$PORT/healthz')\" = '{\"status\":\"ok\",\"connected\":true,\"registered\":true}' ]"
fi
check "image healthcheck passes once registered" env METRICS_LISTEN="127.0.0.1:$PORT" "$HEALTHCHECK"
check "404 elsewhere" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -m 5 http://127.0.0.1:$PORT/nope)\" = 404 ]"
check "POST refused with 405" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -m 5 -X POST http://127.0.0.1:$PORT/metrics)\" = 405 ]"
check "HEAD /metrics: headers only" bash -c "curl -sSI -m 5 http://127.0.0.1:$PORT/metrics | grep -qi '^Content-Type: text/plain; version=0.0.4'"

# Let a few telemetry.metrics reach the controller, then scrape.
api GET "/admin/nodes/$NODE/events?type=telemetry.metrics&wait=5000&min=3" >/dev/null
# The controller's view first, then the scrape: counters read later are never behind it (the
# other order races with a telemetry.metrics arriving in between).
api GET "/admin/nodes/$NODE" >"$T/node.json"
curl -sS -m 5 "http://127.0.0.1:$PORT/metrics" >"$T/w.prom"
check "/metrics is valid Prometheus text (official parser + strict checks)" \
        bash -c "'$PY' '$PROM_CHECK' --json '$T/w.prom' >'$T/w.json'"

# compare NAME: runs a Python predicate over m (scrape) and c (controller data).
compare() {
        local what=$1 expr=$2
        check "$what" "$PY" - "$T/w.json" "$T/node.json" "$expr" <<'PYEOF'
import json, sys
m = json.load(open(sys.argv[1]))
node = json.load(open(sys.argv[2]))
c = node["lastMetricsData"]["data"]
MiB = 1048576
def g(key):
    if key not in m:
        raise SystemExit("missing series %s" % key)
    return m[key]
ok = eval(sys.argv[3])
if not ok:
    raise SystemExit("false: %s" % sys.argv[3])
PYEOF
}
compare "cpu cores match" 'g("aiwm_node_cpu_cores{}") == c["cpu"]["cores"]'
compare "cpu usage is a percentage" '0 <= g("aiwm_node_cpu_usage_percent{}") <= 100'
compare "load1 present" 'g("aiwm_node_load1{}") >= 0'
compare "memory total = MB x 1048576" 'g("aiwm_node_memory_total_bytes{}") == c["memory"]["total"] * MiB'
compare "memory used close to the controller's (within 5% of total)" \
        'abs(g("aiwm_node_memory_used_bytes{}") - c["memory"]["used"] * MiB) <= 0.05 * c["memory"]["total"] * MiB'
compare "disk total = MB x 1048576" 'g("aiwm_node_disk_total_bytes{path=\"/\"}") == c["disk"]["total"] * MiB'
compare "network counters never behind the controller's" \
        'g("aiwm_node_network_receive_bytes_total{}") >= c["network"]["bytesReceived"] and g("aiwm_node_network_transmit_packets_total{}") >= c["network"]["packetsSent"]'
compare "uptime present" 'g("aiwm_node_uptime_seconds{}") > 0'
compare "GPU count matches gpuDevices" 'g("aiwm_gpus{}") == len(c["gpuDevices"])'
if [ -f "$FAKE_NVML" ]; then
        GPU_LABELS='"{gpu=\"%s\",name=\"%s\",uuid=\"%s\"}" % (c["gpuDevices"][0]["deviceId"], c["gpuDevices"][0]["model"], c["gpuDevices"][0]["uuid"])'
        compare "one fake H100 seen" 'len(c["gpuDevices"]) == 1'
        compare "GPU up" "g(\"aiwm_gpu_up\" + $GPU_LABELS) == 1"
        compare "GPU memory total/used = MB x 1048576" \
                "g(\"aiwm_gpu_memory_total_bytes\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"memoryTotal\"] * MiB and g(\"aiwm_gpu_memory_used_bytes\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"memoryUsed\"] * MiB"
        compare "GPU utilization, temperature, power match exactly" \
                "g(\"aiwm_gpu_utilization_percent\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"utilization\"] and g(\"aiwm_gpu_temperature_celsius\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"temperature\"] and g(\"aiwm_gpu_power_draw_watts\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"powerDraw\"] and g(\"aiwm_gpu_power_limit_watts\" + $GPU_LABELS) == c[\"gpuDevices\"][0][\"powerLimit\"]"
        compare "per-process GPU memory matches" \
                'all(m["aiwm_gpu_process_memory_used_bytes{gpu=\"0\",pid=\"%d\",process=\"%s\",uuid=\"%s\"}" % (p["pid"], p["processName"], c["gpuDevices"][0]["uuid"])] == p["memoryUsed"] * MiB for p in c["gpuDevices"][0]["processes"]) and len(c["gpuDevices"][0]["processes"]) > 0'
fi
VERSION=$("$AIWM_BIN" --version | awk '{print $2}')
compare "aiwm_worker_info carries the version" "g('aiwm_worker_info{version=\"$VERSION\"}') == 1"
compare "connected and registered" 'g("aiwm_worker_connected{}") == 1 and g("aiwm_worker_registered{}") == 1'
compare "outbox depth exported" 'g("aiwm_worker_outbox_depth{}") >= 0'

# --- a reconnect moves the counter ---------------------------------------
before=$(awk '/^aiwm_worker_reconnects_total /{print $2}' "$T/w.prom")
api POST "/admin/nodes/$NODE/kick" >/dev/null
sleep 0.5
check "/healthz 200 again after the kick" wait_status "$PORT" /healthz 200 10
after=$(curl -sS -m 5 "http://127.0.0.1:$PORT/metrics" | awk '/^aiwm_worker_reconnects_total /{print $2}')
check "aiwm_worker_reconnects_total grew ($before -> $after)" test "$after" -gt "$before"

# --- many scrapes, concurrently, stay correct --------------------------------
scrape_many() {
        local i pids=()
        for i in $(seq 1 40); do
                curl -sS -m 10 -o "$T/par.$i" "http://127.0.0.1:$PORT/metrics" & pids+=($!)
        done
        wait "${pids[@]}" || return 1
        for i in $(seq 1 40); do "$PY" "$PROM_CHECK" "$T/par.$i" || return 1; done
}
check "40 concurrent scrapes all valid" scrape_many
check "worker alive" kill -0 "$WORKER_PID"

# --- commands by type and outcome -----------------------------------------
node "$CTL_DIR/ctl.js" send --url "$CTL_URL" --admin-token "$ADMIN_TOKEN" --node "$NODE" --type system.healthCheck --wait 10 >/dev/null
node "$CTL_DIR/ctl.js" send --url "$CTL_URL" --admin-token "$ADMIN_TOKEN" --node "$NODE" --type no.such --wait 10 >/dev/null || true
curl -sS -m 5 "http://127.0.0.1:$PORT/metrics" >"$T/cmds.prom"
check "commands counted: healthCheck success" grep -q 'aiwm_worker_commands_total{type="system.healthCheck",outcome="success"} 1' "$T/cmds.prom"
check "commands counted: unknown type invalid" grep -q 'aiwm_worker_commands_total{type="no.such",outcome="invalid"} 1' "$T/cmds.prom"

# --- LOG_FORMAT=json: every line of the worker's log is one JSON object ----
check "LOG_FORMAT=json lines parse" "$PY" - "$T/w.log" <<'PYEOF'
import json, sys
n = 0
for line in open(sys.argv[1], encoding="utf-8"):
    o = json.loads(line)
    assert isinstance(o, dict) and {"time", "level", "message"} <= o.keys(), line
    assert o["level"] in ("debug", "info", "warn", "error"), line
    n += 1
assert n >= 3, n
PYEOF
check "json log announces the listener" grep -q '"message":"serving /metrics and /healthz"' "$T/w.log"

finish
