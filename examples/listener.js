'use strict';

/**
 * A Hybrid Connection listener that echoes every message back to its sender.
 *
 *   node examples/listener.js
 *
 * Where it listens comes from RELAY_CONNECTION_STRING, or RELAY_NAMESPACE, RELAY_PATH,
 * RELAY_KEY_RULE and RELAY_KEY (see support/target.js). With none of them set it starts a
 * local relay emulator in this process and prints the connection string to give
 * sender.js. Ctrl-C closes the listener (and that relay) and exits.
 *
 * This is hyco-ws's examples/simple/listener.js with `require('hyco-ws-rs')`.
 */

const WebSocket = require('hyco-ws-rs');

const { TargetError, describeTarget, resolveTarget } = require('./support/target');

/**
 * Starts listening.
 *
 * @return {Promise<void>}
 */
async function main() {
  const target = await resolveTarget({ startLocalRelay: true });

  if (target.relay) {
    console.log(`No RELAY_* variables set: started a local relay emulator on ${target.relay.url}`);
    console.log(`connection string: ${target.connectionString}`);
    console.log('To send to this listener, run in another terminal:');
    console.log(`  RELAY_CONNECTION_STRING='${target.connectionString}' node examples/sender.js`);
  }

  const server = WebSocket.createRelayedServer(
    {
      server: target.listenUri,
      // A function, not a string: the server calls it again for every renewal and
      // reconnect, so the listener keeps running past the token's lifetime (one hour).
      token: function () {
        return target.token();
      }
    },
    function (ws, req) {
      const from = req.socket.remoteAddress || 'an unknown address';
      console.log(`connection accepted: ${req.url} from ${from}`);

      ws.on('message', function (data, isBinary) {
        console.log(isBinary ? `message: <${data.length} bytes>` : `message: ${data}`);
        ws.send(data, { binary: isBinary });
      });
      ws.on('close', function (code) {
        console.log(`connection closed (${code})`);
      });
      ws.on('error', function (err) {
        console.error(`connection error: ${err.message}`);
      });
    }
  );

  server.on('listening', function () {
    console.log(`listening: ${describeTarget(target)}`);
  });
  // Outages, drops and expired tokens are retried by the server; this only reports them.
  // (A wrong key or a policy without Listen shows here as 401 on each attempt.)
  server.on('connecting', function (err) {
    if (err) console.error(`reconnecting after: ${err.message}`);
  });
  server.on('online', function () {
    if (server.lastError) console.log('online again');
  });
  // Only what reconnecting cannot fix (the Hybrid Connection does not exist, a fixed
  // token refused): 'close' follows.
  server.on('error', function (err) {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  });
  server.on('close', function () {
    target.close();
  });

  let stopping = false;

  /**
   * Closes the listener and its accepted connections, then the local relay if one was
   * started. Nothing then keeps the process alive, so it exits by itself.
   *
   * @param {String} signal The signal received
   */
  function stop(signal) {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing`);
    server.close(function () {
      console.log('closed');
    });
  }

  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch(function (err) {
  console.error(err instanceof TargetError ? err.message : err);
  process.exit(1);
});
