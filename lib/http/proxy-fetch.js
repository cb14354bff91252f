'use strict';

/**
 * `relayedFetch` through an HTTP proxy: `CONNECT host:port` to the proxy (with Basic
 * credentials from its URL), then the request inside the tunnel (TLS to the relay for
 * `https:` addresses), as every other connection of the package goes through a proxy.
 *
 * Node's `fetch` takes no proxy, and a dispatcher from the npm `undici` package does not
 * reliably fit the `fetch` bundled with each Node.js release (their dispatcher interfaces
 * drift apart between majors), so a request through a proxy is sent by `undici`'s own
 * `fetch` with its own `Agent`, whose connector opens the tunnel here. Opening it here
 * rather than with undici's `ProxyAgent` gives the errors of the other connections: a 407
 * is `ERR_PROXY_AUTH`, another refusal `ERR_PROXY_REFUSED` with the proxy's status and
 * reason, an unreachable proxy is named, and the password never shows.
 *
 * The response is handed back as a `Response` of Node's own `fetch` (the same body stream,
 * not a copy), so that it is of one class whether or not a proxy was used.
 */

const http = require('http');
const https = require('https');

const { codedError } = require('../validation');

/**
 * How long reaching the proxy and its answer to CONNECT may take: undici's default
 * `connectTimeout`, which Node's `fetch` gives a direct connection.
 */
const CONNECT_TIMEOUT_MS = 10000;

/** The proxies' agents, by proxy and credentials: tunnels are kept alive and reused. */
const agents = new Map();

/** The errors made here, which `fetch` wraps in its `TypeError('fetch failed')`. */
const proxyErrors = new WeakSet();

/**
 * An error about the proxy, recorded as such.
 *
 * @param {String} code The error's `code`
 * @param {String} message The message (with the proxy's URL, never its credentials)
 * @param {Object} [extra] Properties to add (`statusCode`, `statusDescription`, ...)
 * @return {Error} The error
 * @private
 */
function proxyError(code, message, extra) {
  const err = Object.assign(codedError(Error, code, message), extra);
  proxyErrors.add(err);
  return err;
}

/**
 * The error for a failure to reach the proxy or to read its answer, in the words of the
 * WebSocket connections' (the native side's).
 *
 * @param {Error} err What `http.request` reported
 * @param {Object} proxy The proxy, from `proxyFor()`
 * @return {Error} The error, naming the proxy
 * @private
 */
function unreachable(err, proxy) {
  if (err.code === 'ECONNRESET' && err.message === 'socket hang up') {
    return proxyError('ECONNRESET', `The proxy ${proxy.url} closed the connection before answering CONNECT`);
  }
  if (typeof err.code === 'string' && err.code.startsWith('HPE_')) {
    return proxyError('ERR_INVALID_HTTP_RESPONSE', `The proxy ${proxy.url} sent an invalid answer to CONNECT`);
  }
  const { code, errno, syscall, address, port } = err;
  return proxyError(code, `${err.message} (proxy ${proxy.url})`, { errno, syscall, address, port });
}

/**
 * Opens a tunnel to `target` through `proxy`.
 *
 * @param {Object} proxy The proxy, from `proxyFor()`
 * @param {String} target `host:port` (an IPv6 host in brackets)
 * @return {Promise<net.Socket>} The tunnel: a connection to the proxy, which now relays
 *     its bytes to and from `target`
 * @private
 */
