// HTTP requests through the local relay emulator, from JavaScript: Node's own `http` module
// is the sender, and the listener is a plain `ws` client speaking the control channel
// protocol by hand (request, response and rendezvous messages, PROTOCOL.md). Covers the
// options (requestTimeoutMs, noListenerStatus), stats and events as JavaScript sees them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

import { createRelayListenUri, createRelayToken } from 'hyco-ws-rs';

import {
  STEP_MS,
  acceptRendezvous,
  attempt,
  expectOpen,
  listen,
  makeCertificate,
  nextAccept,
  nextEvent,
  nextMessage,
  rawConnect,
  rawWaitFor,
  startSender,
  waitUntil,
  whenClosed,
  withRelay,
  withTimeout
} from './support/relay-steps.mjs';

/**
 * A sender token for Hybrid Connection `hc` of `relay`, signed for its https address.
 *
 * @param {any} relay The relay.
 * @param {string} hc The Hybrid Connection.
 * @returns {string}
 */
function senderToken(relay, hc) {
  return createRelayToken(`https://127.0.0.1:${relay.port}/${hc}`, relay.keyName, relay.key);
}

/**
 * Sends one HTTP request through the relay with Node's `http` and collects the response.
 *
 * @param {any} relay The relay.
 * @param {string} path The request target (`/hc/...`).
 * @param {{ method?: string, headers?: object, body?: Buffer|string|Buffer[], agent?: http.Agent|false, hc?: string, token?: boolean, client?: typeof http | typeof https, maxHeaderSize?: number }} [opts]
 *   `token: false` sends no ServiceBusAuthorization header; a body given as an array is
 *   written piece by piece (chunked); `client: https` for a relay with TLS.
 * @returns {Promise<{ status: number, statusMessage: string, headers: object, body: Buffer }>}
 */
function send(relay, path, opts = {}) {
  const { method = 'GET', headers = {}, body, agent = false, hc = 'hc', token = true, client = http, maxHeaderSize } = opts;
  const p = new Promise((resolve, reject) => {
    const req = client.request(
      {
        host: '127.0.0.1',
        port: relay.port,
        path,
        method,
        agent,
        ...(maxHeaderSize === undefined ? {} : { maxHeaderSize }),
        headers: { ...(token ? { ServiceBusAuthorization: senderToken(relay, hc) } : {}), ...headers }
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode, statusMessage: res.statusMessage, headers: res.headers, body: Buffer.concat(chunks) })
        );
        res.on('error', reject);
      }
    );
    req.on('error', reject);
    if (Array.isArray(body)) {
      for (const piece of body) req.write(piece);
      req.end();
    } else {
      req.end(body);
    }
  });
  return withTimeout(p, STEP_MS * 2, `the response to ${method} ${path}`);
}

/**
 * The next control (or rendezvous) message, as JSON.
 *
 * @param {any} ws The socket.
 * @param {string} what What is awaited.
 * @returns {Promise<any>}
 */
async function nextJson(ws, what) {
  const m = await nextMessage(ws, STEP_MS, what);
  assert.equal(m.isBinary, false, `${what} is a text message`);
  return JSON.parse(m.data.toString());
}

/**
 * Sends a `response` message and, if given, the body as one binary message.
 *
 * @param {any} ws The control channel or rendezvous.
 * @param {string} requestId The request's id.
 * @param {number} statusCode The status.
 * @param {object} responseHeaders The headers (values: strings or arrays of strings).
 * @param {Buffer|string} [body] The body.
 */
function respond(ws, requestId, statusCode, responseHeaders, body) {
  ws.send(JSON.stringify({ response: { requestId, statusCode, responseHeaders, body: body !== undefined } }));
  if (body !== undefined) ws.send(Buffer.from(body), { binary: true });
}

