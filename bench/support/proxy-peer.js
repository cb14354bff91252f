'use strict';

/**
 * The far side of `bench/proxy.js`, in a process of its own so that the sender's process
 * holds only the sender: the local relay emulator, an echoing `RelayedServer` listening on
 * it directly (no proxy), and an HTTP proxy (the npm `proxy` package, TooTallNate's) on
 * 127.0.0.1, port 0, which counts the CONNECTs it serves.
 *
 * Usage: started by bench/proxy.js with child_process.fork(); not meant to be run by hand.
 *
 * IPC: sends `{ ready: { namespace, keyName, key, proxyUrl } }` once all three are up;
 * answers `{ connects }` with `{ connects: n }` (CONNECTs served so far); on `{ shutdown }`
 * (or when the bench process goes away) closes everything and exits.
 */

const http = require('http');

const { createRelayedServer, startLocalRelay } = require('../..');
const { withTimeout } = require('./run');

const ENTITY = 'bench';
const STEP_TIMEOUT_MS = 10000;

/**
 * Starts the relay, the listener and the proxy, and serves the bench process.
 *
 * @return {Promise<void>}
 */
async function main() {
  const { createProxy } = await import('proxy');
  const relay = await startLocalRelay();
  const server = createRelayedServer({ connectionString: relay.connectionString(ENTITY) }, (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  });
  await withTimeout(new Promise((resolve) => server.once('listening', resolve)), STEP_TIMEOUT_MS, 'the listener');
  const proxy = createProxy(http.createServer());
  let connects = 0;
  const sockets = new Set();
  proxy.on('connect', (req, socket) => {
    connects++;
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  proxy.listen(0, '127.0.0.1');
  await withTimeout(new Promise((resolve) => proxy.once('listening', resolve)), STEP_TIMEOUT_MS, 'the proxy');
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    for (const s of sockets) s.destroy();
    proxy.close();
    await withTimeout(new Promise((resolve) => server.close(resolve)), STEP_TIMEOUT_MS, 'the listener to close').catch(() => {});
    await relay.close();
    process.exit(0);
  };
  process.on('message', (msg) => {
    if (msg && msg.connects) process.send({ connects });
    if (msg && msg.shutdown) stop();
  });
  process.on('disconnect', stop);
  process.send({
    ready: {
      namespace: relay.namespace,
      keyName: relay.keyName,
      key: relay.key,
      proxyUrl: `http://127.0.0.1:${proxy.address().port}`
    }
  });
}

main().catch((err) => {
  console.error(`bench/support/proxy-peer.js failed: ${err.stack || err.message}`);
  process.exit(1);
});
