'use strict';

/**
 * `RelayedWebSocket`: a ws 8 `WebSocket` whose transport, framing, masking and UTF-8 checks
 * run in Rust. It extends ws's class, so `instanceof WebSocket`, the ready-state constants,
 * the `on*` attributes and `addEventListener` are ws's own; every method that touches the
 * transport is reimplemented here over the native socket, with ws's argument rules and
 * error messages.
 */

const EventEmitter = require('events');
const WebSocket = require('ws');

const readyStates = ['CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'];
const EMPTY_BUFFER = Buffer.alloc(0);

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_PING = 0x9;
const OP_PONG = 0xa;

// Native event types and how many fields follow each in the flat event list (see `to_js`
// in src/bindings/socket.rs).
const EV_OPEN = 0;
const EV_MESSAGE = 1;
const EV_PING = 2;
const EV_PONG = 3;
const EV_WRITTEN = 4;
const EV_CLOSE_RECEIVED = 5;
const EV_ERROR = 6;
const EV_CLOSED = 7;
const FIELDS = [1, 2, 1, 1, 3, 0, 5, 4];

// Frames smaller than this are packed, per tick, into one native call (see `_sendFrame`);
// larger ones go on their own.
const BATCH_BELOW = 16 * 1024;
// The packing buffer starts at this size and doubles up to BATCH_LIMIT; it is flushed when
// the next frame does not fit.
const BATCH_INITIAL = 32 * 1024;
const BATCH_LIMIT = 256 * 1024;
// Per packed frame: flags, length (u32) and callback id (u32); see `for_each_batched` in
// core/src/socket/connection.rs.
const BATCH_HEADER = 9;

/**
 * Stands in for the `net.Socket` that ws's `createWebSocketStream()` inspects in `_final`:
 * it reports when the writable side has finished (the connection is closed).
 *
 * @extends EventEmitter
 * @private
 */
