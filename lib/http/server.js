'use strict';

/**
 * hyco-https's server: a `RelayedServer` whose second constructor argument is the
 * `'request'` listener (as with Node's `https.Server`), with hyco-https's `listen()`.
 */

const { RelayedServer } = require('../relayed-server');

/**
 * An HTTP listener on a Hybrid Connection, as hyco-https's `Server`.
 *
 * @extends RelayedServer
 */
class RelayedHttpServer extends RelayedServer {
  /**
   * Starts listening.
   *
   * @param {Object} options As `RelayedServer`'s
   * @param {Function} [requestListener] A 'request' listener
   */
  constructor(options, requestListener) {
    super(options);
    if (typeof requestListener === 'function') this.on('request', requestListener);
  }

  /**
   * hyco-https's `listen()`: the server listens from its construction; `callback` is
   * called once it does (hyco-https never called it).
   *
   * @param {Function} [callback] Called on 'listening'
   * @return {RelayedHttpServer} This server
   * @public
   */
  listen(callback) {
    const cb = [...arguments].reverse().find((a) => typeof a === 'function');
    if (cb === undefined) return this;
    // 'listening' comes once: a server that listened and is reconnecting has listened. A
    // closed one does not listen: no call.
    if (this._state !== 'running') return this;
    if (this._listened) process.nextTick(cb);
    else this.once('listening', () => cb());
    return this;
  }

  /**
   * Node's `server.setTimeout()`: a relayed request's time is the relay's (60 s), so this
   * only keeps the callback as a 'timeout' listener, as Node's servers do.
   *
   * @param {Number} [msecs] Ignored
   * @param {Function} [callback] Added as a 'timeout' listener
   * @return {RelayedHttpServer} This server
   * @public
   */
  setTimeout(msecs, callback) {
    const cb = typeof msecs === 'function' ? msecs : callback;
    if (typeof cb === 'function') this.on('timeout', cb);
    return this;
  }
}

/**
 * hyco-https's factory: a server with `requestListener` as its 'request' listener.
 *
 * @param {Object} options As `RelayedServer`'s
 * @param {Function} [requestListener] Called with (req, res) for each request
 * @return {RelayedHttpServer} The server
 * @public
 */
function createRelayedServer(options, requestListener) {
  return new RelayedHttpServer(options, requestListener);
}

module.exports = { RelayedHttpServer, createRelayedServer };
