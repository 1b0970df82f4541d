#!/usr/bin/env node
'use strict';
// AIWM test/dev controller: a Socket.IO v4 server on namespace /ws/node that
// behaves like the AIWM controller as described in shared/PROTOCOL.md (plus the
// JWT middleware the upstream forgets), with an admin/test API and fault
// injection. See README.md in this folder.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const util = require('node:util');
const { EventEmitter } = require('node:events');
const jwt = require('jsonwebtoken');
const { Server } = require('socket.io');
const common = require('./lib/common');

const NAMESPACE = '/ws/node';
const CONTROLLER_ID = 'controller-main';
const SERVER_VERSION = '1.0.0';
const DISABLED_STATUSES = new Set(['inactive', 'banned']);
const RESOURCE_TYPES = new Set(['deployment', 'model', 'job', 'agent', 'container', 'system', 'node']);
const MAX_BODY = 16 * 1024 * 1024;
const MAX_WAIT_MS = 600000;

// ---------------------------------------------------------------- logging

const LEVELS = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

function makeLogger(level) {
  const min = LEVELS[level] ?? LEVELS.info;
  const out = (lvl, args) => {
    if (LEVELS[lvl] < min) return;
    const text = util.format(...args);
    process.stderr.write(`${new Date().toISOString()} [controller] ${lvl.toUpperCase()} ${text}\n`);
  };
  return {
    debug: (...a) => out('debug', a),
    info: (...a) => out('info', a),
    warn: (...a) => out('warn', a),
    error: (...a) => out('error', a),
  };
}

// ---------------------------------------------------------------- config

const CLI_SPEC = {
  host: 'string',
  port: 'number',
  'port-file': 'string',
  'tls-cert': 'string',
  'tls-key': 'string',
  'jwt-secret': 'string',
  'admin-token': 'string',
  'ping-interval': 'number',
  'ping-timeout': 'number',
  'max-payload': 'number',
  'connect-timeout': 'number',
  'heartbeat-interval': 'number',
  'metrics-interval': 'number',
  'auto-create-nodes': 'bool',
  'register-fails': 'bool',
  'pending-delivery': 'string',
  'no-auth': 'bool',
  state: 'string',
  'seed-node': 'list',
  'log-level': 'string',
  quiet: 'bool',
  verbose: 'bool',
  'max-log': 'number',
  'public-url': 'string',
  help: 'bool',
};

function loadConfig(argv, env) {
  const { opts, positional } = common.parseArgs(argv, CLI_SPEC);
  if (positional.length) throw new Error(`unexpected argument: ${positional[0]}`);
  const pick = (flag, envName, dflt, conv = (x) => x) => {
    if (opts[flag] !== undefined) return opts[flag];
    const e = env[envName];
    if (e !== undefined && e !== '') return conv(e);
    return dflt;
  };
  const cfg = {
    help: !!opts.help,
    host: pick('host', 'HOST', '127.0.0.1'),
    port: pick('port', 'PORT', 3003, common.envNum),
    portFile: pick('port-file', 'PORT_FILE', null),
    tlsCert: pick('tls-cert', 'TLS_CERT', null),
    tlsKey: pick('tls-key', 'TLS_KEY', null),
    jwtSecret: pick('jwt-secret', 'JWT_SECRET', common.DEFAULT_SECRET),
    adminToken: pick('admin-token', 'ADMIN_TOKEN', common.DEFAULT_ADMIN_TOKEN),
    pingInterval: pick('ping-interval', 'PING_INTERVAL', 25000, common.envNum),
    pingTimeout: pick('ping-timeout', 'PING_TIMEOUT', 20000, common.envNum),
    maxPayload: pick('max-payload', 'MAX_PAYLOAD', 1e6, common.envNum),
    connectTimeout: pick('connect-timeout', 'CONNECT_TIMEOUT', 45000, common.envNum),
    heartbeatInterval: pick('heartbeat-interval', 'HEARTBEAT_INTERVAL', 30000, common.envNum),
    metricsInterval: pick('metrics-interval', 'METRICS_INTERVAL', 60000, common.envNum),
    autoCreateNodes: pick('auto-create-nodes', 'AUTO_CREATE_NODES', false, common.envBool),
    registerFails: pick('register-fails', 'REGISTER_FAILS', false, common.envBool),
    pendingDelivery: pick('pending-delivery', 'PENDING_DELIVERY', 'ack'),
    noAuth: pick('no-auth', 'NO_AUTH', false, common.envBool),
    stateFile: pick('state', 'STATE_FILE', null),
    seedNodes: opts['seed-node'] || (env.SEED_NODES ? env.SEED_NODES.split(',').filter(Boolean) : []),
    logLevel: opts.verbose ? 'debug' : opts.quiet ? 'warn' : pick('log-level', 'LOG_LEVEL', 'info'),
    maxLog: pick('max-log', 'MAX_LOG', 5000, common.envNum),
    publicUrl: pick('public-url', 'PUBLIC_URL', null),
  };
  if (!['ack', 'events', 'both'].includes(cfg.pendingDelivery)) {
    throw new Error(`--pending-delivery must be ack, events or both (got ${cfg.pendingDelivery})`);
  }
  if (!!cfg.tlsCert !== !!cfg.tlsKey) throw new Error('--tls-cert and --tls-key go together');
  if (!(cfg.logLevel in LEVELS)) throw new Error(`bad log level ${cfg.logLevel}`);
  return cfg;
}

// ---------------------------------------------------------------- helpers

class HttpError extends Error {
  constructor(status, message, extra) {
    super(message);
    this.status = status;
    this.extra = extra;
  }
}

function wsFrame(text) {
  const p = Buffer.from(text, 'utf8');
  let h;
  if (p.length < 126) {
    h = Buffer.from([0x81, p.length]);
  } else if (p.length < 65536) {
    h = Buffer.alloc(4);
    h[0] = 0x81;
    h[1] = 126;
    h.writeUInt16BE(p.length, 2);
  } else {
    h = Buffer.alloc(10);
    h[0] = 0x81;
    h[1] = 127;
    h.writeBigUInt64BE(BigInt(p.length), 2);
  }
  return Buffer.concat([h, p]);
}

function deepEqual(a, b) {
  return util.isDeepStrictEqual(a, b);
}

function isPlainObject(x) {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

function clampWait(v) {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) return 0;
  return Math.min(n, MAX_WAIT_MS);
}

// Short description of an object like Mongoose prints it in a CastError.
function mongooseInspect(v) {
  return util.inspect(v, { breakLength: Infinity, depth: 2 });
}

// ---------------------------------------------------------------- controller

class Controller {
  constructor(cfg) {
    this.cfg = cfg;
    this.log = makeLogger(cfg.logLevel);
    this.nodes = new Map(); // id -> node document (persisted)
    this.rt = new Map(); // id -> runtime state (logs, sockets, commands)
    this.faults = [];
    this.faultSeq = 0;
    this.stalled = new Set(); // raw sockets / engine conns held by stall faults
    this.pingTimers = new Set(); // ping-fast intervals
    this.changes = new EventEmitter();
    this.changes.setMaxListeners(0);
    this.startedAt = Date.now();
    this.stats = this.freshStats();
    this.saveTimer = null;
    this.port = null;
  }

  freshStats() {
    return {
      engineConnections: 0,
      engineCloses: {},
      namespaceConnections: 0,
      authFailures: { TOKEN_MISSING: 0, TOKEN_INVALID: 0, TOKEN_EXPIRED: 0, AUTH_FAILED: 0 },
      connectionAckErrors: {},
      connectionAckSuccess: 0,
      messagesReceived: 0,
      commandsSent: 0,
      commandsQueued: 0,
      pongsReceived: 0,
      injectedPings: 0,
      faultsApplied: 0,
      recentAuthFailures: [],
      recentEngineCloses: [],
      httpRequests: 0,
    };
  }

  // ------------------------------------------------------------ node store

  runtime(id) {
    let r = this.rt.get(id);
    if (!r) {
      r = {
        sockets: new Map(),
        current: null,
        registeredSocketId: null,
        seq: 0,
        log: [],
        heartbeats: [],
        metrics: [],
        commands: new Map(),
        queue: [],
        connLog: [],
        registerFails: null,
        counters: this.freshCounters(),
      };
      this.rt.set(id, r);
    }
    return r;
  }

