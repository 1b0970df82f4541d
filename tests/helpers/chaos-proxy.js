#!/usr/bin/env node
// chaos-proxy: a TCP proxy (worker -> controller) that misbehaves on request.
// Node 20, no dependencies. Used by tests/integration/test-chaos.sh.
//
//   node chaos-proxy.js --target HOST:PORT [--listen PORT] [--control PORT]
//                       [--host 127.0.0.1] [--port-file FILE] [--seed N]
//
// Prints one line on stdout: `LISTENING <proxy port> <control port>` (the same
// two numbers go into --port-file, written atomically). Ports default to 0 (a
// free port). Logs go to stderr.
//
// Control API on the control port (HTTP, JSON bodies and answers, no auth,
// bound to --host):
//
//   GET  /stats                 counters (below) and the current mode
//   GET  /connections           the last 200 connections with their timeline
//   GET  /wait?accepted=N&timeout=MS
//                               long-poll until N connections were accepted in
//                               total (200 with /stats, 408 on timeout); also
//                               ?active=N (at least N open, not frozen)
//   POST /mode  {"mode":"pass"}
//               {"mode":"delay","delayMs":200}          every chunk, both ways, order kept
//               {"mode":"corrupt","every":1,"bytes":1,"skip":0,"probability":1}
//                       flips `bytes` random bits-of-bytes in every `every`-th
//                       server->worker chunk (with `probability`), leaving the
//                       first `skip` bytes of each connection alone
//   POST /cut   {}                                   destroy both sides of every
//                                                    open connection now (FIN;
//                                                    "rst":true for a TCP RST)
//               {"everyMs":300,"count":100}          ... and again every everyMs
//                                                    until count cuts (0 = forever)
//               {"stop":true}                        stop the periodic cuts
//   POST /half-open {}          freeze every open connection: nothing forwarded
//                               either way, nothing closed (bytes read and
//                               dropped; a FIN from either side is recorded,
//                               not passed on). New connections pass normally
//                               unless {"newToo":true}. Frozen connections are
//                               destroyed by the next cut or /reset, or after
//                               holdMs (default 60000).
//   POST /reset {}              mode pass, periodic cuts stopped, frozen
//                               connections destroyed; counters kept
//                               ({"counters":true} zeroes them too)
//
// Counters: accepted, active, frozen, upstreamFailures, closedByWorker,
// closedByServer, cuts (cut actions that destroyed at least one connection),
// cutConnections, halfOpens, bytesUp/bytesDown (worker->server / server->worker),
// chunksUp/chunksDown, delayedChunks, corruptedChunks, corruptedBytes,
// droppedWhileFrozen, lastAcceptAt (ms since the epoch).
'use strict';

const net = require('net');
const http = require('http');
const fs = require('fs');
const path = require('path');

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = { host: '127.0.0.1', listen: 0, control: 0, target: null, portFile: null, seed: 1 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') o.host = v();
    else if (a === '--listen') o.listen = Number(v());
    else if (a === '--control') o.control = Number(v());
    else if (a === '--target') o.target = v();
    else if (a === '--port-file') o.portFile = v();
    else if (a === '--seed') o.seed = Number(v());
    else if (a === '-h' || a === '--help') {
      process.stdout.write(fs.readFileSync(__filename, 'utf8').split('\n').filter((l) => l.startsWith('//')).map((l) => l.slice(3)).join('\n') + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!o.target || !/^[^:]+:\d+$/.test(o.target)) throw new Error('--target HOST:PORT required');
  const [th, tp] = o.target.split(':');
  o.targetHost = th;
  o.targetPort = Number(tp);
  for (const k of ['listen', 'control', 'targetPort']) {
    if (!Number.isInteger(o[k]) || o[k] < 0 || o[k] > 65535) throw new Error(`bad port for ${k}`);
  }
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`chaos-proxy: ${e.message}\n`);
  process.exit(2);
}

const log = (...a) => process.stderr.write(`${new Date().toISOString()} [chaos] ${a.join(' ')}\n`);

