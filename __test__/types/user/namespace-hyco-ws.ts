// Code written for @types/hyco-ws, with only the module's name changed: `import * as` for
// both modules, and handlers and variables typed with ws's `WebSocket` as that import names
// it. Checked where such an import can name a type: CommonJS, with and without
// esModuleInterop, and `.ts` files under nodenext. (In an ES module, `.mts` or bundler,
// `import * as WebSocket from 'ws'` is a namespace, not a type, whatever the package.)
import * as WebSocket from 'ws';
import * as AzureRelay from 'hyco-ws-rs';

const ns = 'contoso.servicebus.windows.net';
const path = 'hyco';
const keyRule = 'RootManageSharedAccessKey';
const key = 'base64key';

// The listener, as in @types/hyco-ws's own test.
const wss: AzureRelay.HybridConnectionWebSocketServer = AzureRelay.createRelayedServer(
  {
    server: AzureRelay.createRelayListenUri(ns, path),
    token: AzureRelay.createRelayToken(AzureRelay.createRelayBaseUri(ns, path), keyRule, key)
  },
  (ws: WebSocket) => {
    console.log('New connection accepted');
    ws.onmessage = (event: WebSocket.MessageEvent) => {
      console.log(`New message: ${String(event.data)}`);
    };
  }
);
wss.on('error', (err: any) => {
  console.log('error' + err);
});
wss.on('connection', (ws: WebSocket) => ws.send('welcome'));
const clients: Set<WebSocket> | undefined = wss.clients;
wss.close(() => console.log('closed'));
// @types/hyco-ws's other fields of the server.
const listenUri: string = wss.listenUri;
const hcPath: string = wss.path;
const options: any = wss.options;
const channelOpen: boolean = wss.controlChannel.readyState === WebSocket.OPEN;
if (!wss.closeRequested) wss.closeRequested = true;

// The sender, with hyco-ws's (address, token, fn).
const uri: string = AzureRelay.createRelaySendUri(ns, path);
const token: string = AzureRelay.createRelayToken(uri, keyRule, key, 3600);
const client: WebSocket = AzureRelay.relayedConnect(uri, token, (ws: WebSocket) => {
  ws.send('hello');
});
const appended: string = AzureRelay.appendRelayToken(AzureRelay.createRelaySendUri(ns, path, null, 'id'), keyRule, key);

// A function of the application that takes ws's WebSocket gets a relayed socket.
function greet(ws: WebSocket): void {
  ws.send('hi');
}
greet(client);

export { clients, appended, listenUri, hcPath, options, channelOpen };
