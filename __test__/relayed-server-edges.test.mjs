// RelayedServer edge cases found in review: a handleProtocols that returns something the
// sender did not offer, and req.url for encoded paths and odd query names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { inspect } from 'node:util';

import { startLocalRelay, createRelayListenUri, createRelaySendUri, createRelayToken, RelayedServer, WebSocket } from 'hyco-ws-rs';

import { nextEvent } from './support/relay-steps.mjs';

const WAIT = 10000;


/**
 * A relay, a server with `options`, and a function to open plain ws senders to `path`.
 *
 * @param {Object} options Extra server options
 * @param {Function} body The test
 * @return {Promise<void>}
 */
async function withServer(options, body) {
  const relay = await startLocalRelay();
  const lu = createRelayListenUri(relay.namespace, 'hc');
  const server = new RelayedServer({ server: lu, token: () => createRelayToken(lu, relay.keyName, relay.key), ...options });
  const sender = (path, protocols) => {
    const su = createRelaySendUri(relay.namespace, path);
    return new WebSocket(su, protocols, {
      headers: { ServiceBusAuthorization: createRelayToken(su, relay.keyName, relay.key) },
      perMessageDeflate: false
    });
  };
  try {
    await nextEvent(server, 'listening', WAIT, 'the server');
    await body(server, sender);
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await relay.close();
  }
}

test('handleProtocols returning a protocol the sender did not offer refuses the sender (500); close() still completes', async () => {
  for (const choice of [true, 'zzz']) {
    await withServer({ handleProtocols: () => choice }, async (server, sender) => {
      const ws = sender('hc', ['a', 'b']);
      const [, res] = await nextEvent(ws, 'unexpected-response', WAIT, `the refusal for ${choice}`);
      assert.equal(res.statusCode, 500);
      res.resume();
      ws.on('error', () => {});
      assert.equal(server.clients.size, 0);
    });
  }
});

test('req.url keeps the sender path encoded, and drops sb-hc-* parameters whatever their case', async () => {
  await withServer({}, async (server, sender) => {
    const got = nextEvent(server, 'connection', WAIT, 'the connection');
    const ws = sender('hc/a%2F..%2Fadmin?SB-HC-Extra=1&y=2');
    const [socket, req] = await got;
    assert.equal(req.url, '/a%2F..%2Fadmin?y=2');
    socket.close();
    await nextEvent(ws, 'close', WAIT, 'the sender close');
  });
});

test('util.inspect(server) shows no token, key, signature or proxy password (a server logged while debugging)', async () => {
  const relay = await startLocalRelay();
  const uri = createRelayListenUri(relay.namespace, 'hc');
  const servers = [
    new RelayedServer({
      server: `${uri}&sb-hc-token=SECRETSIG1`,
      token: createRelayToken(uri, relay.keyName, relay.key).replace(/sig=[^&]*/, 'sig=SECRETSIG2'),
      proxy: 'http://alice:SECRETPASSWORD@127.0.0.1:1'
    }),
    new RelayedServer({
      connectionString: relay.connectionString('hc').replace(/SharedAccessKey=[^;]*/, 'SharedAccessKey=SECRETKEY='),
      proxy: new URL('http://carol:SECRETPASSWORD2@127.0.0.1:1')
    }),
    // A credential may be a function with getToken (and its secret) among its properties.
    new RelayedServer({
      server: uri,
      credential: Object.assign(() => {}, { clientSecret: 'SECRETCLIENT', getToken: () => new Promise(() => {}) })
    })
  ];
  try {
    for (const server of servers) {
      server.on('error', () => {});
      for (const text of [inspect(server, { depth: 10 }), inspect([server, { server }], { depth: null })]) {
        assert.doesNotMatch(text, /SECRET/, text);
        assert.match(text, /RelayedServer/);
      }
    }
    assert.match(inspect(servers[0]), /token: '<redacted>'/);
    assert.match(inspect(servers[1]), /SharedAccessKey=<redacted>/);
    // A server with a connected socket (a cycle: server, clients, socket, socket._server):
    // util.inspect sees the cycle, however deep it is asked to look.
    const online = new RelayedServer({ server: uri, token: createRelayToken(uri, relay.keyName, relay.key) });
    servers.push(online);
    await nextEvent(online, 'listening', WAIT, 'the third server to listen');
    const sendUri = createRelaySendUri(relay.namespace, 'hc');
    const sender = new WebSocket(sendUri, { headers: { ServiceBusAuthorization: createRelayToken(sendUri, relay.keyName, relay.key) } });
    sender.on('error', () => {});
    await nextEvent(online, 'connection', WAIT, 'the connection');
    for (const depth of [12, null]) {
      const text = inspect(online, { depth });
      assert.ok(text.length < 100_000, `${text.length} characters at depth ${depth}`);
      assert.match(text, /\[Circular \*1\]/);
      assert.doesNotMatch(text, /sig=/);
    }
    sender.terminate();
  } finally {
    await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
    await relay.close();
  }
});
