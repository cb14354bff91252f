//! The listener's control channel: one WebSocket to the service at a time, kept alive with
//! pings, its token renewed before it expires, reconnected after every loss with backoff.
//!
//! The owner (the JavaScript `RelayedServer`) supplies tokens on request
//! ([`ListenerEvent::NeedToken`] / [`ListenerCommand::Token`]), decides what to do with each
//! `accept`, and asks for the close. Everything else happens here.

mod accept;
pub mod backoff;
mod channel;
mod control;
pub mod http;
pub mod request;
mod session;
mod spare;
pub mod token;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::socket::{Event, EventSink, Handle, ProxyConfig, SocketError, SocketOptions};

pub use http::{
    hold_inline_responses, Exchange, ExchangeEvent, ExchangeSink, HttpRequest, RequestBody,
};
pub use token::Token;

pub use backoff::Backoff;

/// How the control channel behaves, with its defaults.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// The listen address (`...?sb-hc-action=listen[&sb-hc-id=...]`), without a token.
    pub url: String,
    /// The token is a fixed string: it cannot be renewed, and its coming expiry is reported
    /// instead of renewed.
    pub static_token: bool,
    /// 401 and 403 are final: the token comes from something that does not fix itself (a
    /// fixed token, or a key). Otherwise (a token function, a credential) they are retried
    /// with backoff, as the provider may hand out a good token later.
    pub auth_final: bool,
    /// Ping interval of the control channel; `None` disables keep-alive. Default 30 s.
    pub keep_alive: Option<Duration>,
    /// How long a ping may go unanswered before the channel counts as dead. Default 10 s.
    pub pong_timeout: Duration,
    /// Delays before successive reconnect attempts; the last repeats. Default 0, 1, 2, 5,
    /// 10, 30 s.
    pub reconnect_delays: Vec<Duration>,
    /// Random spread applied to each non-zero delay, as a fraction (0.2 = ±20 %). Default 0.2.
    pub jitter: f64,
    /// Time allowed to open the control channel. Default 30 s.
    pub handshake_timeout: Duration,
    /// Time the owner has to supply a token. Default 30 s.
    pub token_timeout: Duration,
    /// When to renew, as a fraction of the token's remaining life. Default 0.8.
    pub renew_at: f64,
    /// Extra trusted certificates (PEM).
    pub ca: Vec<Vec<u8>>,
    /// The proxies every connection of the listener chooses from (control channel,
    /// accepts, spare connections, HTTP rendezvous); `None`: always direct. Default `None`.
    pub proxy: Option<Arc<ProxyConfig>>,
    /// How connections the listener accepts by itself behave (see
    /// [`ListenerHandle::set_auto_accept`]). Default: [`SocketOptions::default`].
    pub accept_socket: SocketOptions,
    /// Time allowed for an accept handshake the listener makes by itself. Default 20 s.
    pub accept_timeout: Duration,
    /// permessage-deflate for the connections it accepts by itself (as ws's
    /// `WebSocketServer`'s `perMessageDeflate`); `None` (the default, as ws): refused.
    pub deflate: Option<crate::socket::deflate::DeflateOptions>,
    /// The Hybrid Connection's path, for [`AcceptRequest::url`]. Default: from `url`.
    pub entity: String,
    /// After an accept it makes by itself, the listener opens a spare connection to the
    /// same relay endpoint for the next one and keeps it this long at most; `None`: no spare
    /// connections. Default 10 s (the local relay waits 15 s for a request on a connection).
    pub spare_max_age: Option<Duration>,
    /// How long an HTTP request may go unanswered: the service gives up after 60 s (and
    /// answers the sender 504), so this is when the listener gives up on a response too.
    /// Default 60 s.
    pub request_timeout: Duration,
    /// How long a rendezvous socket that carries no request is kept for the sender's next
    /// request. Default 60 s.
    pub rendezvous_idle: Duration,
    /// The control channel may be read on the owner's thread while its traffic is sparse
    /// (see [`ListenerSink::control_inline_wanted`]). Default false: an owner that reads
    /// sockets inline turns it on.
    pub inline_reads: bool,
}

