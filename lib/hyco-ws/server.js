'use strict';

/**
 * The `RelayedServer` of the `hyco-ws-rs/hyco-ws` entry point: this package's listener with
 * hyco-ws's habits, for code written against it. `clients` is an array; accepted sockets
 * deliver messages as hyco-ws did, and emit `'open'` after `'connection'`; `'listening'` comes each time the control channel opens;
 * every failed attempt to open it is an `'error'` (when an `'error'` listener exists; the
 * server retries all the same); closing the server closes its connections with a plain
 * 1000.
 */

const WebSocket = require('ws');

const { RelayedServer } = require('../relayed-server');
const { HycoWsRelayedWebSocket } = require('./websocket');

/**
 * A Hybrid Connection listener with hyco-ws's habits.
 *
 * @extends RelayedServer
 */
class HycoWsRelayedServer extends RelayedServer {
  /**
   * Options set to `null` count as absent, as hyco-ws's defaults (`id`, `maxPayload`,
   * `clientTracking`, ... were `null` there) and `server.options` have them.
   *
   * @param {Object} options See RelayedServer
   * @param {Function} [callback] A 'listening' listener
   */
  constructor(options, callback) {
    super(withoutNulls(options), callback);
  }

  /**
   * The control channel is open: 'listening' and 'online', each time, as hyco-ws emitted
   * 'listening' for every channel it opened.
   *
   * @private
   */
  _online() {
    this._listened = true;
    this.emit('listening');
    this.emit('online');
    this.controlChannel._opened();
  }

  /**
   * An attempt to open the control channel failed: 'error', as hyco-ws emitted it for every
   * failed attempt, when something listens (without an 'error' listener hyco-ws crashed the
   * process; this server does not). The server retries regardless.
   *
   * @param {Error} err Why
   * @private
   */
  _attemptFailed(err) {
    super._attemptFailed(err);
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /**
   * An accepted socket is open: 'connection', then the socket's own 'open'. hyco-ws handed
   * over its sockets while they were still connecting (a send() there threw), so its apps
   * greet, and start their work, in 'open'; here the socket is open at 'connection', and
   * that code would never run without this 'open'.
   *
   * @param {RelayedWebSocket} ws The socket
   * @param {Object} req The request
   * @private
   */
  _connected(ws, req) {
    super._connected(ws, req);
    if (ws.readyState === WebSocket.OPEN && this._state === 'running') ws.emit('open');
  }

  /**
   * `clients` is an array, as hyco-ws's, and stays empty without client tracking (hyco-ws
   * made one all the same).
   *
   * @return {Array} The collection
   * @private
   */
  _newClients() {
    return [];
  }

  /**
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _addClient(ws) {
    this.clients.push(ws);
  }

  /**
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _removeClient(ws) {
    const i = this.clients.indexOf(ws);
    if (i !== -1) this.clients.splice(i, 1);
  }

  /**
   * Closes an accepted socket as hyco-ws did when its server closed: a plain close (1000);
   * one still in its handshake the same way once open (`_connected`), as the base server
   * does: terminated now, its sender would wait for the service's accept timeout (504).
   *
   * @param {RelayedWebSocket} ws The socket
   * @private
   */
  _shutDown(ws) {
    if (ws.readyState === WebSocket.OPEN) ws.close(1000);
    else if (ws.readyState !== WebSocket.CONNECTING) ws.terminate();
  }
}

// The options hyco-ws (and ws 1.1 under it) defaulted to null, or `server.options` carries
// as null: null there is absent. Any other option set to null is still refused.
const HYCO_WS_NULLS = new Set([
  'server',
  'token',
  'id',
  'verifyClient',
  'handleProtocols',
  'clientTracking',
  'maxPayload',
  'perMessageDeflate',
  'path',
  'backlog',
  'disableHixie'
]);

/**
 * `options` without the `null` values of `HYCO_WS_NULLS` (anything else, a non-object
 * included, as given: the server's own checks report it).
 *
 * @param {*} options The options
 * @return {*} The options to check
 * @private
 */
function withoutNulls(options) {
  if (options === null || typeof options !== 'object') return options;
  return Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== null || !HYCO_WS_NULLS.has(k)));
}

/** Accepted sockets deliver messages as hyco-ws's did. */
HycoWsRelayedServer.prototype._Socket = HycoWsRelayedWebSocket;

/**
 * hyco-ws's factory: a `HycoWsRelayedServer` with `fn` as its 'connection' listener.
 *
 * @param {Object} options See RelayedServer
 * @param {Function} [fn] Called with (socket, req) for each connection
 * @return {HycoWsRelayedServer} The server
 * @public
 */
function createRelayedServer(options, fn) {
  const server = new HycoWsRelayedServer(options);
  if (typeof fn === 'function') server.on('connection', fn);
  return server;
}

module.exports = { HycoWsRelayedServer, createRelayedServer };
