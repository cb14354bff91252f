//! HTTP requests through the relay, sender side: one sender connection's requests in turn
//! (keep-alive), each checked (method, address, token), routed to a listener and answered
//! (see `http_exchange.rs` for the exchange itself), and the listener's side of a request
//! rendezvous (`sb-hc-action=request`), handed to the request that waits for it.
//!
//! Routing, as the article describes it: a request whose body is small (a known length up
//! to 64 KiB, headers up to 32 KiB) and arrives promptly goes inline on a control channel;
//! any other (large, chunked, slow) gets an address-only `request` message, and the relay
//! sends the whole request over the rendezvous the listener then opens. Once a sender
//! connection has a rendezvous, its later requests (to the same Hybrid Connection) go over it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::encode::{decode_query_component, decode_uri_component, encode_uri_component};
use crate::io::IoStream;
use crate::redact::redact_secrets;
use crate::relay::auth::{self, Access};
use crate::relay::config::Right;
use crate::relay::control::unix_now;
use crate::relay::http::{self, RequestHead};
use crate::relay::http_body::{body_framing, BodyFraming, BodyReader, SenderReader, PIECE_BYTES};
use crate::relay::http_message::{self, RequestInfo};
use crate::relay::http_pending::{Delivery, Route};
use crate::relay::registry::{
    new_uuid, ControlCommand, EntityRef, PickedListener, QueueError, RequestMessages,
};
use crate::relay::rendezvous::Rendezvous;
use crate::relay::server;
use crate::relay::state::{RelayEvent, RelayState};
use crate::socket::error::SocketError;

/// The largest body sent inline on a control channel (the article's 64 kB).
pub const INLINE_BODY_BYTES: u64 = 64 * 1024;

/// The largest header metadata sent inline (the article's 32 kB).
pub const INLINE_HEADER_BYTES: usize = 32 * 1024;

/// Inline bodies larger than this go out in frames of this size (one message of several
/// frames), so that listeners meet fragmented bodies as the article says they must handle.
pub const INLINE_FRAME_BYTES: usize = 16 * 1024;

/// How long a small body may take to arrive before its request goes over a rendezvous
/// instead (the article: inline only when "reading the request is … instantaneous").
const INLINE_READ_WAIT: Duration = Duration::from_secs(1);

/// The furthest deadline a request gets, whatever the configuration says.
const MAX_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a sender's keep-alive connection may stay idle between requests.
const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(120);

/// How long the relay waits to shut its side of a sender's connection down: over TLS that
/// writes, and a sender that stopped reading would hold it for good.
pub(crate) const SHUTDOWN_WAIT: Duration = Duration::from_secs(1);

/// The reason phrase of the relay's 404 when no listener is connected (the service's words
/// for WebSocket senders).
pub const NO_LISTENER: &str = "There are no listeners connected for the endpoint.";

pub(crate) type Reader = SenderReader<ReadHalf<IoStream>>;
pub(crate) type Writer = WriteHalf<IoStream>;

/// What to do with the sender's connection after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    KeepAlive,
    Close,
}

/// One sender connection.
pub(crate) struct SenderConn {
    pub(crate) state: Arc<RelayState>,
    pub(crate) reader: Reader,
    pub(crate) writer: Writer,
    peer: SocketAddr,
    /// The rendezvous this connection's requests go over, once one exists.
    pub(crate) rendezvous: Option<KeptRendezvous>,
    /// The id base of requests without an `sb-hc-id`.
    base_id: String,
    /// The request being handled is a HEAD request: the relay's own answers to it carry
    /// no body.
    head_request: bool,
}

/// A rendezvous kept for a sender connection's later requests.
pub(crate) struct KeptRendezvous {
    /// The registry key of its Hybrid Connection.
    pub(crate) key: String,
    /// The origin of its listener's addresses.
    pub(crate) origin: Arc<str>,
    /// The rendezvous.
    pub(crate) rv: Rendezvous,
}

