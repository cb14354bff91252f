// `hyco-ws-rs relay`: the CLI starts the emulator, prints a usable connection string and a
// line per event, and stops cleanly on SIGINT. `hyco-ws-rs --version` prints the version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http from 'node:http';
import { fileURLToPath } from 'node:url';

import { createRelayListenUri, createRelayToken, parseConnectionString, WebSocket } from 'hyco-ws-rs';

const cli = fileURLToPath(new URL('../bin/hyco-ws-rs.js', import.meta.url));

/**
 * Resolves with the first stdout text matching `pattern`, or rejects after `ms`.
 *
 * @param {Object} child The child process
 * @param {RegExp} pattern What to wait for
 * @param {Number} ms The timeout
 * @return {Promise<RegExpMatchArray>} The match
 */
function waitForOutput(child, pattern, ms = 10000) {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => {
      child.stdout.off('data', onData);
      reject(new Error(`timed out waiting for ${pattern} in:\n${seen}`));
    }, ms);
    function onData(chunk) {
      seen += chunk;
      const m = pattern.exec(seen);
      if (m) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolve(m);
      }
    }
    child.stdout.on('data', onData);
  });
}

test('relay: prints a connection string, logs events, stops on SIGINT', async () => {
  const child = spawn(process.execPath, [cli, 'relay', '--port', '0', '--hc', 'demo'], {
    stdio: ['ignore', 'pipe', 'pipe']
  });
  child.stdout.setEncoding('utf8');
  try {
    const [, connectionString] = await waitForOutput(child, /connection string: (\S+)\n/);
    const c = parseConnectionString(connectionString);
    assert.equal(c.entityPath, 'demo');
    assert.match(c.namespace, /^ws:\/\/127\.0\.0\.1:\d+$/);
    const uri = createRelayListenUri(c.namespace, c.entityPath);
    const token = createRelayToken(uri, c.sharedAccessKeyName, c.sharedAccessKey);
    const listenEvent = waitForOutput(child, /listen \[demo\] listener connected/);
    const listener = new WebSocket(uri, { headers: { ServiceBusAuthorization: token } });
    await once(listener, 'open');
    await listenEvent;
    listener.close();
    await once(listener, 'close');
  } finally {
    child.kill('SIGINT');
  }
  const [code] = await Promise.race([
    once(child, 'exit'),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no exit after SIGINT')), 10000))
  ]);
  assert.equal(code, 0);
});

