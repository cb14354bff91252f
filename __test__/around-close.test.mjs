// What a socket does around the peer's close, as ws 8 does: the messages read before the
// close frame are emitted before the close is answered, so that a listener's reply to one
// of them reaches the peer first; whatever pause() and resume() do, every message read
// arrives, in order, before 'close'; and a frame a listener sends as the connection drops
// settles its callback before 'close' and leaves bufferedAmount at 0. Each scenario runs
// with a ws 8 client too, and the two must agree. The peer is a plain ws 8 server on
// 127.0.0.1.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

import WebSocket, { WebSocketServer } from 'ws';
import { relayedConnect } from 'hyco-ws-rs';

import { STEP_MS, withTimeout } from './support/relay-steps.mjs';

const CLIENTS = {
  'ws 8': (url) => new WebSocket(url, { perMessageDeflate: false }),
  'hyco-ws-rs': (url) => relayedConnect(url, undefined, { perMessageDeflate: false })
};

/**
 * A ws 8 server on 127.0.0.1 whose connections `onConnection` drives.
 *
 * @param {(peer: WebSocket) => void} onConnection Called with each connection.
 * @returns {Promise<{ url: string, close: () => Promise<void> }>}
 */
async function peerServer(onConnection) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  wss.on('connection', onConnection);
  return {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    close: async () => {
      for (const p of wss.clients) p.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  };
}

/**
 * Runs `scenario` with each client and returns what each saw, by client name.
 *
 * @param {(connect: (url: string) => any) => Promise<any>} scenario One run.
 * @returns {Promise<Record<string, any>>}
 */
async function withEachClient(scenario) {
  const seen = {};
  for (const [name, connect] of Object.entries(CLIENTS)) {
    seen[name] = await scenario(connect);
  }
  return seen;
}

