// Type definitions for `hyco-ws-rs/hyco-ws`, the entry point for code written against
// Microsoft's hyco-ws (see hyco-ws.js): the module's export is `HycoWsWebSocket`, ws 8's
// `WebSocket` class as hyco-ws code uses it, with the relay API as static members, as in
// index.d.ts, and hyco-ws's habits where ws 8 differs. `import` reads hyco-ws.d.mts, which
// re-exports this file's namespace by name: a name added here is added there too.
// __test__/types-package.test.mjs compares the two lists, the values with what hyco-ws.mjs
// and hyco-ws.js export, and this file with index.d.ts: every name of index.d.ts is here,
// and every member of its `RelayedServer` is on this file's, which is a class of its own
// (`clients` is an array here, a `Set` there).
//
// Messages. A 'message' listener gets hyco-ws's `(data, flags)`: `data` a string for a text
// message, ws 8's `RawData` for a binary one, and `flags` an object, `{ binary }`. Listeners
// are declared as methods (`SocketEvents`), so that TypeScript compares their parameters both
// ways: hyco-ws code that narrowed the type, `(message: string | Buffer, flags) => …` or
// `(message: string) => …`, type-checks as it is, and so does `(message) => { if (message
// === 'ping') … }`. ws 8's `(data, isBinary: boolean)` is the mistake to catch (`flags` is an
// object, always truthy):
//
// - on `WebSocket` (the export, and `WebSocketServer`'s sockets) it is a compile error, as is
//   any listener of another shape: the class declares every event of ws's, and its catch-all
//   overload takes any name but 'message';
// - on relayed sockets it compiles, struck out as deprecated with a note that says why. A
//   relayed socket's type is also ws's `WebSocket` as `import * as WebSocket from 'ws'` names
//   it (ws-interop.d.cts: @types/hyco-ws's import, which code written for it keeps), and that
//   type brings ws 8's own overloads, 'message' and the catch-all, which no declaration here
//   can take away; this file's overloads come first, the deprecated one among them, so the
//   note is what editors show.

/// <reference types="node" />

import WS = require('ws');
import { EventEmitter } from 'events';
import { ClientRequest, ClientRequestArgs, IncomingMessage } from 'http';
import hyco = require('./index.js');
import type { WsNamespaceWebSocket } from './ws-interop.cjs';

/** `'message'`'s second argument, as hyco-ws (ws 1) gave it. */
interface HycoWsMessageFlags {
  /** The message is binary (`data` is then ws 8's `RawData`); `false` for text (`data` is
   * then a string). */
  binary: boolean;
}

/**
 * The events of this entry point's sockets and their listeners (`this` is the socket): ws
 * 8's, but for 'message'. Methods, so that a listener that narrows a parameter's type is
 * taken (see the top of this file).
 */
interface HycoWsSocketEvents<Socket> {
  /** `reason` a string, as ws 1.1 and 7 gave it (ws 8: a Buffer). */
  close(this: Socket, code: number, reason: string): void;
  error(this: Socket, error: Error): void;
  upgrade(this: Socket, request: IncomingMessage): void;
  /** hyco-ws's form: `data` a string for text, `RawData` for binary; `flags.binary`. */
  message(this: Socket, data: string | WS.RawData, flags: HycoWsMessageFlags): void;
  open(this: Socket): void;
  ping(this: Socket, data: Buffer): void;
  pong(this: Socket, data: Buffer): void;
  redirect(this: Socket, url: string, request: ClientRequest): void;
  'unexpected-response'(this: Socket, request: ClientRequest, response: IncomingMessage): void;
}

/**
 * Any event name but 'message', for the catch-all overload. A 'message' listener that no
 * 'message' overload takes falls through to this overload too, and its error, which is the
 * one TypeScript reports, then reads as this type's one property.
 */
type NotMessage<E> = E extends 'message'
  ? { "hyco-ws-rs/hyco-ws: a 'message' listener gets (data: string | RawData, flags: { binary: boolean })": never }
  : E;

