'use strict';

/**
 * hyco-ws-rs: Azure Relay Hybrid Connections over WebSockets, a drop-in replacement for
 * Microsoft's `hyco-ws`.
 *
 * Like hyco-ws, the module's export is ws's `WebSocket` class carrying the relay API as
 * extra properties, so `require('hyco-ws')` can become `require('hyco-ws-rs')` unchanged.
 * Unlike hyco-ws it does not write those properties onto ws's class (which every other user
 * of `ws` in the process shares): the export is a read-through view of `WebSocket` with the
 * relay API layered on top.
 */

const WebSocket = require('ws');

const { getInboundBudget, setInboundBudget } = require('./lib/budget');
const helpers = require('./lib/helpers');
const { relayedFetch } = require('./lib/http/fetch');
const { overlayOn } = require('./lib/overlay');
const { LocalRelay, startLocalRelay } = require('./lib/local-relay');
const { relayedConnect } = require('./lib/connect');
const { RelayedWebSocket } = require('./lib/websocket');
const { RelayedServer, createRelayedServer } = require('./lib/relayed-server');

/**
 * Everything the package adds to ws's exports. Assignments to the module's export land
 * here too, never on ws's class.
 *
 * @private
 */
const overlay = {
  ...helpers,
  LocalRelay,
  startLocalRelay,
  relayedConnect,
  createRelayedConnection: relayedConnect,
  relayedFetch,
  RelayedWebSocket,
  RelayedServer,
  createRelayedServer,
  setInboundBudget,
  getInboundBudget,
  // ws 8's own named exports, so `const { WebSocketServer } = require('hyco-ws-rs')` works
  // exactly as with ws (these are ws's objects, unchanged).
  WebSocket,
  WebSocketServer: WebSocket.WebSocketServer,
  Server: WebSocket.Server,
  createWebSocketStream: WebSocket.createWebSocketStream,
  extension: WebSocket.extension,
  PerMessageDeflate: WebSocket.PerMessageDeflate,
  Receiver: WebSocket.Receiver,
  Sender: WebSocket.Sender,
  subprotocol: WebSocket.subprotocol
};

module.exports = overlayOn(WebSocket, overlay);

