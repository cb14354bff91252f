//! One relayed HTTP request once routed: waiting for the listener (a `response` on the
//! control channel, or its rendezvous), the exchange over a rendezvous (the request and its
//! body streamed up while the response streams down), and the answer to the sender: the
//! listener's response, or the relay's own 502/504.
//!
//! The deadline (`requestTimeout`) runs until the response message arrives; after that a
//! streamed body may not stay idle longer than the same time. The sender leaving ends the
//! request, and closes its rendezvous with 1001. A sender that stops reading is held by
//! TCP, with the exchange (the README's faithfulness table).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

use crate::relay::http;
use crate::relay::http_body::{self, BodyError, PIECE_BYTES};
use crate::relay::http_message::{self, Framing, ListenerReply, ResponseHead};
use crate::relay::http_pending::{AwaitingGuard, Delivery};
use crate::relay::http_relay::{
    Body, KeptRendezvous, Next, Reader, RequestCtx, SenderConn, Writer, SHUTDOWN_WAIT,
};
use crate::relay::rendezvous::{Rendezvous, RvEvent, RvWriter};
use crate::relay::state::{RelayEvent, RelayState};

/// The 504's reason phrase: the service's words (protocol article, azure-relay-dotnet#141).
pub const TIMEOUT_REASON: &str =
    "The request was routed to the listener but the listener did not respond in the required time";

