'use strict';

/**
 * One echo service, reachable two ways: directly, on a local ws port, and from anywhere
 * through an Azure Relay Hybrid Connection. Both servers hand their connections to the same
 * handler: a relayed socket is a ws 8 socket, and the relayed request has the `url` and
 * `socket.remoteAddress` of Node's `http.IncomingMessage`.
 *
 *   PORT=8080 node examples/hybrid-server.js
 *
 * PORT is the local port (default 8080; 0 picks a free one, printed). Where the relay side
 * listens comes from RELAY_CONNECTION_STRING, or RELAY_NAMESPACE, RELAY_PATH, RELAY_KEY_RULE
 * and RELAY_KEY (see support/target.js); with none of them set it starts a local relay
 * emulator in this process and prints its connection string. Ctrl-C closes everything.
 *
 * Try it with sender.js (through the relay) and, directly, with any WebSocket client:
 *
 *   node -e "const ws = new (require('hyco-ws-rs'))('ws://localhost:8080');
 *            ws.on('open', () => ws.send('hi')).on('message', (m) => { console.log(String(m)); ws.close(); })"
 */

const { once } = require('events');

const { RelayedServer, WebSocketServer } = require('hyco-ws-rs');

const { TargetError, describeTarget, resolveTarget } = require('./support/target');

/**
 * The one connection handler: logs the connection and echoes every message.
 *
 * @param {String} via Which server accepted it: `'local'` or `'relay'`
 * @return {Function} A `'connection'` listener `(ws, req)`
 */
function echoHandler(via) {
  return function (ws, req) {
    const from = req.socket.remoteAddress || 'an unknown address';
    console.log(`[${via}] connection accepted: ${req.url} from ${from}`);
    ws.on('message', function (data, isBinary) {
      console.log(isBinary ? `[${via}] message: <${data.length} bytes>` : `[${via}] message: ${data}`);
      ws.send(data, { binary: isBinary });
    });
    ws.on('close', function (code) {
      console.log(`[${via}] connection closed (${code})`);
    });
    ws.on('error', function (err) {
      console.error(`[${via}] connection error: ${err.message}`);
    });
  };
}

/**
 * Reads the local port.
 *
 * @return {Number} The port
 * @throws {TargetError} When PORT is not a port number
 */
function localPort() {
  const text = process.env.PORT === undefined || process.env.PORT === '' ? '8080' : process.env.PORT;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port > 65535) throw new TargetError(`PORT must be a port number (0 for any), not ${text}`);
  return port;
}

/**
 * Starts both servers.
 *
 * @return {Promise<void>}
 */
async function main() {
  const port = localPort();
  const target = await resolveTarget({ startLocalRelay: true });
  if (target.relay) {
    console.log(`No RELAY_* variables set: started a local relay emulator on ${target.relay.url}`);
    console.log(`connection string: ${target.connectionString}`);
  }

  const local = new WebSocketServer({ port });
  local.on('connection', echoHandler('local'));

  const relayed = new RelayedServer({ server: target.listenUri, token: target.token });
  relayed.on('connection', echoHandler('relay'));
  // Outages, drops and expired tokens are retried by the server; this only reports them.
  relayed.on('connecting', function (err) {
    if (err) console.error(`[relay] reconnecting after: ${err.message}`);
  });

  // Both up, or the first failure: 'error' is a port in use locally, or (on the relay
  // side) what reconnecting cannot fix, such as a Hybrid Connection that does not exist.
  const failed = new Promise(function (resolve, reject) {
    local.once('error', reject);
    relayed.once('error', reject);
  });
  try {
    await Promise.race([Promise.all([once(local, 'listening'), once(relayed, 'listening')]), failed]);
  } catch (err) {
    console.error(`error: ${err.message}`);
    local.close();
    relayed.close();
    await target.close();
    process.exitCode = 1;
    return;
  }

  console.log(`local: ws://localhost:${local.address().port}/`);
  console.log(`relay: ${describeTarget(target)}`);
  console.log('listening');

  let stopping = false;

  /**
   * Closes both servers and their connections, then the local relay if one was started.
   *
   * @param {String} signal The signal received
   */
  function stop(signal) {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing`);
    // ws's WebSocketServer.close() leaves its connections open; RelayedServer.close()
    // closes its own. Close the local ones the same way (1001, going away).
    for (const ws of local.clients) ws.close(1001, 'Server shutting down');
    Promise.all([
      new Promise((resolve) => local.close(() => resolve())),
      new Promise((resolve) => relayed.close(() => resolve()))
    ])
      .then(() => target.close())
      .then(() => console.log('closed'));
  }

  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  failed.catch(function (err) {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
    stop('error');
  });
}

main().catch(function (err) {
  console.error(err instanceof TargetError ? err.message : err);
  process.exit(1);
});
