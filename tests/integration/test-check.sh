#!/usr/bin/env bash
# Issue 7: `aiwm-worker check` against a sane setup and against each broken
# dependency in turn: one line each, exit 0 only when nothing failed, the
# token never printed.
. "$(dirname "$0")/lib.sh"

NODE=$(node "$CTL_DIR/ctl.js" new-id)
TOKEN=$(mint "$NODE")
start_controller ctl --seed-node "$NODE"
URL="ws://127.0.0.1:$CTL_PORT/ws/node"
# A stand-in for the Docker socket: GET /version and /info answered with real Docker captures.
stand_in() { # stand_in SOCKET ENGINE: answers with tests/fixtures/docker/{version,info}-ENGINE.json
python3 - "$1" "$AIWM_SRC/tests/fixtures/docker" "$2" <<'PY' &
import socketserver, sys
fix, engine = sys.argv[2], sys.argv[3]
class H(socketserver.StreamRequestHandler):
    def handle(self):
        req = self.rfile.readline().decode()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        path = req.split(" ")[1] if " " in req else "/"
        name = ("version-%s.json" % engine) if path.endswith("/version") else ("info-%s.json" % engine) if path.endswith("/info") else None
        body = open("%s/%s" % (fix, name), "rb").read() if name else b"OK"
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
srv = socketserver.UnixStreamServer(sys.argv[1], H)
srv.serve_forever()
PY
PIDS+=($!)
}
stand_in "$T/docker.sock" docker
stand_in "$T/podman.sock" podman
for i in $(seq 1 50); do [ -S "$T/docker.sock" ] && [ -S "$T/podman.sock" ] && break; sleep 0.1; done
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
check "docker: engine, version, API and the nvidia runtime from /version and /info" has docker "^OK.*: docker 24\.0\.7, API 1\.43, 14 containers \(3 running\), nvidia runtime"
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
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$T/dead.sock"
chk DOCKER_SOCKET="$T/dead.sock" && rc=0 || rc=$?
check "a socket nobody listens on: FAIL docker with the reason" failed_with docker "[Cc]onnect"
chk DOCKER_SOCKET="$T/podman.sock" DEPLOY_GPU_MODE=nvidia-runtime && rc=0 || rc=$?
check "Podman without an nvidia runtime, DEPLOY_GPU_MODE=nvidia-runtime: WARN docker naming the engine" has docker "^WARN.*: podman "
touch "$T/afile"
chk MODEL_CACHE_DIR="$T/afile/models" && rc=0 || rc=$?
check "model cache not creatable: FAIL" failed_with MODEL_CACHE_DIR ""
bash "$AIWM_SRC/scripts/gen-test-certs.sh" "$T/certs" >/dev/null 2>&1
stop_pid "$CTL_PID"
start_controller tls --seed-node "$NODE" --tls-cert "$T/certs/wrong-host.crt" --tls-key "$T/certs/wrong-host.key"
chk CONTROLLER_WS_URL="wss://localhost:$CTL_PORT/ws/node" TLS_CA_FILE="$T/certs/ca.crt" && rc=0 || rc=$?
check "TLS certificate for another host: FAIL with the reason" failed_with controller mismatch

finish
