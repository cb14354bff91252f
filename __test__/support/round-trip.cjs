'use strict';

/**
 * One relay round trip with every layer of the package: the helpers, the local relay, a
 * RelayedServer that echoes, relayedConnect. Run by the tests in another Node.js or in an
 * installed project:
 *
 *   node round-trip.cjs [module]
 *
 * `module` is what to require, `hyco-ws-rs` by default. Prints one JSON line: the Node.js
 * version, the reply, and the native binaries that were loaded; exits 1 on any failure.
 */

const hyco = require(process.argv[2] || 'hyco-ws-rs');

/**
 * Waits for `event` on `emitter`.
 *
 * @param {EventEmitter} emitter The emitter
 * @param {String} event The event
 * @return {Promise<Array>} The event's arguments
 */
function once(emitter, event) {
  return new Promise((resolve) => emitter.once(event, (...args) => resolve(args)));
}

/**
 * Runs the round trip.
 *
 * @return {Promise<String>} The reply
 */
async function main() {
  const relay = await hyco.startLocalRelay();
  const server = hyco.createRelayedServer({ connectionString: relay.connectionString('hc') }, (ws) => {
    ws.on('message', (data) => ws.send(`echo:${data}`));
  });
  await once(server, 'listening');
  const uri = hyco.createRelaySendUri(relay.namespace, 'hc');
  const ws = hyco.relayedConnect(uri, hyco.createRelayToken(uri, relay.keyName, relay.key));
  await once(ws, 'open');
  ws.send('hi');
  const [reply] = await once(ws, 'message');
  ws.close();
  await once(ws, 'close');
  await new Promise((resolve) => server.close(resolve));
  await relay.close();
  return String(reply);
}

// The caller's timeout bounds every wait: a hang is killed from outside.
main().then(
  (reply) => {
    const binaries = Object.keys(require.cache).filter((file) => file.endsWith('.node'));
    console.log(JSON.stringify({ node: process.version, reply, binaries }));
  },
  (err) => {
    console.error(err);
    process.exit(1);
  }
);
