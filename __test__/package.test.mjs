// What a user gets from npm: `npm pack` ships only what users need; where no platform
// package is installed, the tarball builds the addon from source into an empty project, and
// the listener/sender examples run there against the local relay. (Installing with the
// prebuilt platform package, without Rust: prebuilt.test.mjs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startLocalRelay } from 'hyco-ws-rs';
import { installOffline, packPackages, root, tarballFiles } from './support/pack.mjs';

const require = createRequire(import.meta.url);
const { binaryName, packageName } = require('../lib/native.js');

const WAIT = 30000;
let work;
let mainTarball;

/**
 * Makes an empty project in `dir` with the examples copied in.
 *
 * @param {String} dir The directory
 */
function emptyProject(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', version: '1.0.0', private: true }));
  for (const name of ['listener.js', 'sender.js', 'support']) {
    cpSync(join(root, 'examples', name), join(dir, name), { recursive: true });
  }
}

/**
 * Runs `node file` in `cwd`; resolves with its output once it prints `pattern` (or exits).
 *
 * @param {String} cwd The project
 * @param {String} file The script
 * @param {Object} env Extra environment
 * @return {{child: ChildProcess, output: () => String, exited: Promise<Number>, printed: (RegExp) => Promise<void>}}
 */
function run(cwd, file, env) {
  const child = spawn(process.execPath, [file], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const waiters = [];
  const onData = (d) => {
    out += d;
    for (const w of waiters) if (w.pattern.test(out)) w.resolve();
  };
  child.stdout.setEncoding('utf8').on('data', onData);
  child.stderr.setEncoding('utf8').on('data', onData);
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    child,
    output: () => out,
    exited,
    printed: (pattern) =>
      new Promise((resolve, reject) => {
        if (pattern.test(out)) return resolve();
        const timer = setTimeout(() => reject(new Error(`${file} did not print ${pattern}:\n${out}`)), WAIT);
        waiters.push({ pattern, resolve: () => (clearTimeout(timer), resolve()) });
        child.on('exit', () => setTimeout(() => reject(new Error(`${file} exited without ${pattern}:\n${out}`)), 10));
      })
  };
}

/**
 * The listener/sender examples, installed in `dir`, talk through a local relay.
 *
 * @param {String} dir The project
 */
async function examplesWork(dir) {
  const relay = await startLocalRelay({ hybridConnections: ['examples'] });
  const env = { RELAY_CONNECTION_STRING: relay.connectionString('examples') };
  const listener = run(dir, 'listener.js', env);
  try {
    await listener.printed(/listening/i);
    const sender = run(dir, 'sender.js', env);
    const code = await Promise.race([
      sender.exited,
      new Promise((_, reject) => setTimeout(() => reject(new Error(`sender.js did not exit:\n${sender.output()}`)), WAIT))
    ]);
    assert.equal(code, 0, sender.output());
    assert.match(sender.output(), /hello 1/);
  } finally {
    listener.child.kill('SIGINT');
    await listener.exited;
    await relay.close();
  }
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'hyco-ws-rs-pack-'));
  ({ main: mainTarball } = packPackages(work));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('npm pack ships the sources, types and CLI, and no tests, benches, build output or binaries', () => {
  const files = tarballFiles(mainTarball);
  for (const needed of ['package/index.js', 'package/index.d.ts', 'package/index.d.mts', 'package/ws-interop.d.cts', 'package/wrapper.mjs', 'package/lib/websocket.js', 'package/bin/hyco-ws-rs.js', 'package/Cargo.toml', 'package/core/src/lib.rs', 'package/src/lib.rs', 'package/scripts/build-addon.js', 'package/.cargo/config.toml', 'package/LICENSE', 'package/README.md']) {
    assert.ok(files.includes(needed), `${needed} is missing from the tarball`);
  }
  for (const f of files) {
    assert.doesNotMatch(f, /^package\/(target|__test__|bench|examples|node_modules|npm|\.ci)\//, `${f} should not ship`);
    assert.doesNotMatch(f, /\.node$/, `${f}: binaries ship in the platform package`);
  }
});

test('with Rust and without the platform package: npm install builds the addon from the tarball and the examples run', { timeout: 600000 }, async () => {
  const dir = join(work, 'source');
  emptyProject(dir);
  // The repository's target directory keeps the dependencies compiled already.
  installOffline(dir, [mainTarball], [], { CARGO_TARGET_DIR: join(root, 'target') }, ['--omit=optional']);
  const installed = readdirSync(join(dir, 'node_modules', 'hyco-ws-rs'));
  assert.ok(installed.includes(binaryName()), `the addon was built: ${installed.join(', ')}`);
  assert.ok(!existsSync(join(dir, 'node_modules', packageName())), 'no platform package');
  assert.ok(existsSync(join(dir, 'node_modules', 'hyco-ws-rs', 'index.d.ts')));
  await examplesWork(dir);
});