test('a GET goes inline with every field; the response comes back with Via, Set-Cookie lines, stats and events', async () => {
  await withRelay({}, async (relay) => {
    const events = [];
    relay.on('event', (e) => events.push(e));
    const control = await listen(relay, 'hc');
    const response = send(relay, '/hc/items?q=1&sb-hc-id=abc', { headers: { 'X-App': 'one', Connection: 'keep-alive' } });
    const { request } = await nextJson(control, 'the request message');
    assert.match(request.id, /^abc_G\d+$/);
    assert.equal(request.address, `${relay.namespace}/$hc/hc?sb-hc-action=request&sb-hc-id=${request.id}`);
    assert.equal(request.requestTarget, '/hc/items?q=1');
    assert.equal(request.method, 'GET');
    assert.equal(request.body, false);
    assert.equal(request.remoteEndpoint.address, '127.0.0.1');
    assert.ok(Number.isInteger(request.remoteEndpoint.port));
    assert.equal(request.requestHeaders['X-App'], 'one');
    assert.equal(request.requestHeaders.Host, `127.0.0.1:${relay.port}`);
    assert.equal(request.requestHeaders.Via, `1.1 127.0.0.1:${relay.port}`, 'the relay adds itself to Via, as the service does');
    assert.equal(request.requestHeaders.ServiceBusAuthorization, undefined, 'the token is stripped');
    assert.equal(request.requestHeaders.Connection, undefined, 'hop-by-hop headers are stripped');
    assert.equal(relay.stats().pendingRequests, 1);

    respond(control, request.id, 201, { 'Set-Cookie': ['a=1; Path=/', 'b=2; Path=/'], 'Content-Type': 'text/plain' }, 'created');
    const res = await response;
    assert.equal(res.status, 201);
    assert.equal(res.statusMessage, 'Created');
    assert.deepEqual(res.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
    assert.equal(res.headers.via, `1.1 127.0.0.1:${relay.port}`);
    assert.equal(res.headers['content-length'], '7');
    assert.equal(res.body.toString(), 'created');
    const stats = relay.stats();
    assert.equal(stats.pendingRequests, 0);
    assert.equal(stats.httpRequests, 1);
    await waitUntil(() => events.some((e) => e.type === 'request'), STEP_MS, 'a request event');
    const routed = events.find((e) => e.type === 'request');
    assert.equal(routed.hybridConnection, 'hc');
    assert.equal(routed.id, request.id);
    await waitUntil(() => events.some((e) => e.type === 'response'), STEP_MS, 'a response event');
    assert.equal(events.find((e) => e.type === 'response').status, 201);
    assert.ok(events.every((e) => !/SharedAccessSignature|sig=/.test(e.message)), 'no token in events');
  });
});

test('a 1 MiB POST goes over the rendezvous the listener opens; the response streams back chunked; the next request reuses it', async () => {
  await withRelay({}, async (relay) => {
    const control = await listen(relay, 'hc');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const body = Buffer.alloc(1024 * 1024, 7);
      const response = send(relay, '/hc/upload', { method: 'POST', body, agent });
      const { request: addressOnly } = await nextJson(control, 'the address-only request');
      assert.deepEqual(Object.keys(addressOnly), ['address']);
      const rv = await expectOpen(attempt(addressOnly.address).outcome, 'the rendezvous (no token)');
      const { request } = await nextJson(rv, 'the request on the rendezvous');
      assert.equal(request.method, 'POST');
      assert.equal(request.body, true);
      const got = await nextMessage(rv, STEP_MS, 'the body');
      assert.equal(got.isBinary, true);
      assert.ok(got.data.equals(body), 'the body arrives whole');
      rv.send(JSON.stringify({ response: { requestId: request.id, statusCode: 200, responseHeaders: {}, body: true } }));
      rv.send(Buffer.from('one,'), { binary: true, fin: false });
      rv.send(Buffer.from('two,'), { binary: true, fin: false });
      rv.send(Buffer.from('three'), { binary: true, fin: true });
      const res = await response;
      assert.equal(res.headers['transfer-encoding'], 'chunked');
      assert.equal(res.body.toString(), 'one,two,three');

      const second = send(relay, '/hc/again', { agent });
      const { request: again } = await nextJson(rv, 'the second request, on the rendezvous');
      assert.equal(again.requestTarget, '/hc/again');
      respond(rv, again.id, 200, {}, 'again');
      assert.equal((await second).body.toString(), 'again');
    } finally {
      agent.destroy();
    }
  });
});

