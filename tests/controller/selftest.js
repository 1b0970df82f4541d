#!/usr/bin/env node
'use strict';
// Self-test of the test controller: starts server.js on port 0 as a child
// process and drives it with socket.io-client, a raw WebSocket client (to see
// the exact frames of the fault modes), the REST/admin API and ctl.js.
// Exit 0 when every check passes. Usage: node selftest.js [--verbose] [--only SUBSTR]

const assert = require('node:assert/strict');
const { spawn, execFile } = require('node:child_process');
const crypto = require('node:crypto');
const { EventEmitter } = require('node:events');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { io: ioc } = require('socket.io-client');
const common = require('./lib/common');

const HERE = __dirname;
const VERBOSE = process.argv.includes('--verbose');
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null;
const ADMIN = 'admin-token';
const SECRET = 'selftest-secret';
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'aiwm-ctl-selftest-'));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

// ------------------------------------------------------------ server process

async function startServer(extraArgs = [], env = {}) {
  const portFile = path.join(tmp, `port-${Date.now()}-${Math.random().toString(16).slice(2)}`);
  const child = spawn(process.execPath, [path.join(HERE, 'server.js'), '--port', '0', '--port-file', portFile, ...extraArgs], {
    env: { ...process.env, JWT_SECRET: SECRET, ADMIN_TOKEN: ADMIN, LOG_LEVEL: VERBOSE ? 'debug' : 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let stdout = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    if (VERBOSE) process.stderr.write(d);
  });
  const exited = new Promise((resolve) => child.once('exit', (code, sig) => resolve({ code, sig })));
  const t0 = Date.now();
  while (!/LISTENING (\d+)\n/.test(stdout)) {
    if (Date.now() - t0 > 10000) throw new Error('server did not print LISTENING');
    if (child.exitCode !== null) throw new Error(`server exited ${child.exitCode}`);
    await sleep(20);
  }
  const port = Number(/LISTENING (\d+)/.exec(stdout)[1]);
  assert.equal(Number(fs.readFileSync(portFile, 'utf8').trim()), port, 'port file matches');
  return { child, port, exited, stop: async () => { child.kill('SIGTERM'); return exited; } };
}

let srv; // main server
let base;

async function api(method, p, body, { token = ADMIN, url = base, ca } = {}) {
  const res = await common.request(url + p, { method, body, token, ca, timeoutMs: 30000 });
  return res;
}

function runCtl(args, env = {}) {
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(HERE, 'ctl.js'), ...args], { env: { ...process.env, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

// ------------------------------------------------------------ socket.io client

function sio(token, { auth, url = base, ca } = {}) {
  const s = ioc(`${url}/ws/node`, {
    transports: ['websocket'],
    auth: auth !== undefined ? auth : { token },
    reconnection: false,
    forceNew: true,
    ...(ca ? { ca } : {}),
  });
  s.received = [];
  s.onAny((ev, msg) => s.received.push([ev, msg]));
  s.on('disconnect', (reason) => {
    s.disconnectReason = reason;
  });
  return s;
}

function waitEvent(s, name, ms = 5000) {
  const found = s.received && s.received.find(([ev]) => ev === name);
  if (found && name !== 'connect_error' && name !== 'disconnect') return Promise.resolve(found[1]);
  if (name === 'disconnect' && s.disconnectReason !== undefined) return Promise.resolve(s.disconnectReason);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${name}`)), ms);
    s.once(name, (x) => {
      clearTimeout(t);
      resolve(x);
    });
  });
}

async function connectNode(token, opts) {
  const s = sio(token, opts);
  const ack = await waitEvent(s, 'connection.ack');
  return { s, ack };
}

async function registerNode(s, nodeId) {
  const p = waitEvent(s, 'register.ack');
  s.emit('node.register', {
    type: 'node.register',
    messageId: crypto.randomUUID(),
    timestamp: new Date().toISOString(),
    data: {
      nodeId,
      name: 'selftest',
      hostname: 'selftest-host',
      ipAddress: '127.0.0.1',
      publicIpAddress: 'unknown',
      os: { platform: 'linux', distro: 'Ubuntu', version: '22.04', arch: 'x64', kernel: '6.0' },
      cpuCores: 2,
      cpuModel: 'Test CPU',
      ramTotal: 1024,
      diskTotal: 2048,
      gpuDevices: [],
      daemonVersion: '1.0.0',
      nodeStatus: 'ready',
      uptimeSeconds: 5,
      containerRuntime: { type: 'docker', version: 'unknown', rootDir: '/var/lib/docker' },
    },
  });
  return p;
}

/** Make s answer every command like a compliant worker (ack + result, metadata echoed). */
function autoAnswer(s, { times = 1 } = {}) {
  s.onAny((ev, cmd) => {
    if (!cmd || typeof cmd !== 'object' || !cmd.messageId || ['connection.ack', 'register.ack', 'error'].includes(ev)) return;
    for (let i = 0; i < times; i++) {
      s.emit('command.ack', {
        type: 'command.ack',
        messageId: crypto.randomUUID(),
        timestamp: new Date().toISOString(),
        data: { originalMessageId: cmd.messageId, status: 'acknowledged', estimatedDuration: 2 },
        metadata: cmd.metadata,
      });
      s.emit('command.result', {
        type: 'command.result',
        messageId: crypto.randomUUID(),
        timestamp: new Date().toISOString(),
        data: {
          originalMessageId: cmd.messageId,
          deploymentId: cmd.resource ? cmd.resource.id : 'n/a',
          status: ev === 'system.healthCheck' ? 'success' : 'error',
          ...(ev === 'system.healthCheck'
            ? { result: { nodeStatus: 'healthy', uptimeSeconds: 1, timestamp: new Date().toISOString() } }
            : { error: { code: '2001', message: 'unknown command', retryable: false } }),
        },
        metadata: cmd.metadata,
      });
    }
  });
}

// ------------------------------------------------------------ raw WebSocket client

function rawWs(port, { path: p = '/socket.io/?EIO=4&transport=websocket', autoPong = true } = {}) {
  return new Promise((resolve, reject) => {
    const c = new EventEmitter();
    c.frames = [];
    c.closed = false;
    c.head = null;
    c.bytes = 0;
    let buf = Buffer.alloc(0);
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    c.sock = sock;
    c.send = (text, opcode = 1) => {
      const pl = Buffer.from(text);
      let h;
      if (pl.length < 126) h = Buffer.from([0x80 | opcode, 0x80 | pl.length]);
      else if (pl.length < 65536) {
        h = Buffer.alloc(4);
        h[0] = 0x81;
        h[1] = 0x80 | 126;
        h.writeUInt16BE(pl.length, 2);
      } else {
        h = Buffer.alloc(10);
        h[0] = 0x81;
        h[1] = 0x80 | 127;
        h.writeBigUInt64BE(BigInt(pl.length), 2);
      }
      const mask = crypto.randomBytes(4);
      const m = Buffer.from(pl);
      for (let i = 0; i < m.length; i++) m[i] ^= mask[i & 3];
      sock.write(Buffer.concat([h, mask, m]));
    };
    const parse = () => {
      for (;;) {
        if (buf.length < 2) return;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const payload = buf.subarray(off, off + len);
        const f = { opcode: buf[0] & 0x0f, len, text: payload.toString(), payload };
        buf = buf.subarray(off + len);
        c.frames.push(f);
        if (autoPong && f.opcode === 1 && f.text === '2') c.send('3');
        if (f.opcode === 8 && !c.closeSent) {
          // echo the close frame (RFC 6455) and finish
          c.closeSent = true;
          c.send('', 8);
          sock.end();
        }
        c.emit('frame', f);
      }
    };
    sock.on('connect', () => {
      sock.write(`GET ${p} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      resolve(c);
    });
    sock.on('data', (d) => {
      c.bytes += d.length;
      buf = Buffer.concat([buf, d]);
      if (c.head === null) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        c.head = buf.subarray(0, i).toString();
        buf = buf.subarray(i + 4);
        c.emit('head', c.head);
      }
      parse();
    });
    c.pending = () => buf.length;
    sock.on('close', () => {
      c.closed = true;
      c.emit('close');
    });
    sock.on('error', () => {});
    sock.once('error', reject);
  });
}

