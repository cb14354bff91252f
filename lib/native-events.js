'use strict';

/**
 * The receiving end of the native event hub (`src/bindings/hub.rs`): one callback per
 * process (per worker thread) gets every socket's and listener's events as one flat list,
 * `id type fields...` repeated, and hands each event to the object registered under its id.
 * Objects unregister themselves on their last event.
 */

const { loadNative } = require('./native');

const native = loadNative();

/** Event type of a listener event (see `hub.rs`). */
const EV_LISTENER = 8;
/** Event type of a socket a listener accepted by itself, now open. */
const EV_ACCEPTED = 9;
/** Event type of a listener starting to accept a sender by itself. */
const EV_ACCEPTING = 10;
/**
 * How many fields follow each event type: socket events 0-7 (see `flatten` in
 * src/bindings/socket.rs; lib/websocket.js names them), then a listener event, an
 * accepted socket's open and a listener's accept (see `convert` in src/bindings/hub.rs).
 */
const FIELDS = [1, 2, 1, 1, 3, 0, 5, 4, 1, 1, 6];

/** The objects events go to, by native id. */
const targets = new Map();

/**
 * Rethrows `err` (from a listener) outside the native callback.
 *
 * @param {Error} err The error
 * @private
 */
function rethrow(err) {
  throw err;
}

/**
 * Hands one event to its object. Sockets take `(list, type, at)`; listeners take their
 * event object. A listener's accept (fields: the new socket's id, then the request:
 * headers, rendezvous id, url, remote address and port) goes to its listener, which makes
 * and registers the socket object; that socket's open (field: the subprotocol) goes to the
 * listener again with the socket.
 *
 * @param {Array} list The event list
 * @param {Number} id The object's id
 * @param {Number} t The event type
 * @param {Number} at Index of the event's first field
 * @private
 */
function deliver(list, id, t, at) {
  const target = targets.get(id);
  if (t === EV_ACCEPTING) {
    if (target === undefined) native.socketTerminate(list[at]);
    else target._accepting(list[at], list, at + 1);
    return;
  }
  if (target === undefined) return;
  if (t === EV_LISTENER) target._handle(list[at]);
  else if (t === EV_ACCEPTED) target._server._accepted(target, list[at]);
  else target._handle(list, t, at);
}

/**
 * Handles a batch of native events in order. A throwing listener does not stop the rest
 * of the batch (which may carry other sockets' events, and a new socket's first): its
 * exception is rethrown on the next tick, outside the native call, as an uncaught
 * exception like any EventEmitter listener's.
 *
 * @param {Array} list The events
 * @private
 */
function dispatch(list) {
  let i = 0;
  while (i < list.length) {
    const id = list[i];
    const t = list[i + 1];
    const at = i + 2;
    i = at + FIELDS[t];
    try {
      deliver(list, id, t, at);
    } catch (err) {
      process.nextTick(rethrow, err);
    }
  }
}

native.initEvents(dispatch);

/**
 * Sends the events of native object `id` to `target` from now on.
 *
 * @param {Number} id The native id
 * @param {Object} target The socket or server
 */
function register(id, target) {
  targets.set(id, target);
}

/**
 * Stops sending events to object `id` (after its last one).
 *
 * @param {Number} id The native id
 */
function unregister(id) {
  targets.delete(id);
}

module.exports = { FIELDS, native, register, unregister };
