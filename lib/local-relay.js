'use strict';

/**
 * The local relay emulator: the Azure Relay service side, in Rust, for tests, benchmarks
 * and offline development. See `startLocalRelay`.
 */

const EventEmitter = require('events');

const { fromNative } = require('./errors');
const { loadNative } = require('./native');
const { isValidStatusCode } = require('./websocket');
const { codedError, invalidOption, outOfRange, validateOptionsObject, validateString } = require('./validation');

const native = loadNative();

const RIGHTS = new Set(['Listen', 'Send', 'Manage']);

/** The statuses `noListenerStatus` may take: 404 (what the service answers in practice),
 * 502 (the protocol article's prose) and 503 (its table). */
const NO_LISTENER_STATUSES = [404, 502, 503];

/** The longest timer Node.js keeps (about 24.8 days), as a bound for timeouts. */
const MAX_TIMER_MS = 2147483647;

/**
 * Checks a `startLocalRelay` time option: a number of milliseconds from 1 to 2^31 - 1 (the
 * relay counts whole milliseconds: 0.5 would become 0).
 *
 * @param {*} value The value
 * @param {String} name The option, as `options.<name>`
 * @return {Number} The value
 * @private
 */
function timeoutMs(value, name) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 1 || value > MAX_TIMER_MS) {
    outOfRange(`options.${name}`, `a number from 1 to ${MAX_TIMER_MS}`, value);
  }
  return value;
}

/**
 * Checks and converts `startLocalRelay` options to the native form.
 *
 * @param {Object} options The options
 * @return {Object} The native options
 * @private
 */
function nativeOptions(options) {
  validateOptionsObject(options);
  const out = {};
  const {
    port = 0,
    host = '127.0.0.1',
    hybridConnections = 'any',
    rules,
    tls,
    acceptTimeoutMs = 30000,
    maxListeners = 25,
    requestTimeoutMs = 60000,
    noListenerStatus = 404,
    entra
  } = options;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    outOfRange('options.port', 'an integer from 0 to 65535', port);
  }
  out.port = port;
  if (typeof host !== 'string' || host === '') invalidOption('host', 'a non-empty string', host);
  out.host = host;
  if (hybridConnections !== 'any') {
    if (!Array.isArray(hybridConnections)) {
      invalidOption('hybridConnections', "an array or 'any'", hybridConnections);
    }
    out.hybridConnections = hybridConnections.map((hc, i) => {
      const entry = typeof hc === 'string' ? { name: hc } : hc;
      if (!entry || typeof entry.name !== 'string' || entry.name === '') {
        invalidOption(`hybridConnections[${i}].name`, 'a non-empty string', entry && entry.name);
      }
      const auth = entry.requiresClientAuthorization;
      if (auth !== undefined && typeof auth !== 'boolean') {
        invalidOption(`hybridConnections[${i}].requiresClientAuthorization`, 'a boolean', auth);
      }
      return { name: entry.name, requiresClientAuthorization: auth };
    });
  }
  if (rules !== undefined) {
    if (!Array.isArray(rules) || rules.length === 0) {
      invalidOption('rules', 'a non-empty array', rules);
    }
    out.rules = rules.map((r, i) => {
      if (!r || typeof r.name !== 'string' || r.name === '') {
        invalidOption(`rules[${i}].name`, 'a non-empty string', r && r.name);
      }
      if (typeof r.key !== 'string' || r.key === '') {
        invalidOption(`rules[${i}].key`, 'a non-empty string', r.key);
      }
      if (!Array.isArray(r.rights) || r.rights.length === 0 || !r.rights.every((x) => RIGHTS.has(x))) {
        invalidOption(`rules[${i}].rights`, "a non-empty array of 'Listen', 'Send', 'Manage'", r.rights);
      }
      return { name: r.name, key: r.key, rights: r.rights };
    });
  }
  if (tls !== undefined) {
    const pem = (v, name) => {
      if (typeof v === 'string') return Buffer.from(v);
      if (Buffer.isBuffer(v)) return v;
      return invalidOption(`tls.${name}`, 'a PEM string or Buffer', v);
    };
    if (!tls || typeof tls !== 'object') invalidOption('tls', 'an object with cert and key', tls);
    out.tlsCert = pem(tls.cert, 'cert');
    out.tlsKey = pem(tls.key, 'key');
  }
  out.acceptTimeoutMs = timeoutMs(acceptTimeoutMs, 'acceptTimeoutMs');
  if (!Number.isInteger(maxListeners) || maxListeners < 1 || maxListeners > 100000) {
    outOfRange('options.maxListeners', 'an integer from 1 to 100000', maxListeners);
  }
  out.maxListeners = maxListeners;
  out.requestTimeoutMs = timeoutMs(requestTimeoutMs, 'requestTimeoutMs');
  if (!NO_LISTENER_STATUSES.includes(noListenerStatus)) {
    outOfRange('options.noListenerStatus', '404, 502 or 503', noListenerStatus);
  }
  out.noListenerStatus = noListenerStatus;
  if (entra !== undefined) {
    if (entra === null || typeof entra !== 'object') invalidOption('entra', 'an object with a secret', entra);
    const { secret, localAuth = true } = entra;
    if (typeof secret === 'string' && secret !== '') out.entraSecret = Buffer.from(secret);
    else if (Buffer.isBuffer(secret) && secret.length > 0) out.entraSecret = secret;
    else invalidOption('entra.secret', 'a non-empty string or Buffer', secret);
    if (typeof localAuth !== 'boolean') invalidOption('entra.localAuth', 'of type boolean', localAuth);
    out.entraLocalAuth = localAuth;
  }
  return out;
}

