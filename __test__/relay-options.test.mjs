// startLocalRelay's option checks and start-up failures: each bad input is a clear error
// with a code, never a crash.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startLocalRelay } from 'hyco-ws-rs';

test('bad options are TypeErrors or RangeErrors naming the option', async () => {
  const cases = [
    [null, TypeError, /The "options" argument must be of type object/],
    [{ port: -1 }, RangeError, /"options\.port"/],
    [{ port: 65536 }, RangeError, /"options\.port"/],
    [{ port: 1.5 }, RangeError, /"options\.port"/],
    [{ port: '80' }, RangeError, /"options\.port"/],
    [{ host: '' }, TypeError, /"options\.host"/],
    [{ hybridConnections: 'all' }, TypeError, /"options\.hybridConnections"/],
    [{ hybridConnections: [{}] }, TypeError, /"options\.hybridConnections\[0\]\.name"/],
    [{ hybridConnections: [{ name: 'a', requiresClientAuthorization: 'no' }] }, TypeError, /requiresClientAuthorization/],
    [{ rules: [] }, TypeError, /"options\.rules"/],
    [{ rules: [{ name: 'r', key: '', rights: ['Listen'] }] }, TypeError, /"options\.rules\[0\]\.key"/],
    [{ rules: [{ name: 'r', key: 'k', rights: ['Read'] }] }, TypeError, /"options\.rules\[0\]\.rights"/],
    [{ tls: { cert: 5, key: 'x' } }, TypeError, /"options\.tls\.cert"/],
    [{ acceptTimeoutMs: 0 }, RangeError, /"options\.acceptTimeoutMs"/],
    [{ acceptTimeoutMs: 0.5 }, RangeError, /"options\.acceptTimeoutMs" is out of range\. It must be a number from 1 to 2147483647/],
    [{ acceptTimeoutMs: 2 ** 31 }, RangeError, /"options\.acceptTimeoutMs"/],
    [{ acceptTimeoutMs: NaN }, RangeError, /"options\.acceptTimeoutMs"/],
    [{ maxListeners: 0 }, RangeError, /"options\.maxListeners"/],
    [{ requestTimeoutMs: 0 }, RangeError, /"options\.requestTimeoutMs"/],
    [{ requestTimeoutMs: Infinity }, RangeError, /"options\.requestTimeoutMs"/],
    [{ requestTimeoutMs: '100' }, RangeError, /"options\.requestTimeoutMs"/],
    [{ noListenerStatus: 500 }, RangeError, /"options\.noListenerStatus"/],
    [{ noListenerStatus: '404' }, RangeError, /"options\.noListenerStatus"/]
  ];
  for (const [options, Ctor, message] of cases) {
    await assert.rejects(startLocalRelay(options), (err) => {
      assert.ok(err instanceof Ctor, `${JSON.stringify(options)}: ${err}`);
      assert.match(err.code, /^ERR_(INVALID_ARG_TYPE|OUT_OF_RANGE)$/);
      assert.match(err.message, message);
      return true;
    });
  }
});

test('a certificate that is not PEM gives ERR_TLS_CONFIG', async () => {
  await assert.rejects(startLocalRelay({ tls: { cert: 'not a cert', key: 'not a key' } }), {
    name: 'TypeError',
    code: 'ERR_TLS_CONFIG',
    message: /tls\.cert/
  });
});

test('a port in use gives ERR_IO and the first relay keeps serving', async () => {
  const first = await startLocalRelay();
  try {
    await assert.rejects(startLocalRelay({ port: first.port }), {
      name: 'Error',
      code: 'ERR_IO',
      message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${first.port}`)
    });
    assert.equal(first.stats().listeners, 0);
  } finally {
    await first.close();
  }
});

test('dropListeners refuses a close code or reason a close frame cannot carry', async () => {
  const relay = await startLocalRelay();
  try {
    for (const code of [999, 5000, 1004, 1005, 1006, 1015, 2000]) {
      await assert.rejects(relay.dropListeners({ code }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, `code ${code}`);
    }
    await assert.rejects(relay.dropListeners({ reason: 'x'.repeat(124) }), {
      name: 'RangeError',
      code: 'ERR_OUT_OF_RANGE',
      message: 'The message must not be greater than 123 bytes'
    });
    assert.equal(await relay.dropListeners({ code: 4000, reason: 'é'.repeat(61) }), 0, '122 bytes');
    assert.equal(await relay.dropListeners({ code: 1001 }), 0);
  } finally {
    await relay.close();
  }
  await assert.rejects(relay.start(), { code: 'ERR_RELAY_CLOSED' });
});
