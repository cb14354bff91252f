// The `hyco-ws-rs/hyco-ws` entry point's whole API, with named imports (type-checked in every
// module mode by __test__/types-package.test.mjs; nothing here runs): the same relay API as
// the main entry point, with hyco-ws's habits, messages as `(data, flags)` above all.
import {
  appendRelayToken,
  createRelayBaseUri,
  createRelayHttpsUri,
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
  relayedFetch,
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
} from 'hyco-ws-rs/hyco-ws';
import type {
  HybridConnectionWebSocketServer,
  MessageFlags,
  RawData,
  RelayConnectionInfo,
  RelayedConnectError,
  RelayedConnectOptions,
  RelayedControlChannel,
  RelayedControlChannelEventMap,
  RelayedRequest,
  RelayedServerEvents,
  RelayedServerOptions,
  RelayedServerOptionsWithDefaults,
  SocketEvents,
  TokenProvider
} from 'hyco-ws-rs/hyco-ws';
import * as main from 'hyco-ws-rs';
// ws's own class, as a program that also uses ws directly names it.
import { WebSocket as WsWebSocket } from 'ws';

/** The helpers, with what hyco-ws took: an empty path, an empty key, a negative lifetime. */
export function helpers(connectionString: string): string[] {
  const c: RelayConnectionInfo = parseConnectionString(connectionString);
  const base: string = createRelayBaseUri(c.namespace, '');
  const listen: string = createRelayListenUri(c.namespace, 'hc', null, 'trace-1');
  const send: string = createRelaySendUri(c.namespace, 'hc');
  const expired: string = createRelayToken(send, 'rule', '', -60);
  const appended: string = appendRelayToken(listen, 'rule', 'key', null);
  const https: string = createRelayHttpsUri(c.namespace, 'hc');
  return [base, expired, appended, https, parseRelayToken(expired).keyName];
}

/** hyco-ws's client: `new WebSocket(address, null, options)`, messages as `(data, flags)`. */
export function client(uri: string, token: string): WebSocket {
  const ws = new WebSocket(uri, null, { headers: { ServiceBusAuthorization: token } });
  ws.on('open', () => ws.send('ping'));
  // As hyco-ws code wrote it: text as a string, binary as a Buffer, `flags.binary`.
  ws.on('message', (message: string | Buffer, flags) => {
    const binary: boolean = flags.binary;
    if (message === 'pong' && !binary) ws.close();
  });
  ws.on('message', (message) => {
    if (message === 'ping') ws.send('pong');
  });
  ws.on('message', function (this: WebSocket, data: string | RawData, flags: MessageFlags) {
    this.send(data, { binary: flags.binary });
  });
  // Text-only handlers, as hyco-ws code often had them.
  ws.once('message', (text: string) => console.log(text.toUpperCase()));
  ws.addListener('message', (data: RawData, flags: { binary: boolean }) => void [data, flags]);
  // The close reason is a string, as ws 1.1's and 7's; the other events are ws 8's.
  ws.on('close', (code: number, reason: string) => console.log(code, reason.toUpperCase()));
  ws.on('error', (err: Error) => console.error(err.message));
  ws.on('ping', (data) => void data.byteLength);
  // Other names go to EventEmitter's catch-all.
  ws.on('custom', (...args: unknown[]) => void args);
  ws.onmessage = (event) => console.log(String(event.data));
  const named: SocketEvents['message'] = (data, flags) => void [data, flags.binary];
  ws.off('message', named);
  const withProtocols = new WebSocket(uri, ['chat'], { handshakeTimeout: 1000 });
  const withOptions = new WebSocket(uri, { headers: { 'x-app': '1' } });
  // It is ws's WebSocket, and the main entry point's.
  const asWs: WsWebSocket = ws;
  const asMain: main.WebSocket = ws;
  const open: 1 = WebSocket.OPEN;
  void [withProtocols, withOptions, asWs, asMain, open];
  return ws;
}

