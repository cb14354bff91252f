'use strict';

/**
 * `npm run demo`: the whole package in one process, offline. Starts the local relay
 * emulator, a RelayedServer (the listener) and a sender, exchanges a few messages through the
 * relay, prints what happens with round-trip times, and exits 0.
 *
 * Usage: npm run demo [-- --messages N]
 */

const { performance } = require('perf_hooks');

const WebSocket = require('..');

const MESSAGES = Number(process.argv[process.argv.indexOf('--messages') + 1]) || 5;
const HYBRID_CONNECTION = 'demo';

/**
 * Prints a line with the time since the demo started.
 *
 * @param {Number} t0 The start, from performance.now()
 * @param {String} text The line
 */
function say(t0, text) {
  console.log(`[${(performance.now() - t0).toFixed(1).padStart(7)} ms] ${text}`);
}

/**
 * Resolves with the first emission of `event`, or rejects after `ms`.
 *
 * @param {EventEmitter} emitter The emitter
 * @param {String} event The event
 * @param {String} what For the error
 * @param {Number} [ms=10000] The timeout
 * @return {Promise<Array>} The event's arguments
 */
function once(emitter, event, what, ms = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
    if (event !== 'error') {
      emitter.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    }
  });
}

/**
 * Runs the demo.
 *
 * @return {Promise<void>}
 */
async function main() {
  const t0 = performance.now();
  const relay = await WebSocket.startLocalRelay({ hybridConnections: [HYBRID_CONNECTION] });
  say(t0, `local relay emulator listening, namespace ${relay.namespace}`);
  say(t0, `connection string: ${relay.connectionString(HYBRID_CONNECTION).replace(/SharedAccessKey=[^;]+/, 'SharedAccessKey=…')}`);

  // The listener: exactly what an app would write against Azure, with a connection string.
  const server = WebSocket.createRelayedServer(
    { connectionString: relay.connectionString(HYBRID_CONNECTION) },
    (socket, req) => {
      say(t0, `listener: connection from ${req.socket.remoteAddress}:${req.socket.remotePort}, url ${req.url}`);
      socket.on('message', (data, isBinary) => {
        say(t0, `listener: received "${data}", echoing`);
        socket.send(data, { binary: isBinary });
      });
    }
  );
  server.on('connecting', () => say(t0, `listener: status ${server.status}`));
  await once(server, 'listening', 'the listener to go online');
  say(t0, `listener: status ${server.status}`);

  // The sender: hyco-ws's relayedConnect, with a token for its address.
  const address = WebSocket.createRelaySendUri(relay.namespace, `${HYBRID_CONNECTION}/chat?room=1`);
  const token = WebSocket.createRelayToken(address, relay.keyName, relay.key);
  const started = performance.now();
  const sender = WebSocket.relayedConnect(address, token);
  await once(sender, 'open', 'the sender to connect');
  say(t0, `sender: connected through the relay in ${(performance.now() - started).toFixed(2)} ms`);

  const rtts = [];
  for (let i = 1; i <= MESSAGES; i++) {
    const text = `hello ${i}`;
    const sent = performance.now();
    const reply = once(sender, 'message', `the echo of "${text}"`);
    sender.send(text);
    const [data] = await reply;
    const rtt = performance.now() - sent;
    rtts.push(rtt);
    say(t0, `sender: echo "${data}" after ${rtt.toFixed(3)} ms`);
  }
  rtts.sort((a, b) => a - b);
  say(t0, `round trips: min ${rtts[0].toFixed(3)} ms, median ${rtts[rtts.length >> 1].toFixed(3)} ms, max ${rtts[rtts.length - 1].toFixed(3)} ms`);

  const closed = once(sender, 'close', 'the sender to close');
  sender.close(1000, 'demo done');
  const [code, reason] = await closed;
  say(t0, `sender: closed ${code} ${reason}`);
  await new Promise((resolve) => server.close(resolve));
  say(t0, `listener: status ${server.status}`);
  await relay.close();
  say(t0, 'relay closed; everything is shut down, the process exits by itself');
}

main().catch((err) => {
  console.error(`demo failed: ${err.message}`);
  process.exitCode = 1;
});
