'use strict';

/**
 * The hyco-ws helpers (`createRelayToken`, `createRelayListenUri`, ...) plus
 * `parseRelayToken` and `parseConnectionString`. Arguments are checked here; the work is done
 * in Rust (`src/bindings/helpers.rs` over `core/src`).
 */

const { loadNative } = require('./native');
const {
  codedError,
  optionalString,
  validateExpiration,
  validateString
} = require('./validation');

const native = loadNative();

/**
 * The base address of a Hybrid Connection: `wss://{namespace}:443/$hc/{path}`, or, for a
 * namespace with a scheme (`ws://127.0.0.1:9000`), that scheme, host and port.
 *
 * @param {String} namespace The namespace (`contoso.servicebus.windows.net`) or its URL
 * @param {String} path The Hybrid Connection's name, optionally with a suffix and query
 * @return {String} The address
 * @public
 */
function createRelayBaseUri(namespace, path) {
  return baseUri([namespace, path]);
}

/**
 * How the helpers read their arguments: strictly, or as hyco-ws did where what it did is
 * well defined (an empty path, an empty key, a negative lifetime; see core/src/rules.rs).
 *
 * @typedef {Object} Rules
 * @property {Boolean} hycoWs hyco-ws's rules
 * @private
 */
const STRICT = Object.freeze({ hycoWs: false });
const HYCO_WS = Object.freeze({ hycoWs: true });

// A lifetime as a string of digits (hyco-ws's rules take it, as moment did).
const NUMERIC = /^\s*-?\d+(?:\.\d+)?\s*$/;

/**
 * Checks a path (or a key) that hyco-ws's rules allow to be empty.
 *
 * @param {*} value The argument
 * @param {String} name Its name
 * @param {Rules} rules The rules
 * @private
 */
function validateMaybeEmpty(value, name, rules) {
  if (rules.hycoWs && value === '') return;
  validateString(value, name);
}

/**
 * Checks the arguments of `createRelayBaseUri` and builds the address.
 *
 * @param {Array} args `(namespace, path)` as the caller received them
 * @param {Rules} [rules] The rules
 * @return {String} The address
 * @private
 */
function baseUri([namespace, path], rules = STRICT) {
  validateString(namespace, 'namespace');
  validateMaybeEmpty(path, 'path', rules);
  return native.createRelayBaseUri(namespace, path, rules.hycoWs);
}

/**
 * Checks the arguments of the listen/send URI helpers and builds the address.
 *
 * @param {Boolean} listen `true` for `sb-hc-action=listen`, `false` for `connect`
 * @param {Array} args `(namespace, path, [token], [id])` as the caller received them
 * @return {String} The address
 * @private
 */
function actionUri(listen, [namespace, path, token, id], rules = STRICT) {
  if (rules.hycoWs) {
    // hyco-ws wrote numbers (a counter as the id) as they print.
    if (typeof token === 'number' && Number.isFinite(token)) token = String(token);
    if (typeof id === 'number' && Number.isFinite(id)) id = String(id);
  }
  validateString(namespace, 'namespace');
  validateMaybeEmpty(path, 'path', rules);
  return native.createRelayActionUri(
    namespace,
    path,
    listen,
    optionalString(token, 'token'),
    optionalString(id, 'id'),
    rules.hycoWs
  );
}

/**
 * The address a listener opens its control channel on (`sb-hc-action=listen`).
 *
 * @param {String} namespace The namespace or its URL
 * @param {String} path The Hybrid Connection's name
 * @param {String} [token] A SAS token to send as `sb-hc-token`
 * @param {String} [id] A tracking id to send as `sb-hc-id`
 * @return {String} The address
 * @public
 */
function createRelayListenUri(namespace, path, token, id) {
  return actionUri(true, [namespace, path, token, id]);
}

/**
 * The address a sender connects to (`sb-hc-action=connect`).
 *
 * @param {String} namespace The namespace or its URL
 * @param {String} path The Hybrid Connection's name, optionally with a suffix and query
 * @param {String} [token] A SAS token to send as `sb-hc-token`
 * @param {String} [id] A tracking id to send as `sb-hc-id`
 * @return {String} The address
 * @public
 */
function createRelaySendUri(namespace, path, token, id) {
  return actionUri(false, [namespace, path, token, id]);
}

/**
 * The address HTTP requests to a Hybrid Connection are sent to: hyco-https's
 * `https://{namespace}/{path}` (no `$hc/`), then `sb-hc-token` and `sb-hc-id` when given. A
 * namespace with a scheme keeps its host and port (`ws://127.0.0.1:9000` gives
 * `http://127.0.0.1:9000/{path}`).
 *
 * @param {String} namespace The namespace or its URL
 * @param {String} path The Hybrid Connection's name, optionally with a suffix and query
 * @param {String} [token] A SAS token to send as `sb-hc-token`
 * @param {String} [id] A tracking id to send as `sb-hc-id`
 * @return {String} The address
 * @public
 */
function createRelayHttpsUri(namespace, path, token, id) {
  validateString(namespace, 'namespace');
  validateString(path, 'path');
  return native.createRelayHttpsUri(namespace, path, optionalString(token, 'token'), optionalString(id, 'id'));
}

