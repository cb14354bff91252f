// A real HTTP proxy for the tests: TooTallNate's `proxy` package (an http.Server, or an
// https.Server for an https:// proxy) on 127.0.0.1, port 0, in the test's process. It
// records every CONNECT it is asked for, and the connections it opens on a client's behalf:
// their local ports are what the relay sees as the peer's, and cutting them (with the
// clients' side) is how a test makes the proxy drop its tunnels.
import http from 'node:http';
import https from 'node:https';

import { createProxy } from 'proxy';

import { STEP_MS, withTimeout } from './relay-steps.mjs';

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
