'use strict';

/**
 * `RelayedServer`: the listener side of a Hybrid Connection, hyco-ws's API over a Rust
 * control channel (`core/src/listener`) that renews its token before expiry, pings to stay
 * alive, and reconnects with backoff, one channel at a time. Accepted connections are
 * `RelayedWebSocket`s, emitted once open.
 */

const EventEmitter = require('events');
const { STATUS_CODES } = require('http');
const { inspect } = require('util');
const WebSocket = require('ws');

const { DEFAULT_INBOUND_HIGH_WATER_MARK, appendParam, redact } = require('./connect');
const { ControlChannel } = require('./control-channel');
const { deflateOption } = require('./deflate');
const { failResponse, relayedRequest } = require('./http/serve');
const { proxyOption } = require('./proxy');
const { createRelayListenUri, createRelayToken, parseConnectionString } = require('./helpers');
const { eventType, native, register, unregister } = require('./native-events');
const { TOKEN_NOT_A_HEADER, credentialOption, failureMessage, tokenSource } = require('./tokens');
const {
  booleanOption,
  caOption,
  codedError,
  describeType,
  invalidOption,
  isHeaderValue,
  numberOption,
  validateOptionsObject,
  warnIfInsecure
} = require('./validation');
const { RelayedWebSocket } = require('./websocket');

const DEFAULT_RECONNECT_DELAYS = [0, 1000, 2000, 5000, 10000, 30000];
// How long a spare connection (option `prewarm`) is kept unused: below the 15 s a relay
// (the local one; Azure's front ends wait longer) gives a connection to send its request.
const SPARE_MAX_AGE_MS = 10000;
const tokenRegex = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

// The native listener events this class reads, with their fields (declared in
// src/bindings/events.rs; see native-events.js). An error field is null or
// [message, code, statusCode, statusDescription].
const EV_NEED_TOKEN = eventType('needToken', ['request', 'renewal']);
const EV_CONNECTING = eventType('connecting', ['delayMs', 'error']);
const EV_ONLINE = eventType('online', []);
const EV_OFFLINE = eventType('offline', ['error']);
const EV_ACCEPT = eventType('accept', ['id', 'address', 'headers', 'url', 'remoteAddress', 'remotePort']);
const EV_RENEWED = eventType('renewed', []);
const EV_TOKEN_EXPIRING = eventType('tokenExpiring', ['expiresAt']);
const EV_TOKEN_ERROR = eventType('tokenError', ['message']);
const EV_CLOSED = eventType('listenerClosed', ['error']);
const EV_CONTROL_MESSAGE = eventType('controlMessage', ['text']);
const EV_REQUEST = eventType('request', [
  'exchange',
  'method',
  'url',
  'headers',
  'id',
  'remoteAddress',
  'remotePort',
  'body',
  'streamed'
]);

/**
 * The offered subprotocols, usable as ws 8's `Set` (`has`, `size`, iteration) and as
 * hyco-ws's array (`indexOf`, `[0]`, `length`).
 *
 * @extends Array
 * @private
 */
class ProtocolList extends Array {
  /**
   * @param {String} p A protocol
   * @return {Boolean} Whether it was offered
   */
  has(p) {
    return this.includes(p);
  }