/**
 * A SAS token for `uri`, byte-identical to hyco-ws's.
 *
 * @param {String} uri The address the token is for
 * @param {String} keyName The SAS rule's name
 * @param {String} key The SAS rule's key
 * @param {Number} [expirationSeconds=3600] Lifetime in seconds; `0` also means 3600
 * @return {String} `SharedAccessSignature sr=...&sig=...&se=...&skn=...`
 * @public
 */
function createRelayToken(uri, keyName, key, expirationSeconds) {
  return token(false, [uri, keyName, key, expirationSeconds]);
}

/**
 * Checks the arguments of the token helpers and makes the token (or the address with it).
 *
 * @param {Boolean} append `appendRelayToken` (true) or `createRelayToken`
 * @param {Array} args `(uri, keyName, key, [expirationSeconds])` as the caller received them
 * @param {Rules} [rules] The rules
 * @return {String} The token, or the address with it
 * @private
 */
function token(append, [uri, keyName, key, expirationSeconds], rules = STRICT) {
  if (rules.hycoWs) {
    // hyco-ws took a lifetime read from the environment ('120') and a key read from a file.
    if (typeof expirationSeconds === 'string' && NUMERIC.test(expirationSeconds)) {
      // Not one worth 0: hyco-ws made that token expire at once ('0' is truthy), where a
      // number 0 means the default here; refused rather than made differently.
      if (Number(expirationSeconds) === 0) {
        throw codedError(
          TypeError,
          'ERR_INVALID_ARG_VALUE',
          `The "expirationSeconds" argument, a string worth 0, is refused (hyco-ws made such a token expire at once); pass 0 for the default. Received '${expirationSeconds}'`
        );
      }
      expirationSeconds = Number(expirationSeconds);
    }
    if (Buffer.isBuffer(key)) {
      if (!Buffer.from(key.toString()).equals(key)) {
        throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', 'The "key" argument, a Buffer, must hold UTF-8 text');
      }
      key = key.toString();
    }
  }
  validateString(uri, 'uri');
  validateString(keyName, 'keyName');
  validateMaybeEmpty(key, 'key', rules);
  const lifetime = validateExpiration(expirationSeconds, rules.hycoWs);
  return append
    ? native.appendRelayToken(uri, keyName, key, lifetime, undefined, rules.hycoWs)
    : native.createRelayToken(uri, keyName, key, lifetime, undefined, rules.hycoWs);
}

/**
 * `uri` with a new SAS token added to its query as `sb-hc-token`.
 *
 * @param {String} uri The address
 * @param {String} keyName The SAS rule's name
 * @param {String} key The SAS rule's key
 * @param {Number} [expirationSeconds=3600] Lifetime in seconds; `0` also means 3600
 * @return {String} The address with the token
 * @public
 */
function appendRelayToken(uri, keyName, key, expirationSeconds) {
  return token(true, [uri, keyName, key, expirationSeconds]);
}

/**
 * Reads a SAS token's fields. The signature is not returned.
 *
 * @param {String} token `SharedAccessSignature sr=...&sig=...&se=...&skn=...`
 * @return {{resource: String, expiresAt: Date, keyName: String}} The fields
 * @throws {TypeError} With code `ERR_INVALID_TOKEN` when the token is malformed
 * @public
 */
function parseRelayToken(token) {
  validateString(token, 'token');
  const parsed = native.parseRelayToken(token);
  return {
    resource: parsed.resource,
    expiresAt: new Date(parsed.expiresAt * 1000),
    keyName: parsed.keyName
  };
}

/**
 * Reads an Azure portal connection string
 * (`Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=...;EntityPath=...`).
 *
 * @param {String} connectionString The connection string
 * @return {Object} `{ endpoint, namespace, entityPath, sharedAccessKeyName,
 *     sharedAccessKey, sharedAccessSignature, operationTimeout }`; absent fields are
 *     `undefined`; `operationTimeout` is in milliseconds
 * @throws {TypeError} With code `ERR_INVALID_CONNECTION_STRING` when malformed
 * @public
 */
function parseConnectionString(connectionString) {
  validateString(connectionString, 'connectionString');
  const c = native.parseConnectionString(connectionString);
  return {
    endpoint: c.endpoint,
    namespace: c.namespace,
    entityPath: c.entityPath ?? undefined,
    sharedAccessKeyName: c.sharedAccessKeyName ?? undefined,
    sharedAccessKey: c.sharedAccessKey ?? undefined,
    sharedAccessSignature: c.sharedAccessSignature ?? undefined,
    operationTimeout: c.operationTimeout ?? undefined
  };
}

module.exports = {
  appendRelayToken,
  createRelayBaseUri,
  createRelayHttpsUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken
};

/**
 * The same helpers with hyco-ws's rules, for the `hyco-ws-rs/hyco-ws` entry point. Not
 * enumerable: the entry points spread this module into their exports, and this is not part
 * of them.
 *
 * @private
 */
Object.defineProperty(module.exports, 'withHycoWsRules', {
  value: Object.freeze({
    ...module.exports,
    createRelayBaseUri: (...args) => baseUri(args, HYCO_WS),
    createRelayListenUri: (...args) => actionUri(true, args, HYCO_WS),
    createRelaySendUri: (...args) => actionUri(false, args, HYCO_WS),
    createRelayToken: (...args) => token(false, args, HYCO_WS),
    appendRelayToken: (...args) => token(true, args, HYCO_WS)
  })
});