  freshCounters() {
    return {
      connections: 0,
      disconnects: 0,
      rejected: 0,
      registrations: 0,
      registrationFailures: 0,
      heartbeats: 0,
      metrics: 0,
      messages: 0,
      commandsSent: 0,
      acks: 0,
      results: 0,
      kicks: 0,
      evictions: 0,
    };
  }

  createNode(body, opts = {}) {
    if (!isPlainObject(body)) throw new HttpError(400, 'body must be a JSON object');
    const errors = [];
    if (typeof body.name !== 'string' || !body.name) errors.push('name must be a non-empty string');
    let role = body.role;
    if (role === undefined) role = ['worker'];
    if (typeof role === 'string') role = [role];
    if (!Array.isArray(role) || !role.every((x) => typeof x === 'string')) {
      errors.push('role must be a string or an array of strings');
    }
    let id = common.objectId();
    if (body._id !== undefined) {
      if (!common.isObjectId(body._id)) errors.push('_id must be 24 lowercase hex digits');
      else id = body._id;
    }
    if (body.status !== undefined && typeof body.status !== 'string') errors.push('status must be a string');
    if (errors.length) throw new HttpError(400, 'Bad Request', { message: errors });
    const existing = this.nodes.get(id);
    if (existing && !existing.deleted) throw new HttpError(409, `node ${id} exists`);
    const now = common.isoNow();
    const node = {
      _id: id,
      name: body.name,
      role,
      status: body.status || 'pending',
      isLocal: !!body.isLocal,
      ...(typeof body.vpnIp === 'string' ? { vpnIp: body.vpnIp } : {}),
      websocketConnected: false,
      lastHeartbeat: null,
      gpuDevices: [],
      metadata: {},
      owner: null,
      createdBy: opts.createdBy || 'admin',
      updatedBy: opts.createdBy || 'admin',
      createdAt: now,
      updatedAt: now,
      __v: 0,
    };
    this.nodes.set(id, node);
    this.runtime(id);
    this.scheduleSave();
    this.log.info('node created %s name=%j role=%j status=%s', id, node.name, node.role, node.status);
    return node;
  }

  getNode(id, { allowDeleted = false } = {}) {
    const n = this.nodes.get(id);
    if (!n || (n.deleted && !allowDeleted)) throw new HttpError(404, `node ${id} not found`);
    return n;
  }

  touch(node) {
    node.updatedAt = common.isoNow();
    this.scheduleSave();
  }

  setStatus(node, status, opts = {}) {
    if (!opts.force && DISABLED_STATUSES.has(node.status)) return; // admin-disabled is sticky
    node.status = status;
    this.touch(node);
  }

  mintForNode(id, expiresIn) {
    const node = this.getNode(id);
    let exp = common.DEFAULT_TOKEN_LIFETIME_S;
    if (expiresIn !== undefined && expiresIn !== null) {
      exp = Number(expiresIn);
      if (!Number.isFinite(exp)) throw new HttpError(400, 'Bad Request', { message: ['expiresIn must be a number'] });
    }
    const { token, claims } = common.mintToken({ sub: id, secret: this.cfg.jwtSecret, expiresIn: exp });
    const expiresAt = new Date(claims.exp * 1000).toISOString();
    node.tokenMetadata = { tokenGeneratedAt: common.isoNow(), tokenExpiresAt: expiresAt };
    this.touch(node);
    const endpoint = this.wsUrl();
    const installScript = [
      '#!/bin/bash',
      '# AIWM node install script (test controller)',
      `export AIOPS_NODE_TOKEN="${token}"`,
      `export AIOPS_CONTROLLER_ENDPOINT="${endpoint}"`,
      `export AIOPS_NODE_ID="${id}"`,
      `export CONTROLLER_WS_URL="${endpoint}"`,
      `export NODE_TOKEN="${token}"`,
      `export NODE_ID="${id}"`,
      '',
    ].join('\n');
    this.log.info('token minted for node %s (expires %s)', id, expiresAt);
    return { token, expiresAt, installScript };
  }

  wsUrl() {
    if (this.cfg.publicUrl) return this.cfg.publicUrl;
    const scheme = this.cfg.tlsCert ? 'wss' : 'ws';
    const host = this.cfg.host.includes(':') ? `[${this.cfg.host}]` : this.cfg.host;
    return `${scheme}://${host}:${this.port}${NAMESPACE}`;
  }

  // ------------------------------------------------------------ persistence

  loadState() {
    const f = this.cfg.stateFile;
    if (!f || !fs.existsSync(f)) return;
    const st = JSON.parse(fs.readFileSync(f, 'utf8'));
    for (const n of st.nodes || []) {
      n.websocketConnected = false;
      this.nodes.set(n._id, n);
      const r = this.runtime(n._id);
      r.queue = (st.queues && st.queues[n._id]) || [];
      for (const env of r.queue) {
        r.commands.set(env.messageId, this.newCommandRecord(n._id, env, 'queued'));
      }
    }
    this.log.info('state loaded from %s: %d nodes', f, this.nodes.size);
  }