  /**
   * @type {Number}
   */
  get size() {
    return this.length;
  }
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/**
 * A rejection's description as the accept address can carry it: a string of at most 512
 * characters (a status line's reason phrase, where the service puts it), lone surrogates
 * replaced, which `encodeURIComponent` would throw on (a message built from what a sender
 * sent must not crash the listener).
 *
 * @param {*} description The description verifyClient or the server gave
 * @return {String} The reason text
 * @private
 */
function reasonText(description) {
  return String(description).slice(0, 512).replace(LONE_SURROGATE, '\uFFFD');
}

/**
 * A server as `util.inspect()` shows it (see `RelayedServer`'s `inspect.custom`): its class
 * name is the server's.
 *
 * @private
 */
class RelayedServerView {}
Object.defineProperty(RelayedServerView, 'name', { value: 'RelayedServer' });

/** Each server's view, reused. */
const views = new WeakMap();

/**
 * hyco-ws's `options` field as `util.inspect()` shows it: a token string, a credential, a
 * connection string's key or signature, and the passwords and signatures in the addresses
 * left out.
 *
 * @param {Object} options The options as given
 * @return {Object} A copy to show
 * @private
 */
function withoutSecrets(options) {
  const shown = { ...options };
  if (typeof shown.token === 'string') shown.token = '<redacted>';
  if (shown.credential != null) shown.credential = '<redacted>';
  if (shown.server != null) shown.server = redact(String(shown.server));
  if (typeof shown.connectionString === 'string') {
    shown.connectionString = shown.connectionString.replace(/(SharedAccess(?:Key|Signature)\s*=)[^;]*/gi, '$1<redacted>');
  }
  if (typeof shown.proxy === 'string' || shown.proxy instanceof URL) shown.proxy = redact(String(shown.proxy));
  return shown;
}

/**
 * An error from a native error description.
 *
 * @param {Array} e `[message, code, statusCode, statusDescription]`
 * @return {Error} The error
 * @private
 */
function toError([message, code, statusCode, statusDescription]) {
  const err = new Error(message);
  if (code) err.code = code;
  if (statusCode !== null) {
    err.statusCode = statusCode;
    err.statusDescription = statusDescription;
  }
  return err;
}

/**
 * Reads and checks the options.
 *
 * @param {Object} options The constructor's options
 * @return {Object} The normalised options
 * @private
 */
function normalize(options) {
  validateOptionsObject(options);
  let url = options.server;
  let token = options.token;
  const credential = credentialOption(options);
  // 401 and 403 cannot fix themselves for a fixed token or one made from a key: final.
  let authFinal = typeof token === 'string';
  if (options.connectionString !== undefined) {
    if (token !== undefined) invalidOption('token', 'left out with a connectionString', token);
    const c = parseConnectionString(options.connectionString);
    const path = c.entityPath || options.path;
    if (typeof path !== 'string' || path === '') {
      invalidOption('path', 'a non-empty string when the connection string has no EntityPath', path);
    }
    url = createRelayListenUri(c.namespace, path);
    if (credential !== null && (c.sharedAccessSignature || c.sharedAccessKeyName)) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_VALUE',
        'Give either a credential or a connection string with a key or a SharedAccessSignature, not both'
      );
    } else if (c.sharedAccessSignature) {
      token = c.sharedAccessSignature;
      authFinal = true;
    } else if (c.sharedAccessKeyName) {
      const listenUri = url;
      token = () => createRelayToken(listenUri, c.sharedAccessKeyName, c.sharedAccessKey);
      authFinal = true;
    } else if (credential === null) {
      throw codedError(
        TypeError,
        'ERR_INVALID_CONNECTION_STRING',
        'The "connectionString" argument has no key: give one with SharedAccessKeyName and SharedAccessKey (or SharedAccessSignature), or an Entra ID credential as options.credential'
      );
    }
  }
  if (url === undefined || url === null) {
    // hyco-ws's words first: code written for it matches on them.
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `'server' must be provided: the "options.server" property must be a listen address string (or give options.connectionString). Received ${describeType(url)}`
    );
  }
  if (typeof url !== 'string' || url === '') {
    invalidOption('server', 'a listen address string (or give options.connectionString)', url);
  }
  const listenUri = url;
  let parsed;
  try {
    parsed = new URL(url);
  } catch {
    throw new SyntaxError(`Invalid URL: ${redact(url)}`);
  }
  if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
    throw new SyntaxError('The URL\'s protocol must be one of "ws:" or "wss:"');
  }
  if (!parsed.pathname.startsWith('/$hc/')) {
    throw new SyntaxError('The "options.server" address must have a /$hc/{path} path');
  }
  // `id: null` is hyco-ws's default, and `server.options` carries it: absent.
  if (options.id !== undefined && options.id !== null) {
    if (typeof options.id !== 'string' || options.id === '') invalidOption('id', 'a non-empty string', options.id);
    // As written: searchParams.append() would re-encode the whole query (see appendParam).
    if (!parsed.searchParams.has('sb-hc-id')) appendParam(parsed, 'sb-hc-id', options.id);
  }
  const staticToken = typeof token === 'string';
  if (staticToken && token === '') invalidOption('token', 'a non-empty string or a function', token);
  if (credential === null && (token === undefined || token === null)) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `A 'token' string or function must be provided: the "options.token" property must be a string or a function returning a token (or a Promise of one), or give options.credential or options.connectionString. Received ${describeType(token)}`
    );
  }
  if (credential === null && !staticToken && typeof token !== 'function') {
    invalidOption(
      'token',
      'a string, a function returning a token (or a Promise of one), or left out with options.credential',
      token
    );
  }
  const provider = tokenSource(token, credential);
  for (const name of ['handleProtocols', 'verifyClient']) {
    if (options[name] !== undefined && options[name] !== null && typeof options[name] !== 'function') {
      invalidOption(name, 'a function', options[name]);
    }
  }
  if (options.clientTracking !== undefined && typeof options.clientTracking !== 'boolean') {
    invalidOption('clientTracking', 'of type boolean', options.clientTracking);
  }
  if (options.prewarm !== undefined && typeof options.prewarm !== 'boolean') {
    invalidOption('prewarm', 'of type boolean', options.prewarm);
  }
  const reconnectDelays = options.reconnectDelays === undefined ? DEFAULT_RECONNECT_DELAYS : options.reconnectDelays;
  if (!Array.isArray(reconnectDelays) || reconnectDelays.length === 0) {
    invalidOption('reconnectDelays', 'a non-empty array of numbers', reconnectDelays);
  }
  reconnectDelays.forEach((d, i) => numberOption(d, `reconnectDelays[${i}]`, 0, true));
  const ca = caOption(options.ca);
  warnIfInsecure(options);
  const deflate = deflateOption(options.perMessageDeflate, false);
  let entity;
  try {
    entity = decodeURIComponent(parsed.pathname.slice('/$hc/'.length)).replace(/\/+$/, '');
  } catch {
    // A malformed %-escape: the same error as any other unusable address.
    throw new SyntaxError(`Invalid URL: ${redact(url)}`);
  }
  return {
    url: parsed.href,
    listenUri:
      options.id !== undefined && options.id !== null && !new URL(listenUri).searchParams.has('sb-hc-id')
        ? `${listenUri}${listenUri.includes('?') ? '&' : '?'}sb-hc-id=${encodeURIComponent(options.id)}`
        : listenUri,
    entity,
    provider,
    staticToken,
    authFinal,
    clientTracking: options.clientTracking !== false,
    handleProtocols: options.handleProtocols || null,
    verifyClient: options.verifyClient || null,
    maxPayload: numberOption(options.maxPayload, 'maxPayload', 104857600, true),
    keepAliveInterval: numberOption(options.keepAliveInterval, 'keepAliveInterval', 30000, true),
    acceptTimeout: numberOption(options.acceptTimeout, 'acceptTimeout', 20000, false),
    requestTimeout: numberOption(options.requestTimeout, 'requestTimeout', 60000, false),
    // Accepted sockets take relayedConnect's socket options.
    closeTimeout: numberOption(options.closeTimeout, 'closeTimeout', 30000),
    autoPong: booleanOption(options.autoPong, 'autoPong', true),
    heartbeatInterval: numberOption(options.heartbeatInterval, 'heartbeatInterval', 0, true),
    inboundHighWaterMark: numberOption(
      options.inboundHighWaterMark,
      'inboundHighWaterMark',
      DEFAULT_INBOUND_HIGH_WATER_MARK
    ),
    prewarm: options.prewarm !== false,
    reconnectDelays,
    ca,
    proxy: proxyOption(options.proxy),
    // permessage-deflate: `null` (refused, ws's server default) or the native options, and
    // what every accepted socket shares of them.
    deflate,
    socketDeflate: deflate && { threshold: deflate.threshold, server: true }
  };
}

