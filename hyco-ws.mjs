// ESM entry point of the hyco-ws replacement with hyco-ws's habits:
// `import { createRelayedServer, relayedConnect } from 'hyco-ws-rs/hyco-ws'`.
import hyco from './hyco-ws.js';

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
