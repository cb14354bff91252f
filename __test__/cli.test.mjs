// `hyco-ws-rs relay`: the CLI starts the emulator, prints a usable connection string and a
// line per event, and stops cleanly on SIGINT. `hyco-ws-rs --version` prints the version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
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
  assert.match(stderr, /--port must be a non-negative integer/);
  assert.match(stderr, /Usage: hyco-ws-rs relay/);
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
  assert.match(stderr, /--request-timeout must be a non-negative integer/);
});
