// A program that uses the whole API, with named imports: the one import style that every
// module mode takes. __test__/types-package.test.mjs type-checks it (`--strict`) in a project
// that installed the packed package and typescript, nothing else, in each mode (as a `.mts`
// copy under nodenext too). Nothing here runs.
import {
  appendRelayToken,
  createRelayBaseUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  createRelayedConnection,
  createRelayedServer,
  createWebSocketStream,
  extension,
  parseConnectionString,
  parseRelayToken,
  relayedConnect,
  startLocalRelay,
  subprotocol,
  LocalRelay,
  PerMessageDeflate,
  Receiver,
  RelayedServer,
  RelayedWebSocket,
  Sender,
  Server,
  WebSocket,
  WebSocketServer
} from 'hyco-ws-rs';
import type {
  CloseEvent,
  HybridConnectionWebSocketServer,
  LocalRelayEvent,
  LocalRelayOptions,
  LocalRelayStats,
  RawData,
  RelayConnectionInfo,
  RelayedConnectError,
  RelayedConnectOptions,
  RelayedRequest,
  RelayedServerEvents,
  RelayedServerOptions,
  RelayedVerifyInfo,
  RelayTokenInfo,
  TokenProvider
} from 'hyco-ws-rs';
// ws's own class, as a program that also uses ws directly names it.
import { WebSocket as WsWebSocket } from 'ws';

/** Addresses and tokens, from a portal connection string. */
export function helpers(connectionString: string): string[] {
  const c: RelayConnectionInfo = parseConnectionString(connectionString);
  const path: string = c.entityPath ?? 'hc';
  const base: string = createRelayBaseUri(c.namespace, path);
  const listen: string = createRelayListenUri(c.namespace, path, null, 'trace-1');
  const send: string = createRelaySendUri(c.namespace, path);
  const token: string = createRelayToken(send, c.sharedAccessKeyName ?? 'rule', c.sharedAccessKey ?? 'key', 60);
  const appended: string = appendRelayToken(listen, 'rule', 'key');
  const info: RelayTokenInfo = parseRelayToken(token);
  const expires: Date = info.expiresAt;
  const timeout: number | undefined = c.operationTimeout;
  return [base, appended, info.resource, info.keyName, expires.toISOString(), String(timeout)];
}

/** A sender; the socket is ws's WebSocket, however it is named. */
export function sender(uri: string, token: string | null): RelayedWebSocket {
  const options: RelayedConnectOptions = {
    headers: { 'x-app': 'user-app' },
    protocols: ['chat'],
    id: 'trace-2',
    handshakeTimeout: 5000,
    maxPayload: 0,
    ca: [Buffer.from('')],
    closeTimeout: 1000,
    autoPong: true,
    perMessageDeflate: { clientNoContextTakeover: true, serverMaxWindowBits: 10, threshold: 512, zlibDeflateOptions: { level: 1, memLevel: 4 } }
  };
  const socket = relayedConnect(uri, token, options, (open: RelayedWebSocket) => open.send('hello'));
  socket.on('message', (data: RawData, isBinary: boolean) => void (isBinary ? data : data.toString()));
  socket.on('error', (err: RelayedConnectError) => void [err.code, err.statusCode, err.statusDescription]);
  socket.onclose = (event: CloseEvent) => void event.code;
  const asWs: WsWebSocket = socket;
  const asExport: WebSocket = socket;
  const alias: RelayedWebSocket = createRelayedConnection(uri, token, (open: WsWebSocket) => open.close(1000));
  const stream = createWebSocketStream(alias);
  stream.end('bye');
  if (asWs instanceof RelayedWebSocket) asWs.terminate();
  void asExport;
  return socket;
}

