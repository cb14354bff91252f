// Interoperability with Microsoft's hyco-https 1.4.5 (npm), through the local relay
// emulator: their listener, with Node's fetch as the sender (GET, a POST with a body, a
// response over the control channel's 64 kB). And `hyco-ws-rs/https`, the replacement: code
// written for hyco-https with only its require changed.
//
// hyco-https replaces Node's `https.Server` for the whole process when it loads; this file
// runs in a process of its own (as every test file does under node --test).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import https from 'node:https';

import { createRelayHttpsUri, createRelayListenUri, createRelayToken, startLocalRelay } from 'hyco-ws-rs';

import { sha256 } from './support/http-steps.mjs';
import { withTimeout } from './support/relay-steps.mjs';

const require = createRequire(import.meta.url);
const WAIT = 15000;

let relay;
before(async () => {
  relay = await withTimeout(startLocalRelay(), WAIT, 'startLocalRelay()');
});
after(() => relay.close());

/**
 * Starts a listener with a hyco-https-style API and an echo handler; resolves once it
 * listens. The handler answers `size=N` with N bytes, else with what it received.
 *
 * @param {any} api `require('hyco-https')` or `require('hyco-ws-rs/https')`
 * @param {string} path The Hybrid Connection
 * @returns {Promise<any>} The server
 */
async function echoServer(api, path) {
  // hyco-https builds addresses from a bare namespace only (`wss://{ns}:443/…`); the local
  // relay's namespace is `ws://127.0.0.1:PORT`, so the address comes from hyco-ws-rs.
  const listenUri = createRelayListenUri(relay.namespace, path);
  const server = api.createRelayedServer(
    { server: listenUri, token: () => api.createRelayToken(listenUri, relay.keyName, relay.key) },
    (req, res) => {
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks);
        const size = Number(new URL(req.url, 'http://x').searchParams.get('size') || 0);
        const out = size > 0 ? Buffer.alloc(size, 'x') : body;
        res.setHeader('Content-Type', 'application/octet-stream');
        res.setHeader('X-Method', req.method);
        res.setHeader('X-Received-Sha', sha256(body));
        // hyco-https never sends a response ended with an empty Buffer: an empty body is
        // ended with no chunk at all.
        res.end(out.length > 0 ? out : undefined);
      });
    }
  );
  const listening = new Promise((resolve) => server.on('listening', resolve));
  // hyco-https opens its control channel in listen() (ours listens from its construction,
  // and takes the call as hyco-https code makes it).
  server.listen();
  await withTimeout(listening, WAIT, `the ${path} listener`);
  return server;
}

/**
 * Sends one request with Node's fetch, through the relay, to `path` on the listener.
 *
 * @param {any} api The helpers to build the address and token with
 * @param {string} path The Hybrid Connection and suffix
 * @param {object} [init] fetch's options
 * @returns {Promise<{ status: number, headers: Headers, body: Buffer }>}
 */
