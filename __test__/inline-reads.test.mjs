// Inline reads (issue #14): while a socket's traffic is sparse, its connection's task hands
// reading to the JavaScript thread, which watches the socket (a libuv poll handle on a
// duplicate of its descriptor) and reads it itself; bulk transfers, pauses, backpressure and
// the close go back to the task. Whoever reads, the socket must behave exactly as before:
// every message once and in order, nothing while paused, pings answered, protocol errors
// failing the connection as ws does, the peer seeing the close at once, and every duplicate
// descriptor released. The peer is a plain ws 8 server on 127.0.0.1, or a raw TCP server
// speaking the protocol where ws cannot misbehave on purpose.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { createRequire } from 'node:module';
import crypto from 'node:crypto';

import { WebSocketServer } from 'ws';
import { relayedConnect } from 'hyco-ws-rs';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import { openFds, watched } from './support/inline-steps.mjs';
import { PACKAGE_DIR, runNode, describeChild } from './support/socket-steps.mjs';
import { selfSignedCert } from './support/proxy-steps.mjs';
import https from 'node:https';

const require = createRequire(import.meta.url);
const { native } = require('../lib/native-events.js');

const MiB = 1024 * 1024;
const linux = process.platform === 'linux';

/**
 * A ws 8 server on 127.0.0.1 whose connections echo every message, unless `onConnection`
 * takes them.
 *
 * @param {(peer: any) => void} [onConnection] What to do with each connection.
 * @returns {Promise<{ url: string, peers: any[], close: () => Promise<void> }>}
 */
async function echoServer(onConnection) {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  await once(wss, 'listening');
  const peers = [];
  wss.on('connection', (peer) => {
    peers.push(peer);
    if (onConnection) onConnection(peer);
    else peer.on('message', (data, binary) => peer.send(data, { binary }));
  });
  return {
    url: `ws://127.0.0.1:${wss.address().port}/`,
    peers,
    close: async () => {
      for (const p of wss.clients) p.terminate();
      await new Promise((resolve) => wss.close(resolve));
    }
  };
}

/**
 * Opens a socket to `url`.
 *
 * @param {string} url The server.
 * @returns {Promise<any>}
 */
async function open(url) {
  const S = relayedConnect(url, undefined, { perMessageDeflate: false });
  await withTimeout(once(S, 'open'), STEP_MS, 'the socket to open');
  return S;
}

/**
 * Sends `count` small messages one at a time, each after the echo of the one before: sparse
 * traffic. Resolves with the echoes' texts.
 *
 * @param {any} S The socket.
 * @param {number} count How many.
 * @param {string} tag A prefix.
 * @returns {Promise<string[]>}
 */
async function pingPong(S, count, tag) {
  const got = [];
  for (let i = 0; i < count; i++) {
    const echo = withTimeout(once(S, 'message'), STEP_MS, `echo ${i} (${tag})`);
    S.send(`${tag}-${i}`);
    const [data] = await echo;
    got.push(String(data));
  }
  return got;
}

/** A message of `size` bytes carrying `seq` first. */
function numbered(seq, size) {
  const b = Buffer.alloc(size, seq & 0xff);
  b.writeUInt32BE(seq, 0);
  return b;
}

