// ESM entry point: `import { createRelayToken, WebSocket } from 'hyco-ws-rs'`.
import hyco from './index.js';

export const {
  appendRelayToken,
  createRelayBaseUri,
  createRelayHttpsUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken,
  LocalRelay,
  startLocalRelay,
  relayedConnect,
  createRelayedConnection,
  relayedFetch,
  RelayedWebSocket,
  RelayedServer,
  createRelayedServer,
  setInboundBudget,
  getInboundBudget,
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
