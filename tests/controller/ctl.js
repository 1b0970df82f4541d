#!/usr/bin/env node
'use strict';
// Shell helper for the test controller: mint tokens offline, provision nodes,
// send commands and wait for their results, inject faults. Prints JSON (one
// line) on stdout; diagnostics on stderr. See README.md.

const common = require('./lib/common');

const USAGE = `usage: ctl.js COMMAND [options]

offline:
  mint-token [SUB] [--exp S|none] [--nbf S] [--secret X] [--alg HS256] [--iat T] [--json]
      print a node token (HS256, claims sub/type/nodeId/iat/exp; random 24-hex SUB if omitted)
  new-id                            print a fresh 24-hex node id

against a running controller (common: --url URL [CONTROLLER_URL, default http://127.0.0.1:3003]
  --admin-token T [ADMIN_TOKEN, default admin-token] --cacert PEM --insecure --timeout S):
  create-node --name N [--role R]... [--id HEX] [--status S]    print the node (or --id-only)
  token --node ID [--expires-in S] [--json]  print the token (--json: the whole 201 answer)
  send --node ID --type T [--data JSON] [--resource JSON] [--metadata JSON] [--message-id M]
       [--execution] [--step-index N] [--cmd-timeout S] [--queue] [--wait S] [--print data|envelope|record]
      send a command; with --wait print the first command.result envelope
      exit 0 result success, 2 result error, 3 no result in time, 1 other failure
  result --node ID --message-id M [--wait S] [--for ack|result]      print the command record
  wait --node ID [--state connected|disconnected|registered] [--wait S]    exit 0 if reached, 3 if not
  events --node ID [--type T[,T]] [--since N] [--wait S] [--min N]   print {lastSeq, events}
  messages --node ID [--since N]
  nodes | node --node ID | stats | faults | kick --node ID | reset [--all]
  fault --mode M [--target new|current] [--node ID] [--at open|connect|register] [--count N]
        [--delay-ms N] [--phase P] [--params '{...extra mode parameters}']
  config [--set '{...}']                    show or change runtime settings
  api METHOD PATH [JSON]                     raw admin call
`;

const SPEC = {
  url: 'string',
  'admin-token': 'string',
  cacert: 'string',
  insecure: 'bool',
  timeout: 'number',
  node: 'string',
  name: 'string',
  role: 'list',
  id: 'string',
  'id-only': 'bool',
  status: 'string',
  'expires-in': 'number',
  type: 'string',
  data: 'string',
  resource: 'string',
  metadata: 'string',
  'message-id': 'string',
  execution: 'bool',
  'step-index': 'number',
  'cmd-timeout': 'number',
  queue: 'bool',
  wait: 'number',
  print: 'string',
  for: 'string',
  state: 'string',
  since: 'number',
  min: 'number',
  mode: 'string',
  target: 'string',
  at: 'string',
  count: 'number',
  'delay-ms': 'number',
  phase: 'string',
  json: 'bool',
  params: 'string',
  set: 'string',
  all: 'bool',
  // mint-token
  exp: 'string',
  nbf: 'number',
  secret: 'string',
  alg: 'string',
  iat: 'number',
  'no-exp': 'bool',
};

class Exit extends Error {
  constructor(code, msg) {
    super(msg);
    this.code = code;
  }
}

function parseJsonOpt(name, v) {
  if (v === undefined) return undefined;
  try {
    return JSON.parse(v);
  } catch (e) {
    throw new Exit(1, `--${name}: invalid JSON: ${e.message}`);
  }
}

function need(opts, name) {
  if (opts[name] === undefined) throw new Exit(1, `--${name} is required`);
  return opts[name];
}

function out(obj) {
  process.stdout.write(`${typeof obj === 'string' ? obj : JSON.stringify(obj)}\n`);
}

