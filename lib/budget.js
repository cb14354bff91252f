'use strict';

/**
 * The process's inbound budget: message bytes that sockets have received and the event loop
 * has not taken yet, summed over every socket of the process (each socket also stops at its
 * own `inboundHighWaterMark`). Above it, every socket stops reading until the event loop
 * catches up, as TCP backpressure: a stalled event loop holds at most this much, however many
 * sockets are busy. See core/src/socket/budget.rs.
 */

const { loadNative } = require('./native');
const { codedError, describeType } = require('./validation');

const native = loadNative();

/**
 * Sets the inbound budget.
 *
 * @param {Number} bytes The budget in bytes; `0` for none. Default (before any call)
 *     268435456 (256 MiB)
 * @return {Number} The previous budget
 * @public
 */
function setInboundBudget(bytes) {
  if (typeof bytes !== 'number') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "bytes" argument must be of type number. Received ${describeType(bytes)}`
    );
  }
  if (!Number.isSafeInteger(bytes) || bytes < 0) {
    throw codedError(
      RangeError,
      'ERR_OUT_OF_RANGE',
      `The value of "bytes" is out of range. It must be an integer >= 0. Received ${bytes}`
    );
  }
  return native.setInboundBudget(bytes);
}

/**
 * The inbound budget and what is used of it now.
 *
 * @return {{limit: Number, used: Number}} The budget (0: none) and the bytes waiting
 * @public
 */
function getInboundBudget() {
  const { limit, used } = native.getInboundBudget();
  return { limit, used };
}

module.exports = { getInboundBudget, setInboundBudget };
