#!/usr/bin/env node
// soak-report.js [--no-memory] CSV [SUMMARY_JSON]: the verdict of
// bench/soak.sh, usable on a kept CSV by hand. Exit 0 pass, 1 fail, 2
// unusable input. --no-memory (sanitizer builds): memory growth is printed,
// not judged.
//
// CSV columns (one row a second): t,vmrss_kb,rssanon_kb,fds,threads,cpu_ticks
// [,heartbeats,results]. SUMMARY_JSON (optional): the controller's counters
// at the end, {heartbeats, metrics, commandsSent, results, connections, drops,
// ticksPerSecond}.
//
// Windows, proportional to the run (D seconds): warm-up ends at
// max(30 s, D/10); the baseline is the W = max(10 s, D/10) seconds after it
// and the end window the last W seconds. For a 10-minute run that is the
// second minute against the last minute.
//   - memory: the median of RssAnon (private memory) and of VmRSS in the end
//     window must be under 1 % above the baseline median;
//   - descriptors and threads: the steady state (median of the end window)
//     equals the baseline's, and no sample after warm-up is more than 2
//     above it (a reconnect in progress holds one or two more for a moment).
//   - the load was real: with a summary, at least half the expected
//     heartbeats (10 ms interval), results for 90 % of the commands sent and
//     one reconnect per drop.
'use strict';
const fs = require('fs');

const args = process.argv.slice(2);
const noMemory = args[0] === '--no-memory';
if (noMemory) args.shift();
const [csvPath, sumPath] = args;
if (!csvPath) {
  console.error('usage: soak-report.js [--no-memory] CSV [SUMMARY_JSON]');
  process.exit(2);
}
const lines = fs.readFileSync(csvPath, 'utf8').trim().split('\n');
const head = lines.shift().split(',');
const col = (name) => head.indexOf(name);
const rows = lines.map((l) => l.split(',').map(Number)).filter((r) => r.every(Number.isFinite));
const D = rows.length ? rows[rows.length - 1][col('t')] : 0;
if (rows.length < 20 || D < 20) {
  console.error(`soak-report: ${rows.length} samples, need at least 20`);
  process.exit(2);
}
const sum = sumPath && fs.existsSync(sumPath) ? JSON.parse(fs.readFileSync(sumPath, 'utf8')) : null;

const warm = Math.max(30, Math.round(D / 10));
const W = Math.max(10, Math.round(D / 10));
if (warm + 2 * W > D) {
  console.error(`soak-report: a ${D} s run is too short for a ${warm} s warm-up and two ${W} s windows (need ${warm + 2 * W} s)`);
  process.exit(2);
}
const at = (r, name) => r[col(name)];
const base = rows.filter((r) => at(r, 't') > warm && at(r, 't') <= warm + W);
const end = rows.filter((r) => at(r, 't') > D - W);
const steady = rows.filter((r) => at(r, 't') > warm);
const med = (a) => {
  const s = [...a].sort((x, y) => x - y);
  const n = s.length;
  return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
};
const series = (rs, name) => rs.map((r) => at(r, name));

const results = [];
const check = (ok, what) => {
  results.push(ok);
  console.log(`${ok ? 'ok' : 'not ok'} - ${what}`);
};
const pct = (a, b) => ((b - a) / a) * 100;

console.log(`# soak: ${D} s, warm-up ${warm} s, baseline t=${warm}..${warm + W} s, end t=${D - W}..${D} s`);
for (const [name, label] of [['rssanon_kb', 'RssAnon'], ['vmrss_kb', 'VmRSS']]) {
  const b = med(series(base, name)), e = med(series(end, name));
  const g = pct(b, e);
  const peak = Math.max(...series(steady, name));
  const line = `${label} ${b} kB -> ${e} kB (${g >= 0 ? '+' : ''}${g.toFixed(2)} %, peak ${peak} kB after warm-up; limit +1 %)`;
  if (noMemory) console.log(`# ${line} (not judged: sanitizer build)`);
  else check(g < 1, line);
}
for (const [name, label] of [['fds', 'descriptors'], ['threads', 'threads']]) {
  const b = med(series(base, name)), e = med(series(end, name));
  const mx = Math.max(...series(steady, name));
  check(e === b && mx <= b + 2, `${label} steady ${b} -> ${e} (max ${mx} after warm-up; allowed +2 during a reconnect)`);
}

const hz = (sum && sum.ticksPerSecond) || 100;
const cpuS = (at(rows[rows.length - 1], 'cpu_ticks') - at(rows[0], 'cpu_ticks')) / hz;
const span = at(rows[rows.length - 1], 't') - at(rows[0], 't');
let cpuLine = `CPU ${cpuS.toFixed(2)} s in ${span} s (${((cpuS / span) * 100).toFixed(1)} % of one core)`;
if (sum) {
  const msgs = sum.heartbeats + sum.metrics + sum.results;
  cpuLine += `, ${((cpuS * 1000) / Math.max(1, msgs)).toFixed(3)} ms per message sent`;
  console.log(`# controller: ${sum.heartbeats} heartbeats, ${sum.metrics} metrics, ${sum.commandsSent} commands sent, ` +
    `${sum.results} results, ${sum.connections} connections, ${sum.drops} drops`);
  check(sum.heartbeats >= D * 50, `heartbeats kept up: ${sum.heartbeats} in ${D} s (>= half of one per 10 ms)`);
  check(sum.results >= 0.9 * sum.commandsSent, `commands answered: ${sum.results} results for ${sum.commandsSent} commands (>= 90 %)`);
  check(sum.connections >= sum.drops + 1, `reconnected after every drop: ${sum.connections} connections for ${sum.drops} drops`);
}
console.log(`# ${cpuLine}`);
const failed = results.filter((x) => !x).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
