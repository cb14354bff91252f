// Types of the sender, checked by `tsc --strict --noEmit`.
import { relayedConnect, createRelaySendUri, createRelayToken, createWebSocketStream, WebSocket, RelayedWebSocket } from 'hyco-ws-rs';
import hyco = require('hyco-ws-rs');

const uri: string = createRelaySendUri('ws://127.0.0.1:9000', 'hc');
const token: string = createRelayToken(uri, 'rule', 'key');

// hyco-ws's form: (address, token, fn)
const a: RelayedWebSocket = relayedConnect(uri, token, (socket) => {
  socket.send('hello');
});
// With options, and anonymous
const b = relayedConnect(uri, null, { protocols: ['chat'], headers: { 'x-app': '1' }, id: 'trace-1', handshakeTimeout: 5000, ca: [Buffer.from('')] });
const asWs: WebSocket = b;
b.on('message', (data: hyco.RawData, isBinary: boolean) => {
  void data;
  void isBinary;
});
b.on('error', (err: hyco.RelayedConnectError) => {
  const status: number | undefined = err.statusCode;
  void status;
});
b.onclose = (ev: hyco.CloseEvent) => void ev.code;
const stream = createWebSocketStream(b);
const alias: typeof relayedConnect = hyco.createRelayedConnection;
// Proxies: a URL string or object, or false.
const viaProxy = relayedConnect(uri, token, { proxy: 'http://user:pass@proxy.example:3128' });
const viaUrl = relayedConnect(uri, token, { proxy: new URL('https://proxy.example') });
const direct = relayedConnect(uri, token, { proxy: false });
const proxySetting: hyco.RelayProxy = false;
void [a, asWs, stream, alias, viaProxy, viaUrl, direct, proxySetting];

// @ts-expect-error: the token is a string or null
relayedConnect(uri, 42);
// @ts-expect-error: handshakeTimeout is a number
relayedConnect(uri, token, { handshakeTimeout: '5s' });
// @ts-expect-error: proxy is a URL or false
relayedConnect(uri, token, { proxy: true });
// @ts-expect-error: sockets come from relayedConnect
new RelayedWebSocket();

// Dead peers and inbound memory.
const beating = relayedConnect(uri, token, { heartbeatInterval: 30000, inboundHighWaterMark: 1024 * 1024 });
const previous: number = hyco.setInboundBudget(64 * 1024 * 1024);
const { limit, used }: { limit: number; used: number } = hyco.getInboundBudget();
const listener = hyco.createRelayedServer({ server: uri, token, autoPong: false, closeTimeout: 5000, heartbeatInterval: 30000, inboundHighWaterMark: 65536 });
void [beating, previous, limit, used, listener];
// @ts-expect-error: heartbeatInterval is a number of ms
relayedConnect(uri, token, { heartbeatInterval: true });