/**
 * A Hybrid Connection listener, with hyco-ws's API.
 *
 * @extends EventEmitter
 */
class RelayedServer extends EventEmitter {
  /**
   * Starts listening.
   *
   * @param {Object} options See README
   * @param {Function} [callback] A 'listening' listener (as ws's WebSocketServer)
   */
  constructor(options, callback) {
    super();
    this._config = normalize(options);
    // hyco-ws's public fields: the options as given (with hyco-ws's defaults), the listen
    // address, the path option, and whether close() was called.
    this.options = {
      server: null,
      token: null,
      id: null,
      verifyClient: null,
      handleProtocols: null,
      clientTracking: true,
      maxPayload: this._config.maxPayload,
      ...options
    };
    this.listenUri = this._config.listenUri;
    this.path = options.path === undefined ? this._config.entity : options.path;
    this.clients = this._newClients(this._config.clientTracking);
    this.controlChannel = new ControlChannel(this);
    this.status = 'connecting';
    this.lastError = null;
    this._sockets = new Set();
    // Sockets of HTTP requests in progress (see _onRequest).
    this._exchanges = new Set();
    // The token provider's calls in progress: native request number → the AbortController
    // whose signal a credential's getToken has (see _supplyToken).
    this._tokenRequests = new Map();
    // The token provider failed since the listener was last online or renewed its token.
    this._providerFailing = false;
    this._listened = false;
    this._state = 'running';
    this._autoAccept = false;
    this._http = false;
    this._id = 0;
    if (typeof callback === 'function') this.on('listening', callback);
    this._id = native.listen({
      url: this._config.url,
      staticToken: this._config.staticToken,
      authFinal: this._config.authFinal,
      // A ping every few microseconds helps nobody: 100 ms is the floor.
      keepAliveMs: this._config.keepAliveInterval > 0 ? Math.max(100, this._config.keepAliveInterval) : 0,
      // A pong is awaited 10 s, or one interval when pings are more frequent than that.
      pongTimeoutMs: Math.min(10000, Math.max(250, this._config.keepAliveInterval)),
      reconnectDelaysMs: this._config.reconnectDelays,
      ca: this._config.ca,
      maxPayload: this._config.maxPayload,
      acceptTimeoutMs: this._config.acceptTimeout,
      spareMaxAgeMs: this._config.prewarm ? SPARE_MAX_AGE_MS : 0,
      requestTimeoutMs: this._config.requestTimeout,
      proxy: this._config.proxy,
      perMessageDeflate: this._config.deflate ? this._config.deflate.native : undefined,
      acceptAutoPong: this._config.autoPong,
      acceptCloseTimeoutMs: this._config.closeTimeout,
      acceptInboundHighWater: this._config.inboundHighWaterMark,
      acceptHeartbeatMs: this._config.heartbeatInterval
    });
    register(this._id, this);
    // Without hooks to run, the native side accepts senders by itself (one round trip to
    // JavaScript less per connection); a 'headers' listener turns that off while it exists,
    // and a 'request' listener turns HTTP on (see the listener methods below).
    this._listenersChanged();
  }

  /**
   * What `util.inspect()` and `console.log()` show: the server's fields, with its token, a
   * credential, and passwords and signatures in addresses left out (a server logged while
   * debugging must not leak them). The same view object each time, so that util.inspect
   * sees the cycles through its sockets (`ws._server`) and prints `[Circular]`.
   *
   * @return {Object} The view
   * @private
   */
  [inspect.custom]() {
    let view = views.get(this);
    if (view === undefined) {
      view = new RelayedServerView();
      views.set(this, view);
    }
    for (const key of Object.keys(view)) delete view[key];
    for (const key of Object.keys(this)) {
      if (key === '_config') continue;
      if (key === 'options') view.options = withoutSecrets(this.options);
      else if (key === 'listenUri') view.listenUri = redact(this.listenUri);
      else view[key] = this[key];
    }
    return view;
  }

