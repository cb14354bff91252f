//! Bindings for the listener's control channel (`RelayedServer`). JavaScript addresses a
//! listener by the id `listen` returns; its events go up through the environment's hub
//! (`hub.rs`), which keeps the process alive until the listener's final `closed` event is
//! delivered.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::listener::{
    self, AcceptRequest, Exchange, ExchangeSink, HttpRequest, ListenerCommand, ListenerEvent,
    ListenerHandle, ListenerOptions, ListenerSink, Token,
};
use hyco_core::socket::{EventSink, Handle, SocketError};
use napi::bindgen_prelude::Buffer;
use napi::{Env, Status};
use napi_derive::napi;

use crate::bindings::events::up;
use crate::bindings::flat::Flat;
use crate::bindings::http;
use crate::bindings::hub::{self, id_of, Hub, Id, Target, Then};
use crate::bindings::proxy::{self, NativeProxyOptions};
use crate::bindings::reader;
use crate::bindings::socket::{
    deflate_options, error_fields, socket_options, NativeDeflateOptions, SocketSink,
};

/// Options of `listen`, checked by `lib/relayed-server.js`.
#[napi(object)]
pub struct NativeListenOptions {
    /// The listen address, without a token.
    pub url: String,
    /// The token is a fixed string.
    pub static_token: bool,
    /// 401 and 403 are final (a fixed token, or a key).
    pub auth_final: bool,
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
    /// How long an HTTP request may go unanswered, ms.
    pub request_timeout_ms: f64,
    /// Proxy settings; absent: connect directly.
    pub proxy: Option<NativeProxyOptions>,
    /// permessage-deflate for the connections it accepts by itself; absent: refused.
    pub per_message_deflate: Option<NativeDeflateOptions>,
    /// Accepted sockets: answer pings automatically.
    pub accept_auto_pong: bool,
    /// Accepted sockets: closing-handshake timeout, ms.
    pub accept_close_timeout_ms: f64,
    /// Accepted sockets: bytes waiting for JavaScript above which reading stops.
    pub accept_inbound_high_water: Option<f64>,
    /// Accepted sockets: heartbeat interval, ms; absent or 0: none.
    pub accept_heartbeat_ms: Option<f64>,
}

/// A listener error for JavaScript: `[message, code, statusCode, statusDescription]`, or
/// `null`.
pub fn error_list(e: Option<SocketError>) -> Flat {
    e.map_or(Flat::Null, |e| Flat::List(error_fields(e).into()))
}

/// A sender's headers as `req.headers` has them (lowercased, repeats joined), flat: name,
/// value, name, value...
fn flat_headers(headers: &[(String, String)]) -> Flat {
    Flat::strs(
        listener::request::request_headers(headers)
            .into_iter()
            .flat_map(|(k, v)| [k, v])
            .collect(),
    )
}

/// The fields of a sender's request that `req` shows: its headers, the rendezvous id,
/// `req.url`, the sender's address and port.
fn request_fields(a: &AcceptRequest) -> [Flat; 5] {
    [
        flat_headers(&a.headers),
        Flat::Str(a.id.clone()),
        Flat::Str(a.url.clone()),
        Flat::opt_str(a.remote_address.clone()),
        Flat::opt_num(a.remote_port),
    ]
}

