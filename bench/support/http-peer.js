'use strict';

/**
 * The processes of `bench/http.js`, one role each, so that the sender, the relay and each
 * listener run apart (as they do in a deployment): started by bench/http.js with
 * child_process.fork('bench/support/http-peer.js', [role, ...]); not meant to be run by hand.
 *
 * Roles:
 *   - `relay`: the local relay emulator; sends `{ ready: { namespace, keyName, key } }`, then
 *     exits on `{ shutdown: true }` (or when the parent goes away).
 *   - `listener rs|hyco|base`: an HTTP listener on Hybrid Connection `bench-http-{kind}`, with
 *     hyco-ws-rs's RelayedServer ('request'; `base`: the build in HYCO_BENCH_BASELINE) or Microsoft's
 *     hyco-https 1.4.5; started by
 *     `{ start: { namespace, keyName, key } }`, it answers `{ online: true }`. Its handler
 *     answers a GET with 2 bytes and a POST, once its body is read, with the body's size.
 *     `{ cpu: id }` answers `{ reply: { id, cpu: process.cpuUsage(), requests } }`.
 *   - `sender`: `{ run: { id, url, token, method, bodySize, concurrency, count } }` sends
 *     `count` requests over `concurrency` keep-alive connections (Node's http) and answers
 *     `{ reply: { id, ms, latencies, errors, bytes } }` (latencies in ms, one per request).
 */

const http = require('http');
const path = require('path');

const [role, kind] = process.argv.slice(2);

/**
 * Sends a message to the parent if it is still there.
 *
 * @param {Object} msg The message
 */
function tell(msg) {
  if (process.connected) process.send(msg);
}

process.on('disconnect', () => process.exit(0));

/**
 * The local relay emulator.
 *
 * @return {Promise<void>}
 */
async function relay() {
  const { startLocalRelay } = require('../..');
  const r = await startLocalRelay({ hybridConnections: ['bench-http-rs', 'bench-http-hyco', 'bench-http-base'] });
  process.on('message', async (msg) => {
    if (msg && msg.shutdown) {
      await r.close();
      process.exit(0);
    }
    if (msg && msg.cpu) tell({ reply: { id: msg.cpu, cpu: process.cpuUsage() } });
  });
  tell({ ready: { namespace: r.namespace, keyName: r.keyName, key: r.key } });
}

/**
 * The request handler of both listeners: a GET gets 2 bytes; a POST, once its body is
 * read, its size. No empty Buffer is ever written (hyco-https never answers a response
 * ended with one).
 *
 * @param {Object} counters Where requests are counted
 * @return {Function} The handler
 */
function handler(counters) {
  return (req, res) => {
    counters.requests++;
    if (req.method === 'GET') {
      res.end('ok');
      return;
    }
    let bytes = 0;
    req.on('data', (c) => (bytes += c.length));
    req.on('end', () => res.end(String(bytes)));
  };
}

/**
 * An HTTP listener of `kind`.
 *
 * @return {Promise<void>}
 */
async function listener() {
  const { createRelayListenUri, createRelayToken } = require('../..');
  const counters = { requests: 0 };
  process.on('message', (msg) => {
    if (!msg) return;
    if (msg.start) {
      const { namespace, keyName, key } = msg.start;
      const server = createRelayListenUri(namespace, `bench-http-${kind}`);
      const token = () => createRelayToken(server, keyName, key);
      let s;
      if (kind === 'rs' || kind === 'base') {
        // `base`: another build of this package, in the directory HYCO_BENCH_BASELINE names.
        const pkg = kind === 'base' ? require(path.resolve(process.env.HYCO_BENCH_BASELINE || '.') + path.sep) : require('../..');
        s = pkg.createRelayedServer({ server, token });
        s.on('request', handler(counters));
      } else {
        s = require('hyco-https').createRelayedServer({ server, token }, handler(counters));
        s.listen();
      }
      s.once('listening', () => tell({ online: true }));
      s.on('error', (err) => tell({ problem: err.message }));
    } else if (msg.cpu) {
      tell({ reply: { id: msg.cpu, cpu: process.cpuUsage(), requests: counters.requests } });
    }
  });
}

/**
 * Sends `count` requests over `concurrency` keep-alive connections: as fast as they are
 * answered, or, with `rate`, request i no earlier than i / rate seconds after the start.
 *
 * @param {Object} job The job (see the file's comment)
 * @return {Promise<Object>} `{ ms, latencies, errors, bytes }`
 */
function runJob({ url, token, method, bodySize, concurrency, count, rate = 0 }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const body = bodySize > 0 ? Buffer.alloc(bodySize, 7) : null;
  const latencies = [];
  let errors = 0;
  let bytes = 0;
  let started = 0;
  const begun = performance.now();
  const one = () =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const req = http.request(url, { method, agent, headers: { ServiceBusAuthorization: token } }, (res) => {
        res.on('data', (d) => (bytes += d.length));
        res.on('end', () => {
          if (res.statusCode !== 200) errors++;
          latencies.push(performance.now() - t0);
          resolve();
        });
      });
      req.on('error', () => {
        errors++;
        resolve();
      });
      req.end(body);
    });
  const interval = rate > 0 ? 1000 / rate : 0;
  const worker = async () => {
    while (started < count) {
      const due = begun + started++ * interval;
      const wait = due - performance.now();
      if (wait >= 1) await new Promise((resolve) => setTimeout(resolve, wait));
      await one();
    }
  };
  return Promise.all(Array.from({ length: concurrency }, worker)).then(() => {
    const ms = performance.now() - begun;
    agent.destroy();
    return { ms, latencies, errors, bytes };
  });
}

/**
 * The load generator.
 */
function sender() {
  process.on('message', async (msg) => {
    if (msg && msg.run) {
      const before = process.cpuUsage();
      const result = await runJob(msg.run);
      tell({ reply: { id: msg.run.id, ...result, cpu: process.cpuUsage(before) } });
    }
  });
  tell({ ready: true });
}

const roles = { relay, listener, sender };
if (!roles[role]) {
  console.error(`bench/support/http-peer.js: unknown role ${role}`);
  process.exit(2);
}
Promise.resolve(roles[role]()).catch((err) => {
  console.error(`bench/support/http-peer.js ${role}: ${err.stack || err.message}`);
  process.exit(1);
});