/** Any event name but ws's (whose listeners ws's own overloads type). */
type NotWsEvent<E> = E & (E extends keyof HycoWsSocketEvents<unknown> ? never : unknown);

/**
 * ws 8's `WebSocket` as hyco-ws code uses it: 'message' gives `(data, flags)`, a string for
 * text, and `new WebSocket(address, null, options)` works (ws 8 refuses a `null` list of
 * subprotocols). The module's export, with the relay API as static members.
 */
declare class HycoWsWebSocket extends WS {
  constructor(address: null);
  constructor(address: string | URL, options?: WS.ClientOptions | ClientRequestArgs);
  /** @param protocols Subprotocols to offer; `null` for none, as ws 1 read it. */
  constructor(address: string | URL, protocols?: string | string[] | null, options?: WS.ClientOptions | ClientRequestArgs);

  // ws's events, then the catch-all for any name but 'message', then 'message' in hyco-ws's
  // form: last, so that a listener of the wrong shape is reported against it.
  on(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  on(event: 'error', listener: HycoWsSocketEvents<this>['error']): this;
  on(event: 'upgrade', listener: HycoWsSocketEvents<this>['upgrade']): this;
  on(event: 'open', listener: HycoWsSocketEvents<this>['open']): this;
  on(event: 'ping' | 'pong', listener: HycoWsSocketEvents<this>['ping']): this;
  on(event: 'redirect', listener: HycoWsSocketEvents<this>['redirect']): this;
  on(event: 'unexpected-response', listener: HycoWsSocketEvents<this>['unexpected-response']): this;
  on<E extends string | symbol>(event: NotMessage<E>, listener: (this: this, ...args: any[]) => void): this;
  on(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  once(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  once(event: 'error', listener: HycoWsSocketEvents<this>['error']): this;
  once(event: 'upgrade', listener: HycoWsSocketEvents<this>['upgrade']): this;
  once(event: 'open', listener: HycoWsSocketEvents<this>['open']): this;
  once(event: 'ping' | 'pong', listener: HycoWsSocketEvents<this>['ping']): this;
  once(event: 'redirect', listener: HycoWsSocketEvents<this>['redirect']): this;
  once(event: 'unexpected-response', listener: HycoWsSocketEvents<this>['unexpected-response']): this;
  once<E extends string | symbol>(event: NotMessage<E>, listener: (this: this, ...args: any[]) => void): this;
  once(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  off(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  off(event: 'error', listener: HycoWsSocketEvents<this>['error']): this;
  off(event: 'upgrade', listener: HycoWsSocketEvents<this>['upgrade']): this;
  off(event: 'open', listener: HycoWsSocketEvents<this>['open']): this;
  off(event: 'ping' | 'pong', listener: HycoWsSocketEvents<this>['ping']): this;
  off(event: 'redirect', listener: HycoWsSocketEvents<this>['redirect']): this;
  off(event: 'unexpected-response', listener: HycoWsSocketEvents<this>['unexpected-response']): this;
  off<E extends string | symbol>(event: NotMessage<E>, listener: (this: this, ...args: any[]) => void): this;
  off(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  addListener(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  addListener(event: 'error', listener: HycoWsSocketEvents<this>['error']): this;
  addListener(event: 'upgrade', listener: HycoWsSocketEvents<this>['upgrade']): this;
  addListener(event: 'open', listener: HycoWsSocketEvents<this>['open']): this;
  addListener(event: 'ping' | 'pong', listener: HycoWsSocketEvents<this>['ping']): this;
  addListener(event: 'redirect', listener: HycoWsSocketEvents<this>['redirect']): this;
  addListener(event: 'unexpected-response', listener: HycoWsSocketEvents<this>['unexpected-response']): this;
  addListener<E extends string | symbol>(event: NotMessage<E>, listener: (this: this, ...args: any[]) => void): this;
  addListener(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  removeListener(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  removeListener(event: 'error', listener: HycoWsSocketEvents<this>['error']): this;
  removeListener(event: 'upgrade', listener: HycoWsSocketEvents<this>['upgrade']): this;
  removeListener(event: 'open', listener: HycoWsSocketEvents<this>['open']): this;
  removeListener(event: 'ping' | 'pong', listener: HycoWsSocketEvents<this>['ping']): this;
  removeListener(event: 'redirect', listener: HycoWsSocketEvents<this>['redirect']): this;
  removeListener(event: 'unexpected-response', listener: HycoWsSocketEvents<this>['unexpected-response']): this;
  removeListener<E extends string | symbol>(event: NotMessage<E>, listener: (this: this, ...args: any[]) => void): this;
  removeListener(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
}

/** ws 8's 'message' listener, which this entry point's sockets do not call that way. */
type Ws8MessageListener = (data: WS.RawData, isBinary: boolean) => void;

/**
 * The class of this entry point's relayed sockets; the namespace exports it as
 * `RelayedWebSocket`. Only 'message' and 'close' (its reason a string) are declared here:
 * the type of a relayed socket intersects this class with ws's `WebSocket` (see the top of
 * this file), whose overloads type the other events, after these.
 */
declare class HycoWsRelayedWebSocketClass extends WS {
  private constructor();

  on(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  on(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  /** @deprecated Not ws 8's `(data, isBinary)`: on `hyco-ws-rs/hyco-ws` a 'message' listener
   * gets hyco-ws's `(data, flags)`, `data` a string for text and `flags` an object,
   * `{ binary }` (always truthy). Write `(data, flags) => … flags.binary …`, or use the main
   * entry point, `hyco-ws-rs`, for ws 8's form. */
  on(event: 'message', listener: Ws8MessageListener): this;
  on<E extends string | symbol>(event: NotWsEvent<E>, listener: (this: this, ...args: any[]) => void): this;
  once(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  once(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  /** @deprecated Not ws 8's `(data, isBinary)`: see `on`. */
  once(event: 'message', listener: Ws8MessageListener): this;
  once<E extends string | symbol>(event: NotWsEvent<E>, listener: (this: this, ...args: any[]) => void): this;
  off(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  off(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  off<E extends string | symbol>(event: NotWsEvent<E>, listener: (this: this, ...args: any[]) => void): this;
  addListener(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  addListener(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  /** @deprecated Not ws 8's `(data, isBinary)`: see `on`. */
  addListener(event: 'message', listener: Ws8MessageListener): this;
  addListener<E extends string | symbol>(event: NotWsEvent<E>, listener: (this: this, ...args: any[]) => void): this;
  removeListener(event: 'message', listener: HycoWsSocketEvents<this>['message']): this;
  removeListener(event: 'close', listener: HycoWsSocketEvents<this>['close']): this;
  removeListener<E extends string | symbol>(event: NotWsEvent<E>, listener: (this: this, ...args: any[]) => void): this;
}

/** A relayed socket of this entry point: see {@link HycoWsWebSocket.RelayedWebSocket}. */
type HycoWsRelayedWebSocket = HycoWsRelayedWebSocketClass & WsNamespaceWebSocket;

/** ws 8's `WebSocketServer`, whose sockets are {@link HycoWsWebSocket}s (unless
 * `options.WebSocket` names another class). */
declare class HycoWsServer<
  T extends typeof WS.WebSocket = typeof HycoWsWebSocket,
  U extends typeof IncomingMessage = typeof IncomingMessage
> extends WS.Server<T, U> {
  constructor(options?: WS.ServerOptions<T, U>, callback?: () => void);
}

/**
 * The events of this entry point's {@link HycoWsRelayedServer}: the main entry point's
 * ({@link hyco.RelayedServerEvents}), with hyco-ws's habits.
 */
interface HycoWsRelayedServerEvents
  extends Omit<hyco.RelayedServerEvents, 'connection' | 'listening' | 'error'> {
  /** A sender's socket, once open (its messages in hyco-ws's form), and what the relay says
   * of the sender. */
  connection: (socket: HycoWsRelayedWebSocket, req: hyco.RelayedRequest) => void;
  /** Each time the control channel opens, as in hyco-ws (the main entry point's fires once;
   * 'online' too fires each time). */
  listening: () => void;
  /** Each failed attempt to open the control channel, as in hyco-ws, when an 'error' listener
   * exists (the server retries all the same; without a listener nothing is thrown); and what
   * reconnecting cannot fix (404; 401/403 with a fixed token), which 'close' follows. */
  error: (err: hyco.RelayedConnectError) => void;
}

/**
 * hyco-ws's `RelayedServer`, this package's listener with hyco-ws's habits: `clients` is an
 * array, accepted sockets give messages as hyco-ws's did, 'listening' comes each time the
 * control channel opens, each failed attempt is an 'error', and closing the server closes its
 * connections with 1000. Otherwise as {@link hyco.RelayedServer}: the members are the same.
 */
declare class HycoWsRelayedServer extends EventEmitter {
  /** @param callback Added as a 'listening' listener (called each time the channel opens). */
  /** `options` may be another server's `options` (hyco-ws's null defaults count as absent). */
  constructor(options: hyco.RelayedServerOptions | hyco.RelayedServerOptionsWithDefaults, callback?: () => void);
  /** Open accepted sockets, an array as in hyco-ws (empty with `clientTracking: false`). */
  clients: HycoWsRelayedWebSocket[];
  /** The control channel's state. */
  status: 'connecting' | 'online' | 'offline' | 'closed';
  /** The last error seen (a failed connect, a lost channel, a final error). */
  lastError: Error | null;
  /** Closes the control channel (1000) and every accepted socket (1000, as hyco-ws did),
   * then emits 'close' and calls `cb`; a second call gets `Error('The server is not
   * running')`. */
  close(cb?: (err?: Error) => void): void;
  /** {@link hyco.RelayedServer.listenUri} */
  readonly listenUri: string;
  /** {@link hyco.RelayedServer.path} */
  readonly path: string;
  /** {@link hyco.RelayedServer.options} */
  readonly options: hyco.RelayedServerOptionsWithDefaults;
  /** {@link hyco.RelayedServer.closeRequested} */
  closeRequested: boolean;
  /** {@link hyco.RelayedServer.controlChannel} */
  readonly controlChannel: hyco.RelayedControlChannel;

  on<E extends keyof HycoWsRelayedServerEvents>(event: E, listener: HycoWsRelayedServerEvents[E]): this;
  once<E extends keyof HycoWsRelayedServerEvents>(event: E, listener: HycoWsRelayedServerEvents[E]): this;
  addListener<E extends keyof HycoWsRelayedServerEvents>(event: E, listener: HycoWsRelayedServerEvents[E]): this;
  off<E extends keyof HycoWsRelayedServerEvents>(event: E, listener: HycoWsRelayedServerEvents[E]): this;
  removeListener<E extends keyof HycoWsRelayedServerEvents>(event: E, listener: HycoWsRelayedServerEvents[E]): this;
}

declare namespace HycoWsWebSocket {
  // ---------------------------------------------------------------------------------------
  // ws 8, with this entry point's sockets
  // ---------------------------------------------------------------------------------------
  /** This module's export itself: ws's `WebSocket` class with hyco-ws's message form. */
  const WebSocket: typeof HycoWsWebSocket;
  type WebSocket = HycoWsWebSocket;
  /** ws 8's `WebSocketServer`, whose sockets are this entry point's `WebSocket`s. */
  const WebSocketServer: typeof HycoWsServer;
  type WebSocketServer = HycoWsServer;
  /** ws's older name of {@link WebSocketServer}. */
  const Server: typeof HycoWsServer;
  type Server = HycoWsServer;
  /** `'message'`'s second argument. */
  type MessageFlags = HycoWsMessageFlags;
  /** The events of this entry point's sockets and their listeners. */
  type SocketEvents<Socket = HycoWsWebSocket> = HycoWsSocketEvents<Socket>;

  // ws 8, re-exported unchanged
  export import createWebSocketStream = hyco.createWebSocketStream;
  export import extension = hyco.extension;
  export import subprotocol = hyco.subprotocol;
  export import PerMessageDeflate = hyco.PerMessageDeflate;
  export import Receiver = hyco.Receiver;
  export import Sender = hyco.Sender;
  export import RawData = hyco.RawData;
  export import Data = hyco.Data;
  export import CertMeta = hyco.CertMeta;
  export import VerifyClientCallbackSync = hyco.VerifyClientCallbackSync;
  export import VerifyClientCallbackAsync = hyco.VerifyClientCallbackAsync;
  export import FinishRequestCallback = hyco.FinishRequestCallback;
  export import ClientOptions = hyco.ClientOptions;
  export import PerMessageDeflateOptions = hyco.PerMessageDeflateOptions;
  export import Event = hyco.Event;
  export import ErrorEvent = hyco.ErrorEvent;
  export import CloseEvent = hyco.CloseEvent;
  export import MessageEvent = hyco.MessageEvent;
  export import WebSocketEventMap = hyco.WebSocketEventMap;
  export import EventListenerOptions = hyco.EventListenerOptions;
  export import ServerOptions = hyco.ServerOptions;
  export import AddressInfo = hyco.AddressInfo;

  // ---------------------------------------------------------------------------------------
  // Relay addresses and tokens, with what hyco-ws took: an empty path, an empty key, a
  // negative lifetime
  // ---------------------------------------------------------------------------------------

  /**
   * The base address of a Hybrid Connection, as {@link hyco.createRelayBaseUri}; an empty
   * `path` gives the address of `/$hc/`, as in hyco-ws.
   */
  function createRelayBaseUri(namespace: string, path: string): string;
  /** The listener's control-channel address, as {@link hyco.createRelayListenUri}; an empty
   * `path` is taken, as in hyco-ws. */
  function createRelayListenUri(namespace: string, path: string, token?: string | number | null, id?: string | number | null): string;
  /** The sender's address, as {@link hyco.createRelaySendUri}; an empty `path` is taken, as
   * in hyco-ws; a number as `token` or `id` is written as it prints, as hyco-ws did. */
  function createRelaySendUri(namespace: string, path: string, token?: string | number | null, id?: string | number | null): string;
  /**
   * A SAS token for `uri`, as {@link hyco.createRelayToken}, with what hyco-ws took: an empty
   * `key` signs, and a negative lifetime gives a token that has already expired. An empty
   * key name is still refused (no service takes the token hyco-ws wrote). A `Buffer` key is
   * its text (it must be UTF-8).
   *
   * @param expirationSeconds Lifetime in seconds, or a string of digits (as read from the
   *     environment; one worth 0 is refused). Default 3600; `0` also means 3600.
   */
  function createRelayToken(uri: string, keyName: string, key: string | Buffer, expirationSeconds?: number | string | null): string;
  /** `uri` with a fresh token added as `sb-hc-token`, as {@link hyco.appendRelayToken}, the
   * token made as this entry point's {@link createRelayToken}. */
  function appendRelayToken(uri: string, keyName: string, key: string | Buffer, expirationSeconds?: number | string | null): string;
  export import createRelayHttpsUri = hyco.createRelayHttpsUri;
  export import parseRelayToken = hyco.parseRelayToken;
  export import RelayTokenInfo = hyco.RelayTokenInfo;
  export import parseConnectionString = hyco.parseConnectionString;
  export import RelayConnectionInfo = hyco.RelayConnectionInfo;

  // ---------------------------------------------------------------------------------------
  // The local relay emulator
  // ---------------------------------------------------------------------------------------
  export import startLocalRelay = hyco.startLocalRelay;
  export import setInboundBudget = hyco.setInboundBudget;
  export import getInboundBudget = hyco.getInboundBudget;
  export import LocalRelay = hyco.LocalRelay;
  export import LocalRelayOptions = hyco.LocalRelayOptions;
  export import LocalRelayEvent = hyco.LocalRelayEvent;
  export import LocalRelayStats = hyco.LocalRelayStats;
  export import RelayRight = hyco.RelayRight;
  export import RelayEntraRole = hyco.RelayEntraRole;
  export import EntraTokenOptions = hyco.EntraTokenOptions;

  // ---------------------------------------------------------------------------------------
  // The sender
  // ---------------------------------------------------------------------------------------

  /**
   * A relayed socket of this entry point: the main entry point's
   * ({@link hyco.RelayedWebSocket}) with hyco-ws's 'message', `(data, flags)`. Like it, the
   * type is also ws's `WebSocket` however that is imported (`import * as WebSocket from
   * 'ws'` included), so handlers and variables typed with it take a relayed socket.
   */
  type RelayedWebSocket = HycoWsRelayedWebSocket;
  /** The class of relayed sockets, for `instanceof` (which narrows to the type above).
   * Sockets come from {@link relayedConnect} and {@link RelayedServer}; the constructor is
   * not public. */
  const RelayedWebSocket: typeof HycoWsRelayedWebSocketClass & { readonly prototype: HycoWsRelayedWebSocket };

  /**
   * Connects to a Hybrid Connection as a sender, as {@link hyco.relayedConnect}; the socket
   * gives messages in hyco-ws's form.
   *
   * @param address The sender address, from {@link createRelaySendUri}.
   * @param token A SAS (or Entra ID) token, a function that gives one, or `null` for an
   *   anonymous sender (or with `options.credential`).
   */
  function relayedConnect(
    address: string | URL,
    token: hyco.TokenProvider | null | undefined,
    fn?: (socket: HycoWsRelayedWebSocket) => void
  ): HycoWsRelayedWebSocket;
  function relayedConnect(
    address: string | URL,
    token: hyco.TokenProvider | null | undefined,
    options: hyco.RelayedConnectOptions,
    fn?: (socket: HycoWsRelayedWebSocket) => void
  ): HycoWsRelayedWebSocket;
  /** hyco-ws's alias of {@link relayedConnect}. */
  const createRelayedConnection: typeof relayedConnect;
  export import RelayedConnectOptions = hyco.RelayedConnectOptions;
  export import RelayedConnectError = hyco.RelayedConnectError;
  export import RelayAccessToken = hyco.RelayAccessToken;
  export import RelayTokenCredential = hyco.RelayTokenCredential;
  export import RelayProxy = hyco.RelayProxy;
  export import TokenProvider = hyco.TokenProvider;

  // ---------------------------------------------------------------------------------------
  // The listener
  // ---------------------------------------------------------------------------------------

  /** hyco-ws's `RelayedServer`: see {@link HycoWsRelayedServer}. */
  const RelayedServer: typeof HycoWsRelayedServer;
  type RelayedServer = HycoWsRelayedServer;
  /** @types/hyco-ws's name of {@link RelayedServer}, for code written against it. A type
   * only: hyco-ws exports no value of that name. */
  type HybridConnectionWebSocketServer = HycoWsRelayedServer;
  /** The events of {@link RelayedServer}. */
  type RelayedServerEvents = HycoWsRelayedServerEvents;
  /** hyco-ws's factory: a {@link RelayedServer} with `fn` as its 'connection' listener. */
  function createRelayedServer(
    options: hyco.RelayedServerOptions | hyco.RelayedServerOptionsWithDefaults,
    fn?: HycoWsRelayedServerEvents['connection']
  ): HycoWsRelayedServer;
  export import RelayedServerOptions = hyco.RelayedServerOptions;
  export import RelayedServerOptionsWithDefaults = hyco.RelayedServerOptionsWithDefaults;
  export import RelayedRequest = hyco.RelayedRequest;
  export import RelayedVerifyInfo = hyco.RelayedVerifyInfo;
  export import OfferedProtocols = hyco.OfferedProtocols;
  export import RelayedControlChannel = hyco.RelayedControlChannel;
  export import RelayedControlChannelEvents = hyco.RelayedControlChannelEvents;
  export import RelayedControlChannelEventMap = hyco.RelayedControlChannelEventMap;

  // ---------------------------------------------------------------------------------------
  // HTTP senders
  // ---------------------------------------------------------------------------------------
  export import relayedFetch = hyco.relayedFetch;
  export import RelayedFetchInit = hyco.RelayedFetchInit;
  export import RelayRefusedError = hyco.RelayRefusedError;
}

export = HycoWsWebSocket;