impl Target for ListenerHandle {
    fn stop(&self) {
        self.send(ListenerCommand::Close);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Where a listener's events go: the hub, tagged with its id. Connections it accepts by
/// itself get ids of their own, and so does its control channel while JavaScript's thread
/// reads it.
struct HubListenerSink {
    id: Id,
    hub: Arc<Hub>,
    /// The control channel JavaScript's thread reads or was asked to read, and its id in
    /// the hub (see `reader.rs`).
    channel: Mutex<Option<(Handle, Id)>>,
}

impl ListenerSink for HubListenerSink {
    fn push(&self, event: ListenerEvent) {
        let (id, hub) = (self.id, &*self.hub);
        match event {
            ListenerEvent::NeedToken { request, renewal } => hub.push(
                id,
                up::NeedToken(Flat::Num(request as f64), Flat::Bool(renewal)),
                Then::Nothing,
            ),
            ListenerEvent::Connecting { error, delay_ms } => hub.push(
                id,
                up::Connecting(Flat::Num(delay_ms as f64), error_list(error)),
                Then::Nothing,
            ),
            ListenerEvent::Online => hub.push(id, up::Online(), Then::Nothing),
            ListenerEvent::Offline { error } => {
                hub.push(id, up::Offline(error_list(Some(error))), Then::Nothing)
            }
            ListenerEvent::Accept(a) => {
                let [headers, rid, url, address, port] = request_fields(&a);
                hub.push(
                    id,
                    up::Accept(rid, Flat::Str(a.address), headers, url, address, port),
                    Then::Nothing,
                );
            }
            ListenerEvent::Renewed => hub.push(id, up::Renewed(), Then::Nothing),
            ListenerEvent::TokenExpiring { expires_at } => hub.push(
                id,
                up::TokenExpiring(Flat::Num(expires_at as f64)),
                Then::Nothing,
            ),
            ListenerEvent::TokenError { message } => {
                hub.push(id, up::TokenError(Flat::Str(message)), Then::Nothing)
            }
            ListenerEvent::ControlMessage { text } => {
                hub.push(id, up::ControlMessage(Flat::Str(text)), Then::Nothing)
            }
            ListenerEvent::Closed { error } => {
                hub.push(id, up::ListenerClosed(error_list(error)), Then::Last)
            }
        }
    }

    fn accepted(&self, request: &AcceptRequest, handle: &Handle) -> Option<Arc<dyn EventSink>> {
        let id = self.hub.next_id();
        // Registered before this listener can report its close (it is still running), so
        // the hub keeps the process alive for the new socket too. Refused while a worker
        // ends (its listener is being stopped): the sender is not accepted.
        if !self.hub.insert(id, Arc::new(handle.clone())) {
            return None;
        }
        // Queued now, ahead of the socket's own events; JavaScript is woken for it once the
        // handshake's request is out (`SocketSink::request_sent`), not before: waking it
        // here would delay the request by the wake-up's cost. It then makes the socket
        // object and `req` while the response is on its way.
        let [headers, rid, url, address, port] = request_fields(request);
        self.hub.push_quiet(
            self.id,
            up::Accepting(Flat::Num(id as f64), headers, rid, url, address, port),
            Then::Nothing,
        );
        Some(Arc::new(SocketSink::new(
            id,
            self.hub.clone(),
            handle,
            true,
        )))
    }

    fn http_request(
        &self,
        request: HttpRequest,
        exchange: &Exchange,
    ) -> Option<Arc<dyn ExchangeSink>> {
        http::take_request(&self.hub, self.id, request, exchange)
    }

    fn control_inline_wanted(&self, channel: &Handle) {
        let Ok(mut current) = self.channel.lock() else {
            // Not read inline after all: the task reads on, and may ask again.
            channel.decline_inline();
            return;
        };
        let id = match &*current {
            Some((h, id)) if Arc::ptr_eq(&h.shared, &channel.shared) => *id,
            _ => {
                // A channel of its own in the hub, as a socket has: the next delivery
                // starts watching it (`reader::watch` finds its handle there).
                let id = self.hub.next_id();
                if !self.hub.insert(id, Arc::new(channel.clone())) {
                    channel.decline_inline();
                    return;
                }
                if let Some((_, old)) = current.replace((channel.clone(), id)) {
                    self.hub.forget(old);
                }
                id
            }
        };
        drop(current);
        self.hub.want_inline(id);
        self.hub.wake();
    }

    fn control_closed(&self, channel: &Handle) {
        let Ok(mut current) = self.channel.lock() else {
            return;
        };
        if matches!(&*current, Some((h, _)) if Arc::ptr_eq(&h.shared, &channel.shared)) {
            if let Some((_, id)) = current.take() {
                self.hub.forget(id);
            }
        }
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
#[napi(js_name = "listen", catch_unwind)]
pub fn listen(env: Env, options: NativeListenOptions) -> napi::Result<f64> {
    let hub = hub::current()?;
    let mut opts = ListenerOptions::new(options.url);
    opts.static_token = options.static_token;
    opts.auth_final = options.auth_final;
    opts.keep_alive =
        (options.keep_alive_ms > 0.0).then(|| Duration::from_millis(options.keep_alive_ms as u64));
    opts.pong_timeout = Duration::from_millis(options.pong_timeout_ms.max(1.0) as u64);
    opts.reconnect_delays = options
        .reconnect_delays_ms
        .iter()
        .map(|ms| Duration::from_millis(ms.max(0.0) as u64))
        .collect();
    opts.ca = buffers(options.ca);
    opts.accept_socket = socket_options(
        options.max_payload,
        options.accept_auto_pong,
        options.accept_close_timeout_ms,
        options.accept_inbound_high_water,
        options.accept_heartbeat_ms,
    );
    opts.accept_timeout = Duration::from_millis(options.accept_timeout_ms.max(1.0) as u64);
    opts.deflate = options.per_message_deflate.as_ref().map(deflate_options);
    opts.spare_max_age = (options.spare_max_age_ms > 0.0)
        .then(|| Duration::from_millis(options.spare_max_age_ms as u64));
    opts.request_timeout = Duration::from_millis(options.request_timeout_ms.max(1.0) as u64);
    opts.proxy = proxy::config(options.proxy);
    let id = hub.next_id();
    opts.inline_reads = reader::enabled();
    let sink: Arc<dyn ListenerSink> = Arc::new(HubListenerSink {
        id,
        hub: hub.clone(),
        channel: Mutex::new(None),
    });
    let handle = napi::bindgen_prelude::within_runtime_if_available(|| listener::start(opts, sink));
    // On the JavaScript thread, so the environment is live; but the hub refuses new objects
    // once its environment is being torn down: the listener, which nobody could close then,
    // stops at once.
    if !hub.insert(id, Arc::new(handle.clone())) {
        handle.send(ListenerCommand::Close);
        return Err(napi::Error::new(
            Status::GenericFailure,
            "hyco-ws-rs: the environment is shutting down",
        ));
    }
    hub.sync_ref(&env);
    Ok(id as f64)
}

/// Answers a `needToken` event with a token (and, when its provider said, when it expires
/// and when to renew it, Unix ms) or the provider's error.
#[napi(js_name = "listenerProvideToken", catch_unwind)]
pub fn listener_provide_token(
    id: f64,
    request: f64,
    token: Option<String>,
    error: Option<String>,
    expires_at_ms: Option<f64>,
    refresh_at_ms: Option<f64>,
) -> bool {
    let result = match token {
        Some(value) => Ok(Token {
            value,
            expires_at_ms,
            refresh_at_ms,
        }),
        None => Err(error.unwrap_or_else(|| "the token provider failed".into())),
    };
    let command = ListenerCommand::Token {
        request: request as u64,
        result,
    };
    hub::current()
        .ok()
        .and_then(|hub| hub.with(id_of(id), |h: &ListenerHandle| h.send(command)))
        .unwrap_or(false)
}

/// Closes the control channel (1000) and stops.
#[napi(js_name = "listenerClose", catch_unwind)]
pub fn listener_close(id: f64) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| {
            hub.with(id_of(id), |h: &ListenerHandle| {
                h.send(ListenerCommand::Close)
            })
        })
        .unwrap_or(false)
}

/// Closes the control channel (1000) and opens a new one at once, as hyco-ws's
/// `controlChannel.close()` did; false when the listener has stopped.
#[napi(js_name = "listenerReconnect", catch_unwind)]
pub fn listener_reconnect(id: f64) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| {
            hub.with(id_of(id), |h: &ListenerHandle| {
                h.send(ListenerCommand::Reconnect)
            })
        })
        .unwrap_or(false)
}

