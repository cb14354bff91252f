'use strict';

/**
 * `RelayedWebSocket`: a ws 8 `WebSocket` whose transport, framing, masking and UTF-8 checks
 * run in Rust. It extends ws's class, so `instanceof WebSocket`, the ready-state constants,
 * the `on*` attributes and `addEventListener` are ws's own; every method that touches the
 * transport is reimplemented here over the native socket, with ws's argument rules and
 * error messages.
 */

const { Buffer } = require('buffer');
const EventEmitter = require('events');
const { isUint8Array } = require('util').types;
const { constants: zlibConstants } = require('zlib');
const WebSocket = require('ws');

const { agreedExtensions, compressMin } = require('./deflate');
const { FIELDS, eventType, native, register, unregister } = require('./native-events');

/**
 * Checks that this ws reads its state from the fields RelayedWebSocket sets (ws 8 does, from
 * 8.20.0, the lowest version package.json accepts, to the newest tested): a ws that stops
 * doing so fails here, when the package loads, with a clear error, rather than with sockets
 * whose `readyState` or `protocol` are wrong.
 *
 * @throws {Error} With code `ERR_HYCO_WS_INCOMPATIBLE`
 * @private
 */
function checkWs() {
  const probe = Object.create(WebSocket.prototype);
  Object.assign(probe, {
    _readyState: 2,
    _binaryType: 'fragments',
    _protocol: 'probe',
    _url: 'wss://probe/',
    _extensions: { probe: true },
    _paused: true
  });
  let reads;
  try {
    reads =
      probe.readyState === 2 &&
      probe.binaryType === 'fragments' &&
      probe.protocol === 'probe' &&
      probe.url === 'wss://probe/' &&
      probe.extensions === 'probe' &&
      probe.isPaused === true;
  } catch {
    reads = false;
  }
  if (!reads) {
    let version = 'unknown';
    try {
      version = require('ws/package.json').version;
    } catch {
      // a ws without package.json export: the version stays unknown
    }
    const err = new Error(
      `hyco-ws-rs: ws ${version} keeps its state elsewhere than the versions this package supports ` +
        '(ws 8.20.0 and later ws 8 releases it was tested with): install a supported ws 8'
    );
    err.code = 'ERR_HYCO_WS_INCOMPATIBLE';
    throw err;
  }
}

checkWs();

const readyStates = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];
const EMPTY_BUFFER = Buffer.alloc(0);
/**
 * `_extensions` of every socket that agreed none: one frozen object serves all (sockets
 * that agreed permessage-deflate share one per agreement, see lib/deflate.js).
 */
const NO_EXTENSIONS = Object.freeze({});

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_PING = 0x9;
const OP_PONG = 0xa;

// The native socket events this class reads, with their fields (declared in
// src/bindings/events.rs; see native-events.js).
const EV_OPEN = eventType('open', ['protocol', 'extensions']);
const EV_MESSAGE = eventType('message', ['data', 'binary']);
const EV_MESSAGES = eventType('messages', ['run']);
const EV_PING = eventType('ping', ['data']);
const EV_PONG = eventType('pong', ['data']);
const EV_WRITTEN = eventType('written', ['bytes', 'acks', 'failed']);
const EV_CLOSE_RECEIVED = eventType('closeReceived', []);
const EV_ERROR = eventType('error', ['message', 'code', 'rangeError', 'statusCode', 'statusDescription']);
const EV_CLOSED = eventType('closed', ['code', 'reason', 'frameReceived', 'frameSent']);
const EV_ACCEPTED = eventType('accepted', ['protocol', 'extensions']);

/**
 * How many entries of a held list (see `RelayedWebSocket#_hold`) may have been emitted
 * before a pause part way through it lets them go (once they are at least half of it).
 */
const HELD_COMPACT = 4096;

// Frames smaller than this are packed, per tick, into one native call (see `_sendFrame`);
// larger ones go on their own.
const BATCH_BELOW = 16 * 1024;
// The packing buffer starts at this size, doubles up to BATCH_LIMIT while a tick's frames
// need it, and is flushed when the next frame does not fit. A socket keeps none between
// ticks: once flushed, a small one goes back to the module's few (`smallBatches`), which the
// next ticks' sends of any socket take (making one per tick costs more, in latency, than the
// copy saves; keeping one per socket cost every idle socket 1 KiB), and a larger one to the
// module's one spare (`spareBatch`), where the next socket (or tick) that needs a large one
// takes it (thousands of idle sockets would otherwise each pin a batch-sized buffer, 8 KiB
// after a single 4 KiB message).
const BATCH_INITIAL = 1024;
// Small packing buffers kept for reuse: as many sockets as pack in one tick at once, about.
const SMALL_BATCHES_KEPT = 64;
const BATCH_LIMIT = 256 * 1024;
// Per packed frame: flags (0x80 FIN | BATCH_COMPRESS | opcode), length (u32) and callback
// id (u32); see `for_each_batched` in core/src/socket/batch.rs.
const BATCH_HEADER = 9;

// The one packing buffer larger than BATCH_INITIAL kept between ticks, for any socket.
let spareBatch = null;
// Small (BATCH_INITIAL) packing buffers kept between ticks, for any socket.
const smallBatches = [];

/**
 * A packing buffer of at least `size` bytes: a kept small one for BATCH_INITIAL bytes or
 * fewer, the spare one if it is large enough, else a new one.
 *
 * @param {Number} size The bytes needed
 * @return {Buffer} The buffer
 * @private
 */
function batchBuffer(size) {
  if (size <= BATCH_INITIAL) return smallBatches.pop() || Buffer.allocUnsafe(BATCH_INITIAL);
  if (spareBatch !== null && spareBatch.length >= size) {
    const buf = spareBatch;
    spareBatch = null;
    return buf;
  }
  return Buffer.allocUnsafe(size);
}

/**
 * Takes back a packing buffer whose frames the native side (or a larger packing buffer)
 * has copied, for any socket's next sends: a small one among the few kept, a larger one as
 * the spare (the larger of the two is kept).
 *
 * @param {Buffer} buf The buffer
 * @private
 */
