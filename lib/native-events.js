'use strict';

/**
 * The receiving end of the native event hub (`src/bindings/hub.rs`): one callback per
 * process (per worker thread) gets every socket's and listener's events as one flat list,
 * `id type fields...` repeated, and hands each event to the object registered under its id.
 * Objects unregister themselves on their last event.
 *
 * This module may be loaded more than once per thread while the addon is loaded once: jest
 * loads it again for every test file (in a vm context of its own), and so do
 * `jest.resetModules()`, a cleared `require` cache and two copies of the package that share
 * one build of the addon. Each copy's objects must keep getting their events, so the
 * registry (id to object) is not this copy's: `initEvents` hands every copy the same `Map`
 * (the addon's, made by the first call on this thread), and every copy registers its
 * objects there. The events go to the newest copy's `dispatch`, which finds any copy's
 * object there and calls that object's own `_handle`. What `dispatch` expects of a
 * registered object is the contract below (`EVENT_CONTRACT`); the addon refuses a copy
 * whose number differs from the first copy's. Everything else in this module is the copy's
 * own and the same in every copy: the event numbers and field counts are the addon's, not
 * this file's.
 *
 * The events, their numbers and their fields are declared once, in Rust
 * (`src/bindings/events.rs`); this module reads that table when it loads. Each handler
 * names the events it reads and their fields (`eventType`), and a name or a field list that
 * does not match the table stops the module from loading, so the two sides cannot drift
 * apart unnoticed. Each copy checks its own handlers against the one addon, so all copies
 * that load agree on every event; a copy that fails the check has already installed its
 * `dispatch`, which is harmless: `dispatch` reads only the addon's table and the shared
 * registry.
 */

const { Buffer } = require('buffer');

const { loadNative } = require('./native');

const native = loadNative();

/**
 * Builds the event numbers and field counts from the native table.
 *
 * @param {Array<{name: String, fields: String[]}>} table The native event table
 * @return {{byName: Map, fields: Number[]}} Each event's number by name, and each number's
 *     field count
 * @private
 */
function readTable(table) {
  const byName = new Map();
  const fields = [];
  table.forEach((entry, type) => {
    byName.set(entry.name, { type, fields: entry.fields });
    fields.push(entry.fields.length);
  });
  return { byName, fields };
}

const { byName, fields: FIELDS } = readTable(native.eventTable());

/** Names of the events some handler has claimed (see `eventType`). */
const claimed = new Set();

/**
 * The number of native event `name`, checking that its fields are `expected`, in order: the
 * fields a handler reads, by position.
 *
 * @param {String} name The event's name
 * @param {String[]} expected Its fields, as the handler reads them
 * @return {Number} The event's number
 * @throws {Error} When the native table has no such event, or other fields
 */
function eventType(name, expected) {
  const entry = byName.get(name);
  const actual = entry ? entry.fields.join(', ') : null;
  if (actual !== expected.join(', ')) {
    const err = new Error(
      `hyco-ws-rs: the native addon and lib/ disagree on the "${name}" event: the addon sends ` +
        `${actual === null ? 'no such event' : `(${actual})`}, lib/ reads (${expected.join(', ')}). ` +
        'Rebuild the addon ("npm run build") for this version of the package.'
    );
    err.code = 'ERR_HYCO_NATIVE_MISMATCH';
    throw err;
  }
  claimed.add(name);
  return entry.type;
}

/**
 * The native events no handler has claimed: an event the addon sends that nothing reads.
 *
 * @return {String[]} Their names
 */
function unclaimedEvents() {
  return [...byName.keys()].filter((name) => !claimed.has(name));
}

const EV_ACCEPTING = eventType('accepting', ['socket', 'headers', 'id', 'url', 'remoteAddress', 'remotePort']);

/**
 * How events are handed over, numbered: the addon calls `dispatch(pack, ...list)` (see
 * `unpack`); the registry is a `Map` from native id to object; an object's events are
 * handed to `object._handle(list, type, at)` (type: the addon's event number; at: the index
 * of its first field in `list`), a socket's among them runs of messages (`messages`, an
 * ArrayBuffer, as `pack` is); a listener's `accepting` event goes to
 * `object._accepting(socketId, list, at)`. Any change to this contract takes a new number,
 * so that copies that differ in it are not loaded side by side, nor a copy with an addon of
 * another number (`ERR_HYCO_NATIVE_MISMATCH`).
 */
const EVENT_CONTRACT = 3;

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
 * Hands one event to its object, as `target._handle(list, type, at)`. A listener's
 * `accepting` event (a socket it accepts by itself; fields: the new socket's id, then the
 * request) goes to the listener's `_accepting`, which makes and registers the socket
 * object; without a listener (it is gone) the socket is dropped.
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
  if (target !== undefined) target._handle(list, t, at);
}

/**
 * Makes the Buffer views of `pack` that the header of `list` describes
 * (`src/bindings/delivery.rs`): `list[0]` is their count `n`, then come `n` pairs (index in
 * `list`, length), the values at those indices being `pack`'s bytes one after the other. A
 * view holds its whole pack, as a ws message holds the chunk its socket read.
 *
 * @param {ArrayBuffer|undefined} pack The small payloads of the call, one after the other
 * @param {Array} list The call's values
 * @return {Number} The index of the first event
 * @private
 */
function unpack(pack, list) {
  const end = 1 + 2 * list[0];
  if (end === 1) return 1;
  let offset = 0;
  for (let k = 1; k < end; k += 2) {
    const length = list[k + 1];
    list[list[k]] = Buffer.from(pack, offset, length);
    offset += length;
  }
  return end;
}

/**
 * Handles a batch of native events in order. A throwing listener does not stop the rest
 * of the batch (which may carry other sockets' events, and a new socket's first): its
 * exception is rethrown on the next tick, outside the native call, as an uncaught
 * exception like any EventEmitter listener's.
 *
 * @param {ArrayBuffer|undefined} pack The batch's small payloads (see `unpack`)
 * @param {...*} list The events, after a header (see `unpack`)
 * @private
 */
function dispatch(pack, ...list) {
  let i = unpack(pack, list);
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

/**
 * The objects events go to, by native id: every copy's on this thread (see above). Nothing
 * is dispatched before `initEvents` returns (its calls are asynchronous).
 */
const targets = native.initEvents(dispatch, EVENT_CONTRACT);
if (targets === null || typeof targets !== 'object' || typeof targets.get !== 'function') {
  // An addon from before the shared registry returns nothing.
  const err = new Error(
    'hyco-ws-rs: the native addon is older than lib/ (initEvents() returns no registry). ' +
      'Rebuild the addon ("npm run build") for this version of the package.'
  );
  err.code = 'ERR_HYCO_NATIVE_MISMATCH';
  throw err;
}

/**
 * Sends the events of native object `id` to `target` from now on (in the registry every copy
 * shares; `target` follows `EVENT_CONTRACT`).
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

/**
 * How many objects receive events now (registered, their last event not delivered yet), in
 * the registry every copy of lib/ on this thread shares. Internal, for the leak tests: it
 * returns to its idle value once everything is closed.
 *
 * @return {Number} The count
 */
function targetCount() {
  return targets.size;
}

module.exports = { FIELDS, eventType, native, register, targetCount, unclaimedEvents, unregister };
