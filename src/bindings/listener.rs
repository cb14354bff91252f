//! Bindings for the listener's control channel (`RelayedServer`). Events go up through one
//! ThreadsafeFunction, batched like the socket's; it keeps the process alive until the
//! listener's final `closed` event is delivered.

use std::sync::Arc;
use std::time::Duration;

use hyco_core::listener::{
    self, ListenerCommand, ListenerEvent, ListenerHandle, ListenerOptions, ListenerSink,
};
use hyco_core::socket::SocketError;
use napi::bindgen_prelude::{Buffer, Function};
use napi::Status;
use napi_derive::napi;

use crate::bindings::event_queue::{Batch, EventQueue};

/// Options of `listen`, checked by `lib/relayed-server.js`.
#[napi(object)]
pub struct NativeListenOptions {
    /// The listen address, without a token.
    pub url: String,
    /// The token is a fixed string.
    pub static_token: bool,
    /// Keep-alive ping interval, ms; 0 disables.
    pub keep_alive_ms: f64,
    /// How long a ping may go unanswered, ms.
    pub pong_timeout_ms: f64,
    /// Reconnect delays, ms.
    pub reconnect_delays_ms: Vec<f64>,
    /// Extra trusted certificates, PEM.
    pub ca: Option<Vec<Buffer>>,
}

/// An error, as JavaScript receives it.
#[napi(object)]
pub struct ListenerErrorJs {
    /// Message.
    pub message: String,
    /// Code.
    pub code: Option<String>,
    /// HTTP status of a refused handshake.
    pub status_code: Option<u32>,
    /// Its reason phrase.
    pub status_description: Option<String>,
}

/// A listener event: `t` names it; the other fields are set as the kind needs.
#[napi(object)]
pub struct ListenerEventJs {
    /// `needToken`, `connecting`, `online`, `offline`, `accept`, `renewed`,
    /// `tokenExpiring`, `tokenError`, `closed`.
    pub t: String,
    /// needToken: the request number.
    pub request: Option<f64>,
    /// needToken: for a renewal.
    pub renewal: Option<bool>,
    /// connecting: the wait before the attempt, ms.
    pub delay_ms: Option<f64>,
    /// connecting, offline, closed: the error.
    pub error: Option<ListenerErrorJs>,
    /// accept: the rendezvous id.
    pub id: Option<String>,
    /// accept: the accept address.
    pub address: Option<String>,
    /// accept: the sender's headers, as [name, value] pairs.
    pub headers: Option<Vec<Vec<String>>>,
    /// accept: the sender's address.
    pub remote_address: Option<String>,
    /// accept: the sender's port.
    pub remote_port: Option<u32>,
    /// tokenExpiring: the expiry, Unix seconds.
    pub expires_at: Option<f64>,
    /// tokenError: the provider's message.
    pub message: Option<String>,
}

impl ListenerEventJs {
    fn of(t: &str) -> Self {
        ListenerEventJs {
            t: t.to_owned(),
            request: None,
            renewal: None,
            delay_ms: None,
            error: None,
            id: None,
            address: None,
            headers: None,
            remote_address: None,
            remote_port: None,
            expires_at: None,
            message: None,
        }
    }
}

/// A core error for JavaScript.
pub fn error_js(e: SocketError) -> ListenerErrorJs {
    ListenerErrorJs {
        message: e.message,
        code: e.code,
        status_code: e.status_code.map(u32::from),
        status_description: e.status_description,
    }
}

