'use strict';

/**
 * The client sockets of the benchmarks: the plain ws 8 senders of `bench/listener.js` (in
 * the bench process and in its sender child, `bench/support/connect-sender-peer.js`) and
 * the clients of `bench/sender.js`: tracking them, opening a sender, proving a connection
 * with an echo, waiting for a close, and closing whatever is left.
 *
 * Usage: `const senders = require('./support/senders');` (a library, not run by hand).
 */

const crypto = require('crypto');

const { WebSocket } = require('../..');
const { withTimeout } = require('./run');

/** Bytes of the echo that proves a connection. */
const PROBE_SIZE = 16;

/** Every sender opened here and not closed yet, so that all of them are closed whatever happens. */
const sockets = new Set();

/**
 * Remembers a socket (ws 8 or hyco-ws-rs) until it closes, for the final cleanup, and
 * keeps its last error in `ws.lastError` (so that an 'error' never goes unhandled).
 *
 * @param {WebSocket} ws The socket
 * @return {WebSocket} `ws`
 */
function track(ws) {
  ws.lastError = null;
  ws.on('error', (err) => {
    ws.lastError = err;
  });
  sockets.add(ws);
  ws.once('close', () => sockets.delete(ws));
  return ws;
}

/**
 * Opens a plain ws 8 sender and tracks it (see `track`). The caller starts the clock just
 * before this.
 *
 * @param {String} uri The send address
 * @param {String} token The SAS token
 * @return {WebSocket} The socket, connecting
 */
function openSender(uri, token) {
  return track(new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: false }));
}

/**
 * Resolves with the close code once `ws` has closed.
 *
 * @param {WebSocket} ws The socket
 * @return {Promise<Number>} The close code (1006 if it was already closed)
 */
function closed(ws) {
  if (ws.readyState === WebSocket.CLOSED) return Promise.resolve(1006);
  return new Promise((resolve) => ws.once('close', (code) => resolve(code)));
}

/**
 * Closes a socket cleanly, or terminates it if that does not finish in time.
 *
 * @param {WebSocket} ws The socket
 * @param {Number} timeoutMs How long a clean close may take
 * @return {Promise<void>}
 */
async function closeSocket(ws, timeoutMs) {
  if (ws.readyState === WebSocket.CLOSED) return;
  if (ws.readyState === WebSocket.OPEN) ws.close(1000);
  else if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
  try {
    await withTimeout(closed(ws), timeoutMs, 'a socket to close');
  } catch {
    ws.terminate();
  }
}

/**
 * Closes every sender still open here.
 *
 * @param {Number} timeoutMs How long each clean close may take
 * @return {Promise<void>}
 */
function closeAll(timeoutMs) {
  return Promise.all([...sockets].map((ws) => closeSocket(ws, timeoutMs)));
}

/**
 * Proves a connection end to end: sends 16 bytes starting with the sender's number (the
 * listener checks it) and waits for the identical echo.
 *
 * @param {WebSocket} ws An open sender
 * @param {Number} n Its number
 * @param {String} what Its role, for messages
 * @param {Number} timeoutMs How long the echo may take
 * @return {Promise<void>}
 */
function probe(ws, n, what, timeoutMs) {
  const payload = crypto.randomBytes(PROBE_SIZE);
  payload.writeUInt32BE(n, 0);
  const echoed = new Promise((resolve, reject) => {
    const onMessage = (data, isBinary) => {
      cleanup();
      if (isBinary && payload.equals(data)) resolve();
      else reject(new Error(`${what}: the echo differs from what was sent (${data.length} bytes, binary ${isBinary})`));
    };
    const onClose = (code) => {
      cleanup();
      reject(new Error(`${what}: closed (${code}) before the echo`));
    };
    const cleanup = () => {
      ws.removeListener('message', onMessage);
      ws.removeListener('close', onClose);
    };
    ws.on('message', onMessage);
    ws.on('close', onClose);
  });
  ws.send(payload, { binary: true, compress: false });
  return withTimeout(echoed, timeoutMs, `${what}'s echo`);
}

module.exports = { closeAll, closeSocket, closed, openSender, probe, track };
