#!/usr/bin/env bash
# Issue 6: deployments as real containers. The worker against the dev controller and a real
# container engine (Podman serving the Docker API on a private socket, scripts/podman-env.sh,
# with a local registry): create -> running with its health check, the model mounted read-only,
# the environment passed as data; a duplicate id (2007), a GPU this node lacks (2004), an image
# outside ALLOWED_IMAGE_REGISTRIES (2001), a missing image (2006, nothing left behind), a pull
# from the registry, the container port already taken on the host, a failing health check
# (2006, container removed); stop (and 2008), restart, update (recreated; a failing image
# rolled back), container.* for our containers only, deployment.query with logs; the container
# killed behind the worker's back (failed, then running again); the worker killed with -9 and
# started again (adopted, not restarted; an orphan removed, foreign containers untouched);
# the engine restarted under the worker; delete.
# Exits 77 (skipped) when podman is not installed.
if ! command -v podman >/dev/null 2>&1; then
        echo "# podman is not installed: skipped"
        exit 77
fi
. "$(dirname "$0")/lib.sh"

BUILD=${AIWM_BUILD_DIR:-$AIWM_SRC/build-test}
ENV_DIR=$T/pe
stop_env() { bash "$AIWM_SRC/scripts/podman-env.sh" stop "$ENV_DIR" >/dev/null 2>&1 || true; }
trap 'stop_env; cleanup' EXIT

if ! bash "$AIWM_SRC/scripts/podman-env.sh" start "$ENV_DIR" >"$T/env.out" 2>"$T/env.log"; then
        fail "podman-env.sh start"
        cat "$T/env.log" >&2
        finish
        exit 1
fi
set -a
. "$ENV_DIR/env"
set +a
pod() { podman "$@"; } # CONTAINERS_* from the env file select the private engine
dapi() { curl -s --unix-socket "$DOCKER_SOCKET" "http://d/v1.41$1"; }
dapi_post() { curl -s --unix-socket "$DOCKER_SOCKET" -X POST -H 'Content-Type: application/json' --data "$2" "http://d/v1.41$1"; }
# An image whose server exits at once: the failing half of the update test.
pod import -q --change 'CMD ["/bin/false"]' "$ENV_DIR/cache/aiwm-test-httpd.tar" localhost/aiwm-test-exit:latest >/dev/null

NODE=$(node "$CTL_DIR/ctl.js" new-id)
TOKEN=$(mint "$NODE")
start_controller ctl --seed-node "$NODE" --heartbeat-interval 1000
URL="ws://127.0.0.1:$CTL_PORT/ws/node"
CTL() { node "$CTL_DIR/ctl.js" "$@" --url "$CTL_URL" --admin-token "$ADMIN_TOKEN"; }
send() { CTL send --node "$NODE" "$@"; }
# dep TYPE ID DATA [WAIT]: a deployment command; prints the result envelope's data.
dep() { send --type "$1" --resource "{\"type\":\"deployment\",\"id\":\"$2\"}" --data "$3" --wait "${4:-60}" --print data 2>/dev/null || true; }
ctr() { send --type "$1" --resource "{\"type\":\"container\",\"id\":\"$2\"}" --data "${3:-{\}}" --wait 30 --print data 2>/dev/null || true; }
field() { json_get "$1" <<<"$2"; }
statuses() { # statuses ID SINCE: the deployment.status sequence for ID since seq SINCE
        CTL events --node "$NODE" --type deployment.status --since "${2:-0}" |
                json_get "this.events.filter(e => e.envelope.data.deploymentId === '$1').map(e => e.envelope.data.status).join(',')"
}
last_seq() { CTL events --node "$NODE" --type none | json_get 'this.lastSeq'; }
has_status() { statuses "$1" "$2" | grep -Eq "$3"; }
wait_status() { # wait_status ID SINCE REGEX SECONDS
        local i
        for ((i = 0; i < $4 * 4; i++)); do has_status "$1" "$2" "$3" && return 0; sleep 0.25; done
        return 1
}
labelled() { dapi "/containers/json?all=1&filters=$(python3 -c 'import json,sys,urllib.parse;print(urllib.parse.quote(json.dumps({"label":[sys.argv[1]]})))' "$1")"; }

