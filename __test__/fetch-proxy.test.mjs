// relayedFetch through an HTTP proxy: a real proxy (the npm `proxy` package, in this
// process, on 127.0.0.1) and the real local relay with a RelayedServer answering 'request'.
// The `proxy` option and the environment (HTTP_PROXY for http: addresses, HTTPS_PROXY for
// https: ones, NO_PROXY), proxy: false, a caller's dispatcher, Basic authentication, how
// refusals and an unreachable proxy are reported (never with the password), 1 MiB each way,
// the relay's own refusals, and TLS (trusted as Node's fetch trusts it: NODE_EXTRA_CA_CERTS).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { Agent } from 'undici';
import { createRelayHttpsUri, createRelayToken, relayedFetch } from 'hyco-ws-rs';

import { STEP_MS, nextEvent, withTimeout } from './support/relay-steps.mjs';
import { startServer, withServerRelay } from './support/server-steps.mjs';
import { patterned, readBody, sha256 } from './support/http-steps.mjs';
import { describeChild, runNode } from './support/socket-steps.mjs';
import {
  INVALID_PROXY_OPTIONS,
  NO_PROXY_VARS,
  PASSWORD,
  assertNoPassword,
  checkProxyBypasses,
  closedPort,
  isInvalidProxyOption,
  selfSignedCert,
  withEnv,
  withProxy
} from './support/proxy-steps.mjs';

/**
 * A TCP server on 127.0.0.1 that answers whatever it is sent with `answer` (or, when
 * `answer` is null, closes the connection), for proxies that misbehave.
 *
 * @param {?string} answer The bytes to send back.
 * @param {(port: number) => Promise<void>} fn The test body.
 * @returns {Promise<void>}
 */
async function withFakeProxy(answer, fn) {
  const sockets = new Set();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.once('data', () => (answer === null ? socket.destroy() : socket.end(answer)));
  });
  server.listen(0, '127.0.0.1');
  await nextEvent(server, 'listening', STEP_MS, 'the fake proxy to listen');
  try {
    await fn(server.address().port);
  } finally {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  }
}

/**
 * The address of Hybrid Connection `hc` (with `suffix`) on `relay`, and a Send token.
 *
 * @param {any} relay The relay.
 * @param {string} [suffix] Path after the Hybrid Connection.
 * @param {string} [hc] The Hybrid Connection.
 * @returns {{ url: string, token: string }}
 */
function address(relay, suffix = '', hc = 'hc') {
  const url = createRelayHttpsUri(relay.namespace, `${hc}${suffix}`);
  return { url, token: createRelayToken(url, relay.keyName, relay.key) };
}

/**
 * A listener on `hc` that answers 'request' with `handler`, and records the port each
 * request came from as the relay saw it (the sender's, or the proxy's connection).
 *
 * @param {any} relay The relay.
 * @param {(req: any, res: any) => void} handler The handler.
 * @param {object} [extra] More listener options.
 * @returns {Promise<{ server: any, ports: number[] }>}
 */
async function answering(relay, handler, extra = {}) {
  const server = await startServer(relay, extra);
  const ports = [];
  server.on('request', (req, res) => {
    ports.push(req.socket.remotePort);
    handler(req, res);
  });
  return { server, ports };
}