function keepBatch(buf) {
  if (buf.length > BATCH_INITIAL) {
    if (spareBatch === null || buf.length > spareBatch.length) spareBatch = buf;
  } else if (smallBatches.length < SMALL_BATCHES_KEPT) {
    smallBatches.push(buf);
  }
}
// The flags bit that asks for the frame to be compressed (where permessage-deflate is
// agreed; core/src/socket/batch.rs's `COMPRESS`).
const BATCH_COMPRESS = 0x40;

/**
 * Stands in for the `net.Socket` that ws's `createWebSocketStream()` inspects in `_final`:
 * it reports when the writable side has finished (the connection is closed). Made only
 * when something asks for `_socket`.
 *
 * @extends EventEmitter
 * @private
 */
class TransportShim extends EventEmitter {
  /**
   * @param {Boolean} finished The connection is already closed
   */
  constructor(finished) {
    super();
    this._writableState = { finished, length: 0 };
  }
}

/**
 * Sockets with packed frames to hand over at the end of this tick (see `_sendFrame`). One
 * list per copy of lib/ (see native-events.js): it holds only this copy's sockets, flushed by
 * this copy's microtask, which is all a socket needs.
 */
let toFlush = [];

// Settled once: `.then(flushPacked)` queues the flush as a plain microtask. (Node's
// `queueMicrotask()` makes an `AsyncResource` and a bound function per call, a fifth of what
// a tick of small sends costs on the JS thread.)
const SETTLED = Promise.resolve();

/**
 * Hands every socket's packed frames to the native side (one microtask for all of them).
 * Send callbacks run on a later tick, so only the native call could throw (a panic turned
 * into an exception): the other sockets are flushed all the same, and the error is thrown
 * outside the microtask (where it would be an unhandled rejection, which an application may
 * silence).
 *
 * @private
 */
function flushPacked() {
  const sockets = toFlush;
  toFlush = [];
  for (const ws of sockets) {
    try {
      ws._flush();
    } catch (err) {
      process.nextTick(rethrow, err);
    }
  }
}

/**
 * The callback ids of packed frames (see `_sendFrame`), in order.
 *
 * @param {Buffer} packed The packed frames
 * @param {Number} length How much of `packed` they fill
 * @return {Number[]} The ids other than 0
 * @private
 */
function packedAcks(packed, length) {
  const ids = [];
  for (let pos = 0; pos < length; pos += BATCH_HEADER + packed.readUInt32BE(pos + 1)) {
    const ack = packed.readUInt32BE(pos + 5);
    if (ack !== 0) ids.push(ack);
  }
  return ids;
}

/**
 * ws's `toBuffer()`: the bytes of a `send()`/`ping()`/`pong()` argument.
 *
 * @param {*} data The data
 * @return {Buffer} The bytes
 * @throws {TypeError} For data `Buffer.from()` does not take
 * @private
 */
function toBuffer(data) {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/** ws's closing time, ms: how long a closing handshake may take before the connection is dropped. */
const DEFAULT_CLOSE_TIMEOUT = 30000;

/** The codes of a peer's protocol errors: ws's, and zlib's for a message that does not inflate. */
const PEER_ERROR = /^(WS_ERR_|Z_)/;

/** ws's error for a handshake that close() or terminate() aborted (`abortHandshake`). */
const ABORTED = Object.freeze({
  message: 'WebSocket was closed before the connection was established',
  code: null,
  range: false,
  statusCode: null,
  statusDescription: null
});

/**
 * ws's `isBlob()`: a `Blob` or `File`, of this realm or another.
 *
 * @param {*} value The value
 * @return {Boolean} Whether it is a Blob
 * @private
 */
function isBlob(value) {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof value.arrayBuffer === 'function' &&
    typeof value.type === 'string' &&
    typeof value.stream === 'function' &&
    (value[Symbol.toStringTag] === 'Blob' || value[Symbol.toStringTag] === 'File')
  );
}

/**
 * Whether a frame's payload has bytes.
 *
 * @param {Buffer} buf The payload
 * @return {Boolean} Whether it is not empty
 * @private
 */
function hasBytes(buf) {
  return buf.length !== 0;
}

/**
 * The size a frame with `length` payload bytes takes on the wire (client frames are masked).
 *
 * @param {Number} length Payload bytes
 * @return {Number} Frame bytes
 * @private
 */
function framedLength(length) {
  return length + (length < 126 ? 6 : length < 65536 ? 8 : 14);
}

/**
 * ws's rule for close codes a peer may send or `close()` may take.
 *
 * @param {Number} code The code
 * @return {Boolean} Whether it is valid
 * @private
 */
function isValidStatusCode(code) {
  return (
    (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) ||
    (code >= 3000 && code <= 4999)
  );
}

/**
 * What ws does with `send()`, `ping()` and `pong()` once the socket is closing or closed:
 * count the bytes in `bufferedAmount` and fail the callback on the next tick.
 *
 * @param {RelayedWebSocket} ws The socket
 * @param {*} data The data
 * @param {Function} [cb] The callback
 * @private
 */
function sendAfterClose(ws, data, cb) {
  if (data) {
    const length = isBlob(data) ? data.size : toBuffer(data).length;
    ws._bufferedAmount += length;
    // As ws: what is sent while closing still counts after 'close' (see `_closed`).
    if (ws._readyState === WebSocket.CLOSING) ws._lateBytes += length;
  }
  if (cb) {
    // Its callback runs on the next tick: 'close' waits for it (see `_closed`).
    if (ws._callbacks === null) ws._callbacks = new Map();
    const err = new Error(
      `WebSocket is not open: readyState ${ws.readyState} (${readyStates[ws.readyState]})`
    );
    process.nextTick(cb, err);
  }
}

/**
 * A ws 8 `WebSocket` over the native transport. Created by `relayedConnect()` (senders)
 * and by `RelayedServer` (accepted connections).
 *
 * @extends WebSocket
 */
