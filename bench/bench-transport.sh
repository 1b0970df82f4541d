#!/usr/bin/env bash
# bench/bench-transport.sh [WORKER_BIN]: the figures of issue 2 on loopback,
# beside a baseline measured in the same run: a Node process with
# socket.io-client (tests/controller/node_modules) doing the same work
# (connect over WebSocket, node.register with the same inventory fields,
# heartbeats on the controller's interval with cpuUsage/ramUsage computed
# from os.cpus()/os.freemem()).
#
#   (a) spawn -> node.register: from spawn() to the controller's receivedAt
#       of node.register, BENCH_RUNS runs (default 10), median; with a fresh
#       STATE_DIR each run, and again with the state of an earlier run;
#   (b) VmRSS and RssAnon after BENCH_HEARTBEATS heartbeats (default 10000)
#       at BENCH_HB_MS (default 2 ms), and their growth from heartbeat 1000;
#   (c) CPU per heartbeat: utime+stime (/proc/PID/stat) between heartbeat
#       1000 and the last, divided by the heartbeats the controller counted.
#
# Prints `BENCH <figure>\t<ours>\t<baseline>\t<unit>` lines (collected by
# scripts/bench.sh), then a table with the original TypeScript worker's
# figures from issue 2 (~1.0 s spawn->register, 76-80 MiB RSS, ~7 ms CPU per
# heartbeat), and writes JSON to $BENCH_JSON (default: bench-transport.json
# beside the binary). GPU probing is off in both (AIWM_NVML_PATH=, no
# nvidia-smi) and the public IP lookup too. About a minute.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-${AIWM_BIN:-$SRC/build/aiwm-worker}}")
[ -x "$BIN" ] || { echo "bench-transport: no worker binary at $BIN (make first)" >&2; exit 1; }
[ -d "$SRC/tests/controller/node_modules/socket.io-client" ] ||
        { echo "bench-transport: socket.io-client missing: (cd tests/controller && npm ci)" >&2; exit 1; }
