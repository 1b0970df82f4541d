#!/usr/bin/env bash
# Issue 3: inventory and telemetry. `inventory` against independent readings
# of this machine; GPUs through the fake libnvidia-ml.so and the fake
# nvidia-smi fed with real captures; register/heartbeat/metrics as the
# controller receives them; public IP lookup; container runtime absent.
. "$(dirname "$0")/lib.sh"

BUILD=${AIWM_BUILD_DIR:-$AIWM_SRC/build-test}
FAKE_NVML=$BUILD/fake-nvml/libnvidia-ml.so.1
FIX=$AIWM_SRC/tests/fixtures/nvidia-smi
inv() { env -i PATH="$PATH" PUBLIC_IP_URLS= DOCKER_SOCKET="$T/none.sock" "$@" "$AIWM_BIN" inventory 2>"$T/inv.err"; }

# --- this machine, against nproc, free -m, df -m, uname -r ----------------
inv AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent >"$T/inv.json"
check "inventory exits 0 and prints JSON" node -e 'JSON.parse(require("fs").readFileSync(process.argv[1]))' "$T/inv.json"
get() { json_get "$1" <"$T/inv.json"; }
check "cpuCores = nproc ($(get this.cpuCores))" test "$(get this.cpuCores)" = "$(nproc)"
free_total=$(free -m | awk '/^Mem:/{print $2}')
check "ramTotal = free -m total ($(get this.ramTotal) vs $free_total)" test "$(get this.ramTotal)" = "$free_total"
df_total=$(df -m --output=size / | tail -1 | tr -d ' ')
check "diskTotal = df -m / ($(get this.diskTotal) vs $df_total)" test "$(get this.diskTotal)" = "$df_total"
check "kernel = uname -r" test "$(get this.os.kernel)" = "$(uname -r)"
check "hostname = uname -n" test "$(get this.hostname)" = "$(uname -n)"
check "arch in Node's vocabulary" test "$(get this.os.arch)" = "$(node -p process.arch)"
. /etc/os-release
check "distro from os-release" test "$(get this.os.distro)" = "$NAME"
defif=$(awk '$2=="00000000"{print $1; exit}' /proc/net/route)
if [ -n "$defif" ]; then
        ip4=$(ip -4 -o addr show dev "$defif" | awk '{split($4,a,"/"); print a[1]; exit}')
        check "ipAddress is the default-route interface's ($ip4)" test "$(get this.ipAddress)" = "$ip4"
fi
check "no GPU: empty list" test "$(get 'this.gpuDevices.length')" = 0
check "no GPU: reason logged once" test "$(grep -c 'no GPUs reported' "$T/inv.err")" = 1
check "runtime unavailable, not an error" test "$(get this.containerRuntime.version)" = unavailable
check "publicIpAddress unknown when lookups are off" test "$(get this.publicIpAddress)" = unknown

# --- GPUs through the fake NVML (real H100 capture) ------------------------
inv AIWM_NVML_PATH="$FAKE_NVML" AIWM_FAKE_NVML_FIXTURE="$FIX/h100/load/nvml.txt" >"$T/inv.json"
check "NVML: one H100" test "$(get 'this.gpuDevices[0].model')" = "NVIDIA H100 80GB HBM3"
check "NVML: memoryTotal in MiB" test "$(get 'this.gpuDevices[0].memoryTotal')" = 81559
check "NVML: driver and CUDA versions" test "$(get 'this.gpuDevices[0].driverVersion + "/" + this.gpuDevices[0].cudaVersion')" = "590.48.01/13.1"
check "NVML: 8-digit PCI domain" test "$(get 'this.gpuDevices[0].pcieBusId')" = "00000000:00:09.0"

# --- GPUs through the fake nvidia-smi (no NVML) ----------------------------
inv AIWM_NVML_PATH= NVIDIA_SMI_PATH="$AIWM_SRC/tests/helpers/fake-nvidia-smi" AIWM_FAKE_SMI_DIR="$FIX/h100/load" >"$T/inv.json"
check "nvidia-smi: one H100" test "$(get 'this.gpuDevices[0].model')" = "NVIDIA H100 80GB HBM3"
check "nvidia-smi: CUDA version from the banner" test -n "$(get 'this.gpuDevices[0].cudaVersion')"
inv AIWM_NVML_PATH= NVIDIA_SMI_PATH="$AIWM_SRC/tests/helpers/fake-nvidia-smi" AIWM_FAKE_SMI_DIR="$FIX/h100-mig/load" >"$T/inv.json"
check "nvidia-smi MIG capture: a GPU, no garbage" bash -c "[ \"\$(json_get 'this.gpuDevices.length' <'$T/inv.json' 2>/dev/null || node -p 'JSON.parse(require(\"fs\").readFileSync(\"$T/inv.json\")).gpuDevices.length')\" -ge 1 ] && ! grep -q 'N/A\|Not Supported' '$T/inv.json'"

# --- public IP looked up in the background ---------------------------------
python3 -c '
import http.server,sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        b=b"203.0.113.77\n" if s.path=="/ip" else b"<html>oops</html>"
        s.send_response(200); s.send_header("Content-Length",str(len(b))); s.end_headers(); s.wfile.write(b)
    def log_message(*a): pass
