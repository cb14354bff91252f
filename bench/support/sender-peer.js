'use strict';

/**
 * The far side of `bench/sender.js`, in a child process of its own so that the parent
 * process contains only the clients under test (and `process.cpuUsage()` there counts
 * nothing else): the local relay emulator, a hand-written ws 8 Hybrid Connections listener
 * on it (control channel + one accept socket per sender), and a plain ws 8
 * `WebSocketServer` on 127.0.0.1 for the direct (no relay) pair.
 *
 * Usage: started by bench/sender.js with child_process.fork(); not meant to be run by hand.
 *
 * IPC: once everything listens, sends the parent
 *   `{ ready: { namespace, keyName, key, directPort } }`;
 * on `{ shutdown: true }` (or when the parent goes away) closes everything and exits.
 *
 * Each connection's behaviour comes from the `mode` query parameter of its address (the
 * accept address carries the sender's application query; the direct server sees the
 * request URL):
 *   - `echo`: every message is sent back at once, with the same binary flag.
 *   - `sink` (the default): binary messages are counted and checked; text messages are
 *     JSON commands:
 *       `{"expect":{"id":N,"count":C,"size":S}}` starts a round: C binary messages of S bytes
 *         follow, message i starting with byte `i & 0xff`, the rest in the pattern
 *         `(j * 31 + 7) & 0xff` (j = offset); when the C-th arrives the peer answers
 *         `{"report":{"id","received","bytes","errors","firstError","stray"}}`;
 *       `{"status":N}` answers the same report at once (for a round that seems stuck).
 *     `stray` counts binary messages that arrived outside a round or beyond its count.
 * The checks are cheap on purpose (length, first and last byte of every message, every 64th
 * message in full) so that the peer is not the bottleneck, yet a broken path cannot pass.
 */

const {
  startLocalRelay,
  createRelayListenUri,
  createRelayToken,
  WebSocket,
  WebSocketServer
} = require('../..');

const ENTITY = 'bench';
const FULL_CHECK_EVERY = 64;
const SEND_OPTIONS_BINARY = { binary: true, compress: false };
const SEND_OPTIONS_TEXT = { binary: false, compress: false };

/** Every socket this process opens or accepts, for the shutdown. */
const sockets = new Set();
/** The expected message bodies (all but the first byte), by size. */
const bodies = new Map();
let shuttingDown = false;

/**
 * The part of a payload of `size` bytes after its first byte, as the parent builds it.
 *
 * @param {Number} size The payload size
 * @return {Buffer} Bytes 1 to size - 1
 */
function expectedBody(size) {
  let body = bodies.get(size);
  if (!body) {
    body = Buffer.allocUnsafe(Math.max(0, size - 1));
    for (let i = 1; i < size; i++) body[i - 1] = (i * 31 + 7) & 0xff;
    bodies.set(size, body);
  }
  return body;
}

/**
 * The `mode` query parameter of a URL (absolute or a request target).
 *
 * @param {String} url The URL
 * @return {String} `echo` or `sink`
 */
function modeOf(url) {
  const mode = new URL(url, 'ws://localhost/').searchParams.get('mode');
  return mode === 'echo' ? 'echo' : 'sink';
}

/**
 * Makes `ws` behave as `mode` says (see the header).
 *
 * @param {WebSocket} ws An open or opening socket (the listener's accept socket, or a
 *     direct server connection)
 * @param {String} mode `echo` or `sink`
 */
