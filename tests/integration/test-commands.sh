#!/usr/bin/env bash
# Issue 4: commands are never lost or run twice. Against the dev controller:
# ack + result with metadata echoed, validation errors, unknown types,
# duplicates (also across a restart), a result produced while the controller
# is down, kill -9 during a long command, system.restart and system.update
# end to end (good binary, bad checksum, binary that cannot start).
. "$(dirname "$0")/lib.sh"

NODE=$(node "$CTL_DIR/ctl.js" new-id)
TOKEN=$(mint "$NODE")
start_controller ctl --seed-node "$NODE" --state "$T/ctl-state.json"
URL="ws://127.0.0.1:$CTL_PORT/ws/node"
CTL() { node "$CTL_DIR/ctl.js" "$@" --url "$CTL_URL" --admin-token "$ADMIN_TOKEN"; }
send() { CTL send --node "$NODE" "$@"; }
record() { api GET "/admin/nodes/$NODE/commands/$1?wait=${2:-8000}&for=result"; }

# A copy of the binary that system.update may replace.
mkdir -p "$T/bin"
cp "$AIWM_BIN" "$T/bin/aiwm-worker"
W=(CONTROLLER_WS_URL="$URL" NODE_TOKEN="$TOKEN" RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=600)
run_worker() { # name
        mkdir -p "$T/w.state" "$T/w.models"
        env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/w.state" MODEL_CACHE_DIR="$T/w.models" PUBLIC_IP_URLS= LOG_LEVEL=debug \
                AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent "${W[@]}" "$T/bin/aiwm-worker" >>"$T/$1.log" 2>&1 &
        WORKER_PID=$!
        PIDS+=("$WORKER_PID")
}
run_worker w
check "registered" wait_log "$T/w.log" "registered heartbeatInterval" 10

# --- healthCheck: ack then result, metadata echoed, deploymentId -----------
out=$(send --type system.healthCheck --data '{"includeMetrics":true,"includeDeployments":true}' --execution --step-index 3 --wait 10 --print record)
mid=$(json_get 'this.envelope ? this.envelope.messageId : this.messageId' <<<"$out")
rec=$(record "$mid")
check "one ack, one result" test "$(json_get 'this.acks.length + ":" + this.results.length' <<<"$rec")" = "1:1"
check "ack and result echo the metadata (executionId, stepIndex)" test "$(json_get 'this.acks[0].executionIdMatched && this.results[0].executionIdMatched' <<<"$rec")" = true
res=$(json_get 'this.results[0].envelope.data' <<<"$rec")
check "result success with metrics and deployments" test "$(json_get 'this.status + ":" + (typeof this.result.metrics) + ":" + Array.isArray(this.result.deployments)' <<<"$res")" = "success:object:true"
check "deploymentId = resource.id (the node id)" test "$(json_get 'this.deploymentId' <<<"$res")" = "$NODE"

# --- invalid payload and unknown type: 2001 naming the field ---------------
out=$(send --type system.restart --data '{"delaySeconds":"soon"}' --wait 10 2>/dev/null || true)
check "invalid field: 2001 naming it" bash -c "grep -q '\"2001\"' <<<'$out' && grep -q 'delaySeconds' <<<'$out'"
out=$(send --type gpu.overclock --data '{}' --wait 10 2>/dev/null || true)
check "unknown type: 2001" grep -q '"2001"' <<<"$out"
out=$(send --type job.start --data '{}' --wait 10 2>/dev/null || true)
check "enum type not implemented: 2001" grep -q '"2001"' <<<"$out"

# --- the same messageId twice: runs once, result re-sent ---------------------
send --type system.healthCheck --message-id dup-1 --wait 10 >/dev/null
api POST "/admin/nodes/$NODE/commands/dup-1/resend" '{}' >/dev/null
sleep 1
rec=$(record dup-1)
check "duplicate delivery: executed once (same result re-sent)" test "$(json_get 'new Set(this.results.map(r => JSON.stringify(r.envelope.data.result))).size' <<<"$rec")" = 1
check "duplicate delivery: the result reached the controller again" test "$(json_get 'this.results.length' <<<"$rec")" -ge 2

# --- a result produced while the controller is down -------------------------
python3 - "$T" <<'PY' &
import http.server, sys, time, threading
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        data = open(sys.argv[1] + "/bin/aiwm-worker", "rb").read()
        s.send_response(200); s.send_header("Content-Length", str(len(data))); s.end_headers()
        if s.path.startswith("/slow"):
            # /slow: about 2 s in all; /slower: about 20 s
            total = 20.0 if s.path.startswith("/slower") else 2.0
            chunks = max(1, (len(data) + 65535) // 65536)
            for i in range(0, len(data), 65536):
                s.wfile.write(data[i:i+65536]); s.wfile.flush(); time.sleep(total / chunks)
        else:
            s.wfile.write(data)
    def log_message(*a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1] + "/bin.port", "w").write(str(srv.server_port))
