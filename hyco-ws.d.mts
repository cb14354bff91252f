// Types of `hyco-ws-rs/hyco-ws`'s ES module entry point, hyco-ws.mjs:
// `import hyco, { … } from 'hyco-ws-rs/hyco-ws'`. Every declaration lives in hyco-ws.d.ts;
// this file gives its namespace's names as named exports (values and types alike) and its
// export as the default export. __test__/types-package.test.mjs compares the two lists, and
// hyco-ws.mjs's exports with this file's values.

import hyco from './hyco-ws.js';

export default hyco;

// ws 8, with this entry point's sockets
export import WebSocket = hyco.WebSocket;
export import WebSocketServer = hyco.WebSocketServer;
export import Server = hyco.Server;
export import MessageFlags = hyco.MessageFlags;
export import SocketEvents = hyco.SocketEvents;
export import createWebSocketStream = hyco.createWebSocketStream;
export import extension = hyco.extension;
export import subprotocol = hyco.subprotocol;
export import PerMessageDeflate = hyco.PerMessageDeflate;
export import Receiver = hyco.Receiver;
export import Sender = hyco.Sender;
export import RawData = hyco.RawData;
export import Data = hyco.Data;
export import CertMeta = hyco.CertMeta;
export import VerifyClientCallbackSync = hyco.VerifyClientCallbackSync;
export import VerifyClientCallbackAsync = hyco.VerifyClientCallbackAsync;
export import FinishRequestCallback = hyco.FinishRequestCallback;
export import ClientOptions = hyco.ClientOptions;
export import PerMessageDeflateOptions = hyco.PerMessageDeflateOptions;
export import Event = hyco.Event;
export import ErrorEvent = hyco.ErrorEvent;
export import CloseEvent = hyco.CloseEvent;
export import MessageEvent = hyco.MessageEvent;
export import WebSocketEventMap = hyco.WebSocketEventMap;
export import EventListenerOptions = hyco.EventListenerOptions;
export import ServerOptions = hyco.ServerOptions;
export import AddressInfo = hyco.AddressInfo;

// Relay addresses and tokens
export import createRelayBaseUri = hyco.createRelayBaseUri;
export import createRelayListenUri = hyco.createRelayListenUri;
export import createRelaySendUri = hyco.createRelaySendUri;
export import createRelayHttpsUri = hyco.createRelayHttpsUri;
export import createRelayToken = hyco.createRelayToken;
export import appendRelayToken = hyco.appendRelayToken;
export import parseRelayToken = hyco.parseRelayToken;
export import RelayTokenInfo = hyco.RelayTokenInfo;
export import parseConnectionString = hyco.parseConnectionString;
export import RelayConnectionInfo = hyco.RelayConnectionInfo;

// The local relay emulator
export import startLocalRelay = hyco.startLocalRelay;
export import setInboundBudget = hyco.setInboundBudget;
export import getInboundBudget = hyco.getInboundBudget;
export import LocalRelay = hyco.LocalRelay;
export import LocalRelayOptions = hyco.LocalRelayOptions;
export import LocalRelayEvent = hyco.LocalRelayEvent;
export import LocalRelayStats = hyco.LocalRelayStats;
export import RelayRight = hyco.RelayRight;
export import RelayEntraRole = hyco.RelayEntraRole;
export import EntraTokenOptions = hyco.EntraTokenOptions;

// The sender
export import relayedConnect = hyco.relayedConnect;
export import createRelayedConnection = hyco.createRelayedConnection;
export import RelayedConnectOptions = hyco.RelayedConnectOptions;
export import RelayedConnectError = hyco.RelayedConnectError;
export import RelayedWebSocket = hyco.RelayedWebSocket;
export import RelayAccessToken = hyco.RelayAccessToken;
export import RelayTokenCredential = hyco.RelayTokenCredential;
export import RelayProxy = hyco.RelayProxy;
export import TokenProvider = hyco.TokenProvider;

// The listener
export import createRelayedServer = hyco.createRelayedServer;
export import RelayedServer = hyco.RelayedServer;
export import RelayedServerOptions = hyco.RelayedServerOptions;
export import RelayedServerOptionsWithDefaults = hyco.RelayedServerOptionsWithDefaults;
export import RelayedServerEvents = hyco.RelayedServerEvents;
export import HybridConnectionWebSocketServer = hyco.HybridConnectionWebSocketServer;
export import RelayedRequest = hyco.RelayedRequest;
export import RelayedVerifyInfo = hyco.RelayedVerifyInfo;
export import OfferedProtocols = hyco.OfferedProtocols;
export import RelayedControlChannel = hyco.RelayedControlChannel;
export import RelayedControlChannelEvents = hyco.RelayedControlChannelEvents;
export import RelayedControlChannelEventMap = hyco.RelayedControlChannelEventMap;

// HTTP senders
export import relayedFetch = hyco.relayedFetch;
export import RelayedFetchInit = hyco.RelayedFetchInit;
export import RelayRefusedError = hyco.RelayRefusedError;