JSON=${BENCH_JSON:-$(dirname "$BIN")/bench-transport.json}
T=$(mktemp -d /tmp/aiwm-bench-tr.XXXXXX)
export ADMIN_TOKEN=bench-admin JWT_SECRET=bench-secret
CP=
cleanup() { [ -n "$CP" ] && kill "$CP" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

node "$SRC/tests/controller/server.js" --port 0 --port-file "$T/port" --quiet \
        --heartbeat-interval 60000 --metrics-interval 3600000 --max-log 100 >"$T/ctl.log" 2>&1 &
CP=$!
for _ in $(seq 1 100); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || { echo "bench-transport: the controller did not start" >&2; cat "$T/ctl.log" >&2; exit 1; }

# The baseline client: what a Node worker does at the least.
cat >"$T/baseline.js" <<'JS'
const { io } = require(process.env.SIO_CLIENT);
const os = require('os');
const crypto = require('crypto');
const env = (type, data) => ({ type, messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data });
const u = new URL(process.env.CONTROLLER_WS_URL);
const nodeId = process.env.NODE_ID;
const s = io(`http://${u.host}${u.pathname}`, { path: '/socket.io/', transports: ['websocket'], auth: { token: process.env.NODE_TOKEN } });
let timer = null;
let prev = os.cpus();
function cpuUsage() {
  const now = os.cpus();
  let idle = 0, total = 0;
  now.forEach((c, i) => {
    const p = prev[i].times, t = c.times;
    const d = (k) => t[k] - p[k];
    idle += d('idle');
    total += d('user') + d('nice') + d('sys') + d('idle') + d('irq');
  });
  prev = now;
  return total ? Math.round(((total - idle) / total) * 100) : 0;
}
s.on('connection.ack', (m) => {
  if (m.status !== 'success' && !(m.data && m.data.status === 'success')) return;
  s.emit('node.register', env('node.register', {
    nodeId, name: 'baseline', hostname: os.hostname(), ipAddress: '127.0.0.1', publicIpAddress: 'unknown',
    os: { platform: os.platform(), distro: 'linux', version: os.release(), arch: os.arch(), kernel: os.release() },
    cpuCores: os.cpus().length, cpuModel: os.cpus()[0].model, ramTotal: Math.round(os.totalmem() / 1048576),
    diskTotal: 0, gpuDevices: [], daemonVersion: '0.0.0-baseline', nodeStatus: 'ready',
    uptimeSeconds: Math.round(os.uptime()), containerRuntime: { type: 'docker', version: 'unavailable', rootDir: '', available: false },
  }));
});
s.on('register.ack', (m) => {
  const ms = m.data.controllerInfo.heartbeatInterval;
  clearInterval(timer);
  timer = setInterval(() => s.emit('telemetry.heartbeat', env('telemetry.heartbeat', {
    nodeId, status: 'healthy', uptimeSeconds: Math.round(os.uptime()), activeDeployments: 0,
    cpuUsage: cpuUsage(), ramUsage: Math.round((1 - os.freemem() / os.totalmem()) * 100), gpuStatus: [],
  })), ms);
});
process.on('SIGTERM', () => { s.close(); process.exit(0); });
JS

node - "$(cat "$T/port")" "$BIN" "$T" "$SRC" "$JSON" "${BENCH_RUNS:-10}" "${BENCH_HEARTBEATS:-10000}" "${BENCH_HB_MS:-2}" "$(getconf CLK_TCK)" <<'JS'
const [port, bin, T, SRC, jsonPath, RUNS, HBS, HBMS, HZ] = process.argv.slice(2);
const fs = require('fs');
const { spawn, execFileSync } = require('child_process');
const api = `http://127.0.0.1:${port}`;
const H = { Authorization: `Bearer ${process.env.ADMIN_TOKEN}`, 'Content-Type': 'application/json' };
const get = async (p) => (await fetch(api + p, { headers: H })).json();
const post = async (p, b) => (await fetch(api + p, { method: 'POST', headers: H, body: JSON.stringify(b) })).json();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mint = (id) => execFileSync('node', [`${SRC}/tests/controller/ctl.js`, 'mint-token', id]).toString().trim();
const newId = () => execFileSync('node', [`${SRC}/tests/controller/ctl.js`, 'new-id']).toString().trim();
const median = (a) => { const s = [...a].sort((x, y) => x - y); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const wsUrl = `ws://127.0.0.1:${port}/ws/node`;

const children = new Set();
process.on('exit', () => { for (const c of children) c.kill('SIGKILL'); });
function start(kind, id, stateDir) {
  const p = spawnKind(kind, id, stateDir);
  children.add(p);
  p.once('exit', () => children.delete(p));
  return p;
}
function spawnKind(kind, id, stateDir) {
  const env = { PATH: process.env.PATH, HOME: T, CONTROLLER_WS_URL: wsUrl, NODE_TOKEN: tokens[id], NODE_ID: id };
  if (kind === 'ours') {
    Object.assign(env, { STATE_DIR: stateDir, MODEL_CACHE_DIR: `${T}/models`, PUBLIC_IP_URLS: '', AIWM_NVML_PATH: '',
      NVIDIA_SMI_PATH: '/nonexistent', LOG_LEVEL: 'warn' });
    return spawn(bin, [], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  }
  env.SIO_CLIENT = `${SRC}/tests/controller/node_modules/socket.io-client`;
  return spawn(process.execPath, [`${T}/baseline.js`], { env, stdio: ['ignore', 'ignore', 'inherit'] });
}
async function stop(p, id) {
  const done = new Promise((r) => p.once('exit', r));
  p.kill('SIGTERM');
  await done;
  await get(`/admin/nodes/${id}/wait?state=disconnected&timeout=5000`);
}
const tokens = {};
const ids = { ours: newId(), base: newId() };
for (const id of Object.values(ids)) tokens[id] = mint(id);

// (a) spawn -> node.register as the controller receives it.
async function spawnToRegister(kind, fresh) {
  const id = ids[kind];
  const out = [];
  for (let i = 0; i < Number(RUNS); i++) {
    const dir = fresh ? `${T}/state-${kind}-${i}` : `${T}/state-${kind}-keep`;
    const since = (await get(`/admin/nodes/${id}/events?type=node.register&since=999999999`)).lastSeq;
    if (typeof since !== 'number') throw new Error(`${kind}: node ${id} unknown to the controller`);
    const t0 = Date.now();
    const p = start(kind, id, dir);
    const ev = await get(`/admin/nodes/${id}/events?type=node.register&since=${since}&wait=15000`);
    if (!ev.events || !ev.events.length) throw new Error(`${kind}: no node.register within 15 s`);
    out.push(Date.parse(ev.events[0].receivedAt) - t0);
    await stop(p, id);
  }
  return out;
}

function proc(pid) {
  const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const f = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(st)[1]);
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { vmrss: f('VmRSS'), anon: f('RssAnon'), ticks: Number(x[11]) + Number(x[12]) };
}

// (b)+(c) heartbeats at HBMS until HBS of them.
async function heartbeats(kind) {
  const id = ids[kind];
  await post('/admin/config', { heartbeatInterval: Number(HBMS), metricsInterval: 3600000 });
  const p = start(kind, id, `${T}/state-${kind}-keep`);
  await get(`/admin/nodes/${id}/wait?state=registered&timeout=15000`);
  const hb = async () => (await get(`/admin/nodes/${id}`)).counters.heartbeats;
  const h00 = await hb();
  let a = null, b = null;
  const t0 = Date.now();
  while (Date.now() - t0 < 180000) {
    const n = (await hb()) - h00;
    if (!a && n >= 1000) a = { n, ...proc(p.pid), t: Date.now() };
    if (n >= Number(HBS)) { b = { n, ...proc(p.pid), t: Date.now() }; break; }
    await sleep(100);
  }
  await stop(p, id);
  await post('/admin/config', { heartbeatInterval: 60000 });
  if (!a || !b) throw new Error(`${kind}: fewer than ${HBS} heartbeats in 180 s`);
  return { at1000: a, end: b, cpuMsPerHb: ((b.ticks - a.ticks) * 1000) / Number(HZ) / (b.n - a.n), rate: ((b.n - a.n) * 1000) / (b.t - a.t) };
}

(async () => {
  for (const [k, id] of Object.entries(ids)) await post('/api/nodes', { _id: id, name: `bench-${k}`, role: ['worker'] });
  const R = {};
  for (const kind of ['ours', 'base']) {
    process.stderr.write(`# ${kind}: spawn -> register (fresh state) x${RUNS}\n`);
    R[kind] = { fresh: await spawnToRegister(kind, true) };
    process.stderr.write(`# ${kind}: spawn -> register (existing state) x${RUNS}\n`);
    R[kind].kept = await spawnToRegister(kind, false);
    process.stderr.write(`# ${kind}: ${HBS} heartbeats at ${HBMS} ms\n`);
    R[kind].hb = await heartbeats(kind);
  }
  const o = R.ours, b = R.base;
  const fig = [
    [`spawn -> node.register, fresh STATE_DIR (median of ${RUNS})`, median(o.fresh), median(b.fresh), 'ms', 'about 1000 ms'],
    [`spawn -> node.register, existing STATE_DIR (median of ${RUNS})`, median(o.kept), median(b.kept), 'ms', 'about 1000 ms'],
    [`VmRSS after ${o.hb.end.n} heartbeats`, o.hb.end.vmrss, b.hb.end.vmrss, 'kB', '76-80 MiB (93 MiB peak)'],
    [`RssAnon after ${o.hb.end.n} heartbeats`, o.hb.end.anon, b.hb.end.anon, 'kB', '-'],
    ['VmRSS growth from heartbeat 1000', o.hb.end.vmrss - o.hb.at1000.vmrss, b.hb.end.vmrss - b.hb.at1000.vmrss, 'kB', '-'],
    ['RssAnon growth from heartbeat 1000', o.hb.end.anon - o.hb.at1000.anon, b.hb.end.anon - b.hb.at1000.anon, 'kB', '-'],
    [`CPU per heartbeat (${HBMS} ms interval)`, Number(o.hb.cpuMsPerHb.toFixed(4)), Number(b.hb.cpuMsPerHb.toFixed(4)), 'ms', 'about 7 ms'],
    ['heartbeats per second reached', Number(o.hb.rate.toFixed(1)), Number(b.hb.rate.toFixed(1)), '1/s', '-'],
  ];
  for (const [f, ours, base, unit] of fig) console.log(`BENCH ${f}\t${ours}\t${base}\t${unit}`);
  console.log('');
  const w = [58, 10, 10, 7, 26];
  const row = (c) => c.map((x, i) => String(x).padEnd(w[i])).join(' ');
  console.log(row(['figure', 'ours', 'node+sio', 'ratio', 'original TS worker (issue 2)']));
  for (const [f, ours, base, unit, orig] of fig) {
    const ratio = base ? (ours / base).toFixed(2) : '-';
    console.log(row([f, `${ours} ${unit}`, `${base} ${unit}`, ratio, orig]));
  }
  console.log(`# spawn->register runs (ms): ours fresh ${o.fresh.join(' ')}; ours kept ${o.kept.join(' ')}; node fresh ${b.fresh.join(' ')}`);
  fs.writeFileSync(jsonPath, JSON.stringify({
    bench: 'bench-transport', date: new Date().toISOString(), runs: Number(RUNS), heartbeatMs: Number(HBMS),
    results: fig.map(([figure, ours, baseline, unit, original]) => ({ figure, ours, baseline, unit, ratio: baseline ? ours / baseline : null, original })),
    raw: R,
  }, null, 1));
  console.log(`# JSON: ${jsonPath}`);
})().catch((e) => { console.error(`bench-transport: ${e.message}`); process.exit(1); });
JS