MODELS=$T/w.models
mkdir -p "$MODELS/m1"
echo "weights" >"$MODELS/m1/model.bin"
# A model on HTTP, fetched into the cache by the create.
mkdir -p "$T/www"
echo "remote weights" >"$T/www/remote.bin"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$T/www" >"$T/www.log" 2>&1 &
PIDS+=($!)
for i in $(seq 1 50); do grep -q 'port' "$T/www.log" && break; sleep 0.1; done
WWW_PORT=$(grep -o 'port [0-9]*' "$T/www.log" | head -1 | cut -d' ' -f2)

# Registry credentials, wrong at first (the file is read again at each pull).
auth_file() { printf '{"auths":{"http://%s/v1/":{"auth":"%s"}}}' "$AUTH_REGISTRY" "$(printf '%s:%s' "$AUTH_REGISTRY_USER" "$1" | base64 -w0)" >"$T/auth.json"; }
auth_file wrong-password
W=(CONTROLLER_WS_URL="$URL" NODE_TOKEN="$TOKEN" RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=600
        DOCKER_SOCKET="$DOCKER_SOCKET" DEPLOY_BIND_IP=127.0.0.1 DEPLOY_HEALTH_TIMEOUT=8 DEPLOY_ORPHAN_GRACE=0
        ALLOWED_IMAGE_REGISTRIES="localhost,$REGISTRY,$AUTH_REGISTRY" REGISTRY_AUTH_FILE="$T/auth.json"
        AIWM_NVML_PATH="$BUILD/fake-nvml/libnvidia-ml.so.1" AIWM_FAKE_NVML_FIXTURE="$AIWM_SRC/tests/fixtures/nvidia-smi/h100/load/nvml.txt"
        NVIDIA_SMI_PATH=/nonexistent HEARTBEAT_INTERVAL=1000)
run_worker() {
        mkdir -p "$T/w.state" "$MODELS"
        env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/w.state" MODEL_CACHE_DIR="$MODELS" PUBLIC_IP_URLS= LOG_LEVEL=debug \
                "${W[@]}" "$AIWM_BIN" >>"$T/w.log" 2>&1 &
        WORKER_PID=$!
        PIDS+=("$WORKER_PID")
}
run_worker
check "worker registered" wait_log "$T/w.log" "registered heartbeatInterval" 15

# --- create: running, healthy, labelled, model mounted, environment as data ---------------------
S0=$(last_seq)
ENVV='{"GREETING":"hello world; $(touch /tmp/pwned) `id`","MODEL_PATH":"/elsewhere"}'
t0=$(date +%s%N)
res=$(dep deployment.create d1 "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-d1\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000,\"healthCheckPath\":\"/health\",\"healthCheckInterval\":5,\"environment\":$ENVV}")
t1=$(date +%s%N)
echo "# create -> result: $(( (t1 - t0) / 1000000 )) ms"
check "create: success" test "$(field 'this.status' "$res")" = success
CID1=$(field 'this.result.containerId' "$res")
EP1=$(field 'this.result.endpoint' "$res")
check "create: containerId and startedAt" test -n "$CID1" -a "$(field 'typeof this.result.startedAt' "$res")" = string
check "create: endpoint answers on the published port ($EP1)" bash -c "curl -sf http://127.0.0.1:${EP1##*:}/health | grep -q ok"
check "create: deployment.status starting -> running" wait_status d1 "$S0" 'starting,running' 5
insp=$(dapi "/containers/$CID1/json")
check "labels: aiwm.managed, deployment, node, model" test "$(field "[this.Config.Labels['aiwm.managed'], this.Config.Labels['aiwm.deployment.id'], this.Config.Labels['aiwm.node.id'], this.Config.Labels['aiwm.model.id']].join(',')" "$insp")" = "true,d1,$NODE,m1"
check "restart policy unless-stopped, not privileged" test "$(field 'this.HostConfig.RestartPolicy.Name + ":" + this.HostConfig.Privileged' "$insp")" = "unless-stopped:false"
check "model mounted read-only at /model" test "$(field "this.Mounts.filter(m => m.Destination === '/model').map(m => m.RW + ':' + m.Source).join()" "$insp")" = "false:$MODELS/m1"
check "MODEL_PATH=/model (not the controller's value)" bash -c "grep -q '\"MODEL_PATH=/model\"' <<<'$(field 'this.Config.Env' "$insp")' && ! grep -q elsewhere <<<'$(field 'this.Config.Env' "$insp")'"
check "environment passed as data, never through a shell" test "$(field "this.Config.Env.find(e => e.startsWith('GREETING='))" "$insp")" = 'GREETING=hello world; $(touch /tmp/pwned) `id`'
check "CPU deployment: NVIDIA_VISIBLE_DEVICES=void" bash -c "grep -q 'NVIDIA_VISIBLE_DEVICES=void' <<<'$(field 'this.Config.Env' "$insp")'"

