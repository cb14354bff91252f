// ws 8's 'message' listener on a relayed socket of `hyco-ws-rs/hyco-ws`. It compiles: the
// socket's type is also ws's `WebSocket` as @types/hyco-ws code names it (see hyco-ws.d.ts),
// and that type has ws 8's overload. But the overload it resolves to is this entry point's
// deprecated one, whose note says why `isBinary` is wrong here: every line marked
// `deprecated` must get TypeScript's deprecation diagnostic (6387, struck out in editors) and
// no other line may (__test__/types-package.test.mjs asks the language service).
import { createRelayedServer, relayedConnect } from 'hyco-ws-rs/hyco-ws';
import type { RawData, RelayedWebSocket } from 'hyco-ws-rs/hyco-ws';

export function ws8Style(uri: string, token: string): RelayedWebSocket {
  const socket = relayedConnect(uri, token);
  socket.on('message', (data: RawData, isBinary: boolean) => void [data, isBinary]); // deprecated
  socket.once('message', (data, isBinary: boolean) => void [data, isBinary]); // deprecated
  socket.addListener('message', (data: RawData, isBinary: boolean) => void [data, isBinary]); // deprecated
  createRelayedServer({ server: uri, token }, (ws) => {
    ws.on('message', (data, isBinary: boolean) => ws.send(data, { binary: isBinary })); // deprecated
  });
  // hyco-ws's form is not deprecated.
  socket.on('message', (data, flags) => void [data, flags.binary]);
  socket.on('message', (data: string | Buffer) => void data);
  socket.on('message', (data) => void (data === 'ping'));
  socket.on('close', (code: number) => void code);
  return socket;
}