describe('relayedFetch through a proxy', () => {
  test("the proxy option: a CONNECT tunnel to the relay, which sees the proxy; the response is Node's Response", () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const hanging = [];
          const { ports } = await answering(relay, (req, res) => {
            if (req.url === '/hang') return hanging.push(res);
            if (req.url === '/odd') {
              res.statusCode = 799;
              return res.end('odd');
            }
            res.statusCode = 201;
            res.statusMessage = 'Made';
            res.setHeader('X-One', 'one');
            res.setHeader('Set-Cookie', ['a=1', 'b=2']);
            res.end(`${req.method} ${req.url} ${req.headers['x-asked']}`);
          });
          const { url, token } = address(relay, '/things?q=1');
          const init = { token, method: 'PUT', headers: { 'X-Asked': 'yes' }, body: 'x' };
          const direct = await withTimeout(relayedFetch(url, { ...init, proxy: false }), STEP_MS, 'the direct response');
          const directBody = await direct.text();
          assert.equal(proxy.connects.length, 0, 'proxy: false goes direct');

          const res = await withTimeout(relayedFetch(url, { ...init, proxy: proxy.url }), STEP_MS, 'the response');
          assert.ok(proxy.connects.length >= 1, 'the request asked the proxy for a tunnel');
          for (const c of proxy.connects) {
            assert.equal(c.target, `127.0.0.1:${relay.port}`);
            assert.equal(c.authorization, undefined);
          }
          assert.ok(
            proxy.viaTunnel(ports[1]),
            `the relay saw the proxy's connection (port ${ports[1]}, the proxy's: ${[...proxy.outboundPorts]})`
          );
          assert.ok(!proxy.outboundPorts.has(ports[0]), 'the direct request did not come from the proxy');

          // What users read is what the direct request gave them, of the same class.
          assert.ok(res instanceof Response, `a Response of Node's fetch: ${res.constructor.name}`);
          assert.equal(res.status, 201);
          assert.equal(res.statusText, 'Made');
          assert.equal(res.ok, true);
          assert.equal(res.url, direct.url);
          assert.equal(res.redirected, false);
          assert.equal(res.headers.get('x-one'), 'one');
          assert.deepEqual(res.headers.getSetCookie(), direct.headers.getSetCookie());
          assert.ok(res.headers.getSetCookie().join(', ').includes('a=1'));
          assert.ok(res.headers.has('via'));
          const chunks = [];
          for await (const chunk of res.body) chunks.push(Buffer.from(chunk));
          assert.equal(Buffer.concat(chunks).toString(), directBody);
          assert.equal(directBody, 'PUT /things?q=1 yes');
          assert.equal(res.bodyUsed, true);

          // A URL object as the option; body methods; clone().
          const again = await withTimeout(relayedFetch(url, { token, proxy: new URL(proxy.url) }), STEP_MS, 'again');
          assert.ok(proxy.viaTunnel(ports[2]), 'a URL object works too');
          const copy = again.clone();
          assert.equal(copy.url, direct.url);
          assert.equal(await again.text(), 'GET /things?q=1 undefined');
          assert.equal(Buffer.from(await copy.arrayBuffer()).toString(), 'GET /things?q=1 undefined');

          // A status that Response's constructor refuses still arrives, as it does directly.
          const odd = address(relay, '/odd');
          const oddRes = await withTimeout(relayedFetch(odd.url, { token: odd.token, proxy: proxy.url }), STEP_MS, 'odd');
          assert.equal(oddRes.status, 799);
          assert.equal(await oddRes.text(), 'odd');

          // The caller's signal still aborts the request.
          const hang = address(relay, '/hang');
          const controller = new AbortController();
          const pending = relayedFetch(hang.url, { token: hang.token, proxy: proxy.url, signal: controller.signal });
          const outcome = pending.then(
            () => null,
            (err) => err
          );
          const started = Date.now();
          while (hanging.length === 0 && Date.now() - started < STEP_MS) {
            await new Promise((resolve) => setImmediate(resolve));
          }
          assert.equal(hanging.length, 1, 'the hanging request reached the listener');
          controller.abort();
          const err = await withTimeout(outcome, STEP_MS, 'the aborted request');
          assert.ok(err instanceof Error, 'the request was aborted');
          assert.equal(err.name, 'AbortError');
          hanging[0].end();
        })
      )
    ));

  test('HTTP_PROXY for http: addresses (not HTTPS_PROXY), read at each call; NO_PROXY, proxy: false and a dispatcher go direct', () =>
    withProxy({}, (proxy) =>
      withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: proxy.url, HTTPS_PROXY: 'http://127.0.0.1:1' }, () =>
        withServerRelay(undefined, async (relay) => {
          const { ports } = await answering(relay, (req, res) => res.end('ok'));
          const { url, token } = address(relay);
          // Whether a request went through the proxy, as the relay saw it.
          const viaProxy = async (init) => {
            const res = await withTimeout(relayedFetch(url, { token, ...init }), STEP_MS, 'the response');
            assert.equal(await res.text(), 'ok');
            return proxy.viaTunnel(ports[ports.length - 1]);
          };
          assert.equal(await viaProxy({}), true, 'HTTP_PROXY is used for an http: address');
          await checkProxyBypasses(viaProxy, proxy, relay.port);
          const dispatcher = new Agent();
          try {
            assert.equal(await viaProxy({ dispatcher, proxy: proxy.url }), false, "the caller's dispatcher wins");
          } finally {
            await dispatcher.close();
          }
          delete process.env.HTTP_PROXY;
          assert.equal(await viaProxy({}), false, 'HTTPS_PROXY is not for http: addresses');
          const connects = proxy.connects.length;
          assert.ok(connects >= 1);
          for (const c of proxy.connects) assert.equal(c.target, `127.0.0.1:${relay.port}`);

          // The lower-case variable wins over the upper-case one, as in curl.
          const port = await closedPort();
          process.env.http_proxy = `http://127.0.0.1:${port}`;
          process.env.HTTP_PROXY = proxy.url;
          await assert.rejects(relayedFetch(url, { token }), (err) => {
            assert.equal(err.code, 'ECONNREFUSED');
            assert.equal(err.message, `connect ECONNREFUSED 127.0.0.1:${port} (proxy http://127.0.0.1:${port})`);
            return true;
          });
          assert.equal(proxy.connects.length, connects);
        })
      )
    ));

  test('a POST of 1 MiB through the proxy, and 1 MiB back', () =>
    withProxy({}, (proxy) =>
      withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: proxy.url }, () =>
        withServerRelay(undefined, async (relay) => {
          const { data, sha } = patterned(1024 * 1024);
          const back = Buffer.from(data).reverse();
          let received;
          const { ports } = await answering(relay, (req, res) => {
            readBody(req).then((body) => {
              received = body;
              res.setHeader('X-Sha', sha256(body));
              res.end(back);
            });
          });
          const { url, token } = address(relay, '/upload');
          const res = await withTimeout(relayedFetch(url, { token, method: 'POST', body: data }), STEP_MS, 'the response');
          const body = Buffer.from(await withTimeout(res.arrayBuffer(), STEP_MS, 'the 1 MiB body'));
          assert.equal(res.status, 200);
          assert.equal(received.length, data.length, 'the listener got the whole request body');
          assert.equal(res.headers.get('x-sha'), sha);
          assert.equal(body.length, back.length);
          assert.ok(body.equals(back), 'the 1 MiB response body arrived whole');
          assert.ok(proxy.viaTunnel(ports[0]), 'through the proxy');
          assert.ok(proxy.connects.length >= 1);
        })
      )
    ));

  test("the relay's own refusals still reject with ERR_RELAY_REFUSED through the proxy", () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          await answering(relay, (req, res) => {
            res.statusCode = 404;
            res.end('no such item');
          });
          const nobody = address(relay, '', 'nobody');
          await assert.rejects(relayedFetch(nobody.url, { token: nobody.token, proxy: proxy.url }), (err) => {
            assert.equal(err.code, 'ERR_RELAY_REFUSED');
            assert.equal(err.statusCode, 404);
            return true;
          });
          const hc = address(relay);
          const bad = 'SharedAccessSignature sr=x&sig=secretsig&se=1&skn=z';
          await assert.rejects(relayedFetch(hc.url, { token: bad, proxy: proxy.url }), (err) => {
            assert.equal(err.code, 'ERR_RELAY_REFUSED');
            assert.equal(err.statusCode, 401);
            assertNoPassword(err, 'secretsig');
            return true;
          });
          assert.ok(proxy.connects.length >= 1, 'the refused requests went through the proxy');
          for (const c of proxy.connects) assert.equal(c.target, `127.0.0.1:${relay.port}`);
          // A listener's 404 is a response, as without a proxy.
          const res = await relayedFetch(hc.url, { token: hc.token, proxy: proxy.url });
          assert.equal(res.status, 404);
          assert.equal(await res.text(), 'no such item');
        })
      )
    ));
});

