'use strict';
// Helpers shared by server.js, ctl.js and selftest.js: ids, tokens, argument
// parsing, a tiny HTTP(S) JSON client. No dependency beyond jsonwebtoken.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const jwt = require('jsonwebtoken');

const DEFAULT_SECRET = 'test-secret';
const DEFAULT_ADMIN_TOKEN = 'admin-token';
const DEFAULT_TOKEN_LIFETIME_S = 31536000;

let oidCounter = crypto.randomBytes(3).readUIntBE(0, 3);
const oidProcess = crypto.randomBytes(5).toString('hex');

/** A MongoDB-ObjectId-like id: 24 lowercase hex digits (time, random, counter). */
function objectId() {
  const t = Math.floor(Date.now() / 1000).toString(16).padStart(8, '0').slice(-8);
  oidCounter = (oidCounter + 1) & 0xffffff;
  return t + oidProcess + oidCounter.toString(16).padStart(6, '0');
}

function isObjectId(s) {
  return typeof s === 'string' && /^[0-9a-f]{24}$/.test(s);
}

function uuid() {
  return crypto.randomUUID();
}

function isoNow() {
  return new Date().toISOString();
}

/**
 * Mint a node token exactly like the controller: HS256, claims
 * {sub, type:"node", nodeId, iat, exp}.
 * opts: sub, secret, expiresIn (s, may be negative: already expired; null: no exp),
 *       notBefore (s from now), alg, iat (unix s), extra (object merged into claims)
 */
function mintToken(opts = {}) {
  const sub = opts.sub || objectId();
  const claims = { sub, type: opts.type || 'node', nodeId: sub, ...(opts.extra || {}) };
  const now = opts.iat != null ? Number(opts.iat) : Math.floor(Date.now() / 1000);
  claims.iat = now;
  const expiresIn = opts.expiresIn === undefined ? DEFAULT_TOKEN_LIFETIME_S : opts.expiresIn;
  if (expiresIn !== null) claims.exp = now + Number(expiresIn);
  if (opts.notBefore != null) claims.nbf = now + Number(opts.notBefore);
  const alg = opts.alg || 'HS256';
  // Claims are built here (sign() keeps a given iat and exp), which allows
  // negative lifetimes and keeps the key order sub,type,nodeId,iat,exp.
  const token = jwt.sign(claims, opts.secret || DEFAULT_SECRET, { algorithm: alg });
  return { token, sub, claims };
}

/** Show a token in logs without revealing it. */
function redact(token) {
  if (typeof token !== 'string') return String(token);
  if (token.length <= 12) return `***(${token.length})`;
  return `${token.slice(0, 8)}…(${token.length} chars)`;
}

/**
 * Minimal argv parser. spec: {name: 'string'|'number'|'bool'|'list'}; aliases via
 * spec key 'a|alias'. Returns {opts, positional}. Unknown flags throw.
 * Accepts --flag value, --flag=value, --no-flag for bools.
 */
function parseArgs(argv, spec) {
  const types = {};
  const canon = {};
  for (const k of Object.keys(spec)) {
    const names = k.split('|');
    for (const n of names) {
      canon[n] = names[0];
    }
    types[names[0]] = spec[k];
  }
  const opts = {};
  const positional = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith('--') || a === '-') {
      positional.push(a);
      continue;
    }
    let name = a.slice(2);
    let value;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      value = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    let negate = false;
    if (!(name in canon) && name.startsWith('no-') && canon[name.slice(3)] && types[canon[name.slice(3)]] === 'bool') {
      negate = true;
      name = name.slice(3);
    }
    const key = canon[name];
    if (!key) throw new Error(`unknown option --${name}`);
    const type = types[key];
    if (type === 'bool') {
      if (value === undefined) opts[key] = !negate;
      else opts[key] = !/^(0|false|no|off)$/i.test(value);
      continue;
    }
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new Error(`option --${name} needs a value`);
      value = argv[++i];
    }
    if (type === 'number') {
      const n = Number(value);
      if (!Number.isFinite(n)) throw new Error(`option --${name}: not a number: ${value}`);
      opts[key] = n;
    } else if (type === 'list') {
      (opts[key] = opts[key] || []).push(value);
    } else {
      opts[key] = value;
    }
  }
  return { opts, positional };
}

function envBool(v) {
  if (v === undefined || v === '') return undefined;
  return !/^(0|false|no|off)$/i.test(v);
}

function envNum(v) {
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`not a number: ${v}`);
  return n;
}

/**
 * JSON over HTTP(S). Resolves {status, headers, text, json}. opts: method, body
 * (object → JSON), headers, token (admin bearer), ca (PEM path), insecure, timeoutMs.
 */
function request(url, opts = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === 'https:' ? https : http;
    const headers = { Accept: 'application/json', ...(opts.headers || {}) };
    let payload;
    if (opts.body !== undefined) {
      payload = Buffer.from(typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
      headers['Content-Type'] = 'application/json';
      headers['Content-Length'] = payload.length;
    }
    if (opts.token) headers.Authorization = `Bearer ${opts.token}`;
    const reqOpts = { method: opts.method || 'GET', headers };
    if (u.protocol === 'https:') {
      if (opts.ca) reqOpts.ca = fs.readFileSync(opts.ca);
      if (opts.insecure) reqOpts.rejectUnauthorized = false;
    }
    const req = mod.request(u, reqOpts, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = text ? JSON.parse(text) : undefined;
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.timeoutMs) {
      req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`timeout after ${opts.timeoutMs} ms`)));
    }
    if (payload) req.write(payload);
    req.end();
  });
}

module.exports = {
  DEFAULT_SECRET,
  DEFAULT_ADMIN_TOKEN,
  DEFAULT_TOKEN_LIFETIME_S,
  objectId,
  isObjectId,
  uuid,
  isoNow,
  mintToken,
  redact,
  parseArgs,
  envBool,
  envNum,
  request,
};
