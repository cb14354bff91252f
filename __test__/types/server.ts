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