describe('relayedFetch through a proxy: Basic authentication and failures', () => {
  const auth = { user: 'alice', password: PASSWORD };

  test("the URL's credentials are sent; wrong or none get ERR_PROXY_AUTH (407), without the password", () =>
    withProxy({ auth }, (proxy) =>
      withEnv(NO_PROXY_VARS, () =>
        withServerRelay(undefined, async (relay) => {
          const { ports } = await answering(relay, (req, res) => res.end('ok'));
          const { url, token } = address(relay);
          const res = await withTimeout(
            relayedFetch(url, { token, proxy: proxy.urlWith('alice', PASSWORD) }),
            STEP_MS,
            'the response'
          );
          assert.equal(await res.text(), 'ok');
          assert.ok(proxy.viaTunnel(ports[0]));
          const expected = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
          assert.equal(proxy.connects[0].authorization, expected);

          for (const [proxyUrl, says] of [
            [proxy.urlWith('alice', 'wrong'), 'refused the user name and password'],
            [proxy.urlWith('alice', `${PASSWORD}x`), 'refused the user name and password'],
            [proxy.url, 'give a user name and password']
          ]) {
            await assert.rejects(relayedFetch(url, { token, proxy: proxyUrl }), (err) => {
              assert.ok(err instanceof Error);
              assert.equal(err.code, 'ERR_PROXY_AUTH');
              assert.equal(err.statusCode, 407);
              assert.equal(err.statusDescription, 'Proxy Authentication Required');
              assert.ok(err.message.startsWith(`The proxy ${proxy.url} requires authentication (407 `), err.message);
              assert.ok(err.message.includes(says), err.message);
              assertNoPassword(err);
              assertNoPassword(err, 'wrong');
              assertNoPassword(err, token);
              return true;
            });
          }
          assert.equal(ports.length, 1, 'no refused request reached the listener');
        })
      )
    ));

  test('other refusals are ERR_PROXY_REFUSED with the status; an unreachable or silent proxy is named', () =>
    withProxy({}, (proxy) =>
      withEnv(NO_PROXY_VARS, async () => {
        // The proxy cannot reach the target: it answers 500.
        const port = await closedPort();
        const url = `http://127.0.0.1:${port}/$hc/hc`;
        await assert.rejects(relayedFetch(url, { proxy: proxy.urlWith('alice', PASSWORD) }), (err) => {
          assert.equal(err.code, 'ERR_PROXY_REFUSED');
          assert.equal(err.statusCode, 500);
          assert.equal(err.statusDescription, 'Internal Server Error');
          assert.equal(
            err.message,
            `The proxy ${proxy.url} refused to open a tunnel to 127.0.0.1:${port}: 500 Internal Server Error`
          );
          assertNoPassword(err);
          return true;
        });

        const nowhere = await closedPort();
        await assert.rejects(
          relayedFetch(url, { proxy: `http://alice:${encodeURIComponent(PASSWORD)}@127.0.0.1:${nowhere}` }),
          (err) => {
            assert.equal(err.code, 'ECONNREFUSED');
            assert.equal(err.message, `connect ECONNREFUSED 127.0.0.1:${nowhere} (proxy http://127.0.0.1:${nowhere})`);
            assertNoPassword(err);
            return true;
          }
        );

        await withFakeProxy(null, async (silent) => {
          await assert.rejects(relayedFetch(url, { proxy: `127.0.0.1:${silent}` }), (err) => {
            assert.equal(err.code, 'ECONNRESET');
            assert.equal(err.message, `The proxy http://127.0.0.1:${silent} closed the connection before answering CONNECT`);
            return true;
          });
        });
        await withFakeProxy('HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n', async (forbidding) => {
          await assert.rejects(relayedFetch(url, { proxy: `http://127.0.0.1:${forbidding}` }), {
            code: 'ERR_PROXY_REFUSED',
            statusCode: 403,
            message: `The proxy http://127.0.0.1:${forbidding} refused to open a tunnel to 127.0.0.1:${port}: 403 Forbidden`
          });
        });
      })
    ));

  test('an unusable proxy variable fails the request before any token is asked for, without its password', () =>
    withEnv({ ...NO_PROXY_VARS, HTTP_PROXY: `socks5://alice:${encodeURIComponent(PASSWORD)}@127.0.0.1:1080` }, async () => {
      let asked = 0;
      const token = () => {
        asked += 1;
        return 'SharedAccessSignature sr=x&sig=y&se=1&skn=z';
      };
      await assert.rejects(relayedFetch('http://127.0.0.1:9/$hc/hc', { token }), (err) => {
        assert.equal(err.code, 'ERR_PROXY_INVALID');
        assert.match(err.message, /HTTP_PROXY/);
        assertNoPassword(err);
        return true;
      });
      assert.equal(asked, 0);
      // NO_PROXY leaves the host out anyway; an https: address uses HTTPS_PROXY (unset).
      process.env.NO_PROXY = '127.0.0.1';
      await assert.rejects(relayedFetch(`http://127.0.0.1:${await closedPort()}/$hc/hc`, { token }), (err) => {
        assert.notEqual(err.code, 'ERR_PROXY_INVALID');
        return true;
      });
    }));

  test('the option: a proxy URL, a URL object or false; anything else is a TypeError that hides the password', async () => {
    for (const [value, code, says] of INVALID_PROXY_OPTIONS) {
      for (const dispatcher of [undefined, new Agent()]) {
        await assert.rejects(relayedFetch('http://127.0.0.1:9/$hc/hc', { proxy: value, dispatcher }), (err) =>
          isInvalidProxyOption(err, code, says)
        );
        if (dispatcher) await dispatcher.close();
      }
    }
  });
});