/// What a relayed request needs to know about itself, for the exchange and its events.
pub(crate) struct RequestCtx {
    pub(crate) id: String,
    pub(crate) hc: String,
    pub(crate) method: String,
    /// The `Via` received-by value (the host the sender addressed).
    pub(crate) via: String,
    /// The sender's connection closes after this request (it asked, or speaks HTTP/1.0).
    pub(crate) close: bool,
    /// HTTP/1.0: no chunked framing.
    pub(crate) http10: bool,
    /// When the listener's response must have arrived.
    pub(crate) deadline: Instant,
    /// The origin of the listener's addresses (the host its control channel connected
    /// with).
    pub(crate) origin: Arc<str>,
}

/// Drops a request's messages still queued for its listener when the request ends.
struct DropUnsent(RequestMessages);

impl Drop for DropUnsent {
    fn drop(&mut self) {
        drop(self.0.take());
    }
}

/// A request that passed the checks.
struct Checked {
    entity: EntityRef,
    framing: BodyFraming,
    /// `Authorization` carried the relay token (rule 3): strip it.
    strip_authorization: bool,
    /// The sender's `sb-hc-id`, if any.
    tracking_id: Option<String>,
}

/// Serves a sender's HTTP connection, whose first request head is `head`, until it closes,
/// or until a request on it is a WebSocket upgrade: that goes to the WebSocket side (with
/// the bytes read after it), as a fresh connection's would.
pub async fn serve(
    state: Arc<RelayState>,
    stream: IoStream,
    initial: Vec<u8>,
    head: RequestHead,
    peer: SocketAddr,
) {
    let (read, write) = tokio::io::split(stream);
    let mut conn = SenderConn {
        state,
        reader: SenderReader::new(read, initial),
        writer: write,
        peer,
        rendezvous: None,
        base_id: new_uuid(),
        head_request: false,
    };
    let mut head = Some(head);
    let upgrade = loop {
        let h = match head.take() {
            Some(h) => h,
            None => match conn.next_head().await {
                Some(h) => h,
                None => break None,
            },
        };
        if h.is_websocket_upgrade() {
            break Some(h);
        }
        if conn.handle(h).await == Next::Close {
            break None;
        }
    };
    // The connection carries no more HTTP requests either way.
    if let Some(kept) = conn.rendezvous.take() {
        kept.rv.close(1001, "The sender disconnected").await;
    }
    match upgrade {
        Some(h) => {
            log::debug!("relay: a WebSocket upgrade on a kept-alive HTTP connection from {peer}");
            let (read, initial) = conn.reader.into_parts();
            let stream = read.unsplit(conn.writer);
            server::websocket(conn.state, stream, initial, h, peer).await
        }
        None => {
            let _ = tokio::time::timeout(SHUTDOWN_WAIT, conn.writer.shutdown()).await;
            conn.reader.linger().await;
        }
    }
}

/// The query parameters of `target` named `name` (decoded), in order.
fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (decode_query_component(k) == name).then(|| decode_query_component(v))
    })
}

/// The path of a request target: origin-form as is, absolute-form without its scheme and
/// authority; `None` for anything else (`*`, authority-form).
fn target_path(target: &str) -> Option<&str> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    if path.starts_with('/') {
        return Some(path);
    }
    let rest = path
        .strip_prefix("http://")
        .or_else(|| path.strip_prefix("https://"))?;
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

/// The origin-form of `target` (absolute-form loses its scheme and authority).
fn origin_form(target: &str) -> String {
    if target.starts_with('/') {
        return target.to_owned();
    }
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => rest[i..].to_owned(),
        Some(i) => format!("/{}", &rest[i..]),
        None => "/".to_owned(),
    }
}

/// A value safe for `Via`: the visible characters of the `Host` the sender addressed.
fn via_host(head: &RequestHead, fallback: &str) -> String {
    let host: String = head
        .header("Host")
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect();
    if host.is_empty() {
        // The relay's own origin (`ws://host:port`), as a Via received-by: its authority.
        fallback
            .split_once("://")
            .map_or(fallback, |(_, authority)| authority)
            .to_owned()
    } else {
        host
    }
}