  /**
   * Notes which of the events that the native side must know about have listeners:
   * 'headers' (accepts then run in JavaScript) and 'request' (HTTP requests then come
   * here; without one they are answered 501).
   *
   * @param {(String|Symbol)} event The event whose listeners changed (all when left out)
   * @private
   */
  _listenersChanged(event) {
    if (event === undefined || event === 'headers') this._setAutoAccept(this._canAutoAccept());
    if (event === undefined || event === 'request') this._setHttp(this.listenerCount('request') > 0);
  }

  /**
   * Turns the native side's HTTP on or off.
   *
   * @param {Boolean} on Whether requests come to JavaScript
   * @private
   */
  _setHttp(on) {
    if (on === this._http || this._id === 0) return;
    this._http = on;
    native.listenerSetHttp(this._id, on);
  }

  /**
   * EventEmitter's, noting whether a 'headers' listener now exists (`on`, `once`,
   * `prependListener` and `prependOnceListener` all come through here or
   * `prependListener`).
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {RelayedServer} This server
   * @public
   */
  addListener(event, listener) {
    super.addListener(event, listener);
    this._listenersChanged(event);
    return this;
  }

  /**
   * EventEmitter's, noting whether a 'headers' listener now exists.
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {RelayedServer} This server
   * @public
   */
  prependListener(event, listener) {
    super.prependListener(event, listener);
    this._listenersChanged(event);
    return this;
  }

  /**
   * EventEmitter's, noting whether a 'headers' listener is left.
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {RelayedServer} This server
   * @public
   */
  removeListener(event, listener) {
    super.removeListener(event, listener);
    this._listenersChanged(event);
    return this;
  }

  /**
   * EventEmitter's, noting whether a 'headers' listener is left.
   *
   * @param {(String|Symbol)} [event] The event (all when left out)
   * @return {RelayedServer} This server
   * @public
   */
  removeAllListeners(event) {
    if (arguments.length === 0) super.removeAllListeners();
    else super.removeAllListeners(event);
    this._listenersChanged(arguments.length === 0 ? undefined : event);
    return this;
  }

  /**
   * Whether the native side may accept senders without asking: nothing in JavaScript has
   * a say in the accept.
   *
   * @return {Boolean} Whether it may
   * @private
   */
  _canAutoAccept() {
    return (
      this._state === 'running' &&
      this._config.verifyClient === null &&
      this._config.handleProtocols === null &&
      this.listenerCount('headers') === 0
    );
  }

  /**
   * Turns the native side's auto-accept on or off.
   *
   * @param {Boolean} on Whether it accepts by itself
   * @private
   */
  _setAutoAccept(on) {
    if (on === this._autoAccept || this._id === 0) return;
    this._autoAccept = on;
    native.listenerSetAutoAccept(this._id, on);
  }

  /**
   * Handles one native event (in order; see lib/native-events.js).
   *
   * @param {Array} list The event list
   * @param {Number} t The event type
   * @param {Number} at Index of its first field
   * @private
   */
  _handle(list, t, at) {
    switch (t) {
      case EV_NEED_TOKEN:
        if (this._state === 'running') this._supplyToken(list[at]);
        break;
      case EV_CONNECTING: {
        const error = list[at + 1];
        this.status = 'connecting';
        if (error !== null) this.lastError = toError(error);
        const refusedByRelay = error !== null && this.lastError.code === 'ERR_UNEXPECTED_RESPONSE';
        if (refusedByRelay && (this.lastError.statusCode === 401 || this.lastError.statusCode === 403)) {
          // A token function or a credential may hand out a good token later: the listener
          // retries, and says so on every attempt.
          const refused = codedError(
            Error,
            'ERR_TOKEN_REFUSED',
            `The relay refused the listener's token (${this.lastError.statusCode} ${this.lastError.statusDescription || ''}`.trim() +
              '); retrying with a fresh one'
          );
          refused.statusCode = this.lastError.statusCode;
          refused.statusDescription = this.lastError.statusDescription;
          this._warn(refused, true);
        }
        this.emit('connecting', error !== null ? this.lastError : null);
        if (error !== null) this._attemptFailed(this.lastError);
        break;
      }
      case EV_ONLINE:
        this.status = 'online';
        this._providerFailing = false;
        this._online();
        break;
      case EV_OFFLINE:
        this.status = 'offline';
        this.lastError = toError(list[at]);
        // A reopen that controlChannel.close() asked for is a clean close. Told by the
        // event itself: a loss already on its way when close() was called is a loss.
        this.controlChannel._closed(this.lastError.code === 'ERR_CONTROL_CHANNEL_REOPENED' ? null : this.lastError);
        this.emit('offline', this.lastError);
        break;
      case EV_CONTROL_MESSAGE:
        this.controlChannel._message(list[at]);
        break;
      case EV_ACCEPT: {
        const ev = {
          id: list[at],
          address: list[at + 1],
          headers: list[at + 2],
          url: list[at + 3],
          remoteAddress: list[at + 4],
          remotePort: list[at + 5],
          // Accepted or rejected: a sender is answered once (see `_reject`).
          settled: false
        };
        if (this._state === 'running') this._accept(ev);
        else this._reject(ev, 503, 'Server shutting down');
        break;
      }
      case EV_RENEWED:
        this._providerFailing = false;
        break;
      case EV_TOKEN_ERROR:
        // The first of a run of failures is reported without a 'warning' listener too: a
        // credential that cannot get a token at all (DefaultAzureCredential without a
        // login) would otherwise leave the server connecting for ever without a word.
        this._warn(codedError(Error, 'ERR_TOKEN_PROVIDER', `The token provider failed: ${list[at]}`), !this._providerFailing);
        this._providerFailing = true;
        break;
      case EV_TOKEN_EXPIRING:
        this._warn(
          codedError(
            Error,
            'ERR_TOKEN_EXPIRING',
            `The listener's token expires at ${new Date(list[at] * 1000).toISOString()} and cannot be renewed: pass a token provider function instead of a string`
          ),
          true
        );
        break;
      case EV_CLOSED: {
        const err = list[at] !== null ? toError(list[at]) : null;
        this.controlChannel._closed(err);
        this._onClosed(err);
        break;
      }
      case EV_REQUEST:
        this._onRequest(list, at);
        break;
      default:
    }
  }