describe('relayedFetch through a proxy: https: addresses and https:// proxies', () => {
  let made;
  let cert;
  let key;
  let certFile;

  before(() => {
    made = selfSignedCert();
    ({ cert, key, certFile } = made);
  });

  after(() => {
    if (made) made.remove();
  });

  test('HTTPS_PROXY for https: addresses, TLS to the relay in the tunnel, trusted as Node trusts fetch (NODE_EXTRA_CA_CERTS); an https:// proxy', () =>
    withProxy({}, (plain) =>
      withProxy({ tls: { cert, key } }, (secure) =>
        withServerRelay({ tls: { cert, key } }, async (relay) => {
          assert.ok(relay.namespace.startsWith('wss:'), relay.namespace);
          assert.ok(secure.url.startsWith('https://'));
          const { ports } = await answering(relay, (req, res) => res.end(`hello ${req.url}`), { ca: cert });
          // A child process: NODE_EXTRA_CA_CERTS is read when Node.js starts. It prints one
          // line per request: how it went.
          const script = `
            const hyco = require(process.env.HYCO_PKG);
            const url = hyco.createRelayHttpsUri(process.env.RELAY_NS, 'hc/x');
            const token = hyco.createRelayToken(url, process.env.RELAY_KEY_NAME, process.env.RELAY_KEY);
            (async () => {
              for (const proxy of [undefined, process.env.SECURE_PROXY, false]) {
                try {
                  const res = await hyco.relayedFetch(url, { token, proxy });
                  console.log(JSON.stringify({ status: res.status, body: await res.text() }));
                } catch (e) {
                  console.log(JSON.stringify({ error: e.code || e.name, message: e.message, cause: e.cause && e.cause.code }));
                }
              }
              // The tunnels (and fetch's own connections) stay open for reuse, but do not
              // hold the process: they are unreferenced once idle.
              await new Promise((resolve) => setTimeout(resolve, 50));
              const holding = process.getActiveResourcesInfo().filter((r) => !['Timeout', 'TTYWrap', 'PipeWrap'].includes(r));
              console.log(JSON.stringify({ holding }));
            })();
          `;
          const env = {
            NODE_EXTRA_CA_CERTS: certFile,
            HTTPS_PROXY: plain.url,
            HTTP_PROXY: 'http://127.0.0.1:1',
            RELAY_NS: relay.namespace,
            RELAY_KEY_NAME: relay.keyName,
            RELAY_KEY: relay.key,
            SECURE_PROXY: secure.url
          };
          // The child inherits this process's environment, less its proxy variables.
          const r = await withEnv(NO_PROXY_VARS, () => runNode(script, { env, ms: 30_000 }).done);
          assert.equal(r.code, 0, describeChild(r));
          const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
          assert.deepEqual(lines.pop(), { holding: [] }, describeChild(r));
          for (const line of lines) assert.deepEqual(line, { status: 200, body: 'hello /x' }, describeChild(r));
          assert.equal(lines.length, 3, describeChild(r));
          assert.equal(ports.length, 3);
          assert.ok(plain.outboundPorts.has(ports[0]), 'HTTPS_PROXY carried the first request');
          assert.ok(secure.outboundPorts.has(ports[1]), 'the https:// proxy carried the second');
          assert.ok(!plain.outboundPorts.has(ports[2]) && !secure.outboundPorts.has(ports[2]), 'proxy: false went direct');
          assert.equal(plain.connects.length, 1);
          assert.equal(secure.connects.length, 1);
          for (const c of [...plain.connects, ...secure.connects]) assert.equal(c.target, `127.0.0.1:${relay.port}`);
        })
      )
    ));

  test("without that trust the relay's certificate is refused through the proxy too, as fetch refuses it; an https:// proxy's is named", () =>
    withProxy({}, (proxy) =>
      withProxy({ tls: { cert, key } }, (secure) =>
        withEnv(NO_PROXY_VARS, () =>
          withServerRelay({ tls: { cert, key } }, async (relay) => {
            const { url, token } = address(relay);
            for (const proxyOption of [false, proxy.url]) {
              await assert.rejects(relayedFetch(url, { token, proxy: proxyOption }), (err) => {
                assert.equal(err.name, 'TypeError');
                assert.equal(err.message, 'fetch failed');
                assert.equal(err.cause && err.cause.code, 'DEPTH_ZERO_SELF_SIGNED_CERT', String(err.cause));
                return true;
              });
            }
            assert.equal(proxy.connects.length, 1);
            const withPassword = secure.urlWith('alice', PASSWORD);
            await assert.rejects(relayedFetch(url, { token, proxy: withPassword }), (err) => {
              assert.equal(err.code, 'DEPTH_ZERO_SELF_SIGNED_CERT');
              assert.ok(err.message.endsWith(` (proxy ${secure.url})`), err.message);
              assertNoPassword(err);
              return true;
            });
            assert.equal(secure.connects.length, 0);
          })
        )
      )
    ));
});
