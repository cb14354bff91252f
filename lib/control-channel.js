'use strict';

/**
 * `server.controlChannel`: what hyco-ws code does with a listener's control channel, over
 * the native one. In hyco-ws it was the ws client itself, re-created on every reconnect; code
 * written for it reads its `readyState`, calls `close()` to force a reconnect, and watches the
 * service's messages through `onmessage` (wrapping the previous handler). Here it is one
 * object for the server's life whose state follows the native channel's: the channel itself
 * stays in Rust, and the messages JavaScript sees are copies (the native side has already
 * acted on each one, or does so right after), sent only while something listens.
 */

const EventEmitter = require('events');
const WebSocket = require('ws');

/**
 * The handler `onmessage` holds until code sets another: it does nothing, as the native
 * channel handles every message itself, and it is there so that code that wraps the previous
 * handler and calls it (`original.call(this, event)`) works.
 *
 * @private
 */
function nativeHandles() {}

/** The `on*` attributes, by event. */
const ATTRIBUTES = ['open', 'close', 'error', 'message'];

/**
 * A listener's control channel, as hyco-ws code sees it.
 *
 * @extends EventEmitter
 */
class ControlChannel extends EventEmitter {
  /**
   * @param {RelayedServer} server The server whose channel this is
   */
  constructor(server) {
    super();
    this._server = server;
    this._isOpen = false;
    this._handlers = { open: null, close: null, error: null, message: nativeHandles };
  }

  /**
   * ws's ready state: `OPEN` while the channel is open, `CONNECTING` while the server
   * (re)connects, `CLOSING` while it closes, `CLOSED` once it has.
   *
   * @type {Number}
   */
  get readyState() {
    const server = this._server;
    if (server._state === 'closed') return WebSocket.CLOSED;
    if (server._state === 'closing') return WebSocket.CLOSING;
    return server.status === 'online' ? WebSocket.OPEN : WebSocket.CONNECTING;
  }

  /**
   * The listen address.
   *
   * @type {String}
   */
  get url() {
    return this._server.listenUri;
  }

  /**
   * Closes the channel (1000) and has the server open a new one at once, as closing
   * hyco-ws's channel did; after the server's `close()`, does nothing.
   *
   * @public
   */
  close() {
    this._server._reopenControlChannel();
  }

  /**
   * Closes the channel for good: the server's `close()`.
   *
   * @public
   */
  terminate() {
    this._server.close();
  }

  /**
   * EventEmitter's, turning the native copy of messages on for the first 'message'
   * listener.
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {ControlChannel} This channel
   * @public
   */
  addListener(event, listener) {
    super.addListener(event, listener);
    if (event === 'message') this._tap();
    return this;
  }

  /**
   * EventEmitter's, turning the native copy of messages on for the first 'message'
   * listener.
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {ControlChannel} This channel
   * @public
   */
  prependListener(event, listener) {
    super.prependListener(event, listener);
    if (event === 'message') this._tap();
    return this;
  }

  /**
   * EventEmitter's, turning the native copy of messages off when nothing is left to see
   * them.
   *
   * @param {(String|Symbol)} event The event
   * @param {Function} listener The listener
   * @return {ControlChannel} This channel
   * @public
   */
  removeListener(event, listener) {
    super.removeListener(event, listener);
    if (event === 'message') this._tap();
    return this;
  }

  /**
   * EventEmitter's, turning the native copy of messages off when nothing is left to see
   * them.
   *
   * @param {(String|Symbol)} [event] The event (all when left out)
   * @return {ControlChannel} This channel
   * @public
   */
  removeAllListeners(event) {
    if (arguments.length === 0) super.removeAllListeners();
    else super.removeAllListeners(event);
    this._tap();
    return this;
  }

  /**
   * Turns the native copy of control messages on while something wants them: a 'message'
   * listener, or an `onmessage` other than the default.
   *
   * @private
   */
  _tap() {
    const handler = this._handlers.message;
    const wanted = this.listenerCount('message') > 0 || (handler !== null && handler !== nativeHandles);
    if (wanted !== Boolean(this._tapOn)) {
      this._tapOn = wanted;
      this._server._setControlTap(wanted);
    }
  }

  /**
   * Calls the `on<event>` attribute's handler, as ws's do, with an event object.
   *
   * @param {String} type The event
   * @param {Object} fields The event object's fields
   * @private
   */
  _attribute(type, fields) {
    const handler = this._handlers[type];
    if (typeof handler === 'function') handler.call(this, { type, target: this, ...fields });
  }

  /**
   * The channel opened.
   *
   * @private
   */
  _opened() {
    this._isOpen = true;
    this._attribute('open', {});
    this.emit('open');
  }

  /**
   * The channel closed: lost (it is reopened), asked for, or the server stopped.
   *
   * @param {?Error} err Why, if not asked for
   * @private
   */
  _closed(err) {
    if (!this._isOpen) return;
    this._isOpen = false;
    const code = err ? 1006 : 1000;
    const reason = err ? err.message : '';
    this._attribute('close', { code, reason, wasClean: !err });
    this.emit('close', code, reason);
  }

  /**
   * An attempt to open the channel failed (it is retried).
   *
   * @param {Error} err Why
   * @private
   */
  _failed(err) {
    this._attribute('error', { error: err, message: err.message });
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /**
   * A text message from the service, as it came.
   *
   * @param {String} text The message
   * @private
   */
  _message(text) {
    this._attribute('message', { data: text });
    this.emit('message', text);
  }
}

for (const type of ATTRIBUTES) {
  Object.defineProperty(ControlChannel.prototype, `on${type}`, {
    enumerable: true,
    configurable: true,
    /**
     * @return {?Function} The handler
     */
    get() {
      return this._handlers[type];
    },
    /**
     * @param {?Function} handler The handler (anything else clears it)
     */
    set(handler) {
      this._handlers[type] = typeof handler === 'function' ? handler : null;
      if (type === 'message') this._tap();
    }
  });
}

// EventEmitter's `on` and `off` are its own `addListener` and `removeListener`, not calls to
// them: point them at the overrides above.
ControlChannel.prototype.on = ControlChannel.prototype.addListener;
ControlChannel.prototype.off = ControlChannel.prototype.removeListener;

module.exports = { ControlChannel };
