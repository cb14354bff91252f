// HTTP proxies: `RelayedServer` and `relayedConnect` through a real proxy (the npm `proxy`
// package, in this process, on 127.0.0.1), chosen by the `proxy` option or by the
// environment's HTTP_PROXY/HTTPS_PROXY/NO_PROXY; rejects and HTTP rendezvous; Basic authentication; how refusals and an
// unreachable proxy are reported (never with the password); a proxy that drops its tunnels;
// an https:// proxy; and the option's validation.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { createRelayHttpsUri, createRelayToken, relayedFetch } from 'hyco-ws-rs';

import { STEP_MS, nextEvent, waitUntil, withTimeout } from './support/relay-steps.mjs';
import {
  echo,
  listenOptions,
  markSeen,
  newServer,
  nextConnection,
  nextOf,
  sendAddress,
  serverApi,
  startFakeService,
  startServer,
  whenListening,
  withServerRelay
} from './support/server-steps.mjs';
import { api, handshakeFailure, next, nextMessageOf, relayed } from './support/socket-steps.mjs';
import {
  INVALID_PROXY_OPTIONS,
  NO_PROXY_VARS,
  PASSWORD,
  assertNoPassword,
  checkProxyBypasses,
  closedPort,
  isInvalidProxyOption,
  listenerPorts,
  selfSignedCert,
  withEnv,
  withProxy
} from './support/proxy-steps.mjs';

/**
 * Opens a sender (recorded) and waits for 'open', then checks an echo through it.
 *
 * @param {any} relay The relay.
 * @param {object} options `relayedConnect`'s options.
 * @returns {Promise<any>} The open socket.
 */
async function echoingSender(relay, options) {
  const { uri, token } = sendAddress(relay);
  const S = relayed(uri, token, options);
  await next(S, 'open', STEP_MS, 'the sender to open');
  S.send('through the proxy');
  assert.equal(String((await nextMessageOf(S)).data), 'through the proxy');
  return S;
}

