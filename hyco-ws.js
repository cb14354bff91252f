'use strict';

/**
 * `hyco-ws-rs/hyco-ws`: the package for code written against Microsoft's `hyco-ws`, which
 * ran on ws 1.1 (and ws 7 in its repository). `require('hyco-ws')` becomes
 * `require('hyco-ws-rs/hyco-ws')` and nothing else changes: the same API as the main entry
 * point, with hyco-ws's habits where ws 8 differs:
 *
 * - text messages arrive as strings, `'message'` gets `(data, flags)` with `flags.binary`;
 * - `new WebSocket(address, null, options)` works (ws 8 refuses a `null` protocol list);
 * - a `RelayedServer`'s `clients` is an array, `'listening'` comes each time the control
 *   channel opens, each failed attempt is an `'error'` (when something listens for it), and
 *   its connections close with 1000 when it closes;
 * - accepted sockets emit 'open' after 'connection', close reasons are strings, and every
 *   socket is an instance of the export (which is its own `WebSocket`);
 * - the helpers take what hyco-ws took where the result is well defined: an empty path, an
 *   empty key, a negative lifetime, a lifetime as a string of digits, a key as a Buffer, a
 *   number as the id or token; options hyco-ws defaulted to null may be null.
 *
 * The main entry point (`require('hyco-ws-rs')`) keeps ws 8's behaviour.
 */

const WebSocket = require('ws');

const { getInboundBudget, setInboundBudget } = require('./lib/budget');
const helpers = require('./lib/helpers').withHycoWsRules;
const { connectAs } = require('./lib/connect');
const { relayedFetch } = require('./lib/http/fetch');
const { HycoWsRelayedServer, createRelayedServer } = require('./lib/hyco-ws/server');
const { HycoWsRelayedWebSocket, HycoWsServer, HycoWsWebSocket } = require('./lib/hyco-ws/websocket');
const { LocalRelay, startLocalRelay } = require('./lib/local-relay');
const { overlayOn } = require('./lib/overlay');

/**
 * hyco-ws's `relayedConnect(address, token[, options][, fn])`: a sender whose messages
 * arrive as hyco-ws's did.
 *
 * @param {(String|URL)} address The sender address
 * @param {?(String|Function)} token A token, a token function, or `null`
 * @param {Object} [options] As the main entry point's `relayedConnect`
 * @param {Function} [fn] Called with the socket on 'open'
 * @return {HycoWsRelayedWebSocket} The socket, in CONNECTING
 * @public
 */
function relayedConnect(address, token, options, fn) {
  return connectAs(HycoWsRelayedWebSocket, address, token, options, fn);
}

module.exports = overlayOn(HycoWsWebSocket, {
  ...helpers,
  LocalRelay,
  startLocalRelay,
  relayedConnect,
  createRelayedConnection: relayedConnect,
  relayedFetch,
  RelayedWebSocket: HycoWsRelayedWebSocket,
  RelayedServer: HycoWsRelayedServer,
  createRelayedServer,
  setInboundBudget,
  getInboundBudget,
  WebSocketServer: HycoWsServer,
  Server: HycoWsServer,
  createWebSocketStream: WebSocket.createWebSocketStream,
  extension: WebSocket.extension,
  PerMessageDeflate: WebSocket.PerMessageDeflate,
  Receiver: WebSocket.Receiver,
  Sender: WebSocket.Sender,
  subprotocol: WebSocket.subprotocol
});

// `WebSocket` is the export itself, relay helpers included, as its declaration says (and as
// `require('ws').WebSocket === require('ws')`).
module.exports.WebSocket = module.exports;
