#!/usr/bin/env bash
# Issue 2: the connected worker against the dev controller (socket.io@4 +
# jsonwebtoken): configuration errors, registration, heartbeats, bad tokens,
# token rotation, controller faults and restarts, TLS, shutdown.
. "$(dirname "$0")/lib.sh"

NODE=6650a1b2c3d4e5f607182930
GOOD=$(mint "$NODE")
BASE_ENV=(NODE_TOKEN="$GOOD" RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=800 HEARTBEAT_INTERVAL=60000 METRICS_INTERVAL=60000)

# --- configuration errors: exit 78 with one line naming the key -----------
cfg_err() {
        local key=$1; shift
        local out rc
        out=$(env -i PATH="$PATH" STATE_DIR="$T/cfg" "$@" "$AIWM_BIN" 2>&1 >/dev/null) && rc=0 || rc=$?
        [ "$rc" = 78 ] && grep -q "$key" <<<"$out" && [ "$(wc -l <<<"$out")" = 1 ] && ! grep -q "$GOOD" <<<"$out"
}
check "missing token exits 78 naming NODE_TOKEN" cfg_err NODE_TOKEN CONTROLLER_WS_URL=ws://127.0.0.1:1/ws/node
check "malformed URL exits 78" cfg_err CONTROLLER_WS_URL NODE_TOKEN="$GOOD" CONTROLLER_WS_URL=ftp://x
check "bad interval exits 78" cfg_err HEARTBEAT_INTERVAL NODE_TOKEN="$GOOD" HEARTBEAT_INTERVAL=abc
check "zero interval exits 78" cfg_err METRICS_INTERVAL NODE_TOKEN="$GOOD" METRICS_INTERVAL=0
check "NODE_ID differing from the token's sub exits 78" cfg_err NODE_ID NODE_TOKEN="$GOOD" NODE_ID=0123456789abcdef01234567
check "--version" bash -c "'$AIWM_BIN' --version | grep -q '^aiwm-worker '"

# --- happy path ------------------------------------------------------------
start_controller ctl --heartbeat-interval 300 --metrics-interval 500 --seed-node "$NODE"
URL="ws://127.0.0.1:$CTL_PORT/ws/node"
printf 'NODE_TOKEN=%s\nCONTROLLER_WS_URL=%s\nRECONNECT_DELAY=300\nRECONNECT_DELAY_MAX=1000\n' "$GOOD" "$URL" >"$T/w.env"
mkdir -p "$T/w.state" "$T/w.models"
(cd "$T" && exec env -i PATH="$PATH" STATE_DIR="$T/w.state" MODEL_CACHE_DIR="$T/w.models" PUBLIC_IP_URLS= LOG_LEVEL=debug \
        "$AIWM_BIN" --env-file "$T/w.env" >"$T/w.log" 2>&1) &