describe('proxy: ws: addresses', () => {
  test('the proxy option: control channel, accepts and senders are tunnels, and the relay sees the proxy', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const ports = listenerPorts(relay);
          const server = echo(await startServer(relay, { proxy: proxy.url }));
          await waitUntil(() => ports.length === 1, STEP_MS, "the relay's 'listen' event");
          assert.ok(proxy.outboundPorts.has(ports[0]), `the control channel comes from the proxy (port ${ports[0]})`);
          await echoingSender(relay, { proxy: proxy.url });
          const { req } = await nextConnection(server);
          // The sender's address as the relay saw it: the proxy's connection to the relay.
          assert.equal(req.socket.remoteAddress, '127.0.0.1');
          assert.ok(
            proxy.outboundPorts.has(req.socket.remotePort),
            `the sender comes from the proxy (port ${req.socket.remotePort}, proxy's: ${[...proxy.outboundPorts]})`
          );
          // Control channel, sender, accept (and perhaps the spare for the next accept).
          assert.ok(proxy.connects.length >= 3, `CONNECTs: ${proxy.connects.length}`);
          for (const c of proxy.connects) {
            assert.equal(c.target, `127.0.0.1:${relay.port}`);
            assert.equal(c.authorization, undefined);
          }
        })
      )
    ));

  test('HTTP_PROXY is read for ws: addresses, when the object is made; NO_PROXY and proxy: false go direct', () =>
    withProxy({}, (proxy) =>
      withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: proxy.url, HTTPS_PROXY: 'http://127.0.0.1:1' }, () =>
        withServerRelay(undefined, async (relay) => {
          const server = echo(await startServer(relay));
          assert.equal(proxy.connects.length, 1, 'the control channel went through HTTP_PROXY');
          // Whether a sender came through the proxy, as the listener sees it.
          const viaProxy = async (options) => {
            await echoingSender(relay, options);
            const { req } = await nextConnection(server);
            return proxy.viaTunnel(req.socket.remotePort);
          };
          // The environment of the time an object is made counts: changing it later does not.
          delete process.env.HTTP_PROXY;
          assert.equal(await viaProxy({}), false, 'a sender made without HTTP_PROXY goes direct');
          process.env.HTTP_PROXY = proxy.url;
          assert.equal(await viaProxy({}), true, 'a sender made with HTTP_PROXY uses it');
          await checkProxyBypasses(viaProxy, proxy, relay.port);
        })
      )
    ));

  test('the lower-case variable wins over the upper-case one, as in curl', () =>
    withProxy({}, (proxy) =>
      withServerRelay(undefined, async (relay) => {
        const port = await closedPort();
        await withEnv({ ...NO_PROXY_VARS, http_proxy: `http://127.0.0.1:${port}`, HTTP_PROXY: proxy.url }, async () => {
          const { uri, token } = sendAddress(relay);
          const err = await handshakeFailure(relayed(uri, token), token);
          assert.equal(err.code, 'ECONNREFUSED');
          assert.equal(err.message, `connect ECONNREFUSED 127.0.0.1:${port} (proxy http://127.0.0.1:${port})`);
        });
        assert.equal(proxy.connects.length, 0);
      })
    ));

  test('an empty lower-case variable counts as unset: the upper-case one applies, as in curl', () =>
    withProxy({}, (proxy) =>
      withServerRelay(undefined, async (relay) => {
        const server = echo(await startServer(relay));
        const viaProxy = async () => {
          await echoingSender(relay, {});
          const { req } = await nextConnection(server);
          return proxy.viaTunnel(req.socket.remotePort);
        };
        await withEnv({ ...NO_PROXY_VARS, http_proxy: '', HTTP_PROXY: proxy.url }, async () => {
          assert.equal(await viaProxy(), true, "http_proxy='' leaves HTTP_PROXY in force");
        });
        await withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: proxy.url, no_proxy: '', NO_PROXY: '127.0.0.1' }, async () => {
          assert.equal(await viaProxy(), false, "no_proxy='' leaves NO_PROXY in force");
        });
      })
    ));

  test('a listener whose rejects and HTTP rendezvous go through the proxy too', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async () => {
          // The fake service (which takes any WebSocket) sends the control messages the test
          // picks; the test after this one does HTTP through the local relay.
          const fake = await startFakeService();
          const server = newServer({ server: fake.listenUri, token: 't', proxy: proxy.url, verifyClient: () => false });
          server.on('request', (req, res) => res.end('ok'));
          const control = await fake.nextControl();
          await whenListening(server);
          assert.equal(proxy.connects.length, 1);
          assert.ok(proxy.outboundPorts.has(control.req.socket.remotePort), 'the control channel is a tunnel');
          // A sender refused by verifyClient: the listener's reject handshake.
          control.send(JSON.stringify({ accept: { address: fake.acceptAddress('a1'), id: 'a1', connectHeaders: {} } }));
          const reject = await fake.nextReject();
          assert.equal(reject.parsedUrl.searchParams.get('sb-hc-statusCode'), '401');
          assert.ok(proxy.outboundPorts.has(reject.req.socket.remotePort), 'the reject is a tunnel');
          // A request that waits at a rendezvous: the listener opens it.
          control.send(JSON.stringify({ request: { address: fake.acceptAddress('r1'), id: 'r1' } }));
          const rendezvous = await fake.nextAcceptSocket();
          assert.ok(proxy.outboundPorts.has(rendezvous.req.socket.remotePort), 'the rendezvous is a tunnel');
          assert.equal(proxy.connects.length, 3);
          for (const c of proxy.connects) assert.equal(c.target, `127.0.0.1:${fake.port}`);
        })
      )
    ));

  test('HTTP through the local relay to a listener behind the proxy: an inline answer, a 1 MiB one over a rendezvous', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const big = Buffer.alloc(1024 * 1024, 'x');
          const server = await startServer(relay, { proxy: proxy.url });
          server.on('request', (req, res) => res.end(req.url === '/big' ? big : 'small'));
          assert.equal(proxy.connects.length, 1, 'the control channel is a tunnel');
          const url = (suffix) => createRelayHttpsUri(relay.namespace, `hc${suffix}`);
          const token = (u) => createRelayToken(u, relay.keyName, relay.key);
          const small = await withTimeout(relayedFetch(url('/small'), { token: token(url('/small')) }), STEP_MS, 'the small response');
          assert.equal(await small.text(), 'small');
          assert.equal(proxy.connects.length, 1, 'an inline answer goes back over the control channel');
          const res = await withTimeout(relayedFetch(url('/big'), { token: token(url('/big')) }), STEP_MS, 'the big response');
          const body = Buffer.from(await withTimeout(res.arrayBuffer(), STEP_MS, 'the big body'));
          assert.equal(res.status, 200);
          assert.ok(body.equals(big), `the 1 MiB body arrived whole (${body.length} bytes)`);
          assert.equal(proxy.connects.length, 2, 'the rendezvous is a tunnel too');
          for (const c of proxy.connects) assert.equal(c.target, `127.0.0.1:${relay.port}`);
        })
      )
    ));

  test('a proxy that drops its tunnels: the listener goes offline and comes back through it', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const ports = listenerPorts(relay);
          const server = echo(await startServer(relay, { proxy: proxy.url, reconnectDelays: [0] }));
          const S = await echoingSender(relay, { proxy: proxy.url });
          await nextConnection(server);
          markSeen(server);
          const connects = proxy.connects.length;
          assert.ok(proxy.cutTunnels() >= 3);
          const [offline] = (await nextOf(server, 'offline')).args;
          assert.ok(offline instanceof Error);
          await nextOf(server, 'online', STEP_MS, "the server to be 'online' again");
          assert.equal(server.status, 'online');
          assert.ok(proxy.connects.length > connects, 'the new control channel is a tunnel too');
          await waitUntil(() => ports.length === 2, STEP_MS, "the relay's second 'listen' event");
          assert.ok(proxy.outboundPorts.has(ports[1]), 'the relay sees the proxy again');
          const closed = await next(S, 'close');
          assert.equal(closed.args[0], 1006, "the sender's tunnel was cut");
          await echoingSender(relay, { proxy: proxy.url });
        })
      )
    ));
});

