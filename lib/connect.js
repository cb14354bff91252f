'use strict';

/**
 * `relayedConnect()`: the sender side of a Hybrid Connection, over the native socket.
 */

const querystring = require('querystring');

const { deflateOption } = require('./deflate');
const { loadNative } = require('./native');
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
const { proxyOption } = require('./proxy');
const { awaitToken, credentialOption, isTokenArgument, tokenCharsError, tokenSource } = require('./tokens');
const { DEFAULT_CLOSE_TIMEOUT, RelayedWebSocket } = require('./websocket');

const native = loadNative();

// setTimeout's longest delay: a longer one fires at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

const DEFAULT_HANDSHAKE_TIMEOUT = 70000;
const DEFAULT_MAX_PAYLOAD = 100 * 1024 * 1024;
const DEFAULT_INBOUND_HIGH_WATER_MARK = 16 * 1024 * 1024;

const subprotocolRegex = /^[!#$%&'*+\-.0-9A-Z^_`|a-z~]+$/;
const tokenRegex = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/**
 * `url` with the values of `sb-hc-token` and `sig`, a URL-encoded SAS token in any
 * parameter and a password replaced, for error messages.
 *
 * @param {String} url The URL
 * @return {String} The URL without secrets
 * @private
 */
function redact(url) {
  return String(url)
    .replace(/([?&](?:sb-hc-token|sig)=)[^&#]*/gi, '$1<redacted>')
    .replace(/(SharedAccessSignature(?:%20|\+))[^&#\s]*/gi, '$1<redacted>')
    // To the last '@' of the string: in an address that does not parse, a password may
    // hold '/', '?' or '#' (too much hidden is harmless in a message).
    .replace(/^(\s*[a-z][a-z0-9+.-]*:\/\/[^/?#:]*:)\S*@/i, '$1<redacted>@');
}

/**
 * Adds `name=value` to `url`'s query as text: `searchParams.append()` would rewrite the
 * whole query in its own encoding (%20 as +, ~ as %7E, a bare name with =), a token's
 * value included.
 *
 * @param {URL} url The address (changed)
 * @param {String} name The parameter's name (URL-safe)
 * @param {String} value Its value, encoded here
 * @private
 */
function appendParam(url, name, value) {
  const query = url.search.length > 1 ? `${url.search}&` : '?';
  url.search = `${query}${name}=${encodeURIComponent(value)}`;
}

/**
 * Parses and checks the address as ws does (same SyntaxErrors), without echoing secrets.
 *
 * @param {(String|URL)} address The address
 * @param {String} [id] A tracking id to add as `sb-hc-id`
 * @return {URL} The parsed address
 * @private
 */
function parseAddress(address, id) {
  let url;
  if (address instanceof URL) {
    url = new URL(address.href);
  } else {
    // As ws: anything `new URL()` refuses, strings or not, is a SyntaxError.
    try {
      url = new URL(address);
    } catch {
      throw new SyntaxError(`Invalid URL: ${redact(address)}`);
    }
  }
  if (url.protocol === 'http:') url.protocol = 'ws:';
  else if (url.protocol === 'https:') url.protocol = 'wss:';
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') {
    throw new SyntaxError(
      'The URL\'s protocol must be one of "ws:", "wss:", "http:", "https:", or "ws+unix:"'
    );
  }
  if (url.hash) throw new SyntaxError('The URL contains a fragment identifier');
  if (id !== undefined && !url.searchParams.has('sb-hc-id')) appendParam(url, 'sb-hc-id', id);
  return url;
}

/**
 * Checks the `protocols` option as ws does.
 *
 * @param {(String|String[])} [protocols] The subprotocols
 * @return {String[]} The list
 * @private
 */
function parseProtocols(protocols) {
  if (protocols === undefined) return [];
  const list = Array.isArray(protocols) ? protocols : [protocols];
  const seen = new Set();
  for (const p of list) {
    if (typeof p !== 'string' || !subprotocolRegex.test(p) || seen.has(p)) {
      throw new SyntaxError('An invalid or duplicated subprotocol was specified');
    }
    seen.add(p);
  }
  return list;
}

/**
 * Checks the `headers` option: HTTP tokens as names, no control characters in values.
 *
 * @param {Object} [headers] The headers
 * @return {Object} A plain object of strings
 * @private
 */
function parseHeaders(headers) {
  const out = {};
  if (headers === undefined) return out;
  if (headers === null || typeof headers !== 'object') invalidOption('headers', 'an object', headers);
  // Names that differ only in case are one header, the last one given, as Node's
  // setHeader() keeps it (both went out, in no set order).
  const named = new Map();
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue;
    if (!tokenRegex.test(name)) {
      throw codedError(TypeError, 'ERR_INVALID_HTTP_TOKEN', `Header name must be a valid HTTP token ["${name}"]`);
    }
    const text = Array.isArray(value) ? value.join(', ') : String(value);
    if (!isHeaderValue(text)) {
      throw codedError(TypeError, 'ERR_INVALID_CHAR', `Invalid character in header content ["${name}"]`);
    }
    const lower = name.toLowerCase();
    if (named.has(lower)) delete out[named.get(lower)];
    named.set(lower, name);
    out[name] = text;
  }
  return out;
}

/**
 * Credentials in the address become `Authorization: Basic`, as ws sends them (user and
 * password percent-decoded), unless the headers have a non-empty Authorization of their
 * own (an empty one is replaced, as Node's request replaces it).
 *
 * @param {URL} url The address
 * @param {Object} headers The headers (from `parseHeaders`), changed
 * @private
 */
function addBasicAuth(url, headers) {
  if (url.username === '' && url.password === '') return;
  const own = Object.keys(headers).find((name) => name.toLowerCase() === 'authorization');
  if (own !== undefined) {
    if (headers[own] !== '') return;
    delete headers[own];
  }
  const credentials = `${querystring.unescape(url.username)}:${querystring.unescape(url.password)}`;
  headers.Authorization = `Basic ${Buffer.from(credentials).toString('base64')}`;
}

/**
 * Connects to a Hybrid Connection as a sender. Compatible with hyco-ws's
 * `relayedConnect(address, token, fn)`.
 *
 * @param {(String|URL)} address The sender address (`createRelaySendUri()`)
 * @param {?(String|Function)} token A SAS (or Entra ID) token for the
 *     `ServiceBusAuthorization` header, a function returning one (or a Promise of one, or
 *     `{ token }`), or `null` for an anonymous sender (or one with `options.credential`)
 * @param {Object} [options]
 * @param {Object} [options.headers] Extra handshake headers
 * @param {(String|String[])} [options.protocols] Subprotocols to offer
 * @param {String} [options.id] Tracking id, sent as `sb-hc-id`
 * @param {Number} [options.handshakeTimeout=70000] Time allowed for the handshake, ms
 * @param {Number} [options.maxPayload=104857600] Largest message accepted, bytes
 * @param {(String|Buffer|Array)} [options.ca] Extra trusted certificates (PEM)
 * @param {Number} [options.closeTimeout=30000] Time allowed for the closing handshake, ms
 * @param {Boolean} [options.autoPong=true] Answer pings automatically
 * @param {Number} [options.heartbeatInterval=0] Ping every this many ms and drop the
 *     connection when a ping is unanswered at the next (0: no heartbeat)
 * @param {Number} [options.inboundHighWaterMark=16777216] Bytes of received messages
 *     waiting for the event loop above which reading stops
 * @param {(Boolean|Object)} [options.perMessageDeflate=true] permessage-deflate, as ws's
 *     client option: offered by default; `false` to offer nothing, or ws's sub-options
 * @param {Object} [options.credential] An Entra ID `TokenCredential`, instead of `token`
 * @param {String} [options.scope='https://relay.azure.net//.default'] Its scope
 * @param {(String|URL|Boolean)} [options.proxy] An HTTP proxy URL, or `false` for none;
 *     absent: `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` as they are now
 * @param {Function} [fn] Called with the socket on 'open'
 * @return {RelayedWebSocket} The socket, in CONNECTING
 * @public
 */
function relayedConnect(address, token, options, fn) {
  return connectAs(RelayedWebSocket, address, token, options, fn);
}

/**
 * `relayedConnect` with the socket made from `Socket` (a `RelayedWebSocket` class): the
 * `hyco-ws-rs/hyco-ws` entry point's sockets deliver messages as hyco-ws's did.
 *
 * @param {Function} Socket The socket class
 * @param {(String|URL)} address As `relayedConnect`'s
 * @param {?(String|Function)} token As `relayedConnect`'s
 * @param {Object} [options] As `relayedConnect`'s
 * @param {Function} [fn] As `relayedConnect`'s
 * @return {RelayedWebSocket} The socket, in CONNECTING
 * @private
 */
function connectAs(Socket, address, token, options, fn) {
  if (typeof options === 'function') {
    fn = options;
    options = undefined;
  }
  if (options === undefined || options === null) options = {};
  else validateOptionsObject(options);
  if (fn !== undefined && typeof fn !== 'function') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "fn" argument must be of type function. Received ${describeType(fn)}`
    );
  }
  if (!isTokenArgument(token)) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "token" argument must be a non-empty string, a function or null. Received ${describeType(token)}`
    );
  }
  if (typeof token === 'string' && !isHeaderValue(token)) throw tokenCharsError(false);
  const source = tokenSource(token, credentialOption(options));
  if (options.id !== undefined && (typeof options.id !== 'string' || options.id === '')) {
    invalidOption('id', 'a non-empty string', options.id);
  }
  const url = parseAddress(address, options.id);
  const protocols = parseProtocols(options.protocols);
  const headers = parseHeaders(options.headers);
  addBasicAuth(url, headers);
  if (source !== null) {
    for (const name of Object.keys(headers)) {
      if (name.toLowerCase() === 'servicebusauthorization') delete headers[name];
    }
  }
  const handshakeTimeout = numberOption(options.handshakeTimeout, 'handshakeTimeout', DEFAULT_HANDSHAKE_TIMEOUT);
  const maxPayload = numberOption(options.maxPayload, 'maxPayload', DEFAULT_MAX_PAYLOAD, true);
  const closeTimeout = numberOption(options.closeTimeout, 'closeTimeout', DEFAULT_CLOSE_TIMEOUT);
  const inboundHighWater = numberOption(
    options.inboundHighWaterMark,
    'inboundHighWaterMark',
    DEFAULT_INBOUND_HIGH_WATER_MARK
  );
  const heartbeatMs = numberOption(options.heartbeatInterval, 'heartbeatInterval', 0, true);
  const autoPong = booleanOption(options.autoPong, 'autoPong', true);
  const ca = caOption(options.ca);
  warnIfInsecure(options);
  const proxy = proxyOption(options.proxy);
  const deflate = deflateOption(options.perMessageDeflate, true);

  const ws = new Socket(url.href, {
    autoPong,
    closeTimeout,
    deflate: deflate && { threshold: deflate.threshold, server: false }
  });
  if (fn) ws.once('open', () => fn(ws));
  const perMessageDeflate = deflate ? deflate.native : undefined;
  const connect = (timeLeft) =>
    ws._attach(
      native.connectSocket({
        url: url.href,
        headers,
        protocols,
        handshakeTimeout: timeLeft,
        maxPayload,
        ca,
        closeTimeout,
        autoPong,
        perMessageDeflate,
        proxy,
        inboundHighWater,
        heartbeatMs
      })
    );
  if (typeof token === 'string' || source === null) {
    // A fixed token (or none): connect at once, as ws does.
    if (token) headers.ServiceBusAuthorization = token;
    connect(handshakeTimeout);
    return ws;
  }
  // A token function or a credential: the handshake starts once it has answered, and the
  // two share the handshake's time. `_pending` holds the wait's AbortController: close() and
  // terminate() abort it, which clears its timer (nothing then keeps the process alive) and
  // reaches a credential's getToken as its abortSignal.
  const started = Date.now();
  const timeout = codedError(Error, 'ETIMEDOUT', 'Opening handshake has timed out');
  const waiting = new AbortController();
  ws._pending = waiting;
  awaitToken(source, Math.min(handshakeTimeout, MAX_TIMER_MS), timeout, waiting.signal).then(
    (value) => {
      if (ws._pending !== waiting) return;
      ws._pending = false;
      if (!isHeaderValue(value)) {
        const err = tokenCharsError(true);
        // On a tick of its own, as the failures below: an 'error' nobody listens for
        // throws there (as ws's would), not into this promise's chain.
        process.nextTick(() => ws._failPending(err.message, err.code));
        return;
      }
      headers.ServiceBusAuthorization = value;
      try {
        connect(Math.max(1, handshakeTimeout - (Date.now() - started)));
      } catch (err) {
        // A failing native call (a panic turned into an exception) ends the socket, rather
        // than leaving it CONNECTING with nothing to end it.
        const message = err && typeof err.message === 'string' ? err.message : 'connect failed';
        process.nextTick(() => ws._failPending(message, 'ERR_INTERNAL'));
      }
    },
    (err) => {
      // Aborted by close() or terminate(), which end the socket themselves.
      if (ws._pending !== waiting) return;
      ws._pending = false;
      process.nextTick(() => ws._failPending(err.message, err.code));
    }
  );
  return ws;
}

module.exports = { DEFAULT_INBOUND_HIGH_WATER_MARK, appendParam, connectAs, redact, relayedConnect };