test("on a kept rendezvous, an answer naming another request (an earlier one, answered twice) is not the current request's", async () => {
  await withRelay({}, async (relay) => {
    const control = await listen(relay, 'hc');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = send(relay, '/hc/one', { method: 'POST', body: Buffer.alloc(100 * 1024, 1), agent });
      const { request: addressOnly } = await nextJson(control, 'the address-only request');
      const rv = await expectOpen(attempt(addressOnly.address).outcome, 'the rendezvous');
      const { request: one } = await nextJson(rv, 'the first request');
      await nextMessage(rv, STEP_MS, 'its body');
      respond(rv, one.id, 200, {}, 'first');
      assert.equal((await first).body.toString(), 'first');

      const second = send(relay, '/hc/two', { agent });
      const { request: two } = await nextJson(rv, 'the second request, on the rendezvous');
      assert.notEqual(two.id, one.id);
      // The first request's answer again (with a body), then the second's.
      respond(rv, one.id, 201, {}, 'first, again');
      respond(rv, two.id, 202, {}, 'second');
      const res = await second;
      assert.equal(res.status, 202);
      assert.equal(res.body.toString(), 'second');
    } finally {
      agent.destroy();
    }
  });
});

test('requestTimeoutMs: a listener that never answers gets the sender a 504 and a requestTimeout event', async () => {
  await withRelay({ requestTimeoutMs: 300 }, async (relay) => {
    const control = await listen(relay, 'hc');
    const events = [];
    relay.on('event', (e) => events.push(e));
    const response = send(relay, '/hc');
    const { request } = await nextJson(control, 'the request');
    const res = await response;
    assert.equal(res.status, 504);
    assert.equal(res.statusMessage, 'The request was routed to the listener but the listener did not respond in the required time');
    assert.equal(JSON.parse(res.body.toString()).error.code, 'GatewayTimeout');
    assert.equal(res.headers.via, undefined, 'the relay answered, not the listener');
    await waitUntil(() => events.some((e) => e.type === 'requestTimeout'), STEP_MS, 'a requestTimeout event');
    const e = events.find((x) => x.type === 'requestTimeout');
    assert.deepEqual([e.status, e.id, e.hybridConnection], [504, request.id, 'hc']);
    // Late responses are dropped quietly; the channel still serves.
    respond(control, request.id, 200, {}, 'late');
    const next = send(relay, '/hc/2');
    const { request: r2 } = await nextJson(control, 'the next request');
    respond(control, r2.id, 200, {}, 'ok');
    assert.equal((await next).body.toString(), 'ok');
  });
});

test('noListenerStatus: the status when no listener is connected (404 by default)', async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    const res = await send(relay, '/hc');
    assert.equal(res.status, 404);
    assert.equal(res.statusMessage, 'There are no listeners connected for the endpoint.');
  });
  await withRelay({ noListenerStatus: 502, hybridConnections: ['hc'] }, async (relay) => {
    const denied = nextEvent(relay, 'event', STEP_MS, 'the denied event');
    assert.equal((await send(relay, '/hc')).status, 502);
    const [e] = await denied;
    assert.deepEqual([e.type, e.status, e.hybridConnection], ['denied', 502, 'hc']);
  });
});

