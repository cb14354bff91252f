// The drop-in form in TypeScript: `import WebSocket = require('hyco-ws-rs')`, the module's
// export being ws's WebSocket class with the relay API on top, as `require('hyco-ws')` was.
// Checked where `import … = require()` is allowed: CommonJS and `.ts` files under nodenext.
import WebSocket = require('hyco-ws-rs');
import WS = require('ws');

const client: WS = new WebSocket('ws://127.0.0.1:1');
const open: 1 = WebSocket.OPEN;

const server = WebSocket.createRelayedServer(
  { connectionString: 'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=k', path: 'hc' },
  (ws: WS, req: WebSocket.RelayedRequest) => ws.send(req.url)
);
server.on('connection', (ws: WS) => ws.close());
const typed: WebSocket.HybridConnectionWebSocketServer = server;

const uri = WebSocket.createRelaySendUri('ws://127.0.0.1:9000', 'hc');
const sender: WS = WebSocket.relayedConnect(uri, null, (ws: WS) => ws.send('hello'));
const relayed: WebSocket.RelayedWebSocket = sender instanceof WebSocket.RelayedWebSocket ? sender : WebSocket.relayedConnect(uri, null);

export { client, open, typed, relayed };