fn to_js(e: ListenerEvent) -> ListenerEventJs {
    match e {
        ListenerEvent::NeedToken { request, renewal } => ListenerEventJs {
            request: Some(request as f64),
            renewal: Some(renewal),
            ..ListenerEventJs::of("needToken")
        },
        ListenerEvent::Connecting { error, delay_ms } => ListenerEventJs {
            error: error.map(error_js),
            delay_ms: Some(delay_ms as f64),
            ..ListenerEventJs::of("connecting")
        },
        ListenerEvent::Online => ListenerEventJs::of("online"),
        ListenerEvent::Offline { error } => ListenerEventJs {
            error: Some(error_js(error)),
            ..ListenerEventJs::of("offline")
        },
        ListenerEvent::Accept(a) => ListenerEventJs {
            id: Some(a.id),
            address: Some(a.address),
            headers: Some(a.headers.into_iter().map(|(k, v)| vec![k, v]).collect()),
            remote_address: a.remote_address,
            remote_port: a.remote_port.map(u32::from),
            ..ListenerEventJs::of("accept")
        },
        ListenerEvent::Renewed => ListenerEventJs::of("renewed"),
        ListenerEvent::TokenExpiring { expires_at } => ListenerEventJs {
            expires_at: Some(expires_at as f64),
            ..ListenerEventJs::of("tokenExpiring")
        },
        ListenerEvent::TokenError { message } => ListenerEventJs {
            message: Some(message),
            ..ListenerEventJs::of("tokenError")
        },
        ListenerEvent::Closed { error } => ListenerEventJs {
            error: error.map(error_js),
            ..ListenerEventJs::of("closed")
        },
    }
}

/// The listener's event queue (see `event_queue`).
struct Queue(Arc<EventQueue<ListenerEvent, ListenerEventJs>>);

impl ListenerSink for Queue {
    fn push(&self, event: ListenerEvent) {
        self.0.push(event);
    }
}

fn buffers(ca: Option<Vec<Buffer>>) -> Vec<Vec<u8>> {
    ca.unwrap_or_default()
        .into_iter()
        .map(|b| b.to_vec())
        .collect()
}

/// A listener.
#[napi]
pub struct NativeListener {
    handle: ListenerHandle,
}

/// Starts a listener; `onEvents(events)` receives batches of events, the last being `closed`.
#[napi(js_name = "listen")]
pub fn listen(
    options: NativeListenOptions,
    on_events: Function<Vec<ListenerEventJs>, ()>,
) -> napi::Result<NativeListener> {
    let queue = EventQueue::new(on_events, |drained: Vec<ListenerEvent>| {
        let last = drained
            .iter()
            .any(|e| matches!(e, ListenerEvent::Closed { .. }));
        Batch {
            items: drained.into_iter().map(to_js).collect(),
            last,
        }
    })?;
    let mut opts = ListenerOptions::new(options.url);
    opts.static_token = options.static_token;
    opts.keep_alive =
        (options.keep_alive_ms > 0.0).then(|| Duration::from_millis(options.keep_alive_ms as u64));
    opts.pong_timeout = Duration::from_millis(options.pong_timeout_ms.max(1.0) as u64);
    opts.reconnect_delays = options
        .reconnect_delays_ms
        .iter()
        .map(|ms| Duration::from_millis(ms.max(0.0) as u64))
        .collect();
    opts.ca = buffers(options.ca);
    let sink: Arc<dyn ListenerSink> = Arc::new(Queue(queue));
    let handle = napi::bindgen_prelude::within_runtime_if_available(|| listener::start(opts, sink));
    Ok(NativeListener { handle })
}

#[napi]
impl NativeListener {
    /// Answers a `needToken` event with a token or the provider's error.
    #[napi]
    pub fn provide_token(
        &self,
        request: f64,
        token: Option<String>,
        error: Option<String>,
    ) -> bool {
        let result = match token {
            Some(t) => Ok(t),
            None => Err(error.unwrap_or_else(|| "the token provider failed".into())),
        };
        self.handle.send(ListenerCommand::Token {
            request: request as u64,
            result,
        })
    }

    /// Closes the control channel (1000) and stops.
    #[napi]
    pub fn close(&self) -> bool {
        self.handle.send(ListenerCommand::Close)
    }
}

/// Rejects a rendezvous; resolves when the service answered 410.
#[napi(js_name = "rejectRendezvous")]
pub async fn reject_rendezvous(
    address: String,
    timeout_ms: f64,
    ca: Option<Vec<Buffer>>,
) -> napi::Result<()> {
    let ca = buffers(ca);
    listener::reject(
        &address,
        Duration::from_millis(timeout_ms.max(1.0) as u64),
        &ca,
    )
    .await
    .map_err(|e| napi::Error::new(Status::GenericFailure, e.message))
}
