'use strict';

/**
 * The socket under one relayed HTTP request: what Node's own `http.IncomingMessage` and
 * `http.ServerResponse` are given as `req.socket`/`res.socket`. The response's bytes, as
 * Node serializes them, go to the native exchange (`src/bindings/http.rs`), which relays
 * them inline on the control channel or over a rendezvous; the request's body comes from it,
 * held back when `req` is not read. The native exchange's events come here.
 */

const { Duplex } = require('stream');

const { eventType, native, register, unregister } = require('../native-events');

// The native exchange events this class reads (declared in src/bindings/events.rs).
const EV_BODY = eventType('httpBody', ['data']);
const EV_BODY_END = eventType('httpBodyEnd', []);
const EV_DRAINED = eventType('httpDrained', []);
const EV_FINISHED = eventType('httpFinished', []);
const EV_ABORTED = eventType('httpAborted', ['error']);

// Writes of one tick go to the native side together (one call), and with the end when the
// response ends in that tick (most responses: one call in all); more than this goes at once.
const FLUSH_AT = 64 * 1024;

/**
 * Node's error for a request whose sender went away (`connResetException('aborted')`).
 *
 * @param {String} [detail] Why, when known
 * @return {Error} The error
 * @private
 */
function abortedError(detail) {
  const err = new Error('aborted');
  err.code = 'ECONNRESET';
  if (detail) err.reason = detail;
  return err;
}

/**
 * The socket's 'error' listener: what it is destroyed with is its request's and response's
 * business (see the constructor).
 *
 * @private
 */
function ignoreError() {}

/**
 * A relayed HTTP request's socket.
 *
 * @extends Duplex
 */
class RelayHttpSocket extends Duplex {
  /**
   * @param {Number} id The native exchange's id
   * @param {?String} remoteAddress The sender's address, where the service says
   * @param {?Number} remotePort The sender's port
   * @private
   */
  constructor(id, remoteAddress, remotePort) {
    super({ allowHalfOpen: true });
    this._exchange = id;
    this.remoteAddress = remoteAddress === null ? undefined : remoteAddress;
    this.remotePort = remotePort === null ? undefined : remotePort;
    this.remoteFamily =
      this.remoteAddress === undefined ? undefined : this.remoteAddress.includes(':') ? 'IPv6' : 'IPv4';
    // The sender spoke HTTPS to the relay (Express's `req.protocol` reads this).
    this.encrypted = true;
    // The request whose body comes here, and the write callback held while the native
    // side asked to wait.
    this._req = null;
    this._held = null;
    this._over = false;
    // Bytes written and not yet handed to the native side (see `_write`).
    this._out = [];
    this._outLength = 0;
    this._flushQueued = false;
    // The native side asked to wait: write callbacks are held until it drains.
    this._blocked = false;
    // As the sockets of Node's own server, which always have an 'error' listener: an error
    // the socket is destroyed with (`res.destroy(err)`, a failed `pipeline()` into `res`)
    // reaches `req`/`res` as their close, not the process as an uncaught exception.
    this.on('error', ignoreError);
    register(id, this);
  }

  /**
   * Reads on: Node's `IncomingMessage` calls this when its reader wants more of the body
   * (through `_read`), so the native side reads the relay again.
   *
   * @return {RelayHttpSocket} This socket
   * @public
   */
  resume() {
    if (!this._over) native.httpResume(this._exchange);
    return super.resume();
  }

  /**
   * The readable side carries nothing: the body goes to `req` directly.
   *
   * @private
   */
  _read() {}

  /**
   * Takes bytes of the response for the native exchange: kept until the end of the tick (or
   * `FLUSH_AT` bytes), so that a tick's writes, and the end, make one native call. The
   * callback (and so the response's further writes) is held while the native side asks to
   * wait.
   *
   * @param {Buffer} chunk The bytes
   * @param {String} encoding Unused (Buffers only)
   * @param {Function} callback Called once taken
   * @private
   */
  _write(chunk, encoding, callback) {
    if (this._over) {
      callback(abortedError());
      return;
    }
    this._out.push(chunk);
    this._outLength += chunk.length;
    if (this._blocked) {
      this._held = callback;
      return;
    }
    if (this._outLength >= FLUSH_AT) {
      if (this._flushOut()) callback();
      else this._held = callback;
      return;
    }
    if (!this._flushQueued) {
      this._flushQueued = true;
      queueMicrotask(() => {
        this._flushQueued = false;
        if (!this._blocked) this._flushOut();
      });
    }
    callback();
  }