function openTunnel(proxy, target) {
  return new Promise((resolve, reject) => {
    const headers = { host: target };
    if (proxy.authorization) headers['proxy-authorization'] = proxy.authorization;
    // `agent: false`: a connection of its own, never pooled, since it becomes the tunnel.
    const req = (proxy.tls ? https : http).request({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: target,
      headers,
      agent: false,
      timeout: CONNECT_TIMEOUT_MS
    });
    let settled = false;
    const fail = (err) => {
      if (settled) return;
      settled = true;
      reject(err);
    };
    req.on('timeout', () => {
      fail(proxyError('ETIMEDOUT', `Opening a tunnel through the proxy ${proxy.url} has timed out`));
      req.destroy();
    });
    req.on('error', (err) => fail(unreachable(err, proxy)));
    // Node.js hands over the socket with any answer to CONNECT, not only 2xx ones.
    req.on('connect', (res, socket, head) => {
      const status = res.statusCode;
      const reason = res.statusMessage || '';
      if (status >= 200 && status < 300) {
        if (settled) return socket.destroy();
        settled = true;
        socket.setTimeout(0);
        // Bytes after the answer's head already belong to the tunnel (for an http: target;
        // a TLS server sends nothing before the client's hello).
        if (head.length > 0) socket.unshift(head);
        resolve(socket);
        return;
      }
      socket.destroy();
      // The words of the WebSocket connections' refusals (core/src/socket/proxy/tunnel.rs),
      // so that a proxy's answer reads the same whichever connection met it.
      const refusal = { statusCode: status, statusDescription: reason };
      if (status === 407) {
        const what = proxy.authorization
          ? 'it refused the user name and password of the proxy URL'
          : 'give a user name and password in the proxy URL (http://user:password@host:port)';
        fail(
          proxyError(
            'ERR_PROXY_AUTH',
            `The proxy ${proxy.url} requires authentication (407 ${reason}): ${what}`,
            refusal
          )
        );
      } else {
        fail(
          proxyError(
            'ERR_PROXY_REFUSED',
            `The proxy ${proxy.url} refused to open a tunnel to ${target}: ${status} ${reason}`.trim(),
            refusal
          )
        );
      }
    });
    req.end();
  });
}

/**
 * The undici `Agent` whose connections are tunnels through `proxy` (one per proxy and
 * credentials, kept for the next requests).
 *
 * @param {Object} undici The `undici` module
 * @param {Object} proxy The proxy, from `proxyFor()`
 * @return {Object} The agent
 * @private
 */
function agentFor(undici, proxy) {
  const key = `${proxy.url}\n${proxy.authorization || ''}`;
  let agent = agents.get(key);
  if (agent === undefined) {
    // TLS to the relay inside the tunnel: undici's own connector, with Node's default trust
    // (the same as Node's `fetch`: its CA store, NODE_EXTRA_CA_CERTS).
    const tls = undici.buildConnector({});
    agent = new undici.Agent({
      connect(opts, callback) {
        const host = opts.hostname.includes(':') ? `[${opts.hostname}]` : opts.hostname;
        const port = opts.port || (opts.protocol === 'https:' ? 443 : 80);
        openTunnel(proxy, `${host}:${port}`).then(
          (socket) => {
            if (opts.protocol === 'https:') tls({ ...opts, httpSocket: socket }, callback);
            else callback(null, socket);
          },
          (err) => callback(err)
        );
      }
    });
    agents.set(key, agent);
  }
  return agent;
}

/**
 * Gives a constructed `Response` (which has no URL) the URL a request ended at, and its
 * clones too.
 *
 * @param {Response} response The response
 * @param {String} url The URL
 * @param {Boolean} redirected Whether redirects led there
 * @return {Response} `response`
 * @private
 */
function withUrl(response, url, redirected) {
  const clone = response.clone.bind(response);
  return Object.defineProperties(response, {
    url: { value: url, enumerable: true },
    redirected: { value: redirected, enumerable: true },
    clone: { value: () => withUrl(clone(), url, redirected) }
  });
}

/**
 * Node's `Response` for one of undici's: same status, headers and body stream.
 *
 * @param {Object} res undici's `Response`
 * @return {Response} The response; undici's own for a status that the `Response`
 *     constructor refuses (outside 200 to 599), which a listener could send
 * @private
 */
function nodeResponse(res) {
  if (res.status < 200 || res.status > 599) return res;
  const out = new Response(res.body, { status: res.status, statusText: res.statusText, headers: res.headers });
  return withUrl(out, res.url, res.redirected);
}

/**
 * `fetch` through `proxy`.
 *
 * @param {URL} url The address
 * @param {Object} init fetch's options
 * @param {Object} proxy The proxy, from `proxyFor()`
 * @return {Promise<Response>} The response, as Node's `fetch` gives it
 * @throws {Error} `ERR_PROXY_AUTH`, `ERR_PROXY_REFUSED`, or the failure to reach the proxy
 *     (naming it), rather than `fetch`'s `TypeError` around them
 * @private
 */
async function fetchThroughProxy(url, init, proxy) {
  // Loaded only when a proxy is used.
  const undici = require('undici');
  let res;
  try {
    res = await undici.fetch(url, { ...init, dispatcher: agentFor(undici, proxy) });
  } catch (err) {
    if (err !== null && typeof err === 'object' && proxyErrors.has(err.cause)) throw err.cause;
    throw err;
  }
  return nodeResponse(res);
}

module.exports = { fetchThroughProxy };