function waitFrame(c, pred, ms = 3000, from = 0) {
  const hit = c.frames.slice(from).find(pred);
  if (hit) return Promise.resolve(hit);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      c.removeListener('frame', on);
      reject(new Error('timeout waiting for frame'));
    }, ms);
    const on = (f) => {
      if (pred(f)) {
        clearTimeout(t);
        c.removeListener('frame', on);
        resolve(f);
      }
    };
    c.on('frame', on);
  });
}

function waitClose(c, ms = 3000) {
  if (c.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('timeout waiting for close')), ms);
    c.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/** Raw client that opens Engine.IO and joins /ws/node with a token; resolves after connection.ack. */
async function rawNode(port, token) {
  const c = await rawWs(port);
  await waitFrame(c, (f) => f.text.startsWith('0{'));
  c.send(`40/ws/node,${JSON.stringify({ token })}`);
  await waitFrame(c, (f) => f.text.startsWith('42/ws/node,["connection.ack"'));
  return c;
}

// ------------------------------------------------------------ test runner

const results = [];
async function step(name, fn, ms = 20000) {
  if (ONLY && !name.includes(ONLY)) return;
  const t0 = Date.now();
  try {
    await Promise.race([fn(), sleep(ms).then(() => { throw new Error(`step timed out after ${ms} ms`); })]);
    results.push([true, name]);
    process.stdout.write(`ok - ${name} (${Date.now() - t0} ms)\n`);
  } catch (e) {
    results.push([false, name]);
    process.stdout.write(`not ok - ${name}: ${e && e.stack ? e.stack : e}\n`);
  }
}

// ------------------------------------------------------------ the checks

