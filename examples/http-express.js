'use strict';

/**
 * An Express application served through a Hybrid Connection: the relay hands the listener
 * plain HTTPS requests sent to https://{namespace}/{hybrid connection}/..., and the app
 * answers them as it would on a local port.
 *
 *   npm install express        # in your own project (this repository has it already)
 *   node examples/http-express.js
 *
 * Where it listens comes from RELAY_CONNECTION_STRING, or RELAY_NAMESPACE, RELAY_PATH,
 * RELAY_KEY_RULE and RELAY_KEY (see support/target.js). With none of them set it starts a
 * local relay emulator in this process and prints a request to try. Ctrl-C closes it.
 */

const express = require('express');
const { createRelayHttpsUri, createRelayToken, createRelayedServer } = require('hyco-ws-rs');

const { TargetError, describeTarget, resolveTarget } = require('./support/target');

/**
 * The application: nothing in it knows about the relay.
 *
 * @return {Function} The Express app
 */
function makeApp() {
  const app = express();
  const orders = [];
  app.use(express.json());
  app.get('/hello', (req, res) => {
    res.json({ hello: req.query.name || 'world', from: req.ip, protocol: req.protocol });
  });
  app.post('/orders', (req, res) => {
    const order = { id: orders.length + 1, ...req.body };
    orders.push(order);
    res.status(201).location(`/orders/${order.id}`).json(order);
  });
  app.get('/orders/:id', (req, res) => {
    const order = orders.find((o) => o.id === Number(req.params.id));
    if (order) res.json(order);
    else res.status(404).json({ error: 'no such order' });
  });
  return app;
}

/**
 * Starts listening.
 *
 * @return {Promise<void>}
 */
async function main() {
  const target = await resolveTarget({ startLocalRelay: true });
  const server = createRelayedServer({ server: target.listenUri, token: () => target.token() });
  server.on('request', makeApp());

  server.on('listening', function () {
    console.log(`listening: ${describeTarget(target)}`);
    if (target.relay) {
      // A relay of our own: show a request that works against it.
      const url = createRelayHttpsUri(target.namespace, `${target.path}/hello?name=relay`);
      const token = createRelayToken(url, target.relay.keyName, target.relay.key);
      console.log(`try: curl -H 'ServiceBusAuthorization: ${token}' '${url}'`);
    }
  });
  server.on('warning', function (err) {
    console.error(`warning: ${err.message}`);
  });
  server.on('error', function (err) {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  });
  server.on('close', function () {
    target.close();
  });

  /**
   * Closes the listener (and the local relay, if one was started).
   *
   * @param {String} signal The signal received
   */
  function stop(signal) {
    console.log(`${signal}: closing`);
    server.close(() => console.log('closed'));
  }

  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch(function (err) {
  console.error(err instanceof TargetError ? err.message : err);
  process.exit(1);
});