# --- refusals before anything is made ---------------------------------------------------------
res=$(dep deployment.create d1 "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-d1b\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000}")
check "same id again: 2007" test "$(field 'this.error.code' "$res")" = 2007
res=$(dep deployment.create dg "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-dg\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000,\"gpuDeviceId\":\"31\"}")
check "a GPU this node lacks: 2004 (retryable)" test "$(field 'this.error.code + ":" + this.error.retryable' "$res")" = "2004:true"
check "2004: no container made" test "$(labelled aiwm.deployment.id=dg)" = "[]"
res=$(dep deployment.create dx "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-dx\",\"containerImage\":\"docker.io/library/nginx:1\",\"containerPort\":8000}")
check "image outside ALLOWED_IMAGE_REGISTRIES: 2001" bash -c "test '$(field 'this.error.code' "$res")' = 2001 && grep -q ALLOWED_IMAGE_REGISTRIES <<<'$(field 'this.error.message' "$res")'"
res=$(dep deployment.create dp "{\"modelId\":\"m1\",\"modelPath\":\"../../etc\",\"containerName\":\"aiwm-dp\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000}")
check "modelPath outside MODEL_CACHE_DIR: refused" bash -c "grep -Eq '^(2001|2003)$' <<<'$(field 'this.error.code' "$res")'"
check "no container for the refused modelPath" test "$(labelled aiwm.deployment.id=dp)" = "[]"

# --- a missing image: 2006 with the engine's message, nothing left ---------------------------
res=$(dep deployment.create dm "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-dm\",\"containerImage\":\"$REGISTRY/aiwm/missing:1\",\"containerPort\":8000}")
check "missing image: 2006" test "$(field 'this.error.code' "$res")" = 2006
check "missing image: the engine's message" bash -c "grep -qi 'pull' <<<'$(field 'this.error.message' "$res")'"
check "missing image: no container left" test "$(labelled aiwm.deployment.id=dm)" = "[]"

# --- pull from the registry; the container port is taken on the host by d1 -------------------
S1=$(last_seq)
res=$(dep deployment.create d2 "{\"modelId\":\"remote\",\"modelPath\":\"http://127.0.0.1:$WWW_PORT/remote.bin\",\"containerName\":\"aiwm-d2\",\"containerImage\":\"$REGISTRY_IMAGE\",\"containerPort\":8000,\"healthCheckPath\":\"/health\"}" 90)
check "pulled from the registry and running" test "$(field 'this.status' "$res")" = success
EP2=$(field 'this.result.endpoint' "$res")
check "port 8000 taken on the host: another host port ($EP2)" bash -c "test '${EP2##*:}' != 8000 && curl -sf http://127.0.0.1:${EP2##*:}/health | grep -q ok"
check "remote model fetched into the cache" bash -c "cat $MODELS/deployments/remote/remote.bin | grep -q 'remote weights'"
insp2=$(dapi "/containers/$(field 'this.result.containerId' "$res")/json")
check "remote model mounted read-only" test "$(field "this.Mounts.filter(m => m.Destination === '/model').map(m => m.RW + ':' + m.Source).join()" "$insp2")" = "false:$MODELS/deployments/remote"
check "model.downloadProgress sent for the create's model" bash -c "CTL_OUT=\$(node $CTL_DIR/ctl.js events --node $NODE --type model.downloadProgress --since $S1 --url $CTL_URL --admin-token $ADMIN_TOKEN); grep -q completed <<<\"\$CTL_OUT\""

res=$(send --type model.delete --resource '{"type":"model","id":"remote"}' --data '{}' --wait 20 --print data 2>/dev/null || true)
check "model.delete of a model a running deployment mounts: 2007 with usedBy" test "$(field "this.error.code + ':' + JSON.stringify(this.error.details.usedBy)" "$res")" = '2007:["d2"]'
res=$(send --type model.list --resource '{"type":"model","id":"remote"}' --data '{}' --wait 20 --print data 2>/dev/null || true)
check "model.list: usedBy names the deployment" test "$(field "JSON.stringify(this.result.models[0].usedBy)" "$res")" = '["d2"]'

