// `hyco-ws-rs relay`: the CLI starts the emulator, prints a usable connection string and a
// line per event, and stops cleanly on SIGINT. `hyco-ws-rs --version` prints the version.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
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