/** The Azure RBAC roles of Relay, which Entra ID mode's `roles` claim stands in for. */
const ENTRA_ROLES = ['Azure Relay Listener', 'Azure Relay Sender', 'Azure Relay Owner'];

/**
 * Checks `createEntraToken`'s options.
 *
 * @param {Object} options `{ roles, ttl }`
 * @return {{roles: String[], ttl: Number}} The roles and the lifetime in seconds
 * @private
 */
function entraTokenOptions(options) {
  validateOptionsObject(options);
  const { roles = ['Azure Relay Owner'], ttl = 3600 } = options;
  if (!Array.isArray(roles) || !roles.every((r) => ENTRA_ROLES.includes(r))) {
    invalidOption('roles', `an array of ${ENTRA_ROLES.map((r) => `'${r}'`).join(', ')}`, roles);
  }
  if (typeof ttl !== 'number' || !Number.isFinite(ttl) || ttl < 1 || ttl > 10 * 365 * 86400) {
    outOfRange('options.ttl', 'a number of seconds from 1 to 10 years', ttl);
  }
  return { roles, ttl };
}

/** The audiences of Azure Relay's tokens: its resource, with or without the trailing slash. */
const RELAY_AUDIENCES = ['https://relay.azure.net', 'https://relay.azure.net/'];

/**
 * The resource a scope names, which Entra ID makes a token's audience: the scope without
 * its last segment (`https://relay.azure.net//.default` is `.default` of
 * `https://relay.azure.net/`), or the whole scope when it has no path. Of several scopes,
 * the first (Entra ID issues a token for one resource).
 *
 * @param {(String|String[])} scopes What `getToken` was asked for
 * @return {String} The resource
 * @private
 */
function scopeAudience(scopes) {
  const scope = String(Array.isArray(scopes) ? scopes[0] : scopes);
  const authority = scope.indexOf('://');
  const cut = scope.lastIndexOf('/');
  return cut > (authority === -1 ? 0 : authority + 2) ? scope.slice(0, cut) : scope;
}

/**
 * The `exp` claim of a JWT this relay made.
 *
 * @param {String} token The JWT
 * @return {Number} Unix seconds
 * @private
 */
function jwtExpiry(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
}

/**
 * A running local relay. Create it with `startLocalRelay()`.
 *
 * Emits `'event'` with `{ type, hybridConnection, id, status, message }` for each thing that
 * happens (`listen`, `listenerClosed`, `connect`, `accept`, `reject`, `timeout`, `denied`,
 * `renew`, `relayClosed`, `relayStarted`, `acceptFailed`, and for HTTP requests `request`,
 * `response`, `requestTimeout`, `requestFailed`). Messages never contain a key or a token.
 *
 * @extends EventEmitter
 */
class LocalRelay extends EventEmitter {
  /**
   * @param {Object} nativeRelay The native relay
   * @private
   */
  constructor() {
    super();
    this._native = null;
    this._closed = false;
  }

  /**
   * The relay's URL with a trailing slash, e.g. `ws://127.0.0.1:9000/`.
   *
   * @type {String}
   */
  get url() {
    return `${this._native.origin}/`;
  }