  scheduleSave() {
    if (!this.cfg.stateFile || this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = null;
      this.saveState();
    }, 100);
  }

  saveState() {
    const f = this.cfg.stateFile;
    if (!f) return;
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = null;
    }
    const queues = {};
    for (const [id, r] of this.rt) if (r.queue.length) queues[id] = r.queue;
    const st = { version: 1, savedAt: common.isoNow(), nodes: [...this.nodes.values()], queues };
    const tmp = `${f}.tmp-${process.pid}`;
    try {
      fs.writeFileSync(tmp, JSON.stringify(st, null, 1));
      fs.renameSync(tmp, f);
    } catch (e) {
      this.log.error('saving state to %s failed: %s', f, e.message);
    }
  }

  // ------------------------------------------------------------ recording

  notify() {
    this.changes.emit('change');
  }

  /** Resolve when pred() is truthy or after ms; returns pred()'s last value. */
  waitFor(pred, ms) {
    const v = pred();
    if (v || ms <= 0) return Promise.resolve(v);
    return new Promise((resolve) => {
      const onChange = () => {
        const x = pred();
        if (x) finish(x);
      };
      const finish = (x) => {
        clearTimeout(timer);
        this.changes.removeListener('change', onChange);
        resolve(x);
      };
      const timer = setTimeout(() => finish(pred()), ms);
      this.changes.on('change', onChange);
    });
  }

  record(nodeId, socket, type, envelope) {
    const r = this.runtime(nodeId);
    const entry = {
      seq: ++r.seq,
      type,
      receivedAt: common.isoNow(),
      socketId: socket ? socket.id : null,
      envelope,
    };
    r.log.push(entry);
    if (r.log.length > this.cfg.maxLog) r.log.splice(0, r.log.length - this.cfg.maxLog);
    r.counters.messages++;
    this.stats.messagesReceived++;
    return entry;
  }

  // ------------------------------------------------------------ commands

  newCommandRecord(nodeId, envelope, state) {
    return {
      messageId: envelope ? envelope.messageId : null,
      nodeId,
      type: envelope ? envelope.type : null,
      state,
      unknown: !envelope,
      createdAt: common.isoNow(),
      sentAt: [],
      envelope,
      acks: [],
      results: [],
    };
  }

  buildCommand(nodeId, body) {
    if (!isPlainObject(body)) throw new HttpError(400, 'body must be a JSON object');
    if (typeof body.type !== 'string' || !body.type) throw new HttpError(400, 'type must be a non-empty string');
    const env = { type: body.type, messageId: body.messageId || common.uuid(), timestamp: common.isoNow() };
    if (typeof env.messageId !== 'string') throw new HttpError(400, 'messageId must be a string');
    let resource = body.resource;
    if (resource === undefined) {
      const prefix = body.type.split('.')[0];
      if (prefix === 'system') resource = { type: 'system', id: nodeId };
      else if (RESOURCE_TYPES.has(prefix) && body.resourceId) resource = { type: prefix, id: body.resourceId };
    }
    if (resource !== undefined && resource !== null) env.resource = resource;
    env.data = body.data === undefined ? {} : body.data;
    const md = { priority: 'normal' };
    if (body.execution || body.executionId) {
      md.executionId = body.executionId || common.uuid();
      md.stepIndex = body.stepIndex ?? 0;
    }
    if (body.timeout !== undefined) md.timeout = body.timeout;
    if (body.metadata !== null) env.metadata = { ...md, ...(body.metadata || {}) };
    return env;
  }

  /** Send (or queue) a command envelope. Returns {messageId, delivered, envelope}. */
  sendCommand(nodeId, body) {
    this.getNode(nodeId);
    const r = this.runtime(nodeId);
    const env = this.buildCommand(nodeId, body);
    let rec = r.commands.get(env.messageId);
    if (!rec) {
      rec = this.newCommandRecord(nodeId, env, 'queued');
      r.commands.set(env.messageId, rec);
    } else if (!rec.envelope) {
      rec.envelope = env;
      rec.type = env.type;
      rec.unknown = false;
    }
    const delivered = this.deliver(nodeId, env, { queue: !!body.queue });
    this.notify();
    return { messageId: env.messageId, delivered, envelope: env };
  }

  deliver(nodeId, env, { queue = false } = {}) {
    const r = this.runtime(nodeId);
    const rec = r.commands.get(env.messageId);
    if (r.current && !queue) {
      r.current.emit(env.type, env);
      this.markSent(nodeId, rec);
      this.log.info('command %s %s -> node %s', env.type, env.messageId, nodeId);
      return 'sent';
    }
    r.queue.push(env);
    this.stats.commandsQueued++;
    this.scheduleSave();
    this.log.info('command %s %s queued for node %s', env.type, env.messageId, nodeId);
    return 'queued';
  }

  markSent(nodeId, rec) {
    const r = this.runtime(nodeId);
    if (rec) {
      rec.state = 'sent';
      rec.sentAt.push(common.isoNow());
    }
    r.counters.commandsSent++;
    this.stats.commandsSent++;
  }

  recordReply(nodeId, socket, kind, envelope, entry) {
    const r = this.runtime(nodeId);
    const data = isPlainObject(envelope) ? envelope.data : undefined;
    const omid = isPlainObject(data) ? data.originalMessageId : undefined;
    const key = typeof omid === 'string' ? omid : '(missing)';
    let rec = r.commands.get(key);
    if (!rec) {
      rec = this.newCommandRecord(nodeId, null, 'unknown');
      rec.messageId = key;
      r.commands.set(key, rec);
    }
    const cmdMd = rec.envelope && rec.envelope.metadata;
    const md = isPlainObject(envelope) ? envelope.metadata : undefined;
    const item = {
      seq: entry.seq,
      receivedAt: entry.receivedAt,
      socketId: socket.id,
      envelope,
      metadataEqual: cmdMd ? deepEqual(cmdMd, md) : md === undefined,
      executionIdMatched:
        cmdMd && cmdMd.executionId !== undefined
          ? isPlainObject(md) && md.executionId === cmdMd.executionId && md.stepIndex === cmdMd.stepIndex
          : null,
    };
    if (kind === 'ack') {
      rec.acks.push(item);
      r.counters.acks++;
      if (rec.state === 'sent' || rec.state === 'queued') rec.state = 'acknowledged';
    } else {
      rec.results.push(item);
      r.counters.results++;
      rec.state = isPlainObject(data) && data.status === 'success' ? 'success' : 'error';
    }
    if (rec.acks.length + rec.results.length > 2 || rec.acks.length > 1 || rec.results.length > 1) {
      this.log.warn('node %s: duplicate %s for %s (acks=%d results=%d)', nodeId, kind, key, rec.acks.length, rec.results.length);
    }
    if (item.executionIdMatched === false) {
      this.log.warn('node %s: %s for %s without matching metadata.executionId/stepIndex', nodeId, kind, key);
    }
  }

  // ------------------------------------------------------------ faults

  addFault(body) {
    if (!isPlainObject(body) || typeof body.mode !== 'string') throw new HttpError(400, 'mode required');
    let mode = body.mode;
    if (mode === 'no-pong-needed') mode = 'ping-fast';
    if (mode === 'none') {
      const n = this.clearFaults();
      return { cleared: n };
    }
    const KNOWN = [
      'stall', 'close-mid-frame', 'oversize', 'garbage', 'raw', 'foreign-namespace', 'bad-json-event',
      'ping-fast', 'drop', 'ws-close', 'kick',
    ];
    if (!KNOWN.includes(mode)) throw new HttpError(400, `unknown fault mode ${body.mode}`);
    const target = body.target || (mode === 'stall' ? 'new' : 'current');
    if (!['new', 'current'].includes(target)) throw new HttpError(400, 'target must be new or current');
    const fault = {
      id: ++this.faultSeq,
      mode,
      target,
      nodeId: body.nodeId || null,
      at: body.at || 'connect',
      phase: body.phase || 'open',
      delayMs: Number(body.delayMs) || 0,
      count: body.count === undefined || body.count === null ? null : Number(body.count),
      hits: 0,
      params: body,
      createdAt: common.isoNow(),
    };
    if (!['open', 'connect', 'register'].includes(fault.at)) throw new HttpError(400, 'at must be open, connect or register');
    if (mode === 'stall' && !['tcp', 'open', 'connect', 'ack', 'register'].includes(fault.phase)) {
      throw new HttpError(400, 'stall phase must be tcp, open, connect, ack or register');
    }
    if (target === 'current') {
      const applied = [];
      for (const conn of this.targetConns(fault.nodeId)) {
        const info = this.applyConnFault(fault, conn.conn, conn.nodeId);
        applied.push({ sid: conn.conn.id, nodeId: conn.nodeId, ...info });
      }
      fault.hits = applied.length;
      this.log.info('fault %s applied to %d current connection(s)', mode, applied.length);
      return { id: fault.id, mode, target, applied };
    }
    this.faults.push(fault);
    this.log.info('fault armed #%d %s target=new at=%s phase=%s count=%s node=%s', fault.id, mode, fault.at,
      fault.phase, fault.count ?? 'unlimited', fault.nodeId || '*');
    return { id: fault.id, mode, target, armed: this.faultView(fault) };
  }

  faultView(f) {
    return { ...f };
  }

  clearFaults() {
    const n = this.faults.length;
    this.faults = [];
    for (const t of this.pingTimers) clearInterval(t);
    this.pingTimers.clear();
    for (const s of this.stalled) {
      try {
        if (typeof s.destroy === 'function') s.destroy();
        else if (typeof s.close === 'function') s.close();
      } catch {
        /* already gone */
      }
    }
    const held = this.stalled.size;
    this.stalled.clear();
    if (n || held) this.log.info('faults cleared (%d armed, %d stalled connection(s) closed)', n, held);
    return n;
  }

  removeFault(id) {
    const i = this.faults.findIndex((f) => f.id === id);
    if (i < 0) throw new HttpError(404, `fault ${id} not found`);
    const [f] = this.faults.splice(i, 1);
    return this.faultView(f);
  }

  /** Take (consume one count of) the first armed new-connection fault matching pred. */
  takeFault(pred) {
    for (const f of this.faults) {
      if (f.target !== 'new' || f.count === 0) continue;
      if (!pred(f)) continue;
      f.hits++;
      if (f.count !== null) f.count--;
      this.stats.faultsApplied++;
      if (f.count === 0) this.faults = this.faults.filter((x) => x !== f);
      return f;
    }
    return null;
  }

  /** Fire each armed new-connection non-stall fault (once) for trigger point `at`. */
  fireFaults(at, conn, nodeId) {
    const fired = new Set();
    for (;;) {
      const f = this.takeFault(
        (x) => !fired.has(x) && x.mode !== 'stall' && x.at === at && (!x.nodeId || x.nodeId === nodeId),
      );
      if (!f) break;
      fired.add(f);
      const go = () => {
        if (conn.readyState === 'open') this.applyConnFault(f, conn, nodeId);
      };
      if (f.delayMs > 0) setTimeout(go, f.delayMs);
      else go();
      if (['drop', 'close-mid-frame', 'kick', 'ws-close'].includes(f.mode)) break; // connection gone
    }
  }

  targetConns(nodeId) {
    const out = [];
    if (nodeId) {
      const r = this.rt.get(nodeId);
      if (r) for (const s of r.sockets.values()) out.push({ conn: s.conn, nodeId });
      return out;
    }
    // engine.io keeps its clients in a plain object (a Map in some versions).
    const clients = this.io.engine.clients;
    const all = clients instanceof Map ? clients.values() : Object.values(clients);
    for (const conn of all) {
      out.push({ conn, nodeId: conn.aiwmNodeId || null });
    }
    return out;
  }

  applyConnFault(fault, conn, nodeId) {
    const p = fault.params;
    const transport = conn.transport;
    if (!transport || transport.name !== 'websocket' || !transport.socket) {
      return { skipped: 'not a websocket transport' };
    }
    const ws = transport.socket; // the `ws` WebSocket
    const raw = ws._socket; // net.Socket or tls.TLSSocket
    this.stats.faultsApplied++;
    this.log.info('fault %s on engine sid=%s node=%s', fault.mode, conn.id, nodeId || '-');
    switch (fault.mode) {
      case 'drop':
        if (p.rst && typeof raw.resetAndDestroy === 'function') raw.resetAndDestroy();
        else raw.destroy();
        return { dropped: true };
      case 'close-mid-frame': {
        const env = this.buildCommand(nodeId || '000000000000000000000000', {
          type: p.type || 'system.healthCheck',
          data: p.data || { includeMetrics: true },
        });
        const frame = wsFrame(`42${NAMESPACE},${JSON.stringify([env.type, env])}`);
        const n = Math.max(1, Math.min(frame.length - 1, p.bytes !== undefined ? Number(p.bytes) : Math.floor(frame.length / 2)));
        raw.write(frame.subarray(0, n), () => raw.destroy());
        return { frameBytes: frame.length, written: n };
      }
      case 'oversize': {
        const bytes = p.bytes !== undefined ? Number(p.bytes) : Math.floor((p.sizeMiB !== undefined ? Number(p.sizeMiB) : 16) * 1048576);
        const env = {
          type: p.type || 'test.oversize',
          messageId: common.uuid(),
          timestamp: common.isoNow(),
          data: { padding: '' },
          metadata: { priority: 'normal' },
        };
        const base = `42${NAMESPACE},${JSON.stringify([env.type, env])}`;
        const pad = Math.max(0, bytes - Buffer.byteLength(base));
        env.data.padding = 'x'.repeat(pad);
        const text = `42${NAMESPACE},${JSON.stringify([env.type, env])}`;
        if (nodeId) {
          const r = this.runtime(nodeId);
          const rec = this.newCommandRecord(nodeId, env, 'sent');
          rec.sentAt.push(common.isoNow());
          r.commands.set(env.messageId, rec);
        }
        ws.send(text);
        return { bytes: Buffer.byteLength(text), messageId: env.messageId };
      }
      case 'garbage':
      case 'raw': {
        const text = p.text !== undefined ? String(p.text) : 'hello';
        ws.send(text);
        return { sent: text.length > 200 ? `${text.slice(0, 200)}…` : text };
      }
      case 'foreign-namespace': {
        const text = p.text || '42/other,["x",{}]';
        ws.send(text);
        return { sent: text };
      }
      case 'bad-json-event': {
        const text = p.text || `42${NAMESPACE},["x",{bad`;
        ws.send(text);
        return { sent: text };
      }
      case 'ws-close': {
        const code = p.code !== undefined ? Number(p.code) : 1011;
        ws.close(code, p.reason || '');
        return { code };
      }
      case 'kick': {
        for (const s of conn.aiwmSockets || []) s.disconnect(true);
        if (!(conn.aiwmSockets || []).length) conn.close();
        return { kicked: true };
      }
      case 'ping-fast': {
        const every = Math.max(1, Number(p.intervalMs) || 100);
        const duration = p.durationMs !== undefined ? Number(p.durationMs) : null;
        const started = Date.now();
        const t = setInterval(() => {
          if (ws.readyState !== 1 || (duration !== null && Date.now() - started >= duration)) {
            clearInterval(t);
            this.pingTimers.delete(t);
            return;
          }
          ws.send('2');
          conn.aiwmInjectedPings = (conn.aiwmInjectedPings || 0) + 1;
          this.stats.injectedPings++;
        }, every);
        this.pingTimers.add(t);
        return { intervalMs: every, durationMs: duration };
      }
      case 'stall': {
        // On a live connection: freeze it. The server stops pinging, ignores
        // everything it receives and sends nothing, but keeps TCP open.
        conn.schedulePing = () => {};
        conn.resetPingTimeout = () => {};
        clearTimeout(conn.pingIntervalTimer);
        clearTimeout(conn.pingTimeoutTimer);
        conn.pingTimeoutTimer = null;
        conn.sendPacket = () => {};
        ws.removeAllListeners('message');
        this.stalled.add(raw);
        raw.once('close', () => this.stalled.delete(raw));
        return { frozen: true };
      }
      default:
        return { skipped: 'unknown mode' };
    }
  }

  stallUpgrade(fault, req, socket) {
    this.stalled.add(socket);
    socket.on('error', () => {});
    socket.on('data', () => {});
    socket.once('close', () => this.stalled.delete(socket));
    if (fault.phase === 'open') {
      const key = req.headers['sec-websocket-key'];
      if (typeof key === 'string') {
        const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
        );
      }
    }
    this.log.info('stalling new connection at phase %s (%s)', fault.phase, req.url);
  }

  // ------------------------------------------------------------ socket.io

  attachSocketIo(server) {
    const io = new Server(server, {
      path: '/socket.io/',
      pingInterval: this.cfg.pingInterval,
      pingTimeout: this.cfg.pingTimeout,
      maxHttpBufferSize: this.cfg.maxPayload,
      connectTimeout: this.cfg.connectTimeout,
      cors: { origin: '*', credentials: true },
      serveClient: false,
    });
    this.io = io;

    // Route upgrades through the fault layer before engine.io sees them.
    const eioUpgrade = server.listeners('upgrade').slice();
    server.removeAllListeners('upgrade');
    server.on('upgrade', (req, socket, head) => {
      if (req.url.startsWith('/socket.io/')) {
        const f = this.takeFault((x) => x.mode === 'stall' && (x.phase === 'tcp' || x.phase === 'open'));
        if (f) {
          this.stallUpgrade(f, req, socket);
          return;
        }
      }
      for (const l of eioUpgrade) l.call(server, req, socket, head);
    });

    io.engine.on('connection', (conn) => {
      this.stats.engineConnections++;
      conn.aiwmSockets = new Set();
      const remote = conn.remoteAddress;
      this.log.debug('engine open sid=%s from %s', conn.id, remote);
      conn.on('packet', (pkt) => {
        if (pkt.type === 'pong') {
          this.stats.pongsReceived++;
          conn.aiwmPongs = (conn.aiwmPongs || 0) + 1;
        }
      });
      conn.once('close', (reason, desc) => {
        this.stats.engineCloses[reason] = (this.stats.engineCloses[reason] || 0) + 1;
        const item = {
          sid: conn.id,
          at: common.isoNow(),
          reason,
          detail: desc && desc.message ? desc.message : undefined,
          nodeId: conn.aiwmNodeId || null,
          joined: conn.aiwmJoined || false,
          pongs: conn.aiwmPongs || 0,
          injectedPings: conn.aiwmInjectedPings || 0,
        };
        this.stats.recentEngineCloses.push(item);
        if (this.stats.recentEngineCloses.length > 100) this.stats.recentEngineCloses.shift();
        this.log.debug('engine close sid=%s reason=%s', conn.id, reason);
        this.notify();
      });
      this.fireFaults('open', conn, null);
    });

    const nsp = io.of(NAMESPACE);
    nsp.use((socket, next) => this.authMiddleware(socket, next));
    nsp.on('connection', (socket) => {
      this.onNamespaceConnection(socket).catch((e) => {
        this.log.error('connection handler failed: %s', e.stack);
      });
    });
    return io;
  }

  authFailure(socket, reason, sub) {
    this.stats.authFailures[reason] = (this.stats.authFailures[reason] || 0) + 1;
    this.stats.recentAuthFailures.push({ at: common.isoNow(), reason, sub: sub || null, sid: socket.conn.id });
    if (this.stats.recentAuthFailures.length > 100) this.stats.recentAuthFailures.shift();
    this.log.info('auth refused (%s) sid=%s', reason, socket.conn.id);
    this.notify();
    return new Error(reason);
  }

  authMiddleware(socket, next) {
    const auth = socket.handshake.auth || {};
    const token = auth.token;
    let nodeId;
    if (!this.cfg.noAuth) {
      if (token === undefined || token === null || token === '') {
        return next(this.authFailure(socket, 'TOKEN_MISSING'));
      }
      try {
        const claims = jwt.verify(String(token), this.cfg.jwtSecret);
        socket.data.user = claims;
        nodeId = claims.sub;
        socket.data.nodeId = nodeId;
      } catch (e) {
        let reason = 'AUTH_FAILED';
        if (e instanceof jwt.TokenExpiredError) reason = 'TOKEN_EXPIRED';
        else if (e instanceof jwt.NotBeforeError) reason = 'AUTH_FAILED';
        else if (e instanceof jwt.JsonWebTokenError) reason = 'TOKEN_INVALID';
        this.log.debug('token %s rejected: %s', common.redact(String(token)), e.message);
        return next(this.authFailure(socket, reason));
      }
    }
    const stall = this.takeFault(
      (x) => x.mode === 'stall' && x.phase === 'connect' && (!x.nodeId || x.nodeId === nodeId),
    );
    if (stall) {
      this.log.info('stalling namespace CONNECT of node %s', nodeId || '-');
      this.stalled.add(socket.conn);
      socket.conn.once('close', () => this.stalled.delete(socket.conn));
      return undefined; // never call next(): no CONNECT answer
    }
    return next();
  }

  connectionAck(socket, ack) {
    socket.emit('connection.ack', { type: 'connection.ack', messageId: common.uuid(), timestamp: common.isoNow(), ...ack });
  }

  rejectConnection(socket, code, message, nodeId) {
    this.stats.connectionAckErrors[code] = (this.stats.connectionAckErrors[code] || 0) + 1;
    this.log.info('connection.ack error %s (%s) node=%s', code, message, nodeId || '-');
    this.connectionAck(socket, { status: 'error', error: { code, message, timestamp: common.isoNow() } });
    socket.disconnect(true);
    this.notify();
  }

  async onNamespaceConnection(socket) {
    this.stats.namespaceConnections++;
    socket.conn.aiwmJoined = true;
    const nodeId = socket.data.nodeId;
    // The upstream gateway awaits a database lookup before answering.
    await new Promise((resolve) => setImmediate(resolve));
    if (!socket.connected) return;

    if (typeof nodeId !== 'string' || !nodeId) {
      this.rejectConnection(socket, '1004', 'Node ID not found in database', null);
      return;
    }
    if (!common.isObjectId(nodeId)) {
      // Mongoose would throw a CastError for a non-ObjectId _id.
      this.rejectConnection(socket, 'INTERNAL_ERROR', 'Internal server error during connection', nodeId);
      return;
    }
    let node = this.nodes.get(nodeId);
    if (!node || node.deleted) {
      if (this.cfg.autoCreateNodes) {
        if (node) this.nodes.delete(nodeId);
        node = this.createNode({ _id: nodeId, name: `node-${nodeId.slice(-6)}`, role: ['worker'] }, { createdBy: 'auto' });
      } else {
        this.rejectConnection(socket, '1004', 'Node ID not found in database', nodeId);
        return;
      }
    }
    const r = this.runtime(nodeId);
    if (DISABLED_STATUSES.has(node.status)) {
      r.counters.rejected++;
      this.rejectConnection(socket, '1005', 'Node is disabled', nodeId);
      return;
    }

    socket.conn.aiwmNodeId = nodeId;
    socket.conn.aiwmSockets.add(socket);
    r.sockets.set(socket.id, socket);
    const connItem = {
      socketId: socket.id,
      engineSid: socket.conn.id,
      remoteAddress: socket.conn.remoteAddress,
      connectedAt: common.isoNow(),
      disconnectedAt: null,
      reason: null,
    };
    r.connLog.push(connItem);
    if (r.connLog.length > 200) r.connLog.shift();

    socket.on('disconnect', (reason) => this.onDisconnect(socket, nodeId, connItem, reason));
    socket.onAny((event, ...args) => {
      try {
        this.onEvent(socket, nodeId, event, args);
      } catch (e) {
        this.log.error('handler for %s failed: %s', event, e.stack);
      }
    });

    const stallAck = this.takeFault(
      (x) => x.mode === 'stall' && x.phase === 'ack' && (!x.nodeId || x.nodeId === nodeId),
    );
    if (stallAck) {
      this.log.info('node %s connected; connection.ack withheld (stall fault)', nodeId);
      this.notify();
      return;
    }

    // Evict an older socket of the same node (silently, like upstream).
    if (r.current && r.current !== socket) {
      const old = r.current;
      r.counters.evictions++;
      this.log.info('node %s: evicting older socket %s', nodeId, old.id);
      r.current = null;
      old.disconnect(true);
    }
    r.current = socket;
    r.registeredSocketId = null;
    r.counters.connections++;
    this.stats.connectionAckSuccess++;
    node.websocketConnected = true;
    node.lastSeenAt = common.isoNow();
    this.setStatus(node, 'online');
    this.connectionAck(socket, {
      status: 'success',
      nodeId,
      controllerId: CONTROLLER_ID,
      serverVersion: SERVER_VERSION,
    });
    this.log.info('node %s connected (socket %s, engine %s, from %s)', nodeId, socket.id, socket.conn.id, socket.conn.remoteAddress);

    if (this.cfg.pendingDelivery === 'events' || this.cfg.pendingDelivery === 'both') {
      const pending = r.queue.slice();
      if (this.cfg.pendingDelivery === 'events') r.queue = [];
      for (const env of pending) {
        socket.emit(env.type, env);
        this.markSent(nodeId, r.commands.get(env.messageId));
      }
      if (pending.length) {
        this.log.info('node %s: %d pending command(s) sent as events', nodeId, pending.length);
        this.scheduleSave();
      }
    }
    this.notify();
    this.fireFaults('connect', socket.conn, nodeId);
  }

  onDisconnect(socket, nodeId, connItem, reason) {
    const r = this.runtime(nodeId);
    r.sockets.delete(socket.id);
    socket.conn.aiwmSockets.delete(socket);
    connItem.disconnectedAt = common.isoNow();
    connItem.reason = reason;
    r.counters.disconnects++;
    if (r.current === socket) {
      r.current = null;
      r.registeredSocketId = null;
      const node = this.nodes.get(nodeId);
      if (node) {
        node.websocketConnected = false;
        this.setStatus(node, 'offline');
      }
    }
    this.log.info('node %s disconnected (socket %s): %s', nodeId, socket.id, reason);
    this.notify();
  }

  onEvent(socket, nodeId, event, args) {
    const envelope = args.length && typeof args[0] !== 'function' ? args[0] : undefined;
    const entry = this.record(nodeId, socket, event, envelope);
    const r = this.runtime(nodeId);
    const node = this.nodes.get(nodeId);
    if (node) node.lastSeenAt = entry.receivedAt;
    const data = isPlainObject(envelope) ? envelope.data : undefined;
    switch (event) {
      case 'node.register':
        this.onRegister(socket, nodeId, envelope);
        break;
      case 'telemetry.heartbeat':
        r.counters.heartbeats++;
        r.heartbeats.push({ seq: entry.seq, receivedAt: entry.receivedAt, data });
        if (r.heartbeats.length > 100) r.heartbeats.shift();
        if (node) {
          node.lastHeartbeat = entry.receivedAt;
          if (isPlainObject(data)) {
            for (const k of ['uptimeSeconds', 'cpuUsage', 'ramUsage']) if (data[k] !== undefined) node[k] = data[k];
            if (typeof data.status === 'string') this.setStatus(node, data.status);
          }
          this.touch(node);
        }
        this.log.debug('heartbeat from %s', nodeId);
        break;
      case 'telemetry.metrics':
        r.counters.metrics++;
        r.metrics.push({ seq: entry.seq, receivedAt: entry.receivedAt, data });
        if (r.metrics.length > 100) r.metrics.shift();
        if (node) {
          node.lastMetricsAt = entry.receivedAt;
          this.touch(node);
        }
        this.log.debug('metrics from %s', nodeId);
        break;
      case 'command.ack':
      case 'command.result':
        if (!isPlainObject(data)) {
          // What NestJS emits when the gateway handler throws on a body without data.
          socket.emit('exception', {
            status: 'error',
            message: 'Internal server error',
            cause: { pattern: event, data: envelope },
          });
          this.log.warn('node %s: %s without data', nodeId, event);
        }
        this.recordReply(nodeId, socket, event === 'command.ack' ? 'ack' : 'result', envelope, entry);
        this.log.info('node %s: %s for %s%s', nodeId, event, isPlainObject(data) ? data.originalMessageId : '?',
          event === 'command.result' && isPlainObject(data) ? ` status=${data.status}` : '');
        break;
      default:
        this.log.info('node %s: event %s', nodeId, event);
        break;
    }
    this.notify();
  }

  onRegister(socket, nodeId, envelope) {
    const r = this.runtime(nodeId);
    const node = this.nodes.get(nodeId);
    const data = isPlainObject(envelope) && isPlainObject(envelope.data) ? envelope.data : {};
    const stall = this.takeFault(
      (x) => x.mode === 'stall' && x.phase === 'register' && (!x.nodeId || x.nodeId === nodeId),
    );
    if (stall) {
      this.log.info('node %s: node.register not answered (stall fault)', nodeId);
      return;
    }
    const fails = r.registerFails !== null ? r.registerFails : this.cfg.registerFails;
    if (fails) {
      r.counters.registrationFailures++;
      const os = data.os === undefined ? undefined : data.os;
      const message = `Cast to string failed for value "${mongooseInspect(os)}" (type ${os === null ? 'null' : Array.isArray(os) ? 'Array' : typeof os === 'object' ? 'Object' : typeof os}) at path "os"`;
      socket.emit('error', { type: 'error', error: { code: 'REGISTRATION_FAILED', message } });
      this.log.info('node %s: registration refused (REGISTRATION_FAILED mode)', nodeId);
      return;
    }
    if (node) {
      node.registration = data;
      for (const k of [
        'hostname', 'ipAddress', 'publicIpAddress', 'os', 'cpuCores', 'cpuModel', 'ramTotal', 'diskTotal',
        'gpuDevices', 'daemonVersion', 'uptimeSeconds', 'containerRuntime',
      ]) {
        if (data[k] !== undefined) node[k] = data[k];
      }
      this.setStatus(node, 'installing');
      node.lastSeenAt = common.isoNow();
    }
    r.counters.registrations++;
    r.registeredSocketId = socket.id;
    let pending = [];
    if (this.cfg.pendingDelivery === 'ack' || this.cfg.pendingDelivery === 'both') {
      pending = r.queue;
      r.queue = [];
      for (const env of pending) this.markSent(nodeId, r.commands.get(env.messageId));
      this.scheduleSave();
    }
    const now = common.isoNow();
    socket.emit('register.ack', {
      type: 'register.ack',
      messageId: common.uuid(),
      timestamp: now,
      data: {
        status: 'success',
        nodeId,
        registeredAt: now,
        controllerInfo: {
          controllerId: CONTROLLER_ID,
          heartbeatInterval: this.cfg.heartbeatInterval,
          metricsInterval: this.cfg.metricsInterval,
          timezone: 'UTC',
        },
        pendingCommands: pending,
      },
    });
    this.log.info('node %s registered (%d pending command(s))', nodeId, pending.length);
    this.fireFaults('register', socket.conn, nodeId);
  }

  kickNode(nodeId, reason) {
    const r = this.runtime(nodeId);
    const n = r.sockets.size;
    for (const s of [...r.sockets.values()]) {
      r.counters.kicks++;
      s.disconnect(true);
    }
    if (n) this.log.info('node %s kicked (%s)', nodeId, reason);
    return n;
  }

  // ------------------------------------------------------------ views

  nodeSummary(node) {
    const r = this.runtime(node._id);
    return {
      _id: node._id,
      name: node.name,
      role: node.role,
      status: node.status,
      deleted: !!node.deleted,
      connected: !!r.current,
      registered: !!(r.current && r.registeredSocketId === r.current.id),
      socketCount: r.sockets.size,
      socketId: r.current ? r.current.id : null,
      lastHeartbeat: node.lastHeartbeat || null,
      lastMetricsAt: node.lastMetricsAt || null,
      lastSeenAt: node.lastSeenAt || null,
      queuedCommands: r.queue.length,
      registerFails: r.registerFails,
      counters: { ...r.counters },
      lastSeq: r.seq,
    };
  }

  nodeDetail(node) {
    const r = this.runtime(node._id);
    return {
      ...this.nodeSummary(node),
      node,
      lastHeartbeatData: r.heartbeats.length ? r.heartbeats[r.heartbeats.length - 1] : null,
      lastMetricsData: r.metrics.length ? r.metrics[r.metrics.length - 1] : null,
      heartbeats: r.heartbeats.slice(-10),
      connections: r.connLog.slice(-20),
      queue: r.queue.map((e) => ({ type: e.type, messageId: e.messageId })),
    };
  }

  commandView(rec) {
    return {
      messageId: rec.messageId,
      nodeId: rec.nodeId,
      type: rec.type,
      state: rec.state,
      unknown: rec.unknown,
      createdAt: rec.createdAt,
      sentCount: rec.sentAt.length,
      sentAt: rec.sentAt,
      envelope: rec.envelope,
      acks: rec.acks,
      results: rec.results,
      duplicates: rec.acks.length > 1 || rec.results.length > 1,
    };
  }

  statsView() {
    let connected = 0;
    for (const r of this.rt.values()) if (r.current) connected++;
    return {
      uptimeMs: Date.now() - this.startedAt,
      port: this.port,
      url: this.wsUrl(),
      nodes: [...this.nodes.values()].filter((n) => !n.deleted).length,
      connectedNodes: connected,
      engineClients: this.io ? this.io.engine.clientsCount : 0,
      namespaceSockets: this.io ? this.io.of(NAMESPACE).sockets.size : 0,
      stalledConnections: this.stalled.size,
      ...this.stats,
      faults: this.faults.map((f) => this.faultView(f)),
      config: this.configView(),
    };
  }

  configView() {
    const c = this.cfg;
    return {
      host: c.host,
      port: this.port,
      tls: !!c.tlsCert,
      pingInterval: c.pingInterval,
      pingTimeout: c.pingTimeout,
      maxPayload: c.maxPayload,
      connectTimeout: c.connectTimeout,
      heartbeatInterval: c.heartbeatInterval,
      metricsInterval: c.metricsInterval,
      autoCreateNodes: c.autoCreateNodes,
      registerFails: c.registerFails,
      pendingDelivery: c.pendingDelivery,
      noAuth: c.noAuth,
      stateFile: c.stateFile,
      maxLog: c.maxLog,
    };
  }

  updateConfig(body) {
    if (!isPlainObject(body)) throw new HttpError(400, 'body must be a JSON object');
    const nums = ['heartbeatInterval', 'metricsInterval', 'maxLog'];
    const bools = ['autoCreateNodes', 'registerFails', 'noAuth'];
    const engineNums = { pingInterval: 'pingInterval', pingTimeout: 'pingTimeout', maxPayload: 'maxHttpBufferSize' };
    for (const [k, v] of Object.entries(body)) {
      if (nums.includes(k) || k in engineNums) {
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new HttpError(400, `${k} must be a number >= 0`);
        this.cfg[k] = v;
        if (k in engineNums) this.io.engine.opts[engineNums[k]] = v; // pings: at the next schedule
        if (k === 'maxPayload' && this.io.engine.ws) this.io.engine.ws.options.maxPayload = v; // new sessions
      } else if (bools.includes(k)) {
        if (typeof v !== 'boolean') throw new HttpError(400, `${k} must be a boolean`);
        this.cfg[k] = v;
      } else if (k === 'pendingDelivery') {
        if (!['ack', 'events', 'both'].includes(v)) throw new HttpError(400, 'pendingDelivery must be ack, events or both');
        this.cfg[k] = v;
      } else if (k === 'connectTimeout') {
        if (typeof v !== 'number' || v <= 0) throw new HttpError(400, 'connectTimeout must be a number > 0');
        this.cfg.connectTimeout = v;
        this.io.connectTimeout(v);
      } else {
        throw new HttpError(400, `unknown config key ${k}`);
      }
    }
    this.log.info('config updated: %j', body);
    return this.configView();
  }

  reset(body) {
    const all = isPlainObject(body) && body.nodes === true;
    this.clearFaults();
    this.stats = this.freshStats();
    for (const [id, r] of this.rt) {
      if (all) this.kickNode(id, 'reset');
      r.log = [];
      r.seq = all ? 0 : r.seq; // keep sequence monotonic for live nodes
      r.heartbeats = [];
      r.metrics = [];
      r.commands = new Map();
      r.queue = [];
      r.connLog = [];
      r.counters = this.freshCounters();
      r.registerFails = null;
    }
    if (all) {
      this.nodes.clear();
      this.rt.clear();
    }
    this.scheduleSave();
    this.notify();
    this.log.info('state reset%s', all ? ' (nodes too)' : '');
    return { reset: true, nodes: all };
  }

  // ------------------------------------------------------------ HTTP

  async handleHttp(req, res) {
    this.stats.httpRequests++;
    const url = new URL(req.url, 'http://x');
    const send = (status, obj) => {
      const body = JSON.stringify(obj);
      res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    };
    try {
      if (req.method === 'GET' && (url.pathname === '/health' || url.pathname === '/healthz')) {
        send(200, { status: 'ok', port: this.port });
        return;
      }
      const auth = req.headers.authorization || '';
      const m = /^Bearer\s+(.+)$/i.exec(auth);
      const given = m ? Buffer.from(m[1].trim()) : Buffer.alloc(0);
      const want = Buffer.from(this.cfg.adminToken);
      if (given.length !== want.length || !crypto.timingSafeEqual(given, want)) {
        send(401, { statusCode: 401, message: 'Unauthorized' });
        return;
      }
      const body = await this.readBody(req);
      const [status, out] = await this.route(req.method, url, body);
      send(status, out);
    } catch (e) {
      if (e instanceof HttpError) {
        send(e.status, { statusCode: e.status, message: e.message, ...(e.extra || {}) });
      } else {
        this.log.error('HTTP %s %s failed: %s', req.method, req.url, e.stack);
        send(500, { statusCode: 500, message: 'Internal server error' });
      }
    }
  }

  readBody(req) {
    return new Promise((resolve, reject) => {
      const chunks = [];
      let size = 0;
      req.on('data', (c) => {
        size += c.length;
        if (size > MAX_BODY) {
          reject(new HttpError(413, 'body too large'));
          req.destroy();
          return;
        }
        chunks.push(c);
      });
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (!text.trim()) return resolve(undefined);
        try {
          return resolve(JSON.parse(text));
        } catch {
          return reject(new HttpError(400, 'body is not valid JSON'));
        }
      });
      req.on('error', reject);
    });
  }

  async route(method, url, body) {
    const p = url.pathname.replace(/\/+$/, '') || '/';
    const q = url.searchParams;
    let m;
    // ---- provisioning REST, with and without /api prefix
    if ((m = /^(?:\/api)?\/nodes$/.exec(p))) {
      if (method === 'POST') return [201, this.createNode(body)];
      if (method === 'GET') return [200, [...this.nodes.values()].filter((n) => !n.deleted)];
    }
    if ((m = /^(?:\/api)?\/nodes\/([^/]+)\/token$/.exec(p)) && method === 'POST') {
      return [201, this.mintForNode(m[1], isPlainObject(body) ? body.expiresIn : undefined)];
    }
    if ((m = /^(?:\/api)?\/nodes\/([^/]+)$/.exec(p))) {
      const node = this.getNode(m[1]);
      if (method === 'GET') return [200, node];
      if (method === 'PATCH') return [200, this.patchNode(node, body)];
      if (method === 'DELETE') {
        this.kickNode(node._id, 'deleted');
        node.deleted = true;
        this.touch(node);
        return [200, node];
      }
    }
    // ---- admin/test API
    if (p === '/admin/nodes') {
      if (method === 'GET') {
        return [200, [...this.nodes.values()].filter((n) => !n.deleted || q.get('deleted')).map((n) => this.nodeSummary(n))];
      }
      if (method === 'POST') return [201, this.createNode(body)];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)$/.exec(p))) {
      const node = this.getNode(m[1], { allowDeleted: true });
      if (method === 'GET') return [200, this.nodeDetail(node)];
      if (method === 'PATCH') {
        this.patchNode(node, body);
        return [200, this.nodeDetail(node)];
      }
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/wait$/.exec(p)) && method === 'GET') {
      const id = m[1];
      this.getNode(id, { allowDeleted: true });
      const want = q.get('state') || 'connected';
      const r = this.runtime(id);
      const preds = {
        connected: () => !!r.current,
        disconnected: () => !r.current && r.sockets.size === 0,
        registered: () => !!(r.current && r.registeredSocketId === r.current.id),
      };
      if (!preds[want]) throw new HttpError(400, 'state must be connected, disconnected or registered');
      const ok = await this.waitFor(preds[want], clampWait(q.get('timeout') ?? 10000));
      return [ok ? 200 : 408, { state: want, reached: !!ok, node: this.nodeSummary(this.getNode(id, { allowDeleted: true })) }];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/commands$/.exec(p))) {
      const id = m[1];
      this.getNode(id);
      if (method === 'POST') {
        const out = this.sendCommand(id, body);
        return [201, out];
      }
      if (method === 'GET') return [200, [...this.runtime(id).commands.values()].map((c) => this.commandView(c))];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/commands\/([^/]+)$/.exec(p)) && method === 'GET') {
      const [, id, mid] = m;
      this.getNode(id, { allowDeleted: true });
      const r = this.runtime(id);
      const forWhat = q.get('for') || 'result';
      const wait = clampWait(q.get('wait'));
      const pred = () => {
        const c = r.commands.get(mid);
        if (!c) return false;
        return forWhat === 'ack' ? c.acks.length > 0 : c.results.length > 0;
      };
      await this.waitFor(pred, wait);
      const rec = r.commands.get(mid);
      if (!rec) throw new HttpError(404, `command ${mid} not found`);
      return [200, { ...this.commandView(rec), complete: !!pred() }];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/commands\/([^/]+)\/resend$/.exec(p)) && method === 'POST') {
      const [, id, mid] = m;
      this.getNode(id);
      const rec = this.runtime(id).commands.get(mid);
      if (!rec || !rec.envelope) throw new HttpError(404, `command ${mid} not found`);
      const delivered = this.deliver(id, rec.envelope, { queue: isPlainObject(body) && !!body.queue });
      this.notify();
      return [200, { messageId: mid, delivered }];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/(events|messages)$/.exec(p)) && method === 'GET') {
      const [, id, which] = m;
      this.getNode(id, { allowDeleted: true });
      const r = this.runtime(id);
      const types = q.get('type') ? q.get('type').split(',') : null;
      const since = Number(q.get('since') || 0);
      const limit = Number(q.get('limit') || 0);
      const select = () => r.log.filter((e) => e.seq > since && (!types || types.includes(e.type)));
      const min = Number(q.get('min') || 1);
      await this.waitFor(() => select().length >= min, clampWait(q.get('wait')));
      let list = select();
      if (limit > 0) list = list.slice(0, limit);
      return [200, { nodeId: id, lastSeq: r.seq, count: list.length, [which]: list }];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/connections$/.exec(p)) && method === 'GET') {
      this.getNode(m[1], { allowDeleted: true });
      return [200, this.runtime(m[1]).connLog];
    }
    if ((m = /^\/admin\/nodes\/([^/]+)\/kick$/.exec(p)) && method === 'POST') {
      this.getNode(m[1], { allowDeleted: true });
      return [200, { kicked: this.kickNode(m[1], 'admin') }];
    }
    if (p === '/admin/faults') {
      if (method === 'POST') return [201, this.addFault(body)];
      if (method === 'GET') return [200, this.faults.map((f) => this.faultView(f))];
      if (method === 'DELETE') return [200, { cleared: this.clearFaults() }];
    }
    if ((m = /^\/admin\/faults\/(\d+)$/.exec(p)) && method === 'DELETE') {
      return [200, this.removeFault(Number(m[1]))];
    }
    if (p === '/admin/stats' && method === 'GET') return [200, this.statsView()];
    if (p === '/admin/config') {
      if (method === 'GET') return [200, this.configView()];
      if (method === 'POST' || method === 'PATCH') return [200, this.updateConfig(body)];
    }
    if (p === '/admin/reset' && method === 'POST') return [200, this.reset(body)];
    if (p === '/admin/tokens' && method === 'POST') {
      const b = isPlainObject(body) ? body : {};
      const t = common.mintToken({
        sub: b.sub,
        secret: b.secret || this.cfg.jwtSecret,
        expiresIn: b.expiresIn,
        notBefore: b.notBefore,
        alg: b.alg,
      });
      return [201, { token: t.token, sub: t.sub, claims: t.claims }];
    }
    throw new HttpError(404, `Cannot ${method} ${url.pathname}`);
  }

  patchNode(node, body) {
    if (!isPlainObject(body)) throw new HttpError(400, 'body must be a JSON object');
    if (body.name !== undefined) node.name = String(body.name);
    if (body.role !== undefined) node.role = Array.isArray(body.role) ? body.role : [String(body.role)];
    if (body.registerFails !== undefined) {
      this.runtime(node._id).registerFails = body.registerFails === null ? null : !!body.registerFails;
    }
    if (body.status !== undefined) {
      const status = String(body.status);
      // Disabling kicks the live socket first (so its disconnect does not
      // overwrite the new status), unless {kick:false}.
      if (DISABLED_STATUSES.has(status) && body.kick !== false) this.kickNode(node._id, `status ${status}`);
      this.setStatus(node, status, { force: true });
      this.log.info('node %s status set to %s', node._id, status);
    }
    this.touch(node);
    return node;
  }

  // ------------------------------------------------------------ lifecycle

  async start() {
    this.loadState();
    for (const spec of this.cfg.seedNodes) {
      const [id, name] = spec.split(':');
      if (!common.isObjectId(id)) throw new Error(`--seed-node: ${id} is not a 24-hex id`);
      if (!this.nodes.has(id)) this.createNode({ _id: id, name: name || `node-${id.slice(-6)}`, role: ['worker'] }, { createdBy: 'seed' });
    }
    const handler = (req, res) => {
      this.handleHttp(req, res);
    };
    let server;
    if (this.cfg.tlsCert) {
      server = https.createServer({ cert: fs.readFileSync(this.cfg.tlsCert), key: fs.readFileSync(this.cfg.tlsKey) }, handler);
      server.on('tlsClientError', (e) => this.log.debug('TLS client error: %s', e.message));
    } else {
      server = http.createServer(handler);
    }
    this.server = server;
    this.attachSocketIo(server);
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.cfg.port, this.cfg.host, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    this.port = server.address().port;
    return this.port;
  }

  async stop() {
    this.clearFaults();
    this.saveState();
    if (!this.io) return;
    await new Promise((resolve) => {
      this.io.close(() => resolve());
      setTimeout(resolve, 2000).unref();
    });
  }
}

