// Received large messages' buffers (issue #14): a large message's Buffer is the native
// buffer itself, and once JavaScript lets it go, that buffer serves a later message (the
// process's pool of large buffers), so that the later message's pages need not fault in
// afresh. A buffer must never serve again while JavaScript still holds it: the messages kept
// are checked after more have arrived into recycled buffers. The peer is a plain ws 8 server
// on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';
import { createRequire } from 'node:module';

import { WebSocketServer } from 'ws';
import { relayedConnect } from 'hyco-ws-rs';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';

const require = createRequire(import.meta.url);
const { native } = require('../lib/native-events.js');

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

/** Each message's size: large enough for the pool (64 KiB and more). */
const SIZE = 300 * 1024;

/**
 * Message `seq`: SIZE bytes of `seq`.
 *
 * @param {number} seq Its number.
 * @returns {Buffer}
 */
function message(seq) {
  return Buffer.alloc(SIZE, seq & 0xff);
}

/**
 * Collects garbage and lets a turn of the event loop run (the finalizers of external
 * buffers run on a later turn), until `predicate` holds.
 *
 * @param {() => boolean} predicate What to wait for.
 * @param {() => string} what What is awaited, for the failure message.
 * @returns {Promise<void>}
 */
async function collectUntil(predicate, what) {
  const deadline = Date.now() + STEP_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${STEP_MS} ms waiting until ${what()}`);
    gc();
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('a large message let go serves a later one, and one still held is never overwritten', async () => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  // "from count": the server sends messages from..from+count-1.
  wss.on('connection', (peer) => {
    peer.on('message', (data) => {
      const [from, count] = String(data).split(' ').map(Number);
      for (let seq = from; seq < from + count; seq++) peer.send(message(seq));
    });
  });
  const S = relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, undefined, { perMessageDeflate: false });
  try {
    await withTimeout(once(S, 'open'), STEP_MS, 'the socket to open');
    const receive = (from, count) =>
      withTimeout(
        new Promise((resolve) => {
          const got = [];
          S.on('message', function onMessage(data) {
            got.push(data);
            if (got.length === count) {
              S.off('message', onMessage);
              resolve(got);
            }
          });
          S.send(`${from} ${count}`);
        }),
        STEP_MS,
        `messages ${from} to ${from + count - 1}`
      );

    const first = await receive(0, 20);
    first.forEach((data, seq) => assert.ok(data.equals(message(seq)), `message ${seq}`));
    // Half are kept; the other half let go.
    const kept = first.filter((_, seq) => seq % 2 === 0);
    const before = native.pooledBytes();
    first.length = 0;
    // All ten come back (nothing else in this process gives the pool a buffer), so that no
    // finalizer is still to run while the next messages arrive.
    await collectUntil(
      () => native.pooledBytes() >= before + 10 * SIZE,
      () => `the buffers let go come back (${native.pooledBytes() - before} bytes so far)`
    );

    const back = native.pooledBytes();
    const second = await receive(20, 5);
    second.forEach((data, i) => assert.ok(data.equals(message(20 + i)), `message ${20 + i}`));
    assert.ok(native.pooledBytes() <= back - 5 * SIZE, 'later messages were received into buffers let go');
    kept.forEach((data, k) => assert.ok(data.equals(message(2 * k)), `kept message ${2 * k} intact`));

    S.close(1000);
    await withTimeout(once(S, 'close'), STEP_MS, 'the close');
  } finally {
    S.terminate();
    for (const peer of wss.clients) peer.terminate();
    await new Promise((resolve) => wss.close(resolve));
  }
});
