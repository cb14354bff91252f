// Uses of `hyco-ws-rs/hyco-ws` that the types must refuse, in every module mode: were a type
// to widen to `any`, the directive would be unused and tsc would fail with TS2578.
import {
  createRelayToken,
  createRelayedServer,
  relayedConnect,
  RelayedServer,
  RelayedWebSocket,
  WebSocket,
  WebSocketServer
} from 'hyco-ws-rs/hyco-ws';
import type { RawData } from 'hyco-ws-rs/hyco-ws';
import { RelayedServer as MainRelayedServer } from 'hyco-ws-rs';
import type { RelayedWebSocket as MainRelayedWebSocket } from 'hyco-ws-rs';

export function refused(uri: string, token: string, server: RelayedServer, main: MainRelayedServer): void {
  const ws = new WebSocket(uri, null);

  // ws 8's 'message' listener: here `flags` is an object, not a boolean
  // @ts-expect-error: the second argument is hyco-ws's flags, `{ binary }`
  ws.on('message', (data: RawData, isBinary: boolean) => void [data, isBinary]);
  // @ts-expect-error: likewise for once
  ws.once('message', (data, isBinary: boolean) => void [data, isBinary]);
  // @ts-expect-error: likewise for addListener
  ws.addListener('message', (data: RawData, isBinary: boolean) => void [data, isBinary]);
  // @ts-expect-error: and flags has no such property
  ws.on('message', (data, flags) => void [data, flags.isBinary]);
  // @ts-expect-error: text arrives as a string: data is not always binary
  ws.on('message', (data) => void data.byteLength);
  // @ts-expect-error: a message is text or binary data, never a number
  ws.on('message', (data: number) => void data);
  new WebSocketServer({ noServer: true }).on('connection', (socket) => {
    // @ts-expect-error: the server's sockets are this entry point's, messages included
    socket.on('message', (data: RawData, isBinary: boolean) => void [data, isBinary]);
  });
  // @ts-expect-error: protocols are a string, an array or null
  new WebSocket(uri, 42);

  // The listener
  // @ts-expect-error: clients is an array
  server.clients.add(relayedConnect(uri, token));
  // @ts-expect-error: and not a Set for the main entry point's code either
  const set: Set<MainRelayedWebSocket> = server.clients;
  // @ts-expect-error: the main entry point's clients is a Set, or undefined
  const array: MainRelayedWebSocket[] = main.clients;
  // @ts-expect-error: the fields describe the server and are read-only: changing them changed hyco-ws's next reconnect, here nothing
  server.listenUri = uri;
  // @ts-expect-error: likewise for the options the server was made with
  server.options.token = () => token;
  // @ts-expect-error: and for the control channel
  server.controlChannel = server.controlChannel;
  // @ts-expect-error: closeRequested is a boolean
  server.closeRequested = 'yes';
  // @ts-expect-error: the control channel has no send: the service's protocol is the listener's own
  server.controlChannel.send('{}');
  // @ts-expect-error: its readyState is read-only
  server.controlChannel.readyState = 3;
  // @ts-expect-error: its messages are text
  server.controlChannel.on('message', (data: Buffer) => void data);
  // @ts-expect-error: the event object's data is text
  server.controlChannel.onmessage = (event) => void event.data.byteLength;
  // @ts-expect-error: no such event on the control channel
  server.controlChannel.on('accept', () => undefined);
  // @ts-expect-error: no such event on the server
  server.on('conection', () => undefined);
  // @ts-expect-error: 'connection' gives (socket, req), no third argument
  server.on('connection', (socket, req, extra: string) => void [socket, req, extra]);
  // @ts-expect-error: createRelayedServer's options are typed (connectionString, misspelt)
  createRelayedServer({ connectonString: 'Endpoint=sb://ns/' });

  // The sender
  // @ts-expect-error: @types/hyco-ws's relayedConnect(address, fn): the token comes first (hyco-ws sent the function as the token)
  relayedConnect(uri, () => undefined);
  // @ts-expect-error: the token (or null, for an anonymous sender) is required
  relayedConnect(uri);
  // @ts-expect-error: relayed sockets come from relayedConnect and RelayedServer
  new RelayedWebSocket();
  // @ts-expect-error: a relayed socket has no such method
  relayedConnect(uri, null).sendText('hello');

  // Helpers
  // @ts-expect-error: createRelayToken needs the key (an empty one is taken, a missing one is not)
  createRelayToken(uri, 'rule');
  // @ts-expect-error: a token is a string
  const n: number = createRelayToken(uri, 'rule', 'key', -60);
  void [set, array, n];
}
