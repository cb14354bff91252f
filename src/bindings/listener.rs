//! Bindings for the listener's control channel (`RelayedServer`). JavaScript addresses a
//! listener by the id `listen` returns; its events go up through the environment's hub
//! (`hub.rs`), which keeps the process alive until the listener's final `closed` event is
//! delivered.

use std::sync::Arc;
use std::time::Duration;

use hyco_core::listener::{
    self, AcceptRequest, ListenerCommand, ListenerEvent, ListenerOptions, ListenerSink,
};
use hyco_core::socket::{EventSink, Handle, SocketError};
use napi::bindgen_prelude::Buffer;
use napi::{Env, Status};
use napi_derive::napi;

use crate::bindings::hub::{self, id_of, Hub, Id, Target, Up};
use crate::bindings::socket::SocketSink;

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
    /// Largest message on an accepted connection, bytes (0: none).
    pub max_payload: f64,
    /// Time allowed for an accept handshake, ms.
    pub accept_timeout_ms: f64,
    /// How long a spare connection for the next accept is kept, ms; 0: none.
    pub spare_max_age_ms: f64,
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
    /// accept: the sender's headers as `req.headers` has them, flat: name, value, ...
    pub headers: Option<Vec<String>>,
    /// accept: `req.url`.
    pub url: Option<String>,
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
            url: None,
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
        code: e.code.map(str::to_owned),
        status_code: e.status_code.map(u32::from),
        status_description: e.status_description,
    }
}

/// A sender's headers as `req.headers` has them (lowercased, repeats joined), flat.
pub fn flat_headers(headers: &[(String, String)]) -> Vec<String> {
    listener::request::request_headers(headers)
        .into_iter()
        .flat_map(|(k, v)| [k, v])
        .collect()
}

/// An accept request, as JavaScript receives it.
fn accept_js(a: AcceptRequest) -> ListenerEventJs {
    ListenerEventJs {
        id: Some(a.id),
        address: Some(a.address),
        headers: Some(flat_headers(&a.headers)),
        url: Some(a.url),
        remote_address: a.remote_address,
        remote_port: a.remote_port.map(u32::from),
        ..ListenerEventJs::of("accept")
    }
}

/// A listener event, as JavaScript receives it.
pub fn to_js(e: ListenerEvent) -> ListenerEventJs {
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
        ListenerEvent::Accept(a) => accept_js(a),
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

/// Where a listener's events go: the hub, tagged with its id. Connections it accepts by
/// itself get ids of their own.
struct HubListenerSink {
    id: Id,
    hub: Arc<Hub>,
}

impl ListenerSink for HubListenerSink {
    fn push(&self, event: ListenerEvent) {
        self.hub.push(self.id, Up::Listener(event), None);
    }

    fn accepted(&self, request: &AcceptRequest, handle: &Handle) -> Option<Arc<dyn EventSink>> {
        let id = self.hub.next_id();
        // Registered before this listener can report its close (it is still running), so
        // the hub keeps the process alive for the new socket too. Refused while a worker
        // ends (its listener is being stopped): the sender is not accepted.
        if !self.hub.insert(id, Target::Socket(handle.clone())) {
            return None;
        }
        // Queued now, ahead of the socket's own events; JavaScript is woken for it once the
        // handshake's request is out (`SocketSink::request_sent`), not before: waking it
        // here would delay the request by the wake-up's cost. It then makes the socket
        // object and `req` while the response is on its way.
        self.hub.push_quiet(
            self.id,
            Up::Accepting {
                socket: id,
                request: request.clone(),
            },
            None,
        );
        Some(Arc::new(SocketSink::new(
            id,
            self.hub.clone(),
            handle,
            true,
        )))
    }
}

fn buffers(ca: Option<Vec<Buffer>>) -> Vec<Vec<u8>> {
    ca.unwrap_or_default()
        .into_iter()
        .map(|b| b.to_vec())
        .collect()
}

/// Starts a listener; returns its id. Its events reach `initEvents`' callback, the last
/// being `closed`.
#[napi(js_name = "listen")]
pub fn listen(env: Env, options: NativeListenOptions) -> napi::Result<f64> {
    let hub = hub::current()?;
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
    opts.accept_socket.limits.max_payload = options.max_payload.max(0.0) as u64;
    opts.accept_timeout = Duration::from_millis(options.accept_timeout_ms.max(1.0) as u64);
    opts.spare_max_age = (options.spare_max_age_ms > 0.0)
        .then(|| Duration::from_millis(options.spare_max_age_ms as u64));
    let id = hub.next_id();
    let sink: Arc<dyn ListenerSink> = Arc::new(HubListenerSink {
        id,
        hub: hub.clone(),
    });
    let handle = napi::bindgen_prelude::within_runtime_if_available(|| listener::start(opts, sink));
    // On the JavaScript thread, so the environment is live and the hub open.
    hub.insert(id, Target::Listener(handle));
    hub.sync_ref(&env);
    Ok(id as f64)
}

/// Answers a `needToken` event with a token or the provider's error.
#[napi(js_name = "listenerProvideToken")]
pub fn listener_provide_token(
    id: f64,
    request: f64,
    token: Option<String>,
    error: Option<String>,
) -> bool {
    let result = match token {
        Some(t) => Ok(t),
        None => Err(error.unwrap_or_else(|| "the token provider failed".into())),
    };
    let command = ListenerCommand::Token {
        request: request as u64,
        result,
    };
    hub::current()
        .ok()
        .and_then(|hub| hub.with_listener(id_of(id), |h| h.send(command)))
        .unwrap_or(false)
}

/// Closes the control channel (1000) and stops.
#[napi(js_name = "listenerClose")]
pub fn listener_close(id: f64) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with_listener(id_of(id), |h| h.send(ListenerCommand::Close)))
        .unwrap_or(false)
}

/// Turns auto-accept on or off: with it on, the listener accepts senders that offer no
/// subprotocol by itself (`RelayedServer` turns it on while it has no `verifyClient`,
/// `handleProtocols` or 'headers' listener to run).
#[napi(js_name = "listenerSetAutoAccept")]
pub fn listener_set_auto_accept(id: f64, on: bool) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with_listener(id_of(id), |h| h.set_auto_accept(on)))
        .is_some()
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