  /**
   * The namespace argument for the URI helpers, e.g. `ws://127.0.0.1:9000`.
   *
   * @type {String}
   */
  get namespace() {
    return this._native.origin;
  }

  /**
   * The bound port.
   *
   * @type {Number}
   */
  get port() {
    return this._native.port;
  }

  /**
   * The first rule's key name.
   *
   * @type {String}
   */
  get keyName() {
    return this._native.keyName;
  }

  /**
   * The first rule's key.
   *
   * @type {String}
   */
  get key() {
    return this._native.key;
  }

  /**
   * A connection string for this relay, as the Azure portal would show it.
   *
   * @param {String} [entity] The Hybrid Connection, added as `EntityPath`
   * @return {String} The connection string
   * @public
   */
  connectionString(entity) {
    let s = `Endpoint=${this.url};SharedAccessKeyName=${this.keyName};SharedAccessKey=${this.key}`;
    if (entity !== undefined) {
      validateString(entity, 'entity');
      s += `;EntityPath=${entity}`;
    }
    return s;
  }

  /**
   * A token this relay accepts in Entra ID mode (`startLocalRelay({ entra: { secret } })`):
   * a JWT for `https://relay.azure.net` with `roles`, signed with the relay's secret.
   *
   * @param {Object} [options]
   * @param {String[]} [options.roles=['Azure Relay Owner']] Among `'Azure Relay Listener'`,
   *     `'Azure Relay Sender'` and `'Azure Relay Owner'`
   * @param {Number} [options.ttl=3600] Lifetime in seconds
   * @return {String} The token
   * @throws {Error} With code `ERR_ENTRA_OFF` when the relay is not in Entra ID mode
   * @public
   */
  createEntraToken(options = {}) {
    const { roles, ttl } = entraTokenOptions(options);
    return this._mintEntraToken(roles, ttl, undefined);
  }

  /**
   * A token signed as this relay's.
   *
   * @param {String[]} roles Its roles
   * @param {Number} ttl Its lifetime in seconds
   * @param {(String|undefined)} audience Its audience (default: the relay's)
   * @return {String} The token
   * @throws {Error} With code `ERR_ENTRA_OFF` when the relay is not in Entra ID mode
   * @private
   */
  _mintEntraToken(roles, ttl, audience) {
    const token = this._native.createEntraToken(roles, ttl, audience);
    if (token === null) {
      throw codedError(Error, 'ERR_ENTRA_OFF', 'This relay is not in Entra ID mode: start it with options.entra');
    }
    return token;
  }

  /**
   * A stand-in for an Entra ID credential (`@azure/identity`'s `DefaultAzureCredential`
   * and the like): `getToken(scopes)` resolves to `{ token, expiresOnTimestamp }` with a
   * fresh token of this relay, for the resource the scope names, as Entra ID issues it: a
   * scope of another resource than Azure Relay gets a token the relay refuses (401
   * InvalidAudience). `scopes` records what it was asked for.
   *
   * @param {Object} [options] As `createEntraToken`'s
   * @return {{getToken: Function, scopes: Array}} The credential
   * @throws {Error} With code `ERR_ENTRA_OFF` when the relay is not in Entra ID mode
   * @public
   */
  entraCredential(options = {}) {
    const { roles, ttl } = entraTokenOptions(options);
    // Fails now (ERR_ENTRA_OFF) rather than at the first getToken.
    this.createEntraToken({ roles, ttl });
    const relay = this;
    const scopes = [];
    return {
      scopes,
      /**
       * @param {(String|String[])} scope The scope(s) asked for
       * @return {Promise<{token: String, expiresOnTimestamp: Number}>} A token
       */
      async getToken(scope) {
        scopes.push(scope);
        const audience = scopeAudience(scope);
        const token = relay._mintEntraToken(roles, ttl, RELAY_AUDIENCES.includes(audience) ? undefined : audience);
        // The token's own `exp` (whole seconds), not now + ttl: the two differ by up to a
        // second, and more for a fractional ttl.
        return { token, expiresOnTimestamp: jwtExpiry(token) * 1000 };
      }
    };
  }

  /**
   * Current counters.
   *
   * @return {{hybridConnections: Number, listeners: Number, pendingAccepts: Number,
   *     connections: Number, bufferedBytes: Number, pendingRequests: Number,
   *     httpRequests: Number}} `pendingRequests`: HTTP requests routed to a listener and not
   *     answered yet; `httpRequests`: HTTP requests routed since the relay started
   * @public
   */
  stats() {
    return this._native.stats();
  }