test("a listener's reply to the peer's last message reaches the peer before the close is answered", async () => {
  const seen = await withEachClient(async (connect) => {
    const peerSaw = [];
    let peerClosed;
    const server = await peerServer((peer) => {
      peerClosed = new Promise((resolve) => peer.once('close', (code) => resolve(code)));
      peer.on('message', (data) => peerSaw.push(String(data)));
      peer.send('request 1');
      peer.send('request 2');
      peer.close(1000, 'done');
    });
    try {
      const S = connect(server.url);
      const callbacks = [];
      S.on('message', (data) => {
        S.send(`reply to ${data}`, (err) => callbacks.push(err ? err.message : 'ok'));
      });
      const [code, reason] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      const peerCode = await withTimeout(peerClosed, STEP_MS, "the peer's 'close'");
      return { peerSaw, peerCode, code, reason: String(reason), callbacks, bufferedAmount: S.bufferedAmount };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], {
    peerSaw: ['reply to request 1', 'reply to request 2'],
    peerCode: 1000,
    code: 1000,
    reason: 'done',
    callbacks: ['ok', 'ok'],
    bufferedAmount: 0
  });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test("close() from a listener in the peer's last message: its code goes out, not the echo's", async () => {
  const seen = await withEachClient(async (connect) => {
    let peerClosed;
    const server = await peerServer((peer) => {
      peerClosed = new Promise((resolve) => peer.once('close', (code, reason) => resolve([code, String(reason)])));
      peer.send('bye?');
      peer.close(1000, 'peer');
    });
    try {
      const S = connect(server.url);
      S.on('message', () => S.close(4001, 'client'));
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      return { peer: await withTimeout(peerClosed, STEP_MS, "the peer's 'close'"), code };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], { peer: [4001, 'client'], code: 1000 });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

/**
 * Messages with pause() in every listener call and resume() on the next turn, while the
 * peer sends `count` messages and then `end`s the connection.
 *
 * @param {(url: string) => any} connect The client.
 * @param {number} count Messages.
 * @param {(peer: WebSocket) => void} end Ends the peer's side.
 * @returns {Promise<{ got: string[], code: number, paused: boolean }>}
 */
async function pausingReader(connect, count, end) {
  const server = await peerServer((peer) => {
    for (let i = 0; i < count; i++) peer.send(`m${i}`);
    end(peer);
  });
  try {
    const S = connect(server.url);
    const got = [];
    S.on('error', () => {});
    S.on('message', (data) => {
      got.push(String(data));
      S.pause();
      setImmediate(() => S.resume());
    });
    const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
    return { got, code };
  } finally {
    await server.close();
  }
}

test('pause() and resume() around every message while the peer closes: every message, in order, before the close', async () => {
  const expected = Array.from({ length: 40 }, (_, i) => `m${i}`);
  const seen = await withEachClient((connect) => pausingReader(connect, 40, (peer) => peer.close(1000)));
  assert.deepEqual(seen['ws 8'], { got: expected, code: 1000 });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test('pause() and resume() around every message while the connection drops: every message, in order, before the close', async () => {
  const expected = Array.from({ length: 40 }, (_, i) => `m${i}`);
  for (const [name, connect] of Object.entries(CLIENTS)) {
    // The drop comes while most messages are still held: they are emitted before 'close',
    // pause() or not.
    const { got, code } = await pausingReader(connect, 40, (peer) => peer.terminate());
    assert.deepEqual(got, expected, name);
    assert.equal(code, 1006, name);
  }
});

/**
 * A peer in a worker thread, so that it can act while the main thread is blocked: it says
 * when a client is connected; told to `act`, it sends `request` and drops the connection,
 * and sets `signal` once its side is closed.
 *
 * @param {Int32Array} signal Set to 1 once the peer's side is closed.
 * @returns {Promise<{ url: string, worker: Worker }>}
 */
async function droppingPeer(signal) {
  const worker = new Worker(
    `
    const { workerData, parentPort } = require('node:worker_threads');
    const { WebSocketServer } = require(workerData.ws);
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
    let peer = null;
    wss.on('listening', () => parentPort.postMessage(wss.address().port));
    wss.on('connection', (p) => {
      peer = p;
      parentPort.postMessage('connected');
    });
    parentPort.on('message', (m) => {
      if (m === 'act') {
        peer.send('request');
        peer.terminate();
        peer.once('close', () => {
          Atomics.store(workerData.signal, 0, 1);
          Atomics.notify(workerData.signal, 0);
        });
      } else {
        wss.close(() => process.exit(0));
      }
    });
    `,
    { eval: true, workerData: { signal, ws: import.meta.resolve('ws').replace(/^file:\/\//, '') } }
  );
  const [port] = await withTimeout(once(worker, 'message'), STEP_MS, 'the worker peer to listen');
  return { url: `ws://127.0.0.1:${port}/`, worker };
}

test("a listener's send as the connection drops: its callback runs before 'close', and bufferedAmount ends at 0", async () => {
  const seen = await withEachClient(async (connect) => {
    const signal = new Int32Array(new SharedArrayBuffer(4));
    const { url, worker } = await droppingPeer(signal);
    try {
      const S = connect(url);
      const order = [];
      S.on('error', () => {});
      await withTimeout(Promise.all([once(S, 'open'), once(worker, 'message')]), STEP_MS, 'the client to connect');
      worker.postMessage('act');
      // Blocks this thread until the peer (in its worker) has sent and dropped the
      // connection, so that the client reads both before it runs again.
      assert.notEqual(Atomics.wait(signal, 0, 0, STEP_MS), 'timed-out', 'the peer to drop the connection');
      S.on('message', (data) => {
        order.push(`message ${data}`);
        S.send('reply', (err) => order.push(err ? 'callback failed' : 'callback ok'));
      });
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      order.push(`close ${code}, bufferedAmount ${S.bufferedAmount}`);
      await new Promise((resolve) => setImmediate(resolve));
      order.push(`later, bufferedAmount ${S.bufferedAmount}`);
      return order;
    } finally {
      worker.postMessage('stop');
      await once(worker, 'exit');
    }
  });
  assert.deepEqual(seen['ws 8'], [
    'message request',
    'callback ok',
    'close 1006, bufferedAmount 0',
    'later, bufferedAmount 0'
  ]);
  // The one difference: ws wrote the reply into its socket before it read the end of the
  // stream (the peer never reads it); here the connection had ended before JavaScript ran,
  // so the reply is never written and its callback says so.
  assert.deepEqual(seen['hyco-ws-rs'], [
    'message request',
    'callback failed',
    'close 1006, bufferedAmount 0',
    'later, bufferedAmount 0'
  ]);
});
