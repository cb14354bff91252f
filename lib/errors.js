'use strict';

const { codedError } = require('./validation');

const TAGGED = /^\[([A-Z_]+):(TypeError|RangeError|Error)\] ([\s\S]*)$/;
const CLASSES = { TypeError, RangeError, Error };

/**
 * Turns an error from an async native call back into the error it stands for. Async native
 * functions cannot throw a `TypeError` on the JS thread, so they tag the message with the
 * class and code (`[ERR_IO:Error] cannot listen on ...`); other errors pass unchanged.
 *
 * @param {Error} err The rejected value of a native promise
 * @return {Error} The error to throw
 * @private
 */
function fromNative(err) {
  const m = err && typeof err.message === 'string' && TAGGED.exec(err.message);
  if (!m) return err;
  return codedError(CLASSES[m[2]], m[1], m[3]);
}

module.exports = { fromNative };
