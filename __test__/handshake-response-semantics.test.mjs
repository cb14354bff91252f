// How ws 8's own client judges the server's response to its opening handshake, checked against
// the table in fixtures/handshake-responses.json, which core/tests/parser_robustness.rs holds
// this package's handshake checks to: ws (on Node.js's HTTP parser) is the contract.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { readFileSync } from 'node:fs';

import WebSocket from 'ws';

const table = JSON.parse(
  readFileSync(new URL('./fixtures/handshake-responses.json', import.meta.url), 'utf8')
);

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/**
 * Answers one client's handshake with `c`'s response; resolves with 'open' or ws's error
 * message.
 *
 * @param {{ status: string, headers: string[], protocols: string[] }} c
 */
async function outcome(c) {
  const server = net.createServer((socket) => {
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk;
      if (!head.includes('\r\n\r\n')) return;
      const key = /^sec-websocket-key:\s*(\S+)/im.exec(head)[1];
      const accept = crypto.createHash('sha1').update(key + GUID).digest('base64');
      const lines = c.headers.map((h) => h.replaceAll('{accept}', accept));
      socket.write([c.status, ...lines, '', ''].join('\r\n'));
    });
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const ws = new WebSocket(`ws://127.0.0.1:${server.address().port}/`, c.protocols, {
      perMessageDeflate: false
    });
    return await new Promise((resolve) => {
      ws.on('open', () => {
        ws.terminate();
        resolve('open');
      });
      ws.on('error', (err) => resolve(err.message));
    });
  } finally {
    server.close();
  }
}

describe('ws on handshake responses (fixtures/handshake-responses.json)', () => {
  for (const c of table.cases) {
    test(c.name, async () => {
      assert.equal(await outcome(c), c.error ?? 'open');
    });
  }
});
