'use strict';

/**
 * The sockets of the `hyco-ws-rs/hyco-ws` entry point: ws 8's client and the relayed socket,
 * each delivering messages as hyco-ws did (see messages.js), and the client taking hyco-ws's
 * `new WebSocket(address, null, options)` (ws 8 refuses a `null` subprotocol list).
 */

const EventEmitter = require('events');
const WebSocket = require('ws');

const { RelayedWebSocket } = require('../websocket');
const { legacyMessage } = require('./messages');

/**
 * ws 8's `WebSocket` as hyco-ws code uses it.
 *
 * @extends WebSocket
 */
class HycoWsWebSocket extends WebSocket {
  /**
   * @param {(String|URL|null)} address The address (`null` for a server's socket)
   * @param {(String|String[]|Object|null)} [protocols] Subprotocols; `null` for none, as
   *     ws 1 and 7 read it
   * @param {Object} [options] ws's options
   */
  constructor(address, protocols, options) {
    super(address, protocols === null ? undefined : protocols, options);
  }

  /**
   * `instanceof` the entry point's `WebSocket` holds for every socket it makes, relayed
   * ones (`HycoWsRelayedWebSocket`, not a subclass of this one) included, as in hyco-ws.
   * A subclass of it keeps the usual meaning.
   *
   * @param {*} value The value
   * @return {Boolean} Whether it is a WebSocket
   */
  static [Symbol.hasInstance](value) {
    if (this.prototype !== HycoWsWebSocket.prototype) return Function.prototype[Symbol.hasInstance].call(this, value);
    return value instanceof WebSocket;
  }
}

/**
 * A relayed socket (from `relayedConnect` or a `RelayedServer`) with messages in hyco-ws's
 * form.
 *
 * @extends RelayedWebSocket
 */
class HycoWsRelayedWebSocket extends RelayedWebSocket {}

/**
 * EventEmitter's `emit`, with `'message'` (and the `'close'` reason) in hyco-ws's form: the `emit` of both classes
 * above (neither ws's class nor RelayedWebSocket has an `emit` of its own).
 *
 * @param {(String|Symbol)} event The event
 * @param {...*} args Its arguments
 * @return {Boolean} Whether it had listeners
 * @private
 */
function emitInHycoWsForm(event, ...args) {
  if (event === 'message') return EventEmitter.prototype.emit.call(this, 'message', ...legacyMessage(args[0], args[1]));
  // ws 1.1 and 7 gave the close reason as a string (ws 8: a Buffer).
  if (event === 'close') return EventEmitter.prototype.emit.call(this, 'close', args[0], String(args[1]));
  return EventEmitter.prototype.emit.call(this, event, ...args);
}

HycoWsWebSocket.prototype.emit = emitInHycoWsForm;
HycoWsRelayedWebSocket.prototype.emit = emitInHycoWsForm;

/**
 * ws 8's `WebSocketServer`, whose sockets are `HycoWsWebSocket`s.
 *
 * @extends WebSocket.WebSocketServer
 */
class HycoWsServer extends WebSocket.WebSocketServer {
  /**
   * @param {Object} options ws's options
   * @param {Function} [callback] A 'listening' listener
   */
  constructor(options, callback) {
    super({ WebSocket: HycoWsWebSocket, ...options }, callback);
  }
}

module.exports = { HycoWsRelayedWebSocket, HycoWsServer, HycoWsWebSocket };