  /**
   * An HTTP request: 'request' (req, res) with Node's own request and response classes. A
   * handler that throws gets its request answered 500 (or cut short, if the response had
   * begun), as Microsoft's .NET listener does, and the error as a 'warning'; other requests
   * carry on.
   *
   * @param {Array} list The event list
   * @param {Number} at Index of the request's fields (see EV_REQUEST)
   * @private
   */
  _onRequest(list, at) {
    const { req, res } = relayedRequest(
      {
        exchange: list[at],
        method: list[at + 1],
        url: list[at + 2],
        headers: list[at + 3],
        id: list[at + 4],
        remoteAddress: list[at + 5],
        remotePort: list[at + 6],
        body: list[at + 7],
        streamed: list[at + 8]
      },
      (socket) => this._exchangeOver(socket)
    );
    this._exchanges.add(req.socket);
    if (this._state !== 'running') {
      res.statusCode = 503;
      res.end();
      return;
    }
    try {
      this.emit('request', req, res);
    } catch (err) {
      failResponse(res);
      const warning = codedError(Error, 'ERR_REQUEST_HANDLER', `The 'request' listener threw: ${err && err.message}`);
      warning.cause = err;
      this._warn(warning, true);
    }
  }

  /**
   * An HTTP request's exchange is over.
   *
   * @param {RelayHttpSocket} socket Its socket
   * @private
   */
  _exchangeOver(socket) {
    this._exchanges.delete(socket);
    if (this._state === 'closing') this._maybeFinish();
  }

  /**
   * Emits 'warning'; without a listener, important ones become process warnings.
   *
   * @param {Error} err The warning
   * @param {Boolean} important Report it even without a listener
   * @private
   */
  _warn(err, important) {
    if (this.listenerCount('warning') > 0) this.emit('warning', err);
    else if (important) process.emitWarning(err.message, { code: err.code });
  }

  /**
   * Asks the token provider and hands the result (or its failure) to the native side.
   *
   * @param {Number} request The native request number
   * @private
   */
  _supplyToken(request) {
    // The native side asks again only once it has an answer or gave up waiting for one
    // (30 s): a call still in progress for an earlier request is abandoned, and aborted,
    // so that a credential that hangs (a managed-identity endpoint that does not answer)
    // does not pile up calls.
    this._abortTokenRequests(request);
    const asked = new AbortController();
    this._tokenRequests.set(request, asked);
    // The server may have closed, or the native side given up, while the provider worked:
    // the answer is then dropped (aborted or not: a provider may not look at the signal).
    const dropped = () => this._id === 0 || asked.signal.aborted;
    this._config
      .provider({ abortSignal: asked.signal })
      .finally(() => this._tokenRequests.delete(request))
      .then(({ token, expiresAt, refreshAt }) => {
        if (dropped()) return;
        // As a sender checks it: the relay would refuse it, and the listener retry as if
        // the token had been refused.
        if (!isHeaderValue(token)) {
          native.listenerProvideToken(this._id, request, undefined, TOKEN_NOT_A_HEADER);
          return;
        }
        native.listenerProvideToken(this._id, request, token, undefined, expiresAt, refreshAt);
      })
      .catch((err) => {
        if (!dropped()) native.listenerProvideToken(this._id, request, undefined, failureMessage(err));
      });
  }

  /**
   * Aborts the token provider's calls in progress for requests before `request` (all of
   * them without it: the server closes).
   *
   * @param {Number} [request] The native request number
   * @private
   */
  _abortTokenRequests(request) {
    for (const [n, asked] of this._tokenRequests) {
      if (request !== undefined && n >= request) continue;
      this._tokenRequests.delete(n);
      asked.abort();
    }
  }

