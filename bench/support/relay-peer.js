'use strict';

/**
 * The local relay emulator for `bench/listener.js`, in a child process of its own, so that
 * neither the listener under test nor the senders share a process with it.
 *
 * Usage: started by bench/listener.js with child_process.fork(); not meant to be run by hand.
 *
 * The relay knows exactly the Hybrid Connections `bench-rs` and `bench-ws` (one per listener
 * kind), with the default SAS rule (Manage).
 *
 * IPC:
 *   - once listening, sends the parent `{ ready: { namespace, keyName, key, pid } }`;
 *   - on `{ stats: id }` answers `{ stats: { id, ...relay.stats(), events } }`, where
 *     `events` counts the relay's `'event'`s by type since the start (`connect`, `accept`,
 *     `timeout`, `denied`, `reject`, ...) and `fdErrors` counts those whose message says the
 *     relay ran out of file descriptors;
 *   - on `{ shutdown: true }` (or when the parent goes away) closes the relay and exits.
 */

const { startLocalRelay } = require('../..');
const { KINDS } = require('./listeners');

/**
 * Starts the relay, tells the parent, answers its requests, and shuts down when asked.
 *
 * @return {Promise<void>}
 */
async function main() {
  const relay = await startLocalRelay({ hybridConnections: Object.values(KINDS).map((k) => k.entity) });
  const events = {};
  let fdErrors = 0;
  let firstFdError = null;
  relay.on('event', (ev) => {
    events[ev.type] = (events[ev.type] || 0) + 1;
    if (ev.message && /EMFILE|too many open files|os error 24/i.test(ev.message)) {
      fdErrors++;
      if (firstFdError === null) firstFdError = ev.message;
    }
  });

  let shuttingDown = false;
  /**
   * Closes the relay and exits (a stuck close is cut short).
   *
   * @return {Promise<void>}
   */
  const shutdown = async () => {
    if (shuttingDown) return;
    shuttingDown = true;
    setTimeout(() => {
      console.error('bench/support/relay-peer.js: relay.close() did not finish within 5 s; exiting');
      process.exit(1);
    }, 5000).unref();
    await relay.close();
    process.exit(0);
  };
  process.on('message', (msg) => {
    if (!msg) return;
    if (msg.shutdown) shutdown();
    else if (msg.stats !== undefined && process.connected) {
      process.send({ stats: { id: msg.stats, ...relay.stats(), events: { ...events }, fdErrors, firstFdError } });
    }
  });
  process.on('disconnect', shutdown);
  process.send({ ready: { namespace: relay.namespace, keyName: relay.keyName, key: relay.key, pid: process.pid } });
}

main().catch((err) => {
  console.error(`bench/support/relay-peer.js failed: ${err.stack || err.message}`);
  process.exit(1);
});
