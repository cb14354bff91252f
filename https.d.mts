// Types of `hyco-ws-rs/https`'s ES module entry point, https.mjs. Every declaration lives in
// https.d.ts; this file gives its names as named exports and its export as the default.

import relayHttps from './https.js';

export default relayHttps;

export import request = relayHttps.request;
export import get = relayHttps.get;
export import Agent = relayHttps.Agent;
export import globalAgent = relayHttps.globalAgent;
export import createServer = relayHttps.createServer;
export import AgentOptions = relayHttps.AgentOptions;
export import RequestOptions = relayHttps.RequestOptions;
export import ServerOptions = relayHttps.ServerOptions;
export import createRelayBaseUri = relayHttps.createRelayBaseUri;
export import createRelayHttpsUri = relayHttps.createRelayHttpsUri;
export import createRelayListenUri = relayHttps.createRelayListenUri;
export import createRelaySendUri = relayHttps.createRelaySendUri;
export import createRelayToken = relayHttps.createRelayToken;
export import appendRelayToken = relayHttps.appendRelayToken;
export import parseRelayToken = relayHttps.parseRelayToken;
export import parseConnectionString = relayHttps.parseConnectionString;
export import relayedFetch = relayHttps.relayedFetch;
export import startLocalRelay = relayHttps.startLocalRelay;
export import LocalRelay = relayHttps.LocalRelay;
export import ServerResponse = relayHttps.ServerResponse;
export import RelayedHttpServer = relayHttps.RelayedHttpServer;
export import Server = relayHttps.Server;
export import createRelayedServer = relayHttps.createRelayedServer;
