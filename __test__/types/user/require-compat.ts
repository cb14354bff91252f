// hyco-ws code in TypeScript, the drop-in form: `import WebSocket = require('hyco-ws-rs/hyco-ws')`,
// the module's export being ws's WebSocket class with hyco-ws's habits and the relay API on
// top. The app is __test__/fixtures/hyco-ws-app.js (which runs against hyco-ws 1.0.5 and this
// entry point alike) with types and nothing else: messages as strings with `flags`, the
// control channel's `onmessage` wrapped, `closeRequested`, `clients` as an array. Checked
// where `import … = require()` is allowed: CommonJS and `.ts` files under nodenext.
import WebSocket = require('hyco-ws-rs/hyco-ws');

const LISTEN_URI = process.env.LISTEN_URI ?? '';
const SEND_URI = process.env.SEND_URI ?? '';
const KEY_NAME = process.env.KEY_NAME ?? '';
const KEY = process.env.KEY ?? '';

function describe(m: string | WebSocket.RawData): string {
  return Buffer.isBuffer(m) ? `buffer ${m.toString('hex')}` : `${typeof m} ${String(m)}`;
}

const past: string = WebSocket.createRelayToken(SEND_URI, KEY_NAME, 'key', -60);
const emptyPath: string = WebSocket.createRelaySendUri('contoso.servicebus.windows.net', '');

let listening = 0;
const server = WebSocket.createRelayedServer(
  {
    server: LISTEN_URI,
    token: function () {
      return WebSocket.createRelayToken(LISTEN_URI, KEY_NAME, KEY);
    }
  },
  function (ws) {
    console.log('connection, clients is an array', Array.isArray(server.clients));
    ws.on('message', function (message, flags) {
      console.log('server got', describe(message), 'binary', Boolean(flags && flags.binary), 'clients', server.clients.length);
      ws.send(message === 'ping' ? 'pong' : message);
    });
    ws.on('close', function (code) {
      console.log('server socket closed', code);
    });
  }
);

server.on('listening', function () {
  listening++;
  console.log('listening', listening, 'channel open', server.controlChannel.readyState === WebSocket.OPEN);
  if (listening === 1) first();
});

function first(): void {
  const original = server.controlChannel.onmessage;
  server.controlChannel.onmessage = function (event) {
    const message = JSON.parse(event.data);
    if (message.accept) {
      console.log('accept message, x-hello', message.accept.connectHeaders['X-Hello']);
      server.controlChannel.onmessage = original;
    }
    if (original) original.call(this, event);
  };
  const client = new WebSocket(SEND_URI, null, {
    headers: { ServiceBusAuthorization: WebSocket.createRelayToken(SEND_URI, KEY_NAME, KEY), 'X-Hello': 'world' }
  });
  client.on('open', function () {
    client.send('ping');
  });
  client.on('message', function (message, flags) {
    console.log('client got', describe(message), 'binary', Boolean(flags && flags.binary));
    client.close();
  });
  client.on('close', function () {
    // Forces a new control channel: 'listening' again.
    server.controlChannel.close();
  });
}

function second(): void {
  WebSocket.relayedConnect(SEND_URI, WebSocket.createRelayToken(SEND_URI, KEY_NAME, KEY), function (socket) {
    socket.on('message', function (message: string | Buffer) {
      console.log('relayed sender got', describe(message));
      server.close(function (err) {
        console.log('server close callback, error', Boolean(err), 'closeRequested', server.closeRequested);
      });
    });
    socket.send('hello');
  });
}

function finish(badListenUri: string): void {
  const bad = WebSocket.createRelayedServer({ server: badListenUri, token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=z' });
  bad.on('error', function (err) {
    if (bad.closeRequested) return;
    console.log('unresolvable host error', err.code);
    bad.closeRequested = true;
  });
}

// The names, as types.
const typed: WebSocket.HybridConnectionWebSocketServer = server;
const relayed: WebSocket.RelayedWebSocket | undefined = server.clients[0];
const direct: WebSocket = new WebSocket('ws://127.0.0.1:1', null);
const local: WebSocket.WebSocketServer = new WebSocket.Server({ noServer: true });
local.on('connection', (ws: WebSocket) => ws.on('message', (data, flags) => ws.send(data, { binary: flags.binary })));

export { past, emptyPath, second, finish, typed, relayed, direct };