impl ListenerOptions {
    /// Options with the defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        let url = url.into();
        ListenerOptions {
            entity: request::entity_of(&url),
            url,
            static_token: false,
            auth_final: false,
            keep_alive: Some(Duration::from_secs(30)),
            pong_timeout: Duration::from_secs(10),
            reconnect_delays: [0, 1, 2, 5, 10, 30]
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            jitter: 0.2,
            handshake_timeout: Duration::from_secs(30),
            accept_socket: SocketOptions::default(),
            accept_timeout: Duration::from_secs(20),
            deflate: None,
            spare_max_age: Some(Duration::from_secs(10)),
            token_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            rendezvous_idle: Duration::from_secs(60),
            inline_reads: false,
            renew_at: 0.8,
            ca: Vec::new(),
            proxy: None,
        }
    }
}

/// A rendezvous request from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptRequest {
    /// The rendezvous id.
    pub id: String,
    /// The one-time accept address.
    pub address: String,
    /// The sender's handshake headers, as the service passed them.
    pub headers: Vec<(String, String)>,
    /// The sender's address.
    pub remote_address: Option<String>,
    /// The sender's port.
    pub remote_port: Option<u16>,
    /// What the sender asked for below the Hybrid Connection: `req.url` (see
    /// [`request::request_url`]).
    pub url: String,
}

/// What the listener tells its owner.
#[derive(Debug)]
pub enum ListenerEvent {
    /// Supply a token with [`ListenerCommand::Token`] and this request number.
    NeedToken {
        /// Request number.
        request: u64,
        /// For a renewal (true) or a (re)connect (false).
        renewal: bool,
    },
    /// Connecting, after `error` (none for the first attempt), in `delay_ms`.
    Connecting {
        /// What caused this attempt.
        error: Option<SocketError>,
        /// Wait before the attempt.
        delay_ms: u64,
    },
    /// The control channel is open.
    Online,
    /// The control channel was lost.
    Offline {
        /// Why.
        error: SocketError,
    },
    /// A sender wants in.
    Accept(AcceptRequest),
    /// The token was renewed on the open channel.
    Renewed,
    /// A static token will expire soon and cannot be renewed.
    TokenExpiring {
        /// Its expiry, Unix seconds.
        expires_at: u64,
    },
    /// The token provider failed (it is retried).
    TokenError {
        /// The provider's message.
        message: String,
    },
    /// A text message the service sent on the control channel, as it came (UTF-8, lossy),
    /// while the control tap is on ([`ListenerHandle::set_control_tap`]). It is handled
    /// here all the same: this is a copy, pushed before the message takes effect.
    ControlMessage {
        /// The message's text.
        text: String,
    },
    /// The listener stopped: after a close request (`error` none) or a final error.
    Closed {
        /// The final error, if any.
        error: Option<SocketError>,
    },
}

/// Receives a listener's events. Must not block.
pub trait ListenerSink: Send + Sync + 'static {
    /// Takes one event.
    fn push(&self, event: ListenerEvent);

    /// Takes a connection the listener accepts by itself (auto-accept is on and the sender
    /// offered no subprotocol), before it starts: returns the sink for its events, whose
    /// [`crate::socket::Event::Open`] stands for the new connection. `None` (the default)
    /// declines, and the request goes to the owner as [`ListenerEvent::Accept`].
    fn accepted(&self, request: &AcceptRequest, handle: &Handle) -> Option<Arc<dyn EventSink>> {
        let _ = (request, handle);
        None
    }

    /// Takes an HTTP request and the exchange to answer it with (see [`http`]), when HTTP
    /// is on ([`ListenerHandle::set_http`]): returns the sink for the exchange's events.
    /// `None` (the default) declines, and the listener answers 501.
    fn http_request(
        &self,
        request: HttpRequest,
        exchange: &Exchange,
    ) -> Option<Arc<dyn ExchangeSink>> {
        let _ = (request, exchange);
        None
    }

    /// The control channel's traffic is sparse and its socket asks to be read on the
    /// owner's thread (see [`crate::socket::inline`]): the owner starts
    /// [`Handle::start_inline`] on `channel` when it gets to it, and its reads hand the
    /// service's messages to this sink from that thread. Only with
    /// [`ListenerOptions::inline_reads`]. Default: nothing (tokio's threads go on reading).
    fn control_inline_wanted(&self, channel: &Handle) {
        let _ = channel;
    }

    /// The control channel `channel` closed (its socket's last event): an owner that reads
    /// it stops watching it. Default: nothing.
    fn control_closed(&self, channel: &Handle) {
        let _ = channel;
    }
}

/// Forwards a socket's events to a task that reads them in order.
pub(crate) struct ChannelSink(Mutex<mpsc::UnboundedSender<Event>>);