// Small deterministic PRNG (mulberry32) so a corrupt run can be replayed.
let rngState = opts.seed >>> 0 || 1;
function rand() {
  rngState = (rngState + 0x6d2b79f5) >>> 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

// ---------------------------------------------------------------- state

const counters = () => ({
  accepted: 0,
  upstreamFailures: 0,
  closedByWorker: 0,
  closedByServer: 0,
  cuts: 0,
  cutConnections: 0,
  halfOpens: 0,
  bytesUp: 0,
  bytesDown: 0,
  chunksUp: 0,
  chunksDown: 0,
  delayedChunks: 0,
  corruptedChunks: 0,
  corruptedBytes: 0,
  droppedWhileFrozen: 0,
  lastAcceptAt: null,
});
let ctr = counters();
let mode = { mode: 'pass' };
let freezeNew = false;
let periodic = null; // {timer, everyMs, count, done, rst}
const conns = new Map(); // id -> conn
const history = []; // last 200 conns (views)
let nextId = 1;
const waiters = new Set();

function activeCount() {
  let n = 0;
  for (const c of conns.values()) if (!c.frozen && !c.closed) n++;
  return n;
}
function frozenCount() {
  let n = 0;
  for (const c of conns.values()) if (c.frozen && !c.closed) n++;
  return n;
}

function statsView() {
  return {
    mode: mode.mode,
    modeParams: mode,
    freezeNew,
    periodicCut: periodic ? { everyMs: periodic.everyMs, count: periodic.count, done: periodic.done } : null,
    active: activeCount(),
    frozen: frozenCount(),
    ...ctr,
  };
}

function connView(c) {
  return {
    id: c.id,
    acceptedAt: c.acceptedAt,
    upstreamAt: c.upstreamAt,
    frozenAt: c.frozenAt,
    workerClosedAt: c.workerClosedAt,
    serverClosedAt: c.serverClosedAt,
    cutAt: c.cutAt,
    closedAt: c.closedAt,
    bytesUp: c.bytesUp,
    bytesDown: c.bytesDown,
  };
}

function notify() {
  for (const w of [...waiters]) w();
}

// ---------------------------------------------------------------- forwarding

// One direction of one connection: keeps order when chunks are delayed.
function makePipe(conn, dir) {
  return { conn, dir, queue: [], timer: null };
}

function pump(p) {
  p.timer = null;
  const now = Date.now();
  while (p.queue.length && p.queue[0].due <= now) {
    const item = p.queue.shift();
    write(p.conn, p.dir, item.buf);
  }
  if (p.queue.length) p.timer = setTimeout(() => pump(p), Math.max(0, p.queue[0].due - now));
}

function write(c, dir, buf) {
  if (c.closed || c.frozen) return;
  const dst = dir === 'up' ? c.server : c.worker;
  if (dst && !dst.destroyed) dst.write(buf);
}

function corrupt(c, buf) {
  const m = mode;
  const every = Math.max(1, m.every | 0 || 1);
  const skip = Math.max(0, m.skip | 0);
  const nbytes = Math.max(1, m.bytes | 0 || 1);
  const prob = typeof m.probability === 'number' ? m.probability : 1;
  c.downChunks++;
  const start = c.bytesDown - buf.length; // offset of this chunk in the stream
  if (c.downChunks % every !== 0 || rand() >= prob) return buf;
  const lo = Math.max(0, skip - start);
  if (lo >= buf.length) return buf;
  const out = Buffer.from(buf);
  for (let i = 0; i < nbytes; i++) {
    const at = lo + Math.floor(rand() * (out.length - lo));
    out[at] ^= 1 << Math.floor(rand() * 8);
  }
  ctr.corruptedChunks++;
  ctr.corruptedBytes += nbytes;
  return out;
}

function onData(c, dir, buf) {
  if (c.closed) return;
  if (c.frozen) {
    ctr.droppedWhileFrozen += buf.length;
    return;
  }
  if (dir === 'up') {
    c.bytesUp += buf.length;
    ctr.bytesUp += buf.length;
    ctr.chunksUp++;
  } else {
    c.bytesDown += buf.length;
    ctr.bytesDown += buf.length;
    ctr.chunksDown++;
    if (mode.mode === 'corrupt') buf = corrupt(c, buf);
  }
  const p = dir === 'up' ? c.up : c.down;
  const delay = mode.mode === 'delay' ? Math.max(0, Number(mode.delayMs) || 0) : 0;
  if (delay > 0 || p.queue.length) {
    ctr.delayedChunks++;
    p.queue.push({ due: Date.now() + delay, buf });
    if (!p.timer) p.timer = setTimeout(() => pump(p), delay);
    return;
  }
  write(c, dir, buf); // a socket still connecting buffers the bytes
}

// how: 'worker' / 'server' (that side closed: pass the close on gracefully,
// after the bytes already written), anything else: destroy both sides now.
function closeConn(c, how, rst) {
  if (c.closed) return;
  c.closed = true;
  c.closedAt = Date.now();
  if (how === 'cut') c.cutAt = c.closedAt;
  for (const p of [c.up, c.down]) {
    if (p.timer) clearTimeout(p.timer);
    p.queue = [];
  }
  if (c.holdTimer) clearTimeout(c.holdTimer);
  const graceful = how === 'worker' ? c.server : how === 'server' ? c.worker : null;
  for (const s of [c.worker, c.server]) {
    if (!s || s.destroyed) continue;
    if (s === graceful) {
      s.end();
      setTimeout(() => s.destroy(), 2000).unref();
    } else if (rst && typeof s.resetAndDestroy === 'function') s.resetAndDestroy();
    else s.destroy();
  }
  conns.delete(c.id);
  notify();
}

function onSideClosed(c, side) {
  if (c.closed) return;
  const now = Date.now();
  if (side === 'worker') {
    if (!c.workerClosedAt) {
      c.workerClosedAt = now;
      ctr.closedByWorker++;
    }
  } else if (!c.serverClosedAt) {
    c.serverClosedAt = now;
    ctr.closedByServer++;
  }
  if (c.frozen) {
    // Half-open: the other side must not learn about it. Keep it until both
    // sides gave up, a cut, a reset or the hold time.
    if (c.workerClosedAt && c.serverClosedAt) closeConn(c, 'both');
    return;
  }
  // Normal proxy behaviour: pass the close on once queued data is out.
  const flushAndClose = () => {
    if (c.up.queue.length || c.down.queue.length) {
      setTimeout(flushAndClose, 5);
      return;
    }
    closeConn(c, side);
  };
  flushAndClose();
}

function freeze(c, holdMs) {
  if (c.closed || c.frozen) return;
  c.frozen = true;
  c.frozenAt = Date.now();
  for (const p of [c.up, c.down]) {
    if (p.timer) clearTimeout(p.timer);
    p.timer = null;
    p.queue = [];
  }
  c.holdTimer = setTimeout(() => closeConn(c, 'hold'), holdMs);
}

function accept(worker) {
  const c = {
    id: nextId++,
    acceptedAt: Date.now(),
    upstreamAt: null,
    frozenAt: null,
    workerClosedAt: null,
    serverClosedAt: null,
    cutAt: null,
    closedAt: null,
    bytesUp: 0,
    bytesDown: 0,
    downChunks: 0,
    closed: false,
    frozen: false,
    worker,
    server: null,
  };
  c.up = makePipe(c, 'up');
  c.down = makePipe(c, 'down');
  ctr.accepted++;
  ctr.lastAcceptAt = c.acceptedAt;
  conns.set(c.id, c);
  history.push(c);
  if (history.length > 200) history.shift();
  worker.setNoDelay(true);
  worker.on('data', (b) => onData(c, 'up', b));
  worker.on('end', () => onSideClosed(c, 'worker'));
  worker.on('close', () => onSideClosed(c, 'worker'));
  worker.on('error', () => {});
  if (freezeNew) {
    freeze(c, 60000);
    notify();
    return; // never connects upstream: the handshake goes nowhere
  }
  const server = net.connect({ host: opts.targetHost, port: opts.targetPort });
  c.server = server;
  server.setNoDelay(true);
  server.on('connect', () => {
    c.upstreamAt = Date.now();
  });
  server.on('data', (b) => onData(c, 'down', b));
  server.on('end', () => onSideClosed(c, 'server'));
  server.on('close', () => onSideClosed(c, 'server'));
  server.on('error', (e) => {
    if (!c.upstreamAt) {
      ctr.upstreamFailures++;
      log(`upstream connect failed: ${e.code || e.message}`);
      closeConn(c, 'upstream');
    }
  });
  notify();
}

// ---------------------------------------------------------------- actions

function cutAll(rst) {
  let n = 0;
  for (const c of [...conns.values()]) {
    closeConn(c, 'cut', rst);
    n++;
  }
  if (n) {
    ctr.cuts++;
    ctr.cutConnections += n;
  }
  return n;
}

function stopPeriodic() {
  if (periodic) clearInterval(periodic.timer);
  periodic = null;
}

function halfOpen(body) {
  const holdMs = Number.isFinite(body.holdMs) ? body.holdMs : 60000;
  let n = 0;
  for (const c of conns.values()) {
    if (!c.frozen && !c.closed) {
      freeze(c, holdMs);
      n++;
    }
  }
  freezeNew = !!body.newToo;
  ctr.halfOpens++;
  return n;
}

function reset(body) {
  stopPeriodic();
  mode = { mode: 'pass' };
  freezeNew = false;
  for (const c of [...conns.values()]) if (c.frozen) closeConn(c, 'reset');
  if (body.counters) ctr = counters();
}

// ---------------------------------------------------------------- control API

function send(res, code, obj) {
  const s = JSON.stringify(obj);
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(s) });
  res.end(s);
}

