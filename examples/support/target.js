'use strict';

/**
 * Where the examples connect: shared by listener.js, sender.js and hybrid-server.js.
 *
 * The rule, in order:
 *
 * 1. `RELAY_CONNECTION_STRING`: a connection string, either from the Azure portal (Relay
 *    namespace > Shared access policies, or the Hybrid Connection's own policies) or the one
 *    `npx hyco-ws-rs relay --hc examples` prints. `EntityPath` names the Hybrid Connection;
 *    without it, `RELAY_PATH` does.
 * 2. `RELAY_NAMESPACE`, `RELAY_PATH`, `RELAY_KEY_RULE` and `RELAY_KEY`, all four. The
 *    namespace is `contoso.servicebus.windows.net`, or `ws://127.0.0.1:PORT` for a local
 *    relay.
 * 3. Nothing set: a listener may start the package's local relay emulator in its own process
 *    (and print a connection string for the sender); a sender cannot, and says what to set.
 */

const WebSocket = require('hyco-ws-rs');

/** The Hybrid Connection a local relay started here offers. */
const LOCAL_PATH = 'examples';

const VARIABLES = ['RELAY_NAMESPACE', 'RELAY_PATH', 'RELAY_KEY_RULE', 'RELAY_KEY'];

const HELP = `Set where to connect, either
  RELAY_CONNECTION_STRING  a connection string: from the Azure portal (a Relay shared access
                           policy; add RELAY_PATH if it has no EntityPath), or the one that
                           \`npx hyco-ws-rs relay --hc examples\` prints
or all four of
  RELAY_NAMESPACE  contoso.servicebus.windows.net (or ws://127.0.0.1:PORT, a local relay)
  RELAY_PATH       the Hybrid Connection's name
  RELAY_KEY_RULE   a shared access policy's name, e.g. RootManageSharedAccessKey
  RELAY_KEY        that policy's key
The listener needs the Listen right, the sender the Send right. With nothing set,
listener.js and hybrid-server.js start a local relay and print its connection string.`;

/**
 * A configuration problem: the examples print its message and exit with status 1.
 */
class TargetError extends Error {}

/**
 * Where to connect.
 *
 * @typedef {Object} Target
 * @property {String} namespace What the URI helpers take (`contoso.servicebus.windows.net`
 *     or `ws://127.0.0.1:PORT`)
 * @property {String} path The Hybrid Connection
 * @property {String} listenUri The listener's address (no token in it)
 * @property {String} sendUri The sender's address (no token in it)
 * @property {Function} token Returns a SAS token for the Hybrid Connection: a fresh one on
 *     each call when a key is known, which is what lets a listener renew it
 * @property {String} source Where the settings came from, for people
 * @property {Object|null} relay The local relay started here, if any
 * @property {String|null} connectionString That relay's connection string, for a sender
 * @property {Function} close Stops the local relay started here, if any; returns a Promise
 */

/**
 * Builds a target from a namespace, a path and either a key or a fixed token.
 *
 * @param {Object} settings
 * @param {String} settings.namespace The namespace
 * @param {String} settings.path The Hybrid Connection
 * @param {String} [settings.keyName] The SAS rule's name
 * @param {String} [settings.key] The SAS rule's key
 * @param {String} [settings.signature] A ready-made token, instead of the key
 * @param {String} settings.source Where the settings came from
 * @param {Object} [settings.relay] A local relay started here
 * @return {Target}
 */
function makeTarget({ namespace, path, keyName, key, signature, source, relay = null }) {
  let listenUri;
  let sendUri;
  try {
    listenUri = WebSocket.createRelayListenUri(namespace, path);
    sendUri = WebSocket.createRelaySendUri(namespace, path);
  } catch (err) {
    throw new TargetError(`${source}: ${err.message}`);
  }
  const token = signature
    ? () => signature
    : () => WebSocket.createRelayToken(WebSocket.createRelayBaseUri(namespace, path), keyName, key);
  return {
    namespace,
    path,
    listenUri,
    sendUri,
    token,
    source,
    relay,
    connectionString: relay ? relay.connectionString(path) : null,
    close: () => (relay ? relay.close() : Promise.resolve())
  };
}

/**
 * Reads `RELAY_CONNECTION_STRING` (and `RELAY_PATH`).
 *
 * @param {Object} env The environment
 * @return {Target}
 */
function fromConnectionString(env) {
  let c;
  try {
    c = WebSocket.parseConnectionString(env.RELAY_CONNECTION_STRING);
  } catch (err) {
    throw new TargetError(`RELAY_CONNECTION_STRING: ${err.message}`);
  }
  if (c.entityPath && env.RELAY_PATH && env.RELAY_PATH !== c.entityPath) {
    throw new TargetError(
      `RELAY_PATH (${env.RELAY_PATH}) differs from the connection string's EntityPath (${c.entityPath}): unset one`
    );
  }
  const path = c.entityPath || env.RELAY_PATH;
  if (!path) {
    throw new TargetError(
      'RELAY_CONNECTION_STRING has no EntityPath: set RELAY_PATH to the Hybrid Connection\'s name'
    );
  }
  if (!c.sharedAccessSignature && !(c.sharedAccessKeyName && c.sharedAccessKey)) {
    throw new TargetError(
      'RELAY_CONNECTION_STRING needs SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature)'
    );
  }
  return makeTarget({
    namespace: c.namespace,
    path,
    keyName: c.sharedAccessKeyName,
    key: c.sharedAccessKey,
    signature: c.sharedAccessSignature,
    source: 'RELAY_CONNECTION_STRING'
  });
}

/**
 * Decides where to connect, from the environment.
 *
 * @param {Object} [options]
 * @param {Boolean} [options.startLocalRelay=false] With nothing set, start a local relay
 *     emulator in this process instead of failing
 * @param {Object} [options.env=process.env] The environment to read
 * @return {Promise<Target>}
 * @throws {TargetError} When the settings are missing or unusable (the message says why)
 */
async function resolveTarget({ startLocalRelay = false, env = process.env } = {}) {
  if (env.RELAY_CONNECTION_STRING) return fromConnectionString(env);

  const set = VARIABLES.filter((name) => env[name]);
  if (set.length === VARIABLES.length) {
    return makeTarget({
      namespace: env.RELAY_NAMESPACE,
      path: env.RELAY_PATH,
      keyName: env.RELAY_KEY_RULE,
      key: env.RELAY_KEY,
      source: 'RELAY_NAMESPACE'
    });
  }
  if (set.length > 0) {
    const missing = VARIABLES.filter((name) => !env[name]);
    throw new TargetError(`${set.join(', ')} set but not ${missing.join(', ')}.\n\n${HELP}`);
  }

  if (!startLocalRelay) throw new TargetError(`Nothing says where to connect.\n\n${HELP}`);

  const relay = await WebSocket.startLocalRelay({ hybridConnections: [LOCAL_PATH] });
  return makeTarget({
    namespace: relay.namespace,
    path: LOCAL_PATH,
    keyName: relay.keyName,
    key: relay.key,
    source: 'local relay',
    relay
  });
}

/**
 * Describes a target in one line, without any key or token.
 *
 * @param {Target} target The target
 * @return {String} e.g. `Hybrid Connection "examples" on ws://127.0.0.1:9000 (RELAY_CONNECTION_STRING)`
 */
function describeTarget(target) {
  return `Hybrid Connection "${target.path}" on ${target.namespace} (${target.source})`;
}

module.exports = { HELP, LOCAL_PATH, TargetError, describeTarget, resolveTarget };
