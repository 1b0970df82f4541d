# Shared helpers for the integration tests (sourced by tests/integration/test-*.sh).
# Each test gets a private temp dir, a dev controller on a free port and
# helpers to run the worker, wait for log lines and query the controller.
set -euo pipefail

AIWM_SRC=${AIWM_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
AIWM_BIN=${AIWM_BIN:-$AIWM_SRC/build/aiwm-worker}
CTL_DIR="$AIWM_SRC/tests/controller"
T=$(mktemp -d /tmp/aiwm-it.XXXXXX)
ADMIN_TOKEN=admin-token
JWT_SECRET=test-secret
export ADMIN_TOKEN JWT_SECRET
PIDS=()
FAILS=0
PASSES=0

cleanup() {
        local p
        for p in "${PIDS[@]:-}"; do
                [ -n "$p" ] && kill "$p" 2>/dev/null || true
        done
        for p in "${PIDS[@]:-}"; do
                [ -n "$p" ] && wait "$p" 2>/dev/null || true
        done
        if [ "${KEEP_TMP:-0}" = 1 ] || [ "$FAILS" -gt 0 ]; then
                echo "# logs kept in $T" >&2
                for f in "$T"/*.log; do [ -f "$f" ] && { echo "----- $f (tail)"; tail -n 40 "$f"; } >&2; done
        else
                rm -rf "$T"
        fi
}
trap cleanup EXIT

ok()   { PASSES=$((PASSES + 1)); echo "ok - $*"; }
fail() { FAILS=$((FAILS + 1)); echo "not ok - $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }
finish() {
        echo "$PASSES passed, $FAILS failed"
        [ "$FAILS" -eq 0 ]
}

# start_controller NAME [args...]: starts the dev controller; sets CTL_PORT, CTL_URL, CTL_PID.
start_controller() {
        local name=$1; shift
        rm -f "$T/$name.port"
        node "$CTL_DIR/server.js" --port "${CTL_FIXED_PORT:-0}" --port-file "$T/$name.port" "$@" >"$T/$name.log" 2>&1 &
        CTL_PID=$!
        PIDS+=("$CTL_PID")
        local i
        for i in $(seq 1 100); do
                [ -s "$T/$name.port" ] && break
                sleep 0.1
        done
        [ -s "$T/$name.port" ] || { echo "controller did not start" >&2; cat "$T/$name.log" >&2; return 1; }
        CTL_PORT=$(cat "$T/$name.port")
        CTL_URL="http://127.0.0.1:$CTL_PORT"
}

stop_pid() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# mint NODE_ID [extra args]: prints a token signed with the test secret.
mint() { node "$CTL_DIR/ctl.js" mint-token "$@" --secret "$JWT_SECRET"; }

# api METHOD PATH [JSON]: admin call to the controller, prints the body.
api() {
        local m=$1 p=$2 body=${3:-}
        if [ -n "$body" ]; then
                curl -sS -X "$m" -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' --data "$body" "$CTL_URL$p"
        else
                curl -sS -X "$m" -H "Authorization: Bearer $ADMIN_TOKEN" "$CTL_URL$p"
        fi
}

# jq-free JSON field access through node: json_get 'expr' <<< "$json"
json_get() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const j=JSON.parse(s);const v=(function(){return eval(process.argv[1])}).call(j);console.log(typeof v==="object"?JSON.stringify(v):String(v))})' "$1"; }

# start_worker NAME [env assignments...]: runs the worker with a private state dir.
start_worker() {
        local name=$1; shift
        mkdir -p "$T/$name.state" "$T/$name.models"
        env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/$name.state" MODEL_CACHE_DIR="$T/$name.models" \
                PUBLIC_IP_URLS= LOG_LEVEL=debug "$@" "$AIWM_BIN" >"$T/$name.log" 2>&1 &
        WORKER_PID=$!
        PIDS+=("$WORKER_PID")
}

# wait_log FILE REGEX [SECONDS]: waits until the log has a line matching REGEX.
wait_log() {
        local f=$1 re=$2 s=${3:-10} i
        for i in $(seq 1 $((s * 20))); do
                grep -Eq -- "$re" "$f" 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

# count_log FILE REGEX
count_log() { grep -Ec -- "$2" "$1" 2>/dev/null || true; }

# cpu_ticks PID: user+system clock ticks used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
