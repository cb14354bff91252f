// Type definitions for `hyco-ws-rs/https`, the replacement of Microsoft's `hyco-https`: Node's
// `https` module with the relay API layered on top. `import` reads https.d.mts, which
// re-exports this namespace's names.

/// <reference types="node" />

import https = require('https');
import http = require('http');
import hyco = require('./index.js');

declare namespace relayHttps {
  // Node's https, re-exported unchanged
  export import request = https.request;
  export import get = https.get;
  export import Agent = https.Agent;
  export import globalAgent = https.globalAgent;
  export import createServer = https.createServer;
  export import AgentOptions = https.AgentOptions;
  export import RequestOptions = https.RequestOptions;
  export import ServerOptions = https.ServerOptions;

  // The relay's addresses and tokens, as in hyco-https
  export import createRelayBaseUri = hyco.createRelayBaseUri;
  export import createRelayHttpsUri = hyco.createRelayHttpsUri;
  export import createRelayListenUri = hyco.createRelayListenUri;
  export import createRelaySendUri = hyco.createRelaySendUri;
  export import createRelayToken = hyco.createRelayToken;
  export import appendRelayToken = hyco.appendRelayToken;
  export import parseRelayToken = hyco.parseRelayToken;
  export import parseConnectionString = hyco.parseConnectionString;

  // Senders, and the local relay
  export import relayedFetch = hyco.relayedFetch;
  export import startLocalRelay = hyco.startLocalRelay;
  export import LocalRelay = hyco.LocalRelay;

  /** Node's own `ServerResponse`: the class of every `res` (hyco-https had one of its own). */
  export import ServerResponse = http.ServerResponse;

  /** hyco-https's `Server`: a {@link hyco.RelayedServer} whose second argument is the
   * 'request' listener. */
  class RelayedHttpServer extends hyco.RelayedServer {
    constructor(options: hyco.RelayedServerOptions, requestListener?: hyco.RelayedServerEvents['request']);
    /** Calls `callback` once the server listens (it listens from its construction). */
    listen(callback?: () => void): this;
    /** Adds `callback` as a 'timeout' listener; a relayed request's time is the relay's. */
    setTimeout(msecs?: number, callback?: () => void): this;
  }
  /** hyco-https's name of {@link RelayedHttpServer}. */
  const Server: typeof RelayedHttpServer;
  type Server = RelayedHttpServer;

  /** hyco-https's factory: a server with `requestListener` as its 'request' listener. */
  function createRelayedServer(
    options: hyco.RelayedServerOptions,
    requestListener?: hyco.RelayedServerEvents['request']
  ): RelayedHttpServer;
}

export = relayHttps;
