// Types of `hyco-ws-rs/hyco-ws`'s ES module entry point (hyco-ws.mjs): named and default imports.
import hycoWs, { createRelayToken, relayedConnect, RelayedServer, WebSocket, WebSocketServer } from 'hyco-ws-rs/hyco-ws';
import type { MessageFlags, RawData, RelayedWebSocket } from 'hyco-ws-rs/hyco-ws';

const token: string = createRelayToken('ws://127.0.0.1:9000/$hc/x', 'rule', '', -1);
const ws: WebSocket = new WebSocket('ws://127.0.0.1:1', null, { headers: { ServiceBusAuthorization: token } });
const viaDefault: WebSocket = new hycoWs('ws://127.0.0.1:1', null);
ws.on('message', (data: string | RawData, flags: MessageFlags) => void [data, flags.binary]);
const sender: RelayedWebSocket = relayedConnect(hycoWs.createRelaySendUri('ws://127.0.0.1:9000', 'hc'), token);
const server = new RelayedServer({ server: hycoWs.createRelayListenUri('ws://127.0.0.1:9000', 'hc'), token });
const clients: RelayedWebSocket[] = server.clients;
const wss: WebSocketServer = new hycoWs.WebSocketServer({ noServer: true });

// @ts-expect-error: ws 8's (data, isBinary): the second argument is `{ binary }`
ws.on('message', (data, isBinary: boolean) => void [data, isBinary]);

export { viaDefault, sender, clients, wss };