class TransportShim extends EventEmitter {
  constructor() {
    super();
    this._writableState = { finished: false, length: 0 };
  }
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
  if (data) ws._bufferedAmount += toBuffer(data).length;
  if (cb) {
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
   * @private
   */
  constructor(url, options) {
    // ws's constructor without an address sets up an unconnected socket.
    super(null, undefined, { autoPong: options.autoPong, closeTimeout: options.closeTimeout });
    this._isServer = false;
    this._url = url;
    this._bufferedAmount = 0;
    this._native = null;
    this._callbacks = new Map();
    this._nextAck = 1;
    this._firstFragment = true;
    this._held = [];
    this._packed = null;
    this._packedLength = 0;
    this._flushBatch = () => this._flush();
    this._onEvents = (events) => this._dispatch(events, 0);
  }

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
   * Attaches the native socket.
   *
   * @param {Object} native The native socket
   * @private
   */
  _attach(native) {
    this._native = native;
  }

  /**
   * Handles a batch of native events (a flat list: a type, then its fields), in order. A
   * throwing listener does not lose the rest of the batch, and its exception is rethrown
   * outside the native call (as an uncaught exception, like any EventEmitter listener).
   *
   * @param {Array} list The events
   * @param {Number} start Where to resume
   * @private
   */
  _dispatch(list, start) {
    let i = start;
    while (i < list.length) {
      const t = list[i];
      const at = i + 1;
      i = at + FIELDS[t];
      try {
        this._handle(list, t, at);
      } catch (err) {
        process.nextTick(rethrow, err);
        if (i < list.length) process.nextTick(() => this._dispatch(list, i));
        return;
      }
    }
  }

  /**
   * Handles one native event, holding reading-side events while paused.
   *
   * @param {Array} list The event list
   * @param {Number} t The event type
   * @param {Number} at Index of its first field
   * @private
   */
  _handle(list, t, at) {
    if (this._paused && (t === EV_MESSAGE || t === EV_PING || t === EV_PONG || t === EV_CLOSE_RECEIVED)) {
      for (let k = at - 1; k < at + FIELDS[t]; k++) this._held.push(list[k]);
      return;
    }
    if ((t === EV_ERROR || t === EV_CLOSED) && this._held.length) {
      // As ws: what was already read is delivered before the error and the close, paused
      // or not.
      const held = this._held;
      this._held = [];
      const paused = this._paused;
      this._paused = false;
      try {
        this._dispatch(held, 0);
      } finally {
        this._paused = paused;
      }
    }
    switch (t) {
      case EV_MESSAGE:
        this._emitMessage(list[at], list[at + 1]);
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
          this._native.terminate();
          this._emitError('WebSocket was closed before the connection was established', null, false, null, null);
          break;
        }
        this._readyState = WebSocket.OPEN;
        this._protocol = list[at];
        this._socket = new TransportShim();
        this.emit('open');
        break;
      case EV_CLOSE_RECEIVED:
        this._closeFrameReceived = true;
        if (this._readyState === WebSocket.OPEN) this._readyState = WebSocket.CLOSING;
        break;
      case EV_ERROR:
        this._emitError(list[at], list[at + 1], list[at + 2], list[at + 3], list[at + 4]);
        break;
      case EV_CLOSED:
        this._closed(list[at], list[at + 1], list[at + 2], list[at + 3]);
        break;
      default:
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
        data = frames;
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
    const err = range ? new RangeError(message) : new Error(message);
    if (code !== null) err.code = code;
    if (statusCode !== null) {
      err.statusCode = statusCode;
      err.statusDescription = statusDescription;
    }
    if (this._readyState === WebSocket.OPEN || this._readyState === WebSocket.CONNECTING) {
      this._readyState = WebSocket.CLOSING;
    }
    this._errorEmitted = true;
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
    this._held.length = 0;
    this._readyState = WebSocket.CLOSED;
    this._closeFrameReceived = frameReceived;
    this._closeFrameSent = frameSent;
    this._closeCode = code;
    this._closeMessage = reason;
    if (this._callbacks.size) {
      const err = new Error('WebSocket is not open: readyState 3 (CLOSED)');
      for (const id of [...this._callbacks.keys()]) this._complete(id, err);
    }
    if (this._socket) {
      this._socket._writableState.finished = true;
      this._socket.emit('finish');
    }
    this._native = null;
    this.emit('close', code, reason);
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
   * @private
   */
  _sendFrame(buf, opcode, fin, cb) {
    let ack = 0;
    if (typeof cb === 'function') {
      ack = this._nextAck++;
      if (this._nextAck > 0x7fffffff) this._nextAck = 1;
      this._callbacks.set(ack, cb);
    }
    const length = buf.length;
    const accounted = framedLength(length);
    this._bufferedAmount += accounted;
    if (length >= BATCH_BELOW) {
      this._flush();
      this._native.send(buf, opcode, fin, accounted, ack);
      return;
    }
    const need = BATCH_HEADER + length;
    let packed = this._packed;
    if (packed === null || this._packedLength + need > packed.length) {
      if (packed !== null && packed.length < BATCH_LIMIT && this._packedLength + need <= packed.length * 2) {
        const grown = Buffer.allocUnsafe(packed.length * 2);
        packed.copy(grown, 0, 0, this._packedLength);
        packed = grown;
      } else {
        this._flush();
        if (packed === null) packed = Buffer.allocUnsafe(BATCH_INITIAL);
      }
      this._packed = packed;
    }
    let pos = this._packedLength;
    if (pos === 0) queueMicrotask(this._flushBatch);
    packed[pos] = (fin ? 0x80 : 0) | opcode;
    packed.writeUInt32BE(length, pos + 1);
    packed.writeUInt32BE(ack, pos + 5);
    pos += BATCH_HEADER;
    if (length > 0) buf.copy(packed, pos);
    this._packedLength = pos + length;
  }

  /**
   * Hands the packed frames to the native socket (which copies them).
   *
   * @private
   */
  _flush() {
    const length = this._packedLength;
    if (length === 0) return;
    this._packedLength = 0;
    if (this._native !== null) this._native.sendBatch(this._packed.subarray(0, length));
  }

  /**
   * Sends a data message, as ws's `send()`.
   *
   * @param {*} data The message
   * @param {Object} [options] `binary`, `fin`; `compress` and `mask` are accepted and
   *     ignored (no compression is negotiated; a client always masks)
   * @param {Function} [cb] Called once the data is written
   * @public
   */
  send(data, options, cb) {
    if (this.readyState === WebSocket.CONNECTING) {
      throw new Error('WebSocket is not open: readyState 0 (CONNECTING)');
    }
    if (typeof options === 'function') {
      cb = options;
      options = {};
    }
    if (typeof data === 'number') data = data.toString();
    if (this.readyState !== WebSocket.OPEN) {
      sendAfterClose(this, data, cb);
      return;
    }
    const opts = { binary: typeof data !== 'string', fin: true, ...options };
    const buf = typeof data === 'string' ? Buffer.from(data) : data ? toBuffer(data) : EMPTY_BUFFER;
    const opcode = this._firstFragment ? (opts.binary ? OP_BINARY : OP_TEXT) : OP_CONTINUATION;
    this._firstFragment = Boolean(opts.fin);
    this._sendFrame(buf, opcode, Boolean(opts.fin), cb);
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
    const buf = data ? toBuffer(typeof data === 'string' ? Buffer.from(data) : data) : EMPTY_BUFFER;
    if (buf.length > 125) {
      throw new RangeError('The data size must not be greater than 125 bytes');
    }
    this._sendFrame(buf, opcode, true, cb);
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
      this._readyState = WebSocket.CLOSING;
      if (this._native) this._native.close();
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
      } else if (typeof reason === 'string') {
        reasonBuf = Buffer.from(reason);
        if (reasonBuf.length > 123) {
          throw new RangeError('The message must not be greater than 123 bytes');
        }
      } else if (reason instanceof Uint8Array) {
        if (reason.length > 123) {
          throw new RangeError('The message must not be greater than 123 bytes');
        }
        reasonBuf = Buffer.from(reason.buffer, reason.byteOffset, reason.byteLength);
      } else {
        throw new TypeError('Second argument must be a string or a Uint8Array');
      }
    }
    this._readyState = WebSocket.CLOSING;
    this._flush();
    this._native.close(code, reasonBuf);
  }

  /**
   * Drops the connection at once, as ws's `terminate()`.
   *
   * @public
   */
  terminate() {
    if (this.readyState === WebSocket.CLOSED) return;
    this._readyState = WebSocket.CLOSING;
    if (this._native) this._native.terminate();
  }

  /**
   * Stops reading: no 'message' until `resume()`.
   *
   * @public
   */
  pause() {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return;
    this._paused = true;
    if (this._native) this._native.pause();
  }

  /**
   * Reads again after `pause()`.
   *
   * @public
   */
  resume() {
    if (this.readyState === WebSocket.CONNECTING || this.readyState === WebSocket.CLOSED) return;
    this._paused = false;
    if (this._native) this._native.resume();
    if (this._held.length) {
      const held = this._held;
      this._held = [];
      process.nextTick(() => this._dispatch(held, 0));
    }
  }
}

/**
 * Rethrows `err` (from a listener) outside the native callback.
 *
 * @param {Error} err The error
 * @private
 */
function rethrow(err) {
  throw err;
}

// ws makes its accessors enumerable; so must the overrides.
Object.defineProperty(RelayedWebSocket.prototype, 'bufferedAmount', { enumerable: true });

module.exports = { RelayedWebSocket, isValidStatusCode, toBuffer };
