// Type definitions for hyco-ws-rs: the one source of the package's declarations.
//
// The module's export is ws 8's `WebSocket` class with the Azure Relay API layered on top,
// exactly as `require('hyco-ws')` was ws's class with hyco-ws's functions added.
//
// `require('hyco-ws-rs')` (and `moduleResolution: node10`) reads this file; `import` (Node's
// ESM, bundlers) reads index.d.mts, which re-exports this file's namespace by name. A name
// added to the namespace below is added to the list in index.d.mts too, and to hyco-ws.d.ts
// and hyco-ws.d.mts (the `hyco-ws-rs/hyco-ws` entry point has every name of this one, and its
// `RelayedServer` every member of this one's): __test__/types-package.test.mjs fails until
// it is.

/// <reference types="node" />

import WS = require('ws');
import { EventEmitter } from 'events';
import { IncomingMessage, ServerResponse } from 'http';
import { Writable } from 'stream';
import type { WsNamespaceWebSocket } from './ws-interop.cjs';

/** ws's `WebSocket` class, with the relay API as static members. */
declare class HycoWebSocket extends WS {}

/** The class of relayed sockets; the namespace exports it as `RelayedWebSocket`. */
declare class RelayedWebSocketClass extends WS {
  private constructor();
}

declare namespace HycoWebSocket {
  // ---------------------------------------------------------------------------------------
  // ws 8, re-exported unchanged
  // ---------------------------------------------------------------------------------------
  export import WebSocket = WS.WebSocket;
  export import WebSocketServer = WS.WebSocketServer;
  export import Server = WS.Server;
  export import createWebSocketStream = WS.createWebSocketStream;
  export import RawData = WS.RawData;
  export import Data = WS.Data;
  export import CertMeta = WS.CertMeta;
  export import VerifyClientCallbackSync = WS.VerifyClientCallbackSync;
  export import VerifyClientCallbackAsync = WS.VerifyClientCallbackAsync;
  export import FinishRequestCallback = WS.FinishRequestCallback;
  export import ClientOptions = WS.ClientOptions;
  export import PerMessageDeflateOptions = WS.PerMessageDeflateOptions;
  export import Event = WS.Event;
  export import ErrorEvent = WS.ErrorEvent;
  export import CloseEvent = WS.CloseEvent;
  export import MessageEvent = WS.MessageEvent;
  export import WebSocketEventMap = WS.WebSocketEventMap;
  export import EventListenerOptions = WS.EventListenerOptions;
  export import ServerOptions = WS.ServerOptions;
  export import AddressInfo = WS.AddressInfo;

  /** ws's `Sec-WebSocket-Extensions` parser and formatter. */
  const extension: {
    parse(header: string): Record<string, Array<Record<string, Array<string | true>>>>;
    format(extensions: Record<string, unknown>): string;
  };
  /** ws's `Sec-WebSocket-Protocol` parser. */
  const subprotocol: {
    parse(header: string): Set<string>;
  };
  /** ws's permessage-deflate extension. */
  class PerMessageDeflate {
    static readonly extensionName: 'permessage-deflate';
    /** As ws 8.20 and later: `isServer` and `maxPayload` are options. */
    constructor(options?: WS.PerMessageDeflateOptions & { isServer?: boolean; maxPayload?: number });
    offer(): Record<string, unknown>;
    accept(configurations: Array<Record<string, unknown>>): Record<string, unknown>;
    cleanup(): void;
  }
  /** ws's frame parser: a writable stream of raw bytes. */
  class Receiver extends Writable {
    constructor(options?: {
      allowSynchronousEvents?: boolean;
      binaryType?: 'nodebuffer' | 'arraybuffer' | 'fragments';
      extensions?: Record<string, unknown>;
      isServer?: boolean;
      maxPayload?: number;
      skipUTF8Validation?: boolean;
    });
  }
  /** ws's frame writer. */
  class Sender {
    constructor(socket: import('net').Socket, extensions?: Record<string, unknown>, generateMask?: (mask: Buffer) => void);
    static frame(data: Buffer | string, options: Record<string, unknown>): Buffer[];
  }

  // ---------------------------------------------------------------------------------------
  // Relay addresses and tokens (hyco-ws's helpers, same names and argument order)
  // ---------------------------------------------------------------------------------------

  /**
   * The base address of a Hybrid Connection. A bare namespace gives hyco-ws's
   * `wss://{namespace}:443/$hc/{path}` exactly (no encoding); a namespace with a scheme keeps
   * its scheme, host and port (`ws://127.0.0.1:9000` → `ws://127.0.0.1:9000/$hc/{path}`),
   * and `sb://ns/` becomes `wss://ns:443/$hc/{path}`.
   *
   * @throws {TypeError} `ERR_INVALID_ARG_TYPE`/`ERR_INVALID_ARG_VALUE` for a missing, empty
   *   or non-string argument; `ERR_INVALID_URL` for an unusable namespace URL.
   */
  function createRelayBaseUri(namespace: string, path: string): string;