srv=http.server.HTTPServer(("127.0.0.1",0),H); print(srv.server_port,flush=True); srv.serve_forever()' >"$T/ipsrv.port" &
PIDS+=($!)
for i in $(seq 1 50); do [ -s "$T/ipsrv.port" ] && break; sleep 0.1; done
IPP=$(cat "$T/ipsrv.port")
env -i PATH="$PATH" PUBLIC_IP_URLS="http://127.0.0.1:$IPP/bad,http://127.0.0.1:$IPP/ip" AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent \
        DOCKER_SOCKET="$T/none.sock" "$AIWM_BIN" inventory >"$T/inv.json" 2>/dev/null
check "public IP: first plausible answer of PUBLIC_IP_URLS" test "$(get this.publicIpAddress)" = 203.0.113.77
env -i PATH="$PATH" PUBLIC_IP=198.51.100.5 PUBLIC_IP_URLS= AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent "$AIWM_BIN" inventory >"$T/inv.json" 2>/dev/null
check "PUBLIC_IP wins" test "$(get this.publicIpAddress)" = 198.51.100.5

# --- the controller receives the fixture's values --------------------------
NODE=$(node "$CTL_DIR/ctl.js" new-id)
start_controller ctl --heartbeat-interval 200 --metrics-interval 300 --seed-node "$NODE"
start_worker w CONTROLLER_WS_URL="ws://127.0.0.1:$CTL_PORT/ws/node" NODE_TOKEN="$(mint "$NODE")" \
        AIWM_NVML_PATH="$FAKE_NVML" AIWM_FAKE_NVML_FIXTURE="$FIX/h100/load/nvml.txt" DOCKER_SOCKET="$T/none.sock"
check "registered" wait_log "$T/w.log" "registered heartbeatInterval" 10
sleep 1
M=$(api GET "/admin/nodes/$NODE/events?type=telemetry.metrics&limit=1")
H=$(api GET "/admin/nodes/$NODE/events?type=telemetry.heartbeat&limit=1")
R=$(api GET "/admin/nodes/$NODE/events?type=node.register&limit=1")
m() { json_get "(this.events||this)[0].envelope.data.$1" <<<"$M"; }
h() { json_get "(this.events||this)[0].envelope.data.$1" <<<"$H"; }
r() { json_get "(this.events||this)[0].envelope.data.$1" <<<"$R"; }
check "register: GPU from NVML" test "$(r 'gpuDevices[0].model')" = "NVIDIA H100 80GB HBM3"
check "heartbeat: gpuStatus active at 100%" test "$(h 'gpuStatus[0].status'):$(h 'gpuStatus[0].utilization')" = "active:100"
check "heartbeat: integer cpuUsage and ramUsage" bash -c "[[ '$(h cpuUsage)' =~ ^[0-9]+$ && '$(h ramUsage)' =~ ^[0-9]+$ ]]"
check "metrics: GPU memory used (MiB) from the fixture" test "$(m 'gpuDevices[0].memoryUsed')" = 19818
check "metrics: power draw in W" test "$(m 'gpuDevices[0].powerDraw')" = 631.95
check "metrics: GPU processes with names" test "$(m 'gpuDevices[0].processes.length')" -ge 3
check "metrics: cached memory filled" test "$(m 'memory.cached')" -gt 0
check "metrics: network counters filled" test "$(m 'network.bytesReceived')" -gt 0
check "metrics: three load averages" test "$(m 'cpu.loadAverage.length')" = 3
check "metrics: memory.total = free -m" test "$(m 'memory.total')" = "$free_total"
stop_pid "$WORKER_PID"

# --- a GPU lost at run time: status error with the reason ------------------
NODE=$(node "$CTL_DIR/ctl.js" new-id)
api POST /api/nodes "{\"_id\":\"$NODE\",\"name\":\"lost\",\"role\":[\"worker\"]}" >/dev/null
start_worker lost CONTROLLER_WS_URL="ws://127.0.0.1:$CTL_PORT/ws/node" NODE_TOKEN="$(mint "$NODE")" \
        AIWM_NVML_PATH="$FAKE_NVML" AIWM_FAKE_NVML_FIXTURE="$FIX/h100/load/nvml.txt" AIWM_FAKE_NVML_LOST=0
check "registered with a lost GPU" wait_log "$T/lost.log" "registered heartbeatInterval" 10
sleep 1
H=$(api GET "/admin/nodes/$NODE/events?type=telemetry.heartbeat&limit=1")
check "lost GPU: heartbeat status degraded" test "$(h status)" = degraded
check "lost GPU: gpuStatus error" test "$(h 'gpuStatus[0].status')" = error
M=$(api GET "/admin/nodes/$NODE/events?type=telemetry.metrics&limit=1")
check "lost GPU: the reason in errors" bash -c "grep -qi 'lost' <<<'$(m 'gpuDevices[0].errors')'"
stop_pid "$WORKER_PID"

finish
