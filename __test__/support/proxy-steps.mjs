// A real HTTP proxy for the tests: TooTallNate's `proxy` package (an http.Server, or an
// https.Server for an https:// proxy) on 127.0.0.1, port 0, in the test's process. It
// records every CONNECT it is asked for, and the connections it opens on a client's behalf:
// their local ports are what the relay sees as the peer's, and cutting them (with the
// clients' side) is how a test makes the proxy drop its tunnels.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { createProxy } from 'proxy';

import { STEP_MS, nextEvent, withTimeout } from './relay-steps.mjs';

/** The proxy password of the tests: characters that must be percent-encoded in a URL. */
export const PASSWORD = 'p@ss w:rd';

/**
 * Checks that an error says nothing of `secret`, raw or percent-encoded.
 *
 * @param {Error} err The error.
 * @param {string} [secret] The secret: the proxy's password unless told.
 */
export function assertNoPassword(err, secret = PASSWORD) {
  for (const text of [String(err.message), String(err.stack)]) {
    for (const s of [secret, encodeURIComponent(secret)]) {
      assert.ok(!text.includes(s), `the error reveals a secret: ${text.slice(0, 300)}`);
    }
  }
}

/**
 * Values of the `proxy` option that are refused, with the error's `code` and words of its
 * message (none may repeat the password).
 *
 * @type {Array<[unknown, string, string]>}
 */
export const INVALID_PROXY_OPTIONS = [
  [42, 'ERR_INVALID_ARG_TYPE', 'must be a proxy URL (a string or a URL) or false. Received type number'],
  [null, 'ERR_INVALID_ARG_TYPE', 'Received null'],
  [true, 'ERR_INVALID_ARG_TYPE', 'Received type boolean'],
  ['', 'ERR_INVALID_ARG_VALUE', 'is empty'],
  [`socks5://alice:${PASSWORD}@proxy:1080`, 'ERR_INVALID_ARG_VALUE', 'must start with http:// or https://'],
  [`http://alice:${encodeURIComponent(PASSWORD)}@proxy:3128/path`, 'ERR_INVALID_ARG_VALUE', 'must have no path or query'],
  [`http://alice:${encodeURIComponent(PASSWORD)}@proxy:3128/?q=1`, 'ERR_INVALID_ARG_VALUE', 'must have no path or query'],
  ['http://proxy:3128/#top', 'ERR_INVALID_ARG_VALUE', 'must have no fragment'],
  ['http://alice:%zz@proxy:3128', 'ERR_INVALID_ARG_VALUE', '%-escape'],
  ['http://proxy:99999', 'ERR_INVALID_ARG_VALUE', 'not a valid URL']
];

/**
 * Checks the error of a refused `proxy` option (an entry of `INVALID_PROXY_OPTIONS`).
 *
 * @param {Error} err The error.
 * @param {string} code Its expected `code`.
 * @param {string} says Words its message must hold.
 * @returns {true}
 */
export function isInvalidProxyOption(err, code, says) {
  assert.ok(err instanceof TypeError, String(err));
  assert.equal(err.code, code);
  assert.ok(err.message.startsWith('The "options.proxy" property '), err.message);
  assert.ok(err.message.includes(says), err.message);
  assertNoPassword(err);
  return true;
}

/**
 * Checks the ways around a proxy, with a proxy variable set for the relay's addresses:
 * forms of `NO_PROXY` (which apply to the `proxy` option too), a `NO_PROXY` entry for
 * another port (which does not apply), and `proxy: false`. Leaves `NO_PROXY` unset.
 *
 * @param {(options: object) => Promise<boolean>} viaProxy Makes a connection or request
 *   with these options, and says whether it went through the proxy.
 * @param {{ url: string }} proxy The proxy.
 * @param {number} relayPort The relay's port.
 */
export async function checkProxyBypasses(viaProxy, proxy, relayPort) {
  for (const noProxy of ['127.0.0.1', '*', `localhost, 127.0.0.1:${relayPort}`, '127.0.0.0/8', '.0.0.1, 127.0.0.1']) {
    process.env.NO_PROXY = noProxy;
    assert.equal(await viaProxy({}), false, `NO_PROXY=${noProxy} leaves the relay out`);
    assert.equal(await viaProxy({ proxy: proxy.url }), false, `NO_PROXY=${noProxy} applies to the option too`);
  }
  process.env.NO_PROXY = `127.0.0.1:${relayPort + 1}`;
  assert.equal(await viaProxy({}), true, 'a NO_PROXY entry for another port does not apply');
  delete process.env.NO_PROXY;
  assert.equal(await viaProxy({ proxy: false }), false, 'proxy: false ignores the environment');
}

/**
 * A port on 127.0.0.1 that nothing listens on (bound, then released).
 *
 * @returns {Promise<number>}
 */
export async function closedPort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await nextEvent(server, 'listening', STEP_MS, 'a server to listen');
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A self-signed certificate for 127.0.0.1 (made by openssl), in a temporary folder.
 *
 * @returns {{ cert: string, key: string, certFile: string, remove: () => void }} `remove`
 *   deletes the folder.
 */
