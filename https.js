'use strict';

/**
 * `hyco-ws-rs/https`: a drop-in replacement for Microsoft's `hyco-https`. As with
 * hyco-https, the module's export is Node's `https` module with the relay API on top
 * (`createRelayedServer(options, requestListener)`, `createRelayHttpsUri`, the token and
 * address helpers), so `require('hyco-https')` can become `require('hyco-ws-rs/https')`
 * unchanged. Unlike hyco-https it does not replace `https.Server` or `ServerResponse` for
 * the whole process: the export is a read-through view of Node's `https` with the relay API
 * layered on top.
 */

const https = require('https');
const { ServerResponse } = require('http');

const helpers = require('./lib/helpers');
const { relayedFetch } = require('./lib/http/fetch');
const { RelayedHttpServer, createRelayedServer } = require('./lib/http/server');
const { LocalRelay, startLocalRelay } = require('./lib/local-relay');
const { overlayOn } = require('./lib/overlay');

module.exports = overlayOn(https, {
  ...helpers,
  createRelayedServer,
  Server: RelayedHttpServer,
  RelayedHttpServer,
  // Requests are answered with Node's own ServerResponse (hyco-https had a class of its own).
  ServerResponse,
  relayedFetch,
  LocalRelay,
  startLocalRelay
});