# --- a private registry: credentials from REGISTRY_AUTH_FILE ---------------------------------
PRIV="{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-dpriv\",\"containerImage\":\"$AUTH_REGISTRY_IMAGE\",\"containerPort\":8000}"
res=$(dep deployment.create dpriv "$PRIV" 60)
check "private registry, wrong password: 2006 saying so" bash -c "test '$(field 'this.error.code' "$res")' = 2006 && grep -Eqi 'unauthorized|authentication' <<<'$(field 'this.error.message' "$res")'"
auth_file "$AUTH_REGISTRY_PASSWORD"
res=$(dep deployment.create dpriv "$PRIV" 60)
check "private registry, right password (file re-read): pulled and running" test "$(field 'this.status' "$res")" = success
res=$(dep deployment.delete dpriv '{"force":true}')
check "private registry: deleted" test "$(field 'this.result.containerRemoved' "$res")" = true
check "no registry password in the worker's log" bash -c "! grep -qF '$AUTH_REGISTRY_PASSWORD' '$T/w.log'"

# --- a failing health check: 2006, container removed -----------------------------------------
t0=$(date +%s)
res=$(dep deployment.create d3 "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-d3\",\"containerImage\":\"$TEST_IMAGE\",\"containerPort\":8000,\"healthCheckPath\":\"/nope\"}" 60)
check "failing health check: 2006 after DEPLOY_HEALTH_TIMEOUT" bash -c "test '$(field 'this.error.code' "$res")' = 2006 && grep -q 'did not pass' <<<'$(field 'this.error.message' "$res")'"
check "failing health check: container removed" test "$(labelled aiwm.deployment.id=d3)" = "[]"
check "failing health check: deployment.status failed" wait_status d3 0 'starting,failed' 3
res=$(dep deployment.create d4 "{\"modelId\":\"m1\",\"modelPath\":\"m1\",\"containerName\":\"aiwm-d4\",\"containerImage\":\"localhost/aiwm-test-exit:latest\",\"containerPort\":8000}" 60)
check "a container that exits: 2006 naming the exit code" bash -c "grep -q 'exited with code' <<<'$(field 'this.error.message' "$res")'"
check "a container that exits: removed" test "$(labelled aiwm.deployment.id=d4)" = "[]"

# --- stop, stop again, restart -------------------------------------------------------------
res=$(dep deployment.stop d1 '{"timeout":5}')
# busybox httpd runs as PID 1 and ignores SIGTERM: the engine kills it after the timeout.
check "stop: success with stoppedAt, gracefulShutdown false after the timeout" test "$(field 'this.status + ":" + typeof this.result.stoppedAt + ":" + this.result.gracefulShutdown' "$res")" = "success:string:false"
check "stop: the engine says not running" test "$(field 'this.State.Running' "$(dapi "/containers/$CID1/json")")" = false
res=$(dep deployment.stop d1 '{}')
check "stop a stopped deployment: 2008" test "$(field 'this.error.code' "$res")" = 2008
res=$(dep deployment.restart d1 '{}')
check "restart: running again, same container" test "$(field 'this.status + ":" + this.result.containerId' "$res")" = "success:$CID1"
check "restart: endpoint answers" bash -c "curl -sf http://127.0.0.1:${EP1##*:}/health | grep -q ok"

