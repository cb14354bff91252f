// Compiled with `tsc --strict --noEmit` by `npm test`: the typings must accept every right
// use below and reject every use marked @ts-expect-error.
import HycoWebSocket = require('hyco-ws-rs');
import WS = require('ws');

const ns: string = 'contoso.servicebus.windows.net';
const listen: string = HycoWebSocket.createRelayListenUri(ns, 'hyco');
const listenWithTokenAndId: string = HycoWebSocket.createRelayListenUri(ns, 'hyco', null, 'id');
const send: string = HycoWebSocket.createRelaySendUri(ns, 'hyco', 'SharedAccessSignature x', 'id');
const base: string = HycoWebSocket.createRelayBaseUri('ws://127.0.0.1:9000', 'hyco');
const token: string = HycoWebSocket.createRelayToken(send, 'rule', 'key');
const shortToken: string = HycoWebSocket.createRelayToken(send, 'rule', 'key', 60);
const appended: string = HycoWebSocket.appendRelayToken(listen, 'rule', 'key', 120);

const info: HycoWebSocket.RelayTokenInfo = HycoWebSocket.parseRelayToken(token);
const expires: Date = info.expiresAt;
const resource: string = info.resource;
const keyName: string = info.keyName;

const conn = HycoWebSocket.parseConnectionString('Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=k');
const entity: string | undefined = conn.entityPath;
const timeout: number | undefined = conn.operationTimeout;
const nsFromConn: string = conn.namespace;

// The export is ws's WebSocket class, with ws's statics and named exports.
const client: WS = new HycoWebSocket('ws://127.0.0.1:1');
const open: 1 = HycoWebSocket.OPEN;
const server: WS.WebSocketServer = new HycoWebSocket.WebSocketServer({ noServer: true });
const sameClass: typeof WS = HycoWebSocket.WebSocket;
const stream = HycoWebSocket.createWebSocketStream(client);
const protocols: Set<string> = HycoWebSocket.subprotocol.parse('a, b');
function onMessage(data: HycoWebSocket.RawData, isBinary: boolean): void {
  void data;
  void isBinary;
}
client.on('message', onMessage);

// @ts-expect-error: the namespace is required
HycoWebSocket.createRelayListenUri();
// @ts-expect-error: expirationSeconds is a number
HycoWebSocket.createRelayToken(send, 'rule', 'key', '60');
// @ts-expect-error: the signature is not exposed
HycoWebSocket.parseRelayToken(token).signature;
// @ts-expect-error: parseConnectionString takes a string
HycoWebSocket.parseConnectionString({ endpoint: 'sb://ns/' });

export {
  listenWithTokenAndId, base, shortToken, appended, expires, resource, keyName, entity, timeout,
  nsFromConn, open, server, sameClass, stream, protocols
};