describe('proxy: Basic authentication and failures', () => {
  const auth = { user: 'alice', password: PASSWORD };

  test('the URL\'s credentials are sent; right ones open, wrong or none get ERR_PROXY_AUTH (407)', () =>
    withProxy({ auth }, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const server = echo(await startServer(relay, { proxy: proxy.urlWith('alice', PASSWORD) }));
          const expected = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
          assert.equal(proxy.connects[0].authorization, expected);
          await echoingSender(relay, { proxy: new URL(proxy.urlWith('alice', PASSWORD)) });
          await nextConnection(server);

          const { uri, token } = sendAddress(relay);
          for (const [url, says] of [
            [proxy.urlWith('alice', 'wrong'), 'refused the user name and password'],
            [proxy.urlWith('alice', `${PASSWORD}x`), 'refused the user name and password'],
            [proxy.url, 'give a user name and password']
          ]) {
            const err = await handshakeFailure(relayed(uri, token, { proxy: url }), token);
            assert.equal(err.code, 'ERR_PROXY_AUTH');
            assert.equal(err.statusCode, 407);
            assert.equal(err.statusDescription, 'Proxy Authentication Required');
            assert.ok(err.message.includes(proxy.url) && err.message.includes(says), err.message);
            assertNoPassword(err);
            assertNoPassword(err, 'wrong');
          }
        })
      )
    ));

  test('a listener refused by the proxy (407, or 403 from a proxy that forbids) keeps retrying, with no token warning', () =>
    withProxy({ auth }, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const forbidding = net.createServer((socket) => {
            socket.once('data', () => socket.end('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n'));
          });
          forbidding.listen(0, '127.0.0.1');
          await nextEvent(forbidding, 'listening', STEP_MS, 'the forbidding proxy to listen');
          try {
            for (const [url, code, status] of [
              [proxy.urlWith('alice', 'wrong'), 'ERR_PROXY_AUTH', 407],
              [`http://alice:wrong@127.0.0.1:${forbidding.address().port}`, 'ERR_PROXY_REFUSED', 403]
            ]) {
              const server = newServer(listenOptions(relay, 'hc', { proxy: url, reconnectDelays: [20] }));
              const warnings = [];
              server.on('warning', (w) => warnings.push(w));
              server.on('error', () => {});
              await nextOf(server, 'connecting');
              const [err] = (await nextOf(server, 'connecting')).args;
              assert.equal(err.code, code);
              assert.equal(err.statusCode, status);
              assertNoPassword(err, 'wrong');
              await nextOf(server, 'connecting', STEP_MS, 'another attempt');
              assert.equal(server.status, 'connecting', 'not a final error');
              assert.deepEqual(warnings, [], "a proxy's refusal is not the relay refusing the token");
              await new Promise((resolve) => server.close(resolve));
            }
          } finally {
            await new Promise((resolve) => forbidding.close(resolve));
          }
        })
      )
    ));

  test('other refusals are ERR_PROXY_REFUSED with the status; an unreachable proxy is named', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, async () => {
        // The proxy cannot reach the target: it answers 500.
        const port = await closedPort();
        const address = `ws://127.0.0.1:${port}/$hc/hc?sb-hc-action=connect`;
        const err = await handshakeFailure(relayed(address, null, { proxy: proxy.urlWith('alice', PASSWORD) }), null);
        assert.equal(err.code, 'ERR_PROXY_REFUSED');
        assert.equal(err.statusCode, 500);
        assert.equal(err.message, `The proxy ${proxy.url} refused to open a tunnel to 127.0.0.1:${port}: 500 Internal Server Error`);
        assertNoPassword(err);

        const nowhere = await closedPort();
        const unreachable = await handshakeFailure(
          relayed(address, null, { proxy: `http://alice:${encodeURIComponent(PASSWORD)}@127.0.0.1:${nowhere}` }),
          null
        );
        assert.equal(unreachable.code, 'ECONNREFUSED');
        assert.equal(unreachable.message, `connect ECONNREFUSED 127.0.0.1:${nowhere} (proxy http://127.0.0.1:${nowhere})`);
        assertNoPassword(unreachable);
      })
    ));

  test('an unusable proxy variable fails the connections that would use it, without its password', () =>
    withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: `socks5://alice:${encodeURIComponent(PASSWORD)}@127.0.0.1:1080` }, async () => {
      const err = await handshakeFailure(relayed('ws://127.0.0.1:9/$hc/hc', null), null);
      assert.equal(err.code, 'ERR_PROXY_INVALID');
      assert.match(err.message, /HTTP_PROXY/);
      assertNoPassword(err);
    }));
});