  /**
   * Runs the accept decision for a sender: permessage-deflate's negotiation, verifyClient,
   * handleProtocols, 'headers', then the accept (or reject) handshake. Each sender runs on
   * its own; a slow verifyClient holds up no other.
   *
   * @param {Object} ev The native accept event
   * @private
   */
  _accept(ev) {
    const req = this._request(ev.headers, ev.id, ev.url, ev.remoteAddress, ev.remotePort);
    const headers = req.headers;
    const offer = headers['sec-websocket-extensions'];
    if (this._config.deflate !== null && offer !== undefined) {
      // As ws's server: an offer that cannot be read or accepted refuses the sender.
      try {
        ev.deflateAnswer = native.deflateAccept(this._config.deflate.native, offer);
      } catch {
        this._reject(ev, 400, 'Invalid or unacceptable Sec-WebSocket-Extensions header');
        return;
      }
    }
    const verify = this._config.verifyClient;
    if (!verify) {
      this._guard(ev, () => this._choose(ev, req));
      return;
    }
    const info = { origin: headers.origin, req, secure: ev.address.startsWith('wss:') };
    this._guard(ev, () => {
      if (verify.length >= 2) {
        let settled = false;
        verify(info, (result, code, message) => {
          if (settled) return;
          settled = true;
          if (result) this._guard(ev, () => this._choose(ev, req));
          else this._reject(ev, code || 401, message);
        });
        return;
      }
      if (verify(info)) this._choose(ev, req);
      else this._reject(ev, 401);
    });
  }

  /**
   * The `req` of 'connection' and of the hooks. The native side has lowercased and joined
   * the headers and worked out the URL.
   *
   * @param {String[]} flatHeaders Header names and values, alternating
   * @param {String} id The rendezvous (tracking) id
   * @param {String} url `req.url`
   * @param {?String} remoteAddress The sender's address
   * @param {?Number} remotePort The sender's port
   * @return {Object} `{ headers, url, method, socket, connection, id }`
   * @private
   */
  _request(flatHeaders, id, url, remoteAddress, remotePort) {
    const headers = {};
    for (let i = 0; i < flatHeaders.length; i += 2) headers[flatHeaders[i]] = flatHeaders[i + 1];
    // Unknown (the service did not say) is `undefined`, as on Node's own sockets.
    const socket = {
      remoteAddress: remoteAddress === null ? undefined : remoteAddress,
      remotePort: remotePort === null ? undefined : remotePort
    };
    return { headers, url, method: 'GET', socket, connection: socket, id };
  }

  /**
   * The native side accepts a sender by itself and its handshake has started: the socket
   * object and `req` are made now, while the handshake is on the network, so that
   * 'connection' costs little once it is open (`_accepted`).
   *
   * @param {Number} id The native socket's id
   * @param {Array} list The native event list
   * @param {Number} at Where the request's fields are (see `_request`)
   * @private
   */
  _accepting(id, list, at) {
    const ws = this._newSocket();
    // Not tracked until open: if the handshake fails, the socket just closes unseen (its
    // 'error' is not thrown, as it belongs to a server: see `_emitError`).
    ws._server = this;
    ws._acceptRequest = this._request(list[at], list[at + 1], list[at + 2], list[at + 3], list[at + 4]);
    ws._attach(id);
  }

  /**
   * A socket the native side accepted by itself is open: 'connection'.
   *
   * @param {RelayedWebSocket} ws The socket (see `_accepting`)
   * @param {String} protocol The subprotocol
   * @param {String} extensions The agreed extensions
   * @private
   */
  _accepted(ws, protocol, extensions) {
    const req = ws._acceptRequest;
    ws._acceptRequest = null;
    this._track(ws);
    ws._adoptOpen(protocol, extensions);
    this._connected(ws, req);
  }

  /**
   * Takes an accepted socket into the server's care until it closes (see `_forget`).
   *
   * @param {RelayedWebSocket} ws The socket
   * @return {RelayedWebSocket} `ws`
   * @private
   */
  _track(ws) {
    // Its 'error' without a listener is thrown only as ws's server sockets throw it (see
    // RelayedWebSocket's `_emitError`).
    ws._server = this;
    this._sockets.add(ws);
    return ws;
  }

  /**
   * A socket of this server has closed (and left `clients`, see `_forgetClient`): the
   * server forgets it, and may be done closing, so that the server's 'close' comes after
   * the socket's. The socket calls this itself, just after its 'close' event, rather than
   * through a 'close' listener: no listener per socket (a listener may hold thousands), and
   * no way for the application's `removeAllListeners()` to keep the server waiting for it.
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _forget(ws) {
    this._sockets.delete(ws);
    if (this._state === 'closing') this._maybeFinish();
  }

  /**
   * Takes a closed socket out of `clients` (before its 'close' listeners run, as ws's
   * server does; `_forget` follows once they have).
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _forgetClient(ws) {
    if (this._config.clientTracking) this._removeClient(ws);
  }

  /**
   * An accepted socket is open: 'connection', or a close if the server is closing.
   *
   * @param {RelayedWebSocket} ws The socket
   * @param {Object} req The request
   * @private
   */
  _connected(ws, req) {
    if (this._state !== 'running') {
      this._shutDown(ws);
      return;
    }
    if (this._config.clientTracking) this._addClient(ws);
    ws._announced = true;
    this.emit('connection', ws, req);
  }

  /**
   * Runs user code for a sender; if it throws, the sender is refused (500) and the error is
   * rethrown outside, as any listener's error.
   *
   * @param {Object} ev The native accept event
   * @param {Function} fn The code
   * @private
   */
  _guard(ev, fn) {
    try {
      fn();
    } catch (err) {
      this._reject(ev, 500, 'Internal Server Error');
      throw err;
    }
  }

