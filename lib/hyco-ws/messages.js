'use strict';

/**
 * Messages as hyco-ws delivered them (ws 1.1, and ws 7 in its repository): `'message'` gets
 * `(data, flags)`, `data` a string for a text message and binary data for a binary one,
 * `flags.binary` true for the latter. Code written for hyco-ws compares text with strings
 * (`data === 'ping'`) and echoes it with `send(data)`, which sends a string as text again.
 */

/**
 * A text message's payload as a string.
 *
 * @param {(Buffer|ArrayBuffer|Buffer[])} data The payload, as ws 8 gives it
 * @return {String} The text
 * @private
 */
function textOf(data) {
  if (typeof data === 'string') return data;
  if (Buffer.isBuffer(data)) return data.toString();
  if (Array.isArray(data)) return Buffer.concat(data).toString();
  return Buffer.from(data).toString();
}

/**
 * ws 8's `'message'` arguments turned into hyco-ws's.
 *
 * @param {*} data The payload
 * @param {Boolean} isBinary Whether the message is binary
 * @return {Array} `[data, flags]`
 * @private
 */
function legacyMessage(data, isBinary) {
  return isBinary ? [data, { binary: true }] : [textOf(data), { binary: false }];
}

module.exports = { legacyMessage };