WORKER_PID=$!
PIDS+=("$WORKER_PID")
check "registers with a token from --env-file" wait_log "$T/w.log" "registered" 10
check "register.ack intervals take over" grep -q 'heartbeatInterval=300' "$T/w.log"
check "token never logged" bash -c "! grep -q '$GOOD' '$T/w.log'"
sleep 1.5
hb=$(api GET "/admin/nodes/$NODE" | json_get 'this.counters.heartbeats')
mt=$(api GET "/admin/nodes/$NODE" | json_get 'this.counters.metrics')
check "heartbeats on the controller's schedule ($hb in 1.5 s)" test "$hb" -ge 3
check "metrics on the controller's schedule ($mt)" test "$mt" -ge 2
inv=$(api GET "/admin/nodes/$NODE" | json_get 'JSON.stringify(this.node || this.document || this)')
check "node.register carries the inventory" bash -c "grep -q '\"cpuCores\"' <<<'$inv' && grep -q '\"os\"' <<<'$inv'"
ev=$(api GET "/admin/nodes/$NODE/events?type=telemetry.heartbeat&limit=1" )
check "heartbeat envelope: type, uuid messageId, ISO timestamp" bash -c "node -e '
const e=JSON.parse(process.argv[1]); const x=(e.events||e)[0].envelope;
if(x.type!==\"telemetry.heartbeat\"||!/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(x.messageId)||!/^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z$/.test(x.timestamp)||x.data.nodeId!==\"$NODE\") process.exit(1)' '$ev'"

# --- controller killed and restarted on the same port ---------------------
CTL_FIXED_PORT=$CTL_PORT
stop_pid "$CTL_PID"
check "notices the controller going away" wait_log "$T/w.log" "connection lost|disconnected" 5
sleep 1
start_controller ctl2 --heartbeat-interval 300 --metrics-interval 500 --seed-node "$NODE"
check "re-registers after a controller restart" bash -c "for i in \$(seq 1 100); do [ \$(grep -c 'registered' '$T/w.log') -ge 2 ] && exit 0; sleep 0.1; done; exit 1"
unset CTL_FIXED_PORT

# --- faults on a live session ---------------------------------------------
fault_reconnects() {
        local mode=$1 extra=${2:-} before
        before=$(count_log "$T/w.log" "registered heartbeatInterval")
        api POST /admin/faults "{\"mode\":\"$mode\"$extra}" >/dev/null
        for i in $(seq 1 100); do
                [ "$(count_log "$T/w.log" "registered heartbeatInterval")" -gt "$before" ] && return 0
                sleep 0.1
        done
        return 1
}
check "close mid-frame: reconnects" fault_reconnects close-mid-frame
check "text that is not Engine.IO: reconnects" fault_reconnects garbage
check "event that is not JSON: reconnects" fault_reconnects bad-json-event
check "message over the size limit: reconnects" fault_reconnects oversize ',"sizeMiB":17'
check "oversize logged clearly" grep -Eq "message over [0-9]+ bytes" "$T/w.log"
check "TCP drop: reconnects" fault_reconnects drop
check "server kick: reconnects" fault_reconnects kick
api POST /admin/faults '{"mode":"foreign-namespace"}' >/dev/null
sleep 0.3
check "packet for another namespace: ignored, still alive" kill -0 "$WORKER_PID"
check "worker never crashed" kill -0 "$WORKER_PID"

# --- SIGTERM: leaves cleanly, exit 0 within 5 s -----------------------------
kill -TERM "$WORKER_PID"
t0=$(date +%s%N)
wait "$WORKER_PID" && rc=0 || rc=$?
el=$(( ($(date +%s%N) - t0) / 1000000 ))
check "SIGTERM exits 0 ($rc) in ${el} ms" test "$rc" = 0 -a "$el" -lt 5000
sleep 0.3
reason=$(api GET "/admin/nodes/$NODE/connections" | json_get 'this.connections ? this.connections[this.connections.length-1].reason : this[this.length-1].reason')
check "controller saw a client-side leave ($reason)" bash -c "grep -Eq 'client namespace disconnect|transport close' <<<'$reason'"

# --- bad tokens: logged once, retried on the backoff, no busy loop ---------
echo "garbage.token.here" >"$T/tok"
start_worker bad CONTROLLER_WS_URL="$URL" NODE_TOKEN_FILE="$T/tok" NODE_ID=$NODE RECONNECT_DELAY=300 RECONNECT_DELAY_MAX=600
check "garbage token: TOKEN_INVALID logged" wait_log "$T/bad.log" "TOKEN_INVALID" 5
sleep 2
t1=$(cpu_ticks "$WORKER_PID")
sleep 2
t2=$(cpu_ticks "$WORKER_PID")
check "backing off uses little CPU ($((t2 - t1)) ticks in 2 s)" test $((t2 - t1)) -le 20
n=$(grep -c 'level.*error\|error ' "$T/bad.log" | head -1)
check "refusal logged as an error once, not per attempt" test "$(grep -c 'ERROR\|error.*TOKEN_INVALID' "$T/bad.log")" -le 2
mint "$NODE" --exp -10 >"$T/tok"
check "expired token: TOKEN_EXPIRED logged" wait_log "$T/bad.log" "TOKEN_EXPIRED" 5
mint "$NODE" >"$T/tok"
check "token file rotation: registers without a restart" wait_log "$T/bad.log" "registered" 5
stop_pid "$WORKER_PID"

# --- unknown node: connection.ack 1004, retried ----------------------------
OTHER=$(node "$CTL_DIR/ctl.js" new-id)
start_worker unk CONTROLLER_WS_URL="$URL" NODE_TOKEN="$(mint "$OTHER")" RECONNECT_DELAY=300 RECONNECT_DELAY_MAX=600
check "connection.ack 1004 logged" wait_log "$T/unk.log" "1004" 5
api POST /api/nodes "{\"_id\":\"$OTHER\",\"name\":\"late\",\"role\":[\"worker\"]}" >/dev/null
check "registers once the node exists" wait_log "$T/unk.log" "registered" 6
stop_pid "$WORKER_PID"

# --- connection.ack naming another node: warned once per connection, kept ---
# The controller books a connection under its token's node id (PROTOCOL.md
# §3.3) and ignores the nodeId in our messages: a token file rotated to
# another node's token must not go unnoticed.
mint "$NODE" >"$T/tok2"
start_worker nid CONTROLLER_WS_URL="$URL" NODE_TOKEN_FILE="$T/tok2" NODE_ID=$NODE RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=400
check "own token: registers" wait_log "$T/nid.log" "registered heartbeatInterval" 5
check "own token: no node id warning" test "$(count_log "$T/nid.log" 'names another node')" = 0
mint "$OTHER" >"$T/tok2"
kill -HUP "$WORKER_PID"
check "another node's token: warning names both ids" \
        wait_log "$T/nid.log" "names another node.*nodeId=$OTHER.*NODE_ID=$NODE" 5
check "another node's token: not dropped, registers" \
        bash -c "for i in \$(seq 1 50); do [ \$(grep -c 'registered heartbeatInterval' '$T/nid.log') -ge 2 ] && exit 0; sleep 0.1; done; exit 1"
api POST /admin/faults '{"mode":"kick"}' >/dev/null
check "warned again on the next connection" \
        bash -c "for i in \$(seq 1 50); do [ \$(grep -c 'registered heartbeatInterval' '$T/nid.log') -ge 3 ] && exit 0; sleep 0.1; done; exit 1"
check "once per connection (2 warnings for 2 connections)" test "$(count_log "$T/nid.log" 'names another node')" = 2
stop_pid "$WORKER_PID"

# --- REGISTRATION_FAILED (upstream HEAD): heartbeats go on, register retried
api POST /admin/config '{"registerFails":true}' >/dev/null
start_worker rf CONTROLLER_WS_URL="$URL" NODE_TOKEN="$GOOD" HEARTBEAT_INTERVAL=200 METRICS_INTERVAL=400 RECONNECT_DELAY=300 RECONNECT_DELAY_MAX=600
check "REGISTRATION_FAILED logged" wait_log "$T/rf.log" "REGISTRATION_FAILED" 5
sleep 1.5
n=$(api GET "/admin/nodes/$NODE/events?type=node.register" | json_get '(this.events||this).length')
h=$(api GET "/admin/nodes/$NODE/events?type=telemetry.heartbeat&since=0" | json_get '(this.events||this).length')
check "node.register retried ($n)" test "$n" -ge 2
check "heartbeats continue while unregistered ($h)" test "$h" -ge 3
api POST /admin/config '{"registerFails":false}' >/dev/null
check "register.ack eventually accepted" wait_log "$T/rf.log" "registered heartbeatInterval" 6
stop_pid "$WORKER_PID"

# --- half-open link: detected within pingInterval + pingTimeout ------------
api POST /admin/config '{"pingInterval":400,"pingTimeout":400}' >/dev/null
start_worker ho CONTROLLER_WS_URL="$URL" NODE_TOKEN="$GOOD" RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=400
wait_log "$T/ho.log" "registered heartbeatInterval" 5 || true
api POST /admin/faults '{"mode":"stall","target":"current"}' >/dev/null
t0=$(date +%s%N)
check "half-open link detected" wait_log "$T/ho.log" "pingInterval \+ pingTimeout" 4
el=$(( ($(date +%s%N) - t0) / 1000000 ))
check "detected in ${el} ms (<= 800 + slack)" test "$el" -lt 2000
api POST /admin/faults '{"mode":"none"}' >/dev/null
stop_pid "$WORKER_PID"
api POST /admin/config '{"pingInterval":25000,"pingTimeout":20000}' >/dev/null

# --- stalled controller: handshake timeout, then recovery ------------------
api POST /admin/faults '{"mode":"stall","phase":"open","target":"new","count":1}' >/dev/null
start_worker st CONTROLLER_WS_URL="$URL" NODE_TOKEN="$GOOD" RECONNECT_DELAY=200 RECONNECT_DELAY_MAX=400
check "stall then recovery" wait_log "$T/st.log" "registered heartbeatInterval" 30
stop_pid "$WORKER_PID"

# --- corrupted upgrade reply: the attempt fails at once --------------------
# A server answering the upgrade with a valid 101 whose head is corrupted
# (one flipped bit, as the chaos proxy does), followed by the Engine.IO OPEN
# frame, then silence. Before the fix a flipped bit in the final CRLFCRLF
# left the worker waiting for the connect timeout (20 s).
cat >"$T/bad101.js" <<'JS'
const net = require('net');
const crypto = require('crypto');
const fs = require('fs');
const variants = [
  (h) => h.replace(/\r\n\r\n$/, '\r\n\x0c\n'),   // CR of the empty line -> control byte
  (h) => h.replace(/\r\n\r\n$/, '\r\n\r*'),       // its LF -> '*': CR without LF
  (h) => h.replace(/\r\n\r\n$/, '\r\nM\n'),       // its CR -> 'M': a line without a colon
];
let n = 0;
const held = [];
const srv = net.createServer((c) => {
  let req = '';
  held.push(c);
  c.on('error', () => {});
  c.on('data', (d) => {
    req += d.toString('latin1');
    if (!req.includes('\r\n\r\n')) return;
    const key = /sec-websocket-key:\s*(\S+)/i.exec(req)[1];
    const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
    const head = `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`;
    const open = Buffer.from('0{"sid":"x","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}');
    c.write(Buffer.concat([Buffer.from(variants[n++ % variants.length](head), 'latin1'), Buffer.from([0x81, open.length]), open]));
    req = '';
  });
});
srv.listen(0, '127.0.0.1', () => fs.writeFileSync(process.argv[2], String(srv.address().port)));
JS
node "$T/bad101.js" "$T/bad101.port" &
PIDS+=($!)
B101_PID=$!
for i in $(seq 1 50); do [ -s "$T/bad101.port" ] && break; sleep 0.1; done
start_worker b101 CONTROLLER_WS_URL="ws://127.0.0.1:$(cat "$T/bad101.port")/ws/node" NODE_TOKEN="$GOOD" RECONNECT_DELAY=100 RECONNECT_DELAY_MAX=200
check "corrupted upgrade reply: fails at once with a clear reason" \
        wait_log "$T/b101.log" "connection attempt failed.*control byte 0x0c in the HTTP response head" 3
check "CR without LF in the reply: fails at once" wait_log "$T/b101.log" "CR without LF in the HTTP response head" 3
check "header line without a colon: fails at once" wait_log "$T/b101.log" "malformed HTTP header line" 3
check "no connect timeout waited for" bash -c "! grep -q 'handshake timed out' '$T/b101.log'"
stop_pid "$WORKER_PID"
stop_pid "$B101_PID"
stop_pid "$CTL_PID"

# --- TLS --------------------------------------------------------------------
bash "$AIWM_SRC/scripts/gen-test-certs.sh" "$T/certs" >/dev/null 2>&1
start_controller tls --seed-node "$NODE" --tls-cert "$T/certs/server.crt" --tls-key "$T/certs/server.key"
start_worker tls1 CONTROLLER_WS_URL="wss://127.0.0.1:$CTL_PORT/ws/node" NODE_TOKEN="$GOOD" TLS_CA_FILE="$T/certs/ca.crt"
check "wss with TLS_CA_FILE: registers" wait_log "$T/tls1.log" "registered" 10
stop_pid "$WORKER_PID"
start_worker tls2 CONTROLLER_WS_URL="wss://localhost:$CTL_PORT/ws/node" NODE_TOKEN="$GOOD" RECONNECT_DELAY=300 RECONNECT_DELAY_MAX=600
check "untrusted certificate refused with the reason" wait_log "$T/tls2.log" "certificate|verify" 5
stop_pid "$WORKER_PID"
stop_pid "$CTL_PID"
start_controller tlsw --seed-node "$NODE" --tls-cert "$T/certs/wrong-host.crt" --tls-key "$T/certs/wrong-host.key"
start_worker tls3 CONTROLLER_WS_URL="wss://localhost:$CTL_PORT/ws/node" NODE_TOKEN="$GOOD" TLS_CA_FILE="$T/certs/ca.crt" RECONNECT_DELAY=300 RECONNECT_DELAY_MAX=600
check "certificate for another host refused" wait_log "$T/tls3.log" "hostname|host name|mismatch" 5
stop_pid "$WORKER_PID"
start_worker tls4 CONTROLLER_WS_URL="wss://localhost:$CTL_PORT/ws/node" NODE_TOKEN="$GOOD" TLS_INSECURE=true
check "TLS_INSECURE: loud warning" wait_log "$T/tls4.log" "TLS_INSECURE is on" 5
check "TLS_INSECURE: registers" wait_log "$T/tls4.log" "registered" 10
stop_pid "$WORKER_PID"

finish