// ---------------------------------------------------------------- CLI

const USAGE = `usage: server.js [options]            start the controller
       server.js mint-token [SUB] [--exp S] [--nbf S] [--secret X] [--alg HS256] [--iat T] [--no-exp] [--json]

options (env in brackets; see README.md):
  --host H [HOST=127.0.0.1]   --port N [PORT=3003, 0 = free port]   --port-file PATH
  --tls-cert F --tls-key F [TLS_CERT, TLS_KEY]
  --jwt-secret S [JWT_SECRET=test-secret]   --admin-token T [ADMIN_TOKEN=admin-token]
  --ping-interval MS [PING_INTERVAL=25000]  --ping-timeout MS [PING_TIMEOUT=20000]
  --max-payload B [MAX_PAYLOAD=1000000]     --connect-timeout MS [CONNECT_TIMEOUT=45000]
  --heartbeat-interval MS [HEARTBEAT_INTERVAL=30000] --metrics-interval MS [METRICS_INTERVAL=60000]
  --auto-create-nodes [AUTO_CREATE_NODES]   --register-fails [REGISTER_FAILS]
  --pending-delivery ack|events|both [PENDING_DELIVERY=ack]   --no-auth [NO_AUTH]
  --state FILE [STATE_FILE]   --seed-node ID[:NAME] (repeatable) [SEED_NODES=id,id]
  --log-level debug|info|warn|error|silent [LOG_LEVEL=info]  --quiet  --verbose
  --max-log N [MAX_LOG=5000]  --public-url URL [PUBLIC_URL]
`;

