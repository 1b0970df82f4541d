#!/usr/bin/env bash
# scripts/check-valgrind.sh [WORKER_BIN]
#
# Runs the worker under valgrind memcheck (--leak-check=full
# --errors-for-leak-kinds=definite --error-exitcode=99) against the dev
# controller for a short session: connect, register, heartbeats and metrics
# (200/300 ms), commands (system.healthCheck, system.query, model.list, a
# model.download from a local HTTP server, an unknown type and an invalid
# field, a duplicate delivery), a dropped connection and a kick with their
# reconnects, then SIGTERM. Fails on any memcheck error or definite leak, on
# a non-zero exit, or when a step does not happen. A Debug build gives
# readable stacks (make check-valgrind builds one).
#
# WORKER_BIN: default $AIWM_BIN, else build/aiwm-worker. KEEP=1 keeps the
# temp dir with valgrind's reports (vg/<pid>.log: the worker's, and one for
# each forked child that did not exec, e.g. a probe whose program is missing). Exit 77 when valgrind is not installed.
# GPU probing is off (AIWM_NVML_PATH= and no nvidia-smi): valgrind cannot
# follow pidfd-watched children; ASan covers those paths.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-${AIWM_BIN:-$SRC/build/aiwm-worker}}
command -v valgrind >/dev/null || { echo "skip: valgrind not installed"; exit 77; }
[ -x "$BIN" ] || { echo "check-valgrind: no worker binary at $BIN" >&2; exit 1; }
T=$(mktemp -d /tmp/aiwm-vg.XXXXXX)
VGDIR=$T/vg
export ADMIN_TOKEN=vg-admin JWT_SECRET=vg-secret
NODE=6650a1b2c3d4e5f6071829bb
PIDS=()
FAILS=0
cleanup() {
        local p
        for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null; done
        wait 2>/dev/null
        if [ "$FAILS" -gt 0 ] || [ "${KEEP:-0}" = 1 ]; then echo "# files kept in $T" >&2; else rm -rf "$T"; fi
}
trap cleanup EXIT
ok() { echo "ok - $*"; }
bad() { echo "not ok - $*"; FAILS=$((FAILS + 1)); }
wait_file() { local i; for i in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.1; done; return 1; }
CTL() { node "$SRC/tests/controller/ctl.js" "$@" --url "$API"; }

# Peers: the dev controller and a small HTTP file server.
node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/ctl.port" --seed-node "$NODE" \
        --heartbeat-interval 200 --metrics-interval 300 >"$T/ctl.log" 2>&1 &
PIDS+=($!)
wait_file "$T/ctl.port" || { echo "controller did not start" >&2; cat "$T/ctl.log" >&2; exit 1; }
API="http://127.0.0.1:$(cat "$T/ctl.port")"
mkdir -p "$T/www" "$T/state" "$T/models" "$VGDIR"
head -c 1048576 /dev/urandom >"$T/www/m.bin"
SHA=$(sha256sum "$T/www/m.bin" | cut -d' ' -f1)
python3 "$SRC/tests/helpers/dl-server.py" --root "$T/www" --port-file "$T/dl.port" >"$T/dl.log" 2>&1 &
PIDS+=($!)
wait_file "$T/dl.port" || { echo "dl-server did not start" >&2; exit 1; }
DL="http://127.0.0.1:$(cat "$T/dl.port")"

TOKEN=$(node "$SRC/tests/controller/ctl.js" mint-token "$NODE")
env -i PATH="$PATH" HOME="$T" CONTROLLER_WS_URL="ws://127.0.0.1:${API##*:}/ws/node" NODE_TOKEN="$TOKEN" \
        STATE_DIR="$T/state" MODEL_CACHE_DIR="$T/models" PUBLIC_IP_URLS= AIWM_NVML_PATH= NVIDIA_SMI_PATH=/nonexistent \
        LOG_LEVEL=info RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=1000 \
        valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite,possible \
        --errors-for-leak-kinds=definite --error-exitcode=99 --track-fds=yes --num-callers=40 \
        --log-file="$VGDIR/%p.log" "$BIN" >"$T/worker.log" 2>&1 &
WP=$!
PIDS+=("$WP")

if CTL wait --node "$NODE" --state registered --wait 60 >/dev/null; then ok "registers under valgrind"; else bad "registers under valgrind"; fi
sleep 2
hb=$(CTL node --node "$NODE" | node -pe 'JSON.parse(require("fs").readFileSync(0)).counters.heartbeats' 2>/dev/null || echo 0)
if [ "${hb:-0}" -ge 3 ]; then ok "heartbeats ($hb)"; else bad "heartbeats ($hb)"; fi

