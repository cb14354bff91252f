// examples/listener.js in TypeScript: a Hybrid Connection listener that echoes every message.
//
//   npx tsc -p examples/typescript          # compiles to examples/typescript/dist/
//   node examples/typescript/dist/listener.js
//
// Where it listens: RELAY_CONNECTION_STRING (EntityPath, or RELAY_PATH, names the Hybrid
// Connection), or RELAY_NAMESPACE + RELAY_PATH + RELAY_KEY_RULE + RELAY_KEY; with none of
// them set, a local relay emulator started in this process (its connection string is
// printed for examples/sender.js). Ctrl-C closes the listener (and that relay) and exits.
import {
  createRelayBaseUri,
  createRelayListenUri,
  createRelayToken,
  createRelayedServer,
  parseConnectionString,
  startLocalRelay
} from 'hyco-ws-rs';
import type {
  LocalRelay,
  RawData,
  RelayedConnectError,
  RelayedRequest,
  RelayedServer,
  RelayedWebSocket
} from 'hyco-ws-rs';

/** Where to listen. */
interface Target {
  namespace: string;
  path: string;
  /** A SAS token for the Hybrid Connection; a fresh one per call when a key is known. */
  token: () => string;
  /** Where the settings came from, for people. */
  source: string;
  /** The local relay started here, if any. */
  relay?: LocalRelay;
}

/** The Hybrid Connection a local relay started here offers. */
const LOCAL_PATH = 'examples';

/** A problem with the settings: printed, then exit status 1. */
class TargetError extends Error {}

/**
 * A token provider for a SAS rule.
 *
 * @param namespace The namespace
 * @param path The Hybrid Connection
 * @param keyName The rule's name
 * @param key The rule's key
 */
function keyed(namespace: string, path: string, keyName: string, key: string): () => string {
  const resource = createRelayBaseUri(namespace, path);
  return () => createRelayToken(resource, keyName, key);
}

/**
 * Decides where to listen, from the environment (the rule of examples/support/target.js).
 *
 * @param env The environment
 */
async function resolveTarget(env: NodeJS.ProcessEnv): Promise<Target> {
  const connectionString = env.RELAY_CONNECTION_STRING;
  if (connectionString) {
    const c = parseConnectionString(connectionString);
    const path = c.entityPath ?? env.RELAY_PATH;
    if (!path) throw new TargetError('RELAY_CONNECTION_STRING has no EntityPath: set RELAY_PATH');
    const source = 'RELAY_CONNECTION_STRING';
    const signature = c.sharedAccessSignature;
    if (signature !== undefined) return { namespace: c.namespace, path, token: () => signature, source };
    if (c.sharedAccessKeyName === undefined || c.sharedAccessKey === undefined) {
      throw new TargetError('RELAY_CONNECTION_STRING needs SharedAccessKeyName and SharedAccessKey');
    }
    return {
      namespace: c.namespace,
      path,
      token: keyed(c.namespace, path, c.sharedAccessKeyName, c.sharedAccessKey),
      source
    };
  }

  const { RELAY_NAMESPACE: namespace, RELAY_PATH: path, RELAY_KEY_RULE: keyName, RELAY_KEY: key } = env;
  if (namespace && path && keyName && key) {
    return { namespace, path, token: keyed(namespace, path, keyName, key), source: 'RELAY_NAMESPACE' };
  }
  if (namespace || path || keyName || key) {
    throw new TargetError('Set all of RELAY_NAMESPACE, RELAY_PATH, RELAY_KEY_RULE and RELAY_KEY');
  }

  const relay = await startLocalRelay({ hybridConnections: [LOCAL_PATH] });
  return {
    namespace: relay.namespace,
    path: LOCAL_PATH,
    token: keyed(relay.namespace, LOCAL_PATH, relay.keyName, relay.key),
    source: 'local relay',
    relay
  };
}

/**
 * The connection handler: logs the sender and echoes every message.
 *
 * @param ws The accepted socket (a ws 8 WebSocket)
 * @param req What the relay says of the sender
 */
function onConnection(ws: RelayedWebSocket, req: RelayedRequest): void {
  console.log(`connection accepted: ${req.url} from ${req.socket.remoteAddress ?? 'an unknown address'}`);
  ws.on('message', (data: RawData, isBinary: boolean) => {
    console.log(isBinary ? `message: <binary>` : `message: ${data.toString()}`);
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code: number) => console.log(`connection closed (${code})`));
  ws.on('error', (err: Error) => console.error(`connection error: ${err.message}`));
}

/** Starts listening. */
async function main(): Promise<void> {
  const target = await resolveTarget(process.env);
  const description = `Hybrid Connection "${target.path}" on ${target.namespace} (${target.source})`;
  const relay = target.relay;
  if (relay) {
    const connectionString = relay.connectionString(target.path);
    console.log(`No RELAY_* variables set: started a local relay emulator on ${relay.url}`);
    console.log(`connection string: ${connectionString}`);
    console.log('To send to this listener, run in another terminal:');
    console.log(`  RELAY_CONNECTION_STRING='${connectionString}' node examples/sender.js`);
  }

  // The token is a function: the server calls it again for each renewal and reconnect.
  const server: RelayedServer = createRelayedServer(
    { server: createRelayListenUri(target.namespace, target.path), token: target.token },
    onConnection
  );
  server.on('listening', () => console.log(`listening: ${description}`));
  // Outages, drops and expired tokens are retried by the server; this only reports them.
  server.on('connecting', (err: RelayedConnectError | null) => {
    if (err) console.error(`reconnecting after: ${err.message}`);
  });
  server.on('online', () => {
    if (server.lastError) console.log('online again');
  });
  server.on('error', (err: RelayedConnectError) => {
    console.error(`error: ${err.message}${err.statusCode === undefined ? '' : ` (${err.statusCode})`}`);
    process.exitCode = 1;
  });
  server.on('close', () => void relay?.close());

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: closing`);
    // Closes the control channel and every accepted connection; 'close' then stops the
    // local relay, and nothing keeps the process alive.
    server.close(() => console.log('closed'));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err: unknown) => {
  console.error(err instanceof TargetError ? err.message : err);
  process.exit(1);
});
