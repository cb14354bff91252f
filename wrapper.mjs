// ESM entry point: `import { createRelayToken, WebSocket } from 'hyco-ws-rs'`.
import hyco from './index.js';

export const {
  appendRelayToken,
  createRelayBaseUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken,
  LocalRelay,
  startLocalRelay,
  relayedConnect,
  createRelayedConnection,
  RelayedWebSocket,
  RelayedServer,
  createRelayedServer,
  WebSocket,
  WebSocketServer,
  Server,
  createWebSocketStream,
  extension,
  PerMessageDeflate,
  Receiver,
  Sender,
  subprotocol
} = hyco;

export default hyco;