async function main() {
  const stateFile = path.join(tmp, 'state.json');
  const seeded = common.objectId();
  srv = await startServer([
    '--state', stateFile,
    '--seed-node', `${seeded}:seeded`,
    '--ping-interval', '1500', '--ping-timeout', '1500', '--connect-timeout', '2500',
    '--heartbeat-interval', '1000', '--metrics-interval', '2000',
  ]);
  base = `http://127.0.0.1:${srv.port}`;
  const sockets = [];
  let nodeId;
  let token;

  await step('health and admin auth', async () => {
    assert.equal((await api('GET', '/health', undefined, { token: null })).status, 200);
    assert.equal((await api('GET', '/admin/stats', undefined, { token: 'wrong' })).status, 401);
    assert.equal((await api('GET', '/admin/stats', undefined, { token: null })).status, 401);
    const st = await api('GET', '/admin/stats');
    assert.equal(st.status, 200);
    assert.equal(st.json.config.pingInterval, 1500);
  });

  await step('REST: create node (both paths) and mint token', async () => {
    const bad = await api('POST', '/api/nodes', { role: 'worker' });
    assert.equal(bad.status, 400);
    const a = await api('POST', '/api/nodes', { name: 'GPU Node 01', role: 'gpu', status: 'active' });
    assert.equal(a.status, 201);
    assert.match(a.json._id, /^[0-9a-f]{24}$/);
    assert.deepEqual(a.json.role, ['gpu']);
    const b = await api('POST', '/nodes', { name: 'n2', role: ['worker', 'storage'] });
    assert.equal(b.status, 201);
    assert.equal(b.json.status, 'pending');
    nodeId = a.json._id;
    const t = await api('POST', `/nodes/${nodeId}/token`, { expiresIn: 86400 });
    assert.equal(t.status, 201);
    assert.ok(t.json.token && t.json.expiresAt && t.json.installScript.includes('AIOPS_NODE_TOKEN'));
    const claims = JSON.parse(Buffer.from(t.json.token.split('.')[1], 'base64url'));
    assert.equal(claims.sub, nodeId);
    assert.equal(claims.nodeId, nodeId);
    assert.equal(claims.type, 'node');
    assert.equal(claims.exp - claims.iat, 86400);
    const t2 = await api('POST', `/api/nodes/${nodeId}/token`, {});
    assert.equal(t2.status, 201);
    const c2 = JSON.parse(Buffer.from(t2.json.token.split('.')[1], 'base64url'));
    assert.equal(c2.exp - c2.iat, 31536000);
    assert.equal((await api('POST', `/api/nodes/${'0'.repeat(24)}/token`, {})).status, 404);
    token = t.json.token;
  });

  let main1;
  await step('connect: connection.ack success and register.ack', async () => {
    const { s, ack } = await connectNode(token);
    sockets.push(s);
    main1 = s;
    assert.equal(ack.type, 'connection.ack');
    assert.equal(ack.status, 'success');
    assert.equal(ack.nodeId, nodeId);
    assert.equal(ack.controllerId, 'controller-main');
    assert.equal(ack.serverVersion, '1.0.0');
    assert.match(ack.messageId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.match(ack.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    const reg = await registerNode(s, nodeId);
    assert.equal(reg.type, 'register.ack');
    assert.equal(reg.data.status, 'success');
    assert.equal(reg.data.nodeId, nodeId);
    assert.deepEqual(reg.data.controllerInfo, { controllerId: 'controller-main', heartbeatInterval: 1000, metricsInterval: 2000, timezone: 'UTC' });
    assert.deepEqual(reg.data.pendingCommands, []);
    const n = await api('GET', `/admin/nodes/${nodeId}`);
    assert.equal(n.json.connected, true);
    assert.equal(n.json.registered, true);
    assert.equal(n.json.node.status, 'installing');
    assert.equal(n.json.node.hostname, 'selftest-host');
    assert.equal(n.json.counters.registrations, 1);
  });

  await step('command round trip via admin API (metadata echo recorded)', async () => {
    autoAnswer(main1);
    const sent = await api('POST', `/admin/nodes/${nodeId}/commands`, { type: 'system.healthCheck', data: { includeMetrics: true }, execution: true, timeout: 10 });
    assert.equal(sent.status, 201);
    assert.equal(sent.json.delivered, 'sent');
    const env = sent.json.envelope;
    assert.deepEqual(Object.keys(env), ['type', 'messageId', 'timestamp', 'resource', 'data', 'metadata']);
    assert.deepEqual(env.resource, { type: 'system', id: nodeId });
    assert.equal(env.metadata.priority, 'normal');
    assert.equal(env.metadata.stepIndex, 0);
    assert.equal(env.metadata.timeout, 10);
    assert.match(env.metadata.executionId, /^[0-9a-f-]{36}$/);
    const rec = await api('GET', `/admin/nodes/${nodeId}/commands/${sent.json.messageId}?wait=5000`);
    assert.equal(rec.json.complete, true);
    assert.equal(rec.json.acks.length, 1);
    assert.equal(rec.json.results.length, 1);
    assert.equal(rec.json.results[0].executionIdMatched, true);
    assert.equal(rec.json.results[0].metadataEqual, true);
    assert.equal(rec.json.state, 'success');
    assert.equal(rec.json.duplicates, false);
  });

  await step('ctl.js send waits for the result (exit 0 success, 2 error)', async () => {
    const r = await runCtl(['send', '--url', base, '--node', nodeId, '--type', 'system.healthCheck', '--data', '{}', '--wait', '10'], { ADMIN_TOKEN: ADMIN });
    assert.equal(r.code, 0, r.stderr);
    const env = JSON.parse(r.stdout);
    assert.equal(env.type, 'command.result');
    assert.equal(env.data.status, 'success');
    const r2 = await runCtl(['send', '--url', base, '--node', nodeId, '--type', 'bogus.command', '--wait', '10', '--print', 'data'], { ADMIN_TOKEN: ADMIN });
    assert.equal(r2.code, 2, r2.stderr);
    assert.equal(JSON.parse(r2.stdout).error.code, '2001');
  });

  await step('telemetry and other events are recorded; events long-poll', async () => {
    const ev0 = await api('GET', `/admin/nodes/${nodeId}/events`);
    const since = ev0.json.lastSeq;
    const later = api('GET', `/admin/nodes/${nodeId}/events?type=deployment.status&since=${since}&wait=5000`);
    await sleep(100);
    main1.emit('telemetry.heartbeat', { type: 'telemetry.heartbeat', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { nodeId, status: 'healthy', uptimeSeconds: 9, activeDeployments: 0, cpuUsage: 3, ramUsage: 40, gpuStatus: [] } });
    main1.emit('telemetry.metrics', { type: 'telemetry.metrics', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { nodeId } });
    main1.emit('deployment.status', { type: 'deployment.status', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { deploymentId: 'd1', nodeId, status: 'running' } });
    const ev = await later;
    assert.equal(ev.json.count, 1);
    assert.equal(ev.json.events[0].type, 'deployment.status');
    assert.ok(ev.json.events[0].seq > since);
    const nodes = await api('GET', '/admin/nodes');
    const me = nodes.json.find((x) => x._id === nodeId);
    assert.equal(me.counters.heartbeats, 1);
    assert.equal(me.counters.metrics, 1);
    assert.equal(me.status, 'healthy');
    assert.ok(me.lastHeartbeat);
    const msgs = await api('GET', `/admin/nodes/${nodeId}/messages`);
    const types = msgs.json.messages.map((m) => m.type);
    assert.equal(types[0], 'node.register');
    assert.ok(types.includes('command.ack') && types.includes('telemetry.metrics'));
  });

  await step('duplicate replies are kept and flagged', async () => {
    const s = main1;
    s.offAny();
    s.onAny((ev, msg) => s.received.push([ev, msg]));
    autoAnswer(s, { times: 2 });
    const sent = await api('POST', `/admin/nodes/${nodeId}/commands`, { type: 'system.healthCheck' });
    await api('GET', `/admin/nodes/${nodeId}/commands/${sent.json.messageId}?wait=5000`);
    await sleep(200);
    const rec = await api('GET', `/admin/nodes/${nodeId}/commands/${sent.json.messageId}`);
    assert.equal(rec.json.results.length, 2);
    assert.equal(rec.json.acks.length, 2);
    assert.equal(rec.json.duplicates, true);
    assert.equal(rec.json.results[0].executionIdMatched, null);
    s.offAny();
    s.onAny((ev, msg) => s.received.push([ev, msg]));
    autoAnswer(s);
  });

  await step('command.ack without data gets a NestJS-style exception event', async () => {
    const p = waitEvent(main1, 'exception');
    main1.emit('command.ack', { type: 'command.ack', messageId: crypto.randomUUID(), timestamp: new Date().toISOString() });
    const ex = await p;
    assert.equal(ex.status, 'error');
    assert.equal(ex.cause.pattern, 'command.ack');
  });

  await step('auth failures: TOKEN_MISSING / TOKEN_INVALID / TOKEN_EXPIRED / AUTH_FAILED', async () => {
    const cases = [
      [{}, 'TOKEN_MISSING'],
      [{ token: '' }, 'TOKEN_MISSING'],
      [{ token: 'garbage' }, 'TOKEN_INVALID'],
      [{ token: common.mintToken({ sub: nodeId, secret: 'other-secret' }).token }, 'TOKEN_INVALID'],
      [{ token: common.mintToken({ sub: nodeId, secret: SECRET, expiresIn: -5 }).token }, 'TOKEN_EXPIRED'],
      [{ token: common.mintToken({ sub: nodeId, secret: SECRET, notBefore: 3600 }).token }, 'AUTH_FAILED'],
      [{ token: common.mintToken({ sub: nodeId, secret: SECRET, alg: 'HS512' }).token }, null],
    ];
    for (const [auth, want] of cases) {
      const s = sio(null, { auth });
      sockets.push(s);
      if (want === null) {
        const ack = await waitEvent(s, 'connection.ack');
        assert.equal(ack.status, 'success');
      } else {
        const err = await waitEvent(s, 'connect_error');
        assert.equal(err.message, want, `auth ${JSON.stringify(auth).slice(0, 40)}`);
        assert.equal(err.data, undefined);
      }
      s.close();
    }
    // the HS512 connection evicted main1: reconnect it
    await sleep(100);
    const st = await api('GET', '/admin/stats');
    assert.equal(st.json.authFailures.TOKEN_MISSING, 2);
    assert.equal(st.json.authFailures.AUTH_FAILED, 1);
  });

  await step('eviction: a second socket of the same node kicks the older one', async () => {
    const a = await connectNode(token);
    sockets.push(a.s);
    const gone = waitEvent(a.s, 'disconnect');
    const b = await connectNode(token);
    sockets.push(b.s);
    assert.equal(await gone, 'io server disconnect');
    assert.equal(b.ack.status, 'success');
    const n = await api('GET', `/admin/nodes/${nodeId}`);
    assert.equal(n.json.connected, true);
    assert.equal(n.json.socketId, b.s.id);
    main1 = b.s;
    autoAnswer(main1);
    await registerNode(main1, nodeId);
  });

  await step('unknown node -> 1004 + kick; non-ObjectId sub -> INTERNAL_ERROR', async () => {
    const s = sio(common.mintToken({ secret: SECRET }).token);
    sockets.push(s);
    const ack = await waitEvent(s, 'connection.ack');
    assert.equal(ack.status, 'error');
    assert.equal(ack.error.code, '1004');
    assert.equal(ack.error.message, 'Node ID not found in database');
    assert.equal(await waitEvent(s, 'disconnect'), 'io server disconnect');
    const s2 = sio(common.mintToken({ sub: 'node-001', secret: SECRET }).token);
    sockets.push(s2);
    const ack2 = await waitEvent(s2, 'connection.ack');
    assert.equal(ack2.error.code, 'INTERNAL_ERROR');
    assert.equal(ack2.error.message, 'Internal server error during connection');
  });

  await step('seeded node connects; banned node -> kicked, then 1005 on reconnect', async () => {
    const tk = common.mintToken({ sub: seeded, secret: SECRET }).token;
    const { s, ack } = await connectNode(tk);
    sockets.push(s);
    assert.equal(ack.status, 'success');
    const gone = waitEvent(s, 'disconnect');
    const p = await api('PATCH', `/api/nodes/${seeded}`, { status: 'banned' });
    assert.equal(p.status, 200);
    assert.equal(await gone, 'io server disconnect');
    const s2 = sio(tk);
    sockets.push(s2);
    const ack2 = await waitEvent(s2, 'connection.ack');
    assert.equal(ack2.error.code, '1005');
    assert.equal(ack2.error.message, 'Node is disabled');
    await waitEvent(s2, 'disconnect');
    assert.equal((await api('GET', `/api/nodes/${seeded}`)).json.status, 'banned');
    await api('PATCH', `/api/nodes/${seeded}`, { status: 'active' });
    const s3 = sio(tk);
    sockets.push(s3);
    assert.equal((await waitEvent(s3, 'connection.ack')).status, 'success');
    s3.close();
  });

  await step('registration failure mode (per node) sends the error event', async () => {
    await api('PATCH', `/admin/nodes/${nodeId}`, { registerFails: true });
    const p = waitEvent(main1, 'error');
    main1.emit('node.register', { type: 'node.register', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { nodeId, os: { platform: 'linux' } } });
    const err = await p;
    assert.deepEqual(Object.keys(err), ['type', 'error']);
    assert.equal(err.type, 'error');
    assert.equal(err.error.code, 'REGISTRATION_FAILED');
    assert.match(err.error.message, /^Cast to string failed for value ".*" \(type Object\) at path "os"$/);
    await api('PATCH', `/admin/nodes/${nodeId}`, { registerFails: null });
    await registerNode(main1, nodeId);
  });

  await step('pending commands: queued while offline, delivered in register.ack', async () => {
    const gone = waitEvent(main1, 'disconnect');
    main1.close();
    await gone;
    await api('GET', `/admin/nodes/${nodeId}/wait?state=disconnected&timeout=3000`);
    const q = await api('POST', `/admin/nodes/${nodeId}/commands`, { type: 'deployment.stop', resource: { type: 'deployment', id: 'd1' }, data: { force: false } });
    assert.equal(q.json.delivered, 'queued');
    const { s } = await connectNode(token);
    sockets.push(s);
    main1 = s;
    const reg = await registerNode(s, nodeId);
    assert.equal(reg.data.pendingCommands.length, 1);
    assert.equal(reg.data.pendingCommands[0].messageId, q.json.messageId);
    assert.deepEqual(reg.data.pendingCommands[0].resource, { type: 'deployment', id: 'd1' });
    const rec = await api('GET', `/admin/nodes/${nodeId}/commands/${q.json.messageId}`);
    assert.equal(rec.json.state, 'sent');
    autoAnswer(main1);
    // queue even while connected, then resend by id
    const q2 = await api('POST', `/admin/nodes/${nodeId}/commands`, { type: 'system.healthCheck', queue: true });
    assert.equal(q2.json.delivered, 'queued');
    const w = await api('GET', `/admin/nodes/${nodeId}/wait?state=registered&timeout=1000`);
    assert.equal(w.json.reached, true);
  });

  await step('raw wire: OPEN frame, ping/pong, event framing', async () => {
    const c = await rawWs(srv.port);
    const open = await waitFrame(c, (f) => f.text.startsWith('0'));
    const o = JSON.parse(open.text.slice(1));
    assert.deepEqual(Object.keys(o), ['sid', 'upgrades', 'pingInterval', 'pingTimeout', 'maxPayload']);
    assert.deepEqual(o.upgrades, []);
    assert.equal(o.pingInterval, 1500);
    assert.equal(o.maxPayload, 1000000);
    c.send(`40/ws/node,${JSON.stringify({ token })}`);
    const conn = await waitFrame(c, (f) => f.text.startsWith('40/ws/node,'));
    assert.match(conn.text, /^40\/ws\/node,\{"sid":"[^"]+"\}$/);
    const ack = await waitFrame(c, (f) => f.text.startsWith('42/ws/node,["connection.ack",'));
    assert.equal(JSON.parse(ack.text.slice('42/ws/node,'.length))[1].status, 'success');
    await waitFrame(c, (f) => f.text === '2', 3000);
    c.sock.destroy();
    const bad = await rawWs(srv.port);
    await waitFrame(bad, (f) => f.text.startsWith('0'));
    bad.send(`40/ws/node,${JSON.stringify({ token: 'x' })}`);
    const ce = await waitFrame(bad, (f) => f.text.startsWith('44'));
    assert.equal(ce.text, '44/ws/node,{"message":"TOKEN_INVALID"}');
    bad.sock.destroy();
    // main1 was evicted by the raw node: reconnect
    const r = await connectNode(token);
    sockets.push(r.s);
    main1 = r.s;
    autoAnswer(main1);
  });

  const fault = (body) => api('POST', '/admin/faults', body);

  await step('fault garbage / foreign-namespace / bad-json-event / raw on current connection', async () => {
    for (const [mode, want] of [['garbage', 'hello'], ['foreign-namespace', '42/other,["x",{}]'], ['bad-json-event', '42/ws/node,["x",{bad'], ['raw', '6']]) {
      const c = await rawNode(srv.port, token);
      const n = c.frames.length;
      const r = await fault({ mode, nodeId, ...(mode === 'raw' ? { text: '6' } : {}) });
      assert.equal(r.status, 201);
      assert.equal(r.json.applied.length, 1);
      await waitFrame(c, (f) => f.text === want, 3000, n);
      c.sock.destroy();
    }
  });

  await step('fault oversize sends one big valid event frame', async () => {
    const c = await rawNode(srv.port, token);
    const r = await fault({ mode: 'oversize', nodeId, bytes: 3 * 1048576 });
    const f = await waitFrame(c, (x) => x.len > 1048576, 5000);
    assert.equal(f.len, 3 * 1048576);
    assert.equal(r.json.applied[0].bytes, 3 * 1048576);
    const [type, env] = JSON.parse(f.text.slice('42/ws/node,'.length));
    assert.equal(type, 'test.oversize');
    assert.equal(env.messageId, r.json.applied[0].messageId);
    c.sock.destroy();
  });

  await step('fault close-mid-frame writes half a frame then closes', async () => {
    const c = await rawNode(srv.port, token);
    const r = await fault({ mode: 'close-mid-frame', nodeId });
    await waitClose(c, 3000);
    const info = r.json.applied[0];
    assert.ok(info.written > 0 && info.written < info.frameBytes);
    assert.ok(c.pending() > 0, 'client holds an incomplete frame');
  });

  await step('fault drop destroys the TCP connection; kick sends 41', async () => {
    const c = await rawNode(srv.port, token);
    await fault({ mode: 'drop', nodeId });
    await waitClose(c);
    const c2 = await rawNode(srv.port, token);
    await api('POST', `/admin/nodes/${nodeId}/kick`, {});
    await waitFrame(c2, (f) => f.text === '41/ws/node,');
    await waitClose(c2);
  });

  await step('fault ping-fast sends extra pings, pongs are counted', async () => {
    const c = await rawNode(srv.port, token);
    const before = (await api('GET', '/admin/stats')).json.pongsReceived;
    const n = c.frames.length;
    await fault({ mode: 'ping-fast', nodeId, intervalMs: 50, durationMs: 600 });
    await sleep(800);
    const pings = c.frames.slice(n).filter((f) => f.text === '2').length;
    assert.ok(pings >= 8, `got ${pings} pings`);
    const after = (await api('GET', '/admin/stats')).json;
    assert.ok(after.pongsReceived - before >= 8);
    assert.ok(after.injectedPings >= 8);
    c.sock.destroy();
  });

  await step('fault ws-close sends a close frame with a status code', async () => {
    const c = await rawNode(srv.port, token);
    await fault({ mode: 'ws-close', nodeId, code: 1011 });
    const f = await waitFrame(c, (x) => x.opcode === 8);
    assert.equal(f.payload.readUInt16BE(0), 1011);
    c.sock.destroy();
  });

  await step('maxPayload: 1,000,000-byte message accepted, 1,000,001 closes with 1009', async () => {
    const c = await rawNode(srv.port, token);
    const mk = (total) => {
      const head = '42/ws/node,["x.pad",{"p":"';
      const tail = '"}]';
      return head + 'y'.repeat(total - head.length - tail.length) + tail;
    };
    c.send(mk(1000000));
    await api('GET', `/admin/nodes/${nodeId}/events?type=x.pad&wait=3000`);
    assert.equal(c.closed, false);
    c.send(mk(1000001));
    const f = await waitFrame(c, (x) => x.opcode === 8);
    assert.equal(f.payload.readUInt16BE(0), 1009);
    await waitClose(c);
  });

  await step('fault stall phase tcp / open / connect / ack / register on new connections', async () => {
    await fault({ mode: 'stall', phase: 'tcp', count: 1 });
    const a = await rawWs(srv.port);
    await sleep(700);
    assert.equal(a.head, null, 'no HTTP answer');
    a.sock.destroy();

    await fault({ mode: 'stall', phase: 'open', count: 1 });
    const b = await rawWs(srv.port);
    await sleep(700);
    assert.match(b.head, /^HTTP\/1\.1 101 /);
    assert.equal(b.frames.length, 0, 'no OPEN');
    b.sock.destroy();

    await fault({ mode: 'stall', phase: 'connect', count: 1 });
    const c = await rawWs(srv.port);
    await waitFrame(c, (f) => f.text.startsWith('0{'));
    c.send(`40/ws/node,${JSON.stringify({ token })}`);
    await sleep(700);
    assert.equal(c.frames.filter((f) => f.text.startsWith('4')).length, 0, 'no CONNECT answer');
    await waitClose(c, 4000); // connect timeout 2500 ms closes it

    await fault({ mode: 'stall', phase: 'ack', count: 1, nodeId });
    const d = await rawWs(srv.port);
    await waitFrame(d, (f) => f.text.startsWith('0{'));
    d.send(`40/ws/node,${JSON.stringify({ token })}`);
    await waitFrame(d, (f) => f.text.startsWith('40/ws/node,'));
    await sleep(500);
    assert.equal(d.frames.filter((f) => f.text.includes('connection.ack')).length, 0, 'no connection.ack');
    d.sock.destroy();

    await fault({ mode: 'stall', phase: 'register', count: 1, nodeId });
    const { s } = await connectNode(token);
    sockets.push(s);
    s.emit('node.register', { type: 'node.register', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: {} });
    await assert.rejects(waitEvent(s, 'register.ack', 700));
    assert.equal((await registerNode(s, nodeId)).type, 'register.ack', 'second register answered');
    s.close();
    assert.equal((await api('GET', '/admin/faults')).json.length, 0, 'count-limited faults consumed');
  });

  await step('fault stall on a current connection freezes it (no pings, then server-side close on client FIN)', async () => {
    const c = await rawNode(srv.port, token);
    await fault({ mode: 'stall', target: 'current', nodeId });
    const n = c.frames.length;
    await sleep(2000); // longer than pingInterval
    assert.equal(c.frames.slice(n).filter((f) => f.text === '2').length, 0, 'no pings while frozen');
    c.sock.end();
    await api('GET', `/admin/nodes/${nodeId}/wait?state=disconnected&timeout=3000`);
  });

  await step('faults on new connections at connect / register, with count', async () => {
    await fault({ mode: 'garbage', target: 'new', at: 'connect', count: 1, text: 'junk!' });
    const c = await rawWs(srv.port);
    await waitFrame(c, (f) => f.text.startsWith('0{'));
    c.send(`40/ws/node,${JSON.stringify({ token })}`);
    await waitFrame(c, (f) => f.text === 'junk!');
    c.sock.destroy();
    await fault({ mode: 'drop', target: 'new', at: 'register', nodeId, count: 1 });
    const { s } = await connectNode(token);
    sockets.push(s);
    const gone = waitEvent(s, 'disconnect');
    await registerNode(s, nodeId).catch(() => {});
    assert.equal(await gone, 'transport close');
    await fault({ mode: 'garbage', target: 'new', at: 'open' });
    const d = await rawWs(srv.port);
    await waitFrame(d, (f) => f.text === 'hello');
    d.sock.destroy();
    const cl = await fault({ mode: 'none' });
    assert.equal(cl.json.cleared, 1);
  });

  await step('ctl.js helpers: create-node, token, wait, events, fault, mint-token', async () => {
    const env = { ADMIN_TOKEN: ADMIN, CONTROLLER_URL: base };
    const id = (await runCtl(['create-node', '--name', 'ctl-node', '--role', 'worker', '--id-only'], env)).stdout.trim();
    assert.match(id, /^[0-9a-f]{24}$/);
    const tk = (await runCtl(['token', '--node', id], env)).stdout.trim();
    assert.equal(JSON.parse(Buffer.from(tk.split('.')[1], 'base64url')).sub, id);
    const w1 = await runCtl(['wait', '--node', id, '--wait', '0.3'], env);
    assert.equal(w1.code, 3);
    const { s } = await connectNode(tk);
    sockets.push(s);
    const w2 = await runCtl(['wait', '--node', id, '--state', 'connected', '--wait', '2'], env);
    assert.equal(w2.code, 0);
    const evP = runCtl(['events', '--node', id, '--type', 'model.downloadProgress', '--wait', '5'], env);
    await sleep(300);
    s.emit('model.downloadProgress', { type: 'model.downloadProgress', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { modelId: 'm', progress: 50 } });
    const ev = await evP;
    assert.equal(ev.code, 0, ev.stderr);
    assert.equal(JSON.parse(ev.stdout).events[0].envelope.data.progress, 50);
    const f = await runCtl(['fault', '--mode', 'garbage', '--node', id, '--params', '{"text":"zzz"}'], env);
    assert.equal(f.code, 0, f.stderr);
    assert.equal(JSON.parse(f.stdout).applied[0].sent, 'zzz');
    s.close();
    const vec = await runCtl(['mint-token', '6650a1b2c3d4e5f607182930', '--iat', '1795834343'], { JWT_SECRET: 'test-secret' });
    assert.equal(vec.stdout.trim().slice(-10), 'jWDl2XljDi4tV_f74KM'.slice(-10));
    const vec2 = await new Promise((resolve) => execFile(process.execPath, [path.join(HERE, 'server.js'), 'mint-token', '6650a1b2c3d4e5f607182930', '--iat', '1795834343', '--secret', 'test-secret'], (e, out) => resolve(out.trim())));
    assert.equal(vec2, vec.stdout.trim());
  });

  await step('runtime config change affects register.ack; reset clears logs', async () => {
    await api('POST', '/admin/config', { heartbeatInterval: 1234 });
    const { s } = await connectNode(token);
    sockets.push(s);
    main1 = s;
    const reg = await registerNode(s, nodeId);
    assert.equal(reg.data.controllerInfo.heartbeatInterval, 1234);
    const r = await api('POST', '/admin/reset', {});
    assert.equal(r.status, 200);
    const m = await api('GET', `/admin/nodes/${nodeId}/messages`);
    assert.equal(m.json.count, 0);
  });

  await step('state file survives a restart (nodes and queued commands); SIGTERM exits 0', async () => {
    const gone = waitEvent(main1, 'disconnect');
    const q = await api('POST', `/admin/nodes/${nodeId}/commands`, { type: 'system.healthCheck', queue: true });
    const ex = await srv.stop();
    assert.equal(ex.code, 0);
    await gone;
    srv = await startServer(['--state', stateFile]);
    base = `http://127.0.0.1:${srv.port}`;
    const n = await api('GET', `/api/nodes/${nodeId}`);
    assert.equal(n.status, 200);
    assert.equal(n.json.websocketConnected, false);
    const { s } = await connectNode(token);
    sockets.push(s);
    const reg = await registerNode(s, nodeId);
    assert.deepEqual(reg.data.pendingCommands.map((c) => c.messageId), [q.json.messageId]);
    s.close();
  });

  await step('--auto-create-nodes, --register-fails, --pending-delivery events, --no-auth', async () => {
    const s2 = await startServer(['--auto-create-nodes', '--register-fails', '--pending-delivery', 'events']);
    const url = `http://127.0.0.1:${s2.port}`;
    const sub = common.objectId();
    const tk = common.mintToken({ sub, secret: SECRET }).token;
    const { s, ack } = await connectNode(tk, { url });
    sockets.push(s);
    assert.equal(ack.status, 'success');
    const p = waitEvent(s, 'error');
    s.emit('node.register', { type: 'node.register', messageId: crypto.randomUUID(), timestamp: new Date().toISOString(), data: { os: { platform: 'linux' } } });
    assert.equal((await p).error.code, 'REGISTRATION_FAILED');
    const gone = waitEvent(s, 'disconnect');
    s.close();
    await gone;
    await api('GET', `/admin/nodes/${sub}/wait?state=disconnected&timeout=2000`, undefined, { url });
    const q = await api('POST', `/admin/nodes/${sub}/commands`, { type: 'system.healthCheck' }, { url });
    assert.equal(q.json.delivered, 'queued');
    const s3 = sio(tk, { url });
    sockets.push(s3);
    const cmd = await waitEvent(s3, 'system.healthCheck');
    assert.equal(cmd.messageId, q.json.messageId);
    s3.close();
    assert.equal((await s2.stop()).code, 0);

    const s4 = await startServer(['--no-auth']);
    const x = sio(null, { url: `http://127.0.0.1:${s4.port}`, auth: {} });
    sockets.push(x);
    const a4 = await waitEvent(x, 'connection.ack');
    assert.equal(a4.error.code, '1004');
    x.close();
    assert.equal((await s4.stop()).code, 0);
  });

  await step('TLS: https server with certificates from scripts/gen-test-certs.sh', async () => {
    const certs = path.join(tmp, 'certs');
    await new Promise((resolve, reject) => execFile('bash', [path.join(HERE, '..', '..', 'scripts', 'gen-test-certs.sh'), certs], (e, o, se) => (e ? reject(new Error(se)) : resolve())));
    const s5 = await startServer(['--tls-cert', path.join(certs, 'server.crt'), '--tls-key', path.join(certs, 'server.key'), '--seed-node', nodeId]);
    const ca = fs.readFileSync(path.join(certs, 'ca.crt'));
    const url = `https://127.0.0.1:${s5.port}`;
    const { s, ack } = await connectNode(token, { url, ca });
    sockets.push(s);
    assert.equal(ack.status, 'success');
    const h = await common.request(`https://localhost:${s5.port}/health`, { ca: path.join(certs, 'ca.crt') });
    assert.equal(h.status, 200);
    await assert.rejects(common.request(`https://localhost:${s5.port}/health`, {}), /self.signed|unable to verify|certificate/i);
    s.close();
    assert.equal((await s5.stop()).code, 0);
  }, 30000);

  for (const s of sockets) s.close();
  await srv.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
  const failed = results.filter(([ok]) => !ok);
  process.stdout.write(`${results.length - failed.length}/${results.length} passed\n`);
  process.exit(failed.length ? 1 : 0);
}

main().catch((e) => {
  process.stdout.write(`not ok - harness: ${e.stack}\n`);
  if (srv) srv.child.kill('SIGKILL');
  process.exit(1);
});