  /**
   * Chooses the subprotocol, then continues the accept.
   *
   * @param {Object} ev The native accept event
   * @param {Object} req The request
   * @private
   */
  _choose(ev, req) {
    if (this._state !== 'running') return this._reject(ev, 503, 'Server shutting down');
    const offered = new ProtocolList();
    const header = req.headers['sec-websocket-protocol'];
    if (header) {
      try {
        for (const p of WebSocket.subprotocol.parse(header)) offered.push(p);
      } catch {
        return this._reject(ev, 400, 'Invalid Sec-WebSocket-Protocol header');
      }
    }
    const handle = this._config.handleProtocols;
    let protocol = offered.length ? offered[0] : undefined;
    if (handle && offered.length) {
      // ws 8's form returns the protocol (or false); hyco-ws's form calls back.
      let called = false;
      let callback;
      const done = (result, chosen) => {
        if (called) return;
        called = true;
        callback = { result, chosen };
      };
      Object.assign(done, req);
      const returned = handle(offered, done);
      if (callback) {
        if (!callback.result) return this._reject(ev, 401);
        protocol = callback.chosen;
      } else if (returned === false) {
        return this._reject(ev, 401);
      } else {
        protocol = returned || undefined;
      }
      if (protocol !== undefined && (typeof protocol !== 'string' || !offered.includes(protocol))) {
        // Only an offered protocol can be echoed; anything else would fail the sender.
        return this._reject(ev, 500, 'handleProtocols chose a protocol the sender did not offer');
      }
    }
    return this._open(ev, req, protocol);
  }

  /**
   * Emits 'headers', then opens the accept socket; emits 'connection' once it is open.
   *
   * @param {Object} ev The native accept event
   * @param {Object} req The request
   * @param {String} [protocol] The chosen subprotocol
   * @private
   */
  _open(ev, req, protocol) {
    const lines = [];
    this.emit('headers', lines, req);
    const extra = {};
    for (const line of lines) {
      const i = typeof line === 'string' ? line.indexOf(':') : -1;
      if (i <= 0) continue;
      const name = line.slice(0, i).trim();
      const value = line.slice(i + 1).trim();
      // A header that is not a token, or a value with control characters, is dropped: it
      // would corrupt the handshake.
      if (tokenRegex.test(name) && !/[\r\n\0]/.test(value)) extra[name] = value;
    }
    // The accept socket answers the sender's offer and runs as the deflate server.
    const answer = ev.deflateAnswer || undefined;
    let id;
    try {
      id = native.connectSocket({
        url: ev.address,
        headers: extra,
        protocols: protocol ? [protocol] : [],
        handshakeTimeout: this._config.acceptTimeout,
        maxPayload: this._config.maxPayload,
        ca: this._config.ca,
        closeTimeout: this._config.closeTimeout,
        autoPong: this._config.autoPong,
        proxy: this._config.proxy,
        perMessageDeflate: answer ? this._config.deflate.native : undefined,
        deflateAnswer: answer,
        inboundHighWater: this._config.inboundHighWaterMark,
        heartbeatMs: this._config.heartbeatInterval
      });
    } catch (err) {
      this._reject(ev, 500, 'Internal Server Error');
      throw err;
    }
    ev.settled = true;
    const ws = this._track(this._newSocket());
    ws.once('open', () => this._connected(ws, req));
    ws._attach(id);
  }

  /**
   * Refuses a sender: its handshake fails with `status` and `description`.
   *
   * @param {Object} ev The native accept event
   * @param {Number} status HTTP status
   * @param {String} [description] Reason text
   * @private
   */
  _reject(ev, status, description) {
    // Once per sender: an accept address takes one answer, and a second (a throw caught by
    // the `_guard` around `_open`'s own reject, or by two nested ones) only costs a
    // connection that fails.
    if (ev.settled) return;
    ev.settled = true;
    const code = Number.isInteger(status) && status >= 300 && status <= 599 ? status : 401;
    const text = reasonText(description || STATUS_CODES[code] || 'Rejected');
    const address =
      `${ev.address}&sb-hc-statusCode=${code}` + `&sb-hc-statusDescription=${encodeURIComponent(text)}`;
    native.rejectRendezvous(address, this._config.acceptTimeout, this._config.ca, this._config.proxy).catch(() => {
      // The sender gets its answer from the relay's timeout instead.
    });
  }

  /**
   * The native listener stopped: after close(), or on a terminal error.
   *
   * @param {?Error} err The terminal error
   * @private
   */
  _onClosed(err) {
    this.status = 'closed';
    this._abortTokenRequests();
    unregister(this._id);
    this._id = 0;
    if (err) {
      this.lastError = err;
      if (this._state === 'running') {
        // The listener is gone for good: so are its connections, as with close(), and
        // 'close' comes once they have closed, as after close().
        this._state = 'closing';
        for (const ws of this._sockets) this._shutDown(ws);
        try {
          this.emit('error', err);
        } finally {
          // Without an 'error' listener the error is thrown (Node's convention); 'close'
          // still follows. Not before 'error', even if every socket closed at once.
          process.nextTick(() => {
            this._listenerClosed = true;
            this._maybeFinish();
          });
        }
        return;
      }
    }
    this._listenerClosed = true;
    this._maybeFinish();
  }

