'use strict';

/**
 * Argument checks shared by the public API. Messages follow Node.js's
 * `ERR_INVALID_ARG_TYPE` / `ERR_OUT_OF_RANGE` wording, but never include the received value
 * of an argument that may be a secret (keys, tokens): only its type.
 */

/**
 * Describes a value's type for an error message, without its contents.
 *
 * @param {*} value The value
 * @return {String} e.g. `type number`, `null`, `an instance of Object`
 * @private
 */
function describeType(value) {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'function';
  if (typeof value === 'object') {
    const ctor = value.constructor && value.constructor.name;
    return ctor ? `an instance of ${ctor}` : 'type object';
  }
  return `type ${typeof value}`;
}

/**
 * Creates an error with a `code` property.
 *
 * @param {Function} Ctor `TypeError`, `RangeError` or `Error`
 * @param {String} code The `code` property
 * @param {String} message The message
 * @return {Error} The error
 * @private
 */
function codedError(Ctor, code, message) {
  const err = new Ctor(message);
  err.code = code;
  return err;
}

/**
 * Checks that `value` is a non-empty string.
 *
 * @param {*} value The argument
 * @param {String} name Its name in the public API
 * @throws {TypeError} When it is not
 * @private
 */
function validateString(value, name) {
  if (typeof value !== 'string') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "${name}" argument must be of type string. Received ${describeType(value)}`
    );
  }
  if (value.length === 0) {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_VALUE',
      `The "${name}" argument must be a non-empty string`
    );
  }
}

/**
 * Checks an optional string: `undefined` and `null` mean "absent".
 *
 * @param {*} value The argument
 * @param {String} name Its name in the public API
 * @return {(String|undefined)} The string, or `undefined` when absent
 * @throws {TypeError} When present and not a non-empty string
 * @private
 */
function optionalString(value, name) {
  if (value === undefined || value === null) return undefined;
  validateString(value, name);
  return value;
}

/**
 * Checks `expirationSeconds`. Absent (`undefined`/`null`) and `0` mean one hour, as in
 * hyco-ws.
 *
 * @param {*} value The argument
 * @param {Boolean} [negativeOk=false] Take a negative lifetime (hyco-ws's rules: a token that
 *     has already expired)
 * @return {(Number|undefined)} The number, or `undefined` when absent
 * @throws {TypeError} When not a number
 * @throws {RangeError} When negative (unless allowed) or not finite
 * @private
 */
function validateExpiration(value, negativeOk = false) {
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "expirationSeconds" argument must be of type number. Received ${describeType(value)}`
    );
  }
  if (!Number.isFinite(value) || (value < 0 && !negativeOk)) {
    throw codedError(
      RangeError,
      'ERR_OUT_OF_RANGE',
      `The value of "expirationSeconds" is out of range. It must be a finite number >= 0. Received ${value}`
    );
  }
  return value;
}

/**
 * Throws a `TypeError` about option `name`.
 *
 * @param {String} name The option, as `options.<name>`
 * @param {String} expected What it must be, e.g. `of type number`
 * @param {*} value What it is (only its type is shown)
 * @throws {TypeError} Always, with code `ERR_INVALID_ARG_TYPE`
 * @private
 */
function invalidOption(name, expected, value) {
  throw codedError(
    TypeError,
    'ERR_INVALID_ARG_TYPE',
    `The "options.${name}" property must be ${expected}. Received ${describeType(value)}`
  );
}

/**
 * Checks that the `options` argument is an object (not `null`).
 *
 * @param {*} options The argument
 * @param {String} [name='options'] Its name in the message
 * @throws {TypeError} With code `ERR_INVALID_ARG_TYPE` when it is not
 * @private
 */
