'use strict';

/**
 * permessage-deflate on the JavaScript side: the `perMessageDeflate` option of
 * `relayedConnect()` and `RelayedServer` (checked, and turned into what the native side
 * takes), what a socket reports of an agreement (`extensions`, `_extensions`), and the
 * per-message choice of what to compress (ws's `threshold` rule). Negotiation, compression
 * and inflation run natively (core/src/socket/deflate.rs and compress.rs).
 */

const zlib = require('zlib');

const { codedError, invalidOption, numberOption, outOfRange } = require('./validation');

const EXTENSION = 'permessage-deflate';
const DEFAULT_THRESHOLD = 1024;

/**
 * Checks a `*MaxWindowBits` sub-option: a boolean or an integer from 8 to 15.
 *
 * @param {*} value The value
 * @param {String} name Its name
 * @return {(Number|undefined)} For the native side: absent, 0 (`false`), 1 (`true`) or the bits
 * @private
 */
function windowBits(value, name) {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value ? 1 : 0;
  if (typeof value !== 'number') invalidOption(name, 'a boolean or a number', value);
  if (!Number.isInteger(value) || value < 8 || value > 15) {
    outOfRange(`options.${name}`, 'an integer from 8 to 15', value);
  }
  return value;
}

/**
 * Checks an optional boolean sub-option.
 *
 * @param {*} value The value
 * @param {String} name Its name
 * @return {(Boolean|undefined)} The value
 * @private
 */
function flag(value, name) {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') invalidOption(name, 'of type boolean', value);
  return value;
}

/**
 * Checks a zlib option as Node's zlib does: a missing or NaN value is zlib's default, and
 * what zlib refuses throws zlib's own error (its message, class and code, as this Node.js
 * words them), made by zlib itself, which checks its options before it allocates anything.
 *
 * @param {*} value The value
 * @param {String} name `level` or `memLevel`
 * @param {Number} lower The smallest allowed
 * @param {Number} upper The largest allowed
 * @return {(Number|undefined)} The value, or `undefined` for zlib's default
 * @throws {TypeError|RangeError} zlib's error for the value
 * @private
 */
function zlibNumber(value, name, lower, upper) {
  if (value === undefined || Number.isNaN(value)) return undefined;
  if (typeof value === 'number' && value >= lower && value <= upper) return Math.trunc(value);
  zlib.createDeflateRaw({ [name]: value }).close();
  // Only if a Node.js took what its zlib documents as out of range.
  throw codedError(
    RangeError,
    'ERR_OUT_OF_RANGE',
    `The value of "options.${name}" is out of range. It must be >= ${lower} and <= ${upper}. Received ${String(value)}`
  );
}

/**
 * Reads the `perMessageDeflate` option as ws does (`true` for the defaults, `false` for
 * none, or an object of sub-options), checking the sub-options this package honours.
 * `concurrencyLimit`, `zlibInflateOptions` and zlib options other than `level` and
 * `memLevel` are accepted and ignored.
 *
 * @param {*} value The option
 * @param {Boolean} dflt Its default (`true` for a sender, `false` for a server, as ws)
 * @return {?Object} `null` for none, else `{ native, threshold }`: the native side's
 *     options and the compression threshold in bytes
 * @throws {TypeError|RangeError} For a value of the wrong type or out of range
 * @private
 */
function deflateOption(value, dflt) {
  if (value === undefined) value = dflt;
  if (value === false || value === null) return null;
  if (value === true) value = {};
  if (typeof value !== 'object') invalidOption('perMessageDeflate', 'a boolean or an object', value);
  // `null` is no options, as ws spreads it.
  const zlib = value.zlibDeflateOptions === null ? undefined : value.zlibDeflateOptions;
  if (zlib !== undefined && typeof zlib !== 'object') {
    invalidOption('perMessageDeflate.zlibDeflateOptions', 'an object', zlib);
  }
  const native = {
    serverNoContextTakeover: flag(value.serverNoContextTakeover, 'perMessageDeflate.serverNoContextTakeover'),
    clientNoContextTakeover: flag(value.clientNoContextTakeover, 'perMessageDeflate.clientNoContextTakeover'),
    serverMaxWindowBits: windowBits(value.serverMaxWindowBits, 'perMessageDeflate.serverMaxWindowBits'),
    clientMaxWindowBits: windowBits(value.clientMaxWindowBits, 'perMessageDeflate.clientMaxWindowBits'),
    level: zlib ? zlibNumber(zlib.level, 'level', -1, 9) : undefined,
    memLevel: zlib ? zlibNumber(zlib.memLevel, 'memLevel', 1, 9) : undefined
  };
  // Infinity: nothing is compressed (ws compares sizes with it).
  const threshold =
    value.threshold === Infinity
      ? Infinity
      : numberOption(value.threshold, 'perMessageDeflate.threshold', DEFAULT_THRESHOLD, true);
  return { native, threshold };
}

/**
 * What ws keeps in `_extensions['permessage-deflate']` that code may read: the agreed
 * `params` (as ws's `PerMessageDeflate#params`), and a `cleanup()` that has nothing to
 * release here (the native side does).
 *
 * @private
 */
class Agreed {
  /**
   * @param {Object} params The agreed parameters
   */
  constructor(params) {
    this.params = params;
    Object.freeze(params);
    Object.freeze(this);
  }

  /**
   * Nothing to release: the contexts live natively.
   *
   * @public
   */
  cleanup() {}
}

/** `_extensions` objects by agreement: sockets with the same agreement share one. */
const agreements = new Map();

/**
 * The `_extensions` object of a socket whose handshake agreed `header` (a
 * `Sec-WebSocket-Extensions` value as the native side formats it: `permessage-deflate; a;
 * b=10`), or `null` for none.
 *
 * @param {String} header The agreement, `''` for none
 * @return {?Object} A frozen `{ 'permessage-deflate': { params } }`, shared
 * @private
 */
function agreedExtensions(header) {
  if (header === '') return null;
  let ext = agreements.get(header);
  if (ext === undefined) {
    const params = {};
    for (const part of header.split(';').slice(1)) {
      const [key, value] = part.trim().split('=');
      params[key] = value === undefined ? true : Number(value);
    }
    ext = Object.freeze({ [EXTENSION]: new Agreed(params) });
    agreements.set(header, ext);
  }
  return ext;
}

/**
 * The smallest message this end compresses under an agreement, as ws's sender decides: every
 * message (`0`) while it keeps its compression context, only those of at least `threshold`
 * bytes when it may not (`*_no_context_takeover` for its own side).
 *
 * @param {Object} extensions The socket's `_extensions` (an agreement)
 * @param {Object} deflate `{ threshold, server }`: the socket's options and its deflate role
 * @return {Number} Bytes
 * @private
 */
function compressMin(extensions, deflate) {
  const params = extensions[EXTENSION].params;
  const own = deflate.server ? 'server_no_context_takeover' : 'client_no_context_takeover';
  return params[own] ? deflate.threshold : 0;
}

module.exports = { EXTENSION, agreedExtensions, compressMin, deflateOption };