impl ChannelSink {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Event>) -> Self {
        ChannelSink(Mutex::new(tx))
    }
}

impl EventSink for ChannelSink {
    fn push(&self, event: Event) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

/// What the owner tells the listener.
#[derive(Debug)]
pub enum ListenerCommand {
    /// The answer to [`ListenerEvent::NeedToken`].
    Token {
        /// The request number.
        request: u64,
        /// The token, or the provider's error message.
        result: Result<Token, String>,
    },
    /// Close the control channel (1000) and stop.
    Close,
    /// Close the control channel (1000) and open a new one at once (the owner's
    /// `controlChannel.close()`); ignored while no channel is open.
    Reconnect,
}

/// The owner's handle.
#[derive(Clone)]
pub struct ListenerHandle {
    commands: mpsc::UnboundedSender<ListenerCommand>,
    auto_accept: Arc<AtomicBool>,
    http: Arc<AtomicBool>,
    control_tap: Arc<AtomicBool>,
}

impl ListenerHandle {
    /// Sends a command; false when the listener has stopped.
    pub fn send(&self, c: ListenerCommand) -> bool {
        self.commands.send(c).is_ok()
    }

    /// With auto-accept on, the listener accepts senders that offer no subprotocol by
    /// itself and hands them to [`ListenerSink::accepted`], saving the owner's round trip;
    /// an owner that decides per sender (verifies clients, picks subprotocols, adds
    /// headers) leaves it off (the default).
    pub fn set_auto_accept(&self, on: bool) {
        self.auto_accept.store(on, Ordering::SeqCst);
    }

    /// With HTTP on, requests go to [`ListenerSink::http_request`]; off (the default), the
    /// listener answers them 501 itself.
    pub fn set_http(&self, on: bool) {
        self.http.store(on, Ordering::SeqCst);
    }

    /// With the control tap on, every text message the service sends on the control channel
    /// is also pushed to the owner as [`ListenerEvent::ControlMessage`]; off (the default),
    /// nothing is copied.
    pub fn set_control_tap(&self, on: bool) {
        self.control_tap.store(on, Ordering::SeqCst);
    }
}

/// Starts a listener on the current tokio runtime.
pub fn start(options: ListenerOptions, sink: Arc<dyn ListenerSink>) -> ListenerHandle {
    let (tx, rx) = mpsc::unbounded_channel();
    let auto_accept = Arc::new(AtomicBool::new(false));
    let auto = auto_accept.clone();
    let http = Arc::new(AtomicBool::new(false));
    let control_tap = Arc::new(AtomicBool::new(false));
    let switches = channel::Switches {
        auto_accept: auto,
        http: http.clone(),
        control_tap: control_tap.clone(),
    };
    tokio::spawn(async move {
        use futures_util::FutureExt;
        // The owner waits for `Closed` to release its resources: make sure it comes even if
        // the loop panicked (no panic is known; this is the last line of defence).
        let run = std::panic::AssertUnwindSafe(async {
            crate::test_hooks::fire(crate::test_hooks::Site::Listener);
            channel::run(options, sink.clone(), rx, switches).await
        });
        if run.catch_unwind().await.is_err() {
            log::error!("listener: internal error; the listener stopped");
            sink.push(ListenerEvent::Closed {
                error: Some(SocketError::coded(
                    "internal error in the listener",
                    "ERR_INTERNAL",
                )),
            });
        }
    });
    ListenerHandle {
        commands: tx,
        auto_accept,
        http,
        control_tap,
    }
}

/// Rejects a rendezvous: opens `address` (the accept address with `sb-hc-statusCode` and
/// `sb-hc-statusDescription` added), through the proxy `proxy` chooses, which the service
/// answers with 410 Gone on success.
pub async fn reject(
    address: &str,
    timeout: Duration,
    ca: &[Vec<u8>],
    proxy: Option<Arc<ProxyConfig>>,
) -> Result<(), SocketError> {
    let opts = crate::socket::ConnectOptions {
        url: address.to_owned(),
        headers: Vec::new(),
        protocols: Vec::new(),
        handshake_timeout: timeout,
        deflate: None,
        ca: ca.to_vec(),
        proxy,
    };
    match crate::socket::handshake::connect(&opts).await {
        Err(e) if e.status_code == Some(410) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Err(SocketError {
            status_code: Some(101),
            ..SocketError::coded(
                "the service accepted a reject handshake",
                "ERR_UNEXPECTED_RESPONSE",
            )
        }),
    }
}
