// Default imports, as ES modules and bundled code write them: `import hyco from 'hyco-ws-rs'`
// and ws's class as `import WebSocket from 'ws'`. Checked where a CommonJS module has a
// default import: esModuleInterop, nodenext (`.ts` and `.mts`) and bundler.
import hyco, { createRelayedServer, relayedConnect } from 'hyco-ws-rs';
import WebSocket from 'ws';

const uri: string = hyco.createRelaySendUri('ws://127.0.0.1:9000', 'hc');
const direct: WebSocket = new hyco('ws://127.0.0.1:1');
const sender: WebSocket = relayedConnect(uri, null, (ws: WebSocket) => ws.send('hello'));

const server: hyco.RelayedServer = createRelayedServer(
  { server: hyco.createRelayListenUri('ws://127.0.0.1:9000', 'hc'), token: () => 'SharedAccessSignature …' },
  (ws: WebSocket, req: hyco.RelayedRequest) => ws.send(req.url)
);
server.on('connection', (ws: WebSocket) => ws.close());
const typed: hyco.HybridConnectionWebSocketServer = server;

export { direct, sender, typed };
