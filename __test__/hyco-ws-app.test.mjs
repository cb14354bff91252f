// One changed require line: an app written for Microsoft's hyco-ws 1.0.5
// (__test__/fixtures/hyco-ws-app.js: its client form `new WebSocket(url, null, { headers })`,
// text compared with strings, binary echoed, `clients` as an array, the control channel's
// onmessage wrapped to read an accept, `controlChannel.close()` and 'listening' again,
// `relayedConnect`, `close(cb)` and `closeRequested`, an 'error' for a host that does not
// resolve, and the helpers' leniency) runs against hyco-ws 1.0.5 and against
// `hyco-ws-rs/hyco-ws`, on the same local relay, and both print the same observations.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { createRelayListenUri, createRelaySendUri, startLocalRelay } from 'hyco-ws-rs';

import { withTimeout } from './support/relay-steps.mjs';

const app = fileURLToPath(new URL('./fixtures/hyco-ws-app.js', import.meta.url));
const root = fileURLToPath(new URL('..', import.meta.url));

/**
 * Runs the app with `module` until it exits.
 *
 * @param {string} module The module it requires.
 * @param {object} env Its environment.
 * @returns {Promise<{ code: number, lines: string[], stderr: string }>}
 */
function runApp(module, env) {
  const child = spawn(process.execPath, [app, module], { cwd: root, env: { ...process.env, ...env } });
  let out = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (code) => resolve({ code, lines: out.trim().split('\n'), stderr })));
  return withTimeout(exited, 30_000, () => `${module}'s run to end; so far:\n${out}\n${stderr}`).finally(() => child.kill());
}

test('an app written for hyco-ws 1.0.5 observes the same with hyco-ws-rs/hyco-ws', async () => {
  const relay = await startLocalRelay();
  try {
    const env = {
      LISTEN_URI: createRelayListenUri(relay.namespace, 'hc'),
      SEND_URI: createRelaySendUri(relay.namespace, 'hc'),
      KEY_NAME: relay.keyName,
      KEY: relay.key,
      BAD_LISTEN_URI: createRelayListenUri('hyco-ws-rs-test.invalid', 'hc')
    };
    const theirs = await runApp('hyco-ws', env);
    const ours = await runApp('hyco-ws-rs/hyco-ws', env);
    assert.equal(theirs.code, 0, `hyco-ws's run:\n${theirs.lines.join('\n')}\n${theirs.stderr}`);
    assert.equal(ours.code, 0, `hyco-ws-rs's run:\n${ours.lines.join('\n')}\n${ours.stderr}`);
    assert.equal(ours.lines.at(-1), 'done');
    // Some lines may come in another order (hyco-ws calls close()'s callback before its
    // sockets have closed; this package once they have): the same observations, sorted.
    assert.deepEqual([...ours.lines].sort(), [...theirs.lines].sort(), `hyco-ws:\n${theirs.lines.join('\n')}\n\nhyco-ws-rs/hyco-ws:\n${ours.lines.join('\n')}`);
    for (const line of [
      'listening 2 channel open true',
      'accept message, x-hello world',
      'client got string pong binary false',
      'client got buffer 010203 binary true',
      'relayed sender got string hello',
      'server close callback, error false closeRequested true',
      'unresolvable host error ENOTFOUND true'
    ]) {
      assert.ok(ours.lines.includes(line), `${line} (got:\n${ours.lines.join('\n')})`);
    }
  } finally {
    await relay.close();
  }
});
