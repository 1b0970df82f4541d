#!/usr/bin/env node
'use strict';
// Starts s3rver (an S3 stand-in, filesystem-backed) for the model download tests.
//   node run-s3rver.js --dir DIR [--port 0] [--port-file F] [--bucket NAME]...
// Prints "LISTENING <port>" once ready. s3rver accepts anonymous requests and, for
// signed ones, only checks that the access key exists (S3RVER): it does not verify
// SigV4 signatures, so the tests put tests/helpers/dl-server.py --mode s3proxy,
// which does, in front of it.
// s3rver's ListObjectsV2 continuation tokens use DES, which Node 17+ (OpenSSL 3) only has
// with the legacy provider: re-run under it (signals forwarded) when it is not loaded.
if (!process.execArgv.includes('--openssl-legacy-provider')) {
  const { spawn } = require('node:child_process');
  const child = spawn(process.execPath, ['--openssl-legacy-provider', ...process.argv.slice(1)],
    { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, sig) => process.exit(code === null ? 1 : code));
  return;
}
const fs = require('node:fs');
const path = require('node:path');
const S3rver = require('s3rver');

const args = { dir: null, port: 0, portFile: null, buckets: [] };
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = process.argv[i + 1];
  if (a === '--dir') { args.dir = v; i++; }
  else if (a === '--port') { args.port = Number(v); i++; }
  else if (a === '--port-file') { args.portFile = v; i++; }
  else if (a === '--bucket') { args.buckets.push(v); i++; }
  else { console.error(`unknown argument: ${a}`); process.exit(64); }
}
if (!args.dir) { console.error('--dir is required'); process.exit(64); }
fs.mkdirSync(args.dir, { recursive: true });

const server = new S3rver({
  address: '127.0.0.1',
  port: args.port,
  directory: args.dir,
  silent: true,
  configureBuckets: args.buckets.map((name) => ({ name })),
});
server.run().then(({ port }) => {
  if (args.portFile) {
    fs.writeFileSync(args.portFile + '.tmp', `${port}\n`);
    fs.renameSync(args.portFile + '.tmp', args.portFile);
  }
  console.log(`LISTENING ${port}`);
}, (err) => { console.error(err); process.exit(1); });
const stop = () => server.close().then(() => process.exit(0), () => process.exit(1));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
