// What a socket does around the peer's close, as ws 8 does: the messages read before the
// close frame are emitted before the close is answered, so that a listener's reply to one
// of them reaches the peer first; whatever pause() and resume() do, every message read
// arrives, in order, before 'close'; and a frame a listener sends as the connection drops
// settles its callback before 'close' and leaves bufferedAmount at 0. Each scenario runs
// with a ws 8 client too, and the two must agree. The peer is a plain ws 8 server on
// 127.0.0.1 (a worker thread's where the main thread must block while the peer acts); the
// last test, of a RelayedServer's close, runs through the local relay.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';

import WebSocket, { WebSocketServer } from 'ws';
import {
  RelayedServer,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  startLocalRelay
} from 'hyco-ws-rs';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';

const CLIENTS = {
  'ws 8': (url, options) => new WebSocket(url, { perMessageDeflate: false, ...options }),
  'hyco-ws-rs': (url, options) => relayedConnect(url, undefined, { perMessageDeflate: false, ...options })
};

/**
 * A ws 8 server on 127.0.0.1 whose connections `onConnection` drives. It notes the text of
 * what its last connection receives (`saw`), and `peerClose()` waits for that connection's
 * 'close'.
 *
 * @param {(peer: WebSocket) => void} onConnection Called with each connection.
 * @returns {Promise<{ url: string, saw: string[], peerClose: () => Promise<{ code: number, reason: string }>, close: () => Promise<void> }>}
 */