/** A listener with every option and event. */
export function listener(uri: string, token: TokenProvider): RelayedServer {
  const options: RelayedServerOptions = {
    server: uri,
    token,
    id: 'trace-3',
    clientTracking: true,
    handleProtocols: (protocols, req) => (protocols.has('chat') && req.url === '/' ? 'chat' : false),
    verifyClient: (info: RelayedVerifyInfo, cb) => cb(info.secure && info.req.headers['x-app'] === 'user-app', 403, 'Forbidden'),
    maxPayload: 1024,
    keepAliveInterval: 10000,
    acceptTimeout: 5000,
    prewarm: false,
    reconnectDelays: [0, 500],
    ca: 'PEM',
    perMessageDeflate: true
  };
  const onConnection: RelayedServerEvents['connection'] = (socket, req) => socket.send(`${req.method} ${req.url} ${req.id}`);
  const server = new RelayedServer(options, () => console.log('listening'));
  server.on('connection', onConnection);
  server.on('connection', (socket: WsWebSocket, req: RelayedRequest) => socket.send(req.socket.remoteAddress ?? '?'));
  server.once('listening', () => undefined);
  server.on('online', () => undefined);
  server.on('connecting', (err) => void err?.statusCode);
  server.on('offline', (err) => void err.message);
  server.on('warning', (err) => void err.code);
  server.on('error', (err) => void err.statusCode);
  server.on('headers', (headers, req) => headers.push(`X-Sender: ${req.headers['x-app'] ?? ''}`));
  server.prependListener('close', () => undefined);
  server.off('connection', onConnection);
  const status: 'connecting' | 'online' | 'offline' | 'closed' = server.status;
  const lastError: Error | null = server.lastError;
  for (const socket of server.clients ?? []) socket.close(1001);
  // ws's broadcast, as written for ws (its types say Set too).
  server.clients.forEach((client) => {
    if (client.readyState === client.OPEN) client.send('bye');
  });
  const sockets: Set<WsWebSocket> | undefined = server.clients;
  const factory: HybridConnectionWebSocketServer = createRelayedServer(
    { connectionString: 'Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=r;SharedAccessKey=k', path: 'hc' },
    (socket: WsWebSocket) => socket.close()
  );
  factory.close((err?: Error) => void err);
  void [status, lastError, sockets];
  return server;
}

/** The local relay emulator. */
export async function relay(): Promise<LocalRelayStats> {
  const options: LocalRelayOptions = {
    port: 0,
    host: '127.0.0.1',
    hybridConnections: ['hc', { name: 'open', requiresClientAuthorization: false }],
    rules: [{ name: 'rule', key: 'key', rights: ['Listen', 'Send'] }],
    acceptTimeoutMs: 5000,
    maxListeners: 2
  };
  const local: LocalRelay = await startLocalRelay(options);
  local.on('event', (event: LocalRelayEvent) => void [event.type, event.status, event.message]);
  const strings: string[] = [local.url, local.namespace, local.keyName, local.key, local.connectionString('hc')];
  const port: number = local.port;
  const dropped: number = await local.dropListeners({ hybridConnection: 'hc', code: 1001, reason: 'gone' });
  const frozen: number = local.freezeListeners({ frozen: false });
  await local.restart();
  await local.stop();
  await local.start();
  const stats = local.stats();
  await local.close();
  void [strings, port, dropped, frozen];
  return stats;
}

/** ws 8's exports, re-exported unchanged. */
export function wsExports(): void {
  const client = new WebSocket('ws://127.0.0.1:1', { handshakeTimeout: 1000 });
  const open: 1 = WebSocket.OPEN;
  const server: WebSocketServer = new WebSocketServer({ noServer: true });
  const legacy = new Server({ noServer: true });
  const offers = extension.parse('permessage-deflate; client_max_window_bits');
  const protocols: Set<string> = subprotocol.parse('a, b');
  const deflate = new PerMessageDeflate({ threshold: 0, isServer: true, maxPayload: 1024 });
  const receiver = new Receiver({ maxPayload: 1024 });
  const frames: Buffer[] = Sender.frame(Buffer.from('x'), { fin: true, opcode: 1 });
  client.on('message', (data: RawData) => void data);
  void [open, server, legacy, offers, protocols, deflate, receiver, frames];
}