# send NAME EXPECT(0|2) ARGS...: one command, its result within 30 s.
send() {
        local what=$1 want=$2 rc
        shift 2
        CTL send --node "$NODE" --wait 30 "$@" >"$T/last.json" 2>&1 && rc=0 || rc=$?
        if [ "$rc" = "$want" ]; then ok "$what"; else bad "$what (exit $rc: $(head -c 300 "$T/last.json"))"; fi
}
for i in 1 2 3; do send "system.healthCheck $i" 0 --type system.healthCheck --data '{"includeMetrics":true}'; done
send "system.query" 0 --type system.query
send "model.list" 0 --type model.list --resource '{"type":"model","id":"list"}'
send "model.download over HTTP (1 MiB, sha256)" 0 --type model.download --resource '{"type":"model","id":"vg"}' \
        --data "{\"source\":\"http\",\"sourcePath\":\"$DL/m.bin\",\"targetPath\":\"vg/m\",\"sha256\":\"$SHA\"}"
send "unknown command type: 2001" 2 --type system.noSuchThing
send "invalid field: 2001" 2 --type model.download --resource '{"type":"model","id":"x"}' --data '{"source":42}'
MID=$(CTL send --node "$NODE" --type system.healthCheck --wait 30 --print record 2>/dev/null |
        node -pe 'JSON.parse(require("fs").readFileSync(0)).messageId' 2>/dev/null)
if [ -n "$MID" ] && CTL api POST "/admin/nodes/$NODE/commands/$MID/resend" >/dev/null 2>&1; then
        sleep 2
        n=$(CTL result --node "$NODE" --message-id "$MID" --wait 5 2>/dev/null |
                node -pe 'JSON.parse(require("fs").readFileSync(0)).results.length' 2>/dev/null)
        if [ "${n:-0}" -ge 1 ]; then ok "duplicate delivery answered from the store ($n results)"; else bad "duplicate delivery ($n)"; fi
else
        bad "duplicate delivery (no messageId)"
fi

# Connection loss: a TCP drop and a kick, each followed by a new registration.
for fault in drop kick; do
        before=$(grep -c 'registered heartbeatInterval' "$T/worker.log")
        CTL fault --mode "$fault" >/dev/null 2>&1
        okf=0
        for _ in $(seq 1 150); do
                [ "$(grep -c 'registered heartbeatInterval' "$T/worker.log")" -gt "$before" ] && { okf=1; break; }
                sleep 0.2
        done
        if [ "$okf" = 1 ]; then ok "reconnects after $fault"; else bad "reconnects after $fault"; fi
done
send "system.healthCheck after the reconnects" 0 --type system.healthCheck

kill -TERM "$WP"
wait "$WP"
rc=$?
PIDS=("${PIDS[@]/$WP/}")
VGLOG=$VGDIR/$WP.log
echo "# valgrind report of the worker (pid $WP):"
sed -n 's/^==[0-9]*== //p' "$VGLOG" | grep -E 'total heap usage|definitely lost|indirectly lost|possibly lost:|still reachable|ERROR SUMMARY|FILE DESCRIPTORS' | sed 's/^/#   /'
errs=$(sed -n 's/^==[0-9]*== ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$VGLOG" | tail -1)
if [ "$rc" = 0 ]; then ok "SIGTERM: exit 0"; elif [ "$rc" = 99 ]; then bad "valgrind found errors (exit 99)"; else bad "exit status $rc"; fi
if [ "${errs:-x}" = 0 ]; then ok "memcheck: 0 errors, no definite leak"; else
        bad "memcheck: ${errs:-no} errors"
        grep -E -A25 '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|Source and destination|[0-9,]+ .*definitely lost)' "$VGLOG" | head -n 120 >&2
fi
# Forked children that exited without exec (their heap is a copy of the
# worker's: only memory errors count there, not leaks).
nch=0
for f in "$VGDIR"/*.log; do
        [ "$f" = "$VGLOG" ] && continue
        nch=$((nch + 1))
        if grep -Eq '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param|Mismatched|Source and destination)' "$f"; then
                bad "memory error in a forked child ($f)"
                grep -E -A25 '^==[0-9]+== (Invalid|Conditional|Use of|Syscall param)' "$f" | head -n 60 >&2
        fi
done
[ "$nch" -gt 0 ] && echo "# $nch forked child(ren) exited under valgrind without exec; no memory error in them unless reported above"
[ "$FAILS" -eq 0 ] && echo "check-valgrind: passed" || echo "check-valgrind: $FAILS failed"
[ "$FAILS" -eq 0 ]