srv.serve_forever()
PY
PIDS+=($!)
for i in $(seq 1 50); do [ -s "$T/bin.port" ] && break; sleep 0.1; done
BP=$(cat "$T/bin.port")
SHA=$(sha256sum "$T/bin/aiwm-worker" | cut -d' ' -f1)
SIZE=$(stat -c %s "$T/bin/aiwm-worker")
# A slow update (about $SIZE/64KiB × 50 ms) without restart; the controller
# dies after the ack and comes back before... or after the result.
mid=$(api POST "/admin/nodes/$NODE/commands" "{\"type\":\"system.update\",\"data\":{\"url\":\"http://127.0.0.1:$BP/slow\",\"sha256\":\"$SHA\",\"version\":\"0.1.0\",\"restart\":false},\"execution\":true}" | json_get 'this.messageId')
sleep 0.5
CTL_FIXED_PORT=$CTL_PORT
api GET "/admin/nodes/$NODE/commands/$mid?wait=3000&for=ack" >/dev/null
stop_pid "$CTL_PID"
sleep 4
start_controller ctl2 --seed-node "$NODE" --state "$T/ctl-state.json"
unset CTL_FIXED_PORT
# The restarted controller has no record of the command: look for the
# result among everything the node sent.
results_for() {
        api GET "/admin/nodes/$NODE/events?type=command.result&since=0&wait=${2:-100}" |
                json_get "(this.events||this).filter(e => e.envelope.data.originalMessageId === '$1').map(e => e.envelope.data.status).join(',')"
}
for i in $(seq 1 100); do [ -n "$(results_for "$mid")" ] && break; sleep 0.2; done
check "result produced while the controller was down arrives after reconnect, once" test "$(results_for "$mid")" = success

# --- kill -9 during a long command: 3001 once after restart -----------------
mid=$(api POST "/admin/nodes/$NODE/commands" "{\"type\":\"system.update\",\"data\":{\"url\":\"http://127.0.0.1:$BP/slower\",\"sha256\":\"$SHA\",\"restart\":false}}" | json_get 'this.messageId')
api GET "/admin/nodes/$NODE/commands/$mid?wait=3000&for=ack" >/dev/null
sleep 0.5
kill -9 "$WORKER_PID"
wait "$WORKER_PID" 2>/dev/null || true
run_worker w
rec=$(record "$mid" 15000)
check "interrupted command ends once, in 3001 (retryable)" test "$(json_get 'this.results.length + ":" + this.results[0].envelope.data.error.code + ":" + this.results[0].envelope.data.error.retryable' <<<"$rec")" = "1:3001:true"
api POST "/admin/nodes/$NODE/commands/$mid/resend" '{}' >/dev/null
sleep 1
rec=$(record "$mid")
check "redelivered after the restart: not run again (same 3001 re-sent)" test "$(json_get 'this.results.every(r => r.envelope.data.error && r.envelope.data.error.code === "3001")' <<<"$rec")" = true

# --- system.update: bad checksum ---------------------------------------------
out=$(send --type system.update --data "{\"url\":\"http://127.0.0.1:$BP/bin\",\"sha256\":\"$(printf '0%.0s' $(seq 1 64))\"}" --wait 20 2>/dev/null || true)
check "update with a bad checksum: 2001, binary untouched" bash -c "grep -q '\"2001\"' <<<'$out' && cmp -s '$AIWM_BIN' '$T/bin/aiwm-worker'"

# --- system.restart: result first, then re-exec and re-register --------------
before=$(count_log "$T/w.log" "registered heartbeatInterval")
out=$(send --type system.restart --data '{"reason":"test"}' --wait 10)
check "system.restart answers restartingAt" grep -q restartingAt <<<"$out"
check "re-executes and registers again" bash -c "for i in \$(seq 1 100); do [ \$(grep -c 'registered heartbeatInterval' '$T/w.log') -gt $before ] && exit 0; sleep 0.1; done; exit 1"
check "same process (re-exec, not a new pid)" kill -0 "$WORKER_PID"

# --- system.update: good binary, swapped and restarted -----------------------
before=$(count_log "$T/w.log" "registered heartbeatInterval")
out=$(send --type system.update --data "{\"url\":\"http://127.0.0.1:$BP/bin\",\"sha256\":\"$SHA\",\"version\":\"0.1.0\"}" --wait 30)
check "update: success with previousVersion/newVersion" bash -c "grep -q previousVersion <<<'$out' && grep -q '\"success\"' <<<'$out'"
check "update: previous binary kept" test -f "$T/bin/aiwm-worker.previous"
check "update: restarted on the new binary and registered" bash -c "for i in \$(seq 1 150); do [ \$(grep -c 'registered heartbeatInterval' '$T/w.log') -gt $before ] && exit 0; sleep 0.1; done; exit 1"

# --- system.update: a binary that cannot start (smoke test fails) -----------
printf '#!/bin/sh\nexit 3\n' >"$T/broken"
BSHA=$(sha256sum "$T/broken" | cut -d' ' -f1)
cp "$T/broken" "$T/bin/broken"
python3 -c '
import http.server,sys
d=open(sys.argv[1],"rb").read()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        s.send_response(200); s.send_header("Content-Length",str(len(d))); s.end_headers(); s.wfile.write(d)
    def log_message(*a): pass
srv=http.server.HTTPServer(("127.0.0.1",0),H); open(sys.argv[2],"w").write(str(srv.server_port)); srv.serve_forever()' "$T/broken" "$T/broken.port" &
PIDS+=($!)
for i in $(seq 1 50); do [ -s "$T/broken.port" ] && break; sleep 0.1; done
out=$(send --type system.update --data "{\"url\":\"http://127.0.0.1:$(cat "$T/broken.port")/x\",\"sha256\":\"$BSHA\"}" --wait 20 2>/dev/null || true)
check "update to a binary that cannot start: refused, running binary kept" bash -c "grep -q '\"error\"' <<<'$out' && cmp -s '$AIWM_BIN' '$T/bin/aiwm-worker'"
check "worker still running" kill -0 "$WORKER_PID"

finish
