// ESM entry point of the hyco-https replacement:
// `import { createRelayedServer, createRelayHttpsUri } from 'hyco-ws-rs/https'`.
import relayHttps from './https.js';

export const {
  appendRelayToken,
  createRelayBaseUri,
  createRelayHttpsUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken,
  createRelayedServer,
  Server,
  RelayedHttpServer,
  ServerResponse,
  relayedFetch,
  LocalRelay,
  startLocalRelay,
  request,
  get,
  Agent,
  globalAgent,
  createServer
} = relayHttps;

export default relayHttps;