function attachPeer(ws, mode) {
  sockets.add(ws);
  ws.on('error', () => {});
  ws.on('close', () => sockets.delete(ws));
  if (mode === 'echo') {
    ws.on('message', (data, isBinary) => ws.send(data, isBinary ? SEND_OPTIONS_BINARY : SEND_OPTIONS_TEXT));
    return;
  }

  let id = null;
  let count = 0;
  let size = 0;
  let body = null;
  let tail = 0;
  let received = 0;
  let bytes = 0;
  let errors = 0;
  let firstError = null;
  let stray = 0;

  const report = () => {
    const msg = { report: { id, received, bytes, errors, firstError, stray } };
    ws.send(JSON.stringify(msg), SEND_OPTIONS_TEXT);
  };
  const error = (what) => {
    errors++;
    if (firstError === null) firstError = `message ${received}: ${what}`;
  };

  ws.on('message', (data, isBinary) => {
    if (!isBinary) {
      let cmd;
      try {
        cmd = JSON.parse(String(data));
      } catch {
        errors++;
        if (firstError === null) firstError = 'a text message that is not JSON';
        return;
      }
      if (cmd.expect) {
        ({ id, count, size } = cmd.expect);
        body = expectedBody(size);
        tail = size > 1 ? body[size - 2] : 0;
        received = 0;
        bytes = 0;
        errors = 0;
        firstError = null;
      } else if (cmd.status !== undefined) {
        report();
      }
      return;
    }
    if (id === null || received >= count) {
      stray++;
      return;
    }
    const len = data.length;
    if (len !== size) error(`${len} bytes, expected ${size}`);
    else if (data[0] !== (received & 0xff)) error(`first byte ${data[0]}: lost, reordered or corrupt`);
    else if (size > 1 && data[len - 1] !== tail) error('corrupt last byte');
    else if (received % FULL_CHECK_EVERY === 0 && !data.subarray(1).equals(body)) error('corrupt');
    received++;
    bytes += len;
    if (received === count) report();
  });
}

/**
 * Opens the Hybrid Connections listener on the relay: a control channel whose accepts each
 * open an accept socket.
 *
 * @param {LocalRelay} relay The running local relay
 * @return {Promise<WebSocket>} The open control channel
 */
function listen(relay) {
  const uri = createRelayListenUri(relay.namespace, ENTITY);
  const control = new WebSocket(uri, {
    headers: { ServiceBusAuthorization: createRelayToken(uri, relay.keyName, relay.key) },
    perMessageDeflate: false
  });
  sockets.add(control);
  control.on('message', (data) => {
    let msg;
    try {
      msg = JSON.parse(String(data));
    } catch {
      console.error(`bench/support/sender-peer.js: control channel sent non-JSON: ${String(data).slice(0, 200)}`);
      return;
    }
    if (!msg.accept) return;
    const address = msg.accept.address;
    attachPeer(new WebSocket(address, { perMessageDeflate: false }), modeOf(address));
  });
  return new Promise((resolve, reject) => {
    control.once('open', () => {
      control.on('close', (code) => {
        if (shuttingDown) return;
        console.error(`bench/support/sender-peer.js: the control channel closed (${code})`);
        process.exit(1);
      });
      resolve(control);
    });
    control.once('error', reject);
    control.once('close', (code) => reject(new Error(`control channel closed (${code}) before opening`)));
  });
}

/**
 * Starts the direct server on 127.0.0.1, port 0.
 *
 * @return {Promise<WebSocketServer>} The listening server
 */
function serveDirect() {
  const server = new WebSocketServer({ port: 0, host: '127.0.0.1', perMessageDeflate: false });
  server.on('connection', (ws, req) => attachPeer(ws, modeOf(req.url)));
  return new Promise((resolve, reject) => {
    server.once('listening', () => resolve(server));
    server.once('error', reject);
  });
}

/**
 * Starts everything, tells the parent, and shuts down when asked.
 *
 * @return {Promise<void>}
 */
async function main() {
  const relay = await startLocalRelay();
  const control = await listen(relay);
  const server = await serveDirect();

  /**
   * Closes everything and exits (a stuck close is cut short).
   *
   * @return {Promise<void>}
   */
  const shutdown = async () => {
    if (shuttingDown) return;
    shuttingDown = true;
    setTimeout(() => process.exit(0), 3000).unref();
    control.close(1000);
    for (const ws of sockets) ws.terminate();
    await new Promise((resolve) => server.close(() => resolve()));
    await relay.close();
    process.exit(0);
  };
  process.on('message', (msg) => {
    if (msg && msg.shutdown) shutdown();
  });
  process.on('disconnect', shutdown);
  process.send({
    ready: { namespace: relay.namespace, keyName: relay.keyName, key: relay.key, directPort: server.address().port }
  });
}

main().catch((err) => {
  console.error(`bench/support/sender-peer.js failed: ${err.stack || err.message}`);
  process.exit(1);
});