/** A sender: the socket is ws's WebSocket, however it is named, with hyco-ws's messages. */
export function sender(uri: string, token: string | null): RelayedWebSocket {
  const options: RelayedConnectOptions = { headers: { 'x-app': 'user-app' }, protocols: ['chat'], handshakeTimeout: 5000 };
  const socket = relayedConnect(uri, token, options, (open: RelayedWebSocket) => open.send('hello'));
  socket.on('message', (message: string | Buffer, flags) => void [message, flags.binary]);
  socket.on('message', (message) => {
    if (message === 'ping') socket.send('pong');
  });
  socket.on('error', (err: RelayedConnectError) => void [err.code, err.statusCode, err.statusDescription]);
  socket.on('close', (code, reason) => void [code, reason.toUpperCase()]);
  const asWs: WsWebSocket = socket;
  const asMain: main.RelayedWebSocket = socket;
  const alias: RelayedWebSocket = createRelayedConnection(uri, token, (open: WsWebSocket) => open.close(1000));
  createWebSocketStream(alias).end('bye');
  if (asWs instanceof RelayedWebSocket) asWs.terminate();
  void asMain;
  return socket;
}

/** A listener: hyco-ws's fields, the control channel, `clients` as an array. */
export function listener(uri: string, token: TokenProvider): RelayedServer {
  const options: RelayedServerOptions = { server: uri, token, id: 'trace-3', clientTracking: true, maxPayload: 1024 };
  const onConnection: RelayedServerEvents['connection'] = (socket, req) => {
    socket.on('message', (data, flags) => socket.send(flags.binary ? data : `${req.url}: ${data}`));
  };
  const server = new RelayedServer(options, () => console.log('listening (each time the channel opens)'));
  server.on('connection', onConnection);
  server.on('connection', (socket: WsWebSocket, req: RelayedRequest) => socket.send(req.id));
  server.on('error', (err) => void err.statusCode);
  server.on('offline', (err) => void err.message);
  const clients: RelayedWebSocket[] = server.clients;
  const count: number = server.clients.length;
  const first: RelayedWebSocket | undefined = server.clients.find((s) => s.readyState === WebSocket.OPEN);
  const listenUri: string = server.listenUri;
  const path: string = server.path;
  const given: RelayedServerOptionsWithDefaults = server.options;
  const givenToken: TokenProvider | null = server.options.token;
  const tracking: boolean = server.options.clientTracking;
  const closing: boolean = server.closeRequested;
  const channel: RelayedControlChannel = server.controlChannel;
  const state: 0 | 1 | 2 | 3 = channel.readyState;
  const original = channel.onmessage;
  channel.onmessage = function (event: RelayedControlChannelEventMap['message']) {
    const message: { accept?: { address: string } } = JSON.parse(event.data);
    if (message.accept) console.log(message.accept.address);
    original?.call(this, event);
  };
  channel.onclose = (event) => void [event.code, event.reason, event.wasClean];
  channel.onerror = (event) => void [event.error.statusCode, event.message];
  channel.onopen = (event) => void event.target.url;
  channel.on('message', (text) => void JSON.parse(text));
  channel.on('close', (code, reason) => void [code, reason.length]);
  channel.on('error', (err) => void err.code);
  channel.once('open', () => channel.close());
  const factory: HybridConnectionWebSocketServer = createRelayedServer({ server: uri, token }, (socket) => socket.close());
  factory.closeRequested = true;
  void [clients, count, first, listenUri, path, given, givenToken, tracking, closing, state];
  return server;
}

/** ws 8's server and helpers, with this entry point's sockets. */
export async function wsExports(): Promise<void> {
  const server: WebSocketServer = new WebSocketServer({ noServer: true });
  server.on('connection', (ws, req) => {
    const hycoWs: WebSocket = ws;
    ws.on('message', (data, flags) => ws.send(data, { binary: flags.binary }));
    void [hycoWs, req.url];
  });
  const legacy: Server = new Server({ noServer: true });
  const offers = extension.parse('permessage-deflate');
  const protocols: Set<string> = subprotocol.parse('a, b');
  const deflate = new PerMessageDeflate({ threshold: 0 });
  const receiver = new Receiver({ maxPayload: 1024 });
  const frames: Buffer[] = Sender.frame(Buffer.from('x'), { fin: true, opcode: 1 });
  const local: LocalRelay = await startLocalRelay({ hybridConnections: ['hc'] });
  const res: Response = await relayedFetch(createRelayHttpsUri(local.namespace, 'hc'), { token: null });
  await local.close();
  void [legacy, offers, protocols, deflate, receiver, frames, res];
}

/** hyco-ws's lenient helper arguments, and a server made again from another's options. */
export function lenient(server: InstanceType<typeof RelayedServer>): string {
  const again = new RelayedServer(server.options);
  void again;
  const token = createRelayToken('wss://ns/$hc/hc', 'rule', Buffer.from('key'), '120');
  return createRelaySendUri('ns', 'hc', null, 42) + token;
}
