#!/usr/bin/env bash
# bench-download: model.download throughput against `curl -o` in the same
# run, on loopback, from the same server (tests/helpers/dl-server.py, which
# uses sendfile for plain responses).
#
#   bench/bench-download.sh [AIWM_BIN]      (default build/aiwm-worker)
#   BENCH_SIZE=2G  size of the file (truncate syntax; a sparse file, read as zeros)
#   BENCH_DIR=/tmp where the file, curl's copy and the model cache go (needs ~2x BENCH_SIZE)
#
# Three numbers: curl -o alone; curl -o followed by sha256sum (what the worker
# does, but in two passes); the worker's model.download with data.sha256
# (hashing as bytes arrive, fsync, rename into place, manifest), timed from
# the command to its command.result through the dev controller. Too slow for
# CI: run it by hand (scripts/bench.sh runs it when BENCH_DOWNLOAD=1). The
# worker must have the model commands registered. Prints
# `BENCH <figure>\t<ours>\t<baseline>\t<unit>` lines for scripts/bench.sh.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$SRC/build/aiwm-worker}
SIZE=${BENCH_SIZE:-2G}
T=$(mktemp -d "${BENCH_DIR:-/tmp}/aiwm-bench-dl.XXXXXX")
PIDS=()
cleanup() {
        local p
        for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
        rm -rf "$T"
}
trap cleanup EXIT
[ -x "$BIN" ] || { echo "no worker binary at $BIN (make all first)" >&2; exit 1; }
export JWT_SECRET=bench-secret ADMIN_TOKEN=bench-admin
now() { date +%s.%N; }
rate() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%8.1f MiB/s (%6.2f s)", b / s / 1048576, s }'; }
wait_port() {
        local i
        for i in $(seq 1 100); do [ -s "$1" ] && { cat "$1"; return 0; }; sleep 0.1; done
        return 1
}

mkdir -p "$T/www" "$T/state" "$T/models"
truncate -s "$SIZE" "$T/www/model.bin"
BYTES=$(stat -c %s "$T/www/model.bin")
echo "== $BYTES bytes, sha256 of the source..."
SHA=$(sha256sum "$T/www/model.bin" | cut -d' ' -f1)

python3 "$SRC/tests/helpers/dl-server.py" --root "$T/www" --port-file "$T/dl.port" >"$T/dl.log" 2>&1 &
PIDS+=($!)
URL="http://127.0.0.1:$(wait_port "$T/dl.port")/model.bin"
node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/ctl.port" --auto-create-nodes >"$T/ctl.log" 2>&1 &
PIDS+=($!)
CTL_URL="http://127.0.0.1:$(wait_port "$T/ctl.port")"
NODE=$(node "$SRC/tests/controller/ctl.js" new-id)
TOKEN=$(node "$SRC/tests/controller/ctl.js" mint-token "$NODE" --secret "$JWT_SECRET")
env -i PATH="$PATH" HOME="$T" STATE_DIR="$T/state" MODEL_CACHE_DIR="$T/models" PUBLIC_IP_URLS= LOG_LEVEL=warn \
        AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent CONTROLLER_WS_URL="ws://127.0.0.1:${CTL_URL##*:}/ws/node" \
        NODE_TOKEN="$TOKEN" "$BIN" >"$T/worker.log" 2>&1 &
PIDS+=($!)
node "$SRC/tests/controller/ctl.js" wait --url "$CTL_URL" --admin-token "$ADMIN_TOKEN" --node "$NODE" \
        --state registered --wait 15 >/dev/null

echo "== curl -o"
t0=$(now)
curl -sS -o "$T/curl.bin" "$URL"
t1=$(now)
CURL_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
sha256sum "$T/curl.bin" >/dev/null
t2=$(now)
CURLSHA_S=$(awk -v a="$t0" -v b="$t2" 'BEGIN { print b - a }')
rm -f "$T/curl.bin"

echo "== model.download (sha256 verified)"
t0=$(now)
out=$(node "$SRC/tests/controller/ctl.js" send --url "$CTL_URL" --admin-token "$ADMIN_TOKEN" --node "$NODE" \
        --type model.download --resource '{"type":"model","id":"bench"}' \
        --data "{\"source\":\"http\",\"sourcePath\":\"$URL\",\"targetPath\":\"bench\",\"sha256\":\"$SHA\"}" \
        --wait 3600 --print data 2>/dev/null) || { echo "model.download failed: $out" >&2; exit 1; }
t1=$(now)
W_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')

echo
echo "  curl -o                 $(rate "$BYTES" "$CURL_S")"
echo "  curl -o; sha256sum      $(rate "$BYTES" "$CURLSHA_S")"
echo "  aiwm model.download     $(rate "$BYTES" "$W_S")"
awk -v c="$CURL_S" -v s="$CURLSHA_S" -v w="$W_S" \
        'BEGIN { printf "  worker / curl: %.2fx the time; worker / (curl + sha256sum): %.2fx\n", w / c, w / s }'
MIB=$(awk -v b="$BYTES" 'BEGIN { printf "%.0f", b / 1048576 }')
mibs() { awk -v b="$BYTES" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1048576 }'; }
printf 'BENCH %s MiB download with sha256 (vs curl -o, no hashing)\t%s\t%s\tMiB/s\n' "$MIB" "$(mibs "$W_S")" "$(mibs "$CURL_S")"
printf 'BENCH %s MiB download with sha256 (vs curl -o; sha256sum)\t%s\t%s\tMiB/s\n' "$MIB" "$(mibs "$W_S")" "$(mibs "$CURLSHA_S")"