/// Turns the control tap on or off: with it on, every text message the service sends on the
/// control channel also goes to JavaScript as a `controlMessage` event (`RelayedServer`
/// turns it on while its `controlChannel` has a 'message' listener).
#[napi(js_name = "listenerSetControlTap", catch_unwind)]
pub fn listener_set_control_tap(id: f64, on: bool) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with(id_of(id), |h: &ListenerHandle| h.set_control_tap(on)))
        .is_some()
}

/// Turns auto-accept on or off: with it on, the listener accepts senders that offer no
/// subprotocol by itself (`RelayedServer` turns it on while it has no `verifyClient`,
/// `handleProtocols` or 'headers' listener to run).
#[napi(js_name = "listenerSetAutoAccept", catch_unwind)]
pub fn listener_set_auto_accept(id: f64, on: bool) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with(id_of(id), |h: &ListenerHandle| h.set_auto_accept(on)))
        .is_some()
}

/// Turns HTTP on or off: with it on, requests go to JavaScript as `request` events;
/// off, the listener answers them 501 itself (`RelayedServer` turns it on while it has a
/// `'request'` listener).
#[napi(js_name = "listenerSetHttp", catch_unwind)]
pub fn listener_set_http(id: f64, on: bool) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with(id_of(id), |h: &ListenerHandle| h.set_http(on)))
        .is_some()
}

/// Rejects a rendezvous (through the proxy `proxy` chooses); resolves when the service
/// answered 410.
#[napi(js_name = "rejectRendezvous")]
pub async fn reject_rendezvous(
    address: String,
    timeout_ms: f64,
    ca: Option<Vec<Buffer>>,
    proxy: Option<NativeProxyOptions>,
) -> napi::Result<()> {
    let ca = buffers(ca);
    listener::reject(
        &address,
        Duration::from_millis(timeout_ms.max(1.0) as u64),
        &ca,
        proxy::config(proxy),
    )
    .await
    .map_err(|e| napi::Error::new(Status::GenericFailure, e.message))
}
