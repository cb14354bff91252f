// What a socket holds once it is idle again after sending: no batch-sized packing buffer in
// JavaScript (a socket that sent one 4 KiB message used to keep an 8 KiB one for good; a
// listener with thousands of such sockets pinned megabytes). The native side's write buffer
// has its own test (core/src/socket/task.rs). The peer is a plain ws 8 server on 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import v8 from 'node:v8';
import vm from 'node:vm';

import { WebSocketServer } from 'ws';
import { relayedConnect } from 'hyco-ws-rs';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const SOCKETS = 200;

/**
 * The process's ArrayBuffer bytes once garbage is collected (finalizers included).
 *
 * @returns {Promise<number>}
 */
async function arrayBuffers() {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return process.memoryUsage().arrayBuffers;
}

/**
 * Opens SOCKETS sockets to a ws 8 server, sends one message of `size` bytes on each, and
 * returns the ArrayBuffer bytes each socket still holds once idle.
 *
 * @param {number} size The message's size.
 * @returns {Promise<number>}
 */
async function idleBytesAfterOneSend(size) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  let received = 0;
  wss.on('connection', (peer) => peer.on('message', () => received++));
  const url = `ws://127.0.0.1:${wss.address().port}/`;
  const sockets = [];
  try {
    for (let i = 0; i < SOCKETS; i++) sockets.push(relayedConnect(url, null, { perMessageDeflate: false }));
    await withTimeout(Promise.all(sockets.map((ws) => once(ws, 'open'))), STEP_MS, 'every socket to open');
    const before = await arrayBuffers();
    const payload = Buffer.alloc(size, 7);
    await withTimeout(
      Promise.all(sockets.map((ws) => new Promise((resolve, reject) => ws.send(payload, (err) => (err ? reject(err) : resolve()))))),
      STEP_MS,
      'every send callback'
    );
    await waitUntil(() => received === SOCKETS, STEP_MS, () => `the server to receive every message (${received})`);
    return ((await arrayBuffers()) - before) / SOCKETS;
  } finally {
    for (const ws of sockets) ws.terminate();
    wss.close();
  }
}

test('a socket that sent a 4 KiB message keeps no batch-sized packing buffer once idle', async () => {
  const perSocket = await idleBytesAfterOneSend(4096);
  assert.ok(perSocket < 1024, `ArrayBuffer bytes held per idle socket after one 4 KiB send: ${perSocket.toFixed(0)}`);
});

test('a socket that sent a small message keeps no packing buffer once idle', async () => {
  // Each socket used to keep its first, 1 KiB buffer for good. Now buffers go back to a few
  // the module keeps for any socket (at most 64 of them: 64 KiB, whatever the count).
  const perSocket = await idleBytesAfterOneSend(32);
  assert.ok(perSocket < 512, `ArrayBuffer bytes held per idle socket after one 32 B send: ${perSocket.toFixed(0)}`);
});