test('a response over 32 KiB on the control channel fails its request (502), as the article requires a rendezvous for it; 32 KiB passes', async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    const control = await listen(relay, 'hc');
    // The message's size, as the listener measures it: the whole `response` text.
    const withHeader = (id, bytes) => {
      const head = (pad) => JSON.stringify({ response: { requestId: id, statusCode: 200, responseHeaders: { 'X-Pad': pad }, body: true } });
      return head('x'.repeat(bytes - head('').length));
    };
    for (const [bytes, status] of [[32 * 1024, 200], [32 * 1024 + 1, 502]]) {
      const response = send(relay, '/hc', { maxHeaderSize: 64 * 1024 });
      const { request } = await nextJson(control, 'the request');
      const message = withHeader(request.id, bytes);
      assert.equal(message.length, bytes);
      control.send(message);
      control.send(Buffer.from('ok'), { binary: true });
      const res = await response;
      assert.equal(res.status, status, `a ${bytes}-byte response message`);
      assert.equal(res.headers.via === undefined, status === 502, 'a 502 is the relay\'s own');
    }
    // The channel still serves.
    const next = send(relay, '/hc/next');
    const { request } = await nextJson(control, 'the next request');
    respond(control, request.id, 200, {}, 'fine');
    assert.equal((await next).body.toString(), 'fine');
  });
});

test("HEAD: the relay's own answers carry no body (no listener, no token, no response in time), so the connection stays in step", async () => {
  await withRelay({ hybridConnections: ['hc'], requestTimeoutMs: 300 }, async (relay) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const noListener = await send(relay, '/hc', { method: 'HEAD', agent });
      assert.equal(noListener.status, 404);
      assert.equal(noListener.body.length, 0);
      const noToken = await send(relay, '/hc', { method: 'HEAD', agent, token: false });
      assert.equal(noToken.status, 401);
      const control = await listen(relay, 'hc');
      const late = send(relay, '/hc', { method: 'HEAD', agent });
      await nextJson(control, 'the HEAD request');
      const timedOut = await late;
      assert.equal(timedOut.status, 504);
      assert.equal(timedOut.body.length, 0);
      // The same kept-alive connection serves the next request: no stray body was read
      // as the start of its response.
      const next = send(relay, '/hc/next', { agent });
      const { request } = await nextJson(control, 'the next request');
      respond(control, request.id, 200, {}, 'ok');
      const res = await next;
      assert.equal(res.status, 200);
      assert.equal(res.body.toString(), 'ok');
    } finally {
      agent.destroy();
    }
  });
});

test('401 without a token, and the token may come as sb-hc-token', async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    const control = await listen(relay, 'hc');
    const res = await send(relay, '/hc', { token: false });
    assert.equal(res.status, 401);
    const token = encodeURIComponent(senderToken(relay, 'hc'));
    const response = send(relay, `/hc?sb-hc-token=${token}`, { token: false });
    const { request } = await nextJson(control, 'the request');
    assert.equal(request.requestTarget, '/hc');
    respond(control, request.id, 204, {});
    assert.equal((await response).status, 204);
  });
});

test("a request refused before its body is read gets the relay's answer, not a reset, while its upload goes on (a lingering close)", async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    const body = Buffer.alloc(8 * 1024 * 1024, 0x61);
    // No token (401), and an unknown Hybrid Connection (404): 8 MiB more than the kernel's
    // buffers hold, still being written when the answer comes.
    const refused = await send(relay, '/hc', { method: 'POST', body, token: false });
    assert.equal(refused.status, 401);
    const unknown = await send(relay, '/nope', { method: 'POST', body, hc: 'nope' });
    assert.equal(unknown.status, 404);
  });
});

/**
 * Writes `request` on a connection of its own and reads until the relay closes it.
 *
 * @param {any} relay The relay.
 * @param {string} request The bytes, as Latin-1 text.
 * @returns {Promise<string>} What came back, as Latin-1 text.
 */