class RelayedWebSocket extends WebSocket {
  /**
   * @param {String} url The address, as `url` reports it
   * @param {Object} options
   * @param {Boolean} options.autoPong Answer pings
   * @param {Number} options.closeTimeout Closing-handshake timeout in ms
   * @param {?Object} [options.deflate] permessage-deflate, when offered or answered:
   *     `{ threshold, server }` (shared by the sockets of one server or call)
   * @private
   */
  constructor(url, options) {
    // ws's constructor without an address sets up an unconnected socket. Pings are answered
    // natively, so ws's own auto-pong state (a closure per socket) is not needed.
    super(null, undefined, { autoPong: false, closeTimeout: options.closeTimeout });
    // Ours, not ws's `_closeTimer`/`_closeTimeout` (which ws versions before 8.19 lack): the
    // closing time of a close queued behind Blobs (see `_startClosingTime`).
    this._closingTimer = null;
    this._closingTime = options.closeTimeout === undefined ? DEFAULT_CLOSE_TIMEOUT : options.closeTimeout;
    // Few fields, most of them made on first use: a listener may hold thousands of these.
    this._extensions = NO_EXTENSIONS;
    this._deflate = options.deflate || null;
    // The smallest message compressed, once permessage-deflate is agreed; -1: never.
    this._compressMin = -1;
    this._compressing = false;
    this._isServer = false;
    this._url = url;
    this._bufferedAmount = 0;
    // What `send()` added to it while closing (see `sendAfterClose`).
    this._lateBytes = 0;
    this._id = 0;
    this._callbacks = null;
    this._nextAck = 1;
    this._firstFragment = true;
    this._held = null;
    this._packed = null;
    this._packedLength = 0;
    // What the packed frames add to `bufferedAmount`, and how many have a callback.
    this._packedBytes = 0;
    this._packedAcks = 0;
    // false until open; then true, or the TransportShim once something asked for it.
    this._shim = false;
    // While a Blob is being read: `{ queue, dropped }`, what was sent after it, in order (see
    // `_afterBlobs`), and whether terminate() came meanwhile.
    this._blobs = null;
    // Set by RelayedServer for the sockets it accepts; `_announced` once its 'connection'
    // was emitted.
    this._server = null;
    this._announced = false;
    // The `req` of a socket a RelayedServer accepts natively, until its 'connection'.
    this._acceptRequest = null;
    // While its token is being fetched (a token function or a credential), with no
    // native socket yet: the AbortController of that wait (see connect.js); false otherwise.
    this._pending = false;
    // close() or terminate() came while connecting (see `_abortConnecting`).
    this._aborted = false;
  }

  /**
   * The transport stand-in ws's `createWebSocketStream()` looks at: `null` until open, then
   * a `TransportShim` (made on first use).
   *
   * @type {?TransportShim}
   * @private
   */
  get _socket() {
    if (this._shim === false) return null;
    if (this._shim === true) this._shim = new TransportShim(this._readyState === WebSocket.CLOSED);
    return this._shim;
  }

  /**
   * ws's constructor sets `_socket` to `null`; the getter above decides instead.
   *
   * @private
   */
  set _socket(value) {}

  /**
   * Bytes queued by `send()`, `ping()` and `pong()` and not yet written to the network,
   * framing included.
   *
   * @type {Number}
   */
  get bufferedAmount() {
    return this._bufferedAmount;
  }

  /**
   * Attaches the native socket: its events come here from now on.
   *
   * @param {Number} id The native socket's id
   * @private
   */
  _attach(id) {
    this._id = id;
    register(id, this);
  }

  /**
   * The socket never got a native one (its token could not be had, or it was closed while
   * its token was being fetched): 'error' then 'close' (1006), as a failed handshake.
   *
   * @param {String} message The error's message
   * @param {?String} code The error's `code`
   * @private
   */
  _failPending(message, code) {
    if (this._readyState === WebSocket.CLOSED) return;
    this._emitError(message, code, false, null, null);
    this._closed(1006, EMPTY_BUFFER, false, false);
  }

  /**
   * The attached native socket, which a listener accepted by itself, is open. No 'open'
   * event: a server's socket is open when the application first sees it.
   *
   * @param {String} protocol The subprotocol
   * @param {String} extensions The agreed extensions (`''` for none)
   * @private
   */
  _adoptOpen(protocol, extensions) {
    this._readyState = WebSocket.OPEN;
    this._protocol = protocol;
    this._agreed(extensions);
    this._shim = true;
  }

  /**
   * Takes note of the extensions the handshake agreed.
   *
   * @param {String} extensions As a `Sec-WebSocket-Extensions` value, `''` for none
   * @private
   */
  _agreed(extensions) {
    const ext = agreedExtensions(extensions);
    if (ext === null || this._deflate === null) return;
    this._extensions = ext;
    this._compressMin = compressMin(ext, this._deflate);
  }

  /**
   * Handles one native event. Messages, pings and pongs are held while paused, and behind
   * what is held until it has been emitted, so that they keep their order whatever
   * `resume()` does; the peer's close frame, an error or the close first emits what is
   * held, paused or not (as ws emits what it has read before it answers a close frame).
   *
   * @param {Array} list The event list
   * @param {Number} t The event type
   * @param {Number} at Index of its first field
   * @private
   */
  _handle(list, t, at) {
    // Aborted while connecting, after the handshake had completed natively: what the peer
    // sent meanwhile is not emitted (ws destroys the socket before it reads anything); the
    // open itself reports the abort. Nothing is held before open, so this one check covers
    // what `_drain` hands to `_act` too.
    if (this._aborted && t !== EV_OPEN && t !== EV_ERROR && t !== EV_CLOSED && t !== EV_WRITTEN) return;
    if (t === EV_MESSAGES) {
      // Holds, or emits, message by message.
      this._emitRun(list[at]);
      return;
    }
    if (t === EV_MESSAGE || t === EV_PING || t === EV_PONG) {
      if (this._paused || this._held !== null) {
        this._hold(t, list, at);
        return;
      }
    } else if ((t === EV_CLOSE_RECEIVED || t === EV_ERROR || t === EV_CLOSED) && this._held !== null) {
      this._drain(true);
    }
    this._act(list, t, at);
  }