# --- update: recreated with the new environment; a failing image rolled back ------------------
res=$(dep deployment.update d1 '{"config":{"environment":{"GREETING":"v2"}}}')
check "update: success, restarted, applied environment" test "$(field 'this.status + ":" + this.result.restarted + ":" + this.result.applied' "$res")" = "success:true:environment"
CID1B=$(field 'this.containerId' "$(dep deployment.query d1 '{}' | json_get 'this.result')")
check "update: a new container" test -n "$CID1B" -a "$CID1B" != "$CID1"
check "update: new environment in the container" test "$(field "this.Config.Env.find(e => e.startsWith('GREETING='))" "$(dapi "/containers/$CID1B/json")")" = "GREETING=v2"
check "update: old container removed" bash -c "sleep 1; test \"\$(curl -s -o /dev/null -w '%{http_code}' --unix-socket $DOCKER_SOCKET http://d/v1.41/containers/$CID1/json)\" = 404"
res=$(dep deployment.update d1 '{"config":{"containerImage":"localhost/aiwm-test-exit:latest"}}' 60)
check "update to a failing image: 2006, rolled back" bash -c "test '$(field 'this.error.code' "$res")' = 2006 && grep -q 'rolled back' <<<'$(field 'this.error.message' "$res")'"
q=$(dep deployment.query d1 '{}' | json_get 'this.result')
check "after the rollback: running, same container, serving" bash -c "test '$(field 'this.status + ":" + this.containerId' "$q")' = 'running:$CID1B' && curl -sf http://127.0.0.1:${EP1##*:}/health | grep -q ok"
check "after the rollback: the failed container is gone" test "$(labelled aiwm.deployment.id=d1 | json_get 'this.length')" = 1
res=$(dep deployment.update d1 '{"config":{"healthCheckInterval":6}}')
check "update of health settings only: not restarted" test "$(field 'this.result.restarted' "$res")" = false

# --- container.* and deployment.query with logs ----------------------------------------------
res=$(ctr container.list '*' '{}')
check "container.list: our running containers" test "$(field "this.result.containers.map(c => c.containerName).sort().join()" "$res")" = "aiwm-d1,aiwm-d2"
res=$(ctr container.inspect aiwm-d1)
check "container.inspect by name: labels, restartCount, no environment" test "$(field "this.result.labels['aiwm.deployment.id'] + ':' + typeof this.result.restartCount + ':' + (this.result.environment === undefined) + ':' + this.result.ports['8000']" "$res")" = "d1:number:true:${EP1##*:}"
pod run -d --name foreign -l aiwm.managed=true -l aiwm.node.id=someone-else "$TEST_IMAGE" >/dev/null
pod run -d --name unlabelled "$TEST_IMAGE" >/dev/null
res=$(ctr container.inspect foreign)
check "container.inspect of another node's container: 2002" test "$(field 'this.error.code' "$res")" = 2002
res=$(ctr container.logs "$CID1B" '{"tail":5}')
check "container.logs: ILogEntry items with source and timestamp" test "$(field "this.result.logs.length > 0 && this.result.logs.every(l => l.source && l.timestamp && l.level && typeof l.message === 'string')" "$res")" = true
res=$(ctr container.stats aiwm-d1)
check "container.stats: memory and cpu figures" test "$(field "typeof this.result.cpuUsage + ':' + typeof this.result.memoryUsed + ':' + (this.result.pids >= 1)" "$res")" = "number:number:true"
S2=$(last_seq)
res=$(dep deployment.query d1 '{"includeLogs":true,"tail":3}')
check "deployment.query: the status object" test "$(field 'this.result.status + ":" + this.result.healthStatus + ":" + this.result.nodeId' "$res")" = "running:healthy:$NODE"
check "deployment.query includeLogs: deployment.logs with 3 lines" test "$(CTL events --node "$NODE" --type deployment.logs --since "$S2" | json_get 'this.events[0].envelope.data.logs.length')" = 3
res=$(send --type system.healthCheck --data '{"includeDeployments":true}' --wait 10 --print data 2>/dev/null || true)
check "healthCheck lists the deployments" test "$(field "this.result.deployments.filter(d => d.status === 'running').map(d => d.deploymentId).sort().join()" "$res")" = "d1,d2"
check "heartbeat activeDeployments = 2" bash -c "node $CTL_DIR/ctl.js events --node $NODE --type telemetry.heartbeat --since $S2 --wait 5 --url $CTL_URL --admin-token $ADMIN_TOKEN | grep -q '\"activeDeployments\":2'"

# --- a health check that starts failing (as a GPU container's does when it loses its GPU) ----
res=$(dep deployment.update d2 '{"config":{"healthCheckInterval":5}}')
CID2=$(field 'this.result.containerId' "$(dep deployment.query d2 '{}')")
S5=$(last_seq)
pod exec "$CID2" /bin/busybox rm /www/health
check "unhealthy: health_check_failed reported, then failed after three" wait_status d2 "$S5" 'running,failed' 40
check "unhealthy: recreated (starting -> running)" wait_status d2 "$S5" 'failed,starting,running' 40
q=$(dep deployment.query d2 '{}')
check "unhealthy: a new container, same endpoint, healthy" bash -c "test '$(field 'this.result.containerId' "$q")' != '$CID2' && test '$(field 'this.result.endpoint' "$q")' = '$EP2' && curl -sf http://127.0.0.1:${EP2##*:}/health | grep -q ok"