function rawExchange(relay, request) {
  const socket = net.connect(relay.port, '127.0.0.1');
  let got = '';
  socket.on('data', (d) => (got += d.toString('latin1')));
  socket.write(Buffer.from(request, 'latin1'));
  const ended = new Promise((resolve, reject) => {
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
  return withTimeout(ended, STEP_MS, 'the relay to answer and close').finally(() => socket.destroy());
}

test('strict requests: an HTTP/1.1 request without one Host, or with a chunk size a strict parser refuses, gets 400', async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    // A listener, so that a request gets as far as its body.
    const control = await listen(relay, 'hc');
    const token = senderToken(relay, 'hc');
    const head = (lines) => `POST /hc HTTP/1.1\r\nServiceBusAuthorization: ${token}\r\n${lines}Connection: close\r\n`;
    for (const [what, request] of [
      ['no Host', `${head('')}Content-Length: 0\r\n\r\n`],
      ['two Hosts', `${head('Host: 127.0.0.1\r\nHost: evil.example\r\n')}Content-Length: 0\r\n\r\n`]
    ]) {
      const answer = await rawExchange(relay, request);
      assert.match(answer, /^HTTP\/1\.1 400 /, `${what}: ${answer.slice(0, 80)}`);
    }
    // A chunked body streams over a rendezvous the listener opens: read there, and refused.
    for (const [what, body] of [
      ['a signed chunk size', '+5\r\nhello\r\n0\r\n\r\n'],
      ['blanks around a chunk size', ' 5 \r\nhello\r\n0\r\n\r\n'],
      ['bare LF chunk lines', '5\nhello\n0\n\n']
    ]) {
      const answer = rawExchange(relay, `${head('Host: 127.0.0.1\r\n')}Transfer-Encoding: chunked\r\n\r\n${body}`);
      const { request: addressOnly } = await nextJson(control, `the address-only request (${what})`);
      const rv = await expectOpen(attempt(addressOnly.address).outcome, `the rendezvous (${what})`);
      const text = await answer;
      assert.match(text, /^HTTP\/1\.1 400 /, `${what}: ${text.slice(0, 80)}`);
      rv.terminate();
    }
  });
});

test("a listener's header values a sender's parser refuses (control characters) are dropped; a request header's Latin-1 reaches the listener as written", async () => {
  await withRelay({ hybridConnections: ['hc'] }, async (relay) => {
    const control = await listen(relay, 'hc');
    const response = send(relay, '/hc', { headers: { 'X-Name': 'caf\u00e9' } });
    const { request } = await nextJson(control, 'the request');
    assert.equal(request.requestHeaders['X-Name'], 'caf\u00e9');
    respond(control, request.id, 200, { 'X-Ctl': 'a\u0001b', 'X-Del': 'a\u007fb', 'X-Fine': 'a\tb' }, 'ok');
    const res = await response;
    assert.equal(res.body.toString(), 'ok');
    assert.equal(res.headers['x-fine'], 'a\tb');
    assert.equal(res.headers['x-ctl'], undefined);
    assert.equal(res.headers['x-del'], undefined);
  });
});