  /**
   * Hands what was written to the native exchange.
   *
   * @return {Boolean} `false` when the native side asks to wait (until 'httpDrained')
   * @private
   */
  _flushOut() {
    if (this._outLength === 0 || this._over) return true;
    const data = this._takeOut();
    if (native.httpWrite(this._exchange, data)) return true;
    this._blocked = true;
    return false;
  }

  /**
   * The bytes written and not yet handed over, as one Buffer.
   *
   * @return {Buffer} The bytes
   * @private
   */
  _takeOut() {
    const data = this._out.length === 1 ? this._out[0] : Buffer.concat(this._out, this._outLength);
    this._out = [];
    this._outLength = 0;
    return data;
  }

  /**
   * The response has finished (its 'finish'): what is left of it goes with the end, in one
   * native call, and the exchange is this socket's no more (the native side's own end of it
   * needs nothing from JavaScript).
   *
   * @private
   */
  _endResponse() {
    if (this._over) return;
    native.httpEnd(this._exchange, this._outLength > 0 ? this._takeOut() : undefined);
    this._finished();
  }

  /**
   * Gives up on the exchange when the socket is destroyed before its response went out
   * (`res.destroy()`, `req.destroy()`).
   *
   * @param {?Error} err The error
   * @param {Function} callback Called when done
   * @private
   */
  _destroy(err, callback) {
    if (!this._over) native.httpAbort(this._exchange);
    if (this._held !== null) this._releaseHeld(err || abortedError());
    callback(err);
  }

  /**
   * Node's sockets have these; a relayed request's timeouts are the relay's (60 s).
   *
   * @param {Number} msecs Ignored
   * @param {Function} [callback] Added as a 'timeout' listener, as Node does
   * @return {RelayHttpSocket} This socket
   * @public
   */
  setTimeout(msecs, callback) {
    if (typeof callback === 'function') this.once('timeout', callback);
    return this;
  }

  /**
   * @return {RelayHttpSocket} This socket
   * @public
   */
  setNoDelay() {
    return this;
  }

  /**
   * @return {RelayHttpSocket} This socket
   * @public
   */
  setKeepAlive() {
    return this;
  }

  /**
   * Calls a held write callback.
   *
   * @param {?Error} err The error, if the write will never be taken
   * @private
   */
  _releaseHeld(err) {
    const held = this._held;
    if (held === null) return;
    this._held = null;
    held(err);
  }

  /**
   * Handles one native event of the exchange (see lib/native-events.js).
   *
   * @param {Array} list The event list
   * @param {Number} t The event type
   * @param {Number} at Index of its first field
   * @private
   */
  _handle(list, t, at) {
    const req = this._req;
    switch (t) {
      case EV_BODY:
        if (req !== null && !req.destroyed && !req.push(list[at])) native.httpPause(this._exchange);
        break;
      case EV_BODY_END:
        if (req !== null && !req.destroyed) {
          req.complete = true;
          req.push(null);
        }
        break;
      case EV_DRAINED:
        this._blocked = false;
        if (this._flushOut()) this._releaseHeld(null);
        break;
      case EV_FINISHED:
        this._finished();
        break;
      case EV_ABORTED: {
        const [message, code] = list[at];
        const err = abortedError(message);
        if (code) err.cause = code;
        // Destroyed before `_ended()` could release a held write callback with an error:
        // a destroyed stream takes that error quietly (a live one would emit it). `_over`
        // first: the native side has ended the exchange, nothing to abort there.
        this._over = true;
        if (!this.destroyed) this.destroy();
        this._ended();
        // As Node's server when a connection drops: the socket's close ends the response
        // ('close' without 'finish' if it had not finished), and the request is aborted
        // (if its body was not all read).
        if (req !== null && !req.destroyed) req.destroy(err);
        break;
      }
      default:
    }
  }

  /**
   * The native exchange is over: nothing more comes from it.
   *
   * @private
   */
  _ended() {
    this._over = true;
    unregister(this._exchange);
    if (this._held !== null) this._releaseHeld(abortedError());
    if (this._onOver) this._onOver(this);
  }

  /**
   * The response went out: the socket has served its request.
   *
   * @private
   */
  _finished() {
    // Nothing else to do: the socket holds nothing native, and destroying it here would
    // fail the response's last write callback, still on its way (an error made per
    // request for nothing). The rest of a body the response did not wait for is dropped by
    // the native side.
    if (!this._over) this._ended();
  }
}

module.exports = { RelayHttpSocket, abortedError };