function mintTokenCli(argv) {
  const { opts, positional } = common.parseArgs(argv, {
    exp: 'string',
    nbf: 'number',
    secret: 'string',
    alg: 'string',
    iat: 'number',
    type: 'string',
    json: 'bool',
    'no-exp': 'bool',
  });
  let expiresIn;
  if (opts.exp !== undefined) {
    if (/^(none|never)$/i.test(opts.exp)) expiresIn = null;
    else {
      expiresIn = Number(opts.exp);
      if (!Number.isFinite(expiresIn)) throw new Error('--exp needs seconds or "none"');
    }
  }
  if (opts['no-exp']) expiresIn = null;
  const t = common.mintToken({
    sub: positional[0],
    secret: opts.secret || process.env.JWT_SECRET || common.DEFAULT_SECRET,
    expiresIn,
    notBefore: opts.nbf,
    alg: opts.alg,
    iat: opts.iat,
    type: opts.type,
  });
  if (opts.json) process.stdout.write(`${JSON.stringify({ token: t.token, sub: t.sub, claims: t.claims })}\n`);
  else process.stdout.write(`${t.token}\n`);
}

async function main() {
  const argv = process.argv.slice(2);
  if (argv[0] === 'mint-token') {
    mintTokenCli(argv.slice(1));
    return;
  }
  let cfg;
  try {
    cfg = loadConfig(argv, process.env);
  } catch (e) {
    process.stderr.write(`server.js: ${e.message}\n${USAGE}`);
    process.exit(2);
  }
  if (cfg.help) {
    process.stdout.write(USAGE);
    return;
  }
  const ctl = new Controller(cfg);
  let port;
  try {
    port = await ctl.start();
  } catch (e) {
    ctl.log.error('cannot start: %s', e.message);
    process.exit(1);
  }
  const line = `LISTENING ${port}`;
  if (cfg.portFile) {
    const tmp = `${cfg.portFile}.tmp-${process.pid}`;
    fs.writeFileSync(tmp, `${port}\n`);
    fs.renameSync(tmp, cfg.portFile);
  }
  process.stdout.write(`${line}\n`);
  ctl.log.info('listening on %s://%s:%d (namespace %s, auth %s, auto-create %s, pending delivery %s)',
    cfg.tlsCert ? 'https' : 'http', cfg.host, port, NAMESPACE, cfg.noAuth ? 'OFF' : 'jwt',
    cfg.autoCreateNodes ? 'on' : 'off', cfg.pendingDelivery);

  let stopping = false;
  const shutdown = async (sig) => {
    if (stopping) return;
    stopping = true;
    ctl.log.info('%s: shutting down', sig);
    setTimeout(() => process.exit(0), 3000).unref();
    await ctl.stop();
    process.exit(0);
  };
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`server.js: ${e.stack}\n`);
    process.exit(1);
  });
}

module.exports = { Controller, loadConfig, NAMESPACE };
