//! One client connection to the relay: TLS, the request head, and the route to the listen,
//! connect or accept handling, to HTTP relaying (plain requests), or to a request
//! rendezvous.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

use crate::encode::{decode_query_component, decode_uri_component, encode_uri_component};
use crate::relay::auth::{self, Access};
use crate::relay::config::Right;
use crate::relay::control::{self, unix_now, ControlContext};
use crate::relay::forward;
use crate::relay::http::{self, RequestHead};
use crate::relay::http_body::{self, BodyFraming};
use crate::relay::http_relay;
use crate::relay::registry::{new_uuid, AcceptOutcome, ControlCommand, IoStream, QueueError};
use crate::relay::state::{RelayEvent, RelayState};
use crate::socket::deflate;
use crate::socket::error::SocketError;

/// How many listeners a sender is offered to when the one picked leaves as it is offered.
const ROUTE_ATTEMPTS: u32 = 8;

/// A request to a Hybrid Connection address, taken apart.
struct RelayRequest {
    /// The path after `/$hc/`, decoded, without a trailing `/`.
    path: String,
    /// The path after `/$hc/` as sent (still encoded), for building accept addresses.
    raw_path: String,
    /// Query parameters, decoded, in order.
    query: Vec<(String, String)>,
    /// The query without `sb-hc-*` parameters, as sent.
    app_query: String,
    /// The host name the client connected to, lowercase, without port.
    host: String,
}

impl RelayRequest {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_target(head: &RequestHead, default_host: &str) -> Result<RelayRequest, SocketError> {
    let bad = |d: &str| SocketError::status(400, format!("Bad Request: {d}"));
    let (path, query) = head.target.split_once('?').unwrap_or((&head.target, ""));
    let raw_path = path
        .strip_prefix("/$hc/")
        .ok_or_else(|| bad("the path must start with /$hc/"))?
        .trim_end_matches('/')
        .to_owned();
    let decoded = decode_uri_component(&raw_path)
        .ok_or_else(|| bad("the path is not valid percent-encoding"))?;
    if decoded.trim_matches('/').is_empty() {
        return Err(bad("the Hybrid Connection path is missing"));
    }
    let mut params = Vec::new();
    let mut app = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_query_component(k);
        if key.starts_with("sb-hc-") {
            params.push((key, decode_query_component(v)));
        } else {
            app.push(pair);
        }
    }
    Ok(RelayRequest {
        path: decoded.trim_matches('/').to_owned(),
        raw_path,
        query: params,
        app_query: app.join("&"),
        host: head
            .header("Host")
            .map(http::host_name)
            .unwrap_or_else(|| default_host.to_ascii_lowercase()),
    })
}

/// Serves one TCP connection until it is done.
pub async fn serve(
    state: Arc<RelayState>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    // As the clients' (no Nagle, TCP keep-alive): a vanished peer is found by the kernel.
    crate::socket::connector::tune(&tcp);
    let timeout = state.config.handshake_timeout;
    let mut stream: IoStream = match tls {
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => {
                log::debug!("relay: TLS handshake with {peer} failed: {e}");
                return;
            }
            Err(_) => return,
        },
        None => Box::new(tcp),
    };
    let read = tokio::time::timeout(
        timeout,
        http::read_head(&mut stream, state.config.max_header_bytes),
    )
    .await;
    let (head, initial) = match read {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            // Answered with its status (400, 431); a peer that left gets nothing.
            e.answer(&mut stream).await;
            return;
        }
        Err(_) => return,
    };
    if !head.is_websocket_upgrade() {
        return http_relay::serve(state, stream, initial, head, peer).await;
    }
    websocket(state, stream, initial, head, peer).await
}

/// Serves a WebSocket upgrade request (`head`, with `initial`, the bytes read after it): a
/// listener's control channel, a sender, an accept or a request rendezvous. A fresh
/// connection's first request comes here, and so does an upgrade on a connection that
/// carried HTTP requests before (keep-alive), as the service takes an upgrade on any
/// connection.
pub(crate) async fn websocket(
    state: Arc<RelayState>,
    mut stream: IoStream,
    initial: Vec<u8>,
    head: RequestHead,
    peer: SocketAddr,
) {
    let Some(key) = head.websocket_key().map(str::to_owned) else {
        return http::write_status(
            &mut stream,
            400,
            "Bad Request: not a WebSocket version 13 handshake",
        )
        .await;
    };
    // The bytes after the head belong to the new protocol, and a request is sent whole
    // before the protocol switches (RFC 9110 7.8): a declared body would be read as frames.
    // A WebSocket handshake has none, so one that declares a body is refused.
    if !matches!(http_body::body_framing(&head), Ok(BodyFraming::None)) {
        let d = SocketError::status(400, "Bad Request: a WebSocket upgrade carries no body");
        return deny(&state, stream, d, None).await;
    }
    let req = match parse_target(&head, &state.config.host) {
        Ok(r) => r,
        Err(d) => return deny(&state, stream, d, None).await,
    };
    let conn = Conn {
        state,
        stream,
        initial,
        head,
        key,
        req,
        peer,
    };
    match conn.req.param("sb-hc-action") {
        Some("listen") => conn.listen().await,
        Some("connect") => conn.connect().await,
        Some("accept") => conn.accept().await,
        Some("request") => conn.request_rendezvous().await,
        _ => {
            let d = SocketError::status(
                400,
                "Bad Request: sb-hc-action must be listen, connect, accept or request",
            );
            deny(&conn.state, conn.stream, d, None).await
        }
    }
}

