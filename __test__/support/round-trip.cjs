'use strict';

/**
 * One relay round trip with every layer of the package: the helpers, the local relay, a
 * RelayedServer that echoes, relayedConnect, and relayedFetch through an HTTP proxy (the
 * undici dependency's fetch; the proxy is a few lines of CONNECT here, so that it runs on
 * every Node.js the package supports). Run by the tests in another Node.js or in an
 * installed project:
 *
 *   node round-trip.cjs [module]
 *
 * `module` is what to require, `hyco-ws-rs` by default. Prints one JSON line: the Node.js
 * version, the reply, what the proxied fetch saw (`true 200 fetched:/x 1`: a Response, its
 * status and body, the proxy's CONNECTs) and the native binaries that were loaded; exits 1 on
 * any failure.
 */

const http = require('http');
const net = require('net');

const hyco = require(process.argv[2] || 'hyco-ws-rs');

/**
 * Waits for `event` on `emitter`.
 *
 * @param {EventEmitter} emitter The emitter
 * @param {String} event The event
 * @return {Promise<Array>} The event's arguments
 */
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/**
 * A minimal CONNECT proxy on 127.0.0.1 that records the tunnels asked of it.
 *
 * @return {Promise<{ server: http.Server, connects: String[], url: String }>} The proxy
 */
async function startProxy() {
  const connects = [];
  const server = http.createServer().on('connect', (req, socket, head) => {
    connects.push(req.url);
    const i = req.url.lastIndexOf(':');
    const target = net.connect(Number(req.url.slice(i + 1)), req.url.slice(0, i), () => {
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      target.write(head);
      target.pipe(socket).pipe(target);
    });
    target.on('error', () => socket.destroy());
    socket.on('error', () => target.destroy());
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, connects, url: `http://127.0.0.1:${server.address().port}` };
}

/**
 * A POST through the proxy to the server's 'request' handler.
 *
 * @param {Object} relay The local relay
 * @return {Promise<String>} `instanceof Response`, status, body and the proxy's CONNECT count
 */
async function fetchThroughProxy(relay) {
  const proxy = await startProxy();
  try {
    const url = hyco.createRelayHttpsUri(relay.namespace, 'hc/x');
    const token = hyco.createRelayToken(url, relay.keyName, relay.key);
    const res = await hyco.relayedFetch(url, { token, method: 'POST', body: 'abc', proxy: proxy.url });
    return `${res instanceof Response} ${res.status} ${await res.text()} ${proxy.connects.length}`;
  } finally {
    proxy.server.closeAllConnections();
    await new Promise((resolve) => proxy.server.close(resolve));
  }
}

/**
 * Runs the round trip.
 *
 * @return {Promise<{ reply: String, fetched: String }>} The WebSocket reply, and what the
 *     proxied fetch saw
 */
async function main() {
  const relay = await hyco.startLocalRelay();
  const server = hyco.createRelayedServer({ connectionString: relay.connectionString('hc') }, (ws) => {
    ws.on('message', (data) => ws.send(`echo:${data}`));
  });
  server.on('request', (req, res) => req.resume().on('end', () => res.end(`fetched:${req.url}`)));
  await once(server, 'listening');
  const uri = hyco.createRelaySendUri(relay.namespace, 'hc');
  const ws = hyco.relayedConnect(uri, hyco.createRelayToken(uri, relay.keyName, relay.key));
  await once(ws, 'open');
  ws.send('hi');
  const [reply] = await once(ws, 'message');
  ws.close();
  await once(ws, 'close');
  const fetched = await fetchThroughProxy(relay);
  await new Promise((resolve) => server.close(resolve));
  await relay.close();
  return { reply: String(reply), fetched };
}

// The caller's timeout bounds every wait: a hang is killed from outside.
main().then(
  ({ reply, fetched }) => {
    const binaries = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
    console.log(JSON.stringify({ node: process.version, reply, fetched, binaries }));
  },
  (err) => {
    console.error(err);
    process.exit(1);
  }
);
