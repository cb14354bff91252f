// The type that `import * as WebSocket from 'ws'` names in CommonJS code compiled with
// `esModuleInterop` (the default of `tsc --init`, and always on under `module: nodenext`),
// the import style of @types/hyco-ws and of code written for it.
//
// There, TypeScript makes `WebSocket` a copy of ws's class whose methods still return the
// original class's `this`: no subclass of ws's `WebSocket` is assignable to that copy, not
// even ws's own class, only another such copy. index.d.ts types a relayed socket as
// `RelayedWebSocketClass & WsNamespaceWebSocket`, so that handlers and variables typed this
// way accept it, and hyco-ws.d.ts types its own likewise. Without `esModuleInterop` the same
// import is ws's class itself, and the intersection is just the class.
//
// This file is `.d.cts` so that TypeScript reads it as CommonJS in every module mode: in an
// ES module (`.mts`, `moduleResolution: bundler`) `import * as` of ws is a namespace, which
// cannot name a type (TS2709).

import * as WsNamespace from 'ws';

export type WsNamespaceWebSocket = WsNamespace;