test('relay: bad arguments exit with status 2 and the usage', async () => {
  const child = spawn(process.execPath, [cli, 'relay', '--port', 'eighty'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const [code] = await once(child, 'exit');
  assert.equal(code, 2);
  assert.match(stderr, /--port must be an integer from 0 to 65535/);
  assert.match(stderr, /Usage: hyco-ws-rs relay/);
});

test('relay: values out of range exit with status 2 and the usage, naming the flag', async () => {
  for (const [args, message] of [
    [['--port', '99999'], /--port must be an integer from 0 to 65535/],
    [['--max-listeners', '0'], /--max-listeners must be an integer from 1 to 100000/],
    [['--request-timeout', '0'], /--request-timeout must be an integer from 1 to 2147483647/],
    [['--accept-timeout', '9999999999'], /--accept-timeout must be an integer from 1 to 2147483647/],
    [['--no-listener-status', '500'], /--no-listener-status must be 404, 502 or 503/],
    [['--hc', ''], /--hc needs a name/]
  ]) {
    const child = spawn(process.execPath, [cli, 'relay', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const [code] = await once(child, 'exit');
    assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
    assert.match(stderr, message);
    assert.match(stderr, /Usage: hyco-ws-rs relay/);
  }
});

test('relay: a closed stdout (relay | head) does not kill it; SIGINT still stops it cleanly', async () => {
  const child = spawn(process.execPath, [cli, 'relay', '--port', '0', '--hc', 'demo'], {
    stdio: ['ignore', 'pipe', 'pipe']
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  child.stdout.setEncoding('utf8');
  const [, connectionString] = await waitForOutput(child, /connection string: (\S+)\n/);
  // The reader goes away; the next event line meets a closed pipe (EPIPE).
  child.stdout.destroy();
  const c = parseConnectionString(connectionString);
  const uri = createRelayListenUri(c.namespace, c.entityPath);
  const token = createRelayToken(uri, c.sharedAccessKeyName, c.sharedAccessKey);
  for (let i = 0; i < 3; i++) {
    const listener = new WebSocket(uri, { headers: { ServiceBusAuthorization: token } });
    await once(listener, 'open');
    listener.close();
    await once(listener, 'close');
  }
  assert.equal(child.exitCode, null, `the relay died: ${stderr}`);
  child.kill('SIGINT');
  const [code] = await Promise.race([
    once(child, 'exit'),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no exit after SIGINT')), 10000))
  ]);
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /EPIPE/);
});

test('--help and --version work without the native addon; relay then says why in one line', () => {
  // A copy of the package with no addon and no prebuilt package to find.
  const dir = mkdtempSync(join(tmpdir(), 'hyco-ws-rs-cli-'));
  try {
    const root = fileURLToPath(new URL('..', import.meta.url));
    for (const part of ['bin', 'lib']) cpSync(join(root, part), join(dir, part), { recursive: true });
    cpSync(join(root, 'package.json'), join(dir, 'package.json'));
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    const copy = join(dir, 'bin', 'hyco-ws-rs.js');
    const run = (...args) => spawnSync(process.execPath, [copy, ...args], { encoding: 'utf8', timeout: 10000 });
    const help = run('--help');
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /Usage: hyco-ws-rs relay/);
    const version = run('-v');
    assert.equal(version.status, 0, version.stderr);
    assert.match(version.stdout, /^\d+\.\d+\.\d+/);
    const relay = run('relay');
    assert.equal(relay.status, 1);
    assert.match(relay.stderr, /^hyco-ws-rs: /);
    assert.doesNotMatch(relay.stderr, /\n\s+at /, `a stack trace: ${relay.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--version and -v print the package\'s version', () => {
  const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
  for (const flag of ['--version', '-v']) {
    const out = execFileSync(process.execPath, [cli, flag], { encoding: 'utf8', timeout: 10000 });
    assert.equal(out, `${version}\n`, flag);
  }
});

test('relay: --request-timeout and --no-listener-status reach the relay; HTTP requests are logged', async () => {
  const child = spawn(
    process.execPath,
    [cli, 'relay', '--port', '0', '--hc', 'demo', '--request-timeout', '200', '--no-listener-status', '503'],
    { stdio: ['ignore', 'pipe', 'pipe'] }
  );
  child.stdout.setEncoding('utf8');
  try {
    const [, connectionString] = await waitForOutput(child, /connection string: (\S+)\n/);
    const c = parseConnectionString(connectionString);
    const port = Number(new URL(c.namespace.replace(/^ws/, 'http')).port);
    const token = createRelayToken(`http://127.0.0.1:${port}/demo`, c.sharedAccessKeyName, c.sharedAccessKey);
    const get = () =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: '127.0.0.1', port, path: '/demo', agent: false, headers: { ServiceBusAuthorization: token } }, (res) => {
          res.resume();
          resolve(res.statusCode);
        });
        req.on('error', reject);
      });
    assert.equal(await get(), 503, 'no listener: the configured status');
    const uri = createRelayListenUri(c.namespace, c.entityPath);
    const listener = new WebSocket(uri, { headers: { ServiceBusAuthorization: createRelayToken(uri, c.sharedAccessKeyName, c.sharedAccessKey) } });
    await once(listener, 'open');
    // The listener never answers: 504 after the 200 ms request timeout, and the log says so.
    const logged = waitForOutput(child, /requestTimeout \[demo\] id=\S+ 504/);
    assert.equal(await get(), 504);
    await logged;
    listener.close();
    await once(listener, 'close');
  } finally {
    child.kill('SIGINT');
  }
  const [code] = await Promise.race([
    once(child, 'exit'),
    new Promise((_, reject) => setTimeout(() => reject(new Error('no exit after SIGINT')), 10000))
  ]);
  assert.equal(code, 0);
});

test('relay: --help lists the HTTP options; a bad --request-timeout exits with status 2', async () => {
  const help = spawn(process.execPath, [cli, 'relay', '--help'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  help.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  assert.equal((await once(help, 'exit'))[0], 0);
  assert.match(out, /--request-timeout MS/);
  assert.match(out, /--no-listener-status N/);
  const bad = spawn(process.execPath, [cli, 'relay', '--request-timeout', 'soon'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  bad.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  assert.equal((await once(bad, 'exit'))[0], 2);
  assert.match(stderr, /--request-timeout must be an integer from 1 to 2147483647/);
});
