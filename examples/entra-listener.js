'use strict';

/**
 * A listener that signs in with Entra ID (Azure AD) instead of a key: an echo server.
 *
 *   RELAY_NAMESPACE=contoso.servicebus.windows.net RELAY_PATH=hc node examples/entra-listener.js
 *
 * With RELAY_NAMESPACE and RELAY_PATH set, the credential is `@azure/identity`'s
 * `DefaultAzureCredential` (`npm install @azure/identity`): environment variables, a managed
 * identity, or your `az login`. The identity needs the "Azure Relay Listener" role (or
 * "Azure Relay Owner") on the namespace or the Hybrid Connection. The server asks it for a
 * token for https://relay.azure.net//.default and again before each one expires.
 *
 * With neither set, it starts the package's local relay emulator in Entra ID mode, with local
 * (SAS) authentication disabled, and uses the emulator's stand-in credential; it prints a
 * token a sender can use. Ctrl-C closes the listener (and that relay) and exits.
 */

const WebSocket = require('hyco-ws-rs');

/**
 * The namespace, the Hybrid Connection and the credential: from the environment, or a local
 * relay started here.
 *
 * @return {Promise<{namespace: String, path: String, credential: Object, relay: ?Object}>}
 */
async function target() {
  const { RELAY_NAMESPACE: namespace, RELAY_PATH: path } = process.env;
  if (namespace && path) {
    let identity;
    try {
      identity = require('@azure/identity');
    } catch {
      throw new Error('@azure/identity is not installed: run `npm install @azure/identity`');
    }
    return { namespace, path, credential: new identity.DefaultAzureCredential(), relay: null };
  }
  if (namespace || path) throw new Error('Set both RELAY_NAMESPACE and RELAY_PATH, or neither');
  const relay = await WebSocket.startLocalRelay({
    entra: { secret: require('crypto').randomBytes(32), localAuth: false }
  });
  console.log(`No RELAY_* variables set: started a local relay emulator in Entra ID mode on ${relay.url}`);
  console.log(`a sender token (Azure Relay Sender, 1 h): ${relay.createEntraToken({ roles: ['Azure Relay Sender'] })}`);
  const credential = relay.entraCredential({ roles: ['Azure Relay Listener'] });
  return { namespace: relay.namespace, path: 'examples', credential, relay };
}

/**
 * Starts listening.
 *
 * @return {Promise<void>}
 */
async function main() {
  const { namespace, path, credential, relay } = await target();
  const server = WebSocket.createRelayedServer(
    { server: WebSocket.createRelayListenUri(namespace, path), credential },
    function (ws) {
      console.log('connection accepted');
      ws.on('message', function (data, isBinary) {
        console.log(isBinary ? `message: <${data.length} bytes>` : `message: ${data}`);
        ws.send(data, { binary: isBinary });
      });
      ws.on('error', function (err) {
        console.error(`connection error: ${err.message}`);
      });
    }
  );

  server.on('listening', function () {
    console.log(`listening: Hybrid Connection "${path}" on ${namespace} (Entra ID)`);
  });
  // A credential that fails, or a token the relay refuses (a missing role assignment shows
  // as 403), is retried: each attempt says why here.
  server.on('warning', function (err) {
    console.error(`warning: ${err.code}: ${err.message}`);
  });
  server.on('error', function (err) {
    console.error(`error: ${err.message}`);
    process.exitCode = 1;
  });
  server.on('close', function () {
    if (relay) relay.close();
  });

  /**
   * Closes the listener (then the local relay, if one was started): the process then exits
   * by itself.
   *
   * @param {String} signal The signal received
   */
  function stop(signal) {
    console.log(`${signal}: closing`);
    server.close(function () {
      console.log('closed');
    });
  }

  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch(function (err) {
  console.error(err.message);
  process.exitCode = 1;
});
