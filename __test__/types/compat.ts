// Types of `hyco-ws-rs/hyco-ws` from CommonJS (`import … = require()` and named imports),
// checked by `tsc --strict --noEmit`: hyco-ws's message form, `new WebSocket(url, null,
// options)`, `clients` as an array, and the relay API as static members.
import WebSocket = require('hyco-ws-rs/hyco-ws');
import { createRelayedServer, relayedConnect, RelayedServer, WebSocketServer } from 'hyco-ws-rs/hyco-ws';
import hyco = require('hyco-ws-rs');
import WS = require('ws');

const uri: string = WebSocket.createRelaySendUri('ws://127.0.0.1:9000', 'hc');
const client = new WebSocket(uri, null, { headers: { ServiceBusAuthorization: WebSocket.createRelayToken(uri, 'rule', '') } });
client.on('message', (message: string | Buffer, flags) => {
  const binary: boolean = flags.binary;
  if (message === 'ping' && !binary) client.send('pong');
});
client.on('message', function (data, flags) {
  const self: WebSocket = this;
  const payload: string | WebSocket.RawData = data;
  const f: WebSocket.MessageFlags = flags;
  void [self, payload, f];
});
client.on('close', (code, reason) => void [code.toFixed(), reason.toUpperCase()]);
const asWs: WS = client;
const asMain: hyco.WebSocket = client;
const isWs: boolean = client instanceof WS;

const relayed = relayedConnect(uri, null, { id: 'trace' }, (socket) => socket.send('hi'));
relayed.on('message', (data) => void (data === 'ping'));
const relayedAsWs: WS = relayed;
const relayedAsMain: hyco.RelayedWebSocket = relayed;
const viaClass: WebSocket.RelayedWebSocket | null = relayed instanceof WebSocket.RelayedWebSocket ? relayed : null;

const server: RelayedServer = createRelayedServer({ server: WebSocket.createRelayListenUri('ws://127.0.0.1:9000', ''), token: 't' }, (socket, req) => {
  socket.on('message', (data, flags) => socket.send(data, { binary: flags.binary }));
  void req.url;
});
const clients: WebSocket.RelayedWebSocket[] = server.clients;
const channel: WebSocket.RelayedControlChannel = server.controlChannel;
const sameChannel: hyco.RelayedControlChannel = channel;
server.on('listening', () => void server.controlChannel.readyState);
server.on('error', (err) => void err.statusCode);
const hycoWsServer: WebSocket.HybridConnectionWebSocketServer = new WebSocket.RelayedServer({ connectionString: 'Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=k', path: 'hc' });

const local = new WebSocketServer({ noServer: true });
local.on('connection', (socket) => {
  const s: WebSocket = socket;
  socket.on('message', (data, flags) => void [data, flags.binary]);
  void s;
});
const legacy: WebSocket.Server = new WebSocket.Server({ noServer: true });
void [asWs, asMain, isWs, relayedAsWs, relayedAsMain, viaClass, clients, sameChannel, hycoWsServer, legacy];

// @ts-expect-error: ws 8's (data, isBinary): the second argument is `{ binary }`
client.on('message', (data: WebSocket.RawData, isBinary: boolean) => void [data, isBinary]);
// @ts-expect-error: clients is an array
server.clients.add(relayed);
// @ts-expect-error: the 'connection' socket's messages are hyco-ws's too
server.on('connection', (socket) => socket.on('message', (data, flags) => void flags.isBinary));
// @ts-expect-error: protocols are a string, an array or null
new WebSocket(uri, 1);
// @ts-expect-error: the main entry point's server has a Set: not this entry point's server
const mainServer: hyco.RelayedServer = server;
// @ts-expect-error: MessageFlags is a type only
void WebSocket.MessageFlags;
void mainServer;