function handle(req, res, body) {
  const u = new URL(req.url, 'http://x');
  const p = u.pathname;
  if (req.method === 'GET' && p === '/stats') return send(res, 200, statsView());
  if (req.method === 'GET' && p === '/connections') return send(res, 200, history.map(connView));
  if (req.method === 'GET' && p === '/wait') {
    const acc = Number(u.searchParams.get('accepted') || 0);
    const act = Number(u.searchParams.get('active') || 0);
    const timeout = Math.min(600000, Number(u.searchParams.get('timeout') || 5000));
    const ok = () => ctr.accepted >= acc && activeCount() >= act;
    if (ok()) return send(res, 200, statsView());
    let t = null;
    const w = () => {
      if (!ok()) return;
      waiters.delete(w);
      clearTimeout(t);
      send(res, 200, statsView());
    };
    t = setTimeout(() => {
      waiters.delete(w);
      send(res, 408, statsView());
    }, timeout);
    waiters.add(w);
    return undefined;
  }
  if (req.method !== 'POST') return send(res, 404, { error: 'not found' });
  let b = {};
  if (body.length) {
    try {
      b = JSON.parse(body);
    } catch (e) {
      return send(res, 400, { error: 'body is not JSON' });
    }
  }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) return send(res, 400, { error: 'body must be an object' });
  if (p === '/mode') {
    if (!['pass', 'delay', 'corrupt'].includes(b.mode)) return send(res, 400, { error: 'mode must be pass, delay or corrupt' });
    mode = { ...b };
    log(`mode ${JSON.stringify(mode)}`);
    return send(res, 200, statsView());
  }
  if (p === '/cut') {
    if (b.stop) {
      stopPeriodic();
      return send(res, 200, statsView());
    }
    const n = cutAll(!!b.rst);
    if (b.everyMs) {
      stopPeriodic();
      const everyMs = Math.max(10, Number(b.everyMs));
      const count = Math.max(0, Number(b.count) || 0);
      periodic = { everyMs, count, done: n ? 1 : 0, rst: !!b.rst };
      const pr = periodic;
      pr.timer = setInterval(() => {
        if (cutAll(pr.rst)) pr.done++;
        if (pr.count && pr.done >= pr.count) stopPeriodic();
      }, everyMs);
    }
    return send(res, 200, { cut: n, ...statsView() });
  }
  if (p === '/half-open') {
    const n = halfOpen(b);
    log(`half-open: ${n} connection(s) frozen${freezeNew ? ', new ones too' : ''}`);
    return send(res, 200, { frozen: n, ...statsView() });
  }
  if (p === '/reset') {
    reset(b);
    return send(res, 200, statsView());
  }
  return send(res, 404, { error: 'not found' });
}

