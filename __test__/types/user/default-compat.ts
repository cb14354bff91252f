// Default imports of `hyco-ws-rs/hyco-ws`, as ES modules and bundled code write them: `import
// WebSocket from 'hyco-ws-rs/hyco-ws'` is the class with the relay API on top. Checked where a
// CommonJS module has a default import: esModuleInterop, nodenext (`.ts` and `.mts`) and
// bundler.
import WebSocket, { createRelayedServer, relayedConnect } from 'hyco-ws-rs/hyco-ws';
import type { RelayedRequest, RelayedWebSocket } from 'hyco-ws-rs/hyco-ws';
import WS from 'ws';

const uri: string = WebSocket.createRelaySendUri('ws://127.0.0.1:9000', 'hc');
const direct: WebSocket = new WebSocket('ws://127.0.0.1:1', null, { headers: { 'x-app': '1' } });
direct.on('message', (message: string | Buffer, flags) => void [message, flags.binary]);
const asWs: WS = direct;
const sender: WS = relayedConnect(uri, null, (ws: WS) => ws.send('hello'));

const server: WebSocket.RelayedServer = createRelayedServer(
  { server: WebSocket.createRelayListenUri('ws://127.0.0.1:9000', 'hc'), token: () => 'SharedAccessSignature …' },
  (ws: RelayedWebSocket, req: RelayedRequest) => ws.send(req.url)
);
server.on('connection', (ws) => ws.on('message', (message) => ws.send(message === 'ping' ? 'pong' : message)));
const typed: WebSocket.HybridConnectionWebSocketServer = server;
const clients: WS[] = server.clients;
const open: boolean = server.controlChannel.readyState === WebSocket.OPEN;

export { asWs, sender, typed, clients, open };