/// A request's body as the relay has it when routing: none, whole (inline), or started.
pub(crate) enum Body {
    None,
    Whole(Vec<u8>),
    Streaming { prefix: Vec<u8>, reader: BodyReader },
}

impl SenderConn {
    /// Waits for the sender's next request; `None` when the connection is done: the sender
    /// closed or idled out, sent something that is not HTTP (answered), or the listener
    /// closed this connection's rendezvous (the article: the service then drops the
    /// sender's connection).
    async fn next_head(&mut self) -> Option<RequestHead> {
        let max = self.state.config.max_header_bytes;
        loop {
            let rv_event = async {
                match &mut self.rendezvous {
                    Some(kept) => kept.rv.events.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = tokio::time::timeout(KEEP_ALIVE_IDLE, self.reader.read_head(max)) => {
                    return match read {
                        Ok(Ok(h)) => Some(h),
                        Ok(Err(e)) => {
                            e.answer(&mut self.writer).await;
                            None
                        }
                        Err(_) => None,
                    };
                }
                ev = rv_event => match ev {
                    None | Some(crate::relay::rendezvous::RvEvent::Closed) => {
                        log::debug!("relay: the listener closed a rendezvous: closing its sender's connection");
                        self.rendezvous = None;
                        return None;
                    }
                    Some(_) => log::debug!("relay: ignoring a message on an idle rendezvous"),
                },
            }
        }
    }

    /// Refuses a request with `d`'s status and closes the connection.
    async fn refuse(&mut self, d: SocketError, hc: Option<&str>) -> Next {
        let status = d.status_code.unwrap_or(500);
        let mut event =
            RelayEvent::new("denied", format!("{} {}", status, d.message)).status(status);
        if let Some(name) = hc {
            event = event.hc(name);
        }
        self.state.emit(event);
        http::write_status_for(&mut self.writer, status, &d.message, self.head_request).await;
        Next::Close
    }

    /// The checks a request passes before it is routed: method, address, framing, token.
    fn check(&self, head: &RequestHead) -> Result<Checked, (SocketError, Option<String>)> {
        let bad = |d: &str| (SocketError::status(400, format!("Bad Request: {d}")), None);
        if head.method.eq_ignore_ascii_case("CONNECT") {
            return Err((
                SocketError::status(405, "Method Not Allowed: CONNECT is not relayed"),
                None,
            ));
        }
        if head.header("Upgrade").is_some() {
            return Err(bad("protocol upgrades are relayed only on /$hc/ addresses"));
        }
        // RFC 9112 3.2: an HTTP/1.1 request has exactly one Host, and a server answers 400
        // otherwise (the token's audience is checked against it).
        let hosts = head
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("Host"))
            .count();
        if hosts > 1 || (hosts == 0 && head.version >= 1) {
            return Err(bad("an HTTP/1.1 request has one Host header"));
        }
        let path =
            target_path(&head.target).ok_or_else(|| bad("the request target is not a path"))?;
        if path == "/$hc" || path.starts_with("/$hc/") {
            return Err(bad("/$hc/ addresses take WebSocket upgrades only"));
        }
        let decoded = decode_uri_component(path)
            .ok_or_else(|| bad("the path is not valid percent-encoding"))?;
        let decoded = decoded.trim_matches('/');
        let Some((entity, _suffix)) = self.state.registry.entity_for_sender(decoded) else {
            return Err((
                SocketError::status(404, "Endpoint not found: no such Hybrid Connection"),
                None,
            ));
        };
        let refused = |d: SocketError| (d, Some(entity.name.clone()));
        let framing = body_framing(head).map_err(refused)?;
        // The article's three rules: `ServiceBusAuthorization` and `sb-hc-token` are always
        // the relay's (and always stripped); `Authorization` only when neither is present and
        // the Hybrid Connection checks senders.
        let relay_header = head.header("ServiceBusAuthorization").map(str::to_owned);
        let query_token = query_param(&head.target, "sb-hc-token");
        let use_authorization = entity.requires_client_authorization
            && relay_header.is_none()
            && query_token.is_none()
            && head.header("Authorization").is_some();
        if entity.requires_client_authorization {
            let token = relay_header.or(query_token).or_else(|| {
                use_authorization
                    .then(|| head.header("Authorization").map(str::to_owned))
                    .flatten()
            });
            let host = head
                .header("Host")
                .map(http::host_name)
                .unwrap_or_else(|| self.state.config.host.to_ascii_lowercase());
            let access = Access {
                right: Right::Send,
                host: &host,
                path: decoded,
            };
            auth::authorize(&self.state.config, token.as_deref(), &access, unix_now())
                .map_err(refused)?;
        }
        Ok(Checked {
            entity,
            framing,
            strip_authorization: use_authorization,
            tracking_id: query_param(&head.target, "sb-hc-id").filter(|s| !s.is_empty()),
        })
    }

