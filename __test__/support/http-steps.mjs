// Steps for the tests of HTTP over Hybrid Connections: senders written with Node's own
// `http` module (plain HTTP requests to the relay, as the protocol has them), and
// `RelayedServer`s that serve 'request'. Every wait has a timeout.
import crypto from 'node:crypto';
import http from 'node:http';

import { createRelayHttpsUri, createRelayToken } from 'hyco-ws-rs';

import { STEP_MS, withTimeout } from './relay-steps.mjs';

/** Keep-alive agents made here, destroyed by `endAgents()`. */
const agents = new Set();

/**
 * The address of Hybrid Connection `path` (with any suffix and query) on `relay`, and a
 * Send token for it.
 *
 * @param {any} relay The relay.
 * @param {string} [path] The Hybrid Connection and suffix.
 * @returns {{ url: string, token: string }}
 */
export function httpAddress(relay, path = 'hc') {
  const url = createRelayHttpsUri(relay.namespace, path);
  return { url, token: createRelayToken(url, relay.keyName, relay.key) };
}

/**
 * A keep-alive agent (one connection), destroyed by `endAgents()`.
 *
 * @returns {http.Agent}
 */
export function keepAliveAgent() {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  agents.add(agent);
  return agent;
}

/** Destroys every agent made by `keepAliveAgent()`. */
export function endAgents() {
  for (const a of agents) a.destroy();
  agents.clear();
}

/**
 * Sends one request through the relay and reads the whole response.
 *
 * @param {string} url The address.
 * @param {object} [opts]
 * @param {string} [opts.method]
 * @param {object} [opts.headers] Request headers (`ServiceBusAuthorization` is added from
 *   `opts.token` when given).
 * @param {string|null} [opts.token]
 * @param {Buffer|string|Iterable<Buffer>} [opts.body] The body; an iterable is written piece
 *   by piece (chunked).
 * @param {http.Agent} [opts.agent]
 * @param {number} [opts.ms] Time allowed for the whole exchange.
 * @returns {Promise<{ status: number, statusMessage: string, headers: object, rawHeaders: string[], body: Buffer }>}
 */
export function sendHttp(url, opts = {}) {
  const { method = 'GET', headers = {}, token, body, agent, ms = STEP_MS } = opts;
  const all = { ...headers };
  if (token) all.ServiceBusAuthorization = token;
  const done = new Promise((resolve, reject) => {
    const req = http.request(url, { method, headers: all, agent: agent ?? false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () =>
        resolve({
          status: res.statusCode,
          statusMessage: res.statusMessage,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: Buffer.concat(chunks)
        })
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body === undefined || typeof body === 'string' || Buffer.isBuffer(body)) {
      req.end(body);
    } else {
      (async () => {
        for (const piece of body) {
          if (!req.write(piece)) await new Promise((r) => req.once('drain', r));
        }
        req.end();
      })().catch(reject);
    }
  });
  return withTimeout(done, ms, `${method} ${url}`);
}

/**
 * Bytes of a repeating pattern, and their SHA-256.
 *
 * @param {number} length
 * @returns {{ data: Buffer, sha: string }}
 */
export function patterned(length) {
  const data = Buffer.alloc(length);
  for (let i = 0; i < length; i++) data[i] = (i * 7 + (i >> 8)) & 0xff;
  return { data, sha: sha256(data) };
}

/**
 * @param {Buffer} data
 * @returns {string} Its SHA-256, hex.
 */
export function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/**
 * Reads a request's whole body.
 *
 * @param {http.IncomingMessage} req
 * @returns {Promise<Buffer>}
 */
export function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
