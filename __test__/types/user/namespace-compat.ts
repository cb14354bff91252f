// Code written for @types/hyco-ws, with the module's name changed to `hyco-ws-rs/hyco-ws`:
// `import * as` for both modules, handlers and variables typed with ws's `WebSocket` as that
// import names it, and @types/hyco-ws's fields of the server (`clients: WebSocket[]`,
// `listenUri`, `closeRequested`, `controlChannel`). Checked where such an import can name a
// type: CommonJS, with and without esModuleInterop, and `.ts` files under nodenext.
import * as WebSocket from 'ws';
import * as AzureRelay from 'hyco-ws-rs/hyco-ws';

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
// Without a type on the socket, messages are hyco-ws's.
wss.on('connection', (ws) => ws.on('message', (message: string | Buffer, flags) => ws.send(message, { binary: flags.binary })));

// @types/hyco-ws's fields
const clients: WebSocket[] = wss.clients;
const listenUri: string = wss.listenUri;
const path2: string = wss.path;
const options: any = wss.options;
const open: boolean = wss.controlChannel.readyState === WebSocket.OPEN;
wss.controlChannel.close();
if (!wss.closeRequested) wss.close(() => console.log('closed'));
wss.closeRequested = true;

// The sender, with hyco-ws's (address, token, fn).
const uri: string = AzureRelay.createRelaySendUri(ns, path);
const token: string = AzureRelay.createRelayToken(uri, keyRule, key, 3600);
const client: WebSocket = AzureRelay.relayedConnect(uri, token, (ws: WebSocket) => {
  ws.send('hello');
});
const appended: string = AzureRelay.appendRelayToken(AzureRelay.createRelaySendUri(ns, path, null, 'id'), keyRule, key);

// A function of the application that takes ws's WebSocket gets a relayed socket, and so does
// one that takes an array of them.
function greet(ws: WebSocket): void {
  ws.send('hi');
}
function greetAll(all: WebSocket[]): void {
  all.forEach(greet);
}
greet(client);
greetAll(wss.clients);

export { clients, listenUri, path2, options, open, appended };