describe('inline reads', () => {
  test('sparse echoes are read on the JS thread, bulk on the task, and everything arrives once, in order', async () => {
    const server = await echoServer();
    try {
      const S = await open(server.url);
      const echoes = await pingPong(S, 50, 'a');
      assert.deepEqual(echoes, Array.from({ length: 50 }, (_, i) => `a-${i}`));
      // Inline reads are Unix only; elsewhere the task reads everything.
      if (process.platform !== 'win32') assert.equal(watched(), 1, 'the socket is read inline');

      // Bulk both ways in one burst: large messages among small ones, then small again.
      const sizes = [];
      for (let i = 0; i < 40; i++) sizes.push(i % 4 === 1 ? MiB : i % 4 === 3 ? 70000 : 16);
      const seqs = [];
      const lens = [];
      const all = new Promise((resolve) => {
        S.on('message', function onMessage(data) {
          seqs.push(data.readUInt32BE(0));
          lens.push(data.length);
          if (seqs.length === sizes.length) {
            S.off('message', onMessage);
            resolve();
          }
        });
      });
      sizes.forEach((size, i) => S.send(numbered(i, size)));
      await withTimeout(all, STEP_MS * 4, 'the burst to come back');
      assert.deepEqual(seqs, sizes.map((_, i) => i));
      assert.deepEqual(lens, sizes);

      const after = await pingPong(S, 20, 'b');
      assert.deepEqual(after, Array.from({ length: 20 }, (_, i) => `b-${i}`));
      if (process.platform !== 'win32') {
        await waitUntil(() => watched() === 1, STEP_MS, () => `read inline again (${watched()})`);
      }
      S.close(1000, 'done');
      const [code] = await withTimeout(once(S, 'close'), STEP_MS, 'the close');
      assert.equal(code, 1000);
      // The socket's last event stops watching it.
      assert.equal(watched(), 0);
    } finally {
      await server.close();
    }
  });

  test('a lone message, with many sockets opening at once: each socket is read inline after it', { skip: process.platform === 'win32' && 'inline reads are Unix only' }, async () => {
    // The task offers reading in its turn; a delivery of other sockets' events running then
    // took the offer while the turn still held the connection's lock, found it busy and
    // declined it, and with nothing more to read no later turn offered again.
    const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await once(wss, 'listening');
    wss.on('connection', (peer) => peer.send('hello'));
    const sockets = [];
    try {
      for (let round = 0; round < 3; round++) {
        const batch = Array.from({ length: 20 }, () => relayedConnect(`ws://127.0.0.1:${wss.address().port}/`, null, { perMessageDeflate: false }));
        sockets.push(...batch);
        await withTimeout(Promise.all(batch.map((S) => once(S, 'message'))), STEP_MS, 'every first message');
        await waitUntil(() => watched() === sockets.length, STEP_MS, () => `every socket read inline (${watched()} of ${sockets.length})`);
      }
    } finally {
      for (const S of sockets) S.terminate();
      await waitUntil(() => watched() === 0, STEP_MS, 'no socket watched');
      wss.close();
    }
  });

  test('over TLS: several answers per message, each read whether it is in the socket or already in the TLS session', async () => {
    // A TLS session decrypts what the socket had and may keep records the socket no longer
    // shows as readable: reading must not change hands with records left in it. The peer
    // answers each message with 1 to 5 messages in one tick (often one segment, several
    // records), so hand-overs meet records already read from the socket.
    const cert = selfSignedCert();
    const srv = https.createServer({ cert: cert.cert, key: cert.key });
    const wss = new WebSocketServer({ server: srv, perMessageDeflate: false });
    wss.on('connection', (peer) => {
      peer.on('message', (data) => {
        const [round, count] = String(data).split(' ').map(Number);
        for (let i = 0; i < count; i++) peer.send(`${round}.${i}`);
      });
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const S = relayedConnect(`wss://127.0.0.1:${srv.address().port}/`, undefined, { ca: cert.cert, perMessageDeflate: false });
      await withTimeout(once(S, 'open'), STEP_MS, 'the socket to open');
      const got = [];
      let want = 0;
      let wake = null;
      S.on('message', (d) => {
        got.push(String(d));
        if (got.length >= want && wake) wake();
      });
      let sawInline = false;
      for (let round = 0; round < 300; round++) {
        const count = 1 + (round % 5);
        want += count;
        const all = new Promise((resolve) => {
          wake = resolve;
          if (got.length >= want) resolve();
        });
        S.send(`${round} ${count}`);
        await withTimeout(all, STEP_MS, `the ${count} answer(s) of round ${round} (${got.length} of ${want} so far)`);
        if (watched() > 0) sawInline = true;
      }
      const expected = [];
      for (let round = 0; round < 300; round++) for (let i = 0; i < 1 + (round % 5); i++) expected.push(`${round}.${i}`);
      assert.deepEqual(got, expected);
      if (process.platform !== 'win32') assert.ok(sawInline, 'the socket was read inline');
      S.close();
      await withTimeout(once(S, 'close'), STEP_MS, 'the close');
    } finally {
      for (const c of wss.clients) c.terminate();
      srv.close();
      cert.remove();
    }
  });

  test('pause() while read inline: no message until resume(), then all of them in order', async () => {
    const server = await echoServer((peer) => {
      peer.on('message', (data) => {
        if (String(data) === 'burst') {
          for (let i = 0; i < 20; i++) peer.send(`m-${i}`);
          peer.send('last', () => peer.send('written'));
        } else peer.send(data);
      });
    });
    try {
      const S = await open(server.url);
      await pingPong(S, 5, 'warm');
      const got = [];
      S.on('message', (d) => got.push(String(d)));
      S.pause();
      S.send('burst');
      // The peer's messages are written to the socket; none may be delivered while paused.
      await waitUntil(() => server.peers[0].bufferedAmount === 0, STEP_MS, () => "the peer's messages written");
      // An observation window, only to prove an absence (as expectNoEvent does): it orders
      // no step.
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(got, [], 'a message while paused');
      S.resume();
      await waitUntil(() => got.includes('written'), STEP_MS, () => `the messages after resume() (${got.length})`);
      assert.deepEqual(got, [...Array.from({ length: 20 }, (_, i) => `m-${i}`), 'last', 'written']);
      S.terminate();
      await withTimeout(once(S, 'close'), STEP_MS, 'the close');
    } finally {
      await server.close();
    }
  });

  test("the peer's pings are answered while read inline, and its pongs reported", async () => {
    const server = await echoServer();
    try {
      const S = await open(server.url);
      await pingPong(S, 5, 'warm');
      const peer = server.peers[0];
      for (let i = 0; i < 10; i++) {
        const pong = withTimeout(once(peer, 'pong'), STEP_MS, `the pong to ping ${i}`);
        const ping = withTimeout(once(S, 'ping'), STEP_MS, `ping ${i} at S`);
        peer.ping(`p${i}`);
        const [[data], [pongData]] = await Promise.all([ping, pong]);
        assert.equal(String(data), `p${i}`);
        assert.equal(String(pongData), `p${i}`);
      }
      S.terminate();
      await withTimeout(once(S, 'close'), STEP_MS, 'the close');
    } finally {
      await server.close();
    }
  });

  test('a bad frame read inline fails the connection as ws does: the messages before it, an error, close 1006', async () => {
    // A raw server: the handshake, an echo of each text frame, and on "bad" a valid message
    // followed by a frame with a reserved opcode in the same write.
    const received = [];
    let closeFrame = null;
    const srv = net.createServer((sock) => {
      let buf = Buffer.alloc(0);
      let upgraded = false;
      sock.on('data', (chunk) => {
        buf = Buffer.concat([buf, chunk]);
        if (!upgraded) {
          const end = buf.indexOf('\r\n\r\n');
          if (end < 0) return;
          const key = /sec-websocket-key: *(\S+)/i.exec(buf.subarray(0, end).toString())[1];
          const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
          sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
          buf = buf.subarray(end + 4);
          upgraded = true;
        }
        // Client frames: short, masked.
        while (buf.length >= 6 && buf.length >= 6 + (buf[1] & 0x7f)) {
          const op = buf[0] & 0x0f;
          const len = buf[1] & 0x7f;
          const mask = buf.subarray(2, 6);
          const payload = Buffer.from(buf.subarray(6, 6 + len).map((b, i) => b ^ mask[i % 4]));
          buf = buf.subarray(6 + len);
          if (op === 8) {
            // As a server does after the client's close: end the connection.
            closeFrame = payload;
            sock.end();
            return;
          }
          const text = payload.toString();
          received.push(text);
          if (text === 'bad') sock.write(Buffer.concat([Buffer.from([0x81, 6]), Buffer.from('before'), Buffer.from([0x83, 0])]));
          else sock.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
        }
      });
      sock.on('error', () => {});
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    try {
      const S = await open(`ws://127.0.0.1:${srv.address().port}/`);
      await pingPong(S, 5, 'warm');
      if (process.platform !== 'win32') assert.equal(watched(), 1, 'the socket is read inline');
      const events = [];
      S.on('message', (d) => events.push(`message ${d}`));
      S.on('error', (e) => events.push(`error ${e.code}`));
      // (Not events.once: it would reject on the 'error' that comes first.)
      const closed = withTimeout(new Promise((resolve) => S.once('close', resolve)), STEP_MS, 'the close');
      S.send('bad');
      const code = await closed;
      assert.equal(code, 1006);
      assert.deepEqual(events, ['message before', 'error WS_ERR_INVALID_OPCODE']);
      await waitUntil(() => closeFrame !== null, STEP_MS, () => 'the close frame at the server');
      assert.equal(closeFrame.readUInt16BE(0), 1002);
    } finally {
      srv.close();
    }
  });

  test('terminate() and the peer going away end inline-read connections at once, and release every descriptor', { skip: !linux && 'descriptors are counted in /proc' }, async () => {
    const server = await echoServer();
    try {
      const before = openFds();
      const base = watched();
      const sockets = [];
      for (let i = 0; i < 30; i++) {
        const S = await open(server.url);
        await pingPong(S, 2, `s${i}`);
        sockets.push(S);
      }
      assert.equal(watched() - base, 30, 'every socket read inline');
      // Half end here (terminate): the peer must see its socket closed (the duplicate
      // descriptor must not keep the connection open); the other half are ended by the peer.
      const peerClosed = server.peers.slice(0, 15).map((p, i) => withTimeout(once(p, 'close'), STEP_MS, `peer ${i} closed`));
      const closes = sockets.map((S, i) => withTimeout(once(S, 'close'), STEP_MS, `socket ${i} closed`));
      sockets.slice(0, 15).forEach((S) => S.terminate());
      server.peers.slice(15).forEach((p) => p.terminate());
      await Promise.all([...peerClosed, ...closes]);
      assert.equal(watched(), base);
      await waitUntil(() => openFds() <= before, STEP_MS, () => `descriptors back to ${before} (${openFds()})`);
    } finally {
      await server.close();
    }
  });

  test("a connection read inline closes even while the event loop is blocked (the watch's duplicate descriptor does not hold it open)", { skip: process.platform === 'win32' && 'inline reads are Unix only' }, async () => {
    // The peer runs in a process of its own and marks a file when its connection closes; the
    // test blocks its own loop right after terminate(), so only the native side can close it.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'inline-close-'));
    const marker = path.join(dir, 'closed');
    const script = `
      const { WebSocketServer } = require(${JSON.stringify(require.resolve('ws'))});
      const fs = require('fs');
      const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
      wss.on('listening', () => console.log('port ' + wss.address().port));
      wss.on('connection', (peer) => {
        peer.on('message', (data) => peer.send(data));
        peer.on('close', () => fs.writeFileSync(${JSON.stringify(marker)}, 'closed'));
      });
      process.stdin.on('end', () => process.exit(0)).resume();
    `;
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const [line] = await withTimeout(once(child.stdout.setEncoding('utf8'), 'data'), STEP_MS, "the peer's port");
      const S = await open(`ws://127.0.0.1:${/port (\d+)/.exec(line)[1]}/`);
      await pingPong(S, 5, 'warm');
      assert.equal(watched() > 0, true, 'read inline');
      S.terminate();
      // Blocked: no callback of this process runs until the loop below ends.
      const until = Date.now() + STEP_MS;
      while (!fs.existsSync(marker) && Date.now() < until);
      assert.ok(fs.existsSync(marker), 'the peer saw the connection close while the event loop was blocked');
      await withTimeout(once(S, 'close'), STEP_MS, 'the close');
    } finally {
      child.stdin.end();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('HYCO_WS_RS_INLINE_READS=0 leaves reading to the task; the echo works either way', async () => {
    const server = await echoServer();
    try {
      const script = `
        const { relayedConnect } = require(${JSON.stringify(PACKAGE_DIR)});
        const { native } = require(${JSON.stringify(PACKAGE_DIR + '/lib/native-events.js')});
        const S = relayedConnect(${JSON.stringify(server.url)}, undefined, { perMessageDeflate: false });
        let n = 0;
        S.on('open', () => S.send('m0'));
        S.on('message', (d) => {
          if (String(d) !== 'm' + n) throw new Error('out of order: ' + d);
          if (++n < 20) return S.send('m' + n);
          console.log(JSON.stringify({ echoes: n, watched: native.liveCounts().watched }));
          S.close();
        });
      `;
      for (const [value, watchedWhenOn] of [['0', 0], ['1', process.platform === 'win32' ? 0 : 1]]) {
        const r = await runNode(script, { env: { HYCO_WS_RS_INLINE_READS: value } }).done;
        assert.equal(r.code, 0, describeChild(r));
        const out = JSON.parse(r.stdout.trim().split('\n').pop());
        assert.deepEqual(out, { echoes: 20, watched: watchedWhenOn }, `HYCO_WS_RS_INLINE_READS=${value}`);
      }
    } finally {
      await server.close();
    }
  });
});