  /**
   * Holds a message, ping or pong until `resume()` (or the peer's close frame, an error or
   * the close).
   *
   * @param {Number} t The event type
   * @param {Array} list The event list
   * @param {Number} at Index of its first field
   * @private
   */
  _hold(t, list, at) {
    // `{ list, at }`: the events, and how far they have been emitted. Made only when
    // something is held, so that a socket carries one field for it.
    if (this._held === null) this._held = { list: [], at: 0 };
    const held = this._held.list;
    held.push(t);
    for (let k = at; k < at + FIELDS[t]; k++) held.push(list[k]);
  }

  /**
   * Emits what is held, in order, until a listener pauses again (unless `force`: the
   * socket is failing or closing, and what was read is delivered first, paused or not).
   *
   * @param {Boolean} force Emit it all
   * @private
   */
  _drain(force) {
    const held = this._held;
    while (this._held === held && held.at < held.list.length && (force || !this._paused)) {
      const t = held.list[held.at];
      const at = held.at + 1;
      held.at = at + FIELDS[t];
      try {
        this._act(held.list, t, at);
      } catch (err) {
        process.nextTick(rethrow, err);
      }
    }
    if (this._held !== held) return;
    if (held.at >= held.list.length) {
      this._held = null;
      // All emitted: the connection may read again (see `resume()`).
      if (!this._paused && this._id !== 0) native.socketResume(this._id);
    } else if (held.at >= HELD_COMPACT && 2 * held.at >= held.list.length) {
      // Paused again part way, with most of it emitted: what was emitted is let go (only
      // then, so that the copies cost no more than the list's length in all).
      held.list = held.list.slice(held.at);
      held.at = 0;
    }
  }

  /**
   * Acts on one native event.
   *
   * @param {Array} list The event list
   * @param {Number} t The event type
   * @param {Number} at Index of its first field
   * @private
   */
  _act(list, t, at) {
    switch (t) {
      case EV_MESSAGE:
        this._emitMessage(list[at], list[at + 1]);
        break;
      case EV_MESSAGES:
        this._emitRun(list[at]);
        break;
      case EV_WRITTEN:
        this._written(list[at], list[at + 1], list[at + 2]);
        break;
      case EV_PING:
        this.emit('ping', list[at]);
        break;
      case EV_PONG:
        this.emit('pong', list[at]);
        break;
      case EV_OPEN:
        if (this._readyState !== WebSocket.CONNECTING) {
          // close() or terminate() was called while the handshake was completing: abort,
          // as ws does, with its error and a 1006 close.
          native.socketTerminate(this._id);
          this._emitError(ABORTED.message, null, false, null, null);
          break;
        }
        this._readyState = WebSocket.OPEN;
        this._protocol = list[at];
        this._agreed(list[at + 1]);
        this._shim = true;
        this.emit('open');
        break;
      case EV_CLOSE_RECEIVED:
        // As ws's receiver: the messages before the close frame have been emitted (and what
        // their listeners sent is queued); now the echo (nothing natively when our close
        // went first).
        this._closeFrameReceived = true;
        if (this._readyState === WebSocket.OPEN) this._readyState = WebSocket.CLOSING;
        if (this._blobs !== null) {
          // Behind the Blobs being read and what was sent after them, as ws's close reply
          // waits in its sender's queue; its closing time runs from now, as ws's close().
          this._startClosingTime();
          this._afterBlobs(0, undefined, () => {
            this._flush();
            native.socketEchoClose(this._id);
          });
          break;
        }
        this._flush();
        native.socketEchoClose(this._id);
        break;
      case EV_ERROR:
        this._emitError(list[at], list[at + 1], list[at + 2], list[at + 3], list[at + 4]);
        break;
      case EV_CLOSED:
        this._closed(list[at], list[at + 1], list[at + 2], list[at + 3]);
        break;
      case EV_ACCEPTED:
        // A socket its server accepted natively is open (see RelayedServer#_accepting).
        this._server._accepted(this, list[at], list[at + 1]);
        break;
      default:
    }
  }

  /**
   * Emits the messages of a run: small messages read together, in one ArrayBuffer
   * (`src/bindings/run.rs`): the payloads one after the other, then a 32-bit word per
   * message (its length times two, plus one when binary), then their count, little-endian.
   * Each message is a Buffer view of the run, as a ws message is of the chunk its socket
   * read. A throwing listener does not lose the rest (its exception is rethrown outside, as
   * for separate events), and a `pause()` from a listener holds the rest until `resume()`
   * (as does anything held already).
   *
   * @param {ArrayBuffer} buffer The run
   * @private
   */
  _emitRun(buffer) {
    const run = Buffer.from(buffer);
    const end = run.length - 4;
    const count = run.readUInt32LE(end);
    const words = end - 4 * count;
    let offset = 0;
    for (let k = 0; k < count; k++) {
      const word = run.readUInt32LE(words + 4 * k);
      const length = word >>> 1;
      const data = Buffer.from(buffer, offset, length);
      offset += length;
      if (this._paused || this._held !== null) {
        if (this._held === null) this._held = { list: [], at: 0 };
        this._held.list.push(EV_MESSAGE, data, (word & 1) === 1);
        continue;
      }
      try {
        this._emitMessage(data, (word & 1) === 1);
      } catch (err) {
        process.nextTick(rethrow, err);
      }
    }
  }