    /// Relays one request and answers the sender.
    async fn handle(&mut self, head: RequestHead) -> Next {
        self.head_request = head.method.eq_ignore_ascii_case("HEAD");
        let checked = match self.check(&head) {
            Ok(c) => c,
            Err((d, hc)) => return self.refuse(d, hc.as_deref()).await,
        };
        let entity = checked.entity;
        let kept_origin = match &self.rendezvous {
            Some(kept) if kept.key == entity.key => Some(kept.origin.clone()),
            _ => None,
        };
        let reuse = kept_origin.is_some();
        let (listener, origin) = match kept_origin {
            Some(origin) => (None, origin),
            None => match self.state.registry.pick_listener(&entity.key) {
                Some(l) => {
                    let origin = l.origin.clone();
                    (Some(l), origin)
                }
                None => return self.no_listener(&entity.name).await,
            },
        };
        if checked.framing != BodyFraming::None
            && head.version == 1
            && head.header_has_token("Expect", "100-continue")
        {
            // The relay reads the body itself, so it answers `Expect` itself (and does not
            // forward it): the sender may send the body now. Flushed, as the sender waits
            // for it before it sends anything more.
            if self
                .writer
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
                || self.writer.flush().await.is_err()
            {
                return Next::Close;
            }
        }
        let http = self.state.http.clone();
        let id = http.new_id(checked.tracking_id.as_deref().unwrap_or(&self.base_id));
        let via = via_host(&head, &self.state.origin());
        let mut info = RequestInfo {
            address: rendezvous_address(&origin, &entity.name, &id),
            id: id.clone(),
            target: http_message::request_target(&origin_form(&head.target)),
            method: head.method.clone(),
            remote: self.peer,
            headers: http_message::request_headers(
                &head.headers,
                checked.strip_authorization,
                &via,
            ),
            body: checked.framing != BodyFraming::None,
        };
        let ctx = RequestCtx {
            id: id.clone(),
            hc: entity.name.clone(),
            method: head.method.clone(),
            via,
            close: head.version == 0 || head.header_has_token("Connection", "close"),
            http10: head.version == 0,
            // Capped: a deadline centuries away would overflow `Instant`.
            deadline: Instant::now() + self.state.config.request_timeout.min(MAX_DEADLINE),
            origin,
        };
        let body = match self.read_body(checked.framing, &info, reuse).await {
            Some(b) => b,
            None => return Next::Close,
        };
        if reuse {
            let Some(KeptRendezvous { key, rv, .. }) = self.rendezvous.take() else {
                return Next::Close;
            };
            let awaiting = http.awaiting();
            self.routed(&info, &entity.name);
            return self
                .exchange(key, rv, Some((info.message(), body)), true, &ctx, awaiting)
                .await;
        }
        let Some(PickedListener {
            id: listener_id,
            commands: listener,
            ..
        }) = listener
        else {
            return Next::Close;
        };
        let (route, messages, rest) = match body {
            b @ Body::Streaming { .. } => (
                Route::AddressOnly(listener_id),
                vec![Message::text(info.address_only_message())],
                Some(b),
            ),
            Body::Whole(b) => {
                info.body = true;
                let m = inline_messages(info.message(), Some(b));
                (Route::Inline(listener_id), m, None)
            }
            Body::None => {
                info.body = false;
                let m = inline_messages(info.message(), None);
                (Route::Inline(listener_id), m, None)
            }
        };
        let (_guard, rx) = http.insert(&id, &entity.key, route);
        let awaiting = http.awaiting();
        let messages = RequestMessages::new(messages);
        // However this request ends, messages still queued for the listener go with it.
        let _unsent = DropUnsent(messages.clone());
        let sent = listener.send(ControlCommand::Request {
            id: id.clone(),
            messages,
        });
        match sent {
            Ok(()) => {}
            // The listener's channel closed since it was picked.
            Err(QueueError::Gone) => return self.no_listener(&entity.name).await,
            Err(e @ QueueError::Full) => return self.refuse(e.refusal(), Some(&entity.name)).await,
        }
        self.routed(&info, &entity.name);
        match rest {
            None => self.await_inline(rx, &entity.key, &ctx, awaiting).await,
            Some(body) => match self.await_rendezvous(rx, &ctx).await {
                Some(rv) => {
                    let upload = Some((info.message(), body));
                    self.exchange(entity.key.clone(), rv, upload, false, &ctx, awaiting)
                        .await
                }
                None => Next::Close,
            },
        }
    }

