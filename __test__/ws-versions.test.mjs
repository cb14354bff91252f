// The ws coupling: RelayedWebSocket extends ws's WebSocket class and sets the fields its
// getters read, and package.json accepts any ws 8 from 8.20.0 (the first to export
// PerMessageDeflate, extension and subprotocol, which the package passes on). The whole suite runs with the
// lockfile's ws (the newest ws 8 when the lockfile was last updated); this file runs the tests
// of the socket contract again with the lowest, 8.20.0 (devDependency `ws-lowest`), swapped in
// for every `require('ws')` and `import 'ws'` by a preload (support/use-ws.mjs); and checks
// that a ws keeping its state elsewhere is refused when the package loads, by name.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

import { withTimeout } from './support/relay-steps.mjs';

const require = createRequire(import.meta.url);
const root = fileURLToPath(new URL('..', import.meta.url));
// A file: URL, not a path: `--import` takes no absolute Windows path.
const preload = new URL('./support/use-ws.mjs', import.meta.url).href;

/**
 * Runs node with `args` and the preload standing `standIn` in for ws.
 *
 * @param {string} standIn What `ws` resolves to.
 * @param {string[]} args Node's arguments after the preload.
 * @param {number} ms How long it may take.
 * @returns {Promise<{ code: number, out: string, err: string }>}
 */
function runWith(standIn, args, ms) {
  const env = { ...process.env, HYCO_TEST_WS: standIn };
  // A test runner inside this one would otherwise report to it, not on stdout.
  delete env.NODE_TEST_CONTEXT;
  const child = spawn(process.execPath, ['--import', preload, ...args], { cwd: root, env });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const done = new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
  return withTimeout(done, ms, () => `node ${args.join(' ')} with ${standIn}:\n${out}\n${err}`).finally(() => child.kill());
}

test("the lowest ws the package accepts is the one tested: package.json's range starts at ws-lowest's version", () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  const lowest = require('ws-lowest/package.json').version;
  assert.equal(pkg.dependencies.ws, `^${lowest}`);
  assert.equal(pkg.devDependencies['ws-lowest'], `npm:ws@${lowest}`);
  const installed = require('ws/package.json').version;
  assert.notEqual(installed, lowest, 'the suite itself runs with a newer ws than the lowest');
});

test("with the lowest ws 8 (8.20.0): the package passes on every ws export; the socket contract and hyco-ws compatibility tests pass", async () => {
  const probe = await runWith(
    'ws-lowest',
    [
      '-e',
      "const h = require('hyco-ws-rs'); const names = ['PerMessageDeflate', 'extension', 'subprotocol', 'Receiver', 'Sender', 'createWebSocketStream', 'WebSocketServer']; " +
        "console.log(require('ws/package.json').version, h.WebSocket === require('ws-lowest'), names.filter((n) => h[n] === undefined || h[n] !== require('ws-lowest')[n]).join(',') || 'all')"
    ],
    30_000
  );
  assert.equal(probe.code, 0, probe.err);
  assert.equal(probe.out.trim(), `${require('ws-lowest/package.json').version} true all`, "the package loaded the lowest ws, and passes on ws's exports");
  const run = await runWith(
    'ws-lowest',
    ['--test', '--test-timeout=120000', '__test__/socket-compat.test.mjs', '__test__/hyco-ws-compat.test.mjs'],
    300_000
  );
  const pass = Number(/^# pass (\d+)$/m.exec(run.out)?.[1]);
  const fail = Number(/^# fail (\d+)$/m.exec(run.out)?.[1]);
  assert.equal(fail, 0, run.out.split('\n').filter((l) => /not ok|Error/.test(l)).slice(0, 40).join('\n'));
  assert.ok(pass >= 60, `the tests ran (${pass} passed)`);
  assert.equal(run.code, 0);
});

test('a ws that keeps its state elsewhere is refused when the package loads, naming its version', async () => {
  const fixture = fileURLToPath(new URL('./fixtures/ws-incompatible', import.meta.url));
  const run = await runWith(fixture, ['-e', "try { require('hyco-ws-rs'); } catch (e) { console.log(e.code, e.message); process.exit(3); }"], 30_000);
  assert.equal(run.code, 3, `${run.out}\n${run.err}`);
  assert.match(run.out, /^ERR_HYCO_WS_INCOMPATIBLE hyco-ws-rs: ws 8\.99\.0-incompatible keeps its state elsewhere/);
});