async function peerServer(onConnection) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const saw = [];
  let closed = null;
  wss.on('connection', (peer) => {
    closed = new Promise((resolve) => peer.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
    peer.on('message', (data) => saw.push(String(data)));
    onConnection(peer);
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    saw,
    peerClose: () => withTimeout(closed, STEP_MS, "the peer's 'close'"),
    close: async () => {
      for (const p of wss.clients) p.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  };
}

/**
 * Runs `send` with the peer's socket corked, so that the frames it sends reach the client
 * in one segment (read together: a pause() from a listener cannot come between them).
 *
 * @param {WebSocket} peer The peer.
 * @param {() => void} send Sends the frames.
 */
function together(peer, send) {
  peer._socket.cork();
  send();
  process.nextTick(() => peer._socket.uncork());
}

/**
 * Once `S` is open and the worker peer (see `droppingPeer`) has it, tells the peer to act
 * and blocks this thread until the peer has dropped the connection, so that the client
 * reads what the peer sent and the end together when it runs again.
 *
 * @param {any} S The client.
 * @param {Worker} worker The peer.
 * @param {Int32Array} signal The peer's signal.
 * @returns {Promise<void>}
 */
async function actWhileBlocked(S, worker, signal) {
  await withTimeout(Promise.all([once(S, 'open'), once(worker, 'message')]), STEP_MS, 'the client to connect');
  worker.postMessage('act');
  assert.notEqual(Atomics.wait(signal, 0, 0, STEP_MS), 'timed-out', 'the peer to drop the connection');
}

/**
 * Waits for `S`'s 'close', noting its code and `bufferedAmount` in `order` in the listener
 * itself (after an await, a callback's tick would have run whatever the order; and not
 * events.once(), which rejects on an 'error').
 *
 * @param {any} S The client.
 * @param {string[]} order What happened, in order.
 * @returns {Promise<void>}
 */
function closeNoted(S, order) {
  const closed = new Promise((resolve) =>
    S.once('close', (code) => {
      order.push(`close ${code}, bufferedAmount ${S.bufferedAmount}`);
      resolve();
    })
  );
  return withTimeout(closed, STEP_MS, "the client's 'close'");
}

/**
 * Runs `scenario` with each client and returns what each saw, by client name.
 *
 * @param {(connect: (url: string, options?: object) => any) => Promise<any>} scenario One run.
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
    const server = await peerServer((peer) => {
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
      const peerCode = (await server.peerClose()).code;
      return { peerSaw: server.saw, peerCode, code, reason: String(reason), callbacks, bufferedAmount: S.bufferedAmount };
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
    const server = await peerServer((peer) => {
      peer.send('bye?');
      peer.close(1000, 'peer');
    });
    try {
      const S = connect(server.url);
      S.on('message', () => S.close(4001, 'client'));
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      const { code: peerCode, reason } = await server.peerClose();
      return { peer: [peerCode, reason], code };
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
 * when a client is connected; told to `act`, it sends `request` (or, with `raw`, writes
 * those bytes as they are) and drops the connection, and sets `signal` once its side is
 * closed.
 *
 * @param {Int32Array} signal Set to 1 once the peer's side is closed.
 * @param {number[]} [raw] Bytes to write instead of the message.
 * @returns {Promise<{ url: string, worker: Worker }>}
 */
async function droppingPeer(signal, raw) {
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
        if (workerData.raw) peer._socket.write(Buffer.from(workerData.raw));
        else peer.send('request');
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
    { eval: true, workerData: { signal, raw, ws: import.meta.resolve('ws').replace(/^file:\/\//, '') } }
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
      await actWhileBlocked(S, worker, signal);
      S.on('message', (data) => {
        order.push(`message ${data}`);
        S.send('reply', (err) => order.push(err ? 'callback failed' : 'callback ok'));
      });
      await closeNoted(S, order);
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

test("a 'message' listener that takes longer than closeTimeout before its reply: the reply and the echo still go, and the close is clean", async () => {
  const seen = await withEachClient(async (connect) => {
    const server = await peerServer((peer) => {
      peer.send('hello');
      peer.close(1000);
    });
    try {
      const S = connect(server.url, { closeTimeout: 100 });
      const callbacks = [];
      S.on('message', () => {
        // Synchronous work longer than the closing handshake's time: the handshake has not
        // begun on this side yet (as in ws, its timer starts with the answer).
        const until = Date.now() + 400;
        while (Date.now() < until);
        S.send('reply', (err) => callbacks.push(err ? err.message : 'ok'));
      });
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      return { peerSaw: server.saw, peerCode: (await server.peerClose()).code, code, callbacks };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], { peerSaw: ['reply'], peerCode: 1000, code: 1000, callbacks: ['ok'] });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test('a peer that half-closes right after its close frame still gets the reply and the echo', async () => {
  const seen = await withEachClient(async (connect) => {
    const server = await peerServer((peer) => {
      peer.send('hello');
      peer.close(1000);
      // Done sending: a FIN, while it still reads.
      peer._socket.end();
    });
    try {
      const S = connect(server.url);
      S.on('error', () => {});
      S.on('message', () => S.send('reply'));
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, "the client's 'close'");
      return { peerSaw: server.saw, peerCode: (await server.peerClose()).code, code };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], { peerSaw: ['reply'], peerCode: 1000, code: 1000 });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test("send() while closing: its bytes still count in bufferedAmount after 'close', and an 'error' listener's send settles its callback before 'close'", async () => {
  const seen = await withEachClient(async (connect) => {
    const signal = new Int32Array(new SharedArrayBuffer(4));
    // A text frame that is not UTF-8, written by hand: the client fails (and sends 1007).
    const { url, worker } = await droppingPeer(signal, [0x81, 0x02, 0xff, 0xfe]);
    try {
      const S = connect(url);
      const order = [];
      await actWhileBlocked(S, worker, signal);
      S.on('error', (err) => {
        order.push(`error ${err.code}`);
        S.send('abcd', (e) => order.push(e ? 'callback failed' : 'callback ok'));
      });
      await closeNoted(S, order);
      return order;
    } finally {
      worker.postMessage('stop');
      await once(worker, 'exit');
    }
  });
  assert.deepEqual(seen['ws 8'], ['error WS_ERR_INVALID_UTF8', 'callback failed', 'close 1006, bufferedAmount 4']);
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test("server.close(): every accepted socket's 'close' comes before the server's 'close' and its callback", async () => {
  const relay = await startLocalRelay();
  try {
    const uri = createRelayListenUri(relay.namespace, 'hc');
    const server = new RelayedServer({ server: uri, token: () => createRelayToken(uri, relay.keyName, relay.key) });
    await withTimeout(once(server, 'listening'), STEP_MS, 'the server to listen');
    const order = [];
    const accepted = new Promise((resolve) =>
      server.on('connection', (socket) => {
        // A send with a callback: the socket's 'close' then waits a tick for callbacks.
        socket.send('hello', () => {});
        socket.on('close', () => order.push('socket close'));
        resolve();
      })
    );
    // A ws 8 sender that stops reading, so that its socket closes only after the server's
    // control channel has.
    const sendUri = createRelaySendUri(relay.namespace, 'hc');
    const sender = new WebSocket(sendUri, {
      headers: { ServiceBusAuthorization: createRelayToken(sendUri, relay.keyName, relay.key) },
      perMessageDeflate: false
    });
    sender.on('error', () => {});
    await withTimeout(Promise.all([accepted, once(sender, 'message')]), STEP_MS, 'a sender accepted');
    sender.pause();
    server.on('close', () => order.push('server close'));
    const closed = new Promise((resolve) => server.close(() => resolve(order.push('callback'))));
    await waitUntil(() => relay.stats().listeners === 0, STEP_MS, 'the control channel to close');
    sender.resume();
    await withTimeout(closed, STEP_MS, 'server.close()');
    assert.deepEqual(order, ['socket close', 'server close', 'callback']);
    sender.terminate();
  } finally {
    await relay.close();
  }
});

test('a socket paused with the peer\'s close frame read: its own close() still ends it at once', async () => {
  for (const [name, connect] of Object.entries(CLIENTS)) {
    const server = await peerServer((peer) =>
      together(peer, () => {
        peer.send('hello');
        peer.close(1000);
      })
    );
    try {
      // A closing time far longer than the wait below: the close must not wait for it.
      const S = connect(server.url, { closeTimeout: 60_000 });
      S.on('error', () => {});
      const closed = new Promise((resolve) => S.once('close', resolve));
      S.on('message', () => {
        S.pause();
        S.close(1001);
      });
      const code = await withTimeout(closed, STEP_MS, `${name}: 'close' after close() while paused`);
      assert.equal(typeof code, 'number', name);
    } finally {
      await server.close();
    }
  }
});

test("a socket paused when the peer's close frame is read: what was read is emitted, and the close answered at once, as ws", async () => {
  const seen = await withEachClient(async (connect) => {
    // Read together: a close frame that comes after the pause has taken effect waits for
    // resume(), with either client.
    const server = await peerServer((peer) =>
      together(peer, () => {
        peer.send('a');
        peer.send('b');
        peer.close(1000);
      })
    );
    try {
      // Paused for good at the first message, with a closing time far longer than the wait.
      const S = connect(server.url, { closeTimeout: 60_000 });
      const got = [];
      S.on('message', (data) => {
        got.push(String(data));
        S.pause();
      });
      const closed = new Promise((resolve) => S.once('close', resolve));
      const code = await withTimeout(closed, STEP_MS, "the client's 'close' while paused");
      return { got, code, peerCode: (await server.peerClose()).code, paused: S.isPaused };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], { got: ['a', 'b'], code: 1000, peerCode: 1000, paused: true });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});

test("pause() and a quick resume() before a slow reply to the peer's last message: the reply and a clean close, as ws", async () => {
  const seen = await withEachClient(async (connect) => {
    const server = await peerServer((peer) => {
      peer.send('a');
      peer.send('b');
      peer.close(1000);
    });
    try {
      const S = connect(server.url, { closeTimeout: 100 });
      S.on('message', (data) => {
        if (String(data) === 'a') {
          S.pause();
          setTimeout(() => S.resume(), 10);
          return;
        }
        // Longer than the closing time, which has not begun on this side.
        const until = Date.now() + 400;
        while (Date.now() < until);
        S.send('reply');
      });
      const code = await withTimeout(new Promise((resolve) => S.once('close', resolve)), STEP_MS, "the client's 'close'");
      return { peerSaw: server.saw, code, peerCode: (await server.peerClose()).code };
    } finally {
      await server.close();
    }
  });
  assert.deepEqual(seen['ws 8'], { peerSaw: ['reply'], code: 1000, peerCode: 1000 });
  assert.deepEqual(seen['hyco-ws-rs'], seen['ws 8']);
});