# --- the container killed behind the worker's back -------------------------------------------
S3=$(last_seq)
PID1=$(field 'this.State.Pid' "$(dapi "/containers/$CID1B/json")")
kill -9 "$PID1"
check "killed container: deployment.status failed" wait_status d1 "$S3" 'failed' 10
check "killed container: running again (restart policy or the worker)" wait_status d1 "$S3" 'failed,starting,running' 30
check "killed container: endpoint answers again" bash -c "for i in \$(seq 1 40); do curl -sf http://127.0.0.1:${EP1##*:}/health && exit 0; sleep 0.25; done; exit 1"

# --- the worker killed and started again: adopted, not restarted ---------------------------
ST_BEFORE=$(field 'this.State.StartedAt' "$(dapi "/containers/$CID1B/json")")
CID1C=$(field 'this.Id' "$(dapi "/containers/aiwm-d1/json")")
ST_BEFORE=$(field 'this.State.StartedAt' "$(dapi "/containers/$CID1C/json")")
ORPHAN=$(dapi_post "/containers/create?name=orphan" "{\"Image\":\"$TEST_IMAGE\",\"Labels\":{\"aiwm.managed\":\"true\",\"aiwm.node.id\":\"$NODE\",\"aiwm.deployment.id\":\"ghost\"}}" | json_get 'this.Id')
kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
S4=$(last_seq)
run_worker
check "worker restarted and registered" wait_log "$T/w.log" "registered heartbeatInterval.*" 15
check "adopted: deployment.status running with an adopted event" bash -c "for i in \$(seq 1 40); do node $CTL_DIR/ctl.js events --node $NODE --type deployment.status --since $S4 --url $CTL_URL --admin-token $ADMIN_TOKEN | grep -q '\"adopted\"' && exit 0; sleep 0.25; done; exit 1"
check "adopted: the same container, not restarted" test "$(field 'this.Id + ":" + this.State.StartedAt' "$(dapi "/containers/aiwm-d1/json")")" = "$CID1C:$ST_BEFORE"
check "orphan (our labels, no deployment) removed" bash -c "for i in \$(seq 1 40); do test \"\$(curl -s -o /dev/null -w '%{http_code}' --unix-socket $DOCKER_SOCKET http://d/v1.41/containers/$ORPHAN/json)\" = 404 && exit 0; sleep 0.25; done; exit 1"
check "another node's and unlabelled containers untouched" test "$(field 'this.State.Running' "$(dapi /containers/foreign/json)"):$(field 'this.State.Running' "$(dapi /containers/unlabelled/json)")" = "true:true"
check "statuses resent after registering (d2 reported)" wait_status d2 "$S4" 'running' 10

# --- the engine restarted under the worker ----------------------------------------------------
kill "$(cat "$ENV_DIR/podman.pid")"
sleep 1
bash "$AIWM_SRC/scripts/podman-env.sh" start "$ENV_DIR" >/dev/null 2>"$T/env2.log"
check "engine back: event stream reconnected" wait_log "$T/w.log" "event stream ended" 15
res=$(dep deployment.query d1 '{}')
check "engine back: d1 still running" test "$(field 'this.result.status' "$res")" = running
res=$(ctr container.list '*' '{}')
check "engine back: container.list answers" test "$(field 'this.status' "$res")" = success

# --- delete -----------------------------------------------------------------------------------
for d in d1 d2; do
        res=$(dep deployment.delete $d '{"force":true}')
        check "delete $d: containerRemoved" test "$(field 'this.status + ":" + this.result.containerRemoved' "$res")" = "success:true"
done
check "delete: no container of ours left" test "$(labelled aiwm.node.id=$NODE)" = "[]"
res=$(dep deployment.query d1 '{}')
check "query after delete: 2002" test "$(field 'this.error.code' "$res")" = 2002
res=$(dep deployment.stop nosuch '{}')
check "stop an unknown deployment: 2002" test "$(field 'this.error.code' "$res")" = 2002
check "no token in the worker's log" bash -c "! grep -qF '$TOKEN' '$T/w.log'"

kill "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
stop_env
finish