  /**
   * Emits 'message' with the payload shaped by `binaryType`.
   *
   * @param {(Buffer|Buffer[])} payload The message, or the frames of a fragmented one
   * @param {Boolean} binary Binary or text
   * @private
   */
  _emitMessage(payload, binary) {
    if (!binary) {
      this.emit('message', payload, false);
      return;
    }
    if (Buffer.isBuffer(payload) && this._binaryType === 'nodebuffer') {
      this.emit('message', payload, true);
      return;
    }
    const frames = Array.isArray(payload) ? payload : [payload];
    let data;
    switch (this._binaryType) {
      case 'arraybuffer': {
        const buf = frames.length === 1 ? frames[0] : Buffer.concat(frames);
        data = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength);
        break;
      }
      case 'fragments':
        // As ws: only the frames that carried bytes (an empty message is []).
        data = frames.every(hasBytes) ? frames : frames.filter(hasBytes);
        break;
      case 'blob':
        data = new Blob(frames);
        break;
      default:
        data = frames.length === 1 ? frames[0] : Buffer.concat(frames);
    }
    this.emit('message', data, true);
  }

  /**
   * Accounts written bytes and completes send callbacks.
   *
   * @param {Number} bytes Bytes written
   * @param {?Number[]} acks Callbacks to complete
   * @param {?Number[]} failed Callbacks of frames dropped while closing
   * @private
   */
  _written(bytes, acks, failed) {
    this._bufferedAmount -= bytes;
    if (this._bufferedAmount < 0) this._bufferedAmount = 0;
    if (acks !== null) for (const id of acks) this._complete(id, null);
    if (failed !== null) {
      const err = new Error('WebSocket is not open: readyState 2 (CLOSING)');
      for (const id of failed) this._complete(id, err);
    }
  }

  /**
   * Calls and forgets the callback of `id`.
   *
   * @param {Number} id The callback id
   * @param {?Error} err The error
   * @private
   */
  _complete(id, err) {
    if (this._callbacks === null) return;
    const cb = this._callbacks.get(id);
    if (cb === undefined) return;
    this._callbacks.delete(id);
    // On the next tick, as a socket's write callbacks run: a callback that throws cannot
    // stop the other callbacks or the events that follow.
    process.nextTick(cb, err);
  }

  /**
   * Emits 'error' (at most once per socket, as ws).
   *
   * @param {String} message The message
   * @param {?String} code The `code`
   * @param {Boolean} range A `RangeError` rather than an `Error`
   * @param {?Number} statusCode The HTTP status of a refused handshake
   * @param {?String} statusDescription Its reason phrase
   * @private
   */
  _emitError(message, code, range, statusCode, statusDescription) {
    if (this._errorEmitted) return;
    if (this._aborted) {
      // Aborted while connecting: ws's abort error, whatever the connection met meanwhile
      // (a refusal, a timeout or a token failure already on its way is not reported).
      ({ message, code, range, statusCode, statusDescription } = ABORTED);
    }
    const err = range ? new RangeError(message) : new Error(message);
    if (code !== null) {
      // A message that does not inflate: zlib's return value as well, as Node's zlib gives
      // it to ws (`errno` before `code`, in Node's order).
      if (code.startsWith('Z_') && typeof zlibConstants[code] === 'number') err.errno = zlibConstants[code];
      err.code = code;
    }
    if (statusCode !== null) {
      err.statusCode = statusCode;
      err.statusDescription = statusDescription;
    }
    if (this._readyState === WebSocket.OPEN || this._readyState === WebSocket.CONNECTING) {
      this._readyState = WebSocket.CLOSING;
    }
    this._errorEmitted = true;
    // A socket a RelayedServer accepted throws an 'error' nobody listens for only when ws's
    // server sockets would: a peer's protocol error (WS_ERR_*, or zlib's Z_* for a message
    // that does not inflate) after 'connection'. A failed accept (the sender left, the
    // address expired) must not crash an application that has not even seen the socket;
    // nor may what ws has no 'error' for: the heartbeat's ETIMEDOUT (ws's heartbeat pattern
    // just terminates), a panic's ERR_INTERNAL.
    if (
      this._server !== null &&
      this.listenerCount('error') === 0 &&
      (!this._announced || code === null || !PEER_ERROR.test(code))
    ) {
      return;
    }
    this.emit('error', err);
  }

  /**
   * The connection is gone: settle everything and emit 'close' once.
   *
   * @param {Number} code The close code
   * @param {Buffer} reason The close reason
   * @param {Boolean} frameReceived A close frame arrived
   * @param {Boolean} frameSent A close frame was sent
   * @private
   */
  _closed(code, reason, frameReceived, frameSent) {
    this._held = null;
    if (this._closingTimer !== null) {
      clearTimeout(this._closingTimer);
      this._closingTimer = null;
    }
    // Nothing is left to write: frames packed in this tick and never handed over, or handed
    // over as the connection ended (too late for a written event), leave `bufferedAmount`
    // with the rest (their callbacks fail below); what was sent while closing stays, as in
    // ws.
    this._bufferedAmount = this._lateBytes;
    this._packed = null;
    this._packedLength = 0;
    this._packedBytes = 0;
    this._packedAcks = 0;
    this._readyState = WebSocket.CLOSED;
    this._closeFrameReceived = frameReceived;
    this._closeFrameSent = frameSent;
    this._closeCode = code;
    this._closeMessage = reason;
    if (this._callbacks !== null && this._callbacks.size) {
      const err = new Error('WebSocket is not open: readyState 3 (CLOSED)');
      for (const id of [...this._callbacks.keys()]) this._complete(id, err);
    }
    if (typeof this._shim === 'object') {
      this._shim._writableState.finished = true;
      this._shim.emit('finish');
    }
    unregister(this._id);
    this._id = 0;
    // Out of `clients` before the 'close' listeners run, as ws's server does it.
    if (this._server !== null) this._server._forgetClient(this);
    if (this._callbacks !== null) {
      // Send callbacks run on later ticks (see `_complete`), failed ones too; as with ws,
      // they run before 'close'.
      process.nextTick(emitClose, this, code, reason);
    } else {
      emitClose(this, code, reason);
    }
  }

  /**
   * Queues a frame with the native socket. Small frames are copied (at once, as ws does)
   * into a packing buffer that is handed over in one native call per tick, from a
   * microtask: before any I/O, so no later than a write would have gone out, and in order
   * with everything else the socket sends.
   *
   * @param {Buffer} buf The payload
   * @param {Number} opcode The opcode
   * @param {Boolean} fin Final fragment
   * @param {Function} [cb] Called once written
   * @param {Boolean} [compress=false] Compress it (permessage-deflate); a message's
   *     continuations follow its first frame natively
   * @private
   */
  _sendFrame(buf, opcode, fin, cb, compress = false) {
    let ack = 0;
    if (typeof cb === 'function') {
      ack = this._nextAck;
      this._nextAck = ack >= 0x7fffffff ? 1 : ack + 1;
      if (this._callbacks === null) this._callbacks = new Map();
      this._callbacks.set(ack, cb);
    }
    const length = buf.length;
    // A compressed frame counts as its payload would uncompressed, until it is written.
    const accounted = framedLength(length);
    if (length >= BATCH_BELOW) {
      this._flush();
      // Written at once from this thread when nothing sent before is still unreported (see
      // `_flush`).
      const direct = this._bufferedAmount === 0;
      this._bufferedAmount += accounted;
      if (native.socketSend(this._id, buf, opcode, fin, compress, accounted, ack, direct) === 1) {
        this._written(accounted, ack === 0 ? null : [ack], null);
      }
      return;
    }
    this._bufferedAmount += accounted;
    const need = BATCH_HEADER + length;
    let packed = this._packed;
    if (packed === null || this._packedLength + need > packed.length) {
      const used = this._packedLength;
      if (packed !== null && used > 0 && used + need <= BATCH_LIMIT) {
        let size = packed.length * 2;
        while (size < used + need) size *= 2;
        const grown = batchBuffer(Math.min(size, BATCH_LIMIT));
        packed.copy(grown, 0, 0, used);
        // Copied out: the smaller buffer is free for the next tick (else a small one is
        // made anew at every tick that outgrows it).
        keepBatch(packed);
        packed = grown;
      } else {
        this._flush();
        packed = this._packed;
        if (packed === null || need > packed.length) {
          let size = BATCH_INITIAL;
          while (size < need) size *= 2;
          packed = batchBuffer(size);
        }
      }
      this._packed = packed;
    }
    let pos = this._packedLength;
    if (pos === 0) {
      if (toFlush.length === 0) SETTLED.then(flushPacked);
      toFlush.push(this);
    }
    packed[pos] = (fin ? 0x80 : 0) | (compress ? BATCH_COMPRESS : 0) | opcode;
    // Byte stores: `writeUInt32BE()` checks its arguments at every call.
    packed[pos + 1] = length >>> 24;
    packed[pos + 2] = length >>> 16;
    packed[pos + 3] = length >>> 8;
    packed[pos + 4] = length;
    packed[pos + 5] = ack >>> 24;
    packed[pos + 6] = ack >>> 16;
    packed[pos + 7] = ack >>> 8;
    packed[pos + 8] = ack;
    pos += BATCH_HEADER;
    if (length > 0) buf.copy(packed, pos);
    this._packedLength = pos + length;
    this._packedBytes += accounted;
    if (ack !== 0) this._packedAcks++;
  }

  /**
   * Hands the packed frames to the native socket (which copies them).
   *
   * @private
   */
  _flush() {
    const length = this._packedLength;
    if (length === 0) return;
    const bytes = this._packedBytes;
    const acks = this._packedAcks;
    this._packedLength = 0;
    this._packedBytes = 0;
    this._packedAcks = 0;
    const packed = this._packed;
    // Nothing sent before is still unreported (`bufferedAmount` holds only these frames):
    // the native side may then write them at once, from this thread, rather than wake the
    // connection's thread (a lone message costs no thread hop). Only then: a send reported
    // here, before an earlier one's written event, would complete callbacks out of order.
    const direct = this._bufferedAmount === bytes;
    let written;
    try {
      written = this._id !== 0 && native.socketSendBatch(this._id, packed.subarray(0, length), direct) === 1;
    } catch (err) {
      // The native call failed (a panic turned into an exception): these frames are lost.
      // Their callbacks fail and `bufferedAmount` drops them, as for frames a closing socket
      // could not write, and the socket ends rather than go on with a gap in its stream.
      this._packed = null;
      this._written(bytes, null, acks === 0 ? null : packedAcks(packed, length));
      try {
        this.terminate();
      } catch {
        // The error thrown below says what went wrong.
      }
      throw err;
    }
    if (written) this._written(bytes, acks === 0 ? null : packedAcks(packed, length), null);
    // The native side copied the frames (and callbacks run on a later tick, so nothing
    // packs into it meanwhile): the buffer goes back for any socket's next tick, so that an
    // idle socket pins none.
    this._packed = null;
    keepBatch(packed);
  }

  /**
   * Sends a data message, as ws's `send()`.
   *
   * @param {*} data The message
   * @param {Object} [options] `binary`, `fin`, `compress` (default `true`: compressed when
   *     permessage-deflate is agreed, as ws decides); `mask` is ignored (a client always
   *     masks)
   * @param {Function} [cb] Called once the data is written
   * @public
   */
  send(data, options, cb) {
    if (this.readyState === WebSocket.CONNECTING) {
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    }
    if (typeof options === 'function') {
      cb = options;
      options = undefined;
    }
    if (typeof data === 'number') data = data.toString();
    if (this.readyState !== WebSocket.OPEN) {
      sendAfterClose(this, data, cb);
      return;
    }
    // ws's defaults, which `options` overrides. (Shared frozen defaults for a send without
    // options made the loads below see two shapes: 64 B sends cost about a tenth more.)
    const opts = { binary: typeof data !== 'string', compress: true, fin: true, ...options };
    // A Buffer or a string is told apart first: the Blob check costs them nothing.
    let buf = null;
    if (typeof data === 'string') buf = Buffer.from(data);
    else if (!data) buf = EMPTY_BUFFER;
    else if (ArrayBuffer.isView(data) || !isBlob(data)) buf = toBuffer(data);
    const blob = buf === null;
    const length = blob ? data.size : buf.length;
    let opcode = OP_CONTINUATION;
    if (this._firstFragment) {
      opcode = opts.binary ? OP_BINARY : OP_TEXT;
      // As ws: the first frame decides for the whole message.
      this._compressing = this._compressMin >= 0 && Boolean(opts.compress) && length >= this._compressMin;
    }
    const fin = Boolean(opts.fin);
    const compress = this._compressing;
    this._firstFragment = fin;
    if (blob) this._sendBlob(data, cb, (bytes) => this._sendFrame(bytes, opcode, fin, cb, compress));
    else if (this._blobs !== null) this._afterBlobs(length, cb, () => this._sendFrame(buf, opcode, fin, cb, compress));
    else this._sendFrame(buf, opcode, fin, cb, compress);
  }

  /**
   * Sends a Blob's bytes once read, as ws 8.18 and later do: `run(bytes)` frames them, and
   * whatever is sent meanwhile waits behind them, in order (`_afterBlobs`). Its size counts
   * in `bufferedAmount` while it is read.
   *
   * @param {Blob} blob The Blob
   * @param {Function} [cb] The send's callback (failed if the Blob cannot be sent)
   * @param {Function} run Frames the bytes
   * @private
   */
  _sendBlob(blob, cb, run) {
    const entry = { blob, size: blob.size, cb, run };
    this._bufferedAmount += entry.size;
    if (this._blobs !== null) {
      this._blobs.queue.push(entry);
      return;
    }
    this._blobs = { queue: [], dropped: false };
    this._readBlob(entry);
  }

  /**
   * Starts the closing time of a close (ours, or the echo of the peer's) queued behind Blobs
   * being read, as ws's close() starts its timer at once: the native side's starts only when
   * the close frame goes, and a read that never ends must not keep the socket open.
   *
   * @private
   */
  _startClosingTime() {
    if (this._closingTimer === null) this._closingTimer = setTimeout(() => this.terminate(), this._closingTime);
  }

  /**
   * Queues a frame (or the close) behind the Blobs being read.
   *
   * @param {Number} size What it adds to `bufferedAmount` meanwhile
   * @param {Function} [cb] Its callback (failed if the socket closes first)
   * @param {Function} run Sends it
   * @private
   */
  _afterBlobs(size, cb, run) {
    this._bufferedAmount += size;
    this._blobs.queue.push({ blob: null, size, cb, run });
  }

  /**
   * Reads a queued Blob, then sends it and what followed it.
   *
   * @param {Object} entry The Blob's entry (see `_sendBlob`)
   * @private
   */
  _readBlob(entry) {
    entry.blob.arrayBuffer().then(
      (bytes) => {
        // As ws: what was sent while the connection went away (or was dropped) fails, after
        // the read.
        if (this._blobs.dropped || this._readyState === WebSocket.CLOSED || this._id === 0) {
          this._failBlobs(entry, new Error('The socket was closed while the blob was being read'));
          return;
        }
        this._bufferedAmount -= entry.size;
        const queue = this._blobs.queue;
        try {
          entry.run(Buffer.from(bytes));
          while (queue.length > 0) {
            const next = queue.shift();
            // The next Blob: its size stays counted until it is read.
            if (next.blob !== null) return this._readBlob(next);
            this._bufferedAmount -= next.size;
            next.run();
          }
        } catch (err) {
          // A native failure (see `_flush`, which has ended the socket): nothing waits
          // behind the Blobs any more, and the error comes out as an uncaught exception,
          // not as a rejection of this promise.
          this._blobs = null;
          process.nextTick(() => {
            throw err;
          });
          return undefined;
        }
        this._blobs = null;
        return undefined;
      },
      (err) => {
        // As ws: its callback and those queued behind it fail with the read's error, then
        // the socket fails with it ('error', then 'close' 1006), on the next tick (outside
        // the promise chain: an unheard 'error' is an uncaught exception, as ws's).
        const open = this._readyState !== WebSocket.CLOSED && this._id !== 0;
        this._failBlobs(entry, err, open);
        if (!open) return;
        this._readyState = WebSocket.CLOSING;
        native.socketTerminate(this._id);
      }
    );
  }

  /**
   * Fails the callbacks of a Blob's send and of everything queued behind it, on the next
   * tick (outside the promise chain, so that a throwing callback is an uncaught exception),
   * then emits `err` as the socket's 'error' when `emit` (at most one, as ever).
   *
   * @param {Object} entry The Blob's entry
   * @param {Error} err The error
   * @param {Boolean} [emit=false] Whether `err` fails the socket too
   * @private
   */
  _failBlobs(entry, err, emit = false) {
    const entries = [entry, ...this._blobs.queue];
    this._blobs = null;
    process.nextTick(() => {
      for (const e of entries) if (typeof e.cb === 'function') e.cb(err);
      // Never after 'close' (the connection's end may have come first).
      if (!emit || this._errorEmitted || this._readyState === WebSocket.CLOSED) return;
      this._errorEmitted = true;
      this.emit('error', err);
    });
  }

  /**
   * Sends a control frame for `ping()`/`pong()`.
   *
   * @param {Number} opcode `OP_PING` or `OP_PONG`
   * @param {*} data The payload
   * @param {*} mask Ignored: a client always masks
   * @param {Function} [cb] Called once written
   * @private
   */
  _control(opcode, data, mask, cb) {
    if (this.readyState === WebSocket.CONNECTING) {
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    }
    if (typeof data === 'function') {
      cb = data;
      data = undefined;
    } else if (typeof mask === 'function') {
      cb = mask;
    }
    if (typeof data === 'number') data = data.toString();
    if (this.readyState !== WebSocket.OPEN) {
      sendAfterClose(this, data, cb);
      return;
    }
    if (isBlob(data)) {
      if (data.size > 125) throw new RangeError('The data size must not be greater than 125 bytes');
      this._sendBlob(data, cb, (bytes) => this._sendFrame(bytes, opcode, true, cb));
      return;
    }
    const buf = data ? toBuffer(typeof data === 'string' ? Buffer.from(data) : data) : EMPTY_BUFFER;
    if (buf.length > 125) {
      throw new RangeError('The data size must not be greater than 125 bytes');
    }
    if (this._blobs !== null) this._afterBlobs(buf.length, cb, () => this._sendFrame(buf, opcode, true, cb));
    else this._sendFrame(buf, opcode, true, cb);
  }

  /**
   * Sends a ping, as ws's `ping()`.
   *
   * @param {*} [data] The payload (at most 125 bytes)
   * @param {Boolean} [mask] Ignored: a client always masks
   * @param {Function} [cb] Called once written
   * @public
   */
  ping(data, mask, cb) {
    this._control(OP_PING, data, mask, cb);
  }

  /**
   * Sends a pong, as ws's `pong()`.
   *
   * @param {*} [data] The payload (at most 125 bytes)
   * @param {Boolean} [mask] Ignored: a client always masks
   * @param {Function} [cb] Called once written
   * @public
   */
  pong(data, mask, cb) {
    this._control(OP_PONG, data, mask, cb);
  }

  /**
   * Starts the closing handshake, as ws's `close()`.
   *
   * @param {Number} [code] Status code
   * @param {(String|Buffer)} [reason] Why, at most 123 bytes
   * @public
   */
  close(code, reason) {
    if (this.readyState === WebSocket.CLOSED) return;
    if (this.readyState === WebSocket.CONNECTING) {
      this._abortConnecting();
      return;
    }
    if (this.readyState === WebSocket.CLOSING) return;
    let reasonBuf;
    if (code !== undefined) {
      if (typeof code !== 'number' || !isValidStatusCode(code)) {
        throw new TypeError('First argument must be a valid error code number');
      }
      if (reason === undefined || !reason.length) {
        reasonBuf = EMPTY_BUFFER;
      } else {
        // In ws's order: the length first (Buffer.byteLength's own TypeError for what it
        // cannot measure, a RangeError for any view too long), then the type; a Uint8Array
        // of another realm (a vm context, a test environment) is one too.
        if (Buffer.byteLength(reason) > 123) {
          throw new RangeError('The message must not be greater than 123 bytes');
        }
        if (typeof reason === 'string') {
          reasonBuf = Buffer.from(reason);
        } else if (isUint8Array(reason)) {
          reasonBuf = Buffer.from(reason.buffer, reason.byteOffset, reason.byteLength);
        } else {
          throw new TypeError('Second argument must be a string or a Uint8Array');
        }
      }
    }
    this._readyState = WebSocket.CLOSING;
    if (this._blobs !== null) {
      // Behind the Blobs being read, as ws queues its close frame; its closing time runs
      // from here all the same (a read that never ends must not keep the socket).
      this._startClosingTime();
      this._afterBlobs(0, undefined, () => {
        this._flush();
        native.socketClose(this._id, code, reasonBuf);
      });
      return;
    }
    this._flush();
    native.socketClose(this._id, code, reasonBuf);
  }

  /**
   * Drops the connection at once, as ws's `terminate()`.
   *
   * @public
   */
  terminate() {
    if (this.readyState === WebSocket.CLOSED) return;
    if (this.readyState === WebSocket.CONNECTING) {
      this._abortConnecting();
      return;
    }
    // Frames sent in this tick go out first, as ws's sends are written when made: the
    // connection then ends with what the kernel already took, as ws's destroy() does.
    try {
      this._flush();
    } catch (err) {
      // A native failure (see `_flush`, which has ended the socket): terminate() itself
      // never throws, as ws's; the error comes out as an uncaught exception.
      process.nextTick(() => {
        throw err;
      });
    }
    // A Blob being read, and what waits behind it, will not go (ws destroys the socket).
    if (this._blobs !== null) this._blobs.dropped = true;
    this._readyState = WebSocket.CLOSING;
    if (this._id !== 0) native.socketTerminate(this._id);
  }

  /**
   * close() or terminate() while connecting: the handshake is aborted, as ws's
   * `abortHandshake` destroys its request. The connection is dropped, never closed with a
   * frame, even when its handshake has just completed natively (a close would then go out
   * as a frame, and the peer see 1005 rather than a dropped connection); the error is ws's
   * abort, whatever the connection meets meanwhile; nothing it received is emitted.
   *
   * @private
   */
  _abortConnecting() {
    this._aborted = true;
    this._readyState = WebSocket.CLOSING;
    if (this._id !== 0) native.socketTerminate(this._id);
    else if (this._pending) this._abortPending();
  }

  /**
   * Closed while its token was being fetched: fails on the next tick, as ws aborts a
   * handshake (whatever the token source does later is ignored).
   *
   * @private
   */
  _abortPending() {
    // While a token is awaited, `_pending` is the wait's AbortController (see connect.js).
    const waiting = this._pending;
    this._pending = false;
    waiting.abort();
    process.nextTick(() => this._failPending(ABORTED.message, null));
  }

  /**
   * Stops reading: no 'message' until `resume()`.
   *
   * @public
   */
  pause() {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return;
    this._paused = true;
    if (this._id !== 0) native.socketPause(this._id);
  }

  /**
   * Reads again after `pause()`.
   *
   * @public
   */
  resume() {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return;
    this._paused = false;
    if (this._held !== null) {
      // What is held is emitted on the next tick, as a resumed ws socket reads again, and
      // only then does the connection read more (`_drain`): as with ws, nothing more is
      // read than what was read before the pause until it has been emitted, however often
      // listeners pause and resume.
      process.nextTick(drainHeld, this);
    } else if (this._id !== 0) {
      native.socketResume(this._id);
    }
  }
}