const control = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on('data', (d) => {
    size += d.length;
    if (size > 65536) {
      send(res, 413, { error: 'body too large' });
      req.destroy();
      return;
    }
    chunks.push(d);
  });
  req.on('end', () => {
    try {
      handle(req, res, Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      send(res, 500, { error: String(e && e.message) });
    }
  });
});

const proxy = net.createServer({ pauseOnConnect: false }, accept);
proxy.on('error', (e) => {
  log(`listen failed: ${e.message}`);
  process.exit(1);
});
control.on('error', (e) => {
  log(`control listen failed: ${e.message}`);
  process.exit(1);
});

proxy.listen(opts.listen, opts.host, () => {
  control.listen(opts.control, opts.host, () => {
    const lp = proxy.address().port;
    const cp = control.address().port;
    if (opts.portFile) {
      const tmp = path.join(path.dirname(opts.portFile), `.${path.basename(opts.portFile)}.${process.pid}`);
      fs.writeFileSync(tmp, `${lp} ${cp}\n`);
      fs.renameSync(tmp, opts.portFile);
    }
    process.stdout.write(`LISTENING ${lp} ${cp}\n`);
    log(`proxy 127.0.0.1:${lp} -> ${opts.targetHost}:${opts.targetPort}, control on ${cp}`);
  });
});

function shutdown() {
  stopPeriodic();
  for (const c of [...conns.values()]) closeConn(c, 'exit');
  proxy.close();
  control.close();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