  /**
   * Test hook: closes control channels with a close code, as the service does when an
   * entity is deleted (1001), a token expires (1008) or it fails (1011).
   *
   * @param {Object} [options]
   * @param {String} [options.hybridConnection] Only this one (default: all)
   * @param {Number} [options.code=1011] The close code: one a close frame may carry (ws's
   *     rule: 1000-1003, 1007-1014, 3000-4999)
   * @param {String} [options.reason=''] The close reason, at most 123 bytes
   * @return {Promise<Number>} How many control channels were closed
   * @public
   */
  async dropListeners({ hybridConnection, code = 1011, reason = '' } = {}) {
    // A close frame with another code, or a longer reason, breaks the protocol: the listener
    // would see its own protocol error (1006), not the close this hook is for.
    if (!Number.isInteger(code) || !isValidStatusCode(code)) {
      outOfRange('code', 'a close code a close frame may carry (1000-1003, 1007-1014, 3000-4999)', code);
    }
    const text = String(reason);
    if (Buffer.byteLength(text) > 123) {
      throw codedError(RangeError, 'ERR_OUT_OF_RANGE', 'The message must not be greater than 123 bytes');
    }
    return this._native.dropListeners(hybridConnection, code, text);
  }

  /**
   * Test hook: stops reading control channels (pings go unanswered, no sender is routed to
   * them), as a dead network path would; `frozen: false` thaws them.
   *
   * @param {Object} [options]
   * @param {String} [options.hybridConnection] Only this one (default: all)
   * @param {Boolean} [options.frozen=true] Freeze or thaw
   * @return {Number} How many control channels were affected
   * @public
   */
  freezeListeners({ hybridConnection, frozen = true } = {}) {
    return this._native.freezeListeners(hybridConnection, Boolean(frozen));
  }

  /**
   * Closes every connection and the port, keeping the configuration and the port number.
   *
   * @return {Promise<void>}
   * @public
   */
  async stop() {
    await this._native.stop();
  }

  /**
   * Listens again on the same port after `stop()`.
   *
   * @return {Promise<void>}
   * @public
   */
  async start() {
    if (this._closed) throw codedError(Error, 'ERR_RELAY_CLOSED', 'The relay is closed');
    try {
      await this._native.resume();
    } catch (err) {
      throw fromNative(err);
    }
  }

  /**
   * `stop()` then `start()`.
   *
   * @return {Promise<void>}
   * @public
   */
  async restart() {
    await this.stop();
    await this.start();
  }

  /**
   * Closes every connection and the port for good. Idempotent. Afterwards the relay no
   * longer keeps the process alive.
   *
   * @return {Promise<void>}
   * @public
   */
  async close() {
    if (this._closed) return;
    this._closed = true;
    await this._native.close();
  }
}

/**
 * Starts a local relay emulator.
 *
 * @param {Object} [options]
 * @param {Number} [options.port=0] Port; 0 picks a free one
 * @param {String} [options.host='127.0.0.1'] Address to bind
 * @param {(Array<{name: String, requiresClientAuthorization?: Boolean}>|String)}
 *     [options.hybridConnections='any'] The Hybrid Connections; `'any'` creates them on
 *     first listen
 * @param {Array<{name: String, key: String, rights: String[]}>} [options.rules] SAS rules;
 *     default one `RootManageSharedAccessKey` rule with `Manage` and a random key
 * @param {{cert: (String|Buffer), key: (String|Buffer)}} [options.tls] PEM certificate and
 *     key, to serve `wss://`
 * @param {Number} [options.acceptTimeoutMs=30000] How long a sender waits for an accept
 * @param {Number} [options.maxListeners=25] Control channels per Hybrid Connection
 * @param {Number} [options.requestTimeoutMs=60000] How long a listener has to answer a
 *     relayed HTTP request (the sender then gets 504), and the longest a streamed response
 *     may stay idle
 * @param {Number} [options.noListenerStatus=404] The status of an HTTP request when no
 *     listener is connected: 404, 502 or 503
 * @return {Promise<LocalRelay>} The running relay
 * @public
 */
async function startLocalRelay(options = {}) {
  const opts = nativeOptions(options);
  const relay = new LocalRelay();
  try {
    relay._native = await native.startLocalRelay(opts, (event) => relay.emit('event', event));
  } catch (err) {
    throw fromNative(err);
  }
  return relay;
}

module.exports = { LocalRelay, startLocalRelay };