    /// Reports (and counts) a request handed to a listener.
    fn routed(&self, info: &RequestInfo, hc: &str) {
        let message = format!("{} {} from {}", info.method, info.target, self.peer);
        self.state.emit(
            RelayEvent::new("request", redact_secrets(&message))
                .hc(hc)
                .id(&info.id),
        );
        self.state.http.count_routed();
    }

    /// The no-listener refusal, with the configured status.
    async fn no_listener(&mut self, hc: &str) -> Next {
        let status = self.state.config.no_listener_status;
        self.refuse(SocketError::status(status, NO_LISTENER), Some(hc))
            .await
    }

    /// Reads as much of the body as routing needs: all of a small one (inline), else
    /// nothing yet. `None` if the sender left.
    async fn read_body(
        &mut self,
        framing: BodyFraming,
        info: &RequestInfo,
        reuse: bool,
    ) -> Option<Body> {
        let mut reader = BodyReader::new(framing);
        let small = matches!(framing, BodyFraming::Length(n) if n <= INLINE_BODY_BYTES)
            && info.headers_size() <= INLINE_HEADER_BYTES;
        match framing {
            BodyFraming::None => return Some(Body::None),
            _ if reuse || !small => {
                return Some(Body::Streaming {
                    prefix: Vec::new(),
                    reader,
                })
            }
            _ => {}
        }
        let mut prefix = Vec::new();
        let until = Instant::now() + INLINE_READ_WAIT;
        while !reader.is_done() {
            match tokio::time::timeout_at(until, reader.next(&mut self.reader, PIECE_BYTES)).await {
                Ok(Ok(Some(piece))) => prefix.extend_from_slice(&piece),
                Ok(Ok(None)) => break,
                Ok(Err(_)) => return None,
                // Slow: the rest follows over a rendezvous.
                Err(_) => return Some(Body::Streaming { prefix, reader }),
            }
        }
        Some(Body::Whole(prefix))
    }
}

/// A request's rendezvous address: `{origin}/$hc/{hc}?sb-hc-action=request&sb-hc-id={id}`.
fn rendezvous_address(origin: &str, hc: &str, id: &str) -> String {
    let path: Vec<String> = hc.split('/').map(encode_uri_component).collect();
    format!(
        "{origin}/$hc/{}?sb-hc-action=request&sb-hc-id={}",
        path.join("/"),
        encode_uri_component(id)
    )
}