describe('proxy: wss: addresses and https:// proxies', () => {
  let made;
  let cert;
  let key;

  before(() => {
    made = selfSignedCert();
    ({ cert, key } = made);
  });

  after(() => {
    if (made) made.remove();
  });

  test('HTTPS_PROXY is read for wss: addresses (and HTTP_PROXY is not); TLS to the relay runs inside the tunnel', () =>
    withProxy({}, (proxy) =>
      withEnv({ ...NO_PROXY_VARS, HTTPS_PROXY: proxy.url, HTTP_PROXY: 'http://127.0.0.1:1' }, () =>
        withServerRelay({ tls: { cert, key } }, async (relay) => {
          assert.ok(relay.namespace.startsWith('wss:'), relay.namespace);
          const ports = listenerPorts(relay);
          const server = echo(await startServer(relay, { ca: cert }));
          await echoingSender(relay, { ca: cert });
          const { req } = await nextConnection(server);
          assert.ok(proxy.connects.length >= 3);
          await waitUntil(() => ports.length === 1, STEP_MS, "the relay's 'listen' event");
          assert.ok(proxy.outboundPorts.has(ports[0]));
          assert.ok(proxy.outboundPorts.has(req.socket.remotePort));
        })
      )
    ));

  test('an https:// proxy: TLS to the proxy, verified with the ca option', () =>
    withProxy({ tls: { cert, key } }, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          assert.ok(proxy.url.startsWith('https://'));
          const server = echo(await startServer(relay, { proxy: proxy.url, ca: cert }));
          await echoingSender(relay, { proxy: proxy.url, ca: cert });
          await nextConnection(server);
          assert.ok(proxy.connects.length >= 3);
          const { uri, token } = sendAddress(relay);
          const err = await handshakeFailure(relayed(uri, token, { proxy: proxy.url }), token);
          assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
          assert.ok(err.message.includes(`(proxy ${proxy.url})`), err.message);
        })
      )
    ));
});

describe('proxy: the option', () => {
  const address = 'ws://127.0.0.1:9/$hc/hc?sb-hc-action=connect';
  const server = 'ws://127.0.0.1:9/$hc/hc?sb-hc-action=listen';

  test('a proxy URL, a URL object or false; anything else is a TypeError that names the option and hides the password', () => {
    const { relayedConnect } = api();
    const { RelayedServer } = serverApi();
    for (const [value, code, says] of INVALID_PROXY_OPTIONS) {
      for (const make of [
        () => relayedConnect(address, null, { proxy: value }),
        () => new RelayedServer({ server, token: 't', proxy: value })
      ]) {
        assert.throws(make, (err) => isInvalidProxyOption(err, code, says));
      }
    }
  });

  test('host:port without a scheme is an http:// proxy, as curl reads it', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const server = echo(await startServer(relay, { proxy: `127.0.0.1:${proxy.port}` }));
          await echoingSender(relay, { proxy: `127.0.0.1:${proxy.port}` });
          await nextConnection(server);
          assert.ok(proxy.connects.length >= 3);
        })
      )
    ));
});