  /** The listener's control-channel address: the base address plus `sb-hc-action=listen`,
   * then `sb-hc-token` and `sb-hc-id` when given (each URL-encoded). */
  function createRelayListenUri(namespace: string, path: string, token?: string | null, id?: string | null): string;

  /** The sender's address: the base address plus `sb-hc-action=connect`, then
   * `sb-hc-token` and `sb-hc-id` when given (each URL-encoded). */
  function createRelaySendUri(namespace: string, path: string, token?: string | null, id?: string | null): string;

  /**
   * hyco-https's address for HTTP requests: `https://{namespace}/{path}` (no `$hc/`), then
   * `sb-hc-token` and `sb-hc-id` when given (each URL-encoded). A namespace with a scheme
   * keeps its host and port: `ws://127.0.0.1:9000` gives `http://127.0.0.1:9000/{path}`.
   */
  function createRelayHttpsUri(namespace: string, path: string, token?: string | null, id?: string | null): string;

  /**
   * A SAS token for `uri`, byte-identical to hyco-ws's:
   * `SharedAccessSignature sr=…&sig=…&se=…&skn=…`.
   *
   * @param expirationSeconds Lifetime in seconds. Default 3600; `0` also means 3600 (as in
   *   hyco-ws). Negative or non-finite values throw a `RangeError` (`ERR_OUT_OF_RANGE`).
   */
  function createRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number | null): string;

  /**
   * `uri` with a fresh token added as `sb-hc-token`. A URI without a query gets
   * `?sb-hc-token=…` (hyco-ws wrote `?null&sb-hc-token=…`).
   */
  function appendRelayToken(uri: string, keyName: string, key: string, expirationSeconds?: number | null): string;

  /** The readable fields of a SAS token (the signature is not returned). */
  interface RelayTokenInfo {
    /** The signed resource, decoded, e.g. `http://contoso.servicebus.windows.net:443/hyco`. */
    resource: string;
    /** When the token expires (`se`). */
    expiresAt: Date;
    /** The SAS rule's name (`skn`). */
    keyName: string;
  }

  /**
   * Reads a token's fields.
   *
   * @throws {TypeError} `ERR_INVALID_TOKEN` when the token is malformed.
   */
  function parseRelayToken(token: string): RelayTokenInfo;

  /** A parsed Azure portal connection string. Absent fields are `undefined`. */
  interface RelayConnectionInfo {
    /** `Endpoint`, as written, e.g. `sb://contoso.servicebus.windows.net/`. */
    endpoint: string;
    /** A namespace the URI helpers accept: `contoso.servicebus.windows.net` for
     * `sb://contoso.servicebus.windows.net/`, `ws://127.0.0.1:9000` for a local endpoint. */
    namespace: string;
    /** `EntityPath`: the Hybrid Connection's name. */
    entityPath?: string;
    /** `SharedAccessKeyName`. */
    sharedAccessKeyName?: string;
    /** `SharedAccessKey`. */
    sharedAccessKey?: string;
    /** `SharedAccessSignature`: a ready-made token (excludes key name and key). */
    sharedAccessSignature?: string;
    /** `OperationTimeout` (`hh:mm:ss` or seconds), in milliseconds. */
    operationTimeout?: number;
  }

  /**
   * Reads `Endpoint=sb://…;SharedAccessKeyName=…;SharedAccessKey=…;EntityPath=…` with the
   * rules of .NET's `RelayConnectionStringBuilder`: case-insensitive keys, split at the first
   * `=`, an unknown key is an error that names it.
   *
   * @throws {TypeError} `ERR_INVALID_CONNECTION_STRING` when malformed (the message never
   *   contains a value).
   */
  function parseConnectionString(connectionString: string): RelayConnectionInfo;

  // ---------------------------------------------------------------------------------------
  // The local relay emulator
  // ---------------------------------------------------------------------------------------

  /** A SAS right of a rule. `Manage` implies `Listen` and `Send`. */
  type RelayRight = 'Listen' | 'Send' | 'Manage';

  /** Options of {@link startLocalRelay}. */
  interface LocalRelayOptions {
    /** Port to listen on; `0` picks a free one. Default `0`. */
    port?: number;
    /** Address to bind. Default `'127.0.0.1'`. */
    host?: string;
    /** The Hybrid Connections that exist (a name stands for `{ name }`), or `'any'` to
     * create one on the first listen of any path. Default `'any'`. */
    hybridConnections?: Array<string | { name: string; requiresClientAuthorization?: boolean }> | 'any';
    /** SAS rules. Default: one `RootManageSharedAccessKey` rule with `Manage` and a random key. */
    rules?: Array<{ name: string; key: string; rights: RelayRight[] }>;
    /** PEM certificate chain and key: serve `wss://`. */
    tls?: { cert: string | Buffer; key: string | Buffer };
    /** How long a sender waits for an accept, in ms (and how long an accept address is
     * valid), 1 to 2^31 - 1. Default `30000`. */
    acceptTimeoutMs?: number;
    /** Control channels per Hybrid Connection. Default `25`. */
    maxListeners?: number;
    /** How long a listener has to answer a relayed HTTP request, in ms (the sender then
     * gets 504), and the longest a streamed response may stay idle. Default `60000` (the
     * service's fixed deadline). */
    requestTimeoutMs?: number;
    /** The status of an HTTP request when no listener is connected. Default `404`. */
    noListenerStatus?: 404 | 502 | 503;
    /** Entra ID mode: accept JWTs for `https://relay.azure.net` signed (HS256) with
     * `secret`, their rights from a `roles` claim. `localAuth: false` refuses SAS tokens
     * (as a namespace with local authentication disabled). */
    entra?: { secret: string | Buffer; localAuth?: boolean };
  }

  /** An Azure RBAC role of Relay, as Entra ID mode's `roles` claim carries it. */
  type RelayEntraRole = 'Azure Relay Listener' | 'Azure Relay Sender' | 'Azure Relay Owner';

  /** Options of {@link LocalRelay.createEntraToken} and {@link LocalRelay.entraCredential}. */
  interface EntraTokenOptions {
    /** Default `['Azure Relay Owner']`. */
    roles?: RelayEntraRole[];
    /** Lifetime in seconds. Default `3600`. */
    ttl?: number;
  }

  /** Something that happened in the relay. Never carries a key or a token. */
  interface LocalRelayEvent {
    type:
      | 'listen'
      | 'listenerClosed'
      | 'connect'
      | 'accept'
      | 'reject'
      | 'timeout'
      | 'denied'
      | 'renew'
      | 'relayClosed'
      | 'relayStarted'
      | 'acceptFailed'
      | 'request'
      | 'response'
      | 'requestTimeout'
      | 'requestFailed';
    /** The Hybrid Connection concerned. */
    hybridConnection?: string;
    /** The rendezvous id, or the HTTP request's id. */
    id?: string;
    /** The HTTP status given (`denied`, `reject`, `timeout`, `response`, `requestTimeout`,
     * `requestFailed`). */
    status?: number;
    /** One line, for people. */
    message: string;
  }

  /** Counters of a running relay. */
  interface LocalRelayStats {
    hybridConnections: number;
    /** Control channels open. */
    listeners: number;
    /** Senders waiting for an accept. */
    pendingAccepts: number;
    /** Relayed sender/listener pairs open. */
    connections: number;
    /** Bytes held inside the relay's buffers now (bounded: 256 KiB per direction). */
    bufferedBytes: number;
    /** HTTP requests routed to a listener and not answered yet. */
    pendingRequests: number;
    /** HTTP requests routed to a listener since the relay started. */
    httpRequests: number;
  }

  /** A running local relay; see {@link startLocalRelay}. */
  class LocalRelay extends EventEmitter {
    private constructor();
    /** `ws://127.0.0.1:PORT/` (`wss://` with TLS). */
    readonly url: string;
    /** `ws://127.0.0.1:PORT`: the namespace argument of the URI helpers. */
    readonly namespace: string;
    readonly port: number;
    /** The first rule's name. */
    readonly keyName: string;
    /** The first rule's key. */
    readonly key: string;
    /** `Endpoint=…;SharedAccessKeyName=…;SharedAccessKey=…[;EntityPath=entity]`. */
    connectionString(entity?: string): string;
    stats(): LocalRelayStats;
    /** A JWT this relay accepts in Entra ID mode. Throws `ERR_ENTRA_OFF` without `options.entra`. */
    createEntraToken(options?: EntraTokenOptions): string;
    /** A stand-in for `@azure/identity`'s credentials: `getToken` gives a fresh
     * {@link createEntraToken} token, for the resource the scope names (another resource's
     * token is refused, 401); `scopes` records what it was asked for. */
    entraCredential(options?: EntraTokenOptions): RelayTokenCredential & { readonly scopes: Array<string | string[]> };
    /** Test hook: closes control channels with a close code (default 1011; one a close frame
     * may carry, else a RangeError) and a reason of at most 123 bytes. */
    dropListeners(options?: { hybridConnection?: string; code?: number; reason?: string }): Promise<number>;
    /** Test hook: stops (or with `frozen: false` resumes) reading control channels: pings
     * go unanswered and no sender is routed to them. */
    freezeListeners(options?: { hybridConnection?: string; frozen?: boolean }): number;
    /** Closes every connection and the port, keeping the port number. */
    stop(): Promise<void>;
    /** Listens again on the same port after `stop()`. */
    start(): Promise<void>;
    /** `stop()` then `start()`. */
    restart(): Promise<void>;
    /** Stops for good; the process may then exit. Idempotent. */
    close(): Promise<void>;

    on(event: 'event', listener: (event: LocalRelayEvent) => void): this;
    once(event: 'event', listener: (event: LocalRelayEvent) => void): this;
    off(event: 'event', listener: (event: LocalRelayEvent) => void): this;
    addListener(event: 'event', listener: (event: LocalRelayEvent) => void): this;
    removeListener(event: 'event', listener: (event: LocalRelayEvent) => void): this;
  }

  /**
   * Starts a local Azure Relay emulator (the service side of Hybrid Connections) on
   * 127.0.0.1. Resolves once it listens.
   *
   * @throws {TypeError|RangeError} for bad options (`ERR_INVALID_ARG_TYPE`,
   *   `ERR_OUT_OF_RANGE`); `ERR_TLS_CONFIG` for an unusable certificate or key; `ERR_IO`
   *   when the port cannot be bound.
   */
  function startLocalRelay(options?: LocalRelayOptions): Promise<LocalRelay>;

  // ---------------------------------------------------------------------------------------
  // Memory
  // ---------------------------------------------------------------------------------------

  /**
   * Sets the process's inbound budget: bytes of received messages waiting for the event loop,
   * over every socket, above which every socket stops reading until the event loop catches
   * up (each socket also stops at its own `inboundHighWaterMark`). `0` for none. Default
   * 268435456 (256 MiB). Returns the previous budget.
   *
   * @throws {TypeError|RangeError} for anything but an integer >= 0
   */
  function setInboundBudget(bytes: number): number;
  /** The inbound budget (`0`: none) and the bytes waiting for the event loop now. */
  function getInboundBudget(): { limit: number; used: number };
  // ---------------------------------------------------------------------------------------
  // The sender
  // ---------------------------------------------------------------------------------------

  /**
   * A token with what its provider knows of its life, as an Entra ID credential's
   * `getToken` gives it (`AccessToken` of `@azure/core-auth`).
   */
  interface RelayAccessToken {
    /** The token: a SAS token, or an Entra ID JWT (sent without a `Bearer ` prefix). */
    token: string;
    /** When it expires, Unix ms. */
    expiresOnTimestamp?: number;
    /** When to renew it, Unix ms (else at 80 % of its life). */
    refreshAfterTimestamp?: number;
  }

  /**
   * An Entra ID credential: any object with `getToken(scopes)`, as `@azure/identity`'s
   * (`DefaultAzureCredential`, `ManagedIdentityCredential`, ...). No dependency on it.
   */
  interface RelayTokenCredential {
    getToken(
      scopes: string | string[],
      options?: unknown
    ): Promise<{ token: string; expiresOnTimestamp: number; refreshAfterTimestamp?: number } | null>;
  }

  /**
   * A token, or a function that gives one (a string or a {@link RelayAccessToken}, or a
   * Promise of either): called at start, at each reconnect and renewal.
   */
  type TokenProvider =
    | string
    | (() => string | RelayAccessToken | Promise<string | RelayAccessToken>);

  /** Options of {@link relayedConnect}. */
  interface RelayedConnectOptions {
    /** An Entra ID credential, instead of the `token` argument (which is then `null`).
     * `close()`/`terminate()` before it answers aborts its `getToken` (`abortSignal`). */
    credential?: RelayTokenCredential;
    /** The credential's scope. Default `'https://relay.azure.net//.default'`. */
    scope?: string;
    /** Extra handshake headers (the listener sees them in `connectHeaders`). */
    headers?: Record<string, string | string[]>;
    /** Subprotocols to offer; the listener's choice becomes `socket.protocol`. */
    protocols?: string | string[];
    /** Tracking id, sent as `sb-hc-id` (unless the address already has one). */
    id?: string;
    /** Time allowed for the whole handshake (a token function's wait included), ms. Default
     * `70000` (as Microsoft's .NET client). */
    handshakeTimeout?: number;
    /** Largest message accepted, bytes; `0` for no limit. Default `104857600` (100 MiB, as ws). */
    maxPayload?: number;
    /** Certificates to trust on top of Mozilla's roots and `NODE_EXTRA_CA_CERTS` (PEM). */
    ca?: string | Buffer | Array<string | Buffer>;
    /** Time allowed for the closing handshake before the connection is dropped, ms. Default `30000`. */
    closeTimeout?: number;
    /** Answer pings automatically. Default `true`. */
    autoPong?: boolean;
    /** Ping every this many ms, and drop the connection ('error' `ETIMEDOUT`, then 'close'
     * 1006) when a ping is still unanswered at the next; `0` for none. Default `0`. A pong
     * that could not be read (a busy event loop, reading held at the high-water mark) is
     * waited for longer; a paused socket is not judged until `resume()`. */
    heartbeatInterval?: number;
    /** Bytes of received messages waiting for the event loop above which the socket stops
     * reading (TCP backpressure). Default `16777216` (16 MiB). See {@link setInboundBudget}. */
    inboundHighWaterMark?: number;
    /** An HTTP proxy, `http://[user:password@]host:port` (or `https://…`, TLS to the proxy),
     * for every connection; `false` for none. Default: the environment at the call
     * (`HTTPS_PROXY` for `wss:`, `HTTP_PROXY` for `ws:`, `NO_PROXY`). See the README's
     * "Proxies". */
    proxy?: RelayProxy;
    /**
     * permessage-deflate, as ws's client option: offered by default
     * (`permessage-deflate; client_max_window_bits`); `false` offers nothing. Honoured:
     * `serverNoContextTakeover`, `clientNoContextTakeover`, `serverMaxWindowBits`,
     * `clientMaxWindowBits` (booleans or 8 to 15), `threshold` (default `1024`),
     * `zlibDeflateOptions.level` and `.memLevel`; the rest is accepted and ignored.
     * Compression runs on the addon's threads. Default `true`.
     */
    perMessageDeflate?: boolean | WS.PerMessageDeflateOptions;
  }

  /**
   * The `proxy` option: an HTTP proxy's URL (`http://[user:password@]host:port`, or
   * `https://…` for TLS to the proxy; the hosts of `NO_PROXY` still go direct), or `false`
   * to ignore the environment's proxy variables.
   */
  type RelayProxy = string | URL | false;

  /** The error of a failed connection attempt. */
  interface RelayedConnectError extends Error {
    /** `ECONNREFUSED`, `ENOTFOUND`, `ETIMEDOUT`, OpenSSL's certificate codes
     * (`UNABLE_TO_VERIFY_LEAF_SIGNATURE`, `SELF_SIGNED_CERT_IN_CHAIN`, ...),
     * `ERR_TLS_CERT_ALTNAME_INVALID`, `ERR_UNEXPECTED_RESPONSE`; through a proxy,
     * `ERR_PROXY_AUTH` (407), `ERR_PROXY_REFUSED` (another refusal), `ERR_PROXY_INVALID`
     * (an unusable proxy variable); a failure to reach the proxy names it in the message. */
    code?: string;
    /** The HTTP status when the relay refused the handshake (404, 401, 403, the listener's
     * reject status, ...), or the proxy refused the tunnel (407, ...). */
    statusCode?: number;
    /** The reason text for that status. */
    statusDescription?: string;
  }

  /**
   * A ws 8 `WebSocket` whose network I/O, framing, masking and UTF-8 checks run in Rust. It
   * is an `instanceof WebSocket` and has ws's properties, events and methods; see the README
   * for the few differences (no 'upgrade'/'unexpected-response'/'redirect' events, `mask`
   * ignored).
   *
   * The type is also the one `import * as WebSocket from 'ws'` names under `esModuleInterop`
   * (see ws-interop.d.cts), so that a relayed socket is assignable to ws's `WebSocket`
   * however it was imported, and every callback that receives one accepts a handler typed
   * with ws's `WebSocket`.
   */
  type RelayedWebSocket = RelayedWebSocketClass & WsNamespaceWebSocket;
  /** The class of relayed sockets, for `instanceof` (which narrows to the type above).
   * Sockets come from {@link relayedConnect} and {@link RelayedServer}; the constructor is
   * not public. */
  const RelayedWebSocket: typeof RelayedWebSocketClass & { readonly prototype: RelayedWebSocket };

  /**
   * Connects to a Hybrid Connection as a sender. Returns the socket at once, in CONNECTING;
   * `fn(socket)` runs on 'open'. A failed handshake emits 'error' (a
   * {@link RelayedConnectError}) then 'close' 1006.
   *
   * @param address The sender address, from {@link createRelaySendUri}.
   * @param token A SAS (or Entra ID) token for the `ServiceBusAuthorization` header, a
   *   function that gives one, or `null` for an anonymous sender (or with
   *   `options.credential`).
   */
  function relayedConnect(address: string | URL, token: TokenProvider | null | undefined, fn?: (socket: RelayedWebSocket) => void): RelayedWebSocket;
  function relayedConnect(
    address: string | URL,
    token: TokenProvider | null | undefined,
    options: RelayedConnectOptions,
    fn?: (socket: RelayedWebSocket) => void
  ): RelayedWebSocket;

  /** hyco-ws's alias of {@link relayedConnect}. */
  const createRelayedConnection: typeof relayedConnect;
  // ---------------------------------------------------------------------------------------
  // The listener
  // ---------------------------------------------------------------------------------------

  /** What a listener knows of a sender. */
  interface RelayedRequest {
    /** The sender's handshake headers, names lowercased. */
    headers: Record<string, string>;
    /** The sender's path below the Hybrid Connection and its query, percent-encoded as sent,
     * `sb-hc-*` removed: `/sub?x=1`, or `/`. */
    url: string;
    method: 'GET';
    /** The sender's address, as the service reports it. */
    socket: { remoteAddress?: string; remotePort?: number };
    /** Alias of `socket`. */
    connection: { remoteAddress?: string; remotePort?: number };
    /** The rendezvous id: the sender's `sb-hc-id` when it gave one. */
    id: string;
  }

  /** The offered subprotocols: a `Set` for ws 8 code, an array for hyco-ws code. */
  interface OfferedProtocols extends Array<string> {
    has(protocol: string): boolean;
    readonly size: number;
  }

  /** `verifyClient`'s first argument. */
  interface RelayedVerifyInfo {
    origin?: string;
    req: RelayedRequest;
    /** The rendezvous runs over `wss://`. */
    secure: boolean;
  }

  /** Options of {@link RelayedServer}. */
  interface RelayedServerOptions {
    /** The listen address, from {@link createRelayListenUri}. */
    server?: string;
    /** The token, or a provider called for each connect and renewal. */
    token?: TokenProvider;
    /** An Entra ID credential, instead of `token` (or with a connection string without key). */
    credential?: RelayTokenCredential;
    /** The credential's scope. Default `'https://relay.azure.net//.default'`. */
    scope?: string;
    /** Instead of `server` and `token`: a portal connection string (a key gives renewed
     * tokens; `SharedAccessSignature` a fixed one; without either, give `credential`). */
    connectionString?: string;
    /** The Hybrid Connection, when the connection string has no `EntityPath`. */
    path?: string;
    /** Tracking id, sent as `sb-hc-id`. */
    id?: string;
    /** Keep open sockets in `clients`. Default `true`. */
    clientTracking?: boolean;
    /** Chooses the subprotocol (ws 8 form: return it, or `false` to refuse with 401); the
     * hyco-ws form `(list, cb)` calls `cb(result, protocol)` synchronously. */
    handleProtocols?: (
      protocols: OfferedProtocols,
      /** The request (ws 8 form), which is also hyco-ws's callback `(result, protocol)`. */
      req: RelayedRequest & ((result: boolean, protocol?: string) => void)
    ) => string | false | undefined | void;
    /** Accepts or refuses a sender (sync: return a boolean; async: call back). A refused
     * sender's handshake fails with `code` (default 401) and `message`. */
    verifyClient?: (
      info: RelayedVerifyInfo,
      /** Given to functions that declare two parameters (the async form). */
      cb: (result: boolean, code?: number, message?: string) => void
    ) => boolean | void;
    /** Largest message an accepted socket takes, bytes. Default `104857600`. */
    maxPayload?: number;
    /** Ping interval of the control channel, ms; `0` disables. Default `30000`. A ping
     * unanswered for 10 s (or one interval, when shorter) replaces the channel. */
    keepAliveInterval?: number;
    /** Time allowed for each accept handshake, ms. Default `20000`. */
    acceptTimeout?: number;
    /** After an accept, keep one spare connection to the same relay endpoint (at most 10 s)
     * for the next accept, which then skips the connect. Default `true`. */
    prewarm?: boolean;
    /** Delays before reconnect attempts, ms; the last repeats; ±20 % jitter, and a `0` is
     * 0-200 ms. Default `[0, 1000, 2000, 5000, 10000, 30000]`. */
    reconnectDelays?: number[];
    /** Certificates to trust on top of the default roots (PEM). */
    ca?: string | Buffer | Array<string | Buffer>;
    /** How long an HTTP request may go unanswered before the listener gives up on it, ms
     * (the service's own limit is 60 s). Default `60000`. */
    requestTimeout?: number;
    /** Accepted sockets: time allowed for the closing handshake, ms. Default `30000`. */
    closeTimeout?: number;
    /** Accepted sockets: answer pings automatically. Default `true`. */
    autoPong?: boolean;
    /** Accepted sockets: ping every this many ms and drop a sender that does not answer by
     * the next (as `RelayedConnectOptions.heartbeatInterval`); `0` for none. Default `0`. */
    heartbeatInterval?: number;
    /** Accepted sockets: bytes of received messages waiting for the event loop above which
     * a socket stops reading. Default `16777216` (16 MiB). */
    inboundHighWaterMark?: number;
    /** An HTTP proxy for every connection of the listener (control channel, accepts, spare
     * connections, rejects, HTTP rendezvous); `false` for none. Default: the environment
     * when the server is made. See {@link RelayedConnectOptions.proxy}. */
    proxy?: RelayProxy;
    /**
     * permessage-deflate, as ws's `WebSocketServer` option: chosen from each sender's offer
     * (the first acceptable one; an offer that cannot be read or accepted refuses the sender
     * with 400), in both accept paths. The same sub-options as
     * {@link RelayedConnectOptions.perMessageDeflate}. Default `false`.
     */
    perMessageDeflate?: boolean | WS.PerMessageDeflateOptions;
  }

  /**
   * The events of a {@link RelayedServer} and their listeners: the one list that `on`,
   * `once`, `off` and the other listener methods take their overloads from.
   */
  interface RelayedServerEvents {
    /** A sender's socket, once open, and what the relay says of the sender. */
    connection: (socket: RelayedWebSocket, req: RelayedRequest) => void;
    /** The first time the control channel is open. */
    listening: () => void;
    /** Each time the control channel opens. */
    online: () => void;
    /** Before each connect attempt, with the error that caused it (`null` at start). */
    connecting: (err: RelayedConnectError | null) => void;
    /** Each time the control channel is lost. */
    offline: (err: RelayedConnectError) => void;
    /** A 'request' listener threw (`ERR_REQUEST_HANDLER`, the error as `cause`), the relay
     * refused a provider's token (`ERR_TOKEN_REFUSED`, retried), the token provider failed
     * (`ERR_TOKEN_PROVIDER`), or a fixed token is about to expire (`ERR_TOKEN_EXPIRING`). */
    warning: (err: RelayedConnectError & { cause?: unknown }) => void;
    /** What reconnecting cannot fix (404; 401/403 with a fixed token); 'close' follows. */
    error: (err: RelayedConnectError) => void;
    /** Before each accept handshake: push `'Name: value'` strings to add headers. */
    headers: (headers: string[], req: RelayedRequest) => void;
    /** After `close()` completes, or after a final error once the accepted sockets it
     * closes (1001) have closed. */
    close: () => void;
    /** An HTTP request, with Node's own classes: an Express app, or any
     * `(req: IncomingMessage, res: ServerResponse) => void` handler, is a listener as it is.
     * `req.id` is the relay's tracking id. */
    request: (req: IncomingMessage & { id?: string }, res: ServerResponse) => void;
  }

  /**
   * The event objects that the `on…` attributes of a {@link RelayedControlChannel} receive, by
   * event, as ws's `WebSocketEventMap` (the `target` being the channel).
   */
  interface RelayedControlChannelEventMap {
    open: { type: 'open'; target: RelayedControlChannel };
    /** `code` 1000 for a close that was asked for (`close()`, the server's `close()`), 1006
     * for a lost channel (`reason` is then the error's message). */
    close: { type: 'close'; target: RelayedControlChannel; code: number; reason: string; wasClean: boolean };
    /** A failed attempt to open the channel (the server retries). */
    error: { type: 'error'; target: RelayedControlChannel; error: RelayedConnectError; message: string };
    /** A message of the service, as it came: JSON text (`{"accept":…}`, `{"request":…}`, …). */
    message: { type: 'message'; target: RelayedControlChannel; data: string };
  }

  /**
   * The events of a {@link RelayedControlChannel} and their listeners: the one list that
   * `on`, `once`, `off` and the other listener methods take their overloads from.
   */
  interface RelayedControlChannelEvents {
    /** The channel opened (at start and after each reconnect). */
    open: () => void;
    /** The channel closed: 1000 when asked for, 1006 when lost (`reason` is the error's message). */
    close: (code: number, reason: string) => void;
    /** An attempt to open the channel failed (the server retries). Without a listener, nothing
     * is thrown. */
    error: (err: RelayedConnectError) => void;
    /** A message of the service, as it came (JSON text). */
    message: (text: string) => void;
  }

  /**
   * `server.controlChannel`: a listener's control channel as code written for hyco-ws sees
   * it. In hyco-ws it was the ws client itself, made anew at each reconnect; here it is one
   * object for the server's life, whose state follows the channel (which runs in Rust).
   * Messages are copies, sent to JavaScript only while a 'message' listener or an
   * `onmessage` other than the default is set: the channel has acted on each one already, or
   * does so right after. A type only: the channel has no class of its own to import.
   */
  interface RelayedControlChannel extends EventEmitter {
    /** ws's ready state: `OPEN` (1) while the channel is open, `CONNECTING` (0) while the
     * server (re)connects, `CLOSING` (2) while it closes, `CLOSED` (3) once it has. */
    readonly readyState: 0 | 1 | 2 | 3;
    /** The listen address: the server's {@link RelayedServer.listenUri}. */
    readonly url: string;
    /** Closes the channel (1000) and has the server open a new one at once ('close', then
     * 'open' again), as closing hyco-ws's channel did; after the server's `close()`, does
     * nothing. */
    close(): void;
    /** Closes the channel for good: the server's `close()`. */
    terminate(): void;

    /** Called with an event object when the channel opens. */
    onopen: ((this: RelayedControlChannel, event: RelayedControlChannelEventMap['open']) => void) | null;
    /** Called with an event object when the channel closes. */
    onclose: ((this: RelayedControlChannel, event: RelayedControlChannelEventMap['close']) => void) | null;
    /** Called with an event object for each failed attempt to open the channel. */
    onerror: ((this: RelayedControlChannel, event: RelayedControlChannelEventMap['error']) => void) | null;
    /**
     * Called with an event object (`data`: the text) for each message of the service. At
     * first a function that does nothing (the channel acts on every message itself), so that
     * code that wraps the previous handler and calls it (`original.call(this, event)`) works;
     * setting anything but a function makes it `null`.
     */
    onmessage: ((this: RelayedControlChannel, event: RelayedControlChannelEventMap['message']) => void) | null;

    on<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    once<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    addListener<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    prependListener<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    prependOnceListener<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    off<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
    removeListener<E extends keyof RelayedControlChannelEvents>(event: E, listener: RelayedControlChannelEvents[E]): this;
  }

  /**
   * {@link RelayedServer.options}: the options as given, read-only, with hyco-ws's defaults
   * for the ones hyco-ws had (`null` for `server`, `token`, `id`, `verifyClient` and
   * `handleProtocols`; `clientTracking` `true`; `maxPayload` 100 MiB).
   */
  interface RelayedServerOptionsWithDefaults
    extends Readonly<
      Omit<RelayedServerOptions, 'server' | 'token' | 'id' | 'verifyClient' | 'handleProtocols' | 'clientTracking' | 'maxPayload'>
    > {
    /** `null` when the address came from `connectionString`. */
    readonly server: string | null;
    /** `null` when the token came from `connectionString` or `credential`. */
    readonly token: TokenProvider | null;
    readonly id: string | null;
    readonly verifyClient: NonNullable<RelayedServerOptions['verifyClient']> | null;
    readonly handleProtocols: NonNullable<RelayedServerOptions['handleProtocols']> | null;
    readonly clientTracking: boolean;
    readonly maxPayload: number;
  }

  /** A Hybrid Connection listener (hyco-ws's `RelayedServer`), its control channel in Rust. */
  class RelayedServer extends EventEmitter {
    /** @param callback Added as a 'listening' listener. */
    constructor(options: RelayedServerOptions, callback?: () => void);
    /** Open accepted sockets. `undefined` at run time with `clientTracking: false`, as ws's
     * (whose types say `Set` too: broadcast code written for ws compiles as it is). */
    clients: Set<RelayedWebSocket>;
    /** The control channel's state. */
    status: 'connecting' | 'online' | 'offline' | 'closed';
    /** The last error seen (a failed connect, a lost channel, a final error). */
    lastError: Error | null;
    /** Closes the control channel (1000) and every accepted socket (1001), then emits
     * 'close' and calls `cb` (a call while it closes, after `close()` or a final error,
     * too); a call once it has closed gets `Error('The server is not running')`. */
    close(cb?: (err?: Error) => void): void;

    // hyco-ws's fields, for code written against it.
    /** The listen address: `options.server` as given (or the one made from
     * `options.connectionString`), with `sb-hc-id` added for `options.id`. */
    readonly listenUri: string;
    /** The `path` option, else the Hybrid Connection's name (from the address). */
    readonly path: string;
    /** The options as given, with hyco-ws's defaults. Read-only: they were read at
     * construction (in hyco-ws, changing them changed the next reconnect). */
    readonly options: RelayedServerOptionsWithDefaults;
    /** `true` once `close()` was called (or the server stopped on an error). Setting it to
     * `true`, as code written for hyco-ws does to stop its reconnect loop, closes the server;
     * setting it to `false` does nothing. */
    closeRequested: boolean;
    /** The control channel, as hyco-ws code uses it: `readyState`, `close()` to reconnect,
     * `onmessage` and 'message' to see the service's messages. */
    readonly controlChannel: RelayedControlChannel;

    on<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    once<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    addListener<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    prependListener<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    prependOnceListener<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    off<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
    removeListener<E extends keyof RelayedServerEvents>(event: E, listener: RelayedServerEvents[E]): this;
  }

  /** @types/hyco-ws's name of {@link RelayedServer}, for code written against it. A type
   * only: hyco-ws exports no value of that name. */
  type HybridConnectionWebSocketServer = RelayedServer;

  /** hyco-ws's factory: a {@link RelayedServer} with `fn` as its 'connection' listener. */
  function createRelayedServer(options: RelayedServerOptions, fn?: RelayedServerEvents['connection']): RelayedServer;

  // ---------------------------------------------------------------------------------------
  // HTTP senders
  // ---------------------------------------------------------------------------------------

  /** `fetch`'s options, plus the relay's. */
  interface RelayedFetchInit extends RequestInit {
    /** A SAS (or Entra ID) token, or a function that gives one; sent as `ServiceBusAuthorization`.
     * A failing function is `ERR_TOKEN_PROVIDER`; one silent for 30 s, `ETIMEDOUT`. */
    token?: TokenProvider | null;
    /** An Entra ID credential, instead of `token`. */
    credential?: RelayTokenCredential;
    /** The credential's scope. Default `'https://relay.azure.net//.default'`. */
    scope?: string;
    /** A tracking id, sent as `sb-hc-id` (unless the address has one). */
    id?: string;
    /** An HTTP proxy, `http://[user:password@]host:port` (or `https://…`, TLS to the proxy);
     * `false` for none. Default: the environment at each call (`HTTPS_PROXY` for `https:`,
     * `HTTP_PROXY` for `http:`, `NO_PROXY`). Ignored when `dispatcher` is given. See the
     * README's "HTTP senders through a proxy". */
    proxy?: RelayProxy;
  }

  /** The relay's own refusal of an HTTP request (no `Via` header, an error status). */
  interface RelayRefusedError extends Error {
    code: 'ERR_RELAY_REFUSED';
    statusCode: number;
    statusDescription: string;
  }

  /**
   * An HTTP request through the relay with Node's `fetch`, the token and tracking id added.
   * Rejects with a {@link RelayRefusedError} when the relay itself refuses (no listener, a
   * bad token, no response in time); a listener's response resolves whatever its status.
   * Through a proxy (the `proxy` option or the environment), the response is still Node's
   * `Response`, and the proxy's failures reject as a {@link RelayedConnectError} would
   * report them (`ERR_PROXY_AUTH`, `ERR_PROXY_REFUSED`, `ERR_PROXY_INVALID`, or the
   * failure to reach the proxy, naming it). Redirects are followed as `fetch` follows them,
   * but the token (and `Authorization`, `Cookie`) is not sent to another origin.
   */
  function relayedFetch(address: string | URL, init?: RelayedFetchInit): Promise<Response>;
}

export = HycoWebSocket;