/// Whether a `Sec-WebSocket-Extensions` value names permessage-deflate.
fn names_deflate(header: &str) -> bool {
    deflate::parse(header).is_ok_and(|o| o.iter().any(|(k, _)| k == deflate::EXTENSION))
}

/// Refuses a request with `d`'s status (500 if it has none) and reports it.
async fn deny(state: &RelayState, mut stream: IoStream, d: SocketError, hc: Option<&str>) {
    let status = d.status_code.unwrap_or(500);
    let mut event = RelayEvent::new("denied", format!("{} {}", status, d.message)).status(status);
    if let Some(name) = hc {
        event = event.hc(name);
    }
    state.emit(event);
    http::write_status(&mut stream, status, &d.message).await;
}

/// Counts a relayed connection in the stats while it lives, even if its task is cancelled.
struct OpenConnection<'a>(&'a RelayState);

impl<'a> OpenConnection<'a> {
    fn new(state: &'a RelayState) -> Self {
        state.connections.fetch_add(1, Ordering::Relaxed);
        OpenConnection(state)
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Conn {
    state: Arc<RelayState>,
    stream: IoStream,
    initial: Vec<u8>,
    head: RequestHead,
    key: String,
    req: RelayRequest,
    peer: SocketAddr,
}

impl Conn {
    fn token(&self) -> Option<String> {
        self.head
            .header("ServiceBusAuthorization")
            .map(str::to_owned)
            .or_else(|| self.req.param("sb-hc-token").map(str::to_owned))
    }

    async fn listen(mut self) {
        let state = self.state.clone();
        let not_found =
            || SocketError::status(404, "Endpoint not found: no such Hybrid Connection");
        let Some(name) = state.registry.listener_entity_name(&self.req.path) else {
            return deny(&state, self.stream, not_found(), None).await;
        };
        let access = Access {
            right: Right::Listen,
            host: &self.req.host,
            path: &self.req.path,
        };
        let grant =
            match auth::authorize(&state.config, self.token().as_deref(), &access, unix_now()) {
                Ok(g) => g,
                Err(d) => return deny(&state, self.stream, d, Some(&name)).await,
            };
        // Only an authorized listener makes a Hybrid Connection ("any" mode): an entity
        // left by a refused one would take senders meant for a shorter name.
        let Some(entity) = state.registry.entity_for_listener(&self.req.path) else {
            return deny(&state, self.stream, not_found(), None).await;
        };
        // The addresses this listener is given name the host it connected with.
        let origin: Arc<str> = state.origin_for_host(self.head.header("Host")).into();
        let added = state
            .registry
            .add_listener(&entity.key, state.config.max_listeners, origin);
        let (listener_id, commands, frozen) = match added {
            Ok(x) => x,
            Err(why) => {
                let status = if why.starts_with("Endpoint") {
                    404
                } else {
                    403
                };
                let d = SocketError::status(status, why);
                return deny(&state, self.stream, d, Some(&entity.name)).await;
            }
        };
        if http::write_switching(&mut self.stream, &self.key, None)
            .await
            .is_err()
        {
            state.registry.remove_listener(&entity.key, listener_id);
            return;
        }
        let config = WebSocketConfig::default()
            .max_message_size(Some(state.config.max_control_message_bytes))
            .max_frame_size(Some(state.config.max_control_message_bytes));
        let ws = WebSocketStream::from_partially_read(
            self.stream,
            self.initial,
            Role::Server,
            Some(config),
        )
        .await;
        state.emit(
            RelayEvent::new(
                "listen",
                format!("listener connected to {} from {}", entity.name, self.peer),
            )
            .hc(&entity.name),
        );
        let ctx = ControlContext {
            state: state.clone(),
            entity_key: entity.key,
            entity_name: entity.name,
            listener_id,
            host: self.req.host.clone(),
            expires_at: grant.expires_at,
        };
        control::run(ws, ctx, commands, frozen).await;
    }

    /// The `accept` message for the listener: the one-time address (on `origin`, the
    /// listener's; the sender's path suffix and application query included), the id, the
    /// sender's headers (minus its token) and its address.
    fn accept_message(&self, origin: &str, id: &str) -> String {
        let mut address = format!("{origin}/$hc/{}", self.req.raw_path);
        address.push('?');
        if !self.req.app_query.is_empty() {
            address.push_str(&self.req.app_query);
            address.push('&');
        }
        address.push_str("sb-hc-action=accept&sb-hc-id=");
        address.push_str(&encode_uri_component(id));
        let mut headers = serde_json::Map::new();
        for (name, value) in &self.head.headers {
            if name.eq_ignore_ascii_case("ServiceBusAuthorization") {
                continue;
            }
            let entry = headers
                .entry(name.clone())
                .or_insert_with(|| serde_json::Value::String(String::new()));
            if let serde_json::Value::String(s) = entry {
                if !s.is_empty() {
                    s.push_str(", ");
                }
                s.push_str(value);
            }
        }
        serde_json::json!({
            "accept": {
                "address": address,
                "id": id,
                "connectHeaders": headers,
                "remoteEndpoint": { "address": self.peer.ip().to_string(), "port": self.peer.port() }
            }
        })
        .to_string()
    }

    async fn connect(mut self) {
        let state = self.state.clone();
        let Some((entity, suffix)) = state.registry.entity_for_sender(&self.req.path) else {
            let d = SocketError::status(404, "Endpoint not found: no such Hybrid Connection");
            return deny(&state, self.stream, d, None).await;
        };
        if entity.requires_client_authorization {
            let access = Access {
                right: Right::Send,
                host: &self.req.host,
                path: &self.req.path,
            };
            if let Err(d) =
                auth::authorize(&state.config, self.token().as_deref(), &access, unix_now())
            {
                return deny(&state, self.stream, d, Some(&entity.name)).await;
            }
        }
        let wanted = self
            .req
            .param("sb-hc-id")
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(new_uuid);
        let deadline = tokio::time::Instant::now() + state.config.accept_timeout;
        let mut announced = false;
        // Routed again when the chosen listener's channel ends before its accept went out
        // (the listener never heard of it); each listener can do that once, as it leaves.
        let mut attempts = 0;
        let (id, answer) = loop {
            attempts += 1;
            let Some(listener) = state.registry.pick_listener(&entity.key) else {
                let d = SocketError::status(404, "Endpoint not found: no listener is connected");
                return deny(&state, self.stream, d, Some(&entity.name)).await;
            };
            let (id, outcome) = state.registry.insert_pending(&wanted, &entity.key);
            let message = self.accept_message(&listener.origin, &id);
            let accept = ControlCommand::Accept {
                id: id.clone(),
                message,
            };
            if let Err(e) = listener.commands.send(accept) {
                state.registry.take_pending(&id);
                // A listener that left meanwhile: another may take the sender (a few tries;
                // the one that left is not picked while another has room).
                if e == QueueError::Gone && attempts < ROUTE_ATTEMPTS {
                    continue;
                }
                return deny(&state, self.stream, e.refusal(), Some(&entity.name)).await;
            }
            if !announced {
                announced = true;
                state.emit(
                    RelayEvent::new(
                        "connect",
                        format!("sender {} for {}{suffix}", self.peer, entity.name),
                    )
                    .hc(&entity.name)
                    .id(&id),
                );
            }
            match tokio::time::timeout_at(deadline, outcome).await {
                // Bounded by the listeners leaving, one each, and by the deadline.
                Ok(Ok(AcceptOutcome::Undelivered)) => continue,
                answer => break (id, answer),
            }
        };
        match answer {
            Ok(Ok(AcceptOutcome::Accepted {
                stream: listener_stream,
                initial: listener_initial,
                protocol,
                extensions,
            })) => {
                // The listener's answer goes to the sender as the service passes it: a sender
                // that offered nothing fails it itself. Compressed frames (RSV1) are relayed
                // only once both sides named permessage-deflate.
                let answer = extensions.as_deref();
                // Counted from here, before the sender's 101: a sender open (or a listener's
                // 'connection') always finds itself in the stats.
                let _open = OpenConnection::new(&state);
                let rsv1 = answer.is_some()
                    && self
                        .head
                        .header_joined("Sec-WebSocket-Extensions")
                        .is_some_and(|h| names_deflate(&h));
                if http::write_switching_with(
                    &mut self.stream,
                    &self.key,
                    protocol.as_deref(),
                    answer,
                )
                .await
                .is_err()
                {
                    return;
                }
                state.emit(
                    RelayEvent::new(
                        "accept",
                        format!("{} accepted sender {}", entity.name, self.peer),
                    )
                    .hc(&entity.name)
                    .id(&id),
                );
                forward::relay(
                    self.stream,
                    self.initial,
                    listener_stream,
                    listener_initial,
                    forward::Relaying {
                        buffer_bytes: state.config.relay_buffer_bytes,
                        rsv1,
                    },
                    state.forward_stats.clone(),
                )
                .await;
            }
            Ok(Ok(AcceptOutcome::Rejected {
                status,
                description,
            })) => {
                state.emit(
                    RelayEvent::new(
                        "reject",
                        format!("{} rejected sender {}: {status}", entity.name, self.peer),
                    )
                    .hc(&entity.name)
                    .id(&id)
                    .status(status),
                );
                http::write_status(&mut self.stream, status, &description).await;
            }
            // (Undelivered routes the sender again, above.)
            Ok(Ok(AcceptOutcome::Undelivered)) | Ok(Err(_)) | Err(_) => {
                state.registry.take_pending(&id);
                state.emit(
                    RelayEvent::new(
                        "timeout",
                        format!("no accept for sender {} in time", self.peer),
                    )
                    .hc(&entity.name)
                    .id(&id)
                    .status(504),
                );
                http::write_status(
                    &mut self.stream,
                    504,
                    "Gateway Timeout: the listener did not accept in time",
                )
                .await;
            }
        }
    }

    async fn accept(mut self) {
        let state = self.state.clone();
        let id = self.req.param("sb-hc-id").unwrap_or("").to_owned();
        let invalid = SocketError::status(
            403,
            "Forbidden: the accept URL is not valid (unknown, used or expired)",
        );
        let reject_status = self
            .req
            .param("sb-hc-statusCode")
            .map(|s| s.trim().parse::<u16>());
        if let Some(parsed) = &reject_status {
            let waiting = state.registry.has_pending_at(&id, &self.req.path);
            if !matches!(parsed, Ok(300..=599)) || !waiting {
                let d = if waiting {
                    SocketError::status(
                        400,
                        "Bad Request: sb-hc-statusCode must be an HTTP status from 300 to 599",
                    )
                } else {
                    invalid
                };
                return deny(&state, self.stream, d, None).await;
            }
        }
        let Some(pending) = state.registry.take_pending_at(&id, &self.req.path) else {
            return deny(&state, self.stream, invalid, None).await;
        };
        if let Some(Ok(status)) = reject_status {
            let description = self
                .req
                .param("sb-hc-statusDescription")
                .map(str::to_owned)
                .unwrap_or_else(|| "Rejected by the listener".into());
            let _ = pending.outcome.send(AcceptOutcome::Rejected {
                status,
                description,
            });
            return http::write_status(&mut self.stream, 410, "Gone: the sender was rejected")
                .await;
        }
        if pending.outcome.is_closed() {
            return deny(&state, self.stream, invalid, None).await;
        }
        let protocol = self
            .head
            .header("Sec-WebSocket-Protocol")
            .and_then(|p| p.split(',').next())
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty());
        // The listener's permessage-deflate answer, echoed to it and passed to the sender.
        // A header that reads as an offer (what a plain ws client sends) is no answer: that
        // listener negotiates nothing.
        let extensions = self
            .head
            .header_joined("Sec-WebSocket-Extensions")
            .map(|e| e.trim().to_owned())
            .filter(|e| deflate::is_answer(e));
        if http::write_switching_with(
            &mut self.stream,
            &self.key,
            protocol.as_deref(),
            extensions.as_deref(),
        )
        .await
        .is_err()
        {
            return;
        }
        let _ = pending.outcome.send(AcceptOutcome::Accepted {
            stream: self.stream,
            initial: self.initial,
            protocol,
            extensions,
        });
    }

    /// A listener opening a request's rendezvous address (`sb-hc-action=request`): no token,
    /// the address is its own credential, valid once while its request waits.
    async fn request_rendezvous(mut self) {
        let state = self.state.clone();
        let id = self.req.param("sb-hc-id").unwrap_or("");
        let deliver = match http_relay::claim_rendezvous(&state, &self.req.path, id) {
            Ok(d) => d,
            Err(d) => return deny(&state, self.stream, d, None).await,
        };
        if http::write_switching(&mut self.stream, &self.key, None)
            .await
            .is_err()
        {
            return;
        }
        http_relay::deliver_rendezvous(&state, deliver, self.stream, self.initial).await;
    }
}
