#!/usr/bin/env bash
# Issue 7: `aiwm-worker check` against a sane setup and against each broken
# dependency in turn: one line each, exit 0 only when nothing failed, the
# token never printed.
. "$(dirname "$0")/lib.sh"

NODE=$(node "$CTL_DIR/ctl.js" new-id)
TOKEN=$(mint "$NODE")
start_controller ctl --seed-node "$NODE"
URL="ws://127.0.0.1:$CTL_PORT/ws/node"
# A stand-in for the Docker socket that answers GET /_ping like the engine.
python3 - "$T/docker.sock" <<'PY' &
import socketserver, sys, os
class H(socketserver.StreamRequestHandler):
    def handle(self):
        self.rfile.readline()
        self.wfile.write(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nApi-Version: 1.41\r\n\r\nOK")
srv = socketserver.UnixStreamServer(sys.argv[1], H)
srv.serve_forever()
PY
PIDS+=($!)
for i in $(seq 1 50); do [ -S "$T/docker.sock" ] && break; sleep 0.1; done
mkdir -p "$T/state"
chk() { env -i PATH="$PATH" STATE_DIR="$T/state" MODEL_CACHE_DIR="$T/state/models" PUBLIC_IP_URLS= AIWM_NVML_PATH= \
        NVIDIA_SMI_PATH=/nonexistent CONTROLLER_WS_URL="$URL" DOCKER_SOCKET="$T/docker.sock" NODE_TOKEN="$TOKEN" "$@" \
        "$AIWM_BIN" check >"$T/check.out" 2>&1; }
line() { grep -E "^(OK|WARN|FAIL) +$1 " "$T/check.out"; }
has() { line "$1" | grep -Eq -- "$2"; }          # has NAME REGEX
failed_with() { [ "$rc" = 1 ] && has "$1" "^FAIL.*$2"; }

chk && rc=0 || rc=$?
cat "$T/check.out"
check "sane setup: exit 0" test "$rc" = 0
check "one line per dependency" test "$(grep -cE '^(OK|WARN|FAIL) ' "$T/check.out")" = 7
check "token decoded: node id and expiry" has token "$NODE.*days left"
check "controller handshake accepted" has controller "^OK.*handshake accepted"
check "no GPU is a warning, with the fix" has gpu "^WARN"
check "token never printed" bash -c "! grep -qF -- \"$TOKEN\" '$T/check.out'"

chk NODE_TOKEN="$(mint "$NODE" --exp -60)" && rc=0 || rc=$?
check "expired token: FAIL token, exit 1" failed_with token expired
check "expired token: controller refuses (TOKEN_EXPIRED)" has controller TOKEN_EXPIRED
chk NODE_TOKEN=garbage NODE_ID="$NODE" && rc=0 || rc=$?
check "garbage token: controller FAIL with TOKEN_INVALID" failed_with controller TOKEN_INVALID
chk CONTROLLER_WS_URL="ws://127.0.0.1:1/ws/node" && rc=0 || rc=$?
check "controller down: FAIL with the reason" failed_with controller "[Rr]efused"
chk DOCKER_SOCKET="$T/nope.sock" && rc=0 || rc=$?
check "no Docker socket: FAIL docker" failed_with docker "does not exist"
touch "$T/afile"
chk MODEL_CACHE_DIR="$T/afile/models" && rc=0 || rc=$?
check "model cache not creatable: FAIL" failed_with MODEL_CACHE_DIR ""
bash "$AIWM_SRC/scripts/gen-test-certs.sh" "$T/certs" >/dev/null 2>&1
stop_pid "$CTL_PID"
start_controller tls --seed-node "$NODE" --tls-cert "$T/certs/wrong-host.crt" --tls-key "$T/certs/wrong-host.key"
chk CONTROLLER_WS_URL="wss://localhost:$CTL_PORT/ws/node" TLS_CA_FILE="$T/certs/ca.crt" && rc=0 || rc=$?
check "TLS certificate for another host: FAIL with the reason" failed_with controller mismatch

finish
