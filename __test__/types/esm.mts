// The ESM entry point's types: named imports, as `import { … } from 'hyco-ws-rs'`.
import hyco, { createRelayToken, parseConnectionString, WebSocket, WebSocketServer } from 'hyco-ws-rs';

const token: string = createRelayToken('ws://127.0.0.1:9000/$hc/x', 'rule', 'key', 60);
const ns: string = parseConnectionString('Endpoint=sb://ns/').namespace;
const ws: WebSocket = new WebSocket('ws://127.0.0.1:1');
const wss: WebSocketServer = new WebSocketServer({ noServer: true });
const viaDefault: string = hyco.createRelaySendUri(ns, 'hc');

// @ts-expect-error: keyName must be a string
createRelayToken('ws://h/$hc/x', 1, 'key');

export { token, ws, wss, viaDefault };
