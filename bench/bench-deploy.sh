#!/usr/bin/env bash
# bench/bench-deploy.sh [BUILD_DIR]: what the worker adds to a deployment, against a real engine
# (Podman serving the Docker API on a private socket, scripts/podman-env.sh), in one run:
#   1. per Docker API call: BUILD/bench-docker (src/docker on the loop) against curl
#      --unix-socket doing the same calls in one process (keep-alive), inspect and list;
#   2. deployment.create -> command.result (timed by the dev controller: sent to result
#      received) against a baseline doing the same engine work directly with Python over the
#      socket (image inspect, create, start, inspect, then GET the health path every 10 ms until
#      it answers), DEPLOY_RUNS times (default 5). The difference is the worker's overhead
#      (WebSocket, SQLite outbox, status events, health-probe granularity); target < 5 ms.
# Prints BENCH lines (scripts/bench.sh). Exits 77 when podman is missing.
set -uo pipefail
BUILD=${1:-build}
SRC=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(cd "$BUILD" && pwd)
RUNS=${DEPLOY_RUNS:-5}
CALLS=${DOCKER_CALLS:-500}
command -v podman >/dev/null || { echo "bench-deploy: podman not installed, skipped"; exit 77; }
[ -x "$BUILD/aiwm-worker" ] && [ -x "$BUILD/bench-docker" ] || { echo "bench-deploy: build $BUILD first" >&2; exit 1; }
T=$(mktemp -d /tmp/aiwm-bd.XXXXXX)
PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
        wait 2>/dev/null
        bash "$SRC/scripts/podman-env.sh" stop "$T/pe" >/dev/null 2>&1
        [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
bash "$SRC/scripts/podman-env.sh" start "$T/pe" >/dev/null 2>"$T/pe.log" || { cat "$T/pe.log" >&2; exit 1; }
set -a
. "$T/pe/env"
set +a
S=$DOCKER_SOCKET

# ---- 1. per API call ----
CID=$(curl -s --unix-socket "$S" -X POST -H 'Content-Type: application/json' \
        --data "{\"Image\":\"$TEST_IMAGE\"}" "http://d/v1.41/containers/create?name=bench-call" | python3 -c 'import json,sys;print(json.load(sys.stdin)["Id"])')
curl -s --unix-socket "$S" -X POST "http://d/v1.41/containers/$CID/start" >/dev/null
out=$(DOCKER_SOCKET=$S BENCH_CONTAINER=$CID "$BUILD/bench-docker" "$CALLS") || { echo "$out" >&2; exit 1; }
ours_inspect=$(awk '/^inspect_us/{print $2}' <<<"$out")
ours_list=$(awk '/^list_us/{print $2}' <<<"$out")
curl_per_call() { # URL: microseconds per call, CALLS calls in one curl process
        local cfg=$T/curl.cfg i t0 t1
        : >"$cfg"
        for ((i = 0; i < CALLS; i++)); do printf 'url = "%s"\noutput = "/dev/null"\n' "$1" >>"$cfg"; done
        curl -s --unix-socket "$S" -K "$cfg" >/dev/null # warm
        t0=$(date +%s%N)
        curl -s --unix-socket "$S" -K "$cfg" >/dev/null
        t1=$(date +%s%N)
        echo "scale=1; ($t1 - $t0) / 1000 / $CALLS" | bc
}
base_inspect=$(curl_per_call "http://d/v1.41/containers/$CID/json")
base_list=$(curl_per_call "http://d/v1.41/containers/json?all=1")
echo "docker API, $CALLS sequential calls: inspect ${ours_inspect} µs (curl ${base_inspect} µs), list ${ours_list} µs (curl ${base_list} µs)"
printf 'BENCH docker inspect per call\t%s\t%s\tus\n' "$ours_inspect" "$base_inspect"
printf 'BENCH docker list per call\t%s\t%s\tus\n' "$ours_list" "$base_list"
curl -s --unix-socket "$S" -X DELETE "http://d/v1.41/containers/$CID?force=1" >/dev/null

# ---- 2. deployment.create -> result ----
cat >"$T/baseline.py" <<'PY'
import http.client, json, socket, sys, time
sock, image, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
class U(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX); self.sock.connect(sock)
def call(m, p, body=None):
    c = U("d"); c.request(m, "/v1.41" + p, body=json.dumps(body) if body is not None else None,
                          headers={"Content-Type": "application/json"})
    r = c.getresponse(); d = r.read(); c.close(); return r.status, d
times = []
for i in range(runs):
    t0 = time.monotonic()
    call("GET", "/images/%s/json" % image)
    st, d = call("POST", "/containers/create?name=base-%d" % i, {"Image": image, "ExposedPorts": {"8000/tcp": {}},
        "HostConfig": {"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(18100 + i)}]},
                       "RestartPolicy": {"Name": "unless-stopped"}}})
    cid = json.loads(d)["Id"]
    call("POST", "/containers/%s/start" % cid)
    call("GET", "/containers/%s/json" % cid)
    while True:
        try:
            h = http.client.HTTPConnection("127.0.0.1", 18100 + i, timeout=1); h.request("GET", "/health")
            if h.getresponse().status == 200: break
        except OSError: pass
        time.sleep(0.01)
    times.append((time.monotonic() - t0) * 1000)
    call("DELETE", "/containers/%s?force=1" % cid)
times.sort()
print("%.1f" % times[len(times) // 2])
PY
base_deploy=$(python3 "$T/baseline.py" "$S" "$TEST_IMAGE" "$RUNS")

export ADMIN_TOKEN=bench-admin JWT_SECRET=bench-secret
CTL="node $SRC/tests/controller/ctl.js"
NODE=$($CTL new-id)
TOKEN=$($CTL mint-token "$NODE" --secret "$JWT_SECRET")
node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/ctl.port" --seed-node "$NODE" >"$T/ctl.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 100); do [ -s "$T/ctl.port" ] && break; sleep 0.1; done
CURL="http://127.0.0.1:$(cat "$T/ctl.port")"
mkdir -p "$T/state" "$T/models/m"
env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/state" MODEL_CACHE_DIR="$T/models" PUBLIC_IP_URLS= LOG_LEVEL=warn \
        CONTROLLER_WS_URL="ws://127.0.0.1:$(cat "$T/ctl.port")/ws/node" NODE_TOKEN="$TOKEN" DOCKER_SOCKET="$S" \
        DEPLOY_BIND_IP=127.0.0.1 AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent "$BUILD/aiwm-worker" >"$T/w.log" 2>&1 &
PIDS+=($!)
$CTL wait --node "$NODE" --state registered --wait 15 --url "$CURL" --admin-token "$ADMIN_TOKEN" >/dev/null || { echo "worker did not register" >&2; exit 1; }
ms=()
for ((i = 0; i < RUNS; i++)); do
        mid="bench-$i"
        $CTL send --node "$NODE" --type deployment.create --message-id "$mid" --resource "{\"type\":\"deployment\",\"id\":\"b$i\"}" \
                --data "{\"modelId\":\"m\",\"modelPath\":\"m\",\"containerName\":\"bench-$i\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000,\"healthCheckPath\":\"/health\"}" \
                --wait 60 --url "$CURL" --admin-token "$ADMIN_TOKEN" >/dev/null || { echo "deployment.create failed" >&2; tail -5 "$T/w.log" >&2; exit 1; }
        rec=$($CTL result --node "$NODE" --message-id "$mid" --for result --url "$CURL" --admin-token "$ADMIN_TOKEN")
        ms+=("$(node -e 'const r=JSON.parse(process.argv[1]);console.log(Date.parse(r.results[0].receivedAt)-Date.parse(r.sentAt[0]))' "$rec")")
        $CTL send --node "$NODE" --type deployment.delete --resource "{\"type\":\"deployment\",\"id\":\"b$i\"}" --data '{"force":true}' \
                --wait 60 --url "$CURL" --admin-token "$ADMIN_TOKEN" >/dev/null
done
ours_deploy=$(printf '%s\n' "${ms[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "deployment.create -> result, median of $RUNS: ${ours_deploy} ms (engine work done directly: ${base_deploy} ms; runs: ${ms[*]})"
printf 'BENCH deployment.create to running\t%s\t%s\tms\n' "$ours_deploy" "$base_deploy"