/**
 * Emits 'close' (see `RelayedWebSocket#_closed`), then lets the socket's server, if any,
 * finish with it.
 *
 * @param {RelayedWebSocket} ws The socket
 * @param {Number} code The close code
 * @param {Buffer} reason The close reason
 * @private
 */
function emitClose(ws, code, reason) {
  try {
    ws.emit('close', code, reason);
  } finally {
    // Its server's 'close' (once every socket is closed) comes after the socket's own.
    if (ws._server !== null) ws._server._forget(ws);
  }
}

/**
 * Emits what a resumed socket holds (see `RelayedWebSocket#_drain`).
 *
 * @param {RelayedWebSocket} ws The socket
 * @private
 */
function drainHeld(ws) {
  if (ws._held !== null) ws._drain(false);
}

/**
 * Rethrows `err` (from a listener, or a native call in the end-of-tick flush) outside the
 * native callback or the microtask.
 *
 * @param {Error} err The error
 * @private
 */
function rethrow(err) {
  throw err;
}

// ws makes its accessors enumerable; so must the overrides.
Object.defineProperty(RelayedWebSocket.prototype, 'bufferedAmount', { enumerable: true });

module.exports = { DEFAULT_CLOSE_TIMEOUT, RelayedWebSocket, isValidStatusCode, toBuffer };