function validateOptionsObject(options, name = 'options') {
  if (options === null || typeof options !== 'object') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "${name}" argument must be of type object. Received ${describeType(options)}`
    );
  }
}

/**
 * Throws a `RangeError` about `name`.
 *
 * @param {String} name The option or argument, as shown in the message
 * @param {String} expected The allowed range, in words
 * @param {*} value The value given
 * @throws {RangeError} Always, with code `ERR_OUT_OF_RANGE`
 * @private
 */
function outOfRange(name, expected, value) {
  throw codedError(
    RangeError,
    'ERR_OUT_OF_RANGE',
    `The value of "${name}" is out of range. It must be ${expected}. Received ${String(value)}`
  );
}

/**
 * Checks a numeric option (a duration or a size): finite, not negative, and not 0 unless
 * `zeroOk`.
 *
 * @param {*} value The value, `undefined` for the default
 * @param {String} name The option, as `options.<name>`
 * @param {Number} dflt The default
 * @param {Boolean} [zeroOk=false] Whether 0 is allowed
 * @return {Number} The value
 * @private
 */
function numberOption(value, name, dflt, zeroOk = false) {
  if (value === undefined) return dflt;
  if (typeof value !== 'number') invalidOption(name, 'of type number', value);
  if (!Number.isFinite(value) || value < 0 || (!zeroOk && value === 0)) {
    outOfRange(`options.${name}`, `a finite number ${zeroOk ? '>= 0' : '> 0'}`, value);
  }
  return value;
}

/**
 * Checks a boolean option.
 *
 * @param {*} value The value, `undefined` for the default
 * @param {String} name The option, as `options.<name>`
 * @param {Boolean} dflt The default
 * @return {Boolean} The value
 * @private
 */
function booleanOption(value, name, dflt) {
  if (value === undefined) return dflt;
  if (typeof value !== 'boolean') invalidOption(name, 'of type boolean', value);
  return value;
}

// What Node.js refuses in a header value (its `checkInvalidHeaderChar`).
// eslint-disable-next-line no-control-regex
const invalidHeaderChar = /[^\t\x20-\x7e\x80-\xff]/;

/**
 * Whether `value` can be sent as a header value, as Node.js checks the `headers` option's.
 *
 * @param {String} value The value
 * @return {Boolean} Whether it can
 * @private
 */
function isHeaderValue(value) {
  return !invalidHeaderChar.test(value);
}

/**
 * Checks the `ca` option: PEM strings or Buffers holding at least one certificate each
 * (checked here, when the call is made: the native side reads them only once TLS starts).
 *
 * @param {*} ca The option
 * @return {(Buffer[]|undefined)} The certificates
 * @throws {TypeError} With code `ERR_INVALID_ARG_TYPE` for anything else
 * @private
 */
function caOption(ca) {
  if (ca === undefined) return undefined;
  const list = Array.isArray(ca) ? ca : [ca];
  return list.map((c) => {
    const pem = typeof c === 'string' ? Buffer.from(c) : c;
    if (!Buffer.isBuffer(pem)) return invalidOption('ca', 'a PEM string, a Buffer or an array of them', c);
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
      return invalidOption('ca', 'PEM certificates (-----BEGIN CERTIFICATE-----)', c);
    }
    return pem;
  });
}

let insecureWarned = false;

/**
 * ws passes `rejectUnauthorized: false` to Node.js, and Node.js reads
 * `NODE_TLS_REJECT_UNAUTHORIZED=0`, to turn certificate checks off; this package never
 * turns them off. Says so, once per process, so that a certificate error after a migration
 * is not a mystery.
 *
 * @param {Object} options A sender's or server's options
 * @private
 */
function warnIfInsecure(options) {
  if (insecureWarned) return;
  if (options.rejectUnauthorized !== false && process.env.NODE_TLS_REJECT_UNAUTHORIZED !== '0') return;
  insecureWarned = true;
  process.emitWarning(
    "rejectUnauthorized: false and NODE_TLS_REJECT_UNAUTHORIZED=0 are ignored: hyco-ws-rs's sockets and listeners always verify certificates. Trust a certificate (a self-signed one too) with the ca option.",
    { code: 'HYCO_TLS_ALWAYS_VERIFIED' }
  );
}

module.exports = {
  booleanOption,
  caOption,
  codedError,
  describeType,
  invalidOption,
  isHeaderValue,
  numberOption,
  optionalString,
  outOfRange,
  validateExpiration,
  validateOptionsObject,
  validateString,
  warnIfInsecure
};