async function fetchVia(api, path, init = {}) {
  const url = createRelayHttpsUri(relay.namespace, path);
  const token = api.createRelayToken(url, relay.keyName, relay.key);
  // A connection of its own for each request: a listener that closes drops its rendezvous,
  // and with it (as the service does) the sender connection routed there, which fetch's
  // pool would otherwise reuse for the next test.
  const headers = { ServiceBusAuthorization: token, Connection: 'close' };
  const res = await withTimeout(fetch(url, { ...init, headers }), WAIT, `fetch ${path}`);
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

/**
 * The round trips both listeners must pass.
 *
 * @param {any} api The API under test
 * @param {string} path The Hybrid Connection
 */
async function roundTrips(api, path) {
  const server = await echoServer(api, path);
  try {
    const get = await fetchVia(api, `${path}/thing`);
    assert.equal(get.status, 200);
    assert.equal(get.headers.get('x-method'), 'GET');
    assert.equal(get.body.length, 0);

    const body = Buffer.from('a body that must arrive whole');
    const post = await fetchVia(api, `${path}/thing`, { method: 'POST', body });
    assert.equal(post.status, 200);
    assert.equal(post.headers.get('x-received-sha'), sha256(body));
    assert.deepEqual(post.body, body);

    // Over the control channel's 64 kB: the listener moves the response to a rendezvous.
    const big = await fetchVia(api, `${path}/thing?size=200000`);
    assert.equal(big.status, 200);
    assert.equal(big.body.length, 200000);
  } finally {
    await withTimeout(new Promise((resolve) => server.close(resolve)), WAIT, 'close()');
  }
}

describe("Microsoft's hyco-https 1.4.5 listener against the local relay", () => {
  test('GET, a POST with a body, a response over 64 kB (Node fetch as the sender)', async () => {
    await roundTrips(require('hyco-https'), 'hyco-https');
  });
});

describe('hyco-ws-rs/https: the same code with only the require changed', () => {
  test('GET, a POST with a body, a response over 64 kB', async () => {
    await roundTrips(require('hyco-ws-rs/https'), 'hyco-ws-rs-https');
  });

  test("its export is Node's https with the relay API on top; Node's https itself is untouched", () => {
    const relayHttps = require('hyco-ws-rs/https');
    assert.equal(relayHttps.request, https.request);
    assert.equal(relayHttps.get, https.get);
    assert.equal(relayHttps.Agent, https.Agent);
    for (const name of [
      'createRelayedServer',
      'createRelayHttpsUri',
      'createRelayListenUri',
      'createRelaySendUri',
      'createRelayBaseUri',
      'createRelayToken',
      'appendRelayToken',
      'relayedFetch',
      'startLocalRelay'
    ]) {
      assert.equal(typeof relayHttps[name], 'function', name);
    }
    assert.equal(relayHttps.ServerResponse, require('node:http').ServerResponse);
    assert.notEqual(https.createRelayedServer, relayHttps.createRelayedServer, "Node's https gains nothing");
    assert.equal(relayHttps.createRelayHttpsUri('contoso.servicebus.windows.net', 'hc', 'a b', 'x'), 'https://contoso.servicebus.windows.net/hc?sb-hc-token=a%20b&sb-hc-id=x');
  });

  test("import gives every name require gives (Node's createServer too), the same values", async () => {
    const cjs = require('hyco-ws-rs/https');
    const esm = await import('hyco-ws-rs/https');
    for (const name of Object.keys(cjs)) assert.equal(esm[name], cjs[name], name);
    assert.equal(esm.default, cjs);
  });

  test("Server(options, requestListener) and listen(cb), as hyco-https's", async () => {
    const relayHttps = require('hyco-ws-rs/https');
    const listenUri = relayHttps.createRelayListenUri(relay.namespace, 'server-class');
    assert.equal(listenUri, createRelayListenUri(relay.namespace, 'server-class'));
    const token = relayHttps.createRelayToken(listenUri, relay.keyName, relay.key);
    const server = new relayHttps.Server({ server: listenUri, token }, (req, res) => res.end('from Server'));
    try {
      await withTimeout(new Promise((resolve) => server.listen(resolve)), WAIT, 'listen(cb)');
      // Once listening, listen(cb) still calls back.
      await withTimeout(new Promise((resolve) => server.listen(resolve)), WAIT, 'a second listen(cb)');
      assert.equal(server.setTimeout(1000), server);
      const r = await fetchVia(relayHttps, 'server-class');
      assert.equal(r.body.toString(), 'from Server');
      // While reconnecting too ('listening' comes once).
      const offline = new Promise((resolve) => server.once('offline', () => server.listen(resolve)));
      await withTimeout(relay.dropListeners({ hybridConnection: 'server-class' }), WAIT, 'dropListeners');
      await withTimeout(offline, WAIT, "listen(cb) called in 'offline'");
    } finally {
      await withTimeout(new Promise((resolve) => server.close(resolve)), WAIT, 'close()');
    }
    // Closed, it does not listen: listen(cb) does not call back.
    let called = false;
    assert.equal(server.listen(() => (called = true)), server);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(called, false);
  });
});