export function selfSignedCert() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'proxy-tls-'));
  const keyFile = path.join(dir, 'local.key');
  const certFile = path.join(dir, 'local.crt');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
      '-days', '1', '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' }
  );
  return {
    cert: fs.readFileSync(certFile, 'utf8'),
    key: fs.readFileSync(keyFile, 'utf8'),
    certFile,
    remove: () => fs.rmSync(dir, { recursive: true, force: true })
  };
}

/**
 * Starts a proxy.
 *
 * @param {object} [opts]
 * @param {{ user: string, password: string }} [opts.auth] Basic credentials it requires
 *   (others get 407).
 * @param {{ cert: string, key: string }} [opts.tls] Serve TLS: an https:// proxy.
 * @returns {Promise<{
 *   url: string, port: number,
 *   urlWith: (user: string, password: string) => string,
 *   connects: Array<{ target: string, authorization: string | undefined }>,
 *   outboundPorts: Set<number>,
 *   viaTunnel: (port: number) => boolean,
 *   cutTunnels: () => number,
 *   close: () => Promise<void>
 * }>} `urlWith` gives the URL with credentials (percent-encoded); `outboundPorts` are the
 *   local ports of every connection the proxy opened; `viaTunnel(port)` says whether a
 *   connection the proxy has open now has that local port (a direct connection to the same
 *   relay cannot have it meanwhile); `cutTunnels` destroys every tunnel's two sockets and
 *   says how many tunnels there were.
 */
export async function startProxy(opts = {}) {
  const server = createProxy(opts.tls ? https.createServer(opts.tls) : http.createServer());
  if (opts.auth) {
    const expected = `Basic ${Buffer.from(`${opts.auth.user}:${opts.auth.password}`).toString('base64')}`;
    server.authenticate = (req) => req.headers['proxy-authorization'] === expected;
  }
  const connects = [];
  const outboundPorts = new Set();
  const tunnels = new Set();
  server.on('connect', (req, socket) => {
    connects.push({ target: req.url, authorization: req.headers['proxy-authorization'] });
    const tunnel = { client: socket, target: null };
    tunnels.add(tunnel);
    // The proxy pipes its connection to the target into the client's socket once it is
    // connected: that connection is the one the relay sees.
    socket.on('pipe', (src) => {
      tunnel.target = src;
      outboundPorts.add(src.localPort);
    });
    socket.once('close', () => tunnels.delete(tunnel));
  });
  server.listen(0, '127.0.0.1');
  await withTimeout(new Promise((resolve) => server.once('listening', resolve)), STEP_MS, 'the proxy to listen');
  const { port } = server.address();
  const scheme = opts.tls ? 'https' : 'http';
  const cutTunnels = () => {
    const n = tunnels.size;
    for (const t of tunnels) {
      t.client.destroy();
      if (t.target) t.target.destroy();
    }
    tunnels.clear();
    return n;
  };
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    port,
    urlWith: (user, password) =>
      `${scheme}://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}`,
    connects,
    outboundPorts,
    viaTunnel: (p) => [...tunnels].some((t) => t.target !== null && !t.target.destroyed && t.target.localPort === p),
    cutTunnels,
    close: async () => {
      cutTunnels();
      server.closeAllConnections();
      await withTimeout(new Promise((resolve) => server.close(() => resolve())), STEP_MS, 'the proxy to close');
    }
  };
}

/**
 * Runs `fn` with a proxy (see `startProxy`), closed afterwards whatever happened.
 *
 * @template T
 * @param {object} opts The options of `startProxy`.
 * @param {(proxy: any) => Promise<T>} fn The test body.
 * @returns {Promise<T>}
 */
export async function withProxy(opts, fn) {
  const proxy = await startProxy(opts);
  try {
    return await fn(proxy);
  } finally {
    await proxy.close();
  }
}

/**
 * Sets environment variables for the duration of `fn` (a value of `undefined` removes the
 * variable), then restores them.
 *
 * @template T
 * @param {Record<string, string | undefined>} vars The variables.
 * @param {() => Promise<T>} fn The body.
 * @returns {Promise<T>}
 */
export async function withEnv(vars, fn) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The proxy variables, all unset: a test starts from a known environment with this. */
export const NO_PROXY_VARS = Object.freeze({
  http_proxy: undefined,
  HTTP_PROXY: undefined,
  https_proxy: undefined,
  HTTPS_PROXY: undefined,
  no_proxy: undefined,
  NO_PROXY: undefined
});

/**
 * Records the ports the relay's control channels come from (its 'listen' events: "listener
 * connected to hc from 127.0.0.1:54321").
 *
 * @param {any} relay A LocalRelay.
 * @returns {number[]} The ports, filled as listeners connect.
 */
export function listenerPorts(relay) {
  const ports = [];
  relay.on('event', (e) => {
    const m = e.type === 'listen' ? /from .*:(\d+)$/.exec(e.message) : null;
    if (m) ports.push(Number(m[1]));
  });
  return ports;
}