  /**
   * Emits 'close' once the control channel and every accepted socket are closed.
   *
   * @private
   */
  _maybeFinish() {
    if (this._state !== 'closing' || !this._listenerClosed || this._sockets.size > 0 || this._exchanges.size > 0) {
      return;
    }
    this._state = 'closed';
    this.emit('close');
  }

  /**
   * Stops listening: closes the control channel (1000) and every accepted connection
   * (1001), then emits 'close'. Unlike ws 8's server, accepted connections are closed too,
   * as hyco-ws did.
   *
   * @param {Function} [cb] Called once everything is closed
   * @public
   */
  close(cb) {
    if (this._state === 'closed') {
      if (typeof cb === 'function') process.nextTick(cb, new Error('The server is not running'));
      return;
    }
    if (typeof cb === 'function') this.once('close', () => cb());
    if (this._state === 'closing') return;
    this._state = 'closing';
    // Accepts the service sent before it sees the close come here from now on, refused 503
    // at once, rather than accepted natively and then closed.
    this._setAutoAccept(false);
    this._abortTokenRequests();
    if (this._id !== 0) native.listenerClose(this._id);
    else this._listenerClosed = true;
    for (const ws of this._sockets) this._shutDown(ws);
    this._maybeFinish();
  }

  /**
   * hyco-ws's flag: `true` once `close()` was called (or the server stopped on an error).
   * Setting it to `true`, as code written for hyco-ws does to stop its reconnect loop,
   * closes the server.
   *
   * @type {Boolean}
   */
  get closeRequested() {
    return this._state !== 'running';
  }

  set closeRequested(value) {
    if (value === true && this._state === 'running') this.close();
  }

  /**
   * The control channel is open: 'listening' the first time, 'online' every time.
   *
   * @private
   */
  _online() {
    if (!this._listened) {
      this._listened = true;
      this.emit('listening');
    }
    this.emit('online');
    this.controlChannel._opened();
  }

  /**
   * An attempt to open the control channel failed (it is retried): reported by
   * 'connecting' already.
   *
   * @param {Error} err Why
   * @private
   */
  _attemptFailed(err) {
    this.controlChannel._failed(err);
  }

  /**
   * The collection `clients` starts as: a `Set`, as ws 8's, or `undefined` without client
   * tracking.
   *
   * @param {Boolean} tracking The `clientTracking` option
   * @return {(Set|undefined)} The collection
   * @private
   */
  _newClients(tracking) {
    return tracking ? new Set() : undefined;
  }

  /**
   * Adds an open socket to `clients`.
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _addClient(ws) {
    this.clients.add(ws);
  }

  /**
   * Removes a closed socket from `clients`.
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _removeClient(ws) {
    this.clients.delete(ws);
  }

  /**
   * A socket for an accepted sender, of the class `_Socket`.
   *
   * @return {RelayedWebSocket} The socket, not attached yet
   * @private
   */
  _newSocket() {
    return new this._Socket(undefined, {
      autoPong: this._config.autoPong,
      closeTimeout: this._config.closeTimeout,
      deflate: this._config.socketDeflate
    });
  }

  /**
   * Closes an accepted socket because the server goes away: 1001 ("going away", RFC 6455
   * 7.4.1) to an open one, and to one still in its handshake once it opens.
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _shutDown(ws) {
    if (ws.readyState === WebSocket.OPEN) ws.close(1001, 'Server shutting down');
    // An accept still in its handshake is closed the same way once open (`_connected`):
    // terminated now, its sender would wait for the service's accept timeout.
    else if (ws.readyState !== WebSocket.CONNECTING) ws.terminate();
  }

  /**
   * Turns the native control tap on or off (see ControlChannel).
   *
   * @param {Boolean} on Whether control messages come to JavaScript
   * @private
   */
  _setControlTap(on) {
    if (this._id !== 0) native.listenerSetControlTap(this._id, on);
  }

  /**
   * Closes the control channel and opens a new one at once (`controlChannel.close()`).
   *
   * @return {Boolean} Whether a listener was running to do it
   * @private
   */
  _reopenControlChannel() {
    if (this._state !== 'running' || this._id === 0 || this.status !== 'online') return false;
    return native.listenerReconnect(this._id);
  }
}

// EventEmitter's `on` and `off` are its own `addListener` and `removeListener`, not calls to
// them: point them at the overrides above.
RelayedServer.prototype.on = RelayedServer.prototype.addListener;
/** The class of accepted sockets. */
RelayedServer.prototype._Socket = RelayedWebSocket;
RelayedServer.prototype.off = RelayedServer.prototype.removeListener;

/**
 * hyco-ws's factory: a `RelayedServer` with `fn` as its 'connection' listener.
 *
 * @param {Object} options See RelayedServer
 * @param {Function} [fn] Called with (socket, req) for each connection
 * @return {RelayedServer} The server
 * @public
 */
function createRelayedServer(options, fn) {
  const server = new RelayedServer(options);
  if (typeof fn === 'function') server.on('connection', fn);
  return server;
}

module.exports = { RelayedServer, createRelayedServer };