/// How the response side of an exchange ended.
enum DownloadEnd {
    /// The response went out whole.
    Done,
    /// No usable response came; nothing was written to the sender.
    NoResponse {
        status: u16,
        why: String,
        /// The listener closed the rendezvous (rather than timing out or misbehaving).
        closed: bool,
    },
    /// The response was cut short after its head went out.
    Broken(&'static str),
    /// Writing to the sender failed, or the sender left.
    SenderGone,
}

/// Why the request side of an exchange stopped.
enum UploadError {
    /// The rendezvous could not be written (the listener closed it).
    ListenerGone,
    /// The sender left (or stalled) mid-body.
    SenderGone,
    /// The sender's chunked framing is broken.
    Malformed(&'static str),
}

/// How far the request side got.
enum Uploaded {
    All,
    Partly,
    Failed(UploadError),
}

/// What an inline request's wait ended with.
enum Waited {
    Delivered(Result<Delivery, oneshot::error::RecvError>),
    Timeout,
    SenderGone,
}

fn emit(
    state: &RelayState,
    kind: &'static str,
    ctx: &RequestCtx,
    status: Option<u16>,
    message: String,
) {
    let mut e = RelayEvent::new(kind, message).hc(&ctx.hc).id(&ctx.id);
    if let Some(s) = status {
        e = e.status(s);
    }
    state.emit(e);
}

impl SenderConn {
    /// Answers the sender with the relay's own error (no `Via`), and reports it.
    async fn relay_error(&mut self, status: u16, why: &str, ctx: &RequestCtx, close: bool) -> Next {
        let (kind, code) = if status == 504 {
            ("requestTimeout", "GatewayTimeout")
        } else {
            ("requestFailed", "BadGateway")
        };
        emit(
            &self.state,
            kind,
            ctx,
            Some(status),
            format!("{status} {why}"),
        );
        let close = close || ctx.close;
        let head = ctx.method.eq_ignore_ascii_case("HEAD");
        let out = http_message::relay_response(status, code, why, close, head);
        if self.writer.write_all(&out).await.is_err() || self.writer.flush().await.is_err() || close
        {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// Reports a request the sender gave up on.
    fn sender_left(&self, ctx: &RequestCtx) -> Next {
        emit(
            &self.state,
            "requestFailed",
            ctx,
            None,
            "the sender disconnected before the response".into(),
        );
        Next::Close
    }

    /// Waits for the answer to an inline request: a `response` on the control channel, or
    /// the listener's own rendezvous (a large response), until the deadline; meanwhile a
    /// sender that leaves ends the request.
    pub(crate) async fn await_inline(
        &mut self,
        rx: oneshot::Receiver<Delivery>,
        entity_key: &str,
        ctx: &RequestCtx,
        awaiting: AwaitingGuard,
    ) -> Next {
        let max = self.state.config.max_header_bytes;
        let waited = tokio::select! {
            d = rx => Waited::Delivered(d),
            _ = tokio::time::sleep_until(ctx.deadline) => Waited::Timeout,
            _ = self.reader.closed(max) => Waited::SenderGone,
        };
        match waited {
            Waited::Delivered(Ok(Delivery::Response { head, body })) => {
                drop(awaiting);
                self.write_whole(head, body, ctx).await
            }
            Waited::Delivered(Ok(Delivery::Rendezvous(rv))) => {
                self.exchange(entity_key.to_owned(), rv, None, false, ctx, awaiting)
                    .await
            }
            Waited::Delivered(Ok(Delivery::Invalid(why))) => {
                log::debug!("relay: request {}: invalid response: {why}", ctx.id);
                self.relay_error(
                    502,
                    "Bad Gateway: the listener sent an invalid response",
                    ctx,
                    false,
                )
                .await
            }
            Waited::Delivered(Err(_)) => {
                self.relay_error(
                    502,
                    "Bad Gateway: the listener disconnected before it responded",
                    ctx,
                    false,
                )
                .await
            }
            Waited::Timeout => self.relay_error(504, TIMEOUT_REASON, ctx, false).await,
            Waited::SenderGone => self.sender_left(ctx),
        }
    }

    /// Waits for the listener to open an address-only request's rendezvous. `None` when it
    /// does not (the sender has been answered, and its unread body means the connection
    /// closes).
    pub(crate) async fn await_rendezvous(
        &mut self,
        rx: oneshot::Receiver<Delivery>,
        ctx: &RequestCtx,
    ) -> Option<Rendezvous> {
        let why = tokio::select! {
            d = rx => match d {
                Ok(Delivery::Rendezvous(rv)) => return Some(rv),
                Ok(_) => "Bad Gateway: the listener sent an invalid response",
                Err(_) => "Bad Gateway: the listener disconnected before it responded",
            },
            _ = tokio::time::sleep_until(ctx.deadline) => {
                self.relay_error(504, TIMEOUT_REASON, ctx, true).await;
                return None;
            }
        };
        self.relay_error(502, why, ctx, true).await;
        None
    }

    /// Writes a response whose body is whole (from the control channel) with its length.
    async fn write_whole(
        &mut self,
        head: ResponseHead,
        body: Option<Vec<u8>>,
        ctx: &RequestCtx,
    ) -> Next {
        let bodiless = http_message::is_bodiless(&ctx.method, head.status);
        let body = body.unwrap_or_default();
        let framing = if bodiless {
            Framing::Bodiless
        } else {
            Framing::Length(body.len() as u64)
        };
        emit_response(&self.state, ctx, &head);
        let mut out = http_message::sender_head(&head, &ctx.via, framing, ctx.close);
        if !bodiless {
            out.extend_from_slice(&body);
        }
        if self.writer.write_all(&out).await.is_err()
            || self.writer.flush().await.is_err()
            || ctx.close
        {
            return Next::Close;
        }
        Next::KeepAlive
    }

    /// The exchange over rendezvous `rv` (of Hybrid Connection `key`): sends `upload` (the
    /// request message and its body) while reading and relaying the response. `reused` for a
    /// rendezvous from an earlier request of this connection. Keeps the rendezvous for the
    /// connection's next request when both sides completed.
    pub(crate) async fn exchange(
        &mut self,
        key: String,
        mut rv: Rendezvous,
        upload: Option<(String, Body)>,
        reused: bool,
        ctx: &RequestCtx,
        awaiting: AwaitingGuard,
    ) -> Next {
        let idle = self.state.config.request_timeout;
        let max = self.state.config.max_header_bytes;
        let head_sent = AtomicBool::new(false);
        let mut awaiting = Some(awaiting);
        let rv_writer = rv.writer.clone();
        let state = self.state.clone();
        let (down_end, uploaded) = {
            let down = download(
                &mut rv.events,
                &mut self.writer,
                ctx,
                idle,
                reused,
                &head_sent,
                &mut awaiting,
                &state,
            );
            tokio::pin!(down);
            // Boxed, so that it can be dropped (releasing the sender's reader) once done.
            let mut up = Box::pin(send_request(&mut self.reader, &rv_writer, upload, idle));
            let first = tokio::select! {
                u = &mut up => Ok(u),
                d = &mut down => Err(d),
            };
            match first {
                Ok(Ok(())) => {
                    drop(up);
                    // The request is out: wait for the response, noticing a sender that
                    // leaves meanwhile.
                    let d = tokio::select! {
                        d = &mut down => d,
                        _ = self.reader.closed(max) => DownloadEnd::SenderGone,
                    };
                    (d, Uploaded::All)
                }
                Ok(Err(UploadError::ListenerGone)) => {
                    drop(up);
                    // The listener may have answered before it closed: relay that.
                    ((&mut down).await, Uploaded::Partly)
                }
                Ok(Err(e)) => (DownloadEnd::SenderGone, Uploaded::Failed(e)),
                Err(d @ DownloadEnd::Done) => {
                    // Answered before the whole body went up: finish sending it, so that the
                    // connection can carry the next request.
                    match tokio::time::timeout(idle, &mut up).await {
                        Ok(Ok(())) => (d, Uploaded::All),
                        Ok(Err(e)) => (d, Uploaded::Failed(e)),
                        Err(_) => (d, Uploaded::Partly),
                    }
                }
                Err(d) => (d, Uploaded::Partly),
            }
        };
        drop(awaiting);
        match (down_end, uploaded) {
            (DownloadEnd::Done, Uploaded::All) => {
                // A listener that closes the rendezvous right after its response (as .NET's
                // does) ends the sender's connection now rather than at its next request.
                if let Ok(RvEvent::Closed) | Err(mpsc::error::TryRecvError::Disconnected) =
                    rv.events.try_recv()
                {
                    return Next::Close;
                }
                let kept = KeptRendezvous {
                    key,
                    origin: ctx.origin.clone(),
                    rv,
                };
                if let Some(old) = self.rendezvous.replace(kept) {
                    // A rendezvous of another Hybrid Connection: this connection keeps one.
                    old.rv.close(1000, "Replaced by a newer rendezvous").await;
                }
                if ctx.close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            (DownloadEnd::Done, _) => {
                rv.close(1001, "The sender's request could not be completed")
                    .await;
                Next::Close
            }
            (DownloadEnd::NoResponse { closed: true, .. }, _) if reused => {
                // The article: the listener dropping the rendezvous drops the sender's
                // connection, "irrespective of whether a subsequent request might already be
                // in progress".
                self.sender_left_quietly(ctx)
            }
            (DownloadEnd::NoResponse { status, why, .. }, _) => {
                // The sender first: closing the rendezvous may wait for the listener.
                let next = self.relay_error(status, &why, ctx, true).await;
                rv.close(1011, "The request failed").await;
                next
            }
            (DownloadEnd::Broken(why), _) => {
                log::debug!("relay: request {}: response cut short: {why}", ctx.id);
                emit(
                    &self.state,
                    "requestFailed",
                    ctx,
                    None,
                    format!("the response was cut short: {why}"),
                );
                // The sender sees its body end without the last chunk: a failed response.
                // Bounded, as below.
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, self.writer.shutdown()).await;
                rv.close(1011, "The response was cut short").await;
                Next::Close
            }
            (DownloadEnd::SenderGone, Uploaded::Failed(UploadError::Malformed(why))) => {
                if !head_sent.load(Ordering::Relaxed) {
                    let message = format!("Bad Request: {why}");
                    emit(
                        &self.state,
                        "requestFailed",
                        ctx,
                        Some(400),
                        message.clone(),
                    );
                    let head = ctx.method.eq_ignore_ascii_case("HEAD");
                    http::write_status_for(&mut self.writer, 400, &message, head).await;
                }
                rv.close(1011, "The sender's request body is malformed")
                    .await;
                Next::Close
            }
            (DownloadEnd::SenderGone, _) => {
                // Bounded: over TLS the shutdown writes, and a sender that stopped reading
                // would hold it.
                let _ = tokio::time::timeout(SHUTDOWN_WAIT, self.writer.shutdown()).await;
                rv.close(1001, "The sender disconnected").await;
                self.sender_left(ctx)
            }
        }
    }

    /// Ends a request whose reused rendezvous the listener closed: no answer, the sender's
    /// connection closes.
    fn sender_left_quietly(&self, ctx: &RequestCtx) -> Next {
        emit(
            &self.state,
            "requestFailed",
            ctx,
            None,
            "the listener closed the rendezvous: closing the sender's connection".into(),
        );
        Next::Close
    }
}

fn emit_response(state: &RelayState, ctx: &RequestCtx, head: &ResponseHead) {
    if matches!(head.status, 502 | 504) {
        // The article reserves these for the service; the service passes them on anyway.
        log::debug!(
            "relay: request {}: passing on the listener's {} (the article reserves it for the service)",
            ctx.id,
            head.status
        );
    }
    emit(
        state,
        "response",
        ctx,
        Some(head.status),
        format!(
            "{} {} for {}",
            head.status,
            http_message::reason_phrase(head.status),
            ctx.method
        ),
    );
}

/// Sends the request message and its body (one binary message, a frame per piece read from
/// the sender, FIN on the last) on the rendezvous.
async fn send_request(
    reader: &mut Reader,
    rv: &RvWriter,
    upload: Option<(String, Body)>,
    idle: Duration,
) -> Result<(), UploadError> {
    let Some((text, body)) = upload else {
        return Ok(());
    };
    let listener_gone = |_| UploadError::ListenerGone;
    rv.text(&text).await.map_err(listener_gone)?;
    let (prefix, mut body) = match body {
        Body::None => return Ok(()),
        Body::Whole(b) => return rv.binary(true, true, &b).await.map_err(listener_gone),
        Body::Streaming { prefix, reader } => (prefix, reader),
    };
    let mut first = true;
    if !prefix.is_empty() || body.is_done() {
        rv.binary(true, body.is_done(), &prefix)
            .await
            .map_err(listener_gone)?;
        if body.is_done() {
            return Ok(());
        }
        first = false;
    }
    loop {
        let piece = match tokio::time::timeout(idle, body.next(reader, PIECE_BYTES)).await {
            Err(_) | Ok(Err(BodyError::Gone)) => return Err(UploadError::SenderGone),
            Ok(Err(BodyError::Malformed(why))) => return Err(UploadError::Malformed(why)),
            Ok(Ok(piece)) => piece,
        };
        // A chunked body's end is known only after its last piece: it gets an empty final
        // frame.
        let data = piece.unwrap_or_default();
        let fin = body.is_done();
        rv.binary(first, fin, &data).await.map_err(listener_gone)?;
        if fin {
            return Ok(());
        }
        first = false;
    }
}

/// Reads the response from the rendezvous and relays it to the sender: the head once it
/// comes (by the deadline), then the body, chunked (or until close for HTTP/1.0), each piece
/// as it arrives. `reused`: the rendezvous carried an earlier request.
#[allow(clippy::too_many_arguments)]
async fn download(
    events: &mut mpsc::Receiver<RvEvent>,
    writer: &mut Writer,
    ctx: &RequestCtx,
    idle: Duration,
    reused: bool,
    head_sent: &AtomicBool,
    awaiting: &mut Option<AwaitingGuard>,
    state: &RelayState,
) -> DownloadEnd {
    let head = loop {
        let Ok(ev) = tokio::time::timeout_at(ctx.deadline, events.recv()).await else {
            return DownloadEnd::NoResponse {
                status: 504,
                why: TIMEOUT_REASON.into(),
                closed: false,
            };
        };
        match ev {
            None | Some(RvEvent::Closed) => {
                return DownloadEnd::NoResponse {
                    status: 502,
                    why: "Bad Gateway: the listener closed the rendezvous before it responded"
                        .into(),
                    closed: true,
                }
            }
            Some(RvEvent::Binary { .. }) => {
                log::debug!("relay: ignoring a binary frame before the response on a rendezvous")
            }
            Some(RvEvent::Text(t)) => match http_message::parse_reply(&t) {
                // A kept rendezvous carries one request at a time: an answer naming another
                // (an earlier one, answered twice) is the listener's mistake, not this
                // request's answer; its body, if any, is passed over as any binary frame
                // before the response. An answer without an id is this request's (hyco-https
                // sends none), and so is any on a rendezvous opened for this request.
                ListenerReply::Response(ResponseHead {
                    request_id: Some(other),
                    ..
                })
                | ListenerReply::Invalid {
                    request_id: Some(other),
                    ..
                } if reused && other != ctx.id => {
                    log::debug!(
                        "relay: request {}: ignoring a response to another request ({:?}) on its rendezvous",
                        ctx.id,
                        other.chars().take(64).collect::<String>()
                    );
                }
                ListenerReply::Response(h) => break h,
                ListenerReply::Invalid { why, .. } => {
                    log::debug!("relay: request {}: invalid response: {why}", ctx.id);
                    return DownloadEnd::NoResponse {
                        status: 502,
                        why: "Bad Gateway: the listener sent an invalid response".into(),
                        closed: false,
                    };
                }
                ListenerReply::Other => {
                    log::debug!(
                        "relay: ignoring a text message that is not a response on a rendezvous"
                    )
                }
            },
        }
    };
    awaiting.take();
    let framing = if http_message::is_bodiless(&ctx.method, head.status) {
        Framing::Bodiless
    } else if !head.body {
        Framing::Length(0)
    } else if ctx.http10 {
        Framing::UntilClose
    } else {
        Framing::Chunked
    };
    emit_response(state, ctx, &head);
    let out = http_message::sender_head(&head, &ctx.via, framing, ctx.close);
    // Flushed: over TLS the head could otherwise wait in the stream's buffer for the body's
    // first piece, which a streamed response may send much later.
    if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
        return DownloadEnd::SenderGone;
    }
    head_sent.store(true, Ordering::Relaxed);
    if head.body {
        loop {
            match tokio::time::timeout(idle, events.recv()).await {
                Err(_) => return DownloadEnd::Broken("the body stayed idle too long"),
                Ok(None | Some(RvEvent::Closed)) => {
                    return DownloadEnd::Broken("the listener closed the rendezvous mid-body")
                }
                Ok(Some(RvEvent::Text(_))) => {
                    return DownloadEnd::Broken("a text message in the middle of the body")
                }
                Ok(Some(RvEvent::Binary { data, fin })) => {
                    // A body for HEAD, 204 or 304 (hyco-https sends one) is read and dropped.
                    if http_body::write_piece(writer, framing, &data)
                        .await
                        .is_err()
                    {
                        return DownloadEnd::SenderGone;
                    }
                    if fin {
                        break;
                    }
                }
            }
        }
    }
    if http_body::finish(writer, framing).await.is_err() {
        return DownloadEnd::SenderGone;
    }
    DownloadEnd::Done
}