test('a keep-alive HTTPS connection carries requests (bodies by length and chunked), then a WebSocket upgrade', async () => {
  const { cert, key } = makeCertificate('IP:127.0.0.1');
  await withRelay({ tls: { cert, key }, hybridConnections: ['hc'] }, async (relay) => {
    const wsOptions = { ca: cert };
    const control = await listen(relay, 'hc', { wsOptions });
    // Node's agent hands an idle kept-alive connection to the next request, an upgrade
    // included (hyco-ws 1.x's ws did this with the global agent). The service takes it.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: cert });
    const sockets = [];
    const createConnection = agent.createConnection;
    agent.createConnection = function (...args) {
      const socket = createConnection.apply(this, args);
      sockets.push(socket);
      return socket;
    };
    try {
      const tls = { client: https, agent };
      const get = send(relay, '/hc/one', tls);
      const { request: one } = await nextJson(control, 'the GET');
      respond(control, one.id, 200, {}, 'one');
      assert.equal((await get).body.toString(), 'one');

      const post = send(relay, '/hc/two', { ...tls, method: 'POST', body: 'by length' });
      const { request: two } = await nextJson(control, 'the POST with a length');
      assert.equal(two.body, true);
      assert.equal((await nextMessage(control, STEP_MS, 'its body')).data.toString(), 'by length');
      respond(control, two.id, 200, {}, 'two');
      assert.equal((await post).body.toString(), 'two');

      // A chunked body goes over a rendezvous, which the connection then keeps.
      const chunked = send(relay, '/hc/three', { ...tls, method: 'POST', body: [Buffer.from('chunk,'), Buffer.from('ed')] });
      const { request: addressOnly } = await nextJson(control, 'the address-only request');
      const rv = await expectOpen(attempt(addressOnly.address, undefined, wsOptions).outcome, 'the rendezvous');
      const { request: three } = await nextJson(rv, 'the chunked request');
      assert.equal((await nextMessage(rv, STEP_MS, 'its body')).data.toString(), 'chunk,ed');
      respond(rv, three.id, 200, {}, 'three');
      assert.equal((await chunked).body.toString(), 'three');
      assert.equal(sockets.length, 1, 'the requests shared one connection');

      // The upgrade: a sender, on the same connection.
      const s = startSender(relay, 'hc', { wsOptions: { ...wsOptions, agent } });
      const upgraded = nextEvent(s.ws, 'upgrade', STEP_MS, "the sender's upgrade response");
      const accept = await nextAccept(control);
      const peer = await acceptRendezvous(accept, { wsOptions });
      const sender = await expectOpen(s.outcome, 'the sender on the kept-alive connection');
      const [res] = await upgraded;
      assert.equal(sockets.length, 1, 'no new connection for the upgrade');
      assert.equal(res.socket, sockets[0], 'the upgrade went over the kept-alive connection');
      sender.send('upgraded');
      assert.equal((await nextMessage(peer, STEP_MS, 'the sender\'s message')).data.toString(), 'upgraded');
      peer.send('and back');
      assert.equal((await nextMessage(sender, STEP_MS, 'the listener\'s message')).data.toString(), 'and back');
      // The connection carries no more HTTP requests: the relay let its rendezvous go.
      assert.equal((await whenClosed(rv, STEP_MS, 'the kept rendezvous to close')).code, 1001);
    } finally {
      agent.destroy();
    }
  });
});

test('a request and a WebSocket upgrade pipelined on one connection: the body is read by its length, then the upgrade is served', async () => {
  await withRelay({ hybridConnections: ['hc', 'hc2'] }, async (relay) => {
    const control = await listen(relay, 'hc');
    const socket = await rawConnect(relay.port);
    const host = `127.0.0.1:${relay.port}`;
    const listenUri = createRelayListenUri(relay.namespace, 'hc2');
    const listenToken = encodeURIComponent(createRelayToken(listenUri, relay.keyName, relay.key));
    // A body that looks like a request head: framed by its length, it stays a body.
    const body = 'GET /hc HTTP/1.1\r\nHost: x\r\n\r\n';
    socket.write(
      `POST /hc/first HTTP/1.1\r\nHost: ${host}\r\nServiceBusAuthorization: ${senderToken(relay, 'hc')}\r\n` +
        `Content-Length: ${body.length}\r\n\r\n${body}` +
        `GET /$hc/hc2?sb-hc-action=listen&sb-hc-token=${listenToken} HTTP/1.1\r\nHost: ${host}\r\n` +
        `Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
        'Sec-WebSocket-Version: 13\r\n\r\n'
    );
    const { request } = await nextJson(control, 'the POST');
    assert.equal(request.requestTarget, '/hc/first');
    assert.equal((await nextMessage(control, STEP_MS, 'its body')).data.toString(), body);
    respond(control, request.id, 200, {}, 'first');
    const switched = (t) => {
      const at = t.indexOf('HTTP/1.1 101');
      return at >= 0 && t.includes('\r\n\r\n', at);
    };
    const got = await rawWaitFor(socket, switched, STEP_MS, 'the 101');
    assert.equal(got, 'matched', socket.text());
    assert.match(socket.text(), /^HTTP\/1\.1 200 [^]*\r\n\r\nfirstHTTP\/1\.1 101 Switching Protocols\r\n/);
    // The control channel on hc2 is open: a sender's accept comes over it.
    startSender(relay, 'hc2');
    const accepted = await rawWaitFor(socket, (t) => t.includes('{"accept":'), STEP_MS, 'an accept on the pipelined control channel');
    assert.equal(accepted, 'matched', socket.text());
  });
});