async function main() {
  const argv = process.argv.slice(2);
  const cmd = argv[0];
  if (!cmd || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  let parsed;
  try {
    parsed = common.parseArgs(argv.slice(1), SPEC);
  } catch (e) {
    throw new Exit(1, e.message);
  }
  const { opts, positional } = parsed;

  if (cmd === 'mint-token') {
    let expiresIn;
    if (opts.exp !== undefined) {
      if (/^(none|never)$/i.test(opts.exp)) expiresIn = null;
      else if (Number.isFinite(Number(opts.exp))) expiresIn = Number(opts.exp);
      else throw new Exit(1, '--exp needs seconds or "none"');
    }
    if (opts['no-exp']) expiresIn = null;
    const t = common.mintToken({
      sub: positional[0],
      secret: opts.secret || process.env.JWT_SECRET || common.DEFAULT_SECRET,
      expiresIn,
      notBefore: opts.nbf,
      alg: opts.alg,
      iat: opts.iat,
    });
    out(opts.json ? { token: t.token, sub: t.sub, claims: t.claims } : t.token);
    return 0;
  }
  if (cmd === 'new-id') {
    out(common.objectId());
    return 0;
  }

  const base = (opts.url || process.env.CONTROLLER_URL || 'http://127.0.0.1:3003').replace(/\/+$/, '');
  const token = opts['admin-token'] || process.env.ADMIN_TOKEN || common.DEFAULT_ADMIN_TOKEN;
  const httpTimeoutMs = (opts.timeout || 30) * 1000;
  const api = async (method, path, body, extraMs = 0) => {
    const res = await common.request(base + path, {
      method,
      body,
      token,
      ca: opts.cacert,
      insecure: opts.insecure,
      timeoutMs: httpTimeoutMs + extraMs,
    });
    if (res.status >= 400 && res.status !== 408) {
      throw new Exit(1, `${method} ${path}: HTTP ${res.status} ${res.text}`);
    }
    return res;
  };
  const nodePath = () => `/admin/nodes/${encodeURIComponent(need(opts, 'node'))}`;
  const waitMs = opts.wait !== undefined ? Math.round(opts.wait * 1000) : 0;

  switch (cmd) {
    case 'create-node': {
      const body = { name: need(opts, 'name'), role: opts.role && opts.role.length === 1 ? opts.role[0] : opts.role || 'worker' };
      if (opts.id) body._id = opts.id;
      if (opts.status) body.status = opts.status;
      const res = await api('POST', '/api/nodes', body);
      out(opts['id-only'] ? res.json._id : res.json);
      return 0;
    }
    case 'token': {
      const body = opts['expires-in'] !== undefined ? { expiresIn: opts['expires-in'] } : {};
      const res = await api('POST', `/api/nodes/${encodeURIComponent(need(opts, 'node'))}/token`, body);
      out(opts.json ? res.json : res.json.token);
      return 0;
    }
    case 'send': {
      const body = { type: need(opts, 'type') };
      const data = parseJsonOpt('data', opts.data);
      if (data !== undefined) body.data = data;
      const resource = parseJsonOpt('resource', opts.resource);
      if (resource !== undefined) body.resource = resource;
      const metadata = parseJsonOpt('metadata', opts.metadata);
      if (metadata !== undefined) body.metadata = metadata;
      if (opts['message-id']) body.messageId = opts['message-id'];
      if (opts.execution) body.execution = true;
      if (opts['step-index'] !== undefined) body.stepIndex = opts['step-index'];
      if (opts['cmd-timeout'] !== undefined) body.timeout = opts['cmd-timeout'];
      if (opts.queue) body.queue = true;
      const sent = await api('POST', `${nodePath()}/commands`, body);
      const mid = sent.json.messageId;
      process.stderr.write(`ctl: ${body.type} ${mid} ${sent.json.delivered}\n`);
      if (!waitMs) {
        out(sent.json);
        return 0;
      }
      const res = await api('GET', `${nodePath()}/commands/${mid}?for=result&wait=${waitMs}`, undefined, waitMs);
      const rec = res.json;
      if (!rec.results || !rec.results.length) {
        process.stderr.write(`ctl: no command.result for ${mid} within ${opts.wait}s (acks: ${rec.acks ? rec.acks.length : 0})\n`);
        if (opts.print === 'record') out(rec);
        return 3;
      }
      const env = rec.results[0].envelope;
      const how = opts.print || 'envelope';
      if (how === 'record') out(rec);
      else if (how === 'data') out(env && env.data);
      else out(env);
      return env && env.data && env.data.status === 'success' ? 0 : 2;
    }
    case 'result': {
      const mid = need(opts, 'message-id');
      const res = await api('GET', `${nodePath()}/commands/${mid}?for=${opts.for || 'result'}&wait=${waitMs}`, undefined, waitMs);
      out(res.json);
      return res.json.complete ? 0 : 3;
    }
    case 'wait': {
      const res = await api('GET', `${nodePath()}/wait?state=${opts.state || 'connected'}&timeout=${waitMs || 10000}`, undefined, waitMs || 10000);
      out(res.json);
      return res.json.reached ? 0 : 3;
    }
    case 'events':
    case 'messages': {
      const q = new URLSearchParams();
      if (opts.type) q.set('type', opts.type);
      if (opts.since !== undefined) q.set('since', String(opts.since));
      if (waitMs) q.set('wait', String(waitMs));
      if (opts.min !== undefined) q.set('min', String(opts.min));
      const res = await api('GET', `${nodePath()}/${cmd}?${q}`, undefined, waitMs);
      out(res.json);
      const list = res.json[cmd] || [];
      return waitMs && list.length < (opts.min || 1) ? 3 : 0;
    }
    case 'nodes':
      out((await api('GET', '/admin/nodes')).json);
      return 0;
    case 'node':
      out((await api('GET', nodePath())).json);
      return 0;
    case 'stats':
      out((await api('GET', '/admin/stats')).json);
      return 0;
    case 'faults':
      out((await api('GET', '/admin/faults')).json);
      return 0;
    case 'kick':
      out((await api('POST', `${nodePath()}/kick`, {})).json);
      return 0;
    case 'reset':
      out((await api('POST', '/admin/reset', { nodes: !!opts.all })).json);
      return 0;
    case 'fault': {
      const body = { ...(parseJsonOpt('params', opts.params) || {}) };
      body.mode = opts.mode || body.mode;
      if (!body.mode) throw new Exit(1, '--mode is required');
      if (opts.target) body.target = opts.target;
      if (opts.node) body.nodeId = opts.node;
      if (opts.at) body.at = opts.at;
      if (opts.count !== undefined) body.count = opts.count;
      if (opts['delay-ms'] !== undefined) body.delayMs = opts['delay-ms'];
      if (opts.phase) body.phase = opts.phase;
      out((await api('POST', '/admin/faults', body)).json);
      return 0;
    }
    case 'config': {
      const body = parseJsonOpt('set', opts.set);
      out((await api(body ? 'POST' : 'GET', '/admin/config', body)).json);
      return 0;
    }
    case 'api': {
      const [method, path, json] = positional;
      if (!method || !path) throw new Exit(1, 'usage: ctl.js api METHOD PATH [JSON]');
      const res = await common.request(base + path, {
        method: method.toUpperCase(),
        body: json !== undefined ? parseJsonOpt('body', json) : undefined,
        token,
        ca: opts.cacert,
        insecure: opts.insecure,
        timeoutMs: httpTimeoutMs,
      });
      out(res.json !== undefined ? res.json : res.text);
      return res.status < 400 ? 0 : 1;
    }
    default:
      throw new Exit(1, `unknown command ${cmd}\n${USAGE}`);
  }
}

main().then(
  // Exit once stdout is drained: process.exit() right after a write to a
  // pipe cuts the output at 64 KiB.
  (code) => process.stdout.write('', () => process.exit(code)),
  (e) => {
    process.stderr.write(`ctl: ${e instanceof Exit ? e.message : e.stack}\n`);
    process.exit(e instanceof Exit ? e.code : 1);
  },
);
