// Types of the listener, checked by `tsc --strict --noEmit`.
import { RelayedServer, createRelayedServer, createRelayListenUri, createRelayToken, RelayedWebSocket } from 'hyco-ws-rs';
import hyco = require('hyco-ws-rs');

const uri = createRelayListenUri('ws://127.0.0.1:9000', 'hc');
const server = new RelayedServer(
  {
    server: uri,
    token: async () => createRelayToken(uri, 'rule', 'key'),
    handleProtocols: (protocols, req) => (protocols.has('chat') && req.url === '/' ? 'chat' : false),
    verifyClient: (info, cb) => cb(info.req.headers['x-app'] === 'ok', 403, 'Forbidden'),
    keepAliveInterval: 10000,
    reconnectDelays: [0, 500],
    prewarm: false,
    proxy: 'http://proxy.example:3128'
  },
  () => console.log('listening')
);
server.on('connection', (socket: RelayedWebSocket, req: hyco.RelayedRequest) => {
  socket.send(`hello ${req.socket.remoteAddress ?? '?'} ${req.id}`);
});
server.on('connecting', (err) => void (err && err.statusCode));
server.on('headers', (headers: string[]) => headers.push('X-Server: 1'));
const status: 'connecting' | 'online' | 'offline' | 'closed' = server.status;
server.close((err) => void err);

// hyco-ws's forms
const legacy = createRelayedServer(
  { server: uri, token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=r', handleProtocols: (list, cb) => cb(true, list[0]) },
  (ws) => ws.send('hi')
);
const fromConnectionString = new RelayedServer({ connectionString: 'Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=k', path: 'hc' });
void [status, legacy, fromConnectionString];

// @ts-expect-error: the token is a string or a provider
new RelayedServer({ server: uri, token: 42 });
// @ts-expect-error: prewarm is a boolean
new RelayedServer({ server: uri, token: 't', prewarm: 'yes' });
// @ts-expect-error: proxy is a URL or false
new RelayedServer({ server: uri, token: 't', proxy: 3128 });
// @ts-expect-error: reconnectDelays are numbers
new RelayedServer({ server: uri, token: 't', reconnectDelays: ['1s'] });

// hyco-ws's fields, on every RelayedServer
const listenUri: string = server.listenUri;
const path: string = server.path;
const given: hyco.RelayedServerOptionsWithDefaults = server.options;
const givenServer: string | null = server.options.server;
const givenToken: hyco.TokenProvider | null = server.options.token;
const givenId: string | null = server.options.id;
const tracking: boolean = server.options.clientTracking;
const maxPayload: number = server.options.maxPayload;
const keepAlive: number | undefined = server.options.keepAliveInterval;
server.closeRequested = true;
const closing: boolean = server.closeRequested;
const channel: hyco.RelayedControlChannel = server.controlChannel;
const state: 0 | 1 | 2 | 3 = channel.readyState;
const channelUrl: string = channel.url;
const original = channel.onmessage;
channel.onmessage = function (event) {
  const target: hyco.RelayedControlChannel = this;
  const text: string = event.data;
  const type: 'message' = event.type;
  void [target, text, type, event.target.readyState];
  if (original) original.call(this, event);
};
channel.onclose = (event: hyco.RelayedControlChannelEventMap['close']) => void [event.code, event.reason, event.wasClean];
channel.onerror = (event) => void [event.error.statusCode, event.message];
channel.onopen = null;
channel.on('open', () => undefined).on('close', (code: number, reason: string) => void [code, reason]);
channel.once('message', (text: string) => void JSON.parse(text));
channel.prependListener('error', (err: hyco.RelayedConnectError) => void err.code);
const onMessage: hyco.RelayedControlChannelEvents['message'] = (text) => void text.length;
channel.off('message', onMessage);
channel.close();
channel.terminate();
void [listenUri, path, given, givenServer, givenToken, givenId, tracking, maxPayload, keepAlive, closing, state, channelUrl];

// @ts-expect-error: listenUri is read-only (it was read at construction)
server.listenUri = uri;
// @ts-expect-error: so are the options
server.options.maxPayload = 1;
// @ts-expect-error: closeRequested is a boolean
server.closeRequested = 1;
// @ts-expect-error: the channel's messages are text
channel.on('message', (data: Buffer) => void data);
// @ts-expect-error: no such event
channel.on('mesage', () => undefined);
// @ts-expect-error: the control channel is a type only: the package exports no value of that name
void hyco.RelayedControlChannel;
// @ts-expect-error: the channel's readyState is read-only
channel.readyState = 1;
