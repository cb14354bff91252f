// What ws 8's own client does when a server breaks the protocol, checked against the table in
// fixtures/socket-failures.json, which core/tests/socket_failures.rs holds this package's Rust
// client to: ws is the contract, and one table keeps the two expectations from drifting.
//
// A raw `net` server completes the handshake by hand, then writes in one write the messages
// before the bad frame, the bad frame and more frames after it; it reads the client's masked
// frames until the close frame, and ends the connection.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

import WebSocket from 'ws';

const require = createRequire(import.meta.url);
// ws exports neither its package.json nor its constants: read the one from its folder, and
// find the close-code symbol (`kStatusCode`) on the error by its description.
const wsVersion = JSON.parse(
  readFileSync(new URL('package.json', pathToFileURL(require.resolve('ws'))), 'utf8')
).version;

/**
 * The close code ws attached to a protocol error.
 *
 * @param {Error} err
 */
function statusCodeOf(err) {
  const key = Object.getOwnPropertySymbols(err).find((s) => s.description === 'status-code');
  return key === undefined ? undefined : err[key];
}

const table = JSON.parse(
  readFileSync(new URL('./fixtures/socket-failures.json', import.meta.url), 'utf8')
);

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const CASE_MS = 10_000;

/**
 * The frames a client sent, unmasked: `{ opcode, payload }` for each whole frame in `buf`,
 * and the bytes left over.
 *
 * @param {Buffer} buf
 * @returns {{ frames: { opcode: number, payload: Buffer }[], rest: Buffer }}
 */
function clientFrames(buf) {
  const frames = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    const opcode = buf[pos] & 0x0f;
    let len = buf[pos + 1] & 0x7f;
    let at = pos + 2;
    if (len === 126) {
      if (buf.length - at < 2) break;
      len = buf.readUInt16BE(at);
      at += 2;
    } else if (len === 127) {
      if (buf.length - at < 8) break;
      len = Number(buf.readBigUInt64BE(at));
      at += 8;
    }
    assert.ok(buf[pos + 1] & 0x80, 'client frames are masked');
    if (buf.length - at < 4 + len) break;
    const mask = buf.subarray(at, at + 4);
    const payload = Buffer.from(buf.subarray(at + 4, at + 4 + len));
    for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
    frames.push({ opcode, payload });
    pos = at + 4 + len;
  }
  return { frames, rest: buf.subarray(pos) };
}

/**
 * Runs one case against a ws client: resolves with what the client delivered, reported,
 * sent and closed with.
 *
 * @param {Buffer} wire The bytes written in one write after the 101 response.
 */
async function runCase(wire) {
  let sentCode;
  const server = net.createServer((socket) => {
    let head = Buffer.alloc(0);
    let upgraded = false;
    let rest = Buffer.alloc(0);
    socket.on('data', (chunk) => {
      if (!upgraded) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const key = /^sec-websocket-key:\s*(\S+)/im.exec(head.subarray(0, end).toString())[1];
        const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
        socket.write(
          'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
            `Sec-WebSocket-Accept: ${accept}\r\n\r\n`
        );
        upgraded = true;
        socket.write(wire);
        chunk = head.subarray(end + 4);
      }
      rest = Buffer.concat([rest, chunk]);
      const parsed = clientFrames(rest);
      rest = parsed.rest;
      for (const f of parsed.frames) {
        if (f.opcode === 0x8 && sentCode === undefined) {
          sentCode = f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 1005;
          socket.end();
        }
      }
    });
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`);
    const events = [];
    let error = null;
    const closed = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no close in time')), CASE_MS);
      ws.on('message', (data, binary) =>
        events.push({ type: 'message', binary, hex: Buffer.from(data).toString('hex') })
      );
      ws.on('ping', (data) => events.push({ type: 'ping', hex: data.toString('hex') }));
      ws.on('error', (err) => {
        assert.equal(error, null, 'one error at most');
        error = err;
        events.push({ type: 'error' });
      });
      ws.on('close', (code, reason) => {
        clearTimeout(timer);
        resolve({ code, reason: reason.toString() });
      });
    });
    const close = await closed;
    return { events, error, close, sentCode };
  } finally {
    server.close();
  }
}

describe(`ws ${wsVersion} on a protocol error (fixtures/socket-failures.json)`, () => {
  test('the table is for ws 8, the version installed', () => {
    assert.match(wsVersion, /^8\./);
    assert.ok(table.cases.length >= 15);
  });

  for (const c of table.cases) {
    test(c.name, async () => {
      const wire = Buffer.from(table.before.hex + c.bad + table.after.hex, 'hex');
      const got = await runCase(wire);
      const expected = [...table.before.events, ...(c.events ?? [])];
      if (c.error) expected.push({ type: 'error' });
      // The messages before the bad frame come first and in order, then the error, and
      // nothing of what followed the bad frame.
      assert.deepEqual(got.events, expected);
      if (c.error) {
        assert.equal(got.error.code, c.error.code);
        assert.equal(got.error.message, c.error.message);
        assert.equal(statusCodeOf(got.error), c.error.closeCode);
        assert.equal(got.error instanceof RangeError, c.error.rangeError);
      }
      assert.equal(got.sentCode, c.sentCode, 'the close code the client sent');
      assert.equal(got.close.code, c.closeCode);
      assert.equal(got.close.reason, c.closeReason ?? '');
    });
  }
});
