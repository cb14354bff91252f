// Uses the types must refuse. Each line under `@ts-expect-error` has to be an error in every
// module mode: were a type to widen to `any` (an unresolved import, a broken declaration),
// the directive would be unused and tsc would fail with TS2578.
import {
  createRelayToken,
  createRelayedServer,
  relayedConnect,
  startLocalRelay,
  RelayedServer,
  RelayedWebSocket
} from 'hyco-ws-rs';
import type { HybridConnectionWebSocketServer, RelayedRequest } from 'hyco-ws-rs';
import * as hyco from 'hyco-ws-rs';

export async function refused(uri: string, token: string, server: HybridConnectionWebSocketServer): Promise<void> {
  // Wrong option types
  // @ts-expect-error: keepAliveInterval is a number of milliseconds
  new RelayedServer({ server: uri, token, keepAliveInterval: '30s' });
  // @ts-expect-error: the token is a string or a function that gives one
  new RelayedServer({ server: uri, token: 42 });
  // @ts-expect-error: no such option (connectionString, misspelt)
  createRelayedServer({ connectonString: 'Endpoint=sb://ns/' });
  // @ts-expect-error: handshakeTimeout is a number of milliseconds
  relayedConnect(uri, token, { handshakeTimeout: '5s' });
  // @ts-expect-error: perMessageDeflate is a boolean or ws's options
  relayedConnect(uri, token, { perMessageDeflate: 'on' });
  // @ts-expect-error: ws 8.20's PerMessageDeflate takes isServer and maxPayload as options
  new hyco.PerMessageDeflate({}, true, 1024);
  // @ts-expect-error: rights are Listen, Send or Manage
  await startLocalRelay({ rules: [{ name: 'r', key: 'k', rights: ['Read'] }] });

  // Missing arguments
  // @ts-expect-error: the token (or null, for an anonymous sender) is required
  relayedConnect(uri);
  // @ts-expect-error: @types/hyco-ws's relayedConnect(address, fn): the token comes first
  relayedConnect(uri, (socket: RelayedWebSocket) => socket.close());
  // @ts-expect-error: createRelayToken needs the key
  createRelayToken(uri, 'rule');

  // Wrong callback arity
  // @ts-expect-error: 'connection' gives (socket, req), no third argument
  server.on('connection', (socket: RelayedWebSocket, req: RelayedRequest, extra: string) => void [socket, req, extra]);
  // @ts-expect-error: createRelayedServer's fn gets (socket, req)
  createRelayedServer({ server: uri, token }, (socket: RelayedWebSocket, req: RelayedRequest, extra: number) => void [socket, req, extra]);
  // @ts-expect-error: relayedConnect's fn gets the socket alone
  relayedConnect(uri, token, (socket: RelayedWebSocket, extra: string) => void [socket, extra]);
  // @ts-expect-error: 'listening' gives no argument
  server.on('listening', (when: Date) => void when);
  // @ts-expect-error: 'request' gives (req, res), no third argument
  server.on('request', (req, res, extra: number) => void [req, res, extra]);
  // @ts-expect-error: requestTimeout is a number of milliseconds
  new RelayedServer({ server: uri, token, requestTimeout: '60s' });
  // @ts-expect-error: a credential has getToken(scopes)
  new RelayedServer({ server: uri, credential: { token: 'x' } });

  // Nothing is `any`
  // @ts-expect-error: a relayed socket has no such method
  relayedConnect(uri, null).sendText('hello');
  // @ts-expect-error: req has no such property
  server.on('connection', (socket, req) => void req.body);
  // @ts-expect-error: an HTTP request's req is Node's IncomingMessage, which has no body
  server.on('request', (req) => void req.body);
  // @ts-expect-error: no such event
  server.on('conection', () => undefined);
  // @ts-expect-error: a token is a string
  const n: number = createRelayToken(uri, 'rule', 'key');
  // @ts-expect-error: no such export
  void hyco.createRelayServer;

  // Types that are not values
  // @ts-expect-error: HybridConnectionWebSocketServer is @types/hyco-ws's name of a type; hyco-ws exports no such value
  new hyco.HybridConnectionWebSocketServer({});
  // @ts-expect-error: relayed sockets come from relayedConnect and RelayedServer
  new RelayedWebSocket();
  void n;
}