/// The control-channel messages of an inline request: the `request` text, then the body as
/// one binary message, in frames of [`INLINE_FRAME_BYTES`] when it is larger.
fn inline_messages(text: String, body: Option<Vec<u8>>) -> Vec<Message> {
    let mut messages = vec![Message::text(text)];
    let Some(body) = body else {
        return messages;
    };
    if body.len() <= INLINE_FRAME_BYTES {
        messages.push(Message::binary(body));
        return messages;
    }
    let count = body.len().div_ceil(INLINE_FRAME_BYTES);
    for (i, piece) in body.chunks(INLINE_FRAME_BYTES).enumerate() {
        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
        messages.push(Message::Frame(Frame::message(
            piece.to_vec(),
            OpCode::Data(opcode),
            i + 1 == count,
        )));
    }
    messages
}

/// Checks a listener's `sb-hc-action=request` upgrade to `path` for request `id`: the address
/// must be one the relay handed out, for this Hybrid Connection, not used, with its request
/// still waiting. Returns where the socket goes.
pub fn claim_rendezvous(
    state: &RelayState,
    path: &str,
    id: &str,
) -> Result<oneshot::Sender<Delivery>, SocketError> {
    let invalid = || {
        SocketError::status(
            403,
            "Forbidden: the request URL is not valid (unknown, used or expired)",
        )
    };
    let (entity, suffix) = state.registry.entity_for_sender(path).ok_or_else(invalid)?;
    if !suffix.trim_matches('/').is_empty() {
        return Err(invalid());
    }
    let deliver = state
        .http
        .take_rendezvous(id, &entity.key)
        .ok_or_else(invalid)?;
    if deliver.is_closed() {
        return Err(invalid());
    }
    Ok(deliver)
}

/// Hands an upgraded rendezvous socket to its request (see [`claim_rendezvous`]); if the
/// request ended meanwhile, closes it with 1001.
pub async fn deliver_rendezvous(
    state: &RelayState,
    deliver: oneshot::Sender<Delivery>,
    stream: IoStream,
    initial: Vec<u8>,
) {
    let rv = Rendezvous::start(stream, initial, state.config.max_control_message_bytes);
    if let Err(Delivery::Rendezvous(rv)) = deliver.send(Delivery::Rendezvous(rv)) {
        rv.close(1001, "The request is gone").await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_paths() {
        assert_eq!(target_path("/hc/x?a=1"), Some("/hc/x"));
        assert_eq!(target_path("http://ns/hc/x?a"), Some("/hc/x"));
        assert_eq!(target_path("https://ns"), Some("/"));
        assert_eq!(target_path("*"), None);
        assert_eq!(origin_form("http://ns/hc?a=1"), "/hc?a=1");
        assert_eq!(origin_form("http://ns?a=1"), "/?a=1");
        assert_eq!(origin_form("/hc"), "/hc");
        assert_eq!(
            query_param("/hc?a=1&sb-hc-token=Shared%20x&sb-hc-id=", "sb-hc-token").as_deref(),
            Some("Shared x")
        );
    }

    #[test]
    fn via_names_the_host_addressed_or_the_relays_authority() {
        let head = |headers: &[(&str, &str)]| RequestHead {
            method: "GET".into(),
            version: 0,
            target: "/hc".into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let origin = "ws://127.0.0.1:9090";
        assert_eq!(
            via_host(&head(&[("Host", "ns.example")]), origin),
            "ns.example"
        );
        assert_eq!(
            via_host(&head(&[]), origin),
            "127.0.0.1:9090",
            "HTTP/1.0 without Host"
        );
        assert_eq!(via_host(&head(&[("Host", "a b\r")]), origin), "ab");
    }

    #[test]
    fn large_inline_bodies_go_in_frames() {
        let m = inline_messages("{}".into(), Some(vec![7u8; INLINE_FRAME_BYTES * 2 + 1]));
        assert_eq!(m.len(), 4);
        let fins: Vec<bool> = m[1..]
            .iter()
            .map(|x| match x {
                Message::Frame(f) => f.header().is_final,
                _ => panic!("a frame"),
            })
            .collect();
        assert_eq!(fins, [false, false, true]);
        assert_eq!(inline_messages("{}".into(), Some(vec![1, 2])).len(), 2);
        assert_eq!(inline_messages("{}".into(), None).len(), 1);
    }
}
